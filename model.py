"""The GPT: GPT-2's architecture (GPT-Neo's too, configured), LoRA adapters, and fast generation with a KV cache.

    from model import GPT, GPTConfig
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=256, vocab_size=128), seed=0)
    out = model.generate(idx, max_new_tokens=100, temperature=0.8, top_k=200)
    for token in model.stream(idx, max_new_tokens=100): ...   # one (B,) tensor per new token

Pre-LayerNorm blocks, tanh GELU, learned positions, lm_head tied to wte, and GPT-2's own parameter names, so OpenAI's
weights load with four transposes (haikugpt/checkpoint.py) and the logits match Hugging Face's GPT-2.
"""

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from torch.nn import functional as F

# A step's logits (B, vocab) and the tokens just emitted (None at the first step) -> the logits to sample from, or
# (logits, rows) where the rows are resampled: row i continues from row rows[i]'s history and logits.
LogitsFilter = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]
LORA_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # each block's projections


@dataclass
class GPTConfig:
    block_size: int = 1024  # longest context; the size of the position table
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for speed (padded_vocab)
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # width of the residual stream
    dropout: float = 0.0  # 0 for pretraining, 0.1+ when fine-tuning a small dataset
    bias: bool = True  # biases in Linear and LayerNorm layers, as GPT-2 has
    # GPT-Neo differs from GPT-2 only in these:
    scale_attn: bool = True  # divide attention scores by sqrt(head size), as GPT-2 does (GPT-Neo does not)
    qkv_bias: bool = True  # biases on the query, key and value projections (GPT-Neo has none)
    local_layers: tuple[int, ...] = ()  # layers that attend only to the last window_size tokens (GPT-Neo: odd ones)
    window_size: int = 256  # the local layers' window
    # LoRA: trainable low-rank adapters beside the frozen projections named in lora_targets (add_adapters)
    lora_rank: int = 0  # 0: no adapters
    lora_alpha: float = 16.0  # the adapters' output is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.0  # dropout on the adapters' input
    lora_targets: tuple[str, ...] = LORA_TARGETS


def padded_vocab(vocab_size: int) -> int:
    """A vocabulary rounded up to a multiple of 64, which keeps the matmuls fast; the extra ids are never data."""
    return math.ceil(vocab_size / 64) * 64


def flops_per_token(matmul_params: int, config: GPTConfig) -> float:
    """Training FLOPs per token (forward and backward) at full context, as in the PaLM paper's appendix B."""
    return 6 * matmul_params + 12 * config.n_layer * config.n_embd * config.block_size


class KVCache:
    """One layer's keys and values of the tokens seen so far, preallocated to max_len positions. Each block gets its
    own cache rather than a layer index, so torch.compile traces one graph that every block shares."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.k = self.v = None  # (B, nh, max_len, hs) each, allocated on first use
        self.pos = 0  # number of positions filled

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys and values at the current position; return all of them so far."""
        if self.k is None:  # dtype and device follow the model (autocast included)
            self.k = k.new_empty(k.size(0), k.size(1), self.max_len, k.size(3))  # (B, nh, max_len, hs)
            self.v = torch.empty_like(self.k)
        end = self.pos + k.size(2)
        self.k[:, :, self.pos : end] = k
        self.v[:, :, self.pos : end] = v
        self.pos = end
        return self.k[:, :, :end], self.v[:, :, :end]  # (B, nh, end, hs)


