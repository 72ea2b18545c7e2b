"""Hugging Face folders in and out: OpenAI's GPT-2 weights (from the Hub, or a local folder) into model.py's GPT, and a
GPT's weights and config back out in Hugging Face's layout (export.py). The weight-name mapping and its inverse sit
side by side here.

    model = load_pretrained(GPT, "gpt2")        # what GPT.from_pretrained("gpt2") calls
    state, config = hf_state_dict(model), hf_config(model.config, eot_id=50256)

Hugging Face stores GPT-2's four projection matrices as Conv1D weights, (in, out): the transpose of nn.Linear's.
The tied lm_head is not stored (it is wte). Weights come through huggingface_hub (its cache, HF_HOME and
HF_HUB_OFFLINE apply) and are read with safetensors; both are imported only here, when needed.
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
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def check_name(name_or_path: str) -> Path | None:
    """The local folder name_or_path names, or None for a Hub name; an error for anything else (before downloading)."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no config.json: it is not a Hugging Face GPT-2 folder")
        return folder
    if name_or_path not in PRETRAINED:
        names = ", ".join(PRETRAINED)
        raise ValueError(f"unknown model {name_or_path!r}: use one of {names}, or a local Hugging Face folder")
    return None


def load_pretrained(cls, name_or_path: str, **overrides):
    """A GPT (cls) with the weights of a Hub name or a local Hugging Face GPT-2 folder; overrides: dropout, and a
    block_size no larger than the pretrained one (the position table is cropped)."""
    from model import GPTConfig

    unknown = set(overrides) - {"dropout", "block_size"}
    if unknown:
        raise ValueError(f"from_pretrained can only override dropout and block_size, not {sorted(unknown)}")
    folder = check_name(name_or_path) or download(name_or_path)
    hf = read_config(folder)
    block_size = overrides.get("block_size", hf["n_positions"])
    if not 0 < block_size <= hf["n_positions"]:
        raise ValueError(f"block_size {block_size} must be between 1 and the pretrained {hf['n_positions']}")
    shape = {k: hf[k] for k in ("vocab_size", "n_layer", "n_head", "n_embd")}
    config = GPTConfig(block_size=block_size, dropout=overrides.get("dropout", 0.0), bias=True, **shape)
    with torch.device("meta"):  # no memory and no random init for weights that are about to be replaced
        model = cls(config)
    expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # lm_head is wte
    state = gpt2_state_dict(read_weights(folder))
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match GPT-2: missing {missing[:5]}, unexpected {unexpected[:5]}")
    state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:block_size]  # crop the position table
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise ValueError(f"{folder}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
    model.load_state_dict(state, assign=True, strict=False)  # strict=False: lm_head.weight comes from the tie
    model.tie_weights()  # assign=True replaced the tied parameter: tie again
    return model


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if hf.get("model_type") != "gpt2":
        raise ValueError(f"{path} describes a {hf.get('model_type')!r} model, not GPT-2")
    return hf


def download(name: str) -> Path:
    """Fetch config.json and model.safetensors of an OpenAI GPT-2 from the Hub, or find them in the local cache."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise RuntimeError(f"loading {name} needs huggingface_hub: pip install huggingface_hub safetensors") from None
    try:
        return Path(snapshot_download(f"openai-community/{name}", allow_patterns=["config.json", "model.safetensors"]))
    except Exception as e:  # offline, no cache, Hub errors: all mean the same thing to the user
        raise RuntimeError(
            f"could not download {name} from the Hugging Face Hub and it is not in the local cache"
            f" ({type(e).__name__}); connect to the network, or pass the path of a local GPT-2 folder"
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


def hf_state_dict(model) -> dict[str, torch.Tensor]:
    """A GPT's weights under Hugging Face GPT-2's names: gpt2_state_dict run backwards.

    GPT-2 always has biases; a model trained with bias=False gets zeros, which compute the same thing."""
    hf = {}
    for key, weight in model.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied to wte; config.json says tie_word_embeddings
        tensor = weight.t() if key.endswith(CONV1D_WEIGHTS) else weight  # nn.Linear's (out, in) to Conv1D's (in, out)
        hf[key] = tensor.detach().cpu().contiguous()
        if not model.config.bias and key not in ("transformer.wte.weight", "transformer.wpe.weight"):
            hf[key.removesuffix("weight") + "bias"] = torch.zeros(weight.size(0), dtype=weight.dtype)
    return hf


def hf_config(config, eot_id: int) -> dict:
    """GPT2Config's fields for a model.py GPTConfig."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",  # the tanh approximation, as model.py's MLP
        "layer_norm_epsilon": 1e-5,  # nn.LayerNorm's default
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
    }
