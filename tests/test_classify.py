"""classify.py end to end on CPU (tiny models on the embedded haiku labelled by season, in a 400-token learnt BPE),
haikugpt/labels.py's pieces, and the exported GPT2ForSequenceClassification folder in transformers."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import classify
import export
import sample
from haikugpt import labels
from haikugpt.checkpoint import build_checkpoint, load_checkpoint, save_checkpoint
from haikugpt.labels import read_split
from haikugpt.tokenizer import load_tokenizer
from model import GPT, GPTConfig
from prepare import labelled

REPO = Path(__file__).resolve().parent.parent
SEASONS = (REPO / "prepare" / "haiku_seasons.txt").read_text().split()


def tiny_args(data: Path, out: Path, **overrides) -> list[str]:
    args = dict(
        dataset=data, out_dir=out, n_layer=2, n_head=2, n_embd=16, block_size=64, batch_size=16,
        gradient_accumulation_steps=1, max_iters=12, eval_interval=4, eval_iters=2, log_interval=1,
        learning_rate=1e-2, warmup_iters=2, lr_decay_iters=30, min_lr=1e-3, dtype="float32", compile=False,
    )  # fmt: skip
    args.update(overrides)
    return [f"--{k}={v}" for k, v in args.items() if v is not None]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def losses(out: Path) -> dict[int, float]:
    return {r["iter"]: r["loss"] for r in metrics(out) if "loss" in r}


def fails(argv: list[str], match: str, out: Path | None = None) -> None:
    """classify.py exits with one line matching match, and leaves out (if given) as it was."""
    before = sorted(out.rglob("*")) if out is not None and out.exists() else None
    with pytest.raises(SystemExit) as e:
        classify.main(argv)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    assert re.search(match, message), message
    if out is not None:
        assert (sorted(out.rglob("*")) if out.exists() else None) == before


@pytest.fixture(scope="module")
def seasons(tmp_path_factory) -> Path:
    """The embedded haiku labelled by season, in a 400-token BPE learnt from them."""
    folder = tmp_path_factory.mktemp("seasons") / "haiku_seasons"
    labelled.prepare(out_dir=folder, tokenizer="bpe", vocab_size=400)
    return folder


@pytest.fixture(scope="module")
def run_dir(seasons, tmp_path_factory) -> Path:
    """out_dir of a tiny classifier trained on the seasons for 40 steps."""
    out = tmp_path_factory.mktemp("run") / "out"
    classify.main(tiny_args(seasons, out, max_iters=40, eval_interval=10))
    return out


def test_learns_which_word_a_text_holds(tmp_path):
    """Texts of random words labelled by which of two words they hold: a tiny model learns it in a few dozen steps."""
    rng = np.random.default_rng(0)
    words = ["old", "pond", "frog", "leaps", "water", "sound", "moon", "night", "wind", "leaf", "stone", "rain"]
    rows = [("text", "label")]
    for i in range(400):
        label = ("snow", "heat")[i % 2]
        text = [*rng.choice(words, 6)]
        text.insert(int(rng.integers(0, 7)), label)
        rows.append((" ".join(text), "winter" if label == "snow" else "summer"))
    with open(tmp_path / "words.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    labelled.prepare([tmp_path / "words.csv"], tmp_path / "words", tokenizer="char")
    out = tmp_path / "out"
    args = dict(block_size=48, max_iters=100, eval_interval=100, lr_decay_iters=100)
    classify.main(tiny_args(tmp_path / "words", out, **args))
    by_step = losses(out)
    assert np.mean([by_step[i] for i in range(95, 100)]) < 0.3 < 0.6 < np.mean([by_step[i] for i in range(5)])
    report = json.loads((out / "eval.json").read_text())
    assert report["accuracy"] > 0.7 and report["majority_baseline"] == pytest.approx(0.5, abs=0.1)


def test_trains_and_keeps_the_best_by_macro_f1(seasons, run_dir):
    assert sorted(losses(run_dir)) == list(range(40))
    evals = {r["iter"]: r["val/macro_f1"] for r in metrics(run_dir) if "val/macro_f1" in r}
    assert sorted(evals) == [0, 10, 20, 30, 40]
    best_step = max((s for s in evals if s > 0), key=lambda s: (evals[s], -s))  # the first of equals
    best = load_checkpoint(run_dir / "best.pt")
    assert best["iter_num"] == best_step and labels.is_classifier(best)
    report = json.loads((run_dir / "eval.json").read_text())
    assert {"accuracy", "macro_f1", "majority_baseline", "per_class", "confusion"} <= set(report)
    assert report["step"] == best_step and report["macro_f1"] == pytest.approx(evals[best_step], abs=1e-9)
    assert report["majority_label"] == "none" and report["majority_baseline"] == pytest.approx(78 / 279)
    assert sum(sum(row.values()) for row in report["confusion"].values()) == report["texts"] == 279
    assert set(report["per_class"]) == {"spring", "summer", "autumn", "winter", "none"}
    assert report["per_class"]["none"]["support"] == 78


def test_the_log_shows_texts_per_iteration_and_a_table_per_eval(seasons, tmp_path, capsys):
    classify.main(tiny_args(seasons, tmp_path, max_iters=4, eval_interval=4))
    log = capsys.readouterr().out
    assert "texts per iteration: 16 = 1 ranks x 1 micro-steps x 16, of up to 64 tokens" in log
    assert log.count("label  precision recall     f1 support | predicted as: spring summer") == 2
    assert re.search(r"accuracy 0\.\d{3} of 279 texts \(majority baseline 0\.280: always none\), macro F1", log)
    assert re.search(r"step 4: train loss [\d.]+, train accuracy [\d.]+, val loss [\d.]+, val accuracy [\d.]+, "
                     r"val macro_f1 [\d.]+", log)  # fmt: skip
    assert f"wrote {tmp_path / 'eval.json'}" in log


def test_resume_is_exact(seasons, tmp_path):
    """6 steps, then 6 more resumed with nothing but init_from, out_dir and max_iters, give the losses of 12 in one
    go (dropout on)."""
    classify.main(tiny_args(seasons, tmp_path / "one", dropout=0.1))
    classify.main(tiny_args(seasons, tmp_path / "two", dropout=0.1, max_iters=6))
    classify.main(["--init_from=resume", f"--out_dir={tmp_path / 'two'}", "--max_iters=12"])
    assert losses(tmp_path / "two") == losses(tmp_path / "one")


def test_starts_from_a_language_model_in_the_same_vocabulary(seasons, tmp_path, train_checkpoint, corpus, write_bins):
    lm = train_checkpoint(seasons, tmp_path / "lm", steps=20)  # a train.py checkpoint on the same tokens
    no_shape = dict(n_layer=None, n_head=None, n_embd=None, block_size=None, init_from=lm, max_iters=2)
    classify.main(tiny_args(seasons, tmp_path / "out", **no_shape))
    ckpt = load_checkpoint(tmp_path / "out")
    assert ckpt["model_args"]["n_embd"] == 32 and ckpt["model_args"]["block_size"] == 64  # the LM's shape
    assert ckpt["model_args"]["vocab_size"] == 448  # the LM's: 400 rounded up, so the padding id 400 has its row
    key = "transformer.h.0.mlp.c_fc.weight"
    moved = (ckpt["model"][f"gpt.{key}"] - load_checkpoint(lm)["model"][key]).abs().max().item()
    assert 0 < moved < 0.05  # two AdamW steps of about the learning rate each, from the LM's weights
    fails(tiny_args(seasons, tmp_path / "x", **no_shape | {"n_layer": 3}), r"n_layer=3 differs from init_from=.*=2")
    other = train_checkpoint(write_bins(tmp_path / "char", corpus[:100]), tmp_path / "char_lm", steps=1)
    fails(tiny_args(seasons, tmp_path / "x", **{**no_shape, "init_from": other}),
          r"was trained on a char vocabulary of \d+, not the dataset's bpe vocabulary of 400")  # fmt: skip


def test_starts_from_a_local_gpt2_folder(tmp_path, hf_gpt2, tiny_encoding, seasons):
    folder = tmp_path / "hf"
    hf_gpt2(vocab_size=259, n_positions=64, scale=0).save_pretrained(folder)  # no spare id, as GPT-2's 50,257
    data = tmp_path / "gpt2_seasons"
    labelled.prepare(out_dir=data, tokenizer="gpt2", encoding=tiny_encoding())
    no_shape = dict(n_layer=None, n_head=None, n_embd=None, init_from=folder, max_iters=2)
    fails(tiny_args(seasons, tmp_path / "out", **no_shape), r"reads GPT-2 BPE tokens but the dataset's bpe vocabulary")
    classify.main(tiny_args(data, tmp_path / "out", **no_shape))
    ckpt = load_checkpoint(tmp_path / "out")
    assert ckpt["model_args"]["vocab_size"] == 320  # grown to hold the padding id 259
    assert not ckpt["model"]["gpt.transformer.wte.weight"][259:].any()


def test_lora_trains_the_adapters_and_the_head_and_exports_merged(tmp_path, hf_gpt2, tiny_encoding, monkeypatch):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "hf"
    hf_gpt2(vocab_size=259, n_positions=64, scale=0.2).save_pretrained(folder)
    data = tmp_path / "gpt2_seasons"
    labelled.prepare(out_dir=data, tokenizer="gpt2", encoding=tiny_encoding())
    no_shape = dict(n_layer=None, n_head=None, n_embd=None, init_from=folder, max_iters=3, lora_rank=2)
    classify.main(tiny_args(data, tmp_path / "out", **no_shape))
    ckpt = load_checkpoint(tmp_path / "out")
    base = transformers.GPT2ForSequenceClassification.from_pretrained(folder).state_dict()
    frozen = ckpt["model"]["gpt.transformer.h.0.mlp.c_fc.weight"]
    assert torch.equal(frozen.t(), base["transformer.h.0.mlp.c_fc.weight"])  # the base weights never moved
    assert ckpt["model"]["gpt.transformer.h.0.mlp.c_fc.lora_B"].any()  # the adapters did
    monkeypatch.setattr("haikugpt.tokenizer.tiktoken.get_encoding", lambda name: tiny_encoding())  # GPT-2's, offline
    export.main([f"--out_dir={tmp_path / 'out'}", f"--hf_dir={tmp_path / 'export'}"])
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "export").eval()
    ours = labels.classifier_from_checkpoint(ckpt).eval()
    texts, _ = read_split(data, "val", json.loads((data / "meta.json").read_text())["eot_id"])
    x = labels.pad_batch(labels.fit_block(texts[:20], 64)[0], ours.pad_id)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x)[0], rtol=0, atol=1e-5)


def test_eval_only_on_a_labelled_file_and_predict(run_dir, seasons, tmp_path, capsys):
    val_texts, val_labels = val_haiku(seasons)
    with open(tmp_path / "mine.csv", "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *zip(val_texts, val_labels)])
    capsys.readouterr()
    classify.main([f"--out_dir={run_dir}", "--eval_only=True", f"--input={tmp_path / 'mine.csv'}"])
    assert "predicted as: spring summer autumn winter" in capsys.readouterr().out
    report = json.loads((run_dir / "eval_mine.json").read_text())
    assert report["accuracy"] == json.loads((run_dir / "eval.json").read_text())["accuracy"]  # the val split itself
    (tmp_path / "new.txt").write_text("\n\n".join(val_texts[:3]) + "\n")
    classify.main([f"--out_dir={run_dir}", f"--predict={tmp_path / 'new.txt'}"])
    with open(run_dir / "new.predictions.csv", newline="") as f:
        predictions = list(csv.DictReader(f))
    assert [p["text"] for p in predictions] == val_texts[:3]
    assert all(p["label"] in SEASONS and 0.2 <= float(p["probability"]) <= 1 for p in predictions)


def val_haiku(folder: Path) -> tuple[list[str], list[str]]:
    """The val split's texts and label names, decoded."""
    meta = json.loads((folder / "meta.json").read_text())
    ids, label_ids = read_split(folder, "val", meta["eot_id"])
    tok = load_tokenizer(meta)
    return [tok.decode(t[:-1].tolist()) for t in ids], [meta["labels"][i] for i in label_ids]


