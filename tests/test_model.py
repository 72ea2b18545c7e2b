"""model.py: the model itself, generation (cached and uncached alike, filters, stop tokens), optimizer groups."""

import math
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig, check_sampling, sample_next

REPO = Path(__file__).resolve().parent.parent
TINY = GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=16)


def tiny_model(seed: int = 0, **kw) -> GPT:
    config = GPTConfig(**{**TINY.__dict__, **kw})
    return GPT(config, seed=seed).eval()


# ------------------------------------------------------------------------------------------------------------------
# The model itself


def test_shapes_tying_and_initial_loss():
    model = tiny_model()
    idx = torch.randint(0, 64, (3, 16))
    logits, loss = model(idx)
    assert logits.shape == (3, 16, 64) and loss is None
    _, loss = model(idx, torch.randint(0, 64, (3, 16)))
    assert abs(loss.item() - math.log(64)) < 0.05  # near-uniform predictions at initialisation
    assert model.lm_head.weight is model.transformer.wte.weight
    assert sum(p.numel() for p in model.parameters()) == model.num_params(non_embedding=False)


def test_loss_ignores_minus_one():
    model = tiny_model()
    idx = torch.randint(0, 64, (2, 8))
    targets = idx.clone()
    targets[:, :4] = -1
    logits, loss = model(idx, targets)
    expected = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 64), idx[:, 4:].reshape(-1))
    assert torch.allclose(loss, expected)


def test_init_is_seeded_and_gpt2_shaped():
    a, b, c = tiny_model(seed=1), tiny_model(seed=1), tiny_model(seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.transformer.wte.weight, c.transformer.wte.weight)
    big = GPT(GPTConfig(block_size=32, vocab_size=512, n_layer=8, n_head=4, n_embd=256), seed=0)
    assert abs(big.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 1e-3
    assert abs(big.transformer.h[0].mlp.c_proj.weight.std().item() - 0.02 / math.sqrt(16)) < 1e-3
    assert big.transformer.h[0].attn.c_attn.bias.abs().sum() == 0 and torch.all(big.transformer.ln_f.weight == 1)


def test_no_bias_variant_and_too_long_input():
    model = tiny_model(bias=False)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    with pytest.raises(ValueError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_optimizer_groups_decay_only_matrices():
    model = tiny_model()
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.95), device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    _, loss = model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))
    loss.backward()
    opt.step()  # the fused CPU kernel runs, and moves every parameter
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before))


# ------------------------------------------------------------------------------------------------------------------
# Generation


def sampled(model, prompt, n, seed, **kw):
    return model.generate(prompt, n, generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("kw", [{}, {"temperature": 0.7, "top_k": 10}, {"top_p": 0.9}, {"temperature": 0}])
def test_cached_and_uncached_generation_agree_exactly(kw):
    model = tiny_model(seed=3)
    prompt = torch.randint(0, 64, (3, 5), generator=torch.Generator().manual_seed(1))
    cached = sampled(model, prompt, 40, seed=7, **kw)  # 45 tokens: well past block_size 16
    uncached = sampled(model, prompt, 40, seed=7, use_cache=False, **kw)
    assert cached.shape == (3, 45) and torch.equal(cached, uncached)
    assert torch.equal(cached[:, :5], prompt)


@pytest.mark.slow
def test_compiled_blocks_generate_the_same_tokens_with_graphs_per_shape_not_per_layer():
    from torch._dynamo.utils import counters

    graphs = []
    for n_layer in (2, 10):  # 10: past torch.compile's recompile limit (8), beyond which layers would run eager
        model = GPT(GPTConfig(block_size=32, vocab_size=64, n_layer=n_layer, n_head=2, n_embd=16), seed=6).eval()
        prompt = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(1))
        eager = model.generate(prompt, 12, temperature=0)
        torch._dynamo.reset()
        counters.clear()
        for block in model.transformer.h:  # as sample.py --compile=True does
            block.compile(dynamic=True)
        assert torch.equal(model.generate(prompt, 12, temperature=0), eager)
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] == graphs[1], graphs


