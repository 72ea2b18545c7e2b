"""Fixtures shared by the test files: tiny tokenizers, tiny datasets and tiny trained checkpoints, all made here, so
no test downloads anything. Markers: `slow` (benchmarks, page faults, torchrun; run by default, skip them with
-m "not slow") and `cuda` (run only where a CUDA GPU is present)."""

import json
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import torch

REPO = Path(__file__).resolve().parent.parent
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and lose a lot when another process holds the other core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """The lexicon's cache (form.cache_path) in a folder of the session's, for the scripts the tests run too."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def gpt2_pattern() -> str:
    """GPT-2's pre-tokenizer pattern."""
    return GPT2_PATTERN


def make_tiny_encoding(eot_id: int | None = None) -> tiktoken.Encoding:
    ranks = {bytes([i]): i for i in range(256)} | {b"th": 256, b"the": 257}
    eot = {"<|endoftext|>": len(ranks) if eot_id is None else eot_id}
    return tiktoken.Encoding("tiny", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=eot)


@pytest.fixture(scope="session")
def tiny_encoding():
    """A factory of GPT-2-style BPEs small enough to build in a test: GPT-2's pattern, the 256 bytes, two merges
    ("th", "the") and <|endoftext|> (id 258 unless eot_id says otherwise)."""
    return make_tiny_encoding


@pytest.fixture
def tiny_gpt2_bpe(monkeypatch):
    """GPT-2's BPE files cannot be downloaded here: the GPT-2 tokenizer becomes the tiny encoding."""
    monkeypatch.setattr("haikugpt.tokenizer.tiktoken.get_encoding", lambda name: make_tiny_encoding())


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """The embedded corpus's haiku."""
    return (REPO / "prepare" / "haiku_corpus.txt").read_text().strip().split("\n\n")


@pytest.fixture(scope="session")
def write_bins():
    """A factory: train.bin, val.bin and meta.json as prepare/ writes them, one id per character, 0 after each haiku."""

    def write(folder: Path, haiku: list[str], tokenizer: str = "char") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        chars = sorted(set("".join(haiku)))
        ids = np.array([i for h in haiku for i in [*(chars.index(c) + 1 for c in h), 0]], dtype=np.uint16)
        cut = len(ids) * 9 // 10
        ids[:cut].tofile(folder / "train.bin")
        ids[cut:].tofile(folder / "val.bin")
        meta = {"tokenizer": tokenizer, "vocab_size": len(chars) + 1, "eot_id": 0, "chars": ["<|endoftext|>", *chars]}
        (folder / "meta.json").write_text(json.dumps({**meta, "dataset": "haiku"}))
        return folder

    return write


def train_tiny(data_dir: Path, out_dir: Path, steps: int = 200, **model_args) -> Path:
    """A tiny model trained for a few steps on data_dir's haiku, saved as train.py saves it; returns out_dir."""
    from haikugpt.checkpoint import build_checkpoint, save_checkpoint
    from haikugpt.run import read_meta
    from model import GPT, GPTConfig

    meta = read_meta(data_dir)
    vocab_size = -(-meta["vocab_size"] // 64) * 64  # padded, as train.py pads it
    shape = {"block_size": 64, "vocab_size": vocab_size, "n_layer": 2, "n_head": 2, "n_embd": 32}
    model = GPT(GPTConfig(**shape | model_args), seed=0)
    data = torch.from_numpy(np.fromfile(data_dir / "train.bin", dtype=np.uint16).astype(np.int64))
    optimizer = model.configure_optimizers(0.0, 2e-2, (0.9, 0.99), "cpu")  # a high rate: a few steps must do
    gen = torch.Generator().manual_seed(0)
    T = 32
    for _ in range(steps):
        ix = torch.randint(len(data) - T - 1, (32,), generator=gen).tolist()
        x = torch.stack([data[i : i + T] for i in ix])  # (32, T)
        y = torch.stack([data[i + 1 : i + T + 1] for i in ix])
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    config = {"dataset": str(data_dir)}
    ckpt = build_checkpoint(model, config, meta, optimizer=optimizer, iter_num=steps, best_val_loss=loss.item())
    save_checkpoint(ckpt, out_dir / "ckpt.pt")
    return out_dir


@pytest.fixture(scope="session")
def train_checkpoint():
    """A factory: train_tiny(data_dir, out_dir, steps=200, **model_args) -> out_dir."""
    return train_tiny


@pytest.fixture(scope="session")
def char_run(tmp_path_factory) -> Path:
    """out_dir of a tiny char model trained on the embedded corpus, whose data is the sibling folder haiku_char."""
    from prepare import haiku

    root = tmp_path_factory.mktemp("char")
    haiku.prepare(out_dir=root / "haiku_char", tokenizer="char")
    return train_tiny(root / "haiku_char", root / "out")


@pytest.fixture(scope="session")
def bpe_run(tmp_path_factory) -> Path:
    """out_dir of a tiny model trained on the embedded corpus in the tiny BPE (data: the sibling folder haiku)."""
    from prepare import haiku

    root = tmp_path_factory.mktemp("bpe")
    haiku.prepare(out_dir=root / "haiku", tokenizer="gpt2", encoding=make_tiny_encoding())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("haikugpt.tokenizer.tiktoken.get_encoding", lambda name: make_tiny_encoding())
        return train_tiny(root / "haiku", root / "out", steps=600)  # byte-level tokens learn more slowly than chars


@pytest.fixture(scope="session")
def hf_gpt2():
    """A factory of tiny random Hugging Face GPT-2 models whose weights are large enough to separate the logits."""
    transformers = pytest.importorskip("transformers")

    def make(vocab_size: int = 50, n_positions: int = 24, n_embd: int = 16, scale: float = 0.2):
        config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=n_embd, vocab_size=vocab_size,
                                         n_positions=n_positions, bos_token_id=0, eos_token_id=0)  # fmt: skip
        torch.manual_seed(0)
        hf = transformers.GPT2LMHeadModel(config).eval()
        if scale:
            with torch.no_grad():
                for p in hf.parameters():
                    p.normal_(0.0, scale)
        return hf

    return make
