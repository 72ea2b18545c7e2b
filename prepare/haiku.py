"""Prepare the haiku dataset: haiku read, cleaned, deduplicated and split into train.bin, val.bin and meta.json.

    python prepare/haiku.py                            # the embedded corpus, GPT-2 BPE -> data/haiku/
    python prepare/haiku.py --tokenizer char           # one id per character -> data/haiku_char/
    python prepare/haiku.py --tokenizer bpe            # a 5,120-token BPE learnt from the haiku -> data/haiku_bpe/
    python prepare/haiku.py --input all_haiku.csv --input mine.txt --val_fraction 0.05 --out_dir data/haiku_big

--input (default prepare/haiku_corpus.txt): .txt, haiku between blank lines; .csv or .tsv, Kaggle's all_haiku.csv
(line columns 0, 1, 2) or a text/haiku/poem column, lines split by " / " or newlines (else columns found by content);
.jsonl, .json or .parquet, a text/haiku/poem/content/lines field. Dropped and counted: empty, over 5 lines or 300
characters, not text, undecodable, duplicates (ignoring case and punctuation).
"""

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tiktoken  # noqa: E402

from haikugpt.files import ROOT, one_line_errors  # noqa: E402
from haikugpt.haiku.verse import is_form  # noqa: E402
from haikugpt.texts import UNREADABLE, dedupe_key, read_rows, split_texts  # noqa: E402
from prepare.common import CORPUS_PATH, check_options, display_path, make_tokenizer, write_dataset  # noqa: E402

MAX_LINES, MAX_CHARS = 5, 300  # a longer haiku is dropped
LINE_FIELDS = ("0", "1", "2")  # Kaggle's all_haiku.csv: one column per line
TEXT_FIELDS = ("text", "haiku", "poem", "content", "lines")  # one field holding the whole haiku
TOKENIZERS = ("gpt2", "bpe", "char")
LETTER = re.compile(r"[^\W\d_]")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # Unicode's control characters, less "\n"


def guess_csv_columns(rows: list[list[str]]) -> tuple[list[int], bool] | None:
    """The column(s) of a CSV (rows padded to one width) that look like haiku in half the rows, and whether the first
    row is a header: one column of multi-line text, else three adjacent columns of short lines (Kaggle's, no header)."""
    sample, width = rows[1:200] or rows, len(rows[0])
    share = lambda columns, test: sum(all(test(row[i]) for i in columns) for row in sample) / len(sample)
    is_poem = lambda text: 2 <= len(re.split(r"\n|\s+/\s+", text.strip())) <= MAX_LINES and len(text) <= MAX_CHARS
    is_line = lambda text: "\n" not in text and " " in text.strip() and len(text) <= 100
    poems = ([i] for i in range(width) if share([i], is_poem) >= 0.5)
    lines = (c for c in ([i, i + 1, i + 2] for i in range(width - 2)) if share(c, is_line) >= 0.5)
    if (columns := next(poems, None) or next(lines, None)) is None:
        return None
    return columns, all(rows[0][i].strip() and not any(c.isspace() for c in rows[0][i]) for i in columns)


def read_source(path: Path) -> tuple[list, dict]:
    """Raw haiku values from one file (a string, a list of line cells, None or UNREADABLE), and the file's details."""
    rows, names, info = read_rows(path)
    info["path"] = display_path(path)
    if info["format"] == "text":
        return rows, info
    lower = {str(name).strip().lower(): name for name in names}
    groups = [LINE_FIELDS, *((f,) for f in TEXT_FIELDS)]  # Kaggle's three line columns, else the first text column
    fields = next(([lower[f] for f in group] for group in groups if all(f in lower for f in group)), None)
    if info["format"] in ("csv", "tsv"):
        width = max(map(len, rows))
        rows = [row + [""] * (width - len(row)) for row in rows]
        if chosen := ([names.index(f) for f in fields], True) if fields else guess_csv_columns(rows):
            columns, has_header = chosen
            how = "" if fields else f" by content{'' if has_header else ', no header row'}"
            info["fields"] = f"column(s) {', '.join(fields or map(str, columns))}{how}"
            return [[row[i] for i in columns] for row in rows[1 if has_header else 0 :]], info  # normalise joins them
    elif fields or any(isinstance(r, str) for r in rows):
        info["fields"] = f"field(s) {', '.join(map(str, fields))}" if fields else "strings"
        values = [[r.get(f) for f in fields] if fields and isinstance(r, dict) else r if isinstance(r, str)
                  else UNREADABLE for r in rows]  # fmt: skip
        return [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values], info
    found = ", ".join(str(n) for n in names[:10]) or "nothing"
    expected = f"columns {', '.join(LINE_FIELDS)} or one of {', '.join(TEXT_FIELDS)}"
    raise ValueError(f"{path}: no column holds haiku (expected {expected}; found {found})")


