"""
LoRA (Hu et al., 2021): fine-tune a large model by training small low-rank adapters beside its frozen weights.

    python train.py config/finetune_haiku.py --lora_rank=8          # GPT-2 medium, adapters on every projection
    python train.py config/finetune_haiku_neo.py --lora_rank=16     # GPT-Neo

Each target projection W (out, in) of every block gains A (rank, in), random, and B (out, rank), zero, and computes
W x + (lora_alpha / lora_rank) B A x: at step 0 the model is exactly the base model, and only A and B train. The
frozen projections may be held in bfloat16 (train.py does, when it trains in bfloat16), which halves their memory.

A checkpoint of adapters trained on pretrained weights holds the adapters alone (with their optimizer state), and
names its base (`ckpt["base"]`: a Hub name or a folder); loading it loads the base and adds the adapters. export.py
merges them into plain weights: W + (alpha / rank) B A.
"""

import dataclasses
import math

import torch
import torch.nn as nn

ADAPTERS = ("lora_A", "lora_B")


def targets(model) -> list[tuple[str, nn.Module]]:
    """The (name, Linear) projections that get adapters: each block's lora_targets; an error naming a missing one."""
    found = []
    for i, block in enumerate(model.transformer.h):
        for target in model.config.lora_targets:
            try:
                found.append((f"transformer.h.{i}.{target}", block.get_submodule(target)))
            except AttributeError:
                names = "attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj"
                raise ValueError(
                    f"lora_targets: {target!r} is not a projection of this model; choose among {names}"
                ) from None
    return found


def add_adapters(model, seed: int = 0) -> None:
    """Give each target projection its adapters (A uniform, as nn.Linear's init, from a seeded generator; B zero)
    and freeze every other parameter. model.config says the rank, alpha, dropout and targets."""
    cfg = model.config
    if cfg.lora_rank < 1:
        raise ValueError(f"lora_rank={cfg.lora_rank}: adapters need a rank of at least 1 (0 fine-tunes every weight)")
    gen = torch.Generator().manual_seed(seed + 3)  # its own stream: the base model's init is unchanged
    for _, linear in targets(model):
        device = linear.weight.device
        linear.lora_A = nn.Parameter(torch.empty(cfg.lora_rank, linear.in_features, device=device))
        linear.lora_B = nn.Parameter(torch.zeros(linear.out_features, cfg.lora_rank, device=device))
        if device.type != "meta":
            bound = 1 / math.sqrt(linear.in_features)
            with torch.no_grad():
                linear.lora_A.copy_(torch.rand(linear.lora_A.shape, generator=gen) * 2 * bound - bound)
        linear.lora_rank, linear.lora_scale = cfg.lora_rank, cfg.lora_alpha / cfg.lora_rank
        linear.lora_dropout = nn.Dropout(cfg.lora_dropout)
    for name, p in model.named_parameters():
        p.requires_grad = name.endswith(ADAPTERS)


def settings(config: dict) -> dict:
    """The GPTConfig fields of a run's LoRA keys (lora_targets given as comma-separated names)."""
    keys = ("lora_rank", "lora_alpha", "lora_dropout")
    return {**{k: config[k] for k in keys}, "lora_targets": tuple(config["lora_targets"].split(","))}


def adapt(model, config: dict) -> None:
    """Give a loaded model (pretrained, or a language model a classifier starts from) the adapters a run's lora_rank
    asks for; nothing when it is 0."""
    if config["lora_rank"]:
        model.config = dataclasses.replace(model.config, **settings(config))
        add_adapters(model, config["seed"])


def hold_base_in(model, dtype: torch.dtype) -> None:
    """Keep the frozen target projections in dtype (bfloat16: half the memory); the adapters stay float32."""
    for _, linear in targets(model):
        linear.weight.data = linear.weight.data.to(dtype)
        if linear.bias is not None:
            linear.bias.data = linear.bias.data.to(dtype)


def adapter_state(model) -> dict[str, torch.Tensor]:
    """The adapters alone: what a checkpoint of a model fine-tuned from pretrained weights holds."""
    return {k: v for k, v in model.state_dict().items() if k.endswith(ADAPTERS)}


def merged_state(model) -> dict[str, torch.Tensor]:
    """The model's weights with each adapter merged into its projection (float32), and no adapter entries."""
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(ADAPTERS)}
    for name, linear in targets(model) if model.config.lora_rank else []:
        delta = (linear.lora_B.float() @ linear.lora_A.float()) * linear.lora_scale  # (out, in)
        state[f"{name}.weight"] = linear.weight.detach().float() + delta
        if linear.bias is not None:
            state[f"{name}.bias"] = linear.bias.detach().float()
    return state


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def memory_estimate(config, batch_size: int, adapters: bool, rank: int = 16) -> dict[str, float]:
    """Bytes a training step needs, by part, under bfloat16 autocast with float32 master weights and AdamW: without
    adapters every weight has a float32 gradient and two AdamW moments; with them the target projections are held in
    bfloat16 and frozen, and only the adapters have those. Activations: ~34 bytes per token per layer per unit of
    width, the figure of Korthikanti et al. (2022) for mixed precision without recomputation (attention's
    sequence-squared term is not stored: scaled_dot_product_attention recomputes it), plus the logits in bfloat16 and
    float32 with their gradient."""
    C, L, V, T = config.n_embd, config.n_layer, config.vocab_size, config.block_size
    per_block = 12 * C * C + 13 * C  # c_attn, c_proj, c_fc, mlp c_proj with biases, two LayerNorms
    total = L * per_block + V * C + T * C + 2 * C
    targets = L * (12 * C * C + 9 * C)
    trained = L * rank * (4 * C + 2 * C + 5 * C + 5 * C) if adapters else total
    weights = 2 * targets + 4 * (total - targets) + 4 * trained if adapters else 4 * total
    return {
        "parameters": total,
        "weights": weights + 2 * (total if not adapters else total - targets),  # with autocast's bfloat16 copies
        "gradients": 4 * trained,
        "optimizer": 8 * trained,
        "activations": 34 * T * batch_size * C * L + 10 * T * batch_size * V,
    }


def memory_table(batch_size: int = 16, block_size: int = 128) -> list[str]:
    """memory_estimate in GB for every GPT-2 and GPT-Neo size, with and without adapters (bench.py memory)."""
    import hf
    from model import GPTConfig

    lines = [
        f"estimated GB to fine-tune at block {block_size}, batch {batch_size}, bfloat16 autocast:",
        f"{'model':<36} {'params':>7} {'weights':>8} {'grads':>6} {'AdamW':>6} {'activ.':>7} {'total':>6}",
    ]
    for name, (L, H, C) in {**hf.PRETRAINED, **hf.NEO}.items():
        config = GPTConfig(block_size=block_size, vocab_size=50257, n_layer=L, n_head=H, n_embd=C)
        for adapters in (False, True):
            e = {k: v / 1e9 for k, v in memory_estimate(config, batch_size, adapters).items()}
            total = e["weights"] + e["gradients"] + e["optimizer"] + e["activations"]
            lines.append(
                f"{name + (' + LoRA r16' if adapters else ''):<36} {e['parameters']:6.2f}B {e['weights']:8.1f} "
                f"{e['gradients']:6.1f} {e['optimizer']:6.1f} {e['activations']:7.1f} {total:6.1f}"
            )
    return lines
