"""Plot the train and val curves of one or several runs (the metrics.jsonl in each out_dir) into one PNG: a colour per
run, labelled by its out_dir as typed; train dashed, val solid.

    python plot.py out-haiku-char out-haiku-bpe --out_file=runs.png            # bits per byte, by step
    python plot.py out-haiku-char out-haiku-bpe --x=tokens --out_file=runs.png # by tokens seen
    python plot.py out-seasons --metric=val/macro_f1 --out_file=seasons.png    # one key of metrics.jsonl
    python plot.py --help

Of an iter logged twice (a resumed run), the last record wins. --x=tokens counts iter x gradient_accumulation_steps
(over all ranks, as in nanoGPT) x batch_size x block_size.
"""

import json
import math
import sys
from pathlib import Path

from configurator import configure
from haikugpt.files import atomic_write, one_line_errors

DEFAULTS = dict(
    out_file="runs.png",  # the PNG to write
    metric="bpb",  # a key of metrics.jsonl (val/macro_f1, lr, loss: the log line's), else train/ and val/<metric>
    x="step",  # 'step' (the iter) or 'tokens' (tokens seen, from each run's config.json)
    title=None,  # the figure's title; None: the metric
)
TOKEN_KEYS = ("gradient_accumulation_steps", "batch_size", "block_size")
Curve = tuple[str, str, list[int], list[float]]  # (out_dir, key, x, y)


def load_json(text: str, where: str) -> dict:
    """A JSON object, or a ValueError that names where the text came from."""
    try:
        if isinstance(obj := json.loads(text), dict):
            return obj
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not JSON ({e})") from e
    raise ValueError(f"{where} is not a JSON object")


def read_metrics(out_dir: str) -> list[dict]:
    """The records of out_dir/metrics.jsonl, in the order they were written."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{out_dir} has no metrics.jsonl; train there first (--out_dir={out_dir}) or check the path")
    lines = enumerate(path.read_text().splitlines(), 1)
    return [load_json(line, f"{path} line {n}") for n, line in lines if line.strip()]


def tokens_per_iter(out_dir: str) -> int:
    """gradient_accumulation_steps x batch_size x block_size from out_dir/config.json."""
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{out_dir} has no config.json (a run writes it at its first checkpoint) to count tokens "
                         "by; use --x=step")  # fmt: skip
    config = load_json(path.read_text(), str(path)).get("config", {})
    if missing := [k for k in TOKEN_KEYS if k not in config]:
        raise ValueError(f"{path} has no {missing[0]} to count tokens by; use --x=step")
    return math.prod(config[k] for k in TOKEN_KEYS)


def curves(runs: dict[str, list[dict]], metric: str, x: str = "step") -> list[Curve]:
    """Each run's curve of each key that metric names; of a repeated iter (a resumed run), the last record wins."""
    have = {k for records in runs.values() for r in records for k in r} - {"iter"}
    if not (keys := [metric] if metric in have else [k for k in (f"train/{metric}", f"val/{metric}") if k in have]):
        names = have | {k.split("/", 1)[1] for k in have if k.startswith(("train/", "val/"))}
        raise ValueError(f"no run has the metric {metric!r}; they have {', '.join(sorted(names))}")
    out = []
    for out_dir, records in runs.items():
        scale = tokens_per_iter(out_dir) if x == "tokens" else 1
        for key in keys:
            if points := sorted({r["iter"]: r[key] for r in records if r.get(key) is not None and "iter" in r}.items()):
                out.append((out_dir, key, [i * scale for i, _ in points], [v for _, v in points]))
    return out


def draw(curves: list[Curve], metric: str, x: str = "step", title: str | None = None):
    """A matplotlib Figure of the curves: one colour per run, train dashed, val solid."""
    from matplotlib.figure import Figure  # headless: no window, no pyplot state (savefig picks Agg for a PNG)

    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    colours = {run: f"C{i}" for i, run in enumerate(dict.fromkeys(run for run, *_ in curves))}
    for run, key, xs, ys in curves:
        ax.plot(xs, ys, "--" if key.startswith("train/") else "-", color=colours[run], label=f"{run} {key}")
    ax.set(xlabel="tokens seen" if x == "tokens" else "step", ylabel=metric)
    ax.set_title(metric if title is None else str(title))  # --title=2024 arrives as an int
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    with one_line_errors():
        # the out_dirs are the bare arguments; the configurator would take them for config files
        out_dirs = [a for a in argv if not a.startswith("-")]
        config = configure(DEFAULTS, [a for a in argv if a.startswith("-")], __doc__, (__file__,))
        out_file, x = Path(config["out_file"]), config["x"]
        if x not in ("step", "tokens"):
            raise ValueError(f"--x={x} must be step or tokens")
        if out_file.suffix.lower() != ".png":
            raise ValueError(f"--out_file={out_file} must end in .png")
        if not out_dirs:
            raise ValueError("name the runs to plot: python plot.py OUT_DIR [OUT_DIR ...] --out_file=runs.png")
        runs = {out_dir: read_metrics(out_dir) for out_dir in out_dirs}
        fig = draw(curves(runs, config["metric"], x), config["metric"], x, config["title"])
        atomic_write(out_file, lambda f: fig.savefig(f, format="png", dpi=120))
        print(f"wrote {out_file}")


if __name__ == "__main__":
    main()
