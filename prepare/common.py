"""
What the prepare scripts share: the char table or BPE learnt from a dataset's texts, and the one writer that tokenizes
documents on every core and streams the ids into train.bin / val.bin (nanoGPT's layout), with meta.json (and, for a
char table, nanoGPT's meta.pkl).

    splits = {"train": [(doc, True) for doc in train_docs], "val": [(doc, True) for doc in val_docs]}
    meta = write_dataset(Path("data/mine"), splits, tokenizer, {"dataset": "mine"})

A split is an iterable of (text, ends_document) pieces: the writer puts the end-of-text id after each piece that ends
a document, so a long file can arrive in pieces and memory stays flat however large the dataset is.
"""

import os
import pickle
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from haikugpt.files import WRITE_ERRORS, WriteError, atomic_write, explain, write_json
from haikugpt.texts import decode_bytes
from haikugpt.tokenizer import BPETokenizer, CharTokenizer, Tokenizer, train_bpe

UINT16_LIMIT = 1 << 16  # .bin files store ids as uint16
BATCH_BYTES = 1 << 20  # text handed to a worker at a time; large enough to hide the inter-process overhead

Piece = tuple[str, bool]  # (text, ends_document)


def cut_point(buf: bytes) -> int:
    """Where to end a piece of buf: after a newline that has text on both sides where there is one, because GPT-2's
    pre-tokenizer then splits the pieces exactly as it would split the whole; else after any newline; else at a
    UTF-8 character boundary."""
    end = len(buf)
    for _ in range(1000):
        i = buf.rfind(b"\n", 0, end)
        if i < 1:
            break
        if i + 1 < len(buf) and not buf[i - 1 : i].isspace() and not buf[i + 1 : i + 2].isspace():
            return i + 1
        end = i
    i = buf.rfind(b"\n")
    if i >= 0:
        return i + 1
    i = len(buf)
    while i > 0 and len(buf) - i < 3 and 0x80 <= buf[i - 1] < 0xC0:  # step back over UTF-8 continuation bytes...
        i -= 1
    return i - 1 if i > 0 and buf[i - 1] >= 0xC0 else len(buf)  # ...to the lead byte of the last character


def read_pieces(path: Path, start: int = 0, stop: int | None = None) -> Iterator[str]:
    """The text of bytes [start, stop) of a file, in pieces of about BATCH_BYTES cut at line breaks."""
    with open(path, "rb") as f:
        f.seek(start)
        left = (stop if stop is not None else os.path.getsize(path)) - start
        carry = b""
        while left > 0:
            block = f.read(min(BATCH_BYTES, left))
            if not block:
                break
            left -= len(block)
            buf = carry + block
            cut = cut_point(buf) if left > 0 else len(buf)
            carry = buf[cut:]
            if cut:
                yield decode_bytes(buf[:cut])[0]
        if carry:
            yield decode_bytes(carry)[0]


def learn_tokenizer(kind: str, texts: list[str], train: list[str], vocab_size: int = 5120) -> Tokenizer:
    """The char table of all of a dataset's texts (so that every character has an id), or a BPE learnt from its
    training texts (every text still encodes, as bytes): the same texts always give the same one. prepare/haiku.py and
    prepare/labelled.py both build theirs here, so the same corpus gives both the same vocabulary."""
    if kind == "char":
        return CharTokenizer.from_texts(texts)
    return BPETokenizer(train_bpe(train, vocab_size), name="bpe")


_tokenizer: Tokenizer | None = (
    None  # each worker's copy, set once by _init_worker so it is not pickled with every batch
)


def _init_worker(tokenizer: Tokenizer) -> None:
    global _tokenizer
    _tokenizer = tokenizer


def encode_pieces(pieces: list[Piece], tokenizer: Tokenizer | None = None) -> np.ndarray:
    """The uint16 ids of pieces, end-of-text after each that ends a document; raises if an id overflows uint16."""
    tok = tokenizer or _tokenizer
    parts = []
    for text, ends_document in pieces:
        parts.append(tok.encode_array(text))
        if ends_document:
            parts.append(np.array([tok.eot_id]))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if len(ids) and int(ids.max()) >= UINT16_LIMIT:
        raise ValueError(f"token id {int(ids.max())} does not fit in uint16, which .bin files store")
    return ids.astype(np.uint16)


def _batches(pieces: Iterable[Piece]) -> Iterator[tuple[list[Piece], int]]:
    """Pieces grouped into batches of about BATCH_BYTES of text, with each batch's size in bytes."""
    batch, size = [], 0
    for text, ends_document in pieces:
        batch.append((text, ends_document))
        size += len(text.encode())
        if size >= BATCH_BYTES:
            yield batch, size
            batch, size = [], 0
    if batch:
        yield batch, size


def write_dataset(
    out_dir: Path,
    splits: dict[str, Iterable[Piece]],
    tokenizer: Tokenizer,
    meta: dict,
    workers: int | None = None,
    total_bytes: int | None = None,
) -> dict:
    """Tokenize each split on `workers` processes (default: every core) into out_dir/<split>.bin, then meta.json.

    Each .bin is written under a temporary name and renamed only when every split has succeeded, so a failure
    leaves no half-written file behind. Returns the meta written: `meta`, the tokenizer's fields and token counts."""
    if tokenizer.vocab_size > UINT16_LIMIT:
        raise ValueError(f"vocab_size {tokenizer.vocab_size} does not fit in uint16 (at most {UINT16_LIMIT} ids)")
    workers = workers or os.cpu_count() or 1
    out_dir.mkdir(parents=True, exist_ok=True)
    temps = {split: out_dir / f"{split}.bin.tmp" for split in splits}
    tokens = {}
    try:
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"tokenizing ({tokenizer.name})", disable=None)
        with bar, Pool(workers, initializer=_init_worker, initargs=(tokenizer,)) as pool:
            for split, pieces in splits.items():
                tokens[split] = 0
                pending = deque()  # results in order; bounded, so unwritten ids do not pile up in memory
                batches = _batches(pieces)
                with open(temps[split], "wb") as f:
                    while True:
                        batch = next(batches, None)
                        if batch is not None:
                            pending.append((pool.apply_async(encode_pieces, (batch[0],)), batch[1]))
                        while pending and (batch is None or len(pending) > 2 * workers or pending[0][0].ready()):
                            result, size = pending.popleft()
                            ids = result.get()
                            f.write(ids.tobytes())
                            tokens[split] += len(ids)
                            bar.update(size)
                        if batch is None:
                            break
        meta = {**meta, **tokenizer.meta(), "tokens": tokens}
        for split, temp in temps.items():
            os.replace(temp, out_dir / f"{split}.bin")
        write_json(out_dir / "meta.json", meta)
        if tokenizer.name == "char":  # nanoGPT's char table too, so that its sample.py decodes our checkpoints
            table = {"vocab_size": tokenizer.vocab_size, "itos": dict(enumerate(tokenizer.chars))}
            data = pickle.dumps({**table, "stoi": {c: i for i, c in table["itos"].items()}})
            atomic_write(out_dir / "meta.pkl", lambda f: f.write(data), size=len(data))
        return meta
    except OSError as e:
        if isinstance(e, WriteError) or e.errno not in WRITE_ERRORS:
            raise
        kept = "the previous train.bin and val.bin are intact" if (out_dir / "train.bin").exists() else None
        raise WriteError(explain(e, out_dir, None, kept)) from e
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
