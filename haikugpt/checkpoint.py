"""Checkpoints and the models they hold: ours and nanoGPT's ckpt.pt files, and Hugging Face's GPT-2 and GPT-Neo folders
(OpenAI's and EleutherAI's weights, from the Hub or a local folder). The one loader train.py, classify.py, sample.py,
export.py and bench.py share.

A checkpoint is a dict with nanoGPT's keys, so nanoGPT's ckpt.pt files load here and ours in nanoGPT: model (the
unwrapped, uncompiled state_dict), optimizer, model_args (nanoGPT's seven GPTConfig fields; GPT-Neo's and LoRA's
only where they differ from GPT-2's), config (the user's), iter_num, best_val_loss; and ours add scaler, resolved
(device, dtype, ...), best (the figure best.pt is chosen by), rng and sampler (every rank's random streams), meta (the
dataset's meta.json) and base (LoRA adapters on pretrained weights: `model` holds the adapters alone, and loading
reads the base named here and adds them). Only tensors and Python primitives go inside, so loading uses
torch.load(weights_only=True): a file that holds anything else (a pickle that could run code) is refused.
"""

import dataclasses
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from haikugpt.files import atomic_write
from model import GPT, GPTConfig, add_adapters

CKPT_NAME = "ckpt.pt"  # the latest checkpoint; best.pt beside it holds the best one
NANOGPT_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")  # its GPTConfig
LORA_ARGS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets")
PRETRAINED = {  # the four sizes OpenAI released: (n_layer, n_head, n_embd); block_size 1024, vocab_size 50257
    "gpt2": (12, 12, 768),  # 124M
    "gpt2-medium": (24, 16, 1024),  # 350M
    "gpt2-large": (36, 20, 1280),  # 774M
    "gpt2-xl": (48, 25, 1600),  # 1558M
}
NEO = {  # EleutherAI's GPT-Neo, trained on the Pile: (n_layer, n_head, n_embd); block_size 2048, vocab_size 50257
    "EleutherAI/gpt-neo-125M": (12, 12, 768),
    "EleutherAI/gpt-neo-1.3B": (24, 16, 2048),
    "EleutherAI/gpt-neo-2.7B": (32, 20, 2560),
}
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def build_checkpoint(
    model: GPT, config: dict, meta: dict | None, resolved: dict | None = None, optimizer=None, scaler=None,
    iter_num: int = 0, best_val_loss: float = float("inf"), best: dict | None = None, rng: list | None = None,
    sampler: list | None = None,
) -> dict:  # fmt: skip
    """The checkpoint of an unwrapped, uncompiled model and what a resumed run needs to continue exactly; of LoRA
    adapters on pretrained weights, the adapters alone and their base."""
    weights, base = model.state_dict(), getattr(model, "base", None) if model.config.lora_rank else None
    if base:
        weights = {k: v for k, v in weights.items() if k.endswith(("lora_A", "lora_B"))}
    return {"model": weights, "base": base, "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            "model_args": model_args(model.config), "config": dict(config), "resolved": dict(resolved or {}),
            "iter_num": iter_num, "best_val_loss": best_val_loss,
            "best": best or {"metric": "val/loss", "value": best_val_loss}, "rng": rng, "sampler": sampler,
            "meta": meta}  # fmt: skip


