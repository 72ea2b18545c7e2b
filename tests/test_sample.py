"""sample.py: haiku that stop at end-of-text, prompts, streaming, the haiku report, --help and bad input."""

import os
import pickle
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

import sample
from haikugpt import tokenizer
from haikugpt.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from haikugpt.haiku.form import Lexicon
from haikugpt.haiku.verse import haiku_lines, haiku_report, words
from haikugpt.run import read_meta
from haikugpt.texts import dedupe_key
from model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("tiny_gpt2_bpe")


def run(capsys, *args: str) -> tuple[list[str], str]:
    """sample.py's samples (as printed, in order) and everything it printed."""
    sample.main(list(args))
    out = capsys.readouterr().out
    return out.split(f"\n{sample.SEPARATOR}\n")[:-1], out


def test_haiku_stop_at_end_of_text_and_same_seed_same_samples(char_run, capsys):
    args = (f"--out_dir={char_run}", "--num_samples=8", "--max_new_tokens=120", "--temperature=1", "--form=free")
    args += ("--dtype=float32",)  # as model.generate below runs
    samples, out = run(capsys, *args)
    assert len(samples) == 8 and "<|endoftext|>" not in out
    assert run(capsys, *args)[1] == out
    assert run(capsys, *args, "--seed=7")[1] != out

    # the same samples as model.generate with a generator seeded alike, each cut at its first end-of-text
    model = model_from_checkpoint(load_checkpoint(char_run)).eval()
    tok = tokenizer.load_tokenizer(load_checkpoint(char_run)["meta"])
    idx = torch.zeros(8, 1, dtype=torch.long)  # the end-of-text id
    rows = model.generate(
        idx, 120, temperature=1.0, top_k=200, stop_token=0, generator=torch.Generator().manual_seed(1337)
    )
    expected = [tok.decode(row[1:].tolist()).split("<|endoftext|>")[0] for row in rows]
    assert sorted(samples) == sorted(expected)
    assert sum(0 in row[1:].tolist() for row in rows) >= 2, "the test needs rows that end early"
    # each is printed as its row stops, so the shorter ones come first
    lengths = [len(tok.encode(s)) for s in samples]
    assert lengths == sorted(lengths)


