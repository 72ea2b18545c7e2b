"""
Sample from a trained model: a checkpoint written by train.py, or OpenAI's GPT-2.

    python sample.py --out_dir=out-haiku-char                   # ten haiku from the char demo
    python sample.py --out_dir=out-haiku --haiku_report=True    # and judge them: syllables, 5-7-5, copies, diversity
    python sample.py --out_dir=out-haiku/best.pt --temperature=0.6 --top_p=0.9 --out_file=haiku.txt
    python sample.py --init_from=gpt2-xl --start="What is the answer to life?" --num_samples=1 --max_new_tokens=100
    python sample.py --init_from=out-haiku-hf --start=FILE:prompt.txt        # a local Hugging Face GPT-2 folder

Options are --key=value overrides or config files of assignments, as in train.py; DEFAULTS below lists them. The
tokenizer (char or GPT-2 BPE) comes from the checkpoint's meta.json. On haiku data an empty start begins at end-of-text
and each sample stops at the next end-of-text: one haiku per sample. The samples are generated as one batch with the
KV cache and each is printed as soon as its row stops (a single sample is printed token by token). The same seed gives
the same samples.
"""

import itertools
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from checkpoint import load_checkpoint, model_from_checkpoint
from configurator import configure
from device import default_dtype, resolve_device
from model import GPT
from prepare.haiku import dedupe_key
from syllables import count_line, haiku_lines, is_575
from tokenizer import EOT, Tokenizer, gpt2_tokenizer, load_tokenizer

REPO = Path(__file__).resolve().parent
SEPARATOR = "---------------"

DEFAULTS = dict(
    init_from="resume",  # 'resume' (the checkpoint in out_dir), 'gpt2' ... 'gpt2-xl', or a Hugging Face folder
    out_dir="out",  # the folder train.py wrote (its best.pt is read, else ckpt.pt), or a checkpoint file
    start="",  # the prompt, or FILE:path to read it from a file; empty: the start of a new document
    num_samples=10,  # generated together, as one batch
    max_new_tokens=500,  # per sample; a haiku stops earlier, at end-of-text
    temperature=0.8,  # 1.0 samples the model's distribution, lower is more conservative, 0 is greedy
    top_k=200,  # sample only among the k likeliest tokens; 0 turns it off
    top_p=None,  # sample only among the likeliest tokens whose probabilities add up to p (nucleus sampling)
    seed=1337,
    device="auto",  # 'cpu', 'cuda', 'cuda:1', 'mps'; auto: cuda if available, else mps, else cpu
    dtype="auto",  # 'float32', 'bfloat16' or 'float16'; auto: as train.py, bfloat16 where the device has it
    compile=False,  # torch.compile the transformer blocks (compiling takes tens of seconds before the first token)
    out_file=None,  # also write the samples (and the report) to this text file
    haiku_report=False,  # judge the samples: syllables per line, 5-7-5 share, copies of training haiku, distinct-2
)


def main(argv: list[str] | None = None) -> None:
    try:
        config = configure(DEFAULTS, sys.argv[1:] if argv is None else argv)
        run(config)
    except BrokenPipeError:  # the reader stopped early (`python sample.py | head`): stop quietly, as Python's docs show
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's own flush fails silently too
        sys.exit(1)
    except (ValueError, OSError, RuntimeError) as e:  # OSError: files that cannot be read or written
        sys.exit(f"error: {e}")


