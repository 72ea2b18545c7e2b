"""prepare/labelled.py, haikugpt/texts.py's labelled files and haikugpt/labels.py's splits: the embedded haiku by
season in prepare/haiku.py's vocabularies, the labelled formats, the stratified split, one-line errors that write
nothing."""

import json
from pathlib import Path

import numpy as np
import pytest

from haikugpt import labels, texts
from haikugpt.tokenizer import load_tokenizer
from prepare import haiku, labelled

REPO = Path(__file__).resolve().parent.parent


def texts_and_labels(folder: Path, split: str) -> tuple[list[str], list[str]]:
    """A prepared split decoded: its texts and their label names."""
    meta = json.loads((folder / "meta.json").read_text())
    ids, label_ids = labels.read_split(folder, split, meta["eot_id"])
    tok = load_tokenizer(meta)
    return [tok.decode(t[:-1].tolist()) for t in ids], [meta["labels"][i] for i in label_ids]


def one_line_error(argv: list[str], *words: str) -> None:
    with pytest.raises(SystemExit) as e:
        labelled.main(argv)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    assert all(word in message for word in words), message


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_seasons_share_prepare_haiku_s_vocabulary_and_split(tmp_path, kind, capsys):
    meta = labelled.prepare(out_dir=tmp_path / "seasons", tokenizer=kind)
    lm = haiku.prepare(out_dir=tmp_path / "lm", tokenizer=kind)
    for key in ("tokenizer", "vocab_size", "eot_id", "chars", "bpe"):
        assert meta.get(key) == lm.get(key), key
    for split in ("train", "val"):  # the same haiku in the same order: the language model's val haiku are ours
        assert (tmp_path / "seasons" / f"{split}.bin").read_bytes() == (tmp_path / "lm" / f"{split}.bin").read_bytes()
    seasons = (REPO / "prepare" / "haiku_seasons.txt").read_text().split()
    assert meta["labels"] == ["spring", "summer", "autumn", "winter", "none"]
    totals = {n: meta["label_counts"]["train"][n] + meta["label_counts"]["val"][n] for n in meta["labels"]}
    assert totals == {n: seasons.count(n) for n in meta["labels"]} and totals["none"] == 819
    for name in meta["labels"]:  # stratified: every label in both splits, at about the val fraction
        assert 0.06 < meta["label_counts"]["val"][name] / totals[name] < 0.14
    report = capsys.readouterr().out
    assert "none       819     741     78" in report and "wrote " in report


def test_each_haiku_keeps_its_season(tmp_path, corpus):
    labelled.prepare(out_dir=tmp_path, tokenizer="char")
    seasons = (REPO / "prepare" / "haiku_seasons.txt").read_text().split()
    expected = dict(zip(corpus, seasons))
    for split in ("train", "val"):
        texts, names = texts_and_labels(tmp_path, split)
        assert all(expected[t] == n for t, n in zip(texts, names))


def test_csv_ag_news_and_json_lines(tmp_path):
    (tmp_path / "a.csv").write_text('id,Sentence,Class\n1,"the old pond\na frog",wet\n2,snow falls,cold\n'
                                    "3,rain again,wet\n4,frost,cold\n5,  ,wet\n6,no label,\n")  # fmt: skip
    (tmp_path / "b.jsonl").write_text('{"body": "hot sand", "stars": 1}\n{"body": "ice", "stars": 0}\n'
                                      '{"body": "a wave", "stars": 1}\n{"body": "sleet", "stars": 0}\n')  # fmt: skip
    meta = labelled.prepare([tmp_path / "a.csv"], tmp_path / "out", "char", 0.3)
    assert meta["labels"] == ["cold", "wet"] and meta["sources"][0]["columns"] == "text 'Sentence', label 'Class'"
    assert meta["sources"][0]["dropped"] == {"empty text": 1, "no label": 1}
    texts, names = texts_and_labels(tmp_path / "out", "train")
    val_texts, val_names = texts_and_labels(tmp_path / "out", "val")
    assert dict(zip(texts + val_texts, names + val_names)) == {
        "the old pond\na frog": "wet", "snow falls": "cold", "rain again": "wet", "frost": "cold"}  # fmt: skip
    assert set(names) == set(val_names) == {"cold", "wet"}
    meta = labelled.prepare([tmp_path / "b.jsonl"], tmp_path / "out", "char", 0.3, "body", "stars", ["cold", "hot"])
    texts, names = texts_and_labels(tmp_path / "out", "train")
    val_texts, val_names = texts_and_labels(tmp_path / "out", "val")
    assert meta["labels"] == ["cold", "hot"]  # numbers count from 0: 0 is the first name
    assert dict(zip(texts + val_texts, names + val_names)) == {"hot sand": "hot", "ice": "cold", "a wave": "hot",
                                                               "sleet": "cold"}  # fmt: skip
    ag = "Class Index,Title,Description\n" + "".join(f'{1 + i % 4},Title {i},"Text, {i}"\n' for i in range(12))
    (tmp_path / "ag.csv").write_text(ag)
    names = ["World", "Sports", "Business", "Sci/Tech"]
    meta = labelled.prepare([tmp_path / "ag.csv"], tmp_path / "ag", "char", 0.3, label_names=names)
    assert meta["labels"] == names and meta["sources"][0]["columns"].startswith("AG News")
    texts, found = texts_and_labels(tmp_path / "ag", "train")
    assert dict(zip(texts, found))["Title 4\nText, 4"] == "World"  # class index 1 is the first name
    assert dict(zip(texts, found))["Title 1\nText, 1"] == "Sports"


