"""What the prepare scripts share: option checks, the learnt vocabularies, and the one writer that tokenizes on every
core into train.bin, val.bin and meta.json (nanoGPT's layout, with its meta.pkl for a char table). A split is an
iterable of (text, ends_document) pieces, so a long file can arrive in pieces and memory stays flat."""

import os
import pickle
import re
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import chain
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import tiktoken
from tqdm import tqdm

from haikugpt.files import ROOT, WRITE_ERRORS, WriteError, explain, write_bytes, write_json
from haikugpt.texts import decode_bytes
from haikugpt.tokenizer import BPETokenizer, CharTokenizer, Tokenizer, gpt2_tokenizer, train_bpe

CORPUS_PATH = Path(__file__).with_name("haiku_corpus.txt")
UINT16_LIMIT = 1 << 16  # .bin files store ids as uint16
BATCH_BYTES = 1 << 20  # text handed to a worker at a time; large enough to hide the inter-process overhead

Piece = tuple[str, bool]  # (text, ends_document)


def check_options(val_fraction: float, tokenizer: str = "gpt2", tokenizers: tuple[str, ...] = ("gpt2",),
                  vocab_size: int = 5120) -> None:  # fmt: skip
    """One-line errors for the options the prepare scripts share."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    if tokenizer not in tokenizers:
        raise ValueError(f"--tokenizer must be {', '.join(tokenizers[:-1])} or {tokenizers[-1]}, got {tokenizer!r}")
    if tokenizer == "bpe" and not 257 <= vocab_size <= 65536:
        raise ValueError(f"--vocab_size must be between 257 (the bytes and end-of-text) and 65,536, got {vocab_size}")


def display_path(path: Path) -> str:
    """A path as meta.json records it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def cut_point(buf: bytes) -> int:
    """Where to end a piece of buf: after the last newline with text on both sides if there is one (GPT-2's
    pre-tokenizer then splits the pieces as it would the whole), else after any newline, else at a character start."""
    if m := re.match(rb"(?s:.*)\S\n(?=\S)", buf):  # match, not search: one backward scan
        return m.end()
    if (i := buf.rfind(b"\n")) >= 0:
        return i + 1
    i = len(buf) - 1
    while i > max(0, len(buf) - 4) and 0x80 <= buf[i] < 0xC0:  # step back over UTF-8 continuation bytes...
        i -= 1
    return i if buf[i] >= 0xC0 else len(buf)  # ...to the lead byte of the last character


def read_pieces(path: Path, start: int = 0, stop: int | None = None) -> Iterator[str]:
    """The text of bytes [start, stop) of a file, in pieces of about BATCH_BYTES cut at line breaks."""
    with open(path, "rb") as f:
        f.seek(start)
        left, carry = (stop if stop is not None else os.path.getsize(path)) - start, b""
        while left > 0 and (block := f.read(min(BATCH_BYTES, left))):
            left -= len(block)
            buf = carry + block
            cut = cut_point(buf) if left > 0 else len(buf)
            carry = buf[cut:]
            if cut:
                yield decode_bytes(buf[:cut])[0]
        if carry:
            yield decode_bytes(carry)[0]


def make_tokenizer(kind: str, texts: Iterable[str], train: Iterable[str] = (), vocab_size: int = 5120,
                   encoding: tiktoken.Encoding | None = None) -> Tokenizer:  # fmt: skip
    """GPT-2's BPE (or `encoding`), the char table of all the texts, or a BPE learnt from the training texts."""
    if kind == "gpt2":
        return gpt2_tokenizer(encoding)
    return CharTokenizer.from_texts(texts) if kind == "char" else BPETokenizer(train_bpe(train, vocab_size), name="bpe")


_tokenizer: Tokenizer | None = None  # each worker's copy, set once so that it is not pickled with every batch


def _init_worker(tokenizer: Tokenizer) -> None:
    global _tokenizer
    _tokenizer = tokenizer


def encode_pieces(pieces: list[Piece], tokenizer: Tokenizer | None = None) -> np.ndarray:
    """The uint16 ids of pieces, end-of-text after each that ends a document; raises if an id overflows uint16."""
    tok = tokenizer or _tokenizer
    parts = [np.zeros(0, dtype=np.int64)]
    for text, ends_document in pieces:
        parts += [tok.encode_array(text), np.array([tok.eot_id] * ends_document, dtype=np.int64)]
    ids = np.concatenate(parts)
    if len(ids) and int(ids.max()) >= UINT16_LIMIT:
        raise ValueError(f"token id {int(ids.max())} does not fit in uint16, which .bin files store")
    return ids.astype(np.uint16)


def _batches(pieces: Iterable[Piece]) -> Iterator[tuple[list[Piece], int]]:
    """Pieces grouped into batches of about BATCH_BYTES of text, with each batch's size in bytes."""
    batch, size = [], 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece[0].encode())
        if size >= BATCH_BYTES:
            yield batch, size
            batch, size = [], 0
    if batch:
        yield batch, size


def write_dataset(out_dir: Path, splits: dict[str, Iterable[Piece]], tokenizer: Tokenizer, meta: dict,
                  workers: int | None = None, total_bytes: int | None = None) -> dict:  # fmt: skip
    """Tokenize each split on `workers` processes (default: every core) into out_dir/<split>.bin, each renamed into
    place only when every split has succeeded, then meta.json; return it: `meta`, the tokenizer's fields and counts."""
    if tokenizer.vocab_size > UINT16_LIMIT:
        raise ValueError(f"vocab_size {tokenizer.vocab_size} does not fit in uint16 (at most {UINT16_LIMIT} ids)")
    workers = workers or os.cpu_count() or 1
    out_dir.mkdir(parents=True, exist_ok=True)
    temps = {split: out_dir / f"{split}.bin.tmp" for split in splits}
    tokens = dict.fromkeys(splits, 0)
    try:
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"tokenizing ({tokenizer.name})", disable=None)
        with bar, Pool(workers, initializer=_init_worker, initargs=(tokenizer,)) as pool:
            for split, pieces in splits.items():
                pending = deque()  # results in order; bounded, so unwritten ids do not pile up in memory
                with open(temps[split], "wb") as f:
                    for batch in chain(_batches(pieces), [None]):  # None: the end, write what is pending
                        if batch is not None:
                            pending.append((pool.apply_async(encode_pieces, (batch[0],)), batch[1]))
                        while pending and (batch is None or len(pending) > 2 * workers or pending[0][0].ready()):
                            result, size = pending.popleft()
                            ids = result.get()
                            f.write(ids.tobytes())
                            tokens[split] += len(ids)
                            bar.update(size)
        meta = {**meta, **tokenizer.meta(), "tokens": tokens}
        for split, temp in temps.items():
            os.replace(temp, out_dir / f"{split}.bin")
        write_json(out_dir / "meta.json", meta)
        if tokenizer.name == "char":  # nanoGPT's char table too, so that its sample.py decodes our checkpoints
            itos = dict(enumerate(tokenizer.chars))
            table = {"vocab_size": tokenizer.vocab_size, "itos": itos, "stoi": {c: i for i, c in itos.items()}}
            write_bytes(out_dir / "meta.pkl", pickle.dumps(table))
        return meta
    except OSError as e:
        if isinstance(e, WriteError) or e.errno not in WRITE_ERRORS:
            raise
        kept = "the previous train.bin and val.bin are intact" if (out_dir / "train.bin").exists() else None
        raise WriteError(explain(e, out_dir, None, kept)) from e
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
