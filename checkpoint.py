"""Save and load training checkpoints; the one copy of this code, shared by train.py, sample.py and export.py.

A checkpoint is a dict with nanoGPT's keys, so nanoGPT's own ckpt.pt files load here too:
    model       state_dict of the unwrapped, uncompiled model
    optimizer   AdamW state_dict
    scaler      GradScaler state_dict (float16 training) or None
    model_args  the GPTConfig fields
    config      the full resolved training config
    iter_num    the step the checkpoint was taken after
    best_val_loss
    rng         one dict per DDP rank: torch / cuda / python / numpy generator states
    sampler     one torch.Generator state per DDP rank: where the random training windows continue from
    meta        the dataset's meta.json, so sampling needs no data folder
Only tensors and Python primitives go inside, so loading uses torch.load(weights_only=True).
"""

import dataclasses
import os
import random
from pathlib import Path

import numpy as np
import torch

CKPT_NAME = "ckpt.pt"  # the latest checkpoint; best.pt beside it holds the one with the best val loss


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    """Write ckpt to path atomically: a crash at any moment leaves either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder, so the rename is atomic
    try:
        with open(tmp, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in folder durable (POSIX only; Windows cannot open a directory)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_path(path_or_out_dir: str | Path, best: bool = False) -> Path:
    """A checkpoint file itself (*.pt), or an out_dir's ckpt.pt (its best.pt, when best and there is one)."""
    path = Path(path_or_out_dir)
    if path.suffix == ".pt" and not path.is_dir():
        return path
    return path / "best.pt" if best and (path / "best.pt").is_file() else path / CKPT_NAME


def load_checkpoint(path_or_out_dir: str | Path, map_location: str | torch.device = "cpu", best: bool = False) -> dict:
    """Load a checkpoint file, or out_dir's ckpt.pt (best.pt with best=True, to sample or export the best model),
    with clean state_dict keys; nanoGPT's files load too."""
    path = checkpoint_path(path_or_out_dir, best)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; train one with `python train.py --out_dir={path.parent}` "
            "(plus your config file), or pass the file itself"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise RuntimeError(f"{path} is not a training checkpoint (no 'model' and 'model_args' entries)")
    ckpt["model"] = clean_state_dict(ckpt["model"])
    # nanoGPT stores best_val_loss as a tensor and has no meta; give every reader the same shape
    ckpt["best_val_loss"] = float(ckpt.get("best_val_loss", float("inf")))
    ckpt.setdefault("meta", None)
    ckpt.setdefault("scaler", None)
    return ckpt


def clean_state_dict(state_dict: dict) -> dict:
    """Strip the prefixes torch.compile ('_orig_mod.') and DDP ('module.') add to parameter names."""
    prefixes = ("_orig_mod.", "module.")
    cleaned = {}
    for key, value in state_dict.items():
        while key.startswith(prefixes):
            key = key.split(".", 1)[1]
        cleaned[key] = value
    return cleaned


def model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu"):
    """Build the GPT a checkpoint describes, load its weights and move it to device (in train mode)."""
    from model import GPT, GPTConfig

    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    model = GPT(GPTConfig(**{k: v for k, v in ckpt["model_args"].items() if k in fields}))
    state_dict = dict(ckpt["model"])
    expected = model.state_dict()
    # older nanoGPT models registered the causal mask as a buffer named attn.bias; it is not a weight
    for key in [k for k in state_dict if k not in expected and k.endswith((".attn.bias", ".attn.masked_bias"))]:
        del state_dict[key]
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or wrong:  # one line, not torch's list of every mismatching tensor
        detail = (
            f"{wrong[0]} is {tuple(state_dict[wrong[0]].shape)}, model_args make it {tuple(expected[wrong[0]].shape)}"
            if wrong
            else f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
        raise RuntimeError(f"the checkpoint's weights do not fit its model_args ({detail})")
    model.load_state_dict(state_dict)
    return model.to(device)


def rng_state(device: torch.device) -> dict:
    """Every random generator a training step may touch (dropout; numpy and random for code you add)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),  # weights_only loads no numpy arrays
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state((state["numpy"][0], np.array(state["numpy"][1], dtype=np.uint32), *state["numpy"][2:]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
