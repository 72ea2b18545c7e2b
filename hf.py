"""Hugging Face folders in and out: OpenAI's GPT-2 and EleutherAI's GPT-Neo weights (from the Hub, or a local folder)
into model.py's GPT, and a GPT's weights and config back out in Hugging Face's layout (export.py). Each mapping and
its inverse sit side by side here.

    model = load_pretrained(GPT, "gpt2")        # what GPT.from_pretrained("gpt2") calls; or "EleutherAI/gpt-neo-125M"
    state, config = hf_state_dict(model), hf_config(model.config, eot_id=50256)

GPT-2 stores its four projection matrices as Conv1D weights, (in, out): the transpose of nn.Linear's. GPT-Neo stores
them as nn.Linear weights, with separate query, key and value projections (fused here into c_attn) and no biases on
them; it does not scale attention scores, and its odd layers attend to a window of 256 tokens (model.GPTConfig says
so in scale_attn, qkv_bias, local_layers and window_size). The tied lm_head is not stored (it is wte). Weights come
through huggingface_hub (its cache, HF_HOME and HF_HUB_OFFLINE apply) and are read with safetensors; both are imported
only here, when needed.
"""

import json
from pathlib import Path

import torch

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


def load_pretrained(cls, name_or_path: str, **overrides):
    """A GPT (cls) with the weights of a Hub name or a local Hugging Face GPT-2 or GPT-Neo folder; overrides: dropout,
    and a block_size no larger than the pretrained one (the position table is cropped)."""
    unknown = set(overrides) - {"dropout", "block_size"}
    if unknown:
        raise ValueError(f"from_pretrained can only override dropout and block_size, not {sorted(unknown)}")
    local = check_name(name_or_path)
    folder = local or download(name_or_path)
    hf = read_config(folder)
    config = gpt_config(hf, folder / "config.json", **overrides)
    with torch.device("meta"):  # no memory and no random init for weights that are about to be replaced
        model = cls(config)
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # lm_head is wte
    state = (neo_state_dict if hf["model_type"] == "gpt_neo" else gpt2_state_dict)(read_weights(folder))
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{folder}: the weights do not match the config: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}")  # fmt: skip
    state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: config.block_size]  # crop the positions
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(f"{folder}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
    model.load_state_dict(state, assign=True, strict=False)  # strict=False: lm_head.weight comes from the tie
    model.tie_weights()  # assign=True replaced the tied parameter: tie again
    model.base = str(local.resolve()) if local else name_or_path  # where a checkpoint of LoRA adapters finds its base
    return model


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if hf.get("model_type") not in ("gpt2", "gpt_neo"):
        raise ValueError(f"{path} describes a {hf.get('model_type')!r} model, not GPT-2 or GPT-Neo")
    return hf


def refuse(path: Path, field: str, value, expected: str) -> ValueError:
    return ValueError(f"{path}: {field}={value!r} is not something this model can express ({expected})")


def gpt_config(hf: dict, path: Path, dropout: float = 0.0, block_size: int | None = None):
    """model.GPTConfig of a Hugging Face config; an error naming any field the model cannot express."""
    from model import GPTConfig

    neo = hf["model_type"] == "gpt_neo"
    n_layer, n_head, n_embd = (hf[k] for k in (("num_layers", "num_heads", "hidden_size") if neo else
                                                ("n_layer", "n_head", "n_embd")))  # fmt: skip
    positions = hf["max_position_embeddings" if neo else "n_positions"]
    inner = hf.get("intermediate_size" if neo else "n_inner")
    for field, value, ok, expected in [
        ("activation_function", hf.get("activation_function", "gelu_new"), ["gelu_new"], "gelu_new"),
        ("intermediate_size" if neo else "n_inner", inner, [None, 4 * n_embd], f"4 x the width, {4 * n_embd}"),
        ("layer_norm_epsilon", hf.get("layer_norm_epsilon", 1e-5), [1e-5], "1e-5"),
        ("scale_attn_by_inverse_layer_idx", hf.get("scale_attn_by_inverse_layer_idx", False), [False], "false"),
        ("reorder_and_upcast_attn", hf.get("reorder_and_upcast_attn", False), [False], "false"),
        ("scale_attn_weights", hf.get("scale_attn_weights", True), [True], "true"),
    ]:
        if value not in ok:
            raise refuse(path, field, value, expected)
    local = []
    if neo:
        layers = [kind for kinds, repeat in hf["attention_types"] for _ in range(repeat) for kind in kinds]
        if len(layers) != n_layer or set(layers) - {"global", "local"}:
            raise refuse(path, "attention_types", hf["attention_types"], "global and local, one per layer")
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


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
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
    """Hugging Face GPT-2 tensors under this model's names: Conv1D weights transposed, buffers and lm_head dropped."""
    state = {}
    for key, tensor in hf_state.items():
        key = key.removeprefix("transformer.")
        if key.endswith((".attn.bias", ".attn.masked_bias")) or key == "lm_head.weight":
            continue  # causal-mask buffers, and the head that is tied to wte
        if key.endswith(CONV1D_WEIGHTS):
            tensor = tensor.t()
        state["transformer." + key] = tensor.contiguous()
    return state


def neo_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face GPT-Neo tensors under this model's names: q, k and v fused into c_attn, out_proj as c_proj."""
    state, qkv = {}, {}
    for key, tensor in hf_state.items():
        key = key.removeprefix("transformer.")
        if key.endswith((".attention.bias", ".attention.masked_bias")) or key == "lm_head.weight":
            continue  # the local and global masks, and the head that is tied to wte
        if key.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")):
            qkv[key] = tensor
            continue
        state["transformer." + key.replace("attn.attention.out_proj", "attn.c_proj")] = tensor.contiguous()
    for prefix in {k.rsplit(".attention.", 1)[0] for k in qkv}:  # "h.3.attn"
        parts = [qkv[f"{prefix}.attention.{p}_proj.weight"] for p in "qkv"]
        state[f"transformer.{prefix}.c_attn.weight"] = torch.cat(parts, dim=0)  # (3C, C): q, k, v as c_attn splits
    return state


def architecture(config) -> str:
    """Which Hugging Face architecture expresses a GPTConfig: gpt2 or gpt_neo; an error for mixtures of the two."""
    if config.scale_attn and config.qkv_bias and not config.local_layers:
        return "gpt2"
    if not config.scale_attn and not config.qkv_bias and config.bias:
        return "gpt_neo"
    raise ValueError("this model mixes GPT-2's and GPT-Neo's attention (scale_attn, qkv_bias, local_layers), which "
                     "neither Hugging Face architecture expresses; it cannot be exported")  # fmt: skip


def hf_state_dict(model) -> dict[str, torch.Tensor]:
    """A GPT's weights under Hugging Face's names (LoRA adapters merged in): gpt2_state_dict or neo_state_dict run
    backwards. GPT-2 always has biases; a model trained with bias=False gets zeros, which compute the same thing."""
    from lora import merged_state

    neo, C = architecture(model.config) == "gpt_neo", model.config.n_embd
    hf = {}
    for key, weight in merged_state(model).items():
        if key == "lm_head.weight":
            continue  # tied to wte; config.json says tie_word_embeddings
        weight = weight.detach().float().cpu()
        if neo and key.endswith("attn.c_attn.weight"):
            for name, part in zip("qkv", weight.split(C, dim=0)):
                hf[key.replace("attn.c_attn.weight", f"attn.attention.{name}_proj.weight")] = part.contiguous()
            continue
        if neo:
            hf[key.replace("attn.c_proj", "attn.attention.out_proj")] = weight.contiguous()
            continue
        hf[key] = (
            weight.t() if key.endswith(CONV1D_WEIGHTS) else weight
        ).contiguous()  # Linear's (out, in) to (in, out)
        if not model.config.bias and key not in ("transformer.wte.weight", "transformer.wpe.weight"):
            hf[key.removesuffix("weight") + "bias"] = torch.zeros(weight.size(0))
    return hf


def hf_config(config, eot_id: int) -> dict:
    """The config.json of a GPT2LMHeadModel or GPTNeoForCausalLM for a model.py GPTConfig."""
    common = {"vocab_size": config.vocab_size, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
              "initializer_range": 0.02, "tie_word_embeddings": True, "bos_token_id": eot_id,
              "eos_token_id": eot_id}  # fmt: skip
    if architecture(config) == "gpt_neo":
        kinds = ["local" if i in config.local_layers else "global" for i in range(config.n_layer)]
        return {"architectures": ["GPTNeoForCausalLM"], "model_type": "gpt_neo", **common,
                "max_position_embeddings": config.block_size, "hidden_size": config.n_embd,
                "num_layers": config.n_layer, "num_heads": config.n_head, "intermediate_size": None,
                "attention_types": [[[kind], 1] for kind in kinds], "window_size": config.window_size,
                "resid_dropout": config.dropout, "embed_dropout": config.dropout,
                "attention_dropout": config.dropout}  # fmt: skip
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", **common, "n_positions": config.block_size,
            "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
            "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout}  # fmt: skip
