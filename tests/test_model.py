"""model.py: GPT-2 parity with Hugging Face, pretrained loading in every layout, generation, optimizer groups."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig, check_sampling, sample_next

REPO = Path(__file__).resolve().parent.parent
TINY = GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=16)


def tiny_model(seed: int = 0, **kw) -> GPT:
    config = GPTConfig(**{**TINY.__dict__, **kw})
    return GPT(config, seed=seed).eval()


def save_hf_layout(hf, folder: Path, fmt: str, prefix: bool, buffers: bool, lm_head: bool) -> Path:
    """Write hf's weights the way checkpoints in the wild look: .safetensors or .bin, with or without extras."""
    folder.mkdir(parents=True, exist_ok=True)
    hf.config.to_json_file(folder / "config.json")
    state = {}
    for key, tensor in hf.state_dict().items():
        if key == "lm_head.weight":
            continue
        state[key if prefix else key.removeprefix("transformer.")] = tensor.clone()
    n = hf.config.n_positions
    for i in range(hf.config.n_layer) if buffers else []:
        name = f"transformer.h.{i}.attn" if prefix else f"h.{i}.attn"
        state[f"{name}.bias"] = torch.tril(torch.ones(n, n, dtype=torch.uint8)).view(1, 1, n, n)
        state[f"{name}.masked_bias"] = torch.tensor(-1e4)
    if lm_head:
        state["lm_head.weight"] = hf.lm_head.weight.detach().clone()
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, folder / "model.safetensors")
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


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
# Pretrained weights: parity with Hugging Face in every layout

LAYOUTS = [  # (format, "transformer." prefix, attention buffers, lm_head.weight saved)
    ("safetensors", True, False, False),
    ("safetensors", False, False, True),
    ("bin", True, True, True),
    ("bin", False, True, False),
]


@pytest.mark.parametrize("fmt,prefix,buffers,lm_head", LAYOUTS)
def test_from_pretrained_matches_hugging_face(tmp_path, fmt, prefix, buffers, lm_head, hf_gpt2):
    hf = hf_gpt2()
    folder = save_hf_layout(hf, tmp_path / "gpt2-tiny", fmt, prefix, buffers, lm_head)
    model = GPT.from_pretrained(str(folder)).eval()
    assert model.lm_head.weight is model.transformer.wte.weight
    idx = torch.randint(0, 50, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf(idx).logits
    logits, _ = model(idx)
    assert (logits - expected).abs().max().item() < 1e-5

    prompt = idx[:, :5]
    theirs = hf.generate(
        prompt, max_new_tokens=19, do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(prompt)
    )
    ours = model.generate(prompt, max_new_tokens=19, temperature=0)
    assert torch.equal(ours, theirs)


def test_hugging_face_own_save_and_overrides(tmp_path, hf_gpt2):
    hf = hf_gpt2()
    hf.save_pretrained(tmp_path / "saved")
    model = GPT.from_pretrained(str(tmp_path / "saved"), block_size=10, dropout=0.2)
    assert model.config.block_size == 10 and model.transformer.wpe.weight.shape == (10, 16)
    assert model.config.dropout == 0.2 and model.transformer.drop.p == 0.2
    idx = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        assert (model.eval()(idx)[0] - hf(idx).logits).abs().max().item() < 1e-5


def test_from_pretrained_errors(tmp_path, hf_gpt2):
    with pytest.raises(ValueError, match="use one of gpt2, gpt2-medium, gpt2-large, gpt2-xl"):
        GPT.from_pretrained("gpt3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        GPT.from_pretrained(str(tmp_path / "empty"))
    hf = hf_gpt2()
    folder = tmp_path / "noweights"
    folder.mkdir()
    hf.config.to_json_file(folder / "config.json")
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        GPT.from_pretrained(str(folder))
    # A config that disagrees with the weights: the key and both shapes are named.
    folder = save_hf_layout(hf, tmp_path / "mismatch", "safetensors", True, False, False)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 60}))
    with pytest.raises(ValueError, match=r"transformer.wte.weight has shape \(50, 16\), expected \(60, 16\)"):
        GPT.from_pretrained(str(folder))
    with pytest.raises(ValueError, match="between 1 and the pretrained 24"):
        GPT.from_pretrained(str(tmp_path / "mismatch"), block_size=25)
    with pytest.raises(ValueError, match="only override dropout and block_size"):
        GPT.from_pretrained(str(tmp_path / "mismatch"), n_layer=3)


