"""train.py end to end on CPU: tiny models on char bins of the embedded haiku corpus, written here, so nothing is
downloaded or prepared."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint
import configurator
import train
from device import peak_flops

REPO = Path(__file__).resolve().parent.parent


def write_bins(folder: Path, haiku: list[str], tokenizer: str = "char") -> Path:
    """train.bin, val.bin and meta.json as prepare/ writes them: one id per character, 0 ends each haiku."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("".join(haiku)))
    ids = np.array([i for h in haiku for i in [*(chars.index(c) + 1 for c in h), 0]], dtype=np.uint16)
    cut = len(ids) * 9 // 10
    ids[:cut].tofile(folder / "train.bin")
    ids[cut:].tofile(folder / "val.bin")
    meta = {"tokenizer": tokenizer, "vocab_size": len(chars) + 1, "eot_id": 0, "chars": ["<eot>", *chars]}
    (folder / "meta.json").write_text(json.dumps({**meta, "dataset": "haiku"}))
    return folder


def tiny_args(data: Path, out: Path, **overrides) -> list[str]:
    args = dict(
        dataset=data, out_dir=out, n_layer=2, n_head=2, n_embd=16, block_size=16, batch_size=4,
        gradient_accumulation_steps=2, max_iters=12, eval_interval=4, eval_iters=2, log_interval=1,
        learning_rate=1e-2, warmup_iters=2, lr_decay_iters=30, min_lr=1e-3, dtype="float32", compile=False,
    )  # fmt: skip
    args.update(overrides)
    return [f"--{k}={v}" for k, v in args.items()]


