"""Datasets on disk: where they live, their meta.json, and the random windows training reads from their token bins.

    from data import find_dataset, read_meta, Split
    folder = find_dataset("haiku_char")                   # a name under data/, or a path
    meta = read_meta(folder)                              # meta.json, checked; nanoGPT's meta.pkl too
    x, y = Split(folder / "train.bin", block_size=64).batch(32, generator, device)

A dataset is a folder with train.bin and val.bin (uint16 token ids, documents separated by the end-of-text id) and
meta.json (tokenizer, vocab_size, end-of-text id, the char table for char data), as the scripts in prepare/ write it.
nanoGPT's char datasets keep their table in meta.pkl instead; it is read with an unpickler that builds nothing but
plain dicts, lists, strings and numbers.
"""

import json
import pickle
from pathlib import Path

import numpy as np
import torch

from tokenizer import EOT, Tokenizer

REPO_ROOT = Path(__file__).resolve().parent
PREPARE_COMMANDS = {
    "haiku": "python prepare/haiku.py",
    "haiku_bpe": "python prepare/haiku.py --tokenizer bpe",
    "haiku_char": "python prepare/haiku.py --tokenizer char",
    "haiku_seasons": "python prepare/labelled.py",
    "haiku_seasons_char": "python prepare/labelled.py --tokenizer char",
    "haiku_seasons_gpt2": "python prepare/labelled.py --tokenizer gpt2",
    "openwebtext": "python prepare/openwebtext.py",
}


def dataset_dir(name: str) -> Path | None:
    """The folder of dataset name: a path, data/<name> in the current directory, or data/<name> in the repository."""
    for folder in (Path(name).expanduser(), Path("data") / name, REPO_ROOT / "data" / name):
        if folder.is_dir():
            return folder
    return None


def find_dataset(name: str, files: tuple[str, ...] = ("train.bin", "val.bin")) -> Path:
    """The dataset's folder, with its files and a meta; an error naming the prepare command if it is missing."""
    folder = dataset_dir(name)
    if folder is None or not (folder / files[0]).is_file():
        command = PREPARE_COMMANDS.get(name, f"python prepare/text.py --input YOUR_TEXT --name {name}")
        raise FileNotFoundError(f"dataset {name!r} is not prepared (no {REPO_ROOT / 'data' / name / files[0]}); "
                                f"run `{command}`")  # fmt: skip
    for file in files[1:]:
        if not (folder / file).is_file():
            raise FileNotFoundError(f"{folder} has {files[0]} but no {file}; rerun its prepare script")
    return folder


def read_meta(folder: Path) -> dict:
    """A dataset's meta.json, checked for the keys the scripts rely on; nanoGPT's meta.pkl where there is no json."""
    path = Path(folder) / "meta.json"
    if not path.is_file() and (Path(folder) / "meta.pkl").is_file():
        return read_nanogpt_meta(Path(folder) / "meta.pkl")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} has no meta.json; rerun its prepare script") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rerun its prepare script") from None
    missing = [k for k in ("tokenizer", "vocab_size") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ValueError(f"{path} has no {' or '.join(missing)}; rerun its prepare script")
    return meta


class _PlainData(pickle.Unpickler):
    """Builds dicts, lists, strings and numbers; any class or function in the pickle is refused, never called."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not plain data")


def read_nanogpt_meta(path: Path) -> dict:
    """nanoGPT's meta.pkl (vocab_size, itos, stoi of a char dataset) as a meta.json would hold it."""
    try:
        with open(path, "rb") as f:
            pkl = _PlainData(f).load()
        chars = [pkl["itos"][i] for i in range(pkl["vocab_size"])]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path} is not a nanoGPT char table ({e}); it was not loaded") from None
    return {"tokenizer": "char", "vocab_size": len(chars), "chars": chars, "eot_id": None, "dataset": path.parent.name}


class Split:
    """One split's tokens (a memmapped uint16 .bin), from which random windows of block_size + 1 are drawn."""

    def __init__(self, path: Path, block_size: int):
        self.path, self.block_size = path, block_size
        n = len(self.tokens())
        if n <= block_size:
            raise ValueError(f"{path} holds {n} tokens, too few for block_size {block_size}; lower block_size")

    def tokens(self) -> np.memmap:
        return np.memmap(self.path, dtype=np.uint16, mode="r")

    def batch(
        self, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs x and targets y (x shifted by one), both (batch_size, block_size) int64 on device."""
        data = self.tokens()  # opened per batch: the pages a long-lived memmap has read stay in our memory
        T = self.block_size
        starts = torch.randint(len(data) - T, (batch_size,), generator=generator).tolist()
        x = torch.from_numpy(np.stack([data[i : i + T] for i in starts]).astype(np.int64))
        y = torch.from_numpy(np.stack([data[i + 1 : i + 1 + T] for i in starts]).astype(np.int64))
        return to_device(x, device), to_device(y, device)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":  # pinned memory lets the copy overlap with the GPU's work
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def documents(folder: Path, split: str, tokenizer: Tokenizer) -> list[str]:
    """The documents of a split, decoded: the text between end-of-text ids."""
    ids = np.fromfile(Path(folder) / f"{split}.bin", dtype=np.uint16).tolist()
    return [doc for doc in tokenizer.decode(ids).split(EOT) if doc.strip()]
