import io
import json
import os
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from haikugpt import texts
from haikugpt.tokenizer import CharTokenizer, gpt2_tokenizer, load_tokenizer, train_bpe
from prepare import common, haiku, openwebtext, text

ROOT = Path(__file__).resolve().parent.parent


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A prepare script run as a user would, from another working directory; GPT-2's BPE files are never reachable
    (an empty tiktoken cache and a proxy on a closed local port), so the test is the same with or without network."""
    env = os.environ | {"TIKTOKEN_CACHE_DIR": str(cwd / "empty_cache"), "HTTPS_PROXY": "http://127.0.0.1:9"}
    cmd = [sys.executable, str(ROOT / "prepare" / script), *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def decoded(out_dir: Path, split: str, encoding=None) -> str:
    """out_dir/<split>.bin decoded with the tokenizer its meta.json names (end-of-text as "<|endoftext|>")."""
    tok = load_tokenizer(json.loads((out_dir / "meta.json").read_text()), encoding)
    return tok.decode(np.fromfile(out_dir / f"{split}.bin", dtype=np.uint16).tolist())


def documents(out_dir: Path, split: str, encoding=None) -> list[str]:
    """The documents of a split whose every document ends with end-of-text."""
    text = decoded(out_dir, split, encoding)
    assert text.endswith("<|endoftext|>")
    return text.split("<|endoftext|>")[:-1]


def assert_one_line_error(exit_info, *words: str) -> None:
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    for word in words:
        assert word in message, message


# --- prepare/common.py ---


def test_decode_bytes_falls_back_per_line():
    assert texts.decode_bytes("\ufeffcafé\n".encode()) == ("café\n", 0)
    data = "naïve\n".encode() + b"caf\xe9 \x93quiet\x94\n" + b"bad \x81 byte"
    assert texts.decode_bytes(data) == ("naïve\ncafé “quiet”\nbad \ufffd byte", 2)


def test_read_pieces_and_bpe_match_the_whole(tmp_path, monkeypatch, tiny_encoding):
    monkeypatch.setattr(common, "BATCH_BYTES", 50)
    body = "the frog leaps\n\n  into the pond   \nsplash! 水の音 naïve 🐸\n" * 20
    for name, content in [("lines.txt", body), ("one_line.txt", "水の音 naïve 🐸 no newline" * 9)]:
        (tmp_path / name).write_text(content)
        pieces = list(common.read_pieces(tmp_path / name))
        assert len(pieces) > 3 and "".join(pieces) == content
    path = tmp_path / "lines.txt"
    assert "".join(common.read_pieces(path, 100, 300)) == path.read_bytes()[100:300].decode()
    tok = gpt2_tokenizer(tiny_encoding())  # cut between two non-space characters: the same tokens as the whole
    pieces = list(common.read_pieces(path))
    assert np.concatenate([tok.encode_array(p) for p in pieces]).tolist() == tok.encode_array(body).tolist()


def test_split_hash_is_stable():
    assert texts.split_hash("oldpondfrogleapsin") == pytest.approx(0.1550738, abs=1e-7)
    assert 0 <= texts.split_hash("") < 1


def test_encode_pieces_guards_uint16(tiny_encoding):
    tok = gpt2_tokenizer(tiny_encoding(eot_id=70000))
    assert common.encode_pieces([("the", False)], tok).tolist() == [257]
    with pytest.raises(ValueError, match="token id 70000 does not fit in uint16"):
        common.encode_pieces([("the", True)], tok)


def test_failed_write_leaves_previous_dataset_whole(tmp_path, tiny_encoding):
    char = CharTokenizer.from_texts(["abc"])
    common.write_dataset(tmp_path, {"train": [("abc", True)], "val": [("cab", True)]}, char, {"dataset": "x"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    bad = gpt2_tokenizer(tiny_encoding(eot_id=70000))
    bad.vocab_size = 300  # hides the overflow from the up-front check, so the writer's own guard must catch it
    splits = {"train": [("the", True)] * 3, "val": [("the", True)]}
    with pytest.raises(ValueError, match="uint16"):
        common.write_dataset(tmp_path, splits, bad, {"dataset": "x"}, workers=2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# --- prepare/haiku.py ---


def test_haiku_script_on_the_corpus(tmp_path):
    out = tmp_path / "haiku_char"
    run = run_script("haiku.py", "--tokenizer", "char", "--out_dir", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert re.search(r"kept [\d,]+, of which [\d.]+% are 5-7-5", run.stdout)
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["dataset"], meta["tokenizer"], meta["eot_id"]) == ("haiku", "char", 0)
    assert meta["vocab_size"] == len(meta["chars"]) < 100
    assert meta["sources"][0]["path"] == "prepare/haiku_corpus.txt"
    train, val = documents(out, "train"), documents(out, "val")
    assert len(train) == meta["counts"]["train_haiku"] and len(val) == meta["counts"]["val_haiku"] >= 1
    assert not set(train) & set(val)
    blocks = [b for b in haiku.CORPUS_PATH.read_text().split("\n\n") if b.strip()]
    assert {haiku.normalise(b)[0] for b in blocks} == set(train + val)


def test_haiku_script_names_a_missing_input_before_it_needs_gpt2s_files(tmp_path):
    run = run_script("haiku.py", "--input", "missing.txt", "--out_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode != 0 and run.stderr == "error: missing.txt: no such file\n"


def test_haiku_script_offline_gpt2_is_one_clear_error(tmp_path):
    run = run_script("haiku.py", "--out_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: tiktoken could not load GPT-2's BPE files")
    assert "TIKTOKEN_CACHE_DIR" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "train.bin").exists()


def write_messy_sources(folder: Path) -> list[Path]:
    """Small files in each layout the real haiku collections use, with their usual faults."""
    files = {
        "kaggle.csv": ",0,1,2,source,0_syllables\n"
        "0,fishing boats,colors of,the rainbow,tempslibres,4\n"
        "1,  snowy   morn ,pouring another cup,of black coffee,twaggies,3\n"
        "2,,,,twaggies,0\n"
        "3,Fishing boats!,Colors of,the rainbow...,sballas,4\n",
        "statworx.csv": "text,keywords,gruen_score\n"
        "delicate savage / you'll never hold the cinder / but still you will burn,savage,0.6\n"
        "a splash of color / in the old abandoned shed / a single red rose,rose,0.7\n",
        "quoted.csv": 'id,Haiku\n1,"an old silent pond\na frog jumps into the pond\nsplash! silence again"\n'
        '2,"one\ntwo\nthree\nfour\nfive\nsix"\n3,12345\n4,' + "x" * 301 + "\n",
        "no_header.tsv": "7\tcold wind in the pines\tthe kettle hums on the stove\tgrandmother is home\tx\n"
        "8\tlate summer evening\tfireflies blink over grass\tthe porch light is off\tx\n",
        "lines.jsonl": '{"text": "cherry blossoms fall\\non the empty wooden bench\\nno one sits today"}\n'
        '{broken json\n{"text": 42}\n{"text": null}\n',
        "list.json": '[{"poem": "moonlit parking lot / a shopping cart rolls alone / into the dark"}]',
    }
    paths = []
    for name, content in files.items():
        (folder / name).write_text(content)
        paths.append(folder / name)
    latin1 = folder / "latin1.txt"  # Windows-1252 bytes, and one byte it does not define
    latin1.write_bytes(
        b"caf\xe9 at night\nthe waiter sweeps\nleaves into the dark\n\n\x93quiet\x94 moon\n\nbad \x81 byte\nx\n"
    )
    return [*paths, latin1]


def test_haiku_reads_messy_sources(tmp_path, capsys, tiny_encoding):
    meta = haiku.prepare(write_messy_sources(tmp_path), tmp_path / "out", "gpt2", 0.3, encoding=tiny_encoding())
    counts = meta["counts"]
    assert counts["dropped"] == {
        "empty": 2,  # a Kaggle row of empty cells, a JSON null
        "not text": 2,  # 12345, a JSON number
        "more than 5 lines": 1,
        "longer than 300 characters": 1,
        "unreadable": 1,  # a broken JSON line
        "undecodable": 1,  # a byte cp1252 does not define
    }
    assert counts["read"] == counts["kept"] + sum(counts["dropped"].values()) + counts["duplicates"]
    assert counts["duplicates"] == 1  # "Fishing boats! / Colors of / the rainbow..." is "fishing boats ..."
    haiku_kept = documents(tmp_path / "out", "train", tiny_encoding()) + documents(
        tmp_path / "out", "val", tiny_encoding()
    )
    assert len(haiku_kept) == counts["kept"] == counts["train_haiku"] + counts["val_haiku"]
    for expected in (
        "snowy morn\npouring another cup\nof black coffee",
        "delicate savage\nyou'll never hold the cinder\nbut still you will burn",
        "an old silent pond\na frog jumps into the pond\nsplash! silence again",
        "cold wind in the pines\nthe kettle hums on the stove\ngrandmother is home",
        "moonlit parking lot\na shopping cart rolls alone\ninto the dark",
        "café at night\nthe waiter sweeps\nleaves into the dark",
        "“quiet” moon",
    ):
        assert expected in haiku_kept
    sources = {Path(s["path"]).name: s for s in meta["sources"]}
    assert sources["no_header.tsv"]["fields"] == "column(s) 1, 2, 3 by content, no header row"
    assert sources["latin1.txt"]["cp1252_lines"] == 3
    report = capsys.readouterr().out
    assert "duplicates 1" in report and "1 undecodable" in report and "1 unreadable" in report


def test_split_texts_is_stable_as_the_corpus_grows():
    poems = [f"poem number {i}\nsecond line\nthird line" for i in range(200)]
    train, val = texts.split_texts(poems, 0.1)
    assert 10 <= len(val) <= 30 and not set(train) & set(val)
    train2, val2 = texts.split_texts(poems + [f"new poem {i}\nline\nline" for i in range(100)], 0.1)
    assert set(val) <= set(val2) and set(train) <= set(train2)
    assert texts.split_texts(poems[:2], 0.01)[1]  # at least one val haiku
    with pytest.raises(ValueError, match="at least 2"):
        texts.split_texts(poems[:1], 0.1)


def test_haiku_bpe_tokenizer_is_learnt_from_the_training_split(tmp_path):
    meta = haiku.prepare(write_messy_sources(tmp_path), tmp_path / "out", "bpe", 0.3, vocab_size=300)
    assert meta["tokenizer"] == "bpe" and meta["vocab_size"] == 300 and len(meta["bpe"]) == 299
    train, val = documents(tmp_path / "out", "train"), documents(tmp_path / "out", "val")
    assert train and val and "cold wind in the pines\nthe kettle hums on the stove\ngrandmother is home" in train + val
    assert load_tokenizer(meta).encoding._mergeable_ranks == train_bpe(train, 300)._mergeable_ranks
    with pytest.raises(SystemExit) as e:
        haiku.main(["--tokenizer", "bpe", "--vocab_size", "100", "--out_dir", str(tmp_path / "small")])
    assert_one_line_error(e, "--vocab_size must be between 257")


def test_haiku_char_tokenizer(tmp_path):
    meta = haiku.prepare(write_messy_sources(tmp_path), tmp_path / "out", "char")
    kept = documents(tmp_path / "out", "train") + documents(tmp_path / "out", "val")
    assert meta["chars"][1:] == sorted(set("".join(kept)))  # the whole dataset's characters, "\n" among them
    assert meta["vocab_size"] == len(meta["chars"]) and "café at night\nthe waiter sweeps\nleaves into the dark" in kept
    with open(tmp_path / "out" / "meta.pkl", "rb") as f:  # nanoGPT's sample.py reads the char table from meta.pkl
        pkl = pickle.load(f)
    assert pkl["vocab_size"] == meta["vocab_size"]
    assert [pkl["itos"][i] for i in range(pkl["vocab_size"])] == meta["chars"]
    assert all(pkl["stoi"][c] == i for i, c in enumerate(meta["chars"]))


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("missing.txt", None, ["missing.txt: no such file"]),
        ("empty.txt", "", ["empty.txt is empty"]),
        ("book.xlsx", "PK\x03\x04", ["unknown format '.xlsx'"]),
        ("scores.csv", "name,score\nann,3\nbob,4\n", ["no column holds haiku", "found name, score"]),
        ("broken.jsonl", "{nope\n", ["no line is valid JSON"]),
        ("one.txt", "just one haiku\nhere\n", ["1 haiku left", "at least 2"]),
    ],
)
def test_haiku_bad_input_is_one_clear_error(tmp_path, name, content, words):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(SystemExit) as e:
        haiku.main(["--input", str(tmp_path / name), "--tokenizer", "char", "--out_dir", str(tmp_path / "out")])
    assert_one_line_error(e, *words)
    assert not (tmp_path / "out" / "train.bin").exists()


def test_haiku_parquet_needs_pyarrow(tmp_path, monkeypatch):
    (tmp_path / "h.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SystemExit) as e:
        haiku.main(["--input", str(tmp_path / "h.parquet"), "--tokenizer", "char", "--out_dir", str(tmp_path)])
    assert_one_line_error(e, "pip install pyarrow")


def test_haiku_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    poems = [
        "old pond / a frog leaps in / water's sound",
        "light of the moon / moves west, flowers' shadows / creep eastward",
    ]
    pq.write_table(pa.table({"id": [1, 2], "Text": poems}), tmp_path / "h.parquet")
    meta = haiku.prepare([tmp_path / "h.parquet"], tmp_path / "out", "char")
    assert meta["counts"]["kept"] == 2 and meta["sources"][0]["fields"] == "field(s) Text"


def test_haiku_ids_that_overflow_uint16(tmp_path):
    letters = [chr(c) for c in [*range(0x3400, 0x4DC0), *range(0x4E00, 0xA000), *range(0x20000, 0x2A6E0)]]
    lines = ["".join(letters[i : i + 80]) for i in range(0, 66000, 80)]
    blocks = ["\n".join(lines[i : i + 3]) for i in range(0, len(lines), 3)]
    (tmp_path / "cjk.txt").write_text("\n\n".join(blocks))
    with pytest.raises(SystemExit) as e:
        haiku.main(["--input", str(tmp_path / "cjk.txt"), "--tokenizer", "char", "--out_dir", str(tmp_path / "out")])
    assert_one_line_error(e, "does not fit in uint16")
    assert not list((tmp_path / "out").glob("*.bin*"))


# --- prepare/text.py ---

SHAKESPEARE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 40


def test_text_script_char(tmp_path):
    (tmp_path / "input.txt").write_text(SHAKESPEARE)
    run = run_script("text.py", "--input", "input.txt", "--name", "shakespeare_char", "--tokenizer", "char",
                     "--out_dir", "out", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["dataset"] == "shakespeare_char" and meta["vocab_size"] == len(set(SHAKESPEARE)) + 1
    train, val = decoded(tmp_path / "out", "train"), decoded(tmp_path / "out", "val")
    assert train + val == SHAKESPEARE + "<|endoftext|>"  # one document, its last tenth held out, cut at a line start
    assert train.endswith("\n") and len(val) == pytest.approx(len(SHAKESPEARE) * 0.1, abs=60)


def test_text_streams_a_folder_in_small_batches(tmp_path, monkeypatch, tiny_encoding):
    books = tmp_path / "books"
    (books / "more").mkdir(parents=True)
    (books / "a.txt").write_text(SHAKESPEARE)
    (books / "more" / "b.txt").write_text("Second book.\nIt has two lines.\n" * 30)
    (books / "notes.md").write_text("not taken")
    whole = text.prepare([books], out_dir=tmp_path / "whole", encoding=tiny_encoding())
    monkeypatch.setattr(common, "BATCH_BYTES", 64)  # hundreds of batches through the bounded queue
    small = text.prepare([books], out_dir=tmp_path / "small", workers=2, encoding=tiny_encoding())
    assert whole["files"] == 2 and whole["tokens"] == small["tokens"]
    for split in ("train", "val"):
        assert (tmp_path / "whole" / f"{split}.bin").read_bytes() == (tmp_path / "small" / f"{split}.bin").read_bytes()
    both = decoded(tmp_path / "small", "train", tiny_encoding()) + decoded(tmp_path / "small", "val", tiny_encoding())
    assert both == SHAKESPEARE + "<|endoftext|>" + (books / "more" / "b.txt").read_text() + "<|endoftext|>"


def test_text_bad_input(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    for inputs, words in [(["nowhere.txt"], ["no such file or folder"]), (["empty.txt"], ["no text"])]:
        with pytest.raises(SystemExit) as e:
            text.main([*(f"--input={tmp_path / i}" for i in inputs), f"--out_dir={tmp_path / 'out'}"])
        assert_one_line_error(e, *words)


# --- prepare/openwebtext.py ---


class FakeDataset:
    """What prepare/openwebtext.py uses of a Hugging Face Dataset, over a list of documents."""

    column_names = ["text", "url"]

    def __init__(self, docs: list[str]):
        self.docs = docs

    def iter(self, batch_size: int):
        for i in range(0, len(self.docs), batch_size):
            yield {"text": self.docs[i : i + batch_size], "url": ["x"] * len(self.docs[i : i + batch_size])}


def test_openwebtext_on_a_local_dataset(tmp_path, monkeypatch, tiny_encoding):
    docs = [f"Document {i}: the web page says hello {i * i}.\nThe end." for i in range(3000)]
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, config, split, num_proc: FakeDataset(docs)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    meta = openwebtext.prepare(out_dir=tmp_path, val_fraction=0.01, workers=2, encoding=tiny_encoding())
    assert meta["dataset"] == "openwebtext" and meta["tokenizer"] == "gpt2"
    val = documents(tmp_path, "val", tiny_encoding())
    assert val == [d for d in docs if texts.split_hash(d) < 0.01] and 10 <= len(val) <= 60
    assert documents(tmp_path, "train", tiny_encoding()) == [d for d in docs if d not in val]


def test_openwebtext_needs_datasets(tmp_path, monkeypatch, tiny_encoding):
    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.setattr(openwebtext, "gpt2_tokenizer", lambda encoding=None: gpt2_tokenizer(tiny_encoding()))
    with pytest.raises(SystemExit) as e:
        openwebtext.main([f"--out_dir={tmp_path}"])
    assert_one_line_error(e, "pip install datasets")


def test_openwebtext_script_checks_gpt2_before_downloading(tmp_path):
    run = run_script("openwebtext.py", "--out_dir", str(tmp_path / "out"), cwd=tmp_path)
    assert run.returncode != 0 and run.stderr.startswith("error: tiktoken could not load GPT-2's BPE files")


def test_a_full_disk_is_one_line_and_keeps_the_previous_bins(tmp_path, monkeypatch):
    char = CharTokenizer.from_texts(["abc"])
    common.write_dataset(tmp_path, {"train": [("abc", True)], "val": [("cab", True)]}, char, {"dataset": "x"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    class FullDisk(io.BytesIO):
        def __init__(self, path, mode):
            super().__init__()

        def write(self, data):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(common, "open", FullDisk, raising=False)
    with pytest.raises(OSError) as e:
        common.write_dataset(tmp_path, {"train": [("abc", True)], "val": [("cab", True)]}, char, {"dataset": "x"}, 1)
    assert str(e.value).startswith(f"no space left on the disk writing {tmp_path}: ")
    assert str(e.value).endswith(" is free; the previous train.bin and val.bin are intact")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
