"""train.py end to end on CPU: tiny models on char bins of the embedded haiku corpus, written here, so nothing is
downloaded or prepared."""

import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import configurator
import train
from haikugpt import checkpoint, run
from haikugpt.run import peak_flops

REPO = Path(__file__).resolve().parent.parent


def tiny_args(data: Path, out: Path, **overrides) -> list[str]:
    args = dict(
        dataset=data, out_dir=out, n_layer=2, n_head=2, n_embd=16, block_size=16, batch_size=4,
        gradient_accumulation_steps=2, max_iters=12, eval_interval=4, eval_iters=2, log_interval=1,
        learning_rate=1e-2, warmup_iters=2, lr_decay_iters=30, min_lr=1e-3, dtype="float32", compile=False,
    )  # fmt: skip
    args.update(overrides)
    return [f"--{k}={v}" for k, v in args.items() if v is not None]


def losses(out: Path) -> dict[int, float]:
    """Training loss by step, from metrics.jsonl."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["iter"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, corpus, write_bins) -> Path:
    """Char bins of the first 300 haiku of the embedded corpus (~20k characters)."""
    return write_bins(tmp_path_factory.mktemp("data") / "haiku_char", corpus[:300])


def fails(argv: list[str], match: str, out: Path | None = None) -> str:
    """train.py exits with one line matching match, and leaves out (if given) as it was."""
    before = sorted(out.rglob("*")) if out is not None and out.exists() else None
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    assert re.search(match, message), message
    if out is not None:
        assert (sorted(out.rglob("*")) if out.exists() else None) == before
    return message


def test_loss_falls_and_checkpoints_load(data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    train.main(tiny_args(data_dir, out, max_iters=40, eval_interval=20, n_embd=32, dtype="bfloat16"))
    log = capsys.readouterr().out
    assert "iter 5: loss " in log and ", time " in log and "ms, mfu " in log and "tok/s" in log  # nanoGPT's shape
    assert "step 40: train loss" in log and ", val loss " in log
    assert "# resolved: device 'cpu', dtype 'bfloat16', compile False" in log
    by_step = losses(out)
    assert sorted(by_step) == list(range(40))
    assert by_step[39] < by_step[0] - 0.8  # from ~ln(vocab) towards the text's structure
    ckpt = checkpoint.load_checkpoint(out)
    assert ckpt["iter_num"] == 40 and ckpt["resolved"]["dtype"] == "bfloat16"
    assert ckpt["config"]["dtype"] == "bfloat16" and ckpt["config"]["device"] is None  # the user's, as typed
    assert ckpt["model_args"]["vocab_size"] == 64  # padded up from the meta's vocab
    assert ckpt["meta"]["tokenizer"] == "char" and (out / "best.pt").is_file()
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["max_iters"] == 40 and saved["resolved"]["model"]["n_embd"] == 32
    model = checkpoint.model_from_checkpoint(ckpt).eval()
    x = torch.from_numpy(np.fromfile(data_dir / "val.bin", dtype=np.uint16)[:17].astype(np.int64))[None]
    _, loss = model(x[:, :16], x[:, 1:])
    assert loss.item() < by_step[0]
    # bits per byte: on characters of one byte each (end-of-text counts one), the loss in nats / ln 2
    assert all(len(c.encode()) == 1 for c in ckpt["meta"]["chars"][1:]) and "val bpb" in log
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val/loss" in r]
    assert [r["iter"] for r in evals] == [0, 20, 40]
    for r in evals:
        for split in ("train", "val"):
            assert r[f"{split}/bpb"] == pytest.approx(r[f"{split}/loss"] / math.log(2), rel=1e-6)


def test_resume_is_exact_and_needs_only_out_dir(data_dir, tmp_path, capsys):
    """6 steps, then 6 more resumed with nothing but init_from, out_dir and max_iters, give bit-identical losses to
    12 steps in one go (dropout on): the checkpoint's config is the base of a resumed run."""
    common = dict(dropout=0.1, max_iters=12)
    peak_flops.cache_clear()  # as in a fresh process: measuring the peak must not move the random streams
    train.main(tiny_args(data_dir, tmp_path / "one", **common))
    peak_flops.cache_clear()
    train.main(tiny_args(data_dir, tmp_path / "two", **{**common, "max_iters": 6}))
    assert checkpoint.load_checkpoint(tmp_path / "two")["iter_num"] == 6
    capsys.readouterr()
    peak_flops.cache_clear()
    train.main(["--init_from=resume", f"--out_dir={tmp_path / 'two'}", "--max_iters=12"])
    assert f"resuming {tmp_path / 'two'} at step 6; changed: max_iters 6 -> 12" in capsys.readouterr().out
    assert losses(tmp_path / "two") == losses(tmp_path / "one")


