"""Checkpoints and the models they hold: ours and nanoGPT's ckpt.pt files, and Hugging Face's GPT-2 and GPT-Neo folders
(from the Hub or a local folder). The one loader every script shares.

A checkpoint is a dict with nanoGPT's keys, so nanoGPT's ckpt.pt files load here and ours in nanoGPT: model (the
unwrapped, uncompiled state_dict), optimizer, model_args (nanoGPT's seven GPTConfig fields, the others only where they
differ from GPT-2's), config (the user's), iter_num, best_val_loss; ours add scaler, resolved (device, dtype, ...), best
(the figure best.pt is chosen by), rng and sampler (every rank's random streams), meta (the dataset's meta.json), base
(the pretrained weights of LoRA adapters saved alone). Only tensors and primitives go in, for weights_only loads.
"""

import dataclasses
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import torch

from haikugpt.files import atomic_write
from model import GPT, GPTConfig, add_adapters

NANOGPT_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")  # its GPTConfig
PRETRAINED = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # OpenAI's four sizes: 124M, 350M, 774M, 1558M
NEO = ("EleutherAI/gpt-neo-125M", "EleutherAI/gpt-neo-1.3B", "EleutherAI/gpt-neo-2.7B")  # EleutherAI's, on the Pile
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def build_checkpoint(
    model: GPT, config: dict, meta: dict | None, resolved: dict | None = None, optimizer=None, scaler=None,
    iter_num: int = 0, best_val_loss: float = float("inf"), best: dict | None = None, rng: list | None = None,
    sampler: list | None = None,
) -> dict:  # fmt: skip
    """The checkpoint of an unwrapped, uncompiled model and what a resumed run needs to continue exactly."""
    weights, base = model.state_dict(), getattr(model, "base", None) if model.config.lora_rank else None
    if base:
        weights = {k: v for k, v in weights.items() if k.endswith(("lora_A", "lora_B"))}
    default = dataclasses.asdict(GPTConfig())  # model_args: nanoGPT's seven fields, then any not at GPT-2's value
    args = {k: v for k, v in dataclasses.asdict(model.config).items() if k in NANOGPT_ARGS or v != default[k]}
    return {"model": weights, "base": base, "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            "model_args": args, "config": dict(config), "resolved": dict(resolved or {}),
            "iter_num": iter_num, "best_val_loss": best_val_loss,
            "best": best or {"metric": "val/loss", "value": best_val_loss}, "rng": rng, "sampler": sampler,
            "meta": meta}  # fmt: skip


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    """Write ckpt to path atomically: a crash, a kill or a full disk leaves either the old file or the new one."""
    atomic_write(Path(path), lambda f: torch.save(ckpt, f), size=tensor_bytes(ckpt))


