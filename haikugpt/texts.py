"""The one reader of the text files that the prepare scripts and classify.py take, and their cleaning and splitting.

    rows, names, info = read_rows(Path("all_haiku.csv"))     # a CSV's cells, header first; names: the header
    file = read_labelled(Path("news.csv"))                   # texts and their labels, columns found by name
    train, val = split_texts(texts, val_fraction=0.1)        # by a hash of each text: copies never straddle

Formats, by extension (else by the first bytes): .txt, texts between blank lines; .csv and .tsv, rows of cells;
.jsonl and .json, JSON Lines or a JSON list, of objects or strings (a line that is not JSON is dropped); .parquet,
rows as objects (pip install pyarrow). Lines that are not UTF-8 are read as cp1252, as an editor would.
"""

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = {".txt": "text", ".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet"}  # fmt: skip
TEXT_FIELDS = ("text", "sentence", "content", "review", "document", "haiku", "poem", "lines")  # tried in this order
LABEL_FIELDS = ("label", "labels", "class", "category", "target", "season")
AG_NEWS = ("class index", "title", "description")  # AG News's CSV columns (case-insensitive); its labels are 1-4
UNREADABLE = object()  # a JSON line that could not be parsed


def decode_bytes(data: bytes) -> tuple[str, int]:
    """The text of UTF-8 bytes, lines that are not UTF-8 read as cp1252 (U+FFFD for bytes it lacks), and how many."""
    try:
        return data.decode("utf-8-sig"), 0
    except UnicodeDecodeError:  # line by line
        lines, fallback = [], 0
        for line in data.split(b"\n"):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(line.decode("cp1252", errors="replace"))
                fallback += 1
        return "\n".join(lines).removeprefix("\ufeff"), fallback


def blocks(text: str) -> list[str]:
    """The texts of a plain-text file: separated by blank lines (spaces and tabs on them allowed)."""
    return [b for b in re.split(r"\n[ \t\r]*\n", text.replace("\r\n", "\n").strip()) if b.strip()]


def read_rows(path: Path) -> tuple[list, list[str], dict]:
    """A file's records (text blocks; a CSV's rows as lists of cells, header first; JSON or Parquet objects), the
    column or field names (a CSV's first row, every JSON field), and info: its path, format and cp1252 lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {'a folder; pass each file' if path.is_dir() else 'no such file'}")
    data = path.read_bytes()
    fmt = FORMATS.get(path.suffix.lower())
    if data.startswith(b"PAR1"):
        fmt = "parquet"
    elif not path.suffix and b"\0" not in data[:4096]:
        fmt = "jsonl" if data.lstrip()[:1] in (b"{", b"[") else "text"
    if fmt is None:
        raise ValueError(f"{path}: unknown format {path.suffix or '(binary, no extension)'!r} (expected "
                         f"{', '.join(FORMATS)})")  # fmt: skip
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise RuntimeError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        try:
            return pq.read_table(path).to_pylist(), pq.read_schema(path).names, {"path": str(path), "format": fmt}
        except Exception as e:  # pyarrow's errors for a damaged file come in several classes
            raise ValueError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    if not data.strip():
        raise ValueError(f"{path} is empty")
    text, fallback = decode_bytes(data)
    info = {"path": str(path), "format": fmt, "cp1252_lines": fallback}
    if fmt == "text":
        return blocks(text), [], info
    if fmt in ("csv", "tsv"):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
        try:
            rows = [r for r in reader if any(r)]
        except csv.Error as e:
            raise ValueError(f"{path}: not a readable CSV file ({e})") from None
        if not rows:
            raise ValueError(f"{path}: no rows")
        return rows, [name.strip() for name in rows[0]], info
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    else:
        records = [parse_json(line) for line in text.splitlines() if line.strip()]
        if all(r is UNREADABLE for r in records):
            raise ValueError(f"{path}: no line is valid JSON")
    names = list(dict.fromkeys(name for r in records if isinstance(r, dict) for name in r))
    return records, names, info


def parse_json(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return UNREADABLE


def clean_text(text: str) -> str:
    """Lines trimmed, inner spaces collapsed, empty lines dropped; the lines joined by "\\n"."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def dedupe_key(text: str) -> str:
    """What two copies of a text share: its letters and digits, case-folded."""
    return re.sub(r"[\W_]+", "", text.casefold())