def run(config: dict) -> list[str]:
    """Load the model, print the samples as they finish (and the report); return the samples."""
    check_options(config)
    device = resolve_device(None if config["device"] == "auto" else config["device"], local_rank=0)
    dtype = resolve_dtype(config["dtype"], device)
    model, tok, meta, data_dir = load_model(config["init_from"], config["out_dir"], device)
    if config["compile"]:
        for block in model.transformer.h:
            block.compile(dynamic=True)  # dynamic: a longer cache is not a new graph
    is_haiku = (meta or {}).get("dataset") == "haiku"
    prompt = encode_prompt(config["start"], tok, start_at_eot=is_haiku or not config["start"])
    if len(prompt) > model.config.block_size:  # the model could not see the rest anyway
        block_size = model.config.block_size
        note(f"the prompt is {len(prompt)} tokens, longer than block_size {block_size}: keeping its last {block_size}")
        prompt = prompt[-block_size:]

    live = config["num_samples"] == 1
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    generator = torch.Generator(device).manual_seed(config["seed"])
    sampling = {k: config[k] for k in ("temperature", "top_k", "top_p")}
    sampling["top_k"] = sampling["top_k"] or None  # 0: no top-k
    samples, shown = [], ""
    with autocast:
        stream = stream_samples(
            model,
            tok,
            prompt,
            config["num_samples"],
            config["max_new_tokens"],
            live,
            stop_token=tok.eot_id if is_haiku else None,
            generator=generator,
            **sampling,
        )
        for text, done in stream:
            if live:  # print what is new since the last token
                print(text[len(shown) :], end="\n" if done else "", flush=True)
                shown = text
            elif done:
                print(text, flush=True)
            if done:
                print(SEPARATOR, flush=True)
                samples.append(text)
    printed = "".join(f"{text}\n{SEPARATOR}\n" for text in samples)
    if config["haiku_report"]:
        report = haiku_report(samples, training_haiku(data_dir))
        print(report)
        printed += report + "\n"
    if config["out_file"]:
        write_text(Path(config["out_file"]), printed)
    return samples


def check_options(config: dict) -> None:
    """Refuse values that cannot work, before loading a model."""
    if config["num_samples"] < 1 or config["max_new_tokens"] < 1:
        raise ValueError("num_samples and max_new_tokens must be at least 1")
    if config["temperature"] < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {config['temperature']}")
    if config["top_k"] < 0:
        raise ValueError(f"top_k must be at least 1, or 0 for no top-k, got {config['top_k']}")
    top_p = config["top_p"]
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], or None, got {top_p!r}")
    if config["dtype"] not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {config['dtype']!r}")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: train.py's default for the device (on a CPU with native bfloat16, GPT-2 124M samples 2x faster in it)."""
    return getattr(torch, default_dtype(device) if name == "auto" else name)


def load_model(init_from: str, out_dir: str, device: torch.device) -> tuple[GPT, Tokenizer, dict | None, Path | None]:
    """The model in eval mode, its tokenizer, its dataset's meta.json (None for GPT-2) and its data folder if found."""
    # the tokenizer first: offline, GPT-2's BPE files are missing, and that is better said before a long load
    if init_from == "resume":
        ckpt = load_checkpoint(out_dir, best=True)
        meta, data_dir = ckpt["meta"], dataset_dir(ckpt.get("config") or {})
        tok = load_tokenizer(meta) if meta is not None else gpt2_tokenizer()  # nanoGPT's checkpoints have no meta
        model = model_from_checkpoint(ckpt, device)
    else:
        meta, data_dir, tok = None, None, gpt2_tokenizer()  # what OpenAI's GPT-2 was trained with
        model = GPT.from_pretrained(init_from).to(device)
    return model.eval(), tok, meta, data_dir


def dataset_dir(train_config: dict) -> Path | None:
    """The dataset folder a checkpoint was trained on: train.py's `dataset`, a name under data/ or a path."""
    dataset = train_config.get("dataset")
    if not dataset:
        return None
    for folder in (Path(dataset).expanduser(), REPO / "data" / dataset):
        if folder.is_dir():
            return folder
    return None


def read_meta(data_dir: Path) -> dict:
    return json.loads((data_dir / "meta.json").read_text())


def encode_prompt(start: str, tok: Tokenizer, start_at_eot: bool) -> list[int]:
    """The prompt's ids: text, or a file's text for FILE:path, after an end-of-text when start_at_eot."""
    if start.startswith("FILE:"):
        path = Path(start.removeprefix("FILE:")).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no prompt file {path} (from --start={start})")
        start = path.read_text(encoding="utf-8")
    ids = tok.encode(start)
    if start_at_eot and ids[:1] != [tok.eot_id]:
        ids = [tok.eot_id, *ids]  # as in training, where every document follows an end-of-text
    return ids