class Linear(nn.Linear):
    """nn.Linear with optional LoRA adapters that, while generating on a CPU, multiplies by a copy of its weight in
    oneDNN's packed layout (packed_on_cpu): a small-batch step is nearly all weight reads, and oneDNN reads that at the
    memory's full speed where BLAS gets about 60% (bench.py generate)."""

    packed: tuple | None = None  # (key, weight, bias) of the copy
    use_packed = False  # set by GPT.stream while it runs
    lora_rank = 0  # adapters: lora_A (rank, in) and lora_B (out, rank), once add_adapters has added them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_packed or torch.compiler.is_compiling():  # compiled code packs weights its own way
            y = F.linear(x, self.weight, self.bias)
        else:
            _, weight, bias = self.packed
            y = torch.ops.mkldnn._linear_pointwise(x.to(weight.dtype), weight, bias, "none", [], "")
        if self.lora_rank:  # W x + (alpha / r) B A x, with B zero at first: the base model until B learns
            y = y + F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.lora_scale
        return y

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "packed": None, "use_packed": False}  # copies and pickles leave it out


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, local: bool = False):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.scale = None if config.scale_attn else 1.0  # None: SDPA's 1/sqrt(head size)
        self.window = config.window_size if local else None  # a local layer sees only the last window tokens
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias and config.qkv_bias)  # q, k, v
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.size()
        # 3 x (B, T, C) -> 3 x (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if cache is not None:
            assert cache.pos == 0 or T == 1, "the cache takes a prompt at position 0, then one token at a time"
            k, v = cache.update(k, v)  # (B, nh, pos + T, hs)
        mask = None
        if self.window is not None and T == 1:
            k, v = k[:, :, -self.window :], v[:, :, -self.window :]  # (B, nh, <= window, hs): the recent keys
        elif self.window is not None and self.window < T:  # query i sees keys j with i - window < j <= i
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril().triu(1 - self.window)  # (T, T)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=mask is None and T > 1, scale=self.scale
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2 was trained with the tanh approximation
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, local: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, local)
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
                h=nn.ModuleList([Block(config, i in config.local_layers) for i in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()
        if not self.lm_head.weight.is_meta:  # loaders build on the meta device and assign the weights instead
            self._init_weights(seed)
        if config.lora_rank:
            add_adapters(self, seed)

    def tie_weights(self) -> None:
        """lm_head reads the token embedding table, as in GPT-2: one parameter, two uses."""
        self.lm_head.weight = self.transformer.wte.weight

    @torch.no_grad()
    def _init_weights(self, seed: int) -> None:
        """GPT-2's initialisation from a seeded generator: N(0, 0.02), residual projections scaled by 1/sqrt(2L)."""
        gen = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():  # the tied wte/lm_head weight is listed (and initialised) once
            if p.dim() >= 2:
                p.normal_(0.0, residual_std if name.endswith("c_proj.weight") else 0.02, generator=gen)
            else:  # biases 0, LayerNorm gains 1
                p.fill_(0.0 if name.endswith("bias") else 1.0)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position table (the token table is shared with lm_head)."""
        return sum(p.numel() for p in self.parameters()) - self.transformer.wpe.weight.numel() * non_embedding

    def flops_per_token(self) -> float:
        return flops_per_token(self.num_params(), self.config)

    def hidden_states(self, idx: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor:
        """The final LayerNorm's output (B, T, n_embd) for tokens idx (B, T), continuing the cache if one is given."""
        T = idx.size(1)
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
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str
    ) -> torch.optim.AdamW:
        """AdamW where matrices and embeddings decay and biases and LayerNorm gains do not; fused where torch has it."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=device_type in ("cuda", "cpu", "mps"))

    @torch.no_grad()
    def stream(
        self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
        top_p: float | None = None, stop_token: int | None = None, generator: torch.Generator | None = None,
        use_cache: bool = True, logits_filter: LogitsFilter | None = None,
    ) -> Iterator[torch.Tensor]:  # fmt: skip
        """Yield the next token of every row, a (B,) tensor per step, continuing the prompts idx (B, T).

        temperature 0 is greedy; top_k (None or 0: off) and top_p (None or 1: off) filter before sampling; rows that
        emit stop_token keep emitting it until every row has. logits_filter (LogitsFilter) may change each step's logits
        or resample the rows. The prompt runs once, then one token per step against the KV cache; past block_size, each
        step recomputes the last block_size tokens, as positions are absolute. use_cache=False recomputes the whole
        context every step (nanoGPT's loop): the same tokens, much slower.
        """
        top_k, top_p = check_sampling(temperature, top_k, top_p)
        block_size = self.config.block_size
        context = idx[:, -block_size:]  # (B, <= block_size): the window the model sees
        cache = [KVCache(block_size) for _ in range(self.config.n_layer)] if use_cache else None
        done, token = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device), None
        with packed_on_cpu(self, idx):
            for step in range(max_new_tokens):
                if cache is not None and (step == 0 or cache[0].pos == block_size):
                    for layer_cache in cache:
                        layer_cache.pos = 0  # first step, or the window moved: every position changes
                new = context if cache is None or cache[0].pos == 0 else context[:, -1:]  # all, or the newest token
                logits = self.lm_head(self.hidden_states(new, cache)[:, -1, :]).float()  # (B, vocab_size)
                if logits_filter is not None:
                    logits = logits_filter(logits, token)
                    if isinstance(logits, tuple):  # resampled: each row continues the history of the row named
                        logits, rows = logits
                        context, done = context[rows], done[rows]
                        moved = (rows != torch.arange(len(rows), device=rows.device)).nonzero().flatten()
                        for t in [logits, *(kv for c in cache or [] for kv in (c.k, c.v))]:  # moved rows only
                            t[moved] = t[rows[moved]]
                token = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
                if stop_token is not None:
                    token = token.masked_fill(done, stop_token)  # finished rows keep emitting the stop token
                    done |= token == stop_token
                context = torch.cat((context, token[:, None]), dim=1)[:, -block_size:]
                yield token
                if stop_token is not None and bool(done.all()):
                    return

    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kw) -> torch.Tensor:
        """Prompts idx (B, T) followed by up to max_new_tokens sampled tokens: (B, T + n). Keywords as stream()'s."""
        new = list(self.stream(idx, max_new_tokens, **kw))
        return torch.cat([idx, torch.stack(new, dim=1)], dim=1) if new else idx


@contextmanager
def packed_on_cpu(model: GPT, idx: torch.Tensor) -> Iterator[None]:
    """Generate with every Linear's packed copy (see Linear): on a CPU with oneDNN, for weights in float32."""
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    usable = dtype in (torch.float32, torch.bfloat16) and all(m.weight.dtype == torch.float32 for m in linears)
    try:
        for m in linears if usable and idx.device.type == "cpu" and torch.backends.mkldnn.is_available() else []:
            key = (dtype, idx.size(0), m.weight.data_ptr(), m.weight._version)  # remade when any of these changes
            if m.packed is None or m.packed[0] != key:
                m.packed = None  # free the old copy before making the new one
                weight = torch.ops.mkldnn._reorder_linear_weight(m.weight.to(dtype), idx.size(0))
                m.packed = (key, weight, m.bias.to(dtype) if m.bias is not None else None)
            m.use_packed = True
        yield
    finally:
        for m in linears:
            m.use_packed = False


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> tuple[int | None, float | None]:
    """Check the sampling arguments; return top_k and top_p with "off" spelled None (top_k 0 and top_p 1 are off)."""
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"top_k must be an integer >= 1, or 0 or None for no top-k, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], or None for no top-p, got {top_p!r}")
    return top_k or None, (None if top_p is None or top_p >= 1 else float(top_p))


def sample_next(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """One token per row from logits (B, V): greedy at temperature 0, else sampled after top-k and top-p filtering.
    With top-k, only the k likeliest tokens are looked at, in order: drawing among k is much faster than among V."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits, ids = logits.float() / temperature, None
    if top_k is not None and top_k < logits.size(-1):
        logits, ids = torch.topk(logits, top_k, dim=-1)  # (B, k), likeliest first
    if top_p is not None and top_p < 1.0:
        if ids is None:
            logits, ids = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(logits, dim=-1)
        # Keep the smallest prefix whose mass reaches top_p: drop a token when the mass before it already does.
        logits = logits.masked_fill(probs.cumsum(dim=-1) - probs >= top_p, float("-inf"))
    choice = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)  # (B, 1)
    return (choice if ids is None else ids.gather(1, choice)).squeeze(1)  # (B,)


# ---------------------------------------------------------------------------------------------------------------------
# LoRA (Hu et al., 2021): low-rank adapters beside each block's frozen target projections (Linear.forward).


def lora_projections(model: GPT) -> list[tuple[str, Linear]]:
    """The (name, Linear) projections that carry adapters: each block's lora_targets."""
    return [
        (f"transformer.h.{i}.{target}", block.get_submodule(target))
        for i, block in enumerate(model.transformer.h)
        for target in model.config.lora_targets
    ]


def add_adapters(model: GPT, seed: int = 0, **settings) -> None:
    """Give each target projection adapters (A uniform as in nn.Linear, from a seeded generator; B zero) and freeze the
    rest. settings (lora_rank, lora_alpha, ...) first update model.config, for a model loaded without them."""
    cfg = model.config = replace(model.config, **settings)
    gen = torch.Generator().manual_seed(seed + 3)  # its own stream: the base model's init is unchanged
    for _, linear in lora_projections(model):
        bound, device = 1 / math.sqrt(linear.in_features), linear.weight.device
        A = torch.rand(cfg.lora_rank, linear.in_features, generator=gen, device="cpu") * 2 * bound - bound
        linear.lora_A = nn.Parameter(A.to(device))
        linear.lora_B = nn.Parameter(torch.zeros(linear.out_features, cfg.lora_rank, device=device))
        linear.lora_rank, linear.lora_scale = cfg.lora_rank, cfg.lora_alpha / cfg.lora_rank
        linear.lora_dropout = nn.Dropout(cfg.lora_dropout)
    for name, p in model.named_parameters():
        p.requires_grad = name.endswith(("lora_A", "lora_B"))


def hold_frozen_in(model: GPT, dtype: torch.dtype) -> None:
    """Keep the frozen target projections in dtype (bfloat16: half their memory); the adapters stay float32."""
    for _, linear in lora_projections(model):
        for p in [linear.weight] if linear.bias is None else [linear.weight, linear.bias]:
            p.data = p.data.to(dtype)


def merged_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The weights with each adapter merged into its projection (W + (alpha / rank) B A, float32), adapters left out."""
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("lora_A", "lora_B"))}
    for name, linear in lora_projections(model) if model.config.lora_rank else []:
        delta = (linear.lora_B.float() @ linear.lora_A.float()) * linear.lora_scale  # (out, in)
        state[f"{name}.weight"] = linear.weight.detach().float() + delta
        if linear.bias is not None:
            state[f"{name}.bias"] = linear.bias.detach().float()
    return state
