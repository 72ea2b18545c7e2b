"""plot.py: one PNG of several runs' train and val curves, --metric and --x=tokens, a resumed run's repeated iters,
--help and bad input. The runs are small metrics.jsonl and config.json files written here; nothing is trained."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import plot

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def write_run(folder: Path, records: list[dict], config: dict | None = None) -> str:
    """A run's out_dir as train.py or classify.py leaves it: metrics.jsonl, and config.json if config is given."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if config is not None:
        resolved = {"ranks": 1, "micro_steps_per_rank": config["gradient_accumulation_steps"]}
        (folder / "config.json").write_text(json.dumps({"config": config, "resolved": resolved}))
    return str(folder)


def pair(name: str, train: float) -> dict:
    """An eval's train/<name> and val/<name> (0.1 above)."""
    return {f"train/{name}": train, f"val/{name}": train + 0.1}


def lm_records(shift: float = 0.0) -> list[dict]:
    """train.py's log lines every 5 iters and its evals every 10: losses from 3 + shift, bpb from 4 + shift, falling."""
    records = []
    for i in range(0, 21, 5):
        loss, bpb = 3 + shift - i / 10, 4 + shift - i / 10
        records.append(
            {"iter": i, "loss": loss, "time_ms": 9.0, "mfu": 0.1, "grad_norm": 1, "lr": 1e-3, "tok_per_s": 1e4}
        )
        if i % 10 == 0:
            records.append({"iter": i, **pair("loss", loss), **pair("bpb", bpb), "lr": 1e-3})
    return records


def classifier_records() -> list[dict]:
    """classify.py's evals every 10 iters."""
    f1 = [0.25, 0.5, 0.75]
    return [
        {"iter": 10 * n, **pair("loss", 1.5 - f), **pair("accuracy", f), "val/macro_f1": f} for n, f in enumerate(f1)
    ]


def pngs(folder: Path) -> list[Path]:
    """PNGs and the temporary files an atomic write would leave."""
    return [*folder.rglob("*.png"), *folder.rglob(".*.tmp")]


def test_several_runs_in_one_png(tmp_path, capsys):
    a, b = write_run(tmp_path / "out-a", lm_records()), write_run(tmp_path / "out-b", lm_records(shift=0.5))
    fig = plot.draw(plot.curves({a: plot.read_metrics(a), b: plot.read_metrics(b)}, "bpb"), "bpb")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{a} train/bpb", f"{a} val/bpb", f"{b} train/bpb", f"{b} val/bpb"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert [lines[f"{a} {k}/bpb"].get_linestyle() for k in ("train", "val")] == ["--", "-"]  # train dashed, val solid
    assert lines[f"{a} train/bpb"].get_color() == lines[f"{a} val/bpb"].get_color() != lines[f"{b} val/bpb"].get_color()
    assert list(lines[f"{b} val/bpb"].get_xdata()) == [0, 10, 20] and ax.get_title() == "bpb"

    out = tmp_path / "figs" / "runs.png"
    plot.main([a, b, f"--out_file={out}", "--title=two runs"])
    data = out.read_bytes()
    assert data.startswith(PNG) and 10_000 < len(data) < 1_000_000
    assert capsys.readouterr().out == f"wrote {out}\n" and pngs(tmp_path) == [out]


def test_an_exact_key_and_train_val_pairs_of_a_classifier(tmp_path):
    run = write_run(tmp_path / "out-seasons", classifier_records())
    runs = {run: plot.read_metrics(run)}
    ((_, key, x, y),) = plot.curves(runs, "val/macro_f1")
    assert (key, x, y) == ("val/macro_f1", [0, 10, 20], [0.25, 0.5, 0.75])
    assert [key for _, key, *_ in plot.curves(runs, "accuracy")] == ["train/accuracy", "val/accuracy"]
    assert [key for _, key, *_ in plot.curves({"lm": lm_records()}, "loss")] == ["loss"]  # the log line's loss
    assert [run for run, *_ in plot.curves({**runs, "lm": lm_records()}, "bpb")] == ["lm", "lm"]  # only lm has bpb
    plot.main([run, "--metric=val/macro_f1", f"--out_file={tmp_path / 'seasons.png'}"])
    assert (tmp_path / "seasons.png").read_bytes().startswith(PNG)


def test_tokens_seen_come_from_config_json(tmp_path):
    config = {"gradient_accumulation_steps": 4, "batch_size": 3, "block_size": 8, "n_layer": 2}
    run = write_run(tmp_path / "out", lm_records(), config)
    fig = plot.draw(plot.curves({run: plot.read_metrics(run)}, "loss", "tokens"), "loss", "tokens")
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [i * 4 * 3 * 8 for i in range(0, 21, 5)]
    assert fig.axes[0].get_xlabel() == "tokens seen"


def test_a_resumed_run_keeps_the_last_record_of_each_iter(tmp_path):
    # the first run logged iters 0 to 15 and saved at its eval of iter 10; the resumed run goes on from there
    first = [{"iter": i, "loss": 3 - i / 10} for i in (0, 5, 10, 15)] + [{"iter": i, "val/bpb": 4.0} for i in (0, 10)]
    resumed = [{"iter": i, "loss": 2 - i / 10} for i in (10, 15, 20)] + [{"iter": i, "val/bpb": 3.0} for i in (10, 20)]
    run = write_run(tmp_path / "out", first + resumed)
    runs = {run: plot.read_metrics(run)}
    ((*_, x, y),) = plot.curves(runs, "loss")
    assert x == [0, 5, 10, 15, 20] and y == pytest.approx([3, 2.5, 1, 0.5, 0])
    ((*_, x, y),) = plot.curves(runs, "bpb")
    assert x == [0, 10, 20] and y == [4.0, 3.0, 3.0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--out_file={out}"], "OUT_DIR"),
        (["{empty}", "--out_file={out}"], "{empty} has no metrics.jsonl; train there first"),
        (["{good}", "{broken}", "--out_file={out}"], "metrics.jsonl line 2 is not JSON"),
        (["{good}", "--metric=f1", "--out_file={out}"], "no run has the metric 'f1'; they have accuracy, bpb,"),
        (["{good}", "--x=epoch", "--out_file={out}"], "--x=epoch must be step or tokens"),
        (["{good}", "--out_file={tmp}/runs.pdf"], "must end in .png"),
        (["{good}", "--x=tokens", "--out_file={out}"], "{good} has no config.json"),
        (["{good}", "--metrc=bpb", "--out_file={out}"], "did you mean 'metric'?"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, expected):
    names = {"tmp": tmp_path, "out": tmp_path / "runs.png", **{k: tmp_path / k for k in ("empty", "good", "broken")}}
    names["empty"].mkdir()
    write_run(names["good"], lm_records() + classifier_records())
    write_run(names["broken"], lm_records()[:1])
    with open(names["broken"] / "metrics.jsonl", "a") as f:
        f.write('{"iter": 5, "loss": 2.\n')  # a line cut short
    with pytest.raises(SystemExit) as e:
        plot.main([a.format(**names) for a in args])
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message and expected.format(**names) in message
    assert pngs(tmp_path) == []


def test_help_lists_every_key_without_matplotlib(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        plot.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "python plot.py out-haiku-char out-haiku-bpe --out_file=runs.png" in out
    assert all(f"--{key}=" in out for key in plot.DEFAULTS)
    # from another folder, as a script; -X importtime names every module imported on stderr
    done = subprocess.run([sys.executable, "-X", "importtime", REPO / "plot.py", "--help"], cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0 and "--metric='bpb'" in done.stdout and "matplotlib" not in done.stderr
