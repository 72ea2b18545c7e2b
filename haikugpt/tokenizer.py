"""Tokenizers, each rebuilt from a dataset's meta.json: GPT-2's BPE (through tiktoken), a byte-level BPE learnt from the
dataset itself, and a character table.

    tok = load_tokenizer(json.load(open("data/haiku_char/meta.json")))
    tok = BPETokenizer(train_bpe(texts, vocab_size=5120), name="bpe")   # what prepare/haiku.py --tokenizer bpe does
    ids = tok.encode("old pond\nfrog leaps in<|endoftext|>")   # the marker becomes tok.eot_id
    text = tok.decode(ids)                                       # eot decodes back to "<|endoftext|>"

decode drops ids at or above the real vocab_size: models pad their vocabulary to a multiple of 64.
"""

import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Protocol

import numpy as np
import regex
import tiktoken

EOT = "<|endoftext|>"
# GPT-2's pre-tokenizer: BPE merges never cross these pieces (words with their leading space, numbers, punctuation)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Tokenizer(Protocol):
    """Text <-> token ids. encode: a prompt's, where a literal "<|endoftext|>" becomes eot_id; encode_array: training
    text's, fast, where it is ordinary text; token_bytes: one token's UTF-8 bytes (maybe part of a character)."""

    name: str
    vocab_size: int
    eot_id: int | None

    def encode(self, text: str) -> list[int]: ...
    def encode_array(self, text: str) -> np.ndarray: ...
    def decode(self, ids: list[int]) -> str: ...
    def token_bytes(self, i: int) -> bytes: ...

    def meta(self) -> dict:
        """The meta.json fields that load_tokenizer rebuilds this tokenizer from."""
        return {"tokenizer": self.name, "vocab_size": self.vocab_size, "eot_id": self.eot_id}


class BPETokenizer(Tokenizer):
    """GPT-2's byte-level BPE ("gpt2"), one learnt from a dataset ("bpe"), or any tiktoken Encoding that has an
    "<|endoftext|>" token (tests pass small ones)."""

    def __init__(self, encoding: tiktoken.Encoding, name: str = "gpt2"):
        if EOT not in encoding.special_tokens_set:
            raise ValueError(f"tiktoken encoding {encoding.name!r} has no {EOT} token")
        self.encoding, self.name, self.vocab_size, self.eot_id = encoding, name, encoding.n_vocab, encoding.eot_token

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, allowed_special={EOT})

    def encode_array(self, text: str) -> np.ndarray:
        return self.encoding.encode_to_numpy(text, disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode([i for i in ids if i < self.vocab_size])

    def token_bytes(self, i: int) -> bytes:
        return self.encoding.decode_single_token_bytes(i)

    def meta(self) -> dict:  # a learnt BPE's tokens in rank order (the merges implied); GPT-2's come from tiktoken
        learnt = {} if self.name == "gpt2" else {"bpe": [self.token_bytes(i).hex() for i in range(self.eot_id)]}
        return {**super().meta(), **learnt}


class CharTokenizer(Tokenizer):
    """One id per character: id 0 is end-of-text, ids 1.. are the dataset's characters in sorted order (or any table
    of single characters, as nanoGPT's meta.pkl, which has no end-of-text: eot_id None)."""

    def __init__(self, chars: list[str]):
        if not chars or any(len(c) != 1 for c in chars if c != EOT) or chars.count(EOT) > 1:
            raise ValueError(f"a char table is single characters, with {EOT!r} at most once")
        self.chars, self.name, self.vocab_size = chars, "char", len(chars)
        self.eot_id = chars.index(EOT) if EOT in chars else None
        ids = [i for i, c in enumerate(chars) if c != EOT]
        codepoints = np.array([ord(chars[i]) for i in ids], dtype=np.int64)
        self.lut = np.full(int(codepoints.max(initial=0)) + 2, -1, dtype=np.int32)  # code point -> id; -1: none
        self.lut[codepoints] = ids

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharTokenizer":
        """The table of every character in texts (a dataset's whole text, so that every val character has an id)."""
        chars = set()
        for text in texts:
            counts = np.bincount(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))  # 10x faster than set()
            chars.update(map(chr, np.flatnonzero(counts)))
        return cls([EOT, *sorted(chars)])

    def encode(self, text: str) -> list[int]:
        if EOT in text and self.eot_id is None:
            raise ValueError(f"this char table has no {EOT}")
        first, *rest = (self.encode_array(part).tolist() for part in text.split(EOT))
        return first + [i for part in rest for i in (self.eot_id, *part)]

    def encode_array(self, text: str) -> np.ndarray:
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        ids = self.lut.take(codepoints, mode="clip")  # code points past the table clip to its last entry, -1
        if len(ids) and ids.min() < 0:
            bad = text[int(np.argmax(ids < 0))]
            raise ValueError(f"character {bad!r} (U+{ord(bad):04X}) is not in the char table")
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids if i < self.vocab_size)

    def token_bytes(self, i: int) -> bytes:
        return self.chars[i].encode()

    def meta(self) -> dict:
        return {**super().meta(), "chars": self.chars}