def losses(out: Path) -> dict[int, float]:
    """Training loss by step, from metrics.jsonl."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["iter"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


@pytest.fixture(scope="module")
def haiku() -> list[str]:
    """The first 300 haiku of the embedded corpus (~20k characters)."""
    return (REPO / "prepare" / "haiku_corpus.txt").read_text().strip().split("\n\n")[:300]


@pytest.fixture(scope="module")
def data(tmp_path_factory, haiku) -> Path:
    return write_bins(tmp_path_factory.mktemp("data") / "haiku_char", haiku)


def test_loss_falls_and_checkpoints_load(data, tmp_path, capsys):
    out = tmp_path / "out"
    train.main(tiny_args(data, out, max_iters=40, eval_interval=20, n_embd=32, dtype="bfloat16"))
    log = capsys.readouterr().out
    assert "iter 5: loss " in log and ", time " in log and "ms, mfu " in log and "tok/s" in log  # nanoGPT's shape
    assert "step 40: train loss" in log
    by_step = losses(out)
    assert sorted(by_step) == list(range(40))
    assert by_step[39] < by_step[0] - 0.8  # from ~ln(vocab) towards the text's structure
    ckpt = checkpoint.load_checkpoint(out)
    assert ckpt["iter_num"] == 40 and ckpt["config"]["dtype"] == "bfloat16"
    assert ckpt["model_args"]["vocab_size"] == 64  # padded up from the meta's vocab
    assert ckpt["meta"]["tokenizer"] == "char" and (out / "best.pt").is_file()
    assert json.loads((out / "config.json").read_text())["max_iters"] == 40
    model = checkpoint.model_from_checkpoint(ckpt).eval()
    x = torch.from_numpy(np.fromfile(data / "val.bin", dtype=np.uint16)[:17].astype(np.int64))[None]
    _, loss = model(x[:, :16], x[:, 1:])
    assert loss.item() < by_step[0]


def test_resume_is_exact(data, tmp_path):
    """6 steps, then 6 more resumed, give bit-identical losses to 12 steps in one go (dropout on)."""
    common = dict(dropout=0.1, max_iters=12)
    runs = [("one", common), ("two", {**common, "max_iters": 6}), ("two", {**common, "init_from": "resume"})]
    for out, args in runs:
        peak_flops.cache_clear()  # as in a fresh process: measuring the peak must not move the random streams
        train.main(tiny_args(data, tmp_path / out, **args))
        if out == "two" and "init_from" not in args:
            assert checkpoint.load_checkpoint(tmp_path / "two")["iter_num"] == 6
    assert losses(tmp_path / "two") == losses(tmp_path / "one")


def test_eval_only_writes_no_checkpoint(data, tmp_path, capsys):
    train.main(tiny_args(data, tmp_path, eval_only=True))
    assert "step 0: train loss" in capsys.readouterr().out
    assert not (tmp_path / "ckpt.pt").exists()


def test_float16_checkpoints_the_gradient_scaler(data, tmp_path):
    train.main(tiny_args(data, tmp_path, max_iters=2, dtype="float16"))
    scaler = checkpoint.load_checkpoint(tmp_path)["scaler"]
    assert scaler is not None and scaler["scale"] > 0


def test_compile_without_a_compiler_warns_and_runs_eager(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("device.shutil.which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    train.main(tiny_args(data, tmp_path, max_iters=1, compile=True))
    assert "warning: torch.compile on CPU needs a C++ compiler; running eager" in capsys.readouterr().err
    assert checkpoint.load_checkpoint(tmp_path)["config"]["compile"] is False


def test_nonfinite_loss_stops_and_keeps_the_checkpoint(data, tmp_path):
    train.main(tiny_args(data, tmp_path, max_iters=4))
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(SystemExit, match=r"loss is (nan|inf) at step \d+"):
        train.main(tiny_args(data, tmp_path, init_from="resume", max_iters=8, learning_rate=1e30, warmup_iters=0))
    assert (tmp_path / "ckpt.pt").read_bytes() == before


def fails(argv: list[str], match: str, out: Path | None = None) -> None:
    with pytest.raises(SystemExit, match=match):
        train.main(argv)
    if out is not None:
        assert not (out / "ckpt.pt").exists()


def test_bad_input_is_one_clear_error(data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    fails(tiny_args(data, out, init_from="resume"), r"no checkpoint at .*ckpt\.pt; train one with", out)
    fails(tiny_args(data, out, batchsize=3), "did you mean 'batch_size'", out)
    fails(tiny_args(data, out, gradient_accumulation_steps=0), "gradient_accumulation_steps=0", out)
    fails(tiny_args(data, out, n_head=3), "n_embd=16 must be divisible by n_head=3", out)
    fails(tiny_args(data, out, dtype="float8"), "dtype='float8'", out)
    fails(tiny_args(data, out, block_size=100000), "too few for block_size", out)
    fails(tiny_args("no_such_data", out), r"no train.bin .* run `python prepare/text.py --input", out)
    monkeypatch.setattr(train, "REPO_ROOT", tmp_path)  # a checkout where nothing has been prepared yet
    fails(tiny_args("haiku_char", out), r"run `python prepare/haiku.py --tokenizer char`", out)
    fails(tiny_args("haiku", out), r"run `python prepare/haiku.py`", out)


def test_ranks_must_divide_gradient_accumulation():
    with pytest.raises(ValueError, match="multiple of the 4 ranks; use 8"):
        train.micro_steps(10, 4)
    assert train.micro_steps(40, 8) == 5


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory) -> Path:
    """A tiny random GPT-2 saved as a Hugging Face folder: what init_from=<folder> loads."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("hf_gpt2")
    config = transformers.GPT2Config(n_positions=16, n_embd=16, n_layer=2, n_head=2, vocab_size=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_finetune_from_a_local_gpt2(data, haiku, hf_gpt2, tmp_path):
    out = tmp_path / "out"
    fails(tiny_args(data, out, init_from=hf_gpt2), "reads GPT-2 BPE tokens but the dataset's char vocabulary", out)
    bpe = write_bins(tmp_path / "bpe", haiku, tokenizer="gpt2")  # ids under the tiny model's 64, labelled GPT-2 BPE
    fails(tiny_args(bpe, out, init_from=hf_gpt2, block_size=32), "block_size 32 must be between 1 and .* 16", out)
    train.main(["config/finetune_haiku.py", *tiny_args(bpe, out, init_from=hf_gpt2, max_iters=2, dropout=0.1)])
    ckpt = checkpoint.load_checkpoint(out)
    assert ckpt["model_args"]["n_embd"] == 16 and ckpt["config"]["n_embd"] == 16  # the config records the model


def test_lr_schedule():
    config = dict(train.DEFAULTS, learning_rate=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    assert 0 < train.get_lr(0, config) < train.get_lr(9, config) < 1.0
    assert train.get_lr(10, config) == 1.0
    assert train.get_lr(60, config) == pytest.approx(0.55)
    assert train.get_lr(110, config) == train.get_lr(10_000, config) == 0.1
    assert train.get_lr(5, {**config, "decay_lr": False}) == 1.0


def test_shipped_configs_use_known_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # and are found from any directory
    for path in sorted((REPO / "config").glob("*.py")):
        configurator.configure(train.DEFAULTS, [f"config/{path.name}"])


def test_sigterm_saves_and_exits_cleanly(data, tmp_path):
    args = [sys.executable, "train.py", *tiny_args(data, tmp_path, max_iters=100_000, eval_interval=100_000)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("iter 3:"):
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "stopping after step" in rest
    assert checkpoint.load_checkpoint(tmp_path)["iter_num"] >= 4


def test_ddp_with_torchrun_resumes_exactly(data, tmp_path):
    """Two CPU ranks over gloo, started from another directory with one of the repository's config files: 4 steps
    in one run, and 2 steps resumed for 2 more, give the same losses (every rank's random streams are saved)."""

    def torchrun(out: Path, **overrides) -> None:
        args = tiny_args(data, out, **{"max_iters": 4, "dropout": 0.1, **overrides})
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        cmd += [str(REPO / "train.py"), "config/train_haiku_char.py", *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("iter 1: loss") <= 1  # rank 0 alone logs

    torchrun(tmp_path / "one")
    torchrun(tmp_path / "two", max_iters=2)
    ckpt = checkpoint.load_checkpoint(tmp_path / "two")
    assert ckpt["iter_num"] == 2 and len(ckpt["sampler"]) == len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["sampler"][0], ckpt["sampler"][1])
    torchrun(tmp_path / "two", init_from="resume")
    assert losses(tmp_path / "two") == losses(tmp_path / "one")


def test_wandb_offline(data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train.main(tiny_args(data, tmp_path / "out", max_iters=2, wandb_log=True))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