def test_bad_input_is_one_clear_line(run_dir, seasons, tmp_path, train_checkpoint, corpus, write_bins):
    (tmp_path / "new.txt").write_text("old pond\n")
    (tmp_path / "monsoon.csv").write_text("text,label\nold pond,spring\nrain on rain,monsoon\n")
    (tmp_path / "empty").mkdir()
    chars = write_bins(tmp_path / "haiku_char", corpus[:100])
    lm = train_checkpoint(seasons, tmp_path / "lm", steps=1)
    fails(tiny_args(seasons, tmp_path, max_iter=3), "did you mean 'max_iters'")
    fails([f"--out_dir={tmp_path / 'empty'}", f"--predict={tmp_path / 'new.txt'}"],
          r"no classifier checkpoint at .*empty/ckpt\.pt; train one with `python classify\.py")  # fmt: skip
    fails([f"--out_dir={lm}", f"--predict={tmp_path / 'new.txt'}"], r"holds a language model, not a classifier")
    resume_lm = ["--init_from=resume", f"--out_dir={lm}", f"--dataset={seasons}"]
    fails(resume_lm, r"holds a language model \(train\.py's\), not a classifier to resume", lm)
    fails([f"--out_dir={run_dir}", f"--predict={tmp_path / 'gone.txt'}"], r"--predict=.*gone\.txt: no such file")
    fails([f"--out_dir={run_dir}", "--eval_only=True", f"--input={tmp_path / 'monsoon.csv'}"],
          r"monsoon\.csv: label 'monsoon' was never seen in training \(the classifier knows spring, ")  # fmt: skip
    fails([f"--out_dir={run_dir}", f"--input={tmp_path / 'monsoon.csv'}"], r"add --eval_only=True", run_dir)
    fails(tiny_args(seasons, tmp_path / "out", init_from=tmp_path / "empty"), r"a folder with no checkpoint")
    fails(tiny_args(chars, tmp_path / "out"), r"holds no labels \(it is a language-model dataset\)")
    fails(tiny_args("no_such_data", tmp_path / "out"), r"dataset 'no_such_data' is not prepared")


