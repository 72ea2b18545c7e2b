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
from haikugpt.haiku.verse import is_575  # noqa: E402
from haikugpt.texts import UNREADABLE, dedupe_key, read_rows, split_texts  # noqa: E402
from haikugpt.tokenizer import gpt2_tokenizer  # noqa: E402
from prepare.common import CORPUS_PATH, check_options, display_path, learn_tokenizer, write_dataset  # noqa: E402

MAX_LINES, MAX_CHARS = 5, 300  # a longer haiku is dropped
LINE_FIELDS = ("0", "1", "2")  # Kaggle's all_haiku.csv: one column per line
TEXT_FIELDS = ("text", "haiku", "poem", "content", "lines")  # one field holding the whole haiku
TOKENIZERS = ("gpt2", "bpe", "char")
LETTER = re.compile(r"[^\W\d_]")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # Unicode's control characters, less "\n"


def pick_fields(names: list) -> list | None:
    """The field(s) that hold haiku: Kaggle's three line columns, else the first text-like column; None if neither."""
    lower = {str(name).strip().lower(): name for name in names}
    if all(f in lower for f in LINE_FIELDS):
        return [lower[f] for f in LINE_FIELDS]
    return next(([lower[f]] for f in TEXT_FIELDS if f in lower), None)


def guess_csv_columns(rows: list[list[str]]) -> tuple[list[int], bool] | None:
    """For a CSV whose header names no haiku column (or that has no header; rows padded to one width): the column(s)
    whose content looks like haiku in half the rows, and whether the first row is a header. One column of multi-line
    text wins; else three adjacent columns of short text lines (Kaggle's layout without its header)."""
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
    """Raw haiku values from one file (a string, a list of line cells, None or UNREADABLE), and what was learned
    reading it (format, the fields chosen, lines read as cp1252)."""
    rows, names, info = read_rows(path)
    info["path"] = display_path(path)
    if info["format"] == "text":
        return rows, info
    fields = pick_fields(names)
    if info["format"] in ("csv", "tsv"):
        width = max(map(len, rows))
        rows = [row + [""] * (width - len(row)) for row in rows]
        if fields is not None:
            columns, has_header = [names.index(f) for f in fields], True
            info["fields"] = f"column(s) {', '.join(fields)}"
        elif guess := guess_csv_columns(rows):
            columns, has_header = guess
            info["fields"] = (f"column(s) {', '.join(map(str, columns))} by content"
                              f"{'' if has_header else ', no header row'}")  # fmt: skip
        else:
            raise no_fields_error(path, names)
        cells = [[row[i] for i in columns] for row in rows[1 if has_header else 0 :]]
        return [c[0] if len(c) == 1 else c for c in cells], info
    if fields is None:
        if any(isinstance(r, str) for r in rows):
            info["fields"] = "strings"
            return [r if isinstance(r, str) else UNREADABLE for r in rows], info
        raise no_fields_error(path, names)
    info["fields"] = f"field(s) {', '.join(map(str, fields))}"
    values = [[r.get(f) for f in fields] if isinstance(r, dict) else r if isinstance(r, str) else UNREADABLE
              for r in rows]  # fmt: skip
    return [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values], info


def no_fields_error(path: Path, names: list) -> ValueError:
    found = ", ".join(str(n) for n in names[:10]) or "nothing"
    expected = f"columns {', '.join(LINE_FIELDS)} or one of {', '.join(TEXT_FIELDS)}"
    return ValueError(f"{path}: no column holds haiku (expected {expected}; found {found})")


