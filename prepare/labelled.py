"""
Prepare labelled texts for classify.py: read and clean them, split train/val stratified by label, and write
train.bin, val.bin (each text followed by end-of-text), train_labels.bin, val_labels.bin and meta.json.

    python prepare/labelled.py                       # the embedded haiku by season, learnt BPE -> data/haiku_seasons/
    python prepare/labelled.py --tokenizer char      # one id per character -> data/haiku_seasons_char/
    python prepare/labelled.py --tokenizer gpt2      # GPT-2's BPE, for --init_from=gpt2 -> data/haiku_seasons_gpt2/
    python prepare/labelled.py --input train.csv --tokenizer gpt2 --label_names World,Sports,Business,Sci/Tech
    python prepare/labelled.py --input reviews.jsonl --text_column body --label_column stars --out_dir data/reviews

Default source: prepare/haiku_corpus.txt, each haiku labelled by the line of prepare/haiku_seasons.txt in the same
place (spring, summer, autumn, winter, or none: no season word), judged from its season words as a haiku reader
would. --input (repeatable) reads CSV with a text and a label column (found by name, or --text_column and
--label_column), AG News's CSV layout (Class Index, Title, Description: the text is the title and the description,
the labels 1-4, named by --label_names), or JSON Lines with text and label fields (haikugpt/texts.py). With
--label_names, a number n means the n-th name (counting from 1 in AG News's layout, from 0 elsewhere).

Texts are cleaned as prepare/haiku.py cleans haiku (lines trimmed, inner spaces collapsed) and deduplicated (ignoring
case and punctuation; the first copy is kept). Each label's texts are split by a hash of the text, as prepare/haiku.py
splits haiku: every label is in both splits at about --val_fraction, a text stays where it is when the data grows,
and on the embedded corpus the val haiku are prepare/haiku.py's, which the quick start's language model never saw.
--tokenizer bpe (a BPE learnt from the training texts) and char (a table of every character) are built exactly as
prepare/haiku.py builds them (prepare/common.py), so on the embedded corpus they are its vocabularies and the quick
start's language model reads this data. meta.json records the label names (their order is their ids) and the counts.

A label with fewer than two texts, data with a single label, a missing column: one line naming it, and nothing is
written.
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
from haikugpt.tokenizer import gpt2_tokenizer  # noqa: E402
from prepare.common import learn_tokenizer, write_dataset  # noqa: E402

CORPUS_PATH = Path(__file__).with_name("haiku_corpus.txt")
SEASONS_PATH = Path(__file__).with_name("haiku_seasons.txt")
SEASONS = ["spring", "summer", "autumn", "winter", "none"]
SUFFIXES = {"bpe": "", "char": "_char", "gpt2": "_gpt2"}  # data/haiku_seasons, data/haiku_seasons_char, ...


def display_path(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def read_seasons() -> tuple[list[str], list[str], list[dict]]:
    """The embedded corpus's haiku and their season labels, one per haiku, in order."""
    haiku = blocks(CORPUS_PATH.read_text(encoding="utf-8"))
    labels = SEASONS_PATH.read_text(encoding="utf-8").split()
    where = f"{display_path(SEASONS_PATH)}: {len(labels):,} labels for the {len(haiku):,} haiku of {CORPUS_PATH.name}"
    if len(labels) != len(haiku):
        raise ValueError(f"{where}; it needs one per haiku, in the corpus's order")
    unknown = sorted(set(labels) - set(SEASONS))
    if unknown:
        raise ValueError(f"{display_path(SEASONS_PATH)}: unknown label {unknown[0]!r} (expected {', '.join(SEASONS)})")
    info = {"path": display_path(CORPUS_PATH), "labels": display_path(SEASONS_PATH), "read": len(haiku)}
    return [clean_text(h) for h in haiku], labels, [info]


def read_inputs(paths: list[Path], text_column, label_column, label_names) -> tuple[list, list, list, list[str]]:
    """Texts, label names, the sources' details and every label name, from the --input files."""
    texts, labels, sources = [], [], []
    for path in paths:
        file = read_labelled(path, text_column, label_column)
        named = to_names(file.labels, label_names, file.base) if label_names else file.labels
        if None in named:
            raw = file.labels[named.index(None)]
            numbers = f"{file.base} to {file.base + len(label_names) - 1}"
            raise ValueError(f"{path}: label {raw!r} is neither one of --label_names ({', '.join(label_names)}) nor "
                             f"a number from {numbers}")  # fmt: skip
        texts += file.texts
        labels += named
        sources.append({**file.info, "path": display_path(path)})
    numeric = all(label.lstrip("-").isdigit() for label in labels)
    names = label_names or sorted(set(labels), key=lambda label: (int(label), label) if numeric else (0, label))
    return texts, labels, sources, names


def dedupe(texts: list[str], labels: list[str]) -> tuple[list[str], list[str], dict]:
    """The first copy of each text (ignoring case and punctuation), and how many copies were dropped."""
    first: dict[str, str] = {}
    kept_texts, kept_labels, counts = [], [], {"duplicates": 0, "with another label": 0}
    for text, label in zip(texts, labels):
        key = dedupe_key(text)
        if key in first:
            counts["duplicates"] += 1
            counts["with another label"] += first[key] != label
            continue
        first[key] = label
        kept_texts.append(text)
        kept_labels.append(label)
    return kept_texts, kept_labels, counts