def test_help_lists_every_key_with_its_comment(capsys):
    with pytest.raises(SystemExit) as e:
        classify.main(["--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and text.startswith("Fine-tune a GPT to classify texts")
    assert all(f"--{key}=" in text for key in classify.DEFAULTS)
    assert "--predict=''" in text and "label the texts of this file" in text and "  # classification" in text
    assert "--grad_clip=1.0" in text and "clip the global gradient norm" in text  # trainer's keys, their comments


def test_padding_never_changes_a_text_s_logits():
    gpt = GPT(GPTConfig(block_size=16, vocab_size=64, n_layer=2, n_head=2, n_embd=16), seed=0)
    model = labels.Classifier(gpt, n_labels=3, pad_id=50, seed=1).eval()
    texts = [np.array([5, 6, 7, 0]), np.array([9, 0]), np.array([1, 2, 3, 4, 5, 6, 0])]
    cpu = torch.device("cpu")
    alone = torch.cat([model(labels.pad_batch([t], 50))[0] for t in texts])
    batched = labels.logits_of(model, texts, 50, batch_size=2, device=cpu, ctx=torch.no_grad())
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-6)


def test_make_room_grows_the_tied_table_with_zeros():
    gpt = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=1, n_embd=8), seed=0)
    before = gpt.transformer.wte.weight.detach().clone()
    labels.make_room(gpt, pad_id=64)
    assert gpt.config.vocab_size == 128 and gpt.lm_head.weight is gpt.transformer.wte.weight
    assert torch.equal(gpt.transformer.wte.weight[:64], before) and not gpt.transformer.wte.weight[64:].any()
    assert gpt(torch.tensor([[64, 1]]))[0].shape == (1, 2, 128)


