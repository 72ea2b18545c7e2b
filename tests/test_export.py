"""export.py: the Hugging Face folder loads in transformers with the same tokens, atomically replaced, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import torch

import export
import sample
from haikugpt import tokenizer
from haikugpt.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("tiny_gpt2_bpe")
CORPUS = (Path(__file__).resolve().parent.parent / "prepare" / "haiku_corpus.txt").read_text()


@pytest.fixture(scope="module")
def hf_dir(bpe_run, tmp_path_factory, tiny_encoding) -> Path:
    """The tiny BPE checkpoint exported with the command a user runs."""
    folder = tmp_path_factory.mktemp("export") / "hf"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tokenizer.tiktoken, "get_encoding", lambda name: tiny_encoding())
        export.main([f"--out_dir={bpe_run}", f"--hf_dir={folder}"])
    return folder


def test_transformers_gives_sample_py_greedy_tokens(bpe_run, hf_dir, tiny_encoding):
    assert sorted(p.name for p in hf_dir.iterdir()) == [
        "config.json",
        "merges.txt",
        "model.safetensors",
        "tokenizer_config.json",
        "vocab.json",
    ]
    ours = model_from_checkpoint(load_checkpoint(bpe_run)).eval()
    hf = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    val = np.fromfile(bpe_run.parent / "haiku" / "val.bin", dtype=np.uint16).astype(np.int64)
    windows = torch.from_numpy(np.stack([val[i : i + 16] for i in range(0, 800, 100)]))  # (8, 16) held-out text
    with torch.no_grad():
        torch.testing.assert_close(hf(windows).logits, ours(windows)[0], rtol=0, atol=1e-5)
    greedy = ours.generate(windows, 20, temperature=0)
    assert len(set(ours(windows)[0].argmax(-1).flatten().tolist())) > 3, "the test needs a model of several tokens"
    no_stop = dict(max_new_tokens=20, do_sample=False, eos_token_id=None)
    assert torch.equal(hf.generate(windows, attention_mask=torch.ones_like(windows), **no_stop), greedy)

    # sample.py's greedy haiku in float32, as transformers runs: the same tokens, up to the end-of-text where both stop
    options = {"start": "the old pond", "temperature": 0, "num_samples": 1, "max_new_tokens": 30, "dtype": "float32",
               "form": "free"}  # fmt: skip
    texts = sample.sample(sample.DEFAULTS | options | {"out_dir": str(bpe_run)})
    prompt = torch.tensor([[258, *tiny_encoding().encode("the old pond")]])  # end-of-text, then the start
    mask = torch.ones_like(prompt)
    stop = hf.generate(prompt, attention_mask=mask, max_new_tokens=30, do_sample=False, pad_token_id=258)
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert texts == [tok.decode(stop[0, 1:], skip_special_tokens=True)]


def test_pipeline_and_tokenizer_load_the_folder(hf_dir, tiny_encoding):
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    text = CORPUS[:3000] + "<|endoftext|>naïve 🐸  two  spaces\n"
    assert tok.encode(text) == tiny_encoding().encode(text, allowed_special="all")
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 258
    generate = transformers.pipeline("text-generation", model=str(hf_dir))
    out = generate("the old pond", max_new_tokens=10, do_sample=False)[0]["generated_text"]
    assert out.startswith("the old pond")


def test_sample_py_loads_the_exported_folder(bpe_run, hf_dir):
    greedy = sample.DEFAULTS | {"temperature": 0, "num_samples": 1, "max_new_tokens": 40, "form": "free"}
    resumed = sample.sample(greedy | {"out_dir": str(bpe_run), "start": "the frog"})  # haiku data: after end-of-text
    # a Hugging Face folder has no meta.json, so nothing says it is haiku: give the end-of-text and expect no stop
    loaded = sample.sample(greedy | {"init_from": str(hf_dir), "start": "<|endoftext|>the frog"})
    assert loaded[0].startswith(resumed[0])


def test_merges_recovered_from_a_trained_bpe(gpt2_pattern):
    """A byte-level BPE trained by the tokenizers library, turned into a tiktoken encoding: the merges come back."""
    tokenizers = pytest.importorskip("tokenizers")
    trained = tokenizers.Tokenizer(tokenizers.models.BPE())
    trained.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=1200, initial_alphabet=alphabet, show_progress=False)
    trained.train_from_iterator(CORPUS.split("\n\n"), trainer)
    bpe = json.loads(trained.to_str())["model"]
    to_byte = {c: b for b, c in export.byte_to_unicode().items()}
    ranks = {bytes(to_byte[c] for c in token): i for token, i in bpe["vocab"].items()}
    special = {"<|endoftext|>": len(ranks)}
    encoding = tiktoken.Encoding("trained", pat_str=gpt2_pattern, mergeable_ranks=ranks, special_tokens=special)
    vocab, merges = export.bpe_files(encoding)
    assert merges == [tuple(m) for m in bpe["merges"]] and len(merges) > 900
    assert vocab == bpe["vocab"] | special


def test_bias_free_model_exports_with_zero_biases(bpe_run, tmp_path, train_checkpoint):
    out = train_checkpoint(bpe_run.parent / "haiku", tmp_path / "nobias", steps=5, bias=False)
    export.export(str(out), str(tmp_path / "hf"))
    ours = model_from_checkpoint(load_checkpoint(out)).eval()
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    prompt = torch.tensor([[258, 257, 32, 100, 111]])
    with torch.no_grad():
        torch.testing.assert_close(hf(prompt).logits, ours(prompt)[0], rtol=0, atol=1e-5)


def test_export_replaces_an_export_atomically(bpe_run, tmp_path, monkeypatch):
    target = tmp_path / "hf"
    export.export(str(bpe_run), str(target))
    export.export(str(bpe_run), str(target))  # again, over the first
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(SystemExit) as e:
        export.main([f"--out_dir={bpe_run}", f"--hf_dir={target}"])
    message = str(e.value.code)
    assert message.startswith(f"error: no space left on the disk writing {target}: ") and "\n" not in message
    assert message.endswith(" is free; the previous hf is intact")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # the earlier export is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # and no temporary folder is left


def test_default_folder_is_next_to_the_checkpoint(bpe_run, tmp_path):
    save_checkpoint(load_checkpoint(bpe_run), tmp_path / "run" / "best.pt")
    assert export.export(str(tmp_path / "run" / "best.pt")) == tmp_path / "run" / "hf"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--out_dir={char}", "--hf_dir={tmp}/hf"], ["char-level model", "only BPE checkpoints"]),
        (["--out_dir={tmp}"], ["no checkpoint at"]),
        (["--out_dir={bpe}", "--hf_dir={bpe}"], ["holds ckpt.pt", "not an earlier export"]),  # the run itself
        (["--hf=x"], ["did you mean 'hf_dir'"]),
    ],
)
def test_bad_input_is_one_line(char_run, bpe_run, tmp_path, args, words):
    with pytest.raises(SystemExit) as e:
        export.main([a.format(char=char_run, bpe=bpe_run, tmp=tmp_path) for a in args])
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    assert all(w in message for w in words), message


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        export.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("Export a BPE checkpoint") and "--hf_dir=''" in out


def test_a_learnt_bpe_exports_with_its_own_tokenizer_files(tmp_path, corpus, train_checkpoint):
    from prepare import haiku

    haiku.prepare(out_dir=tmp_path / "haiku_bpe", tokenizer="bpe", vocab_size=400)
    out = train_checkpoint(tmp_path / "haiku_bpe", tmp_path / "out", steps=30)
    export.main([f"--out_dir={out}", f"--hf_dir={tmp_path / 'hf'}"])
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours = tokenizer.load_tokenizer(load_checkpoint(out)["meta"])
    text = corpus[5] + "<|endoftext|>" + corpus[6]
    assert tok.encode(text) == ours.encode(text) and tok.eos_token_id == ours.eot_id == 399
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    prompt = torch.tensor([ours.encode(corpus[7][:20])])
    with torch.no_grad():
        torch.testing.assert_close(hf(prompt).logits, model_from_checkpoint(load_checkpoint(out)).eval()(prompt)[0],
                                   rtol=0, atol=1e-5)  # fmt: skip


def test_a_fine_tuned_gpt_neo_exports_a_folder_that_transformers_and_its_pipeline_load(bpe_run, tmp_path):
    """train.py fine-tunes a tiny GPT-Neo (global and local layers) on the tiny BPE haiku; export.py writes a
    GPTNeoForCausalLM folder whose greedy tokens, through from_pretrained and through pipeline, are sample.py's."""
    import train

    neo = transformers.GPTNeoConfig(vocab_size=320, max_position_embeddings=64, hidden_size=32, num_layers=2,
                                    num_heads=2, attention_types=[[["global", "local"], 1]], window_size=8)  # fmt: skip
    torch.manual_seed(0)
    transformers.GPTNeoForCausalLM(neo).save_pretrained(tmp_path / "neo")
    out = tmp_path / "out"
    train.main([f"--init_from={tmp_path / 'neo'}", f"--dataset={bpe_run.parent / 'haiku'}", f"--out_dir={out}",
                "--block_size=32", "--batch_size=8", "--gradient_accumulation_steps=1", "--max_iters=20",
                "--eval_interval=20", "--eval_iters=2", "--learning_rate=3e-3", "--warmup_iters=2",
                "--lr_decay_iters=20", "--dtype=float32", "--compile=False"])  # fmt: skip
    export.main([f"--out_dir={out}", f"--hf_dir={tmp_path / 'hf'}"])
    hf = transformers.GPTNeoForCausalLM.from_pretrained(tmp_path / "hf").eval()
    options = {"start": "the old pond", "temperature": 0, "num_samples": 1, "max_new_tokens": 20, "dtype": "float32",
               "form": "free"}  # fmt: skip
    texts = sample.sample(sample.DEFAULTS | options | {"out_dir": str(out)})
    generate = transformers.pipeline("text-generation", model=str(tmp_path / "hf"))
    piped = generate("<|endoftext|>the old pond", max_new_tokens=20, do_sample=False)[0]["generated_text"]
    assert piped.removeprefix("<|endoftext|>") == texts[0]
    prompt = torch.tensor([[258, *tokenizer.load_tokenizer(load_checkpoint(out)["meta"]).encode("the old pond")]])
    ours = model_from_checkpoint(load_checkpoint(out)).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(prompt).logits, ours(prompt)[0], rtol=0, atol=1e-5)