def normalise(value) -> tuple[str | None, str | None]:
    """(haiku, None) for a usable value: trimmed, inner spaces collapsed, lines joined by "\\n"; else (None, reason)."""
    if value is UNREADABLE:
        return None, "unreadable"
    if isinstance(value, list):
        if not all(v is None or isinstance(v, str) for v in value):
            return None, "not text"
        value = "\n".join(v for v in value if v)
    if value is None:
        return None, "empty"
    if not isinstance(value, str):
        return None, "not text"
    lines = [" ".join(line.split()) for line in re.split(r"\r\n|\r|\n|\s+/\s+", value)]
    haiku = "\n".join(line for line in lines if line)
    if not haiku:
        return None, "empty"
    if "\ufffd" in haiku:
        return None, "undecodable"
    if not LETTER.search(haiku) or CONTROL.search(haiku):
        return None, "not text"
    if haiku.count("\n") >= MAX_LINES:
        return None, f"more than {MAX_LINES} lines"
    if len(haiku) > MAX_CHARS:
        return None, f"longer than {MAX_CHARS} characters"
    return haiku, None


def load_haiku(paths: list[Path]) -> tuple[list[str], dict]:
    """The kept haiku from all sources, in order, and the counts for the report."""
    kept, seen, sources = [], set(), []
    counts = {"read": 0, "kept": 0, "dropped": Counter(), "duplicates": 0}
    for path in paths:
        values, info = read_source(path)
        info["read"], info["kept"] = len(values), 0
        for value in values:
            haiku, reason = normalise(value)
            if reason:
                counts["dropped"][reason] += 1
            elif dedupe_key(haiku) in seen:
                counts["duplicates"] += 1
            else:
                seen.add(dedupe_key(haiku))
                kept.append(haiku)
                info["kept"] += 1
        counts["read"] += info["read"]
        sources.append(info)
    counts["kept"] = len(kept)
    counts["dropped"] = dict(counts["dropped"].most_common())
    counts["share_575"] = round(sum(map(is_575, kept)) / max(len(kept), 1), 4)
    return kept, {"sources": sources, "counts": counts}


def prepare(inputs: list[Path] | None = None, out_dir: Path | None = None, tokenizer: str = "gpt2",
            val_fraction: float = 0.1, encoding: tiktoken.Encoding | None = None,
            vocab_size: int = 5120) -> dict:  # fmt: skip
    """Read, clean, split and tokenize; print the report; return the meta.json written (`encoding` replaces GPT-2's)."""
    check_options(val_fraction, tokenizer, TOKENIZERS, vocab_size, inputs)
    out_dir = out_dir or ROOT / "data" / ("haiku" if tokenizer == "gpt2" else f"haiku_{tokenizer}")
    bpe = gpt2_tokenizer(encoding) if tokenizer == "gpt2" else None  # before the reading: missing BPE files fail fast
    haiku, meta = load_haiku(inputs or [CORPUS_PATH])
    train, val = split_texts(haiku, val_fraction)
    meta["counts"].update(train_haiku=len(train), val_haiku=len(val))
    tok = bpe or learn_tokenizer(tokenizer, haiku, train, vocab_size)
    splits = {"train": [(h, True) for h in train], "val": [(h, True) for h in val]}
    meta = write_dataset(out_dir, splits, tok, {"dataset": "haiku", "val_fraction": val_fraction, **meta})
    print_report(meta, out_dir)
    return meta


def print_report(meta: dict, out_dir: Path) -> None:
    counts = meta["counts"]
    print(f"read {counts['read']:,} haiku from {len(meta['sources'])} source(s)")
    for s in meta["sources"]:
        how = f", {s['fields']}" if "fields" in s else ""
        fallback = f", {s['cp1252_lines']:,} lines read as cp1252" if s.get("cp1252_lines") else ""
        print(f"  {s['path']}: {s['format']}{how}{fallback}; {s['read']:,} read, {s['kept']:,} kept")
    dropped = ", ".join(f"{n:,} {reason}" for reason, n in counts["dropped"].items())
    print(f"dropped {sum(counts['dropped'].values()):,}{f' ({dropped})' if dropped else ''}")
    print(f"duplicates {counts['duplicates']:,}")
    print(f"kept {counts['kept']:,}, of which {counts['share_575']:.1%} are 5-7-5")
    for split in ("train", "val"):
        print(f"{split}: {counts[f'{split}_haiku']:,} haiku, {meta['tokens'][split]:,} tokens")
    print(f"wrote {out_dir} ({meta['tokenizer']} tokenizer, vocab_size {meta['vocab_size']:,})")


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