def gpt2_tokenizer(encoding: tiktoken.Encoding | None = None) -> BPETokenizer:
    """GPT-2's BPE; tiktoken downloads its two files on first use, so offline this raises one clear RuntimeError."""
    if encoding is None:
        try:
            encoding = tiktoken.get_encoding("gpt2")
        except (OSError, ValueError) as e:  # requests' connection errors are OSErrors; a bad download, ValueError
            cache = os.environ.get("TIKTOKEN_CACHE_DIR", "the system temp folder's data-gym-cache")
            raise RuntimeError(f"tiktoken could not load GPT-2's BPE files (vocab.bpe, encoder.json) from {cache} or "
                               f"download them ({type(e).__name__}); run once with network access, or copy a tiktoken "
                               "cache that holds them to a folder and set TIKTOKEN_CACHE_DIR to it") from e  # fmt: skip
    return BPETokenizer(encoding)


def same_vocabulary(meta: dict, other: dict) -> bool:
    """Whether two meta.json files describe the same token ids."""
    return all(meta.get(k) == other.get(k) for k in ("tokenizer", "vocab_size", "chars", "bpe"))


def train_bpe(texts: Iterable[str], vocab_size: int) -> tiktoken.Encoding:
    """A byte-level BPE learnt from texts as GPT-2's was: split by GPT-2's pattern, start from the 256 bytes, merge
    the most frequent adjacent pair into a new token until there are vocab_size - 1, then add <|endoftext|>. Ties go
    to the smaller bytes, so the same texts always give the same tokens."""
    counts = Counter(piece for text in texts for piece in regex.findall(GPT2_PATTERN, text))
    tokens = [bytes([i]) for i in range(256)]
    words, freq = [list(piece.encode()) for piece in counts], list(counts.values())
    pairs, where = Counter(), defaultdict(set)  # each adjacent pair's count, and the words it is in
    for w, ids in enumerate(words):
        for pair in zip(ids, ids[1:]):
            pairs[pair] += freq[w]
            where[pair].add(w)
    heap = [(-n, tokens[a] + tokens[b], (a, b)) for (a, b), n in pairs.items()]
    heapq.heapify(heap)
    while len(tokens) < vocab_size - 1 and heap:
        n, _, pair = heapq.heappop(heap)
        if -n != pairs[pair] or n == 0:
            continue  # an entry from before the pair's count changed
        new, changed = len(tokens), set()
        tokens.append(tokens[pair[0]] + tokens[pair[1]])
        for w in where.pop(pair):
            ids, merged, i = words[w], [], 0
            while i < len(ids):
                step = 2 if (ids[i], ids[i + 1] if i + 1 < len(ids) else None) == pair else 1
                merged.append(new if step == 2 else ids[i])
                i += step
            for old, gained in ((ids, -freq[w]), (merged, freq[w])):  # the word's pairs out, the merged word's in
                for p in zip(old, old[1:]):
                    pairs[p] += gained
                    changed.add(p)
                    if gained > 0:
                        where[p].add(w)
            words[w] = merged
        for p in changed:
            if pairs[p] > 0:
                heapq.heappush(heap, (-pairs[p], tokens[p[0]] + tokens[p[1]], p))
    ranks = {token: i for i, token in enumerate(tokens)}
    return tiktoken.Encoding("bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: len(tokens)})


def load_tokenizer(meta: dict, encoding: tiktoken.Encoding | None = None) -> Tokenizer:
    """The tokenizer a dataset was written with, from its meta.json alone (`encoding` replaces GPT-2's in tests)."""
    if meta.get("tokenizer") == "char":
        return CharTokenizer(list(meta["chars"]))
    if meta.get("tokenizer") == "gpt2":
        return gpt2_tokenizer(encoding)
    if meta.get("tokenizer") == "bpe":
        ranks = {bytes.fromhex(token): i for i, token in enumerate(meta["bpe"])}
        learnt = tiktoken.Encoding("bpe", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: len(ranks)})
        return BPETokenizer(learnt, name="bpe")
    raise ValueError(f"meta.json names an unknown tokenizer {meta.get('tokenizer')!r} (expected gpt2, bpe or char)")
