"""Prepare OpenWebText for pretraining GPT-2 from scratch (config/train_gpt2.py): ~8M web pages, ~9B GPT-2 tokens.

    pip install datasets
    python prepare/openwebtext.py                   # train.bin ~17 GB, plus ~55 GB of HF cache -> data/openwebtext/
    python prepare/openwebtext.py --workers 8 --out_dir /scratch/openwebtext
    python prepare/openwebtext.py --hf_dataset HuggingFaceFW/fineweb-edu --hf_config sample-10BT --out_dir data/fineweb

OpenWebText re-creates GPT-2's WebText (nanoGPT's dataset: val losses compare with nanoGPT's and OpenAI's); FineWeb-Edu
needs fewer tokens for a given HellaSwag score. If `datasets` 4 or later refuses OpenWebText's loading script,
`pip install "datasets<4"`. A document goes to val by a hash of its text (~4M tokens at --val_fraction 0.0005).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tiktoken  # noqa: E402

from haikugpt.files import ROOT, one_line_errors  # noqa: E402
from haikugpt.texts import split_hash  # noqa: E402
from haikugpt.tokenizer import gpt2_tokenizer  # noqa: E402
from prepare.common import check_options, write_dataset  # noqa: E402


def prepare(hf_dataset: str = "Skylion007/openwebtext", hf_config: str | None = None, text_field: str = "text",
            out_dir: Path | None = None, val_fraction: float = 0.0005, workers: int | None = None,
            encoding: tiktoken.Encoding | None = None) -> dict:  # fmt: skip
    """Download (once), split and tokenize into out_dir (default data/openwebtext); return the meta.json written."""
    check_options(val_fraction)
    tok = gpt2_tokenizer(encoding)  # before the download, so a missing BPE file does not cost hours
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise RuntimeError("prepare/openwebtext.py needs Hugging Face datasets: pip install datasets") from e
    try:  # from the Hugging Face cache, downloading it the first time
        ds = load_dataset(hf_dataset, hf_config, split="train", num_proc=workers)
    except Exception as e:  # no network, no such dataset, a loading script: datasets raises many kinds
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RuntimeError(f"loading {hf_dataset} from the Hugging Face Hub failed: {reason}") from e
    if text_field not in ds.column_names:
        raise ValueError(f"{hf_dataset} has no column {text_field!r} (it has {', '.join(ds.column_names)})")
    documents = lambda: (doc for batch in ds.iter(batch_size=1000) for doc in batch[text_field])
    out_dir = out_dir or ROOT / "data" / "openwebtext"
    splits = {"train": ((doc, True) for doc in documents() if doc and split_hash(doc) >= val_fraction),
              "val": ((doc, True) for doc in documents() if doc and split_hash(doc) < val_fraction)}  # fmt: skip
    meta = {"dataset": hf_dataset.split("/")[-1], "sources": [hf_dataset, hf_config], "val_fraction": val_fraction}
    meta = write_dataset(out_dir, splits, tok, meta, workers)
    print(f"train: {meta['tokens']['train']:,} tokens; val: {meta['tokens']['val']:,} tokens; wrote {out_dir}")
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf_dataset", default="Skylion007/openwebtext", help="a Hugging Face dataset with text")
    parser.add_argument("--hf_config", help="its configuration, e.g. sample-10BT for FineWeb-Edu")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--out_dir", type=Path, help="default: data/openwebtext")
    parser.add_argument("--val_fraction", type=float, default=0.0005)
    parser.add_argument("--workers", type=int, help="tokenizing processes; default: every core")
    args = parser.parse_args(argv)
    with one_line_errors():
        prepare(args.hf_dataset, args.hf_config, args.text_field, args.out_dir, args.val_fraction, args.workers)


if __name__ == "__main__":
    main()