def test_hub_names_use_the_cache_and_explain_when_offline(tmp_path, hf_gpt2):
    """By name, weights come from the Hugging Face cache (HF_HOME); with neither cache nor network, a clear error."""
    hf = hf_gpt2()
    snapshot = tmp_path / "hf" / "hub" / "models--openai-community--gpt2" / "snapshots" / "abc123"
    save_hf_layout(hf, snapshot, "safetensors", True, False, False)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    code = (
        "from model import GPT\n"
        "m = GPT.from_pretrained('gpt2'); print('loaded', m.config.n_layer, m.config.vocab_size)\n"
        "GPT.from_pretrained('gpt2-medium')\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert "loaded 2 50" in out.stdout
    assert "could not download gpt2-medium from the Hugging Face Hub" in out.stderr
    assert "pass the path of a local Hugging Face folder" in out.stderr


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


# ------------------------------------------------------------------------------------------------------------------
# GPT-Neo: the same model, configured


def hf_neo(vocab_size: int = 50, positions: int = 48, window: int = 5):
    """A tiny random Hugging Face GPT-Neo, global and local layers alternating, weights large enough to matter."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPTNeoConfig(
        vocab_size=vocab_size, max_position_embeddings=positions, hidden_size=16, num_layers=4, num_heads=2,
        attention_types=[[["global", "local"], 2]], window_size=window, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.GPTNeoForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.2)
    return hf


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_gpt_neo_matches_hugging_face_past_its_local_window(tmp_path, fmt):
    hf = hf_neo()
    hf.save_pretrained(tmp_path, safe_serialization=fmt == "safetensors")
    model = GPT.from_pretrained(str(tmp_path)).eval()
    assert (model.config.scale_attn, model.config.qkv_bias, model.config.local_layers) == (False, False, (1, 3))
    idx = torch.randint(0, 50, (2, 40), generator=torch.Generator().manual_seed(0))  # 40 tokens, windows of 5
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=0, atol=1e-5)
    prompt = idx[:, :3]
    theirs = hf.generate(prompt, max_new_tokens=30, do_sample=False, pad_token_id=0,
                         attention_mask=torch.ones_like(prompt))  # fmt: skip
    ours = model.generate(prompt, 30, temperature=0)
    assert torch.equal(ours, theirs)
    # the KV cache with local layers, also past block_size (48) where the window moves: the same tokens as recomputing
    for kw in ({"temperature": 0}, {"temperature": 1.0, "top_k": 20}):
        cached = sampled(model, prompt, 70, seed=3, **kw)
        assert torch.equal(cached, sampled(model, prompt, 70, seed=3, use_cache=False, **kw))


def test_gpt_neo_configs_the_model_cannot_express_are_refused_naming_the_field(tmp_path):
    for field, value in [("activation_function", "relu"), ("attention_types", [[["global", "sparse"], 2]]),
                         ("intermediate_size", 100)]:  # fmt: skip
        hf_neo().save_pretrained(tmp_path / field)
        config = json.loads((tmp_path / field / "config.json").read_text())
        (tmp_path / field / "config.json").write_text(json.dumps({**config, field: value}))
        with pytest.raises(ValueError, match=f"{field}=.* is not something this model can express"):
            GPT.from_pretrained(str(tmp_path / field))
    with pytest.raises(ValueError, match="unknown model 'EleutherAI/gpt-neo-9B'.*EleutherAI/gpt-neo-125M, "
                                         "EleutherAI/gpt-neo-1.3B, EleutherAI/gpt-neo-2.7B"):  # fmt: skip
        GPT.from_pretrained("EleutherAI/gpt-neo-9B")


@pytest.mark.cuda
def test_cuda_generation_gives_the_cpu_tokens():
    model = tiny_model(seed=3, vocab_size=64)
    prompt = torch.randint(0, 64, (3, 5), generator=torch.Generator().manual_seed(1))
    on_cpu = model.generate(prompt, 20, temperature=0)
    gpu = model.to("cuda")
    cached = gpu.generate(prompt.cuda(), 20, temperature=0)
    assert torch.equal(cached.cpu(), on_cpu)
    assert torch.equal(gpu.generate(prompt.cuda(), 20, temperature=0, use_cache=False), cached)