def split_hash(text: str) -> float:
    """A number in [0, 1) that depends on the text alone, so a document's split never moves when the corpus grows."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def split_texts(texts: list[str], val_fraction: float, noun: str = "haiku") -> tuple[list[str], list[str]]:
    """Train and val by the hash of each text's dedupe_key, so a text and its copies never land in both splits; at
    least one of each (the lowest hashes go to val)."""
    if len(texts) < 2:
        raise ValueError(f"{len(texts)} {noun} left after cleaning; at least 2 are needed for a train and a val split")
    hashes = [split_hash(dedupe_key(t)) for t in texts]
    order = sorted(range(len(texts)), key=hashes.__getitem__)
    val = set(order[: min(max(sum(h < val_fraction for h in hashes), 1), len(texts) - 1)])
    return [t for i, t in enumerate(texts) if i not in val], [t for i, t in enumerate(texts) if i in val]


# ---------------------------------------------------------------------------------------------------------------------
# Labelled files: a text and a label column (found by name, or named), or AG News's layout (the text is the title and
# the description on two lines, the labels 1-4); .txt holds texts alone


@dataclass
class LabelledFile:
    texts: list[str]
    labels: list[str | None]  # as written in the file (a number is its digits); None where a row has none
    base: int = 0  # the label a number 0 stands for in --label_names: 1 in AG News's layout (labels 1-4), else 0
    info: dict = field(default_factory=dict)  # path, format, the columns read, rows dropped


def find_column(path: Path, names: list[str], given: str | None, candidates: tuple, what: str) -> str:
    """The column called given, else the first candidate present (case-insensitive); an error if there is none."""
    lower = {name.lower(): name for name in names}
    for column in (given,) if given is not None else candidates:
        if column.lower() in lower:
            return lower[column.lower()]
    if given is not None:
        raise ValueError(f"{path}: no {what} column {given!r} (--{what}_column); found {', '.join(names)}")
    raise ValueError(f"{path}: no {what} column (expected one of {', '.join(candidates)}, or --{what}_column; found "
                     f"{', '.join(names) or 'nothing'})")  # fmt: skip


def read_labelled(path: Path, text_column: str | None = None, label_column: str | None = None,
                  need_labels: bool = True) -> LabelledFile:  # fmt: skip
    """The cleaned, non-empty texts of a file and their labels; with need_labels, rows without a label are dropped
    (counted in info["dropped"]). A .txt without blank lines holds one text a line."""
    if need_labels and FORMATS.get(Path(path).suffix.lower()) == "text":
        raise ValueError(f"{path}: a .txt file has no labels (expected {', '.join(s for s in FORMATS if s != '.txt')})")
    rows, names, info = read_rows(path)
    if info["format"] == "text":
        rows = rows if len(rows) > 1 else rows[0].splitlines() if rows else []
        rows, names = [{"text": text} for text in rows], ["text"]
    elif info["format"] in ("csv", "tsv"):
        rows = [dict(zip(names, row)) for row in rows[1:]]
    lower = {name.lower(): name for name in names}
    if text_column is None and label_column is None and all(c in lower for c in AG_NEWS):
        title, description, label, base = lower["title"], lower["description"], lower["class index"], 1
        texts = [f"{row.get(title) or ''}\n{row.get(description) or ''}" for row in rows]
        how = f"AG News ({', '.join(lower[c] for c in AG_NEWS)})"
    else:
        text = find_column(path, names, text_column if info["format"] != "text" else None, TEXT_FIELDS, "text")
        label = find_column(path, names, label_column, LABEL_FIELDS, "label") if need_labels else None
        texts, base = [row.get(text) if isinstance(row, dict) else None for row in rows], 0
        how = f"text {text!r}" + (f", label {label!r}" if label else "")
    out = LabelledFile([], [], base, {**info, "columns": how, "read": len(rows)})
    dropped = {"empty text": 0, "no label": 0}
    for row, value in zip(rows, texts):
        value = clean_text(value) if isinstance(value, str) else ""
        raw = row.get(label) if label and isinstance(row, dict) else None
        raw = None if raw is None or str(raw).strip() == "" else str(raw).strip()
        if not value:
            dropped["empty text"] += 1
        elif raw is None and need_labels:
            dropped["no label"] += 1
        else:
            out.texts.append(value)
            out.labels.append(raw)
    out.info["dropped"] = {reason: n for reason, n in dropped.items() if n}
    if not out.texts:
        raise ValueError(f"{path}: no {'labelled ' if need_labels else ''}texts")
    return out


def to_names(labels: list[str | None], names: list[str], base: int = 0) -> list[str | None]:
    """Each label as one of names: itself, or names[n - base] for a number n; None for a label that is neither."""
    numbered = {n + base: name for n, name in enumerate(names)}
    return [
        label if label is None or label in names else numbered.get(int(label)) if label.lstrip("-").isdigit() else None
        for label in labels
    ]
