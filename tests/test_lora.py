"""LoRA (model.add_adapters) through train.py, sample.py and export.py: adapters on a tiny local GPT-2 and GPT-Neo,
the base model at step 0, only adapters train, merged = unmerged, small checkpoints that resume exactly, bad input."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

import bench
import export
import sample
import train
from haikugpt import checkpoint
from haikugpt.checkpoint import load_pretrained
from model import GPT, GPTConfig, add_adapters, merged_state_dict

ADAPTERS = ("lora_A", "lora_B")

REPO = Path(__file__).resolve().parent.parent

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("tiny_gpt2_bpe")


@pytest.fixture(scope="module")
def bases(tmp_path_factory, hf_gpt2) -> dict[str, Path]:
    """A tiny GPT-2 and a tiny GPT-Neo (global and local layers), saved as Hugging Face folders."""
    root = tmp_path_factory.mktemp("bases")
    hf_gpt2(vocab_size=64, n_positions=32, scale=0).save_pretrained(root / "gpt2")
    neo = transformers.GPTNeoConfig(vocab_size=64, max_position_embeddings=32, hidden_size=16, num_layers=2,
                                    num_heads=2, attention_types=[[["global", "local"], 1]], window_size=8)  # fmt: skip
    torch.manual_seed(0)
    transformers.GPTNeoForCausalLM(neo).save_pretrained(root / "neo")
    return {"gpt2": root / "gpt2", "neo": root / "neo"}


@pytest.fixture(scope="module")
def bpe_data(tmp_path_factory, corpus, write_bins) -> Path:
    """Bins whose ids fit the tiny bases' vocabulary of 64, labelled GPT-2 BPE."""
    return write_bins(tmp_path_factory.mktemp("data") / "haiku", corpus[:200], tokenizer="gpt2")


def args(data: Path, out: Path, **overrides) -> list[str]:
    a = dict(dataset=data, out_dir=out, block_size=16, batch_size=4, gradient_accumulation_steps=1, max_iters=6,
             eval_interval=3, eval_iters=2, learning_rate=1e-2, warmup_iters=1, lr_decay_iters=20, min_lr=1e-3,
             dtype="float32", compile=False, lora_rank=4, lora_dropout=0.1)  # fmt: skip
    return [f"--{k}={v}" for k, v in {**a, **overrides}.items()]


def losses(out: Path) -> dict[int, float]:
    records = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return {r["iter"]: r["loss"] for r in records if "loss" in r}


def test_adapters_start_as_the_base_model_and_count_as_the_formula_says(bases):
    base = load_pretrained(str(bases["gpt2"])).eval()
    adapted = load_pretrained(str(bases["gpt2"])).eval()
    add_adapters(adapted, seed=1, lora_rank=4)
    x = torch.randint(0, 64, (2, 16))
    assert torch.equal(adapted(x)[0], base(x)[0])  # B is zero: exactly the base model
    C, L, r = 16, 2, 4  # per block: c_attn (C -> 3C), attn c_proj (C -> C), c_fc (C -> 4C), mlp c_proj (4C -> C)
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == L * r * (
        (C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C)
    )
    assert {n for n, p in adapted.named_parameters() if p.requires_grad} == {
        f"transformer.h.{i}.{t}.{a}" for i in range(L) for t in adapted.config.lora_targets for a in ADAPTERS
    }


@pytest.mark.parametrize("kind", ["gpt2", "neo"])
def test_only_adapters_train_and_merged_weights_compute_the_same(kind, bases, bpe_data, tmp_path):
    out = tmp_path / "out"
    train.main(args(bpe_data, out, init_from=bases[kind]))
    ckpt = checkpoint.load_checkpoint(out)
    assert ckpt["base"] == str(bases[kind].resolve()) and set(ckpt["model"]) == {
        k for k in ckpt["model"] if k.endswith(ADAPTERS)
    }  # the adapters alone, and where the base is
    model = checkpoint.model_from_checkpoint(ckpt).eval()
    base = load_pretrained(str(bases[kind]), block_size=16).eval()
    for name, p in base.state_dict().items():
        assert torch.equal(model.state_dict()[name], p), name  # the base is as it was
    assert any(ckpt["model"][k].abs().sum() > 0 for k in ckpt["model"] if k.endswith("lora_B"))  # B has learnt
    merged = GPT(GPTConfig(**{**ckpt["model_args"], "lora_rank": 0})).eval()
    merged.load_state_dict(merged_state_dict(model), strict=False)
    merged.tie_weights()
    x = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(merged(x)[0], model(x)[0], rtol=0, atol=1e-5)

    export.main([f"--out_dir={out}", f"--hf_dir={tmp_path / 'hf'}"])  # merged into plain Hugging Face weights
    hf_class = transformers.GPTNeoForCausalLM if kind == "neo" else transformers.GPT2LMHeadModel
    hf = hf_class.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x)[0], rtol=0, atol=1e-5)
    sampled, *_ = sample.load_model("resume", str(out), torch.device("cpu"))  # as sample.py reads a checkpoint
    assert torch.equal(sampled(x)[0], model(x)[0]) and torch.equal(
        sampled.generate(x[:, :4], 10, temperature=0), model.generate(x[:, :4], 10, temperature=0)
    )


