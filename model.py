"""
GPT-2 in one file: the model, loading OpenAI's pretrained weights, and fast generation with a KV cache.

    from model import GPT, GPTConfig
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=256, vocab_size=128), seed=0)
    model = GPT.from_pretrained("gpt2")              # or gpt2-medium, gpt2-large, gpt2-xl, or a local folder
    out = model.generate(idx, max_new_tokens=100, temperature=0.8, top_k=200)
    for tok in model.stream(idx, max_new_tokens=100): ...   # one (B,) tensor per new token

The computation is GPT-2's own (pre-LayerNorm blocks, tanh GELU, learned positions, lm_head tied to wte), so the
pretrained weights load with a shape-checked copy and four transposes, and logits match Hugging Face's GPT-2.
Only torch is imported here; huggingface_hub and safetensors are imported by the loader that needs them.
"""

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

# The four sizes OpenAI released, as (n_layer, n_head, n_embd); all have block_size 1024 and vocab_size 50257.
PRETRAINED = {
    "gpt2": (12, 12, 768),  # 124M
    "gpt2-medium": (24, 16, 1024),  # 350M
    "gpt2-large": (36, 20, 1280),  # 774M
    "gpt2-xl": (48, 25, 1600),  # 1558M
}
# Hugging Face stores these as Conv1D, whose weight is (in, out): the transpose of nn.Linear's.
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context; the size of the position table
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # width of the residual stream
    dropout: float = 0.0  # 0 for pretraining, 0.1+ when fine-tuning a small dataset
    bias: bool = True  # biases in Linear and LayerNorm layers, as GPT-2 has


