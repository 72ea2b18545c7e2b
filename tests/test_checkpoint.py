"""checkpoint.py: one builder, atomic saves, safe loads (nanoGPT's files too), models built without a random init,
and pretrained weights: Hugging Face parity for GPT-2 in every layout and for GPT-Neo."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from haikugpt import checkpoint
from haikugpt.checkpoint import load_pretrained
from model import GPT, GPTConfig

REPO = Path(__file__).resolve().parent.parent

CONFIG = GPTConfig(block_size=8, vocab_size=64, n_layer=2, n_head=2, n_embd=8)


def tiny_ckpt() -> tuple[GPT, dict]:
    model = GPT(CONFIG, seed=0)
    return model, checkpoint.build_checkpoint(model, {"dataset": "x"}, None, iter_num=3, best_val_loss=1.5)


def test_save_load_round_trip(tmp_path):
    model, ckpt = tiny_ckpt()
    checkpoint.save_checkpoint(ckpt, tmp_path / "ckpt.pt")
    loaded = checkpoint.load_checkpoint(tmp_path)  # an out_dir finds ckpt.pt
    assert loaded["iter_num"] == 3 and loaded["meta"] is None and loaded["scaler"] is None
    assert loaded["config"] == {"dataset": "x"} and loaded["model_args"]["n_embd"] == 8
    rebuilt = checkpoint.model_from_checkpoint(loaded)
    assert rebuilt.lm_head.weight is rebuilt.transformer.wte.weight  # tied again
    x = torch.randint(0, 64, (1, 8))
    assert torch.equal(rebuilt(x)[0], model(x)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_a_gpt2_shaped_checkpoint_carries_nanogpts_model_args_only():
    """nanoGPT's GPTConfig(**model_args) takes seven keys: a GPT-2-shaped checkpoint has those alone; GPT-Neo's and
    LoRA's settings are added only where they differ from GPT-2's."""
    nanogpt = {"n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout"}
    assert set(tiny_ckpt()[1]["model_args"]) == nanogpt
    neo = GPT(replace(CONFIG, scale_attn=False, lora_rank=2), seed=0)
    args = checkpoint.build_checkpoint(neo, {}, None)["model_args"]
    assert set(args) == nanogpt | {"scale_attn", "lora_rank"} and not args["scale_attn"] and args["lora_rank"] == 2


def test_nanogpt_checkpoint_loads(tmp_path):
    """nanoGPT saves the compiled model's keys, a tensor best_val_loss, and (older versions) attn.bias masks."""
    model, ckpt = tiny_ckpt()
    state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    state["_orig_mod.transformer.h.0.attn.bias"] = torch.ones(1, 1, 8, 8).tril()
    ckpt.update(model=state, best_val_loss=torch.tensor(2.25), config={"dataset": "shakespeare_char", "extra": 1})
    del ckpt["resolved"], ckpt["meta"], ckpt["rng"], ckpt["sampler"], ckpt["scaler"]
    torch.save(ckpt, tmp_path / "nano.pt")
    loaded = checkpoint.load_checkpoint(tmp_path / "nano.pt")
    assert loaded["best_val_loss"] == 2.25
    assert not any(k.startswith("_orig_mod.") for k in loaded["model"])
    x = torch.randint(0, 64, (1, 8))
    assert torch.equal(checkpoint.model_from_checkpoint(loaded)(x)[0], model(x)[0])


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    _, ckpt = tiny_ckpt()
    path = tmp_path / "ckpt.pt"
    checkpoint.save_checkpoint(ckpt, path)
    before = path.read_bytes()

    def crash(obj, f):  # dies half way through writing, as a full disk or a kill would
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint({**ckpt, "iter_num": 4}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*ckpt\.pt; train one with `python train.py"):
        checkpoint.load_checkpoint(tmp_path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(RuntimeError, match="not a training checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "junk.pt")


def test_weights_that_do_not_fit_the_model_args_are_one_line(tmp_path):
    _, ckpt = tiny_ckpt()
    ckpt["model_args"]["n_embd"] = 16
    with pytest.raises(RuntimeError, match=r"^the checkpoint's weights do not fit its model_args \(transformer\.wte"):
        checkpoint.model_from_checkpoint(ckpt)
    del ckpt["model"]["transformer.ln_f.bias"]
    ckpt["model_args"]["n_embd"] = 8
    with pytest.raises(RuntimeError, match=r"missing \['transformer\.ln_f\.bias'\]"):
        checkpoint.model_from_checkpoint(ckpt)


def test_a_model_from_a_checkpoint_skips_the_random_init(monkeypatch):
    _, ckpt = tiny_ckpt()

    def no_init(self, seed):
        raise AssertionError("a throwaway random init")

    monkeypatch.setattr(GPT, "_init_weights", no_init)
    model = checkpoint.model_from_checkpoint(ckpt)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["model"].items())
    assert not any(p.is_meta for p in model.parameters())


def test_the_size_of_a_checkpoint_counts_shared_tensors_once():
    model, ckpt = tiny_ckpt()
    weights = sum(p.numel() * 4 for p in model.parameters())  # wte and lm_head share one tensor
    assert checkpoint.tensor_bytes(ckpt) == weights


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
    model = load_pretrained(str(folder)).eval()
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
    model = load_pretrained(str(tmp_path / "saved"), block_size=10, dropout=0.2)
    assert model.config.block_size == 10 and model.transformer.wpe.weight.shape == (10, 16)
    assert model.config.dropout == 0.2 and model.transformer.drop.p == 0.2
    idx = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        assert (model.eval()(idx)[0] - hf(idx).logits).abs().max().item() < 1e-5


def test_from_pretrained_errors(tmp_path, hf_gpt2):
    with pytest.raises(ValueError, match="use one of gpt2, gpt2-medium, gpt2-large, gpt2-xl"):
        load_pretrained("gpt3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_pretrained(str(tmp_path / "empty"))
    hf = hf_gpt2()
    folder = tmp_path / "noweights"
    folder.mkdir()
    hf.config.to_json_file(folder / "config.json")
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        load_pretrained(str(folder))
    # A config that disagrees with the weights: the key and both shapes are named.
    folder = save_hf_layout(hf, tmp_path / "mismatch", "safetensors", True, False, False)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 60}))
    wrong = r"do not fit its config.json \(transformer.wte.weight is \(50, 16\), the model's \(60, 16\)"
    with pytest.raises(RuntimeError, match=wrong):
        load_pretrained(str(folder))
    with pytest.raises(ValueError, match="between 1 and the pretrained 24"):
        load_pretrained(str(tmp_path / "mismatch"), block_size=25)


def test_hub_names_use_the_cache_and_explain_when_offline(tmp_path, hf_gpt2):
    """By name, weights come from the Hugging Face cache (HF_HOME); with neither cache nor network, a clear error."""
    hf = hf_gpt2()
    snapshot = tmp_path / "hf" / "hub" / "models--openai-community--gpt2" / "snapshots" / "abc123"
    save_hf_layout(hf, snapshot, "safetensors", True, False, False)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    code = (
        "from haikugpt.checkpoint import load_pretrained\n"
        "m = load_pretrained('gpt2'); print('loaded', m.config.n_layer, m.config.vocab_size)\n"
        "load_pretrained('gpt2-medium')\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert "loaded 2 50" in out.stdout
    assert "could not download gpt2-medium from the Hugging Face Hub" in out.stderr
    assert "pass the path of a local Hugging Face folder" in out.stderr


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
    model = load_pretrained(str(tmp_path)).eval()
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
        gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
        cached = model.generate(prompt, 70, generator=gen(), **kw)
        assert torch.equal(cached, model.generate(prompt, 70, generator=gen(), use_cache=False, **kw))


def test_gpt_neo_configs_the_model_cannot_express_are_refused_naming_the_field(tmp_path):
    for field, value in [("activation_function", "relu"), ("attention_types", [[["global", "sparse"], 2]]),
                         ("intermediate_size", 100)]:  # fmt: skip
        hf_neo().save_pretrained(tmp_path / field)
        config = json.loads((tmp_path / field / "config.json").read_text())
        (tmp_path / field / "config.json").write_text(json.dumps({**config, field: value}))
        with pytest.raises(ValueError, match=f"{field}=.* is not something this model can express"):
            load_pretrained(str(tmp_path / field))
    with pytest.raises(ValueError, match="unknown model 'EleutherAI/gpt-neo-9B'.*EleutherAI/gpt-neo-125M, "
                                         "EleutherAI/gpt-neo-1.3B, EleutherAI/gpt-neo-2.7B"):  # fmt: skip
        load_pretrained("EleutherAI/gpt-neo-9B")
