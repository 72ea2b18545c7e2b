"""Writing files so that a crash, a kill or a full disk never leaves a broken one, and the one line an entry script
prints for any error. Every file the scripts write goes through here: checkpoints, bins, meta.json, config.json,
samples and exported folders.

    write_text(Path("out/config.json"), text)                  # a temporary file, fsynced, then renamed
    atomic_write(Path("out/ckpt.pt"), lambda f: torch.save(ckpt, f), size=nbytes)
    with one_line_errors(): main()                             # ValueError, OSError, RuntimeError: "error: ...", exit 1

A failure leaves the previous file as it was and raises one OSError whose message names the file and the cause: for a
full disk, how much was needed and how much is free.
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
# errno values that mean "this folder cannot be written", with what to do about it
READ_ONLY = {errno.EROFS: "a read-only file system", errno.EACCES: "permission denied", errno.EPERM: "not permitted"}
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, *READ_ONLY}  # what the disk refuses, as opposed to a missing input


class WriteError(OSError):
    """An OSError whose message is already the one line to show."""

    def __str__(self) -> str:
        return self.args[0]


def atomic_write(path: Path, write: Callable[[BinaryIO], None], size: int | None = None) -> None:
    """Call write(f) on a temporary file beside path, fsync it and rename it over path; size: the bytes expected,
    for the message when the disk fills up."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder, so the rename is atomic
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        cause = os_error(e)
        if cause is None:
            raise
        raise WriteError(explain(cause, path, size, intact(path))) from e


def write_text(path: Path, text: str) -> None:
    """Write text (UTF-8) atomically."""
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), size=len(data))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def replace_folder(folder: Path, fill: Callable[[Path], None]) -> None:
    """Fill a new folder under a temporary name, then swap it in for folder (an earlier one is removed only then)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    old = folder.with_name(f".{folder.name}.old")
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
        cause = os_error(e)
        if cause is None:
            raise
        raise WriteError(explain(cause, folder, None, intact(folder))) from e


def fsync_dir(folder: Path) -> None:
    """Make a rename in folder durable (POSIX only; Windows cannot open a directory)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def os_error(e: BaseException) -> OSError | None:
    """The OSError behind e: itself, or the one torch's writer turned into a RuntimeError ('unexpected pos ...')."""
    while e is not None:
        if isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
    return None


def intact(path: Path) -> str | None:
    return f"the previous {path.name} is intact" if path.exists() else None


def explain(e: OSError, path: Path, size: int | None = None, kept: str | None = None) -> str:
    """One line for an OSError met writing path; kept: what survived it, such as the previous file."""
    kept = f"; {kept}" if kept else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(_existing_parent(path)).free
        needed = f"needs about {_size(size)} and " if size else ""
        return f"no space left on the disk writing {path}: it {needed}{_size(free)} is free{kept}"
    if e.errno in READ_ONLY:
        return f"cannot write {path} ({READ_ONLY[e.errno]}){kept}; choose a folder you can write to"
    return f"writing {path} failed: {e.strerror or e}{kept}"


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
        sys.exit(f"error: {error_line(e)}" if int(os.environ.get("RANK", 0)) == 0 else 1)


def error_line(e: BaseException) -> str:
    """An exception as the one line an entry script prints after 'error: '."""
    if isinstance(e, OSError) and not isinstance(e, WriteError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1e3:,.1f} KB"
