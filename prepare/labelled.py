"""Prepare labelled texts for classify.py: read, clean and deduplicate them, split train/val stratified by label, and
write train.bin, val.bin (each text followed by end-of-text), train_labels.bin, val_labels.bin and meta.json.

    python prepare/labelled.py                       # the embedded haiku by season, learnt BPE -> data/haiku_seasons/
    python prepare/labelled.py --tokenizer char      # one id per character -> data/haiku_seasons_char/
    python prepare/labelled.py --tokenizer gpt2      # GPT-2's BPE, for --init_from=gpt2 -> data/haiku_seasons_gpt2/
    python prepare/labelled.py --input train.csv --tokenizer gpt2 --label_names World,Sports,Business,Sci/Tech
    python prepare/labelled.py --input reviews.jsonl --text_column body --label_column stars --out_dir data/reviews

Default: prepare/haiku_corpus.txt, labelled by prepare/haiku_seasons.txt's lines in order. --input: a text and a label
column (by name, or --text_column and --label_column), or AG News's CSV; with --label_names, a label n is the n-th name
(from 1 in AG News's layout, else 0). The vocabularies are prepare/haiku.py's: the quick start's model fits.
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tiktoken  # noqa: E402

from haikugpt.files import ROOT, one_line_errors  # noqa: E402
from haikugpt.labels import write_labels  # noqa: E402
from haikugpt.texts import blocks, clean_text, dedupe_key, read_labelled, split_texts, to_names  # noqa: E402
from prepare.common import CORPUS_PATH, check_options, display_path, make_tokenizer, write_dataset  # noqa: E402

SEASONS_PATH = Path(__file__).with_name("haiku_seasons.txt")
SEASONS = ["spring", "summer", "autumn", "winter", "none"]
SUFFIXES = {"bpe": "", "char": "_char", "gpt2": "_gpt2"}  # data/haiku_seasons, data/haiku_seasons_char, ...


def read_seasons() -> tuple[list[str], list[str], list[dict], list[str]]:
    """The embedded corpus's haiku, their season labels (one per haiku, in order), its details and the seasons."""
    haiku = blocks(CORPUS_PATH.read_text(encoding="utf-8"))
    labels = SEASONS_PATH.read_text(encoding="utf-8").split()
    seasons = display_path(SEASONS_PATH)
    if len(labels) != len(haiku):
        raise ValueError(f"{seasons}: {len(labels):,} labels for the {len(haiku):,} haiku of {CORPUS_PATH.name}; it "
                         "needs one per haiku, in the corpus's order")  # fmt: skip
    if unknown := sorted(set(labels) - set(SEASONS)):
        raise ValueError(f"{seasons}: unknown label {unknown[0]!r} (expected {', '.join(SEASONS)})")
    info = {"path": display_path(CORPUS_PATH), "labels": seasons, "read": len(haiku)}
    return [clean_text(h) for h in haiku], labels, [info], SEASONS


def read_inputs(paths: list[Path], text_column, label_column, label_names) -> tuple[list, list, list, list[str]]:
    """Texts, label names, the sources' details and every label name, from the --input files."""
    texts, labels, sources = [], [], []
    for path in paths:
        file = read_labelled(path, text_column, label_column)
        named = to_names(file.labels, label_names, file.base) if label_names else file.labels
        if None in named:
            raw = file.labels[named.index(None)]
            raise ValueError(f"{path}: label {raw!r} is neither one of --label_names ({', '.join(label_names)}) nor "
                             f"a number from {file.base} to {file.base + len(label_names) - 1}")  # fmt: skip
        texts += file.texts
        labels += named
        sources.append({**file.info, "path": display_path(path)})
    numeric = all(label.lstrip("-").isdigit() for label in labels)
    names = label_names or sorted(set(labels), key=lambda label: (int(label), label) if numeric else (0, label))
    return texts, labels, sources, names


def dedupe(texts: list[str], labels: list[str]) -> tuple[list[str], list[str], dict]:
    """The first copy of each text (ignoring case and punctuation), and the counts: read, kept, copies dropped."""
    first: dict[str, tuple[str, str]] = {}  # each dedupe_key's first (text, label)
    for text, label in zip(texts, labels):
        first.setdefault(dedupe_key(text), (text, label))
    relabelled = sum(first[dedupe_key(text)][1] != label for text, label in zip(texts, labels))
    counts = {"read": len(texts), "kept": len(first), "duplicates": len(texts) - len(first),
              "with another label": relabelled}  # fmt: skip
    return [text for text, _ in first.values()], [label for _, label in first.values()], counts