def test_read_texts_to_label():
    path = REPO / "prepare" / "haiku_corpus.txt"
    file = texts.read_labelled(path, need_labels=False)  # blocks between blank lines
    assert len(file.texts) == 2960 and file.labels[0] is None
    assert texts.clean_text("  old   pond \n\n a frog\t leaps ") == "old pond\na frog leaps"


@pytest.mark.parametrize(
    "files, args, words",
    [
        ({}, ["--input", "{tmp}/missing.csv"], ["missing.csv: no such file"]),
        ({"x.xlsx": "PK"}, ["--input", "{tmp}/x.xlsx"], ["unknown format '.xlsx'"]),
        ({"x.csv": "words,tag\na,b\n"}, ["--input", "{tmp}/x.csv"], ["no text column", "found words, tag"]),
        ({"x.csv": "text,tag\na,b\n"}, ["--input", "{tmp}/x.csv"], ["no label column", "--label_column"]),
        ({"x.csv": "text,tag\na,b\n"}, ["--input", "{tmp}/x.csv", "--label_column", "kind"], ["no label column 'k"]),
        ({"x.csv": "text,label\na,p\nb,p\nc,p\n"}, ["--input", "{tmp}/x.csv"], ["x.csv: a single label ('p')"]),
        ({"x.csv": "text,label\na,p\nb,p\nc,q\n"}, ["--input", "{tmp}/x.csv"], ["label 'q' has 1 text in", "2"]),
        ({"x.jsonl": '{"text": "a", "label": 7}\n'}, ["--input", "{tmp}/x.jsonl", "--label_names", "p,q"],
         ["label '7' is neither one of --label_names (p, q) nor a number from 0 to 1"]),
        ({"x.csv": "text,label\na,p\n"}, ["--input", "{tmp}/x.csv", "--label_names", "p,p"], ["must be distinct"]),
        ({"x.jsonl": "{nope\n"}, ["--input", "{tmp}/x.jsonl"], ["x.jsonl: no line is valid JSON"]),
        ({"x.txt": "a\n\nb\n"}, ["--input", "{tmp}/x.txt"], ["x.txt: a .txt file has no labels"]),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, files, args, words):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out"
    one_line_error([a.format(tmp=tmp_path) for a in args] + ["--tokenizer", "char", "--out_dir", str(out)], *words)
    assert not out.exists()


def test_a_season_file_out_of_step_with_the_corpus(tmp_path, monkeypatch):
    short = tmp_path / "seasons.txt"
    short.write_text("spring\n" * 10)
    monkeypatch.setattr(labelled, "SEASONS_PATH", short)
    one_line_error(["--out_dir", str(tmp_path / "out")], "10 labels for the 2,960 haiku", "one per haiku")


def test_read_split_checks_the_labels_agree(tmp_path):
    labelled.prepare(out_dir=tmp_path, tokenizer="char")
    labels.write_labels(tmp_path, "val", [0, 1, 2])
    with pytest.raises(ValueError, match=r"val.bin holds 279 texts but val_labels.bin 3 labels; rerun"):
        labels.read_split(tmp_path, "val", 0)
    (tmp_path / "val_labels.bin").unlink()
    with pytest.raises(FileNotFoundError, match="not a labelled dataset"):
        labels.read_split(tmp_path, "val", 0)
    assert np.fromfile(tmp_path / "train_labels.bin", dtype=np.uint16).max() == 4


def test_labelled_files_are_read_as_haiku_files_are(tmp_path):
    """One reader for both: a line that is not UTF-8 is cp1252, a broken JSON line is dropped, Parquet is a format."""
    (tmp_path / "x.csv").write_bytes(b"text,label\ncaf\xe9 au lait,p\nsnow,q\n")
    file = texts.read_labelled(tmp_path / "x.csv")
    assert file.texts == ["café au lait", "snow"] and file.info["cp1252_lines"] == 1
    (tmp_path / "x.jsonl").write_text('{"text": "a", "label": "p"}\n{broken\n{"text": "b", "label": "q"}\n')
    assert texts.read_labelled(tmp_path / "x.jsonl").texts == ["a", "b"]
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"sentence": ["old pond", "a frog"], "class": ["p", "q"]}), tmp_path / "x.parquet")
    file = texts.read_labelled(tmp_path / "x.parquet")
    assert file.texts == ["old pond", "a frog"] and file.labels == ["p", "q"]
