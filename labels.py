"""Labelled texts: the files that prepare/labelled.py prepares and classify.py evaluates or labels, and the labelled
datasets on disk. The one copy of this code, shared by both.

    from labels import read_labelled, to_names, read_split
    file = read_labelled(Path("news.csv"))                  # texts, raw labels, and how the file was read
    names = to_names(file.labels, ["World", "Sports", "Business", "Sci/Tech"], file.base)
    texts, label_ids = read_split(Path("data/haiku_seasons"), "val", eot_id=5119)

Formats, from the file's extension (UTF-8, with or without a byte-order mark):
  .csv .tsv       a header row naming a text column and a label column (text, sentence, ...; label, class, ...: see
                  TEXT_FIELDS and LABEL_FIELDS, or name them), or AG News's layout: Class Index, Title, Description,
                  where the text is the title and the description on two lines and the labels are 1, 2, 3, 4
  .jsonl .json    JSON Lines (or a JSON list) of objects with a text field and a label field, found as in a CSV
  .txt            texts to label, without labels: blocks separated by blank lines, or one text a line if there are
                  no blank lines
Each text has its lines trimmed, inner spaces collapsed and empty lines dropped. A labelled dataset is a folder as
prepare/ writes one (train.bin, val.bin, meta.json: each text followed by the end-of-text id) plus train_labels.bin
and val_labels.bin, one uint16 label id per text, in order; meta.json's "labels" holds the label names by id.
"""

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from files import atomic_write

TEXT_FIELDS = ("text", "sentence", "content", "review", "document", "haiku", "poem")  # tried in this order
LABEL_FIELDS = ("label", "labels", "class", "category", "target", "season")
AG_NEWS = ("class index", "title", "description")  # AG News's CSV columns (case-insensitive); its labels are 1-4
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".txt": "text"}


@dataclass
class LabelledFile:
    texts: list[str]
    labels: list[str | None]  # as written in the file (a number is its digits); None where a row has none
    base: int = 0  # the label a number 0 stands for in --label_names: 1 in AG News's layout (labels 1-4), else 0
    info: dict = field(default_factory=dict)  # path, format, the columns read, rows dropped


def clean_text(text: str) -> str:
    """Lines trimmed, inner spaces collapsed, empty lines dropped; the lines joined by "\\n"."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def read_labelled(
    path: Path, text_column: str | None = None, label_column: str | None = None, need_labels: bool = True
) -> LabelledFile:
    """The cleaned, non-empty texts of a file and their labels; with need_labels, rows without a label are dropped
    (and counted in info["dropped"]), and a file without a label column is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {'a folder; pass a file' if path.is_dir() else 'no such file'}")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None or (fmt == "text" and need_labels):
        expected = ", ".join(s for s, f in FORMATS.items() if f != "text" or not need_labels)
        raise ValueError(f"{path}: unknown format {path.suffix or '(no extension)'!r} (expected {expected})")
    data = path.read_bytes()
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}: not UTF-8 (byte 0x{data[e.start]:02x} on line {line}); save it as UTF-8") from None
    if fmt == "text":
        blocks = re.split(r"\n[ \t]*\n", content.replace("\r\n", "\n").strip())
        rows, names = [{"text": text} for text in (blocks if len(blocks) > 1 else content.splitlines())], ["text"]
    elif fmt == "jsonl":
        rows, names = json_rows(path, content)
    else:
        rows, names = csv_rows(path, content, "\t" if fmt == "tsv" else ",")
    return from_rows(path, fmt, rows, names, text_column, label_column, need_labels)


def csv_cells(path: Path, content: str, delimiter: str = ",") -> list[list[str]]:
    """The non-empty rows of a CSV (or TSV) file's text as lists of cells; prepare/haiku.py reads its CSVs here too."""
    try:
        rows = [row for row in csv.reader(io.StringIO(content, newline=""), delimiter=delimiter) if any(row)]
    except csv.Error as e:
        raise ValueError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def csv_rows(path: Path, content: str, delimiter: str) -> tuple[list[dict], list[str]]:
    rows = csv_cells(path, content, delimiter)
    header = [name.strip() for name in rows[0]]
    return [dict(zip(header, row)) for row in rows[1:]], header


