"""Writing files so that a crash, a kill or a full disk never leaves a broken one: a failure keeps the previous file
and raises one OSError naming the file and the cause. And the one line an entry script prints for an error.

    atomic_write(Path("out/ckpt.pt"), lambda f: torch.save(ckpt, f), size=nbytes)   # a temporary file, then renamed
    with one_line_errors(): main()      # ValueError, OSError, RuntimeError: "error: ..." and exit 1
"""

import errno
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent  # the repository: config/, data/ and prepare/ are found from here
READ_ONLY = {errno.EROFS: "a read-only file system", errno.EACCES: "permission denied", errno.EPERM: "not permitted"}
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, *READ_ONLY}  # what the disk refuses, as opposed to a missing input


class WriteError(OSError):  # an OSError whose message is already the one line to show
    def __str__(self) -> str:
        return self.args[0]


def atomic_write(path: Path, write: Callable[[BinaryIO], None], size: int | None = None) -> None:
    """Call write(f) on a temporary file beside path, fsync it, rename it over path (size: for a full disk's error)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder, so the rename is atomic
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        if os.name == "posix":  # make the rename durable (Windows cannot open a directory)
            fd = os.open(path.parent, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        raise_write_error(e, path, size)


def write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data), size=len(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def replace_folder(folder: Path, fill: Callable[[Path], None]) -> None:
    """Fill a new folder under a temporary name, then swap it in for folder (an earlier one is removed only then)."""
    tmp, old = folder.with_name(f".{folder.name}.{os.getpid()}.tmp"), folder.with_name(f".{folder.name}.old")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        fill(tmp)
        shutil.rmtree(old, ignore_errors=True)  # left by a run that was killed between the two renames
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise_write_error(e, folder)


def raise_write_error(e: BaseException, path: Path, size: int | None = None) -> None:
    """Re-raise e, as one WriteError line when an OSError is behind it (torch's writer wraps them in RuntimeError)."""
    cause = e
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        raise e
    kept = f"the previous {path.name} is intact" if path.exists() else None
    raise WriteError(explain(cause, path, size, kept)) from e


def explain(e: OSError, path: Path, size: int | None = None, kept: str | None = None) -> str:
    """One line for an OSError met writing path; kept: what survived it, such as the previous file."""
    kept = f"; {kept}" if kept else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        needed, here = f"needs about {size_text(size)} and " if size else "", path.absolute()
        free = size_text(shutil.disk_usage(next(p for p in (here, *here.parents) if p.exists())).free)
        return f"no space left on the disk writing {path}: it {needed}{free} is free{kept}"
    if e.errno in READ_ONLY:
        return f"cannot write {path} ({READ_ONLY[e.errno]}){kept}; choose a folder you can write to"
    return f"writing {path} failed: {e.strerror or e}{kept}"


def size_text(n: int) -> str:
    unit, scale = next(((u, s) for u, s in (("GB", 1e9), ("MB", 1e6)) if n >= s), ("KB", 1e3))
    return f"{n / scale:,.1f} {unit}"


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad input, files, the disk, downloads) into one line and exit status 1; under
    torchrun only rank 0 prints it. A reader that stops early (`python sample.py | head`) ends the script quietly."""
    try:
        yield
    except BrokenPipeError:  # as Python's docs show: stdout's own flush at exit would fail too, so point it nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (ValueError, OSError, RuntimeError) as e:
        line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if isinstance(e, OSError) and not isinstance(e, WriteError) and e.strerror:
            line = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
        sys.exit(f"error: {line}" if int(os.environ.get("RANK", 0)) == 0 else 1)