class KVCache:
    """One layer's keys and values of the tokens seen so far, preallocated to max_len positions.

    GPT.new_cache() makes one per layer: each block gets its own cache rather than a layer index, so torch.compile
    traces one graph that every block shares instead of one per layer.
    """

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.k: torch.Tensor | None = None  # (B, nh, max_len, hs), allocated on first use
        self.v: torch.Tensor | None = None
        self.pos = 0  # number of positions filled

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys and values at the current position; return all of them so far."""
        if self.k is None:  # dtype and device follow the model (autocast included)
            B, nh, _, hs = k.shape
            self.k = k.new_empty(B, nh, self.max_len, hs)
            self.v = torch.empty_like(self.k)
        end = self.pos + k.size(2)
        self.k[:, :, self.pos : end] = k
        self.v[:, :, self.pos : end] = v
        self.pos = end
        return self.k[:, :, :end], self.v[:, :, :end]  # (B, nh, end, hs)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            # Either a prompt at position 0 (causal mask) or one new token attending to everything before it.
            assert cache.pos == 0 or T == 1, "the cache takes a prompt at position 0, then one token at a time"
            k, v = cache.update(k, v)  # (B, nh, pos + T, hs)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=T > 1)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2 was trained with the tanh approximation
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2
        if not self.lm_head.weight.is_meta:  # from_pretrained builds on the meta device and loads weights instead
            self._init_weights(seed)

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        """GPT-2's initialisation from a seeded generator: N(0, 0.02), residual projections scaled by 1/sqrt(2L)."""
        gen = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():  # the tied wte/lm_head weight is listed (and initialised) once
            if p.dim() >= 2:
                p.normal_(0.0, residual_std if name.endswith("c_proj.weight") else 0.02, generator=gen)
            elif name.endswith("bias"):
                p.zero_()
            else:  # LayerNorm gains
                p.fill_(1.0)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position table (the token table is shared with lm_head)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def estimate_flops_per_token(self) -> float:
        """Training FLOPs per token (forward and backward) at full context, as in the PaLM paper's appendix B."""
        cfg = self.config
        return 6 * self.num_params() + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache, one per layer, for hidden_states."""
        return [KVCache(self.config.block_size) for _ in range(self.config.n_layer)]

    def hidden_states(self, idx: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor:
        """The final LayerNorm's output (B, T, n_embd) for tokens idx (B, T), continuing the cache if one is given."""
        B, T = idx.size()
        start = cache[0].pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than block_size {self.config.block_size}")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache[layer] if cache is not None else None)
        return self.transformer.ln_f(x)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab_size) at every position; with targets (B, T), the mean cross-entropy (-1 ignored)."""
        logits = self.lm_head(self.hidden_states(idx))  # (B, T, vocab_size)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str
    ) -> torch.optim.AdamW:
        """AdamW where matrices and embeddings decay and biases and LayerNorm gains do not; fused where supported."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = device_type in ("cuda", "cpu", "mps")  # the devices torch's fused AdamW kernel is built for
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    # ---------------------------------------------------------------------------------------------------------------
    # Generation

    @torch.no_grad()
    def stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        stop_token: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Iterator[torch.Tensor]:
        """Yield the next token of every row, a (B,) tensor per step, continuing the prompts idx (B, T).

        The prompt is processed once, then one token per step against the KV cache. Past block_size the model sees
        the most recent block_size tokens; as positions are absolute, each of those steps recomputes the window.
        use_cache=False recomputes the whole context every step (nanoGPT's loop): same tokens, much slower.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        block_size = self.config.block_size
        context = idx[:, -block_size:]  # (B, <= block_size): the window the model sees
        cache = self.new_cache() if use_cache else None
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for step in range(max_new_tokens):
            if step > 0 and cache is not None and cache[0].pos < block_size:
                h = self.hidden_states(context[:, -1:], cache)  # (B, 1, C): only the newest token
            else:
                for layer_cache in cache or []:
                    layer_cache.pos = 0  # first step, or the window moved: every position changes
                h = self.hidden_states(context, cache)  # (B, T, C)
            logits = self.lm_head(h[:, -1, :])  # (B, vocab_size): only the last position is needed
            token = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
            if stop_token is not None:
                token = token.masked_fill(done, stop_token)  # finished rows keep emitting the stop token
                done |= token == stop_token
            context = torch.cat((context, token[:, None]), dim=1)[:, -block_size:]
            yield token
            if stop_token is not None and bool(done.all()):
                return

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
        """Prompts idx (B, T) followed by up to max_new_tokens sampled tokens: (B, T + n). Arguments as stream()."""
        new = list(self.stream(idx, max_new_tokens, **kwargs))
        return torch.cat([idx, torch.stack(new, dim=1)], dim=1) if new else idx

    # ---------------------------------------------------------------------------------------------------------------
    # Pretrained weights

    @classmethod
    def from_pretrained(cls, name_or_path: str, **overrides) -> "GPT":
        """GPT-2 from the Hugging Face Hub by name (gpt2, gpt2-medium, gpt2-large, gpt2-xl) or a local HF folder.

        overrides: dropout, and block_size no larger than the pretrained one (the position table is cropped).
        """
        unknown = set(overrides) - {"dropout", "block_size"}
        if unknown:
            raise ValueError(f"from_pretrained can only override dropout and block_size, not {sorted(unknown)}")
        folder = Path(name_or_path).expanduser()
        if not folder.is_dir():
            if name_or_path not in PRETRAINED:
                names = ", ".join(PRETRAINED)
                raise ValueError(f"unknown model {name_or_path!r}: use one of {names}, or a local Hugging Face folder")
            folder = _download(name_or_path)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{folder} has no config.json: it is not a Hugging Face GPT-2 folder")
        hf = json.loads(config_file.read_text())
        if hf.get("model_type") != "gpt2":
            raise ValueError(f"{config_file} describes a {hf.get('model_type')!r} model, not GPT-2")
        block_size = overrides.get("block_size", hf["n_positions"])
        if not 0 < block_size <= hf["n_positions"]:
            raise ValueError(f"block_size {block_size} must be between 1 and the pretrained {hf['n_positions']}")
        config = GPTConfig(
            block_size=block_size,
            vocab_size=hf["vocab_size"],
            n_layer=hf["n_layer"],
            n_head=hf["n_head"],
            n_embd=hf["n_embd"],
            dropout=overrides.get("dropout", 0.0),
            bias=True,
        )
        with torch.device("meta"):  # no memory and no random init for weights that are about to be replaced
            model = cls(config)
        expected = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # lm_head is wte

        state = _gpt2_state_dict(_read_weights(folder))
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"{folder}: weights do not match GPT-2: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        if state["transformer.wpe.weight"].size(0) >= block_size:
            state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:block_size]  # crop the position table
        for key, tensor in state.items():
            if tensor.shape != expected[key].shape:
                raise ValueError(
                    f"{folder}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
                )
        model.load_state_dict(state, assign=True, strict=False)  # strict=False: lm_head.weight comes from the tie
        model.lm_head.weight = model.transformer.wte.weight  # assign=True replaced the tied parameter: tie again
        return model


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row from logits (B, V): greedy at temperature 0, else sampled after top-k and top-p filtering."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p: drop a token when the mass before it already does.
        drop = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)  # (B,)


def _download(name: str) -> Path:
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


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
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


def _gpt2_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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