def tensor_bytes(obj) -> int:
    """The bytes of the tensors in nested dicts and lists, each storage once: about a checkpoint's size on disk."""
    storages, todo = {}, [obj]
    while todo:
        obj = todo.pop()
        if isinstance(obj, torch.Tensor):
            storages[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
        elif isinstance(obj, (dict, list, tuple)):
            todo.extend(obj.values() if isinstance(obj, dict) else obj)
    return sum(storages.values())


def checkpoint_path(path_or_out_dir: str | Path, best: bool = False) -> Path:
    """A checkpoint file itself (*.pt), or an out_dir's ckpt.pt (its best.pt, when best and there is one)."""
    path = Path(path_or_out_dir)
    if path.suffix == ".pt" and not path.is_dir():
        return path
    return path / "best.pt" if best and (path / "best.pt").is_file() else path / "ckpt.pt"


def load_checkpoint(path_or_out_dir: str | Path, best: bool = False) -> dict:
    """A checkpoint file, or out_dir's ckpt.pt (best.pt with best=True), on the CPU, with clean state_dict keys and
    every entry present; nanoGPT's files load too."""
    path = checkpoint_path(path_or_out_dir, best)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python train.py --out_dir={path.parent}` "
                                "(plus your config file), or pass the file itself")  # fmt: skip
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights_only" in str(e) and (unsafe := re.search(r"(?:GLOBAL|global) ([\w.]+)", str(e))):
            raise RuntimeError(
                f"{path} holds objects other than weights ({unsafe.group(1)}) and was not loaded: "
                "unpickling it could run code; use checkpoints from train.py, or ones you trust"
            ) from None
        first_line = str(e).strip().partition("\n")[0]
        raise RuntimeError(f"cannot read checkpoint {path}: {type(e).__name__}: {first_line}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise RuntimeError(f"{path} is not a training checkpoint (no 'model' and 'model_args' entries)")
    # the prefixes torch.compile and DDP add to parameter names
    ckpt["model"] = {re.sub(r"^(?:_orig_mod\.|module\.)+", "", k): v for k, v in ckpt["model"].items()}
    ckpt["best_val_loss"] = float(ckpt.get("best_val_loss", float("inf")))  # nanoGPT stores a tensor
    absent = {"best": {"metric": "val/loss", "value": ckpt["best_val_loss"]}, "config": {}, "resolved": {}}
    return absent | dict.fromkeys(("meta", "scaler", "optimizer", "rng", "sampler", "base")) | ckpt


def model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu") -> GPT:
    """The GPT a checkpoint describes (a classifier's without its head), built on the meta device (no throwaway random
    init), given the weights and moved to device, in train mode. Adapters with a base: the base, then them."""
    weights = ckpt["model"]
    if "score.weight" in weights:  # classify.py's: the GPT is under gpt.
        weights = {k.removeprefix("gpt."): v for k, v in weights.items() if k.startswith("gpt.")}
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["model_args"].items()}
    config = GPTConfig(**{k: v for k, v in args.items() if k in GPTConfig.__dataclass_fields__})
    if ckpt["base"]:
        model = load_pretrained(ckpt["base"], dropout=config.dropout, block_size=config.block_size)
        add_adapters(model, **{k: v for k, v in vars(config).items() if k.startswith("lora_")})
    else:
        with on_meta():
            model = GPT(config)
    only = ("lora_A", "lora_B") if ckpt["base"] else ()
    load_weights(model, weights, "the checkpoint's weights do not fit its model_args", only)
    return model.to(device)


@contextmanager
def on_meta() -> Iterator[None]:
    """Build modules on the meta device, for weights about to be assigned: no memory and no throwaway random init.
    torch.nn's initialisers are off meanwhile (as in transformers): on meta they import torch._dynamo, 1.5 s a load."""
    names = ("normal_", "uniform_", "kaiming_uniform_", "zeros_", "ones_")
    with mock.patch.multiple(torch.nn.init, **dict.fromkeys(names, lambda t, *args, **kwargs: t)), torch.device("meta"):
        yield


def load_weights(model: GPT, state_dict: dict, misfit: str, only: tuple[str, ...] = ()) -> None:
    """Assign weights to model (those whose names end with `only`, if given), shape-checked: if they do not fit, one
    line that starts with misfit. The tied lm_head is wte, whether the weights hold it or not."""
    expected = {k: v for k, v in model.state_dict().items() if (not only or k.endswith(only)) and k != "lm_head.weight"}
    skip = (".attn.bias", ".attn.masked_bias", "lm_head.weight")  # the causal masks of older files are not weights
    state = {k: v for k, v in state_dict.items() if not k.endswith(skip)}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:  # one line, not torch's list of every mismatching tensor
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        if wrong:
            detail = f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the model's {tuple(expected[wrong[0]].shape)}"
        raise RuntimeError(f"{misfit} ({detail})")
    model.load_state_dict(state, assign=True, strict=False)
    model.tie_weights()  # assign=True gave wte a new parameter: lm_head shares it again


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face folders: GPT-2 stores its four projections as Conv1D weights, (in, out), the transpose of nn.Linear's.
# GPT-Neo stores nn.Linear weights, with separate query, key and value projections, fused here into c_attn.


def check_name(name_or_path: str) -> Path | None:
    """The local folder name_or_path names, or None for a Hub name; an error for anything else (before downloading)."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: it is not a Hugging Face model folder")
    if not folder.is_dir() and name_or_path not in (*PRETRAINED, *NEO):
        names = ", ".join([*PRETRAINED, *NEO])
        raise ValueError(f"unknown model {name_or_path!r}: use one of {names}, or a local Hugging Face folder")
    return folder if folder.is_dir() else None


def load_pretrained(name_or_path: str, dropout: float = 0.0, block_size: int | None = None) -> GPT:
    """A GPT with the weights of a Hub name (gpt2 ... gpt2-xl, EleutherAI/gpt-neo-*) or a local Hugging Face GPT-2 or
    GPT-Neo folder; block_size no larger than the pretrained one crops the position table."""
    local = check_name(name_or_path)
    folder = local or download(name_or_path)
    path = folder / "config.json"
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if hf.get("model_type") not in ("gpt2", "gpt_neo"):
        raise ValueError(f"{path} describes a {hf.get('model_type')!r} model, not GPT-2 or GPT-Neo")
    config = gpt_config(hf, path, dropout, block_size)
    if (folder / "model.safetensors").is_file():
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise RuntimeError("reading model.safetensors needs safetensors: pip install safetensors") from None
        weights = load_file(folder / "model.safetensors")
    elif (folder / "pytorch_model.bin").is_file():
        weights = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{folder} has no model.safetensors or pytorch_model.bin")
    state = state_from_hf(weights, neo=hf["model_type"] == "gpt_neo")
    if "transformer.wpe.weight" in state:
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: config.block_size]  # crop the positions
    with on_meta():
        model = GPT(config)
    load_weights(model, state, f"{folder}: the weights do not fit its config.json")
    model.base = str(local.resolve()) if local else name_or_path  # where a checkpoint of LoRA adapters finds its base
    return model


def gpt_config(hf: dict, path: Path, dropout: float = 0.0, block_size: int | None = None) -> GPTConfig:
    """The GPTConfig of a Hugging Face config.json; an error naming any field the model cannot express."""
    neo = hf["model_type"] == "gpt_neo"
    keys = ("num_layers", "num_heads", "hidden_size") if neo else ("n_layer", "n_head", "n_embd")
    n_layer, n_head, n_embd = (hf[k] for k in keys)
    positions = hf["max_position_embeddings" if neo else "n_positions"]
    for field, ok, expected in [  # ok[0] is the default
        ("activation_function", ["gelu_new"], "gelu_new"),
        ("intermediate_size" if neo else "n_inner", [None, 4 * n_embd], f"4 x the width, {4 * n_embd}"),
        ("layer_norm_epsilon", [1e-5], "1e-5"),
        ("scale_attn_by_inverse_layer_idx", [False], "false"),
        ("reorder_and_upcast_attn", [False], "false"),
        ("scale_attn_weights", [True], "true"),
    ]:
        if (value := hf.get(field, ok[0])) not in ok:
            raise ValueError(f"{path}: {field}={value!r} is not something this model can express ({expected})")
    local = []
    if neo:  # attention_types: [[["global", "local"], 12]] means global, local, global, local, ...
        layers = [kind for kinds, repeat in hf["attention_types"] for _ in range(repeat) for kind in kinds]
        if len(layers) != n_layer or set(layers) - {"global", "local"}:
            raise ValueError(f"{path}: attention_types={hf['attention_types']} is not something this model can "
                             "express (global and local, one per layer)")  # fmt: skip
        local = [i for i, kind in enumerate(layers) if kind == "local"]
    if block_size is not None and not 0 < block_size <= positions:
        raise ValueError(f"block_size {block_size} must be between 1 and the pretrained {positions}")
    return GPTConfig(
        block_size=block_size or positions, vocab_size=hf["vocab_size"], n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        dropout=dropout, bias=True, scale_attn=not neo, qkv_bias=not neo, local_layers=tuple(local),
        window_size=hf.get("window_size", 256),
    )  # fmt: skip


def download(name: str) -> Path:
    """The cached or fetched folder of a Hub model's config.json and weights (model.safetensors, else the .bin)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise RuntimeError(f"loading {name} needs huggingface_hub: pip install huggingface_hub safetensors") from None
    repo = name if name in NEO else f"openai-community/{name}"
    try:
        folder = Path(snapshot_download(repo, allow_patterns=["config.json", "model.safetensors"]))
        if not (folder / "model.safetensors").is_file():
            folder = Path(snapshot_download(repo, allow_patterns=["config.json", "pytorch_model.bin"]))
        return folder
    except Exception as e:  # offline, no cache, Hub errors: all mean the same thing to the user
        raise RuntimeError(
            f"could not download {name} from the Hugging Face Hub, nor find it in the local cache ({type(e).__name__});"
            " connect to the network, or pass the path of a local Hugging Face folder (config.json + model.safetensors)"
        ) from None


def state_from_hf(hf_state: dict[str, torch.Tensor], neo: bool) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 or GPT-Neo tensors under this model's names: GPT-2's Conv1D weights transposed, GPT-Neo's
    q, k and v fused into c_attn and out_proj named c_proj (its masks become attn.bias, which load_weights skips)."""
    state = {}
    for key, t in hf_state.items():
        key = "transformer." + key.removeprefix("transformer.")
        key = key.replace("attn.attention.", "attn.").replace("out_proj", "c_proj")  # GPT-Neo's
        state[key] = (t.t() if key.endswith(CONV1D_WEIGHTS) and not neo else t).contiguous()
    for prefix in [k.removesuffix(".q_proj.weight") for k in state if k.endswith(".q_proj.weight")]:  # GPT-Neo's
        parts = [state.pop(f"{prefix}.{p}_proj.weight") for p in "qkv"]
        state[f"{prefix}.c_attn.weight"] = torch.cat(parts, dim=0)  # (3C, C): q, k, v as c_attn splits
    return state