def stream_samples(
    model: GPT, tok: Tokenizer, prompt: list[int], num_samples: int, max_new_tokens: int, live: bool = False, **kw
) -> Iterator[tuple[str, bool]]:
    """Sample continuations of prompt as one batch: yield (text, True) for each sample as soon as its row stops and,
    with live, (the text so far, False) after each token of the first row. kw are model.stream's sampling arguments."""
    stop_token = kw.get("stop_token")
    idx = torch.tensor([prompt] * num_samples, dtype=torch.long, device=model.lm_head.weight.device)  # (B, T)
    head = prompt[1:] if prompt[0] == tok.eot_id else prompt  # the prompt as a sample shows it
    rows: list[list[int]] = [[] for _ in range(num_samples)]
    running = list(range(num_samples))
    for token in model.stream(idx, max_new_tokens, **kw):
        new = token.tolist()
        for i in list(running):
            if new[i] == stop_token:
                running.remove(i)
                yield tok.decode(head + rows[i]), True
            else:
                rows[i].append(new[i])
        if live and running == [0]:
            text = tok.decode(head + rows[0])
            if not text.endswith("\ufffd"):  # a character whose UTF-8 bytes are split across tokens: wait for the rest
                yield text, False
    for i in running:  # rows that reached max_new_tokens
        yield tok.decode(head + rows[i]), True


def training_haiku(data_dir: Path | None) -> tuple[set[str] | None, str]:
    """The training split's haiku as prepare/haiku.py deduplicates them (letters and digits, case-folded), and where
    they came from; None and the reason when there are none to compare with."""
    if data_dir is None or not (data_dir / "train.bin").is_file() or not (data_dir / "meta.json").is_file():
        return None, "the checkpoint's training data folder was not found"
    meta = read_meta(data_dir)
    if meta.get("dataset") != "haiku":
        return None, f"{data_dir} is not a haiku dataset"
    docs = load_tokenizer(meta).decode(np.fromfile(data_dir / "train.bin", dtype=np.uint16).tolist()).split(EOT)
    keys = {dedupe_key(doc) for doc in docs if doc.strip()}
    return keys, f"{len(keys):,} training haiku in {data_dir}"


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def distinct_2(samples: list[str]) -> tuple[int, int]:
    """Unique and total word bigrams over all samples; a bigram never spans two samples."""
    bigrams = [pair for sample in samples for pair in itertools.pairwise(words(sample))]
    return len(set(bigrams)), len(bigrams)


def haiku_report(samples: list[str], corpus: tuple[set[str] | None, str]) -> str:
    """Each sample's lines with their syllable counts, then the shares of three-line, 5-7-5 and copied samples.

    corpus is training_haiku()'s answer: the training haiku (or None) and where they came from (or why not)."""
    keys, source = corpus
    out = ["haiku report"]
    three = form = copied = 0
    for n, sample in enumerate(samples, 1):
        lines = haiku_lines(sample)
        is_copy = keys is not None and dedupe_key(sample) in keys
        three, form, copied = three + (len(lines) == 3), form + is_575(sample), copied + is_copy
        marks = "".join(f" {m}" for m, on in [("5-7-5", is_575(sample)), ("copied", is_copy)] if on)
        out.append(f"sample {n}: {len(lines)} line{'' if len(lines) == 1 else 's'}{marks}")
        out += [f"  {count_line(line):2d}  {line}" for line in lines]
    total = len(samples)

    def share(k: int) -> str:
        return f"{k}/{total} ({k / total:.0%})"

    unique, bigrams = distinct_2(samples)
    out.append(f"three lines: {share(three)}")
    out.append(f"5-7-5: {share(form)}")
    if keys is None:
        out.append(f"copied from the training set: not computed ({source})")
    else:
        out.append(f"copied from the training set: {share(copied)}, compared with {source}")
    d2 = f"{unique / bigrams:.3f}" if bigrams else "n/a"
    out.append(f"distinct-2: {d2} ({unique} unique of {bigrams} word bigrams)")
    return "\n".join(out)


def write_text(path: Path, text: str) -> None:
    """Write text atomically: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


if __name__ == "__main__":
    main()