def test_resume_with_adapters_is_exact(bases, bpe_data, tmp_path):
    train.main(args(bpe_data, tmp_path / "one", init_from=bases["neo"]))
    train.main(args(bpe_data, tmp_path / "two", init_from=bases["neo"], max_iters=3))
    train.main(["--init_from=resume", f"--out_dir={tmp_path / 'two'}", "--max_iters=6"])
    assert losses(tmp_path / "two") == losses(tmp_path / "one")
    ckpt = checkpoint.load_checkpoint(tmp_path / "two")  # the adapters and their AdamW state; no base weights
    adapters = checkpoint.tensor_bytes(ckpt["model"])
    assert adapters == 4 * 2 * 4 * (4 * 16 + 2 * 16 + 5 * 16 + 5 * 16)  # float32, 2 layers, rank 4, as counted above
    assert checkpoint.tensor_bytes(ckpt["optimizer"]) <= 2 * adapters + 1000


def test_adapters_on_a_model_from_scratch_keep_the_frozen_weights_in_bfloat16(bpe_data, tmp_path):
    out = tmp_path / "out"
    train.main(args(bpe_data, out, n_layer=2, n_head=2, n_embd=16, dtype="bfloat16"))
    ckpt = checkpoint.load_checkpoint(out)
    assert ckpt["base"] is None and ckpt["model"]["transformer.h.0.mlp.c_fc.weight"].dtype == torch.bfloat16
    assert ckpt["model"]["transformer.h.0.mlp.c_fc.lora_A"].dtype == torch.float32
    assert ckpt["model"]["transformer.wte.weight"].dtype == torch.float32
    train.main(["--init_from=resume", f"--out_dir={out}", "--max_iters=8", "--dtype=float32"])  # and back


def fails(argv: list[str], match: str) -> None:
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message and match in message, message


def test_bad_input(bases, bpe_data, tmp_path):
    fails(args(bpe_data, tmp_path / "a", init_from=bases["gpt2"], lora_rank=-1), "lora_rank=-1 must be 0")
    fails(args(bpe_data, tmp_path / "a", init_from=bases["gpt2"], lora_targets="attn.q_proj"),
          "lora_targets: 'attn.q_proj' is not a projection of the model; choose from attn.c_attn")  # fmt: skip
    out = tmp_path / "b"
    train.main(args(bpe_data, out, init_from=bases["gpt2"], max_iters=3))
    before = (out / "ckpt.pt").read_bytes()
    fails(["--init_from=resume", f"--out_dir={out}", "--lora_rank=8"], "lora_rank=8 differs from the checkpoint's")
    assert (out / "ckpt.pt").read_bytes() == before
    fails(args(bpe_data, tmp_path / "c", init_from="EleutherAI/gpt-neo-9B"), "use one of gpt2, gpt2-medium")


def memory_estimate(config: GPTConfig, batch_size: int, adapters: bool, rank: int = 16) -> dict[str, float]:
    """Bytes a training step needs, by part, under bfloat16 autocast with float32 master weights and AdamW (adapters:
    the target projections frozen in bfloat16). Activations: ~34 bytes per token per layer per unit of width
    (Korthikanti et al. 2022; SDPA recomputes the T^2 term), plus the logits in bfloat16 and float32 and their grad."""
    C, L, V, T = config.n_embd, config.n_layer, config.vocab_size, config.block_size
    total = L * (12 * C * C + 13 * C) + V * C + T * C + 2 * C  # blocks (four projections, two LayerNorms), tables
    targets = L * (12 * C * C + 9 * C)
    trained = L * rank * (4 * C + 2 * C + 5 * C + 5 * C) if adapters else total
    weights = 2 * targets + 4 * (total - targets) + 4 * trained if adapters else 4 * total
    weights += 2 * (total if not adapters else total - targets)  # autocast's bfloat16 copies
    activations = 34 * T * batch_size * C * L + 10 * T * batch_size * V
    return {"parameters": total, "weights": weights, "gradients": 4 * trained, "optimizer": 8 * trained,
            "activations": activations}  # fmt: skip


@pytest.mark.slow
def test_the_memory_estimate_matches_train_py_on_this_cpu(tmp_path, write_bins, corpus):
    """memory_estimate (the README's table of what fine-tuning each size needs) against train.py's peak memory
    (bfloat16 autocast, one step after another): what a run grows over an eval-only run of the same model, with and
    without adapters, within a factor of about 1.5 (the ratio moved 0.74-0.83 without adapters and 1.04-1.19 with them
    over three runs here: peak RSS is noisy)."""
    data = bench.write_random_bins(tmp_path / "data", 8192)
    shape = dict(n_layer=6, n_head=8, n_embd=512, block_size=128, batch_size=8)
    fixed = {**shape, "dataset": data, "dtype": "bfloat16", "max_iters": 3, "eval_interval": 10**9, "eval_iters": 1,
             "warmup_iters": 0, "gradient_accumulation_steps": 1, "compile": False}  # fmt: skip
    peak = {}
    for name, extra in (("eval", {"eval_only": True}), ("full", {}), ("lora", {"lora_rank": 16})):
        args = {**fixed, **extra, "out_dir": tmp_path / name}
        cmd = [sys.executable, str(REPO / "train.py"), *(f"--{k}={v}" for k, v in args.items())]
        peak[name] = bench.run_peak_mb(cmd, {**os.environ, "OMP_NUM_THREADS": "1"}) * 2**20
    config = GPTConfig(vocab_size=8192, **{k: v for k, v in shape.items() if k != "batch_size"})
    for name, adapters in (("full", False), ("lora", True)):
        e = memory_estimate(config, shape["batch_size"], adapters)
        grown = e["weights"] - 4 * e["parameters"] + e["gradients"] + e["optimizer"] + e["activations"]
        assert 0.55 < (peak[name] - peak["eval"]) / grown < 1.5, (name, peak, grown)
    assert peak["lora"] < peak["full"]
