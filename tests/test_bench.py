"""bench.py's helper scripts run (timings are not checked: speed lives in the benchmark, not in tests)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bench

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def test_prepare_bench_runs_both_tokenizers(capsys):
    bench.bench_prepare(sizes_mb=(1,))
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.lstrip().startswith(("char ", "gpt2 "))]
    assert [row[0] for row in rows] == ["char", "gpt2"]
    assert all(int(row[4].replace(",", "")) > 100_000 for row in rows)  # tokens written from ~1 MB of haiku


def test_the_stand_in_encoding_is_gpt2_shaped():
    enc = bench.stand_in_encoding("the old pond\na frog leaps in")
    assert enc.n_vocab == 50257 and enc.eot_token == 50256
    assert enc.encode(" pond") == [enc.encode_single_token(b" pond")] and enc.decode(enc.encode("a frog")) == "a frog"


def test_run_peak_mb_reports_the_child_peak_not_its_parents_and_raises_on_failure(tmp_path):
    script = tmp_path / "grow.py"
    script.write_text(
        "import sys\nimport numpy as np\nnp.ones(int(sys.argv[1]) * 2**20, dtype=np.uint8)\nsys.exit(int(sys.argv[2]))"
    )
    parent = np.ones(
        400 * 2**20, dtype=np.uint8
    )  # this process holds 400 MB: a child spawned from it must not count it
    assert 200 < bench.run_peak_mb([sys.executable, str(script), "200", "0"], {}) < 350 and parent.all()
    try:
        bench.run_peak_mb([sys.executable, str(script), "1", "3"], {})
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