def test_score_predictions():
    report = labels.score_predictions([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c", "d"], majority=0)
    assert report["accuracy"] == pytest.approx(4 / 6) and report["majority_baseline"] == 0.5
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": 0.8, "support": 3}
    assert report["per_class"]["b"]["f1"] == 0.5 and report["per_class"]["c"]["precision"] == 0.5
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)  # "d" neither occurs nor is predicted
    assert report["confusion"]["a"] == {"a": 2, "b": 1, "c": 0, "d": 0}


def test_export_gives_transformers_the_same_logits(run_dir, seasons, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    export.main([f"--out_dir={run_dir}", f"--hf_dir={tmp_path / 'hf'}"])
    hf = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.id2label == dict(enumerate(["spring", "summer", "autumn", "winter", "none"]))
    ours = labels.classifier_from_checkpoint(load_checkpoint(run_dir, best=True)).eval()
    texts, _ = read_split(seasons, "val", json.loads((seasons / "meta.json").read_text())["eot_id"])
    x = labels.pad_batch(texts[:40], ours.pad_id)  # (40, T), padded
    with torch.no_grad():
        expected = ours(x)[0]
        torch.testing.assert_close(hf(x).logits, expected, rtol=0, atol=1e-5)
    assert torch.equal(hf(x).logits.argmax(-1), expected.argmax(-1))
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")  # its own padding gives the same ids
    haiku, _ = val_haiku(seasons)
    encoded = tok([h + "<|endoftext|>" for h in haiku[:40]], padding=True, return_tensors="pt")
    assert torch.equal(encoded["input_ids"], x)
    with pytest.raises(SystemExit) as e:  # and sample.py says what the checkpoint is
        sample.main([f"--out_dir={run_dir}"])
    assert "holds a classifier" in str(e.value.code) and "--predict" in str(e.value.code)


def test_a_char_classifier_is_not_exported(tmp_path):
    gpt = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=1, n_embd=8), seed=0)
    model = labels.Classifier(gpt, 2, pad_id=10)
    meta = {"tokenizer": "char", "vocab_size": 10, "chars": ["<|endoftext|>", *"abcdefghi"], "eot_id": 0,
            "labels": ["p", "q"]}  # fmt: skip
    save_checkpoint(build_checkpoint(model, {}, meta), tmp_path / "ckpt.pt")
    with pytest.raises(SystemExit) as e:
        export.main([f"--out_dir={tmp_path}", f"--hf_dir={tmp_path / 'hf'}"])
    assert "char-level model; only BPE checkpoints can be exported" in str(e.value.code)
    assert labels.classifier_from_checkpoint(load_checkpoint(tmp_path)).score.weight.shape == (2, 8)