def test_resume_refuses_another_shape_and_leaves_out_dir_alone(data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    train.main(tiny_args(data_dir, out, max_iters=2))
    resume = ["--init_from=resume", f"--out_dir={out}"]
    fails([*resume, "--n_layer=3"], r"n_layer=3 differs from the checkpoint's n_layer=2: .* drop --n_layer", out)
    fails([*resume, "--block_size=8"], r"block_size=8 differs from the checkpoint's block_size=16", out)
    several = r"n_layer=3 differs .* n_embd=32 differs .*: a resumed run keeps its model's shape; drop --n_layer and "
    fails([*resume, "--n_layer=3", "--n_embd=32"], several + "--n_embd", out)
    capsys.readouterr()
    train.main([*resume, "--max_iters=3", "--dropout=0.2"])  # dropout can change, and the change is announced
    assert "changed: max_iters 2 -> 3; dropout 0.0 -> 0.2" in capsys.readouterr().out
    assert checkpoint.load_checkpoint(out)["model_args"]["dropout"] == 0.2


def test_eval_only_writes_no_checkpoint(data_dir, tmp_path, capsys):
    train.main(tiny_args(data_dir, tmp_path, eval_only=True))
    assert "step 0: train loss" in capsys.readouterr().out
    assert not (tmp_path / "ckpt.pt").exists()


def test_float16_checkpoints_the_gradient_scaler(data_dir, tmp_path):
    train.main(tiny_args(data_dir, tmp_path, max_iters=2, dtype="float16"))
    scaler = checkpoint.load_checkpoint(tmp_path)["scaler"]
    assert scaler is not None and scaler["scale"] > 0


def test_compile_without_a_compiler_warns_and_runs_eager(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("haikugpt.run.shutil.which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    train.main(tiny_args(data_dir, tmp_path, max_iters=1, compile=True))
    assert "warning: torch.compile on CPU needs a C++ compiler; running eager" in capsys.readouterr().err
    ckpt = checkpoint.load_checkpoint(tmp_path)
    assert ckpt["resolved"]["compile"] is False and ckpt["config"]["compile"] is True


def test_nonfinite_loss_stops_and_keeps_the_checkpoint(data_dir, tmp_path):
    train.main(tiny_args(data_dir, tmp_path, max_iters=4))
    before = (tmp_path / "ckpt.pt").read_bytes()
    with pytest.raises(SystemExit, match=r"loss is (nan|inf) at step \d+"):
        train.main(tiny_args(data_dir, tmp_path, init_from="resume", max_iters=8, learning_rate=1e30, warmup_iters=0))
    assert (tmp_path / "ckpt.pt").read_bytes() == before


def test_bad_input_is_one_clear_error_in_the_order_typed(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    missing = "no_such_data"  # each value below is refused before the missing dataset is noticed
    fails(tiny_args(missing, out, batchsize=3), "did you mean 'batch_size'", out)
    fails(tiny_args(missing, out, gradient_accumulation_steps=0), "gradient_accumulation_steps=0", out)
    fails(tiny_args(missing, out, n_head=3), "n_embd=16 must be divisible by n_head=3", out)
    fails(tiny_args(missing, out, dtype="float8"), "dtype='float8'", out)
    fails(tiny_args(missing, out, init_from="gpt5"), r"unknown model 'gpt5': use one of gpt2, .*local", out)
    fails(tiny_args(missing, out, init_from="resume"), r"no checkpoint at .*ckpt\.pt; train one with", out)
    fails(tiny_args(data_dir, out, block_size=100000), "too few for block_size", out)
    fails(tiny_args(missing, out), r"dataset 'no_such_data' is not prepared .* `python prepare/text.py --input", out)
    monkeypatch.setattr(run, "DATA_DIR", tmp_path / "data")  # a checkout where nothing has been prepared yet
    monkeypatch.chdir(tmp_path)
    fails(tiny_args("haiku_char", out), r"run `python prepare/haiku.py --tokenizer char`", out)
    fails(tiny_args("haiku", out), r"run `python prepare/haiku.py`", out)
    broken = tmp_path / "broken"
    broken.mkdir()
    for split in ("train", "val"):
        (broken / f"{split}.bin").write_bytes((data_dir / f"{split}.bin").read_bytes())
    (broken / "meta.json").write_text("{tokenizer: char}")
    fails(tiny_args(broken, out), rf"{broken / 'meta.json'} is not valid JSON \(Expecting property name", out)


def test_model_shape_keys_do_not_apply_to_a_pretrained_init(data_dir, tmp_path, hf_gpt2):
    folder = tmp_path / "hf"
    hf_gpt2(vocab_size=64, n_positions=16, scale=0).save_pretrained(folder)
    fails(tiny_args(data_dir, tmp_path / "out", init_from=folder), r"n_layer=2 does not apply to init_from=.*hf")


def test_finetune_from_a_local_gpt2(data_dir, corpus, hf_gpt2, write_bins, tmp_path):
    folder = tmp_path / "hf"
    hf_gpt2(vocab_size=64, n_positions=16, scale=0).save_pretrained(folder)
    out = tmp_path / "out"
    no_shape = dict(n_layer=None, n_head=None, n_embd=None, init_from=folder)
    fails(tiny_args(data_dir, out, **no_shape), "reads GPT-2 BPE tokens but the dataset's char vocabulary", out)
    bpe = write_bins(tmp_path / "bpe", corpus[:300], tokenizer="gpt2")  # ids under the tiny model's 64, as GPT-2 BPE
    fails(tiny_args(bpe, out, **no_shape, block_size=32), "block_size 32 must be between 1 and .* 16", out)
    train.main(["config/finetune_haiku.py", *tiny_args(bpe, out, **no_shape, max_iters=2, dropout=0.1)])
    ckpt = checkpoint.load_checkpoint(out)
    assert ckpt["model_args"]["n_embd"] == 16 and ckpt["resolved"]["model"]["n_embd"] == 16
    assert ckpt["config"]["n_embd"] == run.DEFAULTS["n_embd"]  # the user's config is not rewritten


def test_an_out_dir_that_cannot_be_written_is_refused_before_the_first_step(data_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    fails(tiny_args(data_dir, blocker / "out"), r"out_dir .*file/out cannot be written .*choose another folder")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "write_bytes", read_only)
    fails(tiny_args(data_dir, tmp_path / "ro"), r"out_dir .*ro cannot be written \(a read-only file system\)")
    assert not (tmp_path / "ro" / "metrics.jsonl").exists()


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_checkpoint(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    train.main(tiny_args(data_dir, out, max_iters=4))
    before = (out / "ckpt.pt").read_bytes()

    class FullDisk:  # a file on a disk that fills after 1,000 bytes: torch's writer turns the OSError into its own
        def __init__(self, path, mode):
            self.f, self.written = open(path, mode), 0 if "ckpt.pt" in str(path) else -(2**60)  # noqa: SIM115

        def write(self, b):
            self.written += len(b)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr("haikugpt.files.open", FullDisk, raising=False)
    message = fails(tiny_args(data_dir, out, init_from="resume", max_iters=8), r"no space left on the disk writing")
    assert f"{out / 'ckpt.pt'}: it needs about " in message and " is free; the previous ckpt.pt is intact" in message
    assert (out / "ckpt.pt").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "ckpt.pt", "config.json", "metrics.jsonl"]


def test_help_lists_every_key_with_its_default_and_comment(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("Train a GPT language model")
    assert all(f"--{key}=" in text for key in run.DEFAULTS)
    assert "--grad_clip=1.0" in text and "clip the global gradient norm to this; 0 disables clipping" in text
    assert "  # AdamW" in text


def test_ranks_must_divide_gradient_accumulation():
    with pytest.raises(ValueError, match="multiple of the 4 ranks; use 8"):
        run.micro_steps(10, 4)
    assert run.micro_steps(40, 8) == 5


def test_lr_schedule():
    config = dict(run.DEFAULTS, learning_rate=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    assert 0 < run.get_lr(0, config) < run.get_lr(9, config) < 1.0
    assert run.get_lr(10, config) == 1.0
    assert run.get_lr(60, config) == pytest.approx(0.55)
    assert run.get_lr(110, config) == run.get_lr(10_000, config) == 0.1
    assert run.get_lr(5, {**config, "decay_lr": False}) == 1.0


def test_shipped_configs_use_known_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # and are found from any directory
    for path in sorted((REPO / "config").glob("*.py")):
        configurator.configure(run.DEFAULTS, [f"config/{path.name}"])


def test_sigterm_saves_and_exits_cleanly(data_dir, tmp_path):
    args = [sys.executable, "train.py", *tiny_args(data_dir, tmp_path, max_iters=100_000, eval_interval=100_000)]
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


@pytest.mark.slow
def test_ddp_with_torchrun_resumes_exactly(data_dir, tmp_path):
    """Two CPU ranks over gloo, started from another directory with one of the repository's config files: 4 steps
    in one run, and 2 steps resumed for 2 more, give the same losses (every rank's random streams are saved)."""

    def torchrun(out: Path, *extra: str, **overrides) -> None:
        args = [*tiny_args(data_dir, out, **{"max_iters": 4, "dropout": 0.1, **overrides}), *extra]
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


def test_wandb_offline(data_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train.main(tiny_args(data_dir, tmp_path / "out", max_iters=2, wandb_log=True))
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


@pytest.mark.cuda
def test_cuda_bfloat16_compiled_training_with_fused_adamw(data_dir, tmp_path):
    """The CUDA path: bfloat16 autocast, torch.compile (triton), fused AdamW, flash attention, peak memory logged."""
    out = tmp_path / "out"
    train.main(tiny_args(data_dir, out, device="cuda", dtype="bfloat16", compile=True, max_iters=30, n_embd=32))
    ckpt = checkpoint.load_checkpoint(out)
    assert ckpt["resolved"]["device"].startswith("cuda") and ckpt["resolved"]["compile"] is True
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["gpu_memory_mb"] > 0 for r in records if "time_ms" in r)
    by_step = losses(out)
    assert by_step[29] < by_step[0] - 0.5