def test_generation_past_block_size_sees_the_latest_window():
    model = tiny_model(seed=4)
    prompt = torch.randint(0, 64, (1, 30))  # longer than block_size: only the last 16 tokens matter
    out = model.generate(prompt, 5, temperature=0)
    assert torch.equal(out[:, 30:], model.generate(prompt[:, -16:], 5, temperature=0)[:, 16:])
    # nanoGPT's loop, written out: crop, full forward, argmax.
    idx = prompt
    for _ in range(5):
        logits, _ = model(idx[:, -16:])
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, idx)


def test_same_seed_same_samples_and_stream_matches_generate():
    model = tiny_model(seed=5)
    prompt = torch.zeros(2, 1, dtype=torch.long)
    a, b = sampled(model, prompt, 12, seed=1), sampled(model, prompt, 12, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, sampled(model, prompt, 12, seed=2))
    streamed = list(model.stream(prompt, 12, generator=torch.Generator().manual_seed(1)))
    assert len(streamed) == 12 and all(t.shape == (2,) for t in streamed)
    assert torch.equal(torch.stack(streamed, dim=1), a[:, 1:])


def test_top_k_one_is_greedy():
    model = tiny_model(seed=6)
    prompt = torch.randint(0, 64, (2, 4))
    assert torch.equal(sampled(model, prompt, 20, seed=0, top_k=1), model.generate(prompt, 20, temperature=0))


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().repeat(4000, 1)
    gen = torch.Generator().manual_seed(0)
    for top_p, kept in [(0.4, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2}), (1.0, {0, 1, 2, 3})]:
        drawn = set(sample_next(logits, top_p=top_p, generator=gen).tolist())
        assert drawn == kept, top_p
    # top-k: only the k largest survive
    assert set(sample_next(logits, top_k=2, generator=gen).tolist()) == {0, 1}


def test_stop_token_ends_each_row():
    model = tiny_model(seed=8)
    prompt = torch.randint(0, 64, (3, 3), generator=torch.Generator().manual_seed(2))
    free = sampled(model, prompt, 30, seed=4)
    stop = free[0, 3 + 4].item()  # row 0 emits this token at its fifth step
    out = sampled(model, prompt, 30, seed=4, stop_token=stop)
    for row_free, row in zip(free, out):
        new = row[3:].tolist()
        end = new.index(stop) if stop in new else len(new)
        assert new[: end + 1] == row_free[3 : 3 + end + 1].tolist()  # same tokens up to and including the stop
        assert all(t == stop for t in new[end:])  # then only the stop token
    assert out.shape[1] <= free.shape[1]
    if all(stop in row[3:].tolist() for row in free):  # every row stops, so generation ends early
        assert out.shape[1] < free.shape[1]


def test_generation_argument_errors():
    model = tiny_model()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        model.generate(prompt, 2, temperature=-1)
    with pytest.raises(ValueError, match=r"top_p must be a number in \(0, 1\]"):
        model.generate(prompt, 2, top_p=1.5)
    with pytest.raises(ValueError, match="top_k must be an integer >= 1, or 0 or None"):
        model.generate(prompt, 2, top_k=-1)
    assert torch.equal(model.generate(prompt, 0), prompt)


def test_off_is_spelled_the_same_everywhere():
    """top_k 0 and None, top_p 1 and None: no filter, in generate as in sample.py."""
    model = tiny_model(seed=9)
    prompt = torch.zeros(2, 1, dtype=torch.long)
    plain = sampled(model, prompt, 10, seed=3, temperature=1.5)
    for off in ({"top_k": 0}, {"top_k": None}, {"top_p": 1.0}, {"top_p": None}, {"top_k": 0, "top_p": 1}):
        assert torch.equal(sampled(model, prompt, 10, seed=3, temperature=1.5, **off), plain), off
    assert check_sampling(1.0, 0, 1) == (None, None)


@pytest.mark.cuda
def test_cuda_generation_gives_the_cpu_tokens():
    model = tiny_model(seed=3, vocab_size=64)
    prompt = torch.randint(0, 64, (3, 5), generator=torch.Generator().manual_seed(1))
    on_cpu = model.generate(prompt, 20, temperature=0)
    gpu = model.to("cuda")
    cached = gpu.generate(prompt.cuda(), 20, temperature=0)
    assert torch.equal(cached.cpu(), on_cpu)
    assert torch.equal(gpu.generate(prompt.cuda(), 20, temperature=0, use_cache=False), cached)