def model_args(config: GPTConfig) -> dict:
    """A GPTConfig as a checkpoint stores it: nanoGPT's seven fields, then the others only where they are not GPT-2's
    (so nanoGPT's sample.py and train.py read a GPT-2-shaped checkpoint of ours)."""
    args = dataclasses.asdict(config)
    default = dataclasses.asdict(GPTConfig())
    return {k: v for k, v in args.items() if k in NANOGPT_ARGS or v != default[k]}


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
        unsafe = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(e)) if "weights_only" in str(e) else None
        if unsafe:
            raise RuntimeError(
                f"{path} holds objects other than weights ({unsafe.group(1)}) and was not loaded: "
                "unpickling it could run code; use checkpoints from train.py, or ones you trust"
            ) from None
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise RuntimeError(f"cannot read checkpoint {path}: {type(e).__name__}: {first_line}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise RuntimeError(f"{path} is not a training checkpoint (no 'model' and 'model_args' entries)")
    # the prefixes torch.compile and DDP add to parameter names
    ckpt["model"] = {re.sub(r"^(?:_orig_mod\.|module\.)+", "", k): v for k, v in ckpt["model"].items()}
    ckpt["best_val_loss"] = float(ckpt.get("best_val_loss", float("inf")))  # nanoGPT stores a tensor
    ckpt.setdefault("best", {"metric": "val/loss", "value": ckpt["best_val_loss"]})
    for key in ("meta", "scaler", "optimizer", "rng", "sampler", "base"):
        ckpt.setdefault(key, None)
    ckpt.setdefault("config", {})
    ckpt.setdefault("resolved", {})
    return ckpt


def model_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu") -> GPT:
    """The GPT a checkpoint describes (a classifier's without its head), built on the meta device (no throwaway random
    init), given the weights and moved to device, in train mode. Adapters with a base: the base, then them."""
    weights = ckpt["model"]
    if "score.weight" in weights:  # classify.py's: the GPT is under gpt.
        weights = {k.removeprefix("gpt."): v for k, v in weights.items() if k.startswith("gpt.")}
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    config = GPTConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["model_args"].items() if k in fields}
    )
    if ckpt["base"]:
        model = load_pretrained(ckpt["base"], dropout=config.dropout, block_size=config.block_size)
        add_adapters(model, **{k: getattr(config, k) for k in LORA_ARGS})
        load_weights(model, weights, only=("lora_A", "lora_B"))
        return model.to(device)
    with on_meta():
        model = GPT(config)
    load_weights(model, weights)
    return model.to(device)


@contextmanager
def on_meta() -> Iterator[None]:
    """Build modules on the meta device, for weights about to be assigned: no memory and no throwaway random init.
    torch.nn's initialisers are switched off meanwhile (as transformers' no_init_weights does): their first call on a
    meta tensor imports torch._dynamo, a second and a half of every load."""
    names = ("normal_", "uniform_", "kaiming_uniform_", "zeros_", "ones_")
    saved = {name: getattr(torch.nn.init, name) for name in names}
    for name in names:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        with torch.device("meta"):
            yield
    finally:
        for name, init in saved.items():
            setattr(torch.nn.init, name, init)


