"""Build, save and load training checkpoints; the one copy of this code, shared by train.py, classify.py, sample.py,
export.py and bench.py.

A checkpoint is a dict with nanoGPT's keys, so nanoGPT's own ckpt.pt files load here too:
    model       state_dict of the unwrapped, uncompiled model
    optimizer   AdamW state_dict (None in a checkpoint made only to sample from)
    scaler      GradScaler state_dict (float16 training) or None
    model_args  the GPTConfig fields
    config      the user's config: the config files and --key=value overrides over the script's DEFAULTS
    resolved    what the run resolved from it: device, dtype, compile, ranks, parameters
    iter_num    the step the checkpoint was taken after
    best_val_loss
    rng         one dict per DDP rank: torch / cuda / python / numpy generator states
    sampler     one torch.Generator state per DDP rank: where the random training windows continue from
    meta        the dataset's meta.json, so sampling needs no data folder
    base        (LoRA adapters trained on pretrained weights) the Hub name or folder of those weights: then `model`
                holds the adapters alone, and loading reads the base and adds them (lora.py)
Only tensors and Python primitives go inside, so loading uses torch.load(weights_only=True): a file that holds
anything else (a pickle that could run code) is refused.
"""

import dataclasses
import random
import re
from pathlib import Path

import numpy as np
import torch

import lora
from files import atomic_write

CKPT_NAME = "ckpt.pt"  # the latest checkpoint; best.pt beside it holds the one with the best val loss


def build_checkpoint(
    model: torch.nn.Module,
    config: dict,
    meta: dict | None,
    resolved: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    iter_num: int = 0,
    best_val_loss: float = float("inf"),
    rng: list | None = None,
    sampler: list | None = None,
) -> dict:
    """The checkpoint dict of an unwrapped, uncompiled model and what a resumed run needs to continue exactly; of
    LoRA adapters on pretrained weights, the adapters alone and the name of their base."""
    base = getattr(model, "base", None) if getattr(model.config, "lora_rank", 0) else None
    return {
        "model": lora.adapter_state(model) if base else model.state_dict(),
        "base": base,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "model_args": dataclasses.asdict(model.config),
        "config": dict(config),
        "resolved": dict(resolved or {}),
        "iter_num": iter_num,
        "best_val_loss": best_val_loss,
        "rng": rng,
        "sampler": sampler,
        "meta": meta,
    }


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    """Write ckpt to path atomically: a crash, a kill or a full disk leaves either the old file or the new one."""
    atomic_write(Path(path), lambda f: torch.save(ckpt, f), size=tensor_bytes(ckpt))


def tensor_bytes(obj, seen: set | None = None) -> int:
    """The bytes of the tensors in nested dicts and lists, each storage once: about a checkpoint's size on disk."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, dict):
        obj = list(obj.values())
    return sum(tensor_bytes(item, seen) for item in obj) if isinstance(obj, (list, tuple)) else 0


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
        unsafe = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(e)) if "weights_only" in str(e) else None
        if unsafe:
            raise RuntimeError(
                f"{path} holds objects other than weights ({unsafe.group(1)}) and was not loaded: unpickling it could "
                "run code; use checkpoints from train.py, or ones you trust"
            ) from None
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RuntimeError(f"cannot read checkpoint {path}: {type(e).__name__}: {first_line}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise RuntimeError(f"{path} is not a training checkpoint (no 'model' and 'model_args' entries)")
    ckpt["model"] = clean_state_dict(ckpt["model"])
    # nanoGPT stores best_val_loss as a tensor and has no meta; give every reader the same shape
    ckpt["best_val_loss"] = float(ckpt.get("best_val_loss", float("inf")))
    for key in ("meta", "scaler", "optimizer", "rng", "sampler", "base"):
        ckpt.setdefault(key, None)
    ckpt.setdefault("config", {})
    ckpt.setdefault("resolved", {})
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
    """The GPT a checkpoint describes, built on the meta device (no throwaway random init), then given the
    checkpoint's weights and moved to device (in train mode). LoRA adapters with a base: the base, then the adapters."""
    from model import GPT, GPTConfig

    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    config = GPTConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["model_args"].items() if k in fields}
    )
    if ckpt["base"]:
        model = GPT.from_pretrained(ckpt["base"], dropout=config.dropout, block_size=config.block_size)
        for key in ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets"):
            setattr(model.config, key, getattr(config, key))
        lora.add_adapters(model)
        load_weights(model, ckpt["model"], only=lora.ADAPTERS)
        return model.to(device)
    with torch.device("meta"):
        model = GPT(config)
    load_weights(model, ckpt["model"])
    model.tie_weights()  # assign=True gave wte and lm_head a parameter each: share one again
    return model.to(device)


def load_weights(model, state_dict: dict, only: tuple[str, ...] = ()) -> None:
    """Assign a checkpoint's weights to model (those whose names end with `only`, if given), checked in one line."""
    state_dict = dict(state_dict)
    expected = {k: v for k, v in model.state_dict().items() if not only or k.endswith(only)}
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
    model.load_state_dict(state_dict, assign=True, strict=not only)


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