def json_rows(path: Path, content: str) -> tuple[list[dict], list[str]]:
    try:
        if content.lstrip().startswith("["):
            rows = json.loads(content)
        else:
            rows = [json.loads(line) for line in content.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON Lines ({e})") from None
    if not rows or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path}: expected one JSON object per line, each with a text and a label field")
    names = list(dict.fromkeys(name for row in rows for name in row))
    return rows, names


def find_column(path: Path, names: list[str], given: str | None, candidates: tuple, what: str) -> str | None:
    """The column called given, else the first candidate present (case-insensitive); None if there is none."""
    lower = {name.lower(): name for name in names}
    if given is not None:
        if given.lower() not in lower:
            raise ValueError(f"{path}: no {what} column {given!r} (--{what}_column); found {', '.join(names)}")
        return lower[given.lower()]
    return next((lower[c] for c in candidates if c in lower), None)


def from_rows(path, fmt, rows, names, text_column, label_column, need_labels) -> LabelledFile:
    lower = {name.lower(): name for name in names}
    if text_column is None and label_column is None and all(c in lower for c in AG_NEWS):
        title, description, label, base = lower["title"], lower["description"], lower["class index"], 1
        texts = [f"{row.get(title) or ''}\n{row.get(description) or ''}" for row in rows]
        how = f"AG News ({', '.join(lower[c] for c in AG_NEWS)})"
    else:
        text = find_column(path, names, text_column if fmt != "text" else None, TEXT_FIELDS, "text")
        label = find_column(path, names, label_column, LABEL_FIELDS, "label") if need_labels else None
        found = f"found {', '.join(names) or 'nothing'}"
        if text is None:
            raise ValueError(f"{path}: no text column (expected one of {', '.join(TEXT_FIELDS)}, or --text_column; "
                             f"{found})")  # fmt: skip
        if label is None and need_labels:
            raise ValueError(f"{path}: no label column (expected one of {', '.join(LABEL_FIELDS)}, or "
                             f"--label_column; {found})")  # fmt: skip
        texts, base = [row.get(text) for row in rows], 0
        how = f"text {text!r}" + (f", label {label!r}" if label else "")
    out = LabelledFile([], [], base, {"path": str(path), "format": fmt, "columns": how, "read": len(rows)})
    dropped = {"empty text": 0, "no label": 0}
    for row, value in zip(rows, texts):
        value = clean_text(value) if isinstance(value, str) else ""
        raw = row.get(label) if label else None
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
    """Each label as one of names: itself if it is one, else a number counted from base (names[n - base]); None for a
    label that is neither."""

    def name(label: str | None) -> str | None:
        if label is None or label in names:
            return label
        if label.lstrip("-").isdigit() and 0 <= int(label) - base < len(names):
            return names[int(label) - base]
        return None

    return [name(label) for label in labels]


def labels_path(folder: Path, split: str) -> Path:
    return Path(folder) / f"{split}_labels.bin"


def write_labels(folder: Path, split: str, ids: list[int]) -> None:
    """A split's label ids, one uint16 per text, written atomically."""
    data = np.asarray(ids, dtype=np.uint16).tobytes()
    atomic_write(labels_path(folder, split), lambda f: f.write(data), size=len(data))


def read_split(folder: Path, split: str, eot_id: int) -> tuple[list[np.ndarray], np.ndarray]:
    """A labelled split: each text's token ids (ending with its end-of-text) and the label ids, checked to agree."""
    ids = np.fromfile(Path(folder) / f"{split}.bin", dtype=np.uint16)
    path = labels_path(folder, split)
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has {split}.bin but no {path.name}: it is not a labelled dataset; prepare "
                                f"one with prepare/labelled.py")  # fmt: skip
    labels = np.fromfile(path, dtype=np.uint16).astype(np.int64)
    ends = np.flatnonzero(ids == eot_id) + 1
    texts = np.split(ids.astype(np.int64), ends)[:-1]
    if len(texts) != len(labels) or (len(ids) and ends[-1:].tolist() != [len(ids)]):
        raise ValueError(f"{folder}: {split}.bin holds {len(texts)} texts but {path.name} {len(labels)} labels; rerun "
                         "its prepare script")  # fmt: skip
    return texts, labels
