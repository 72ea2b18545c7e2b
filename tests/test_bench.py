"""bench.py's helper scripts run (timings are not checked: speed lives in the benchmark, not in tests)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from checkpoint import build_checkpoint, save_checkpoint
from model import GPT, GPTConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_prepare_bench_runs_both_tokenizers(capsys):
    bench.bench_prepare(sizes_mb=(1,))
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.lstrip().startswith(("char ", "gpt2 "))]
    assert [row[0] for row in rows] == ["char", "gpt2"]
    assert all(int(row[4].replace(",", "")) > 100_000 for row in rows)  # tokens written from ~1 MB of haiku


def test_sample_script_runs_with_the_stand_in_encoding(tmp_path):
    config = GPTConfig(block_size=16, vocab_size=50304, n_layer=1, n_head=2, n_embd=8)
    meta = {"tokenizer": "gpt2", "vocab_size": 50257, "eot_id": 50256, "dataset": "openwebtext"}
    save_checkpoint(build_checkpoint(GPT(config), {}, meta), tmp_path / "ckpt.pt")
    configs = [{"out_dir": str(tmp_path), "num_samples": 2, "max_new_tokens": n, "dtype": "float32"} for n in (1, 5)]
    cmd = [sys.executable, "-c", bench._SAMPLE_RUN, str(REPO), json.dumps(configs)]
    result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    assert len(result["seconds"]) == 2 and len(result["chars"]) == 2  # two runs; the last one's two samples


def test_run_peak_mb_reports_the_child_peak_and_raises_on_failure():
    grow = "import numpy as np; np.ones(200 * 2**20, dtype=np.uint8); import sys; sys.exit(int(sys.argv[1]))"
    assert bench.run_peak_mb([sys.executable, "-c", grow, "0"], {}) > 200
    try:
        bench.run_peak_mb([sys.executable, "-c", grow, "3"], {})
    except subprocess.CalledProcessError as err:
        assert err.returncode == 3
    else:
        raise AssertionError("a failing command must raise")


def test_bench_takes_a_device_and_refuses_unknown_arguments(capsys):
    bench.main(["--help"])
    assert "--device=cuda" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown argument 'trian'; parts are generate, train, finetune"):
        bench.main(["trian"])
    with pytest.raises(SystemExit, match="unknown device 'tpu'"):
        bench.main(["train", "--device=tpu"])