def check_labels(labels: list[str], names: list[str], sources: list[dict]) -> None:
    """At least two labels, each with at least two texts: one to train on, one to judge by."""
    where = ", ".join(s["path"] for s in sources)
    counts = Counter(labels)
    if len(counts) < 2:
        only = f" ({next(iter(counts))!r})" if counts else ""
        raise ValueError(f"{where}: a single label{only}; a classifier needs at least two")
    for name in names:
        if counts[name] < 2:
            texts = f"{counts[name]} text{'s' * (counts[name] != 1)}"
            raise ValueError(f"label {name!r} has {texts} in {where}; each label needs at least 2 (one to train on, "
                             "one to judge by): add texts or leave it out")  # fmt: skip


def stratified_split(texts: list[str], labels: list[str], names: list[str], val_fraction: float) -> list[bool]:
    """Whether each text is in val: each label's texts split by hash on their own (texts.split_texts)."""
    val: set[str] = set()
    for name in names:
        val.update(split_texts([t for t, label in zip(texts, labels) if label == name], val_fraction)[1])
    return [text in val for text in texts]


def prepare(
    inputs: list[Path] | None = None,
    out_dir: Path | None = None,
    tokenizer: str = "bpe",
    val_fraction: float = 0.1,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: list[str] | None = None,
    vocab_size: int = 5120,
    encoding: tiktoken.Encoding | None = None,
) -> dict:
    """Read, clean, split and tokenize; print the report; return the meta.json written (`encoding` replaces GPT-2's)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    if tokenizer not in SUFFIXES:
        raise ValueError(f"--tokenizer must be bpe, char or gpt2, got {tokenizer!r}")
    if tokenizer == "bpe" and not 257 <= vocab_size <= 65536:
        raise ValueError(f"--vocab_size must be between 257 (the bytes and end-of-text) and 65,536, got {vocab_size}")
    if label_names is not None and (len(set(label_names)) != len(label_names) or "" in label_names):
        raise ValueError(f"--label_names must be distinct, non-empty names separated by commas, got {label_names}")
    name = Path(inputs[0]).stem if inputs else "haiku_seasons"
    out_dir = out_dir or ROOT / "data" / f"{name}{SUFFIXES[tokenizer]}"
    for path in inputs or []:  # the files named first, then what they need (GPT-2's BPE files may need a download)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {'a folder; pass each file' if path.is_dir() else 'no such file'}")
    bpe = gpt2_tokenizer(encoding) if tokenizer == "gpt2" else None
    if inputs:
        texts, labels, sources, names = read_inputs(inputs, text_column, label_column, label_names)
    else:
        (texts, labels, sources), names = read_seasons(), SEASONS
    read = len(texts)
    texts, labels, duplicates = dedupe(texts, labels)
    check_labels(labels, names, sources)
    is_val = stratified_split(texts, labels, names, val_fraction)
    tok = bpe or learn_tokenizer(tokenizer, texts, split_texts(texts, val_fraction)[0], vocab_size)
    pieces, label_ids, ids = {"train": [], "val": []}, {"train": [], "val": []}, {n: i for i, n in enumerate(names)}
    for text, label, val in zip(texts, labels, is_val):
        pieces["val" if val else "train"].append((text, True))
        label_ids["val" if val else "train"].append(ids[label])
    counts = {"read": read, "kept": len(texts), **duplicates}
    label_counts = {s: {n: label_ids[s].count(i) for i, n in enumerate(names)} for s in label_ids}
    extra = {"dataset": out_dir.name, "val_fraction": val_fraction, "sources": sources, "counts": counts,
             "labels": names, "label_counts": label_counts, "text_column": text_column,
             "label_column": label_column}  # fmt: skip
    meta = write_dataset(out_dir, pieces, tok, extra)
    for split, ids in label_ids.items():
        write_labels(out_dir, split, ids)
    print_report(meta, out_dir)
    return meta


def print_report(meta: dict, out_dir: Path) -> None:
    counts = meta["counts"]
    print(f"read {counts['read']:,} texts from {len(meta['sources'])} source(s)")
    for s in meta["sources"]:
        how = f"labels from {s['labels']}" if "labels" in s else f"{s['format']}, {s['columns']}"
        dropped = ", ".join(f"{n:,} {reason}" for reason, n in s.get("dropped", {}).items())
        print(f"  {s['path']}: {how}; {s['read']:,} rows{f', dropped {dropped}' if dropped else ''}")
    print(f"kept {counts['kept']:,}; duplicates {counts['duplicates']:,} ({counts['with another label']:,} of them "
          "with another label)")  # fmt: skip
    width = max(len(n) for n in meta["labels"])
    print(f"{'label':<{width}}  {'texts':>6}  {'train':>6}  {'val':>5}")
    for name in meta["labels"]:
        train, val = meta["label_counts"]["train"][name], meta["label_counts"]["val"][name]
        print(f"{name:<{width}}  {train + val:6,}  {train:6,}  {val:5,}")
    for split in ("train", "val"):
        n = sum(meta["label_counts"][split].values())
        print(f"{split}: {n:,} texts, {meta['tokens'][split]:,} tokens")
    print(f"wrote {out_dir} ({meta['tokenizer']} tokenizer, vocab_size {meta['vocab_size']:,})")


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