def test_prompt_file_continues_the_haiku_and_long_prompts_keep_their_end(char_run, capsys, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("old pond\n")
    samples, _ = run(
        capsys,
        f"--out_dir={char_run}",
        f"--start=FILE:{prompt}",
        "--num_samples=3",
        "--max_new_tokens=30",
        "--form=free",
    )
    assert all(s.startswith("old pond\n") for s in samples)

    sample.main(
        [f"--out_dir={char_run}", "--start=" + "the pond " * 20, "--num_samples=1", "--max_new_tokens=5", "--form=free"]
    )
    captured = capsys.readouterr()
    assert captured.err.strip() == "note: the prompt is 181 tokens, longer than block_size 64: keeping its last 64"
    assert captured.out[:64] == ("the pond " * 20)[-64:]


def test_one_sample_streams_and_other_data_runs_to_max_new_tokens(bpe_run, capsys, tmp_path):
    ckpt = load_checkpoint(bpe_run)
    ckpt["meta"]["dataset"] = "shakespeare"  # not haiku: no end-of-text stop, nanoGPT's behaviour
    save_checkpoint(ckpt, tmp_path / "text.pt")
    args = (f"--out_dir={tmp_path / 'text.pt'}", "--start=the frog", "--num_samples=1", "--max_new_tokens=40")
    args += ("--dtype=float32",)  # as model.generate below runs
    samples, out = run(capsys, *args)
    model = model_from_checkpoint(ckpt).eval()
    tok = tokenizer.load_tokenizer(ckpt["meta"])
    prompt = tok.encode("the frog")
    gen = torch.Generator().manual_seed(1337)
    row = model.generate(torch.tensor([prompt]), 40, temperature=0.8, top_k=200, generator=gen)[0]
    assert samples == [tok.decode(row.tolist())] and out == f"{samples[0]}\n{sample.SEPARATOR}\n"

    # a single sample is yielded after every token, each text extending the last
    gen = torch.Generator().manual_seed(1337)
    events = list(
        sample.stream_samples(model, tok, prompt, 1, 40, live=True, temperature=0.8, top_k=200, generator=gen)
    )
    assert len(events) > 20 and events[-1] == (samples[0], True, False)  # done, at max_new_tokens
    assert not any(done for _, done, _ in events[:-1])
    assert all(later.startswith(text) for (text, *_), (later, *_) in zip(events, events[1:]))


def test_top_k_zero_turns_top_k_off(char_run, capsys):
    args = (f"--out_dir={char_run}", "--num_samples=3", "--temperature=1.5")
    unfiltered, _ = run(capsys, *args, "--top_k=0")
    assert unfiltered == run(capsys, *args, "--top_k=1000")[0]  # more than the 61 characters: no filter either
    assert unfiltered != run(capsys, *args, "--top_k=2")[0]


def test_bfloat16_on_cpu_and_out_file(char_run, capsys, tmp_path):
    out_file = tmp_path / "samples" / "haiku.txt"
    samples, out = run(
        capsys,
        f"--out_dir={char_run}",
        "--dtype=bfloat16",
        "--num_samples=2",
        "--max_new_tokens=20",
        "--form=free",
        f"--out_file={out_file}",
    )
    assert out_file.read_text() == out and len(samples) == 2


def test_haiku_report(char_run):
    corpus = sample.read_training_haiku(char_run.parent / "haiku_char")
    first = min(corpus.haiku)  # some training haiku's key; rebuild that haiku from the train split
    train = tokenizer.load_tokenizer(read_meta(char_run.parent / "haiku_char")).decode(
        np.fromfile(char_run.parent / "haiku_char" / "train.bin", dtype=np.uint16).tolist()
    )
    copy = next(h for h in train.split("<|endoftext|>") if dedupe_key(h) == first)
    samples = [
        copy.title().replace("\n", ",\n") + "!",  # a copy, whatever its case and punctuation
        "an old silent pond —\na frog jumps into the pond\nsplash silence again",
        "two lines only of\nand not more",
        f"{haiku_lines(copy)[0]}\nwinter snow\nthe snow",  # one copied line, season words, a rhyme
    ]
    lexicon = Lexicon({"an": 1, "old": 1, "silent": 2, "pond": 1, "a": 1, "frog": 1, "jumps": 1, "into": 2})
    report = haiku_report(samples, corpus, lexicon=lexicon, log_likelihood=(-30.0, 12)).splitlines()
    assert report[1] == "sample 1: 3 lines 5-7-5 copied"
    assert report[5:9] == [
        "sample 2: 3 lines 5-7-5 rhymes cut",
        "   5  an old silent pond —",
        "   7  a frog jumps into the pond",
        "   5  splash silence again",
    ]
    assert report[9:12] == ["sample 3: 2 lines", "   5  two lines only of", "   3  and not more"]
    assert report[12] == "sample 4: 3 lines rhymes winter: winter, snow"
    said = [w for s in samples for w in words(s)]
    real = sum(w in lexicon.counts for w in said)
    assert report[16:] == [
        "three lines: 3/4 (75%)",
        "5-7-5: 2/4 (50%)",
        f"real words: {real}/{len(said)} ({real / len(said):.0%}) (the CMU dictionary, the training corpus, --words)",
        f"copied from the training set: 1/4 (25%) haiku, 4/11 (36%) lines, compared with {corpus.source}",
        "with a season word: 1/4 (25%) (winter 1)",
        "with rhyming line ends: 2/4 (50%)",
        "lines ending on a function word: 1/11 (9%) (in 1 samples)",
        "with a cut (line 1 or 2 ending in a dash, colon, semicolon or ellipsis): 1/4 (25%)",
        report[24],
        "log-likelihood per token under the model: -2.500 nats (over 12 tokens)",
    ]
    assert report[24].startswith("distinct-2: ")
    assert len(corpus.docs) == len(corpus.haiku) and all(dedupe_key(d) in corpus.haiku for d in corpus.docs)
    missing = sample.read_training_haiku(char_run.parent / "gone")
    assert missing.haiku is None and missing.source == "the checkpoint's training data folder was not found"
    assert haiku_report(samples, missing).splitlines()[18] == (
        "copied from the training set: not computed (the checkpoint's training data folder was not found)"
    )
    assert haiku_report(["one line"], missing).splitlines()[1] == "sample 1: 1 line"


def test_haiku_report_flag(char_run, capsys, tmp_path):
    _, out = run(capsys, f"--out_dir={char_run}", "--haiku_report=True", "--num_samples=3", "--form=free")
    assert "haiku report" in out and "training haiku in" in out and "real words: " in out
    assert "5-7-5: " in out and "enforced" not in out
    moved = load_checkpoint(char_run)
    moved["config"]["dataset"] = str(tmp_path / "gone")
    save_checkpoint(moved, tmp_path / "ckpt.pt")
    _, out = run(capsys, f"--out_dir={tmp_path}", "--haiku_report=True", "--num_samples=2", "--form=free")
    assert "not computed" in out


@pytest.mark.parametrize(
    "args, words",
    [
        (["--out_dir={empty}"], ["no checkpoint at", "train.py"]),
        (["--start=FILE:{empty}/nothing.txt"], ["no prompt file", "nothing.txt"]),
        (["--num_samples=0"], ["num_samples"]),
        (["--temperature=-0.5"], ["temperature must be a number >= 0"]),
        (["--top_p=0"], ["top_p must be"]),
        (["--top_p=1.5"], ["top_p must be"]),
        (["--top_p=high"], ["top_p must be"]),
        (["--top_k=-1"], ["top_k must be"]),
        (["--dtype=float8"], ["dtype='float8': expected float32, bfloat16 or float16"]),
        (["--device=tpu"], ["unknown device 'tpu'"]),
        (["--tempreature=1"], ["did you mean 'temperature'"]),
        (["--start=日本"], ["is not in the char table"]),
        (["--init_from=gpt5"], ["unknown model 'gpt5'"]),
    ],
)
def test_bad_input_is_one_line(char_run, tmp_path, args, words):
    args = [f"--out_dir={char_run}", *(a.format(empty=tmp_path) for a in args)]
    with pytest.raises(SystemExit) as e:
        sample.main(args)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    assert all(w in message for w in words), message


def test_checkpoint_of_another_shape_is_one_line(char_run, tmp_path):
    ckpt = load_checkpoint(char_run)
    ckpt["model_args"]["n_embd"] = 48
    save_checkpoint(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(SystemExit) as e:
        sample.main([f"--out_dir={tmp_path}"])
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message


def test_runs_as_a_script_from_another_folder(char_run, tmp_path):
    cmd = [sys.executable, str(ROOT / "sample.py"), f"--out_dir={char_run}", "--num_samples=2", "--max_new_tokens=250"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(sample.SEPARATOR) == 2
    bad = subprocess.run([*cmd, "--num_samples=0"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr == "error: num_samples, max_new_tokens and particles must be at least 1\n"


def test_a_reader_that_stops_early_ends_it_quietly(char_run, tmp_path):
    cmd = [sys.executable, str(ROOT / "sample.py"), f"--out_dir={char_run}", "--num_samples=2", "--max_new_tokens=250"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # as `| head` does once it has its lines: every write now fails with a broken pipe
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 1 and stderr == ""


def test_help_lists_every_key_with_its_default_and_comment(capsys):
    with pytest.raises(SystemExit) as e:
        sample.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("Sample from a trained model")
    assert all(f"--{key}=" in out for key in sample.DEFAULTS)
    assert "--top_k=200" in out and "0 or None turns it off" in out


def nanogpt_char_run(root: Path) -> tuple[Path, list[str], GPT]:
    """A ckpt.pt as nanoGPT's train.py saves it on shakespeare_char, and the meta.pkl its prepare.py writes beside
    the bins (in data/shakespeare_char of the working directory, where nanoGPT's sample.py looks)."""
    chars = sorted(set("First Citizen:\nBefore we proceed any further, hear me speak.\n"))
    data = root / "data" / "shakespeare_char"
    data.mkdir(parents=True)
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    config = GPTConfig(block_size=32, vocab_size=len(chars), n_layer=2, n_head=2, n_embd=16)
    model = GPT(config, seed=1).eval()
    ckpt = {
        "model": {"_orig_mod." + k: v for k, v in model.state_dict().items()},
        "model_args": asdict(config),
        "iter_num": 5000,
        "best_val_loss": torch.tensor(1.47),
        "config": {"dataset": "shakespeare_char"},
    }
    (root / "out-shakespeare-char").mkdir()
    torch.save(ckpt, root / "out-shakespeare-char" / "ckpt.pt")
    return root / "out-shakespeare-char", chars, model


def test_a_nanogpt_char_checkpoint_samples_with_its_meta_pkl(tmp_path, monkeypatch, capsys):
    out_dir, chars, model = nanogpt_char_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["--out_dir=out-shakespeare-char", "--start=hear", "--num_samples=1", "--max_new_tokens=30"]
    samples, _ = run(capsys, *args, "--dtype=float32")
    prompt = torch.tensor([[chars.index(c) for c in "hear"]])
    expected = model.generate(prompt, 30, temperature=0.8, top_k=200, generator=torch.Generator().manual_seed(1337))
    assert samples == ["".join(chars[i] for i in expected[0].tolist())]


def test_a_pickle_that_would_run_code_is_refused_in_one_line(tmp_path, monkeypatch):
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    out_dir, _, _ = nanogpt_char_run(tmp_path)
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "data" / "shakespeare_char" / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": 2, "itos": {0: "a", 1: Payload()}}, f)
    with pytest.raises(SystemExit) as e:
        sample.main(["--out_dir=out-shakespeare-char"])
    assert str(e.value.code) == (
        "error: data/shakespeare_char/meta.pkl is not a nanoGPT char table (it refers to posix.system, which is not "
        "plain data); it was not loaded"
    )
    torch.save({"model": Payload(), "model_args": {}}, out_dir / "ckpt.pt")
    with pytest.raises(SystemExit) as e:
        sample.main(["--out_dir=out-shakespeare-char"])
    message = str(e.value.code)
    assert message == (
        "error: out-shakespeare-char/ckpt.pt holds objects other than weights (posix.system) and was not loaded: "
        "unpickling it could run code; use checkpoints from train.py, or ones you trust"
    )
    assert not (tmp_path / "ran").exists()
