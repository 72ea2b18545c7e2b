"""Prepare any text for training: text files, or folders of them, into train.bin / val.bin, one document per file.

    python prepare/text.py --input input.txt --name shakespeare_char --tokenizer char   # -> data/shakespeare_char/
    python prepare/text.py --input input.txt --name shakespeare                         # GPT-2 BPE -> data/shakespeare/
    python prepare/text.py --input books/ --input notes.txt --pattern "*.md" --val_fraction 0.05 --out_dir data/mine

The tiny Shakespeare of nanoGPT's demos is one download away:
    curl -O https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt

Files are read in sorted order (folders recursively), each followed by end-of-text; val is the last --val_fraction of
the text, cut at a line break, as nanoGPT cuts Shakespeare. Files stream in ~1 MB pieces, so memory stays flat.
"""

import argparse
import mmap
import os
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tiktoken  # noqa: E402

from haikugpt.files import ROOT, one_line_errors  # noqa: E402
from prepare.common import Piece, check_options, make_tokenizer, read_pieces, write_dataset  # noqa: E402

Segment = tuple[Path, int, int, bool]  # (file, start byte, stop byte, the document ends at stop)


def list_files(inputs: list[Path], pattern: str) -> list[Path]:
    """The files named, and those under the folders named that match pattern, each folder's sorted."""
    files = []
    for path in inputs:
        if not (path.is_file() or path.is_dir()):
            raise FileNotFoundError(f"{path}: no such file or folder")
        if not (found := sorted(p for p in path.rglob(pattern) if p.is_file()) if path.is_dir() else [path]):
            raise FileNotFoundError(f"{path}: no files matching {pattern!r}")
        files += found
    return files


def line_start(path: Path, offset: int) -> int:
    """The first line start at or after offset; if no line break follows, the first character start from offset."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if (i := data.find(b"\n", offset)) >= 0:
            return i + 1
        while offset < len(data) and 0x80 <= data[offset] < 0xC0:  # a UTF-8 continuation byte is not a character start
            offset += 1
    return offset


def split_files(files: list[Path], val_fraction: float) -> tuple[list[Segment], list[Segment]]:
    """Train and val segments: val is the last val_fraction of all bytes, starting at a line start."""
    sizes = [os.path.getsize(f) for f in files]
    cut = sum(sizes) - max(1, round(sum(sizes) * val_fraction))  # val gets at least a line
    train, val, start = [], [], 0
    for path, size in zip(files, sizes, strict=True):
        offset = min(max(cut - start, 0), size)  # where this file's val part starts
        if 0 < offset < size:
            offset = line_start(path, offset)
        if offset > 0:
            train.append((path, 0, offset, offset == size))
        if offset < size:
            val.append((path, offset, size, True))
        start += size
    if not val or not train:
        raise ValueError("the text is too short to cut into a train and a val split")
    return train, val


def pieces(segments: list[Segment]) -> Iterator[Piece]:
    """The text of the segments in pieces; an empty piece ends each document, for the end-of-text id."""
    for path, start, stop, ends_document in segments:
        yield from ((text, False) for text in read_pieces(path, start, stop))
        if ends_document and stop > start:
            yield "", True


def prepare(inputs: list[Path], name: str | None = None, out_dir: Path | None = None, tokenizer: str = "gpt2",
            val_fraction: float = 0.1, pattern: str = "*.txt", workers: int | None = None,
            encoding: tiktoken.Encoding | None = None) -> dict:  # fmt: skip
    """Tokenize the inputs into out_dir (default data/<name>); return the meta.json written."""
    check_options(val_fraction, tokenizer, ("gpt2", "char"))
    files = list_files(inputs, pattern)
    if not (total := sum(os.path.getsize(f) for f in files)):
        raise ValueError(f"{', '.join(map(str, inputs))}: no text (the files are empty)")
    train, val = split_files(files, val_fraction)
    name = name or inputs[0].resolve().stem
    out_dir = out_dir or ROOT / "data" / name
    tok = make_tokenizer(tokenizer, (t for t, _ in pieces(train + val)), encoding=encoding)  # read only for char
    sources = [str(p.resolve()) for p in inputs]
    meta = {"dataset": name, "sources": sources, "files": len(files), "bytes": total, "val_fraction": val_fraction}
    meta = write_dataset(out_dir, {"train": pieces(train), "val": pieces(val)}, tok, meta, workers, total)
    print(f"{len(files):,} file(s), {total / 1e6:,.1f} MB of text")
    print(f"train: {meta['tokens']['train']:,} tokens; val: {meta['tokens']['val']:,} tokens")
    print(f"wrote {out_dir} ({tok.name} tokenizer, vocab_size {tok.vocab_size:,})")
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, action="append", required=True, help="a file or folder (repeatable)")
    parser.add_argument("--name", help="the dataset's name, and its folder data/<name>; default: the first input's")
    parser.add_argument("--out_dir", type=Path, help="default: data/<name>")
    parser.add_argument("--tokenizer", choices=("gpt2", "char"), default="gpt2")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--pattern", default="*.txt", help="which files to take from a folder")
    parser.add_argument("--workers", type=int, help="tokenizing processes; default: every core")
    args = parser.parse_args(argv)
    with one_line_errors():
        prepare(args.input, args.name, args.out_dir, args.tokenizer, args.val_fraction, args.pattern, args.workers)


if __name__ == "__main__":
    main()