def load_weights(
    model: GPT,
    state_dict: dict,
    only: tuple[str, ...] = (),
    source: str = "the checkpoint's weights do not fit its model_args",
) -> None:
    """Assign weights to model (those whose names end with `only`, if given), shape-checked, in one line if they do
    not fit; the tied lm_head is wte, whether the weights hold it or not."""
    expected = {k: v for k, v in model.state_dict().items() if (not only or k.endswith(only)) and k != "lm_head.weight"}
    # older nanoGPT models registered the causal mask as a buffer named attn.bias; it is not a weight
    state = {
        k: v for k, v in state_dict.items() if not k.endswith((".attn.bias", ".attn.masked_bias", "lm_head.weight"))
    }
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:  # one line, not torch's list of every mismatching tensor
        detail = (
            f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, the model's {tuple(expected[wrong[0]].shape)}"
            if wrong
            else f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
        raise RuntimeError(f"{source} ({detail})")
    model.load_state_dict(state, assign=True, strict=False)
    model.tie_weights()  # assign=True gave wte a new parameter: lm_head shares it again


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face folders: GPT-2 stores its four projections as Conv1D weights, (in, out), the transpose of nn.Linear's.
# GPT-Neo stores nn.Linear weights, with separate query, key and value projections (fused here into c_attn) and no
# biases on them; it does not scale attention scores, and its odd layers attend to a window of 256 tokens.


def check_name(name_or_path: str) -> Path | None:
    """The local folder name_or_path names, or None for a Hub name; an error for anything else (before downloading)."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no config.json: it is not a Hugging Face model folder")
        return folder
    if name_or_path not in PRETRAINED and name_or_path not in NEO:
        names = ", ".join([*PRETRAINED, *NEO])
        raise ValueError(f"unknown model {name_or_path!r}: use one of {names}, or a local Hugging Face folder")
    return None


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
    state = (neo_state_dict if hf["model_type"] == "gpt_neo" else gpt2_state_dict)(read_hf_weights(folder))
    if "transformer.wpe.weight" in state:
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: config.block_size]  # crop the positions
    with on_meta():
        model = GPT(config)
    load_weights(model, state, source=f"{folder}: the weights do not fit its config.json")
    model.base = str(local.resolve()) if local else name_or_path  # where a checkpoint of LoRA adapters finds its base
    return model


def gpt_config(hf: dict, path: Path, dropout: float = 0.0, block_size: int | None = None) -> GPTConfig:
    """The GPTConfig of a Hugging Face config.json; an error naming any field the model cannot express."""
    neo = hf["model_type"] == "gpt_neo"
    keys = ("num_layers", "num_heads", "hidden_size") if neo else ("n_layer", "n_head", "n_embd")
    n_layer, n_head, n_embd = (hf[k] for k in keys)
    positions = hf["max_position_embeddings" if neo else "n_positions"]
    for field, value, ok, expected in [
        ("activation_function", hf.get("activation_function", "gelu_new"), ["gelu_new"], "gelu_new"),
        ("intermediate_size" if neo else "n_inner", hf.get("intermediate_size" if neo else "n_inner"),
         [None, 4 * n_embd], f"4 x the width, {4 * n_embd}"),
        ("layer_norm_epsilon", hf.get("layer_norm_epsilon", 1e-5), [1e-5], "1e-5"),
        ("scale_attn_by_inverse_layer_idx", hf.get("scale_attn_by_inverse_layer_idx", False), [False], "false"),
        ("reorder_and_upcast_attn", hf.get("reorder_and_upcast_attn", False), [False], "false"),
        ("scale_attn_weights", hf.get("scale_attn_weights", True), [True], "true"),
    ]:  # fmt: skip
        if value not in ok:
            raise ValueError(f"{path}: {field}={value!r} is not something this model can express ({expected})")
    local = []
    if neo:  # attention_types: [[["global", "local"], 12]] means global, local, global, local, ...
        layers = [kind for kinds, repeat in hf["attention_types"] for _ in range(repeat) for kind in kinds]
        if len(layers) != n_layer or set(layers) - {"global", "local"}:
            raise ValueError(f"{path}: attention_types={hf['attention_types']} is not something this model can "
                             "express (global and local, one per layer)")  # fmt: skip
        local = [i for i, kind in enumerate(layers) if kind == "local"]
    block_size = positions if block_size is None else block_size
    if not 0 < block_size <= positions:
        raise ValueError(f"block_size {block_size} must be between 1 and the pretrained {positions}")
    return GPTConfig(
        block_size=block_size, vocab_size=hf["vocab_size"], n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        dropout=dropout, bias=True, scale_attn=not neo, qkv_bias=not neo, local_layers=tuple(local),
        window_size=hf.get("window_size", 256),
    )  # fmt: skip


def download(name: str) -> Path:
    """Fetch config.json and the weights of a Hub model (model.safetensors, else pytorch_model.bin), or find them in
    the local cache."""
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
            f"could not download {name} from the Hugging Face Hub and it is not in the local cache"
            f" ({type(e).__name__}); connect to the network, or pass the path of a local Hugging Face folder"
            f" (config.json + model.safetensors) instead of the name"
        ) from None


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face checkpoint folder: model.safetensors, else pytorch_model.bin."""
    if (folder / "model.safetensors").is_file():
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise RuntimeError("reading model.safetensors needs safetensors: pip install safetensors") from None
        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has no model.safetensors or pytorch_model.bin")


def gpt2_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-2 tensors under this model's names, the Conv1D weights transposed."""
    return {
        "transformer." + key.removeprefix("transformer."): (t.t() if key.endswith(CONV1D_WEIGHTS) else t).contiguous()
        for key, t in hf_state.items()
    }


def neo_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-Neo tensors under this model's names: q, k and v fused into c_attn, out_proj as c_proj."""
    state, qkv = {}, {}
    for key, tensor in hf_state.items():
        key = key.removeprefix("transformer.")
        if key.endswith((".attention.bias", ".attention.masked_bias")):
            continue  # the local and global masks
        if key.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
            qkv[key] = tensor
            continue
        state["transformer." + key.replace("attn.attention.out_proj", "attn.c_proj")] = tensor.contiguous()
    for prefix in {k.rsplit(".attention.", 1)[0] for k in qkv}:  # "h.3.attn"
        parts = [qkv[f"{prefix}.attention.{p}_proj.weight"] for p in "qkv"]
        state[f"transformer.{prefix}.c_attn.weight"] = torch.cat(parts, dim=0)  # (3C, C): q, k, v as c_attn splits
    return state