def normalise(value) -> tuple[str | None, str | None]:
    """(haiku, None) for a usable value: trimmed, inner spaces collapsed, lines joined by "\\n"; else (None, reason)."""
    if value is UNREADABLE:
        return None, "unreadable"
    if isinstance(value, list) and all(v is None or isinstance(v, str) for v in value):
        value = "\n".join(v for v in value if v)
    if not isinstance(value, str | None):
        return None, "not text"
    lines = [" ".join(line.split()) for line in re.split(r"\r\n|\r|\n|\s+/\s+", value or "")]
    haiku = "\n".join(line for line in lines if line)
    failed = {"empty": not haiku, "undecodable": "\ufffd" in haiku,
              "not text": not LETTER.search(haiku) or CONTROL.search(haiku),
              f"more than {MAX_LINES} lines": haiku.count("\n") >= MAX_LINES,
              f"longer than {MAX_CHARS} characters": len(haiku) > MAX_CHARS}  # fmt: skip
    return next(((None, reason) for reason, bad in failed.items() if bad), (haiku, None))


def prepare(inputs: list[Path] | None = None, out_dir: Path | None = None, tokenizer: str = "gpt2",
            val_fraction: float = 0.1, encoding: tiktoken.Encoding | None = None,
            vocab_size: int = 5120) -> dict:  # fmt: skip
    """Read, clean, split and tokenize; print the report; return the meta.json written (`encoding` replaces GPT-2's)."""
    check_options(val_fraction, tokenizer, TOKENIZERS, vocab_size)
    out_dir = out_dir or ROOT / "data" / ("haiku" if tokenizer == "gpt2" else f"haiku_{tokenizer}")
    kept, sources, dropped = {}, [], Counter()  # kept: each dedupe_key's first haiku
    for path in inputs or [CORPUS_PATH]:
        (values, info), before = read_source(path), len(kept)
        for haiku, reason in map(normalise, values):
            if reason:
                dropped[reason] += 1
            else:
                kept.setdefault(dedupe_key(haiku), haiku)
        sources.append({**info, "read": len(values), "kept": len(kept) - before})
    read, haiku = sum(s["read"] for s in sources), list(kept.values())
    train, val = split_texts(haiku, val_fraction)
    counts = {"read": read, "kept": len(haiku), "dropped": dict(dropped.most_common()),
              "duplicates": read - len(haiku) - dropped.total(),
              "share_575": round(sum(map(is_form, haiku)) / max(len(haiku), 1), 4),
              "train_haiku": len(train), "val_haiku": len(val)}  # fmt: skip
    tok = make_tokenizer(tokenizer, haiku, train, vocab_size, encoding)
    splits = {"train": [(h, True) for h in train], "val": [(h, True) for h in val]}
    extra = {"dataset": "haiku", "val_fraction": val_fraction, "sources": sources, "counts": counts}
    meta = write_dataset(out_dir, splits, tok, extra)
    print(f"read {read:,} haiku from {len(sources)} source(s)")  # the report
    for s in sources:
        how = f", {s['fields']}" if "fields" in s else ""
        fallback = f", {s['cp1252_lines']:,} lines read as cp1252" if s.get("cp1252_lines") else ""
        print(f"  {s['path']}: {s['format']}{how}{fallback}; {s['read']:,} read, {s['kept']:,} kept")
    reasons = ", ".join(f"{n:,} {reason}" for reason, n in counts["dropped"].items())
    print(f"dropped {dropped.total():,}{f' ({reasons})' if reasons else ''}")
    print(f"duplicates {counts['duplicates']:,}")
    print(f"kept {counts['kept']:,}, of which {counts['share_575']:.1%} are 5-7-5")
    for split in ("train", "val"):
        print(f"{split}: {counts[f'{split}_haiku']:,} haiku, {meta['tokens'][split]:,} tokens")
    print(f"wrote {out_dir} ({meta['tokenizer']} tokenizer, vocab_size {meta['vocab_size']:,})")
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, action="append", help="a haiku file (repeatable); default: the corpus")
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="gpt2",
                        help="GPT-2's BPE, a BPE learnt from these haiku, or one id per character")  # fmt: skip
    parser.add_argument("--vocab_size", type=int, default=5120, help="of a learnt BPE (--tokenizer bpe)")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--out_dir", type=Path, help="default: data/haiku (gpt2), data/haiku_bpe or data/haiku_char")
    args = parser.parse_args(argv)
    with one_line_errors():
        prepare(args.input, args.out_dir, args.tokenizer, args.val_fraction, vocab_size=args.vocab_size)


if __name__ == "__main__":
    main()