def prepare(inputs: list[Path] | None = None, out_dir: Path | None = None, tokenizer: str = "bpe",
            val_fraction: float = 0.1, text_column: str | None = None, label_column: str | None = None,
            label_names: list[str] | None = None, vocab_size: int = 5120,
            encoding: tiktoken.Encoding | None = None) -> dict:  # fmt: skip
    """Read, clean, split and tokenize; print the report; return the meta.json written (`encoding` replaces GPT-2's)."""
    check_options(val_fraction, tokenizer, tuple(SUFFIXES), vocab_size)
    if label_names is not None and (len(set(label_names)) != len(label_names) or "" in label_names):
        raise ValueError(f"--label_names must be distinct, non-empty names separated by commas, got {label_names}")
    out_dir = out_dir or ROOT / "data" / f"{Path(inputs[0]).stem if inputs else 'haiku_seasons'}{SUFFIXES[tokenizer]}"
    texts, labels, sources, names = (
        read_inputs(inputs, text_column, label_column, label_names) if inputs else read_seasons()
    )
    texts, labels, counts = dedupe(texts, labels)
    where, per_label = ", ".join(s["path"] for s in sources), Counter(labels)
    if len(per_label) < 2:
        raise ValueError(f"{where}: a single label ({labels[0]!r}); a classifier needs at least two")
    for n in names:
        if (k := per_label[n]) < 2:
            raise ValueError(f"label {n!r} has {k} text{'s' * (k != 1)} in {where}; each label needs at least 2 (one "
                             "to train on, one to judge by): add texts or leave it out")  # fmt: skip
    by_label = [[t for t, label in zip(texts, labels) if label == n] for n in names]
    val = {t for group in by_label for t in split_texts(group, val_fraction)[1]}  # each label split by hash on its own
    tok = make_tokenizer(tokenizer, texts, split_texts(texts, val_fraction)[0], vocab_size, encoding)  # BPE: from train
    pieces, label_ids, ids = {"train": [], "val": []}, {"train": [], "val": []}, {n: i for i, n in enumerate(names)}
    for text, label in zip(texts, labels):
        pieces["val" if text in val else "train"].append((text, True))
        label_ids["val" if text in val else "train"].append(ids[label])
    label_counts = {s: {n: label_ids[s].count(i) for i, n in enumerate(names)} for s in label_ids}
    extra = {"dataset": out_dir.name, "val_fraction": val_fraction, "sources": sources, "counts": counts,
             "labels": names, "label_counts": label_counts, "text_column": text_column,
             "label_column": label_column}  # fmt: skip
    meta = write_dataset(out_dir, pieces, tok, extra)
    print(f"read {counts['read']:,} texts from {len(sources)} source(s)")  # the report
    for s in sources:
        how = f"labels from {s['labels']}" if "labels" in s else f"{s['format']}, {s['columns']}"
        dropped = ", ".join(f"{n:,} {reason}" for reason, n in s.get("dropped", {}).items())
        print(f"  {s['path']}: {how}; {s['read']:,} rows{f', dropped {dropped}' if dropped else ''}")
    print(f"kept {counts['kept']:,}; duplicates {counts['duplicates']:,} ({counts['with another label']:,} of them "
          "with another label)")  # fmt: skip
    width = max(map(len, names))
    print(f"{'label':<{width}}  {'texts':>6}  {'train':>6}  {'val':>5}")
    for n in names:
        in_train, in_val = label_counts["train"][n], label_counts["val"][n]
        print(f"{n:<{width}}  {in_train + in_val:6,}  {in_train:6,}  {in_val:5,}")
    for split, ids in label_ids.items():
        write_labels(out_dir, split, ids)
        print(f"{split}: {len(ids):,} texts, {meta['tokens'][split]:,} tokens")
    print(f"wrote {out_dir} ({meta['tokenizer']} tokenizer, vocab_size {meta['vocab_size']:,})")
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, action="append", help="a labelled file (repeatable); default: the corpus")
    parser.add_argument("--text_column", help="the column or field holding the text; default: text, sentence, ...")
    parser.add_argument("--label_column", help="the column or field holding the label; default: label, class, ...")
    parser.add_argument("--label_names", help="the labels' names, separated by commas (AG News: World,Sports,...)")
    parser.add_argument("--tokenizer", choices=tuple(SUFFIXES), default="bpe",
                        help="a BPE learnt from the texts, one id per character, or GPT-2's BPE")  # fmt: skip
    parser.add_argument("--vocab_size", type=int, default=5120, help="of a learnt BPE (--tokenizer bpe)")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--out_dir", type=Path, help="default: data/haiku_seasons (bpe), data/haiku_seasons_char, ...")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.label_names.split(",")] if args.label_names else None
    with one_line_errors():
        prepare(args.input, args.out_dir, args.tokenizer, args.val_fraction, args.text_column, args.label_column,
                names, args.vocab_size)  # fmt: skip


if __name__ == "__main__":
    main()
