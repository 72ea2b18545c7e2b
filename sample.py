"""
Sample from a trained model: a checkpoint written by train.py (or nanoGPT), OpenAI's GPT-2 or EleutherAI's GPT-Neo.

    python sample.py --out_dir=out-haiku-bpe                    # ten haiku from the demo, by every rule of the form
    python sample.py --out_dir=out-haiku-bpe --season=winter --cut=True --haiku_report=True    # judged by the rules
    python sample.py --out_dir=out-haiku-bpe --form=free --haiku_report=True --num_samples=100   # the model alone
    python sample.py --out_dir=out-haiku-char --form=5-7-5-7-7 --words=names.txt                 # tanka, more words
    python sample.py --out_dir=out-haiku/best.pt --temperature=0.6 --top_p=0.9 --out_file=haiku.txt
    python sample.py --init_from=gpt2-xl --start="What is the answer to life?" --num_samples=1 --max_new_tokens=100
    python sample.py --init_from=EleutherAI/gpt-neo-1.3B --start=FILE:prompt.txt --max_new_tokens=50

Options are --key=value overrides or config files, as in train.py (DEFAULTS below). The tokenizer comes from the
checkpoint's meta.json. On haiku data an empty start begins at end-of-text and each sample stops at the next one: one
haiku per sample. The samples are generated as one batch with the KV cache, each printed as soon as it stops (a
single one token by token); the same seed gives the same samples.

--form constrains every sample to lines of so many syllables, of real words, ending where a phrase can end, without
rhyming line ends, with a season word (--season) and a cut (--cut) when asked (haikugpt/haiku/form.py): the model's
distribution restricted to those rules and renormalised. On a haiku checkpoint the form is 5-7-5 and the season any;
--form=free samples the model alone, which --haiku_report then judges by the same rules.
"""

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from configurator import overrides
from haikugpt.checkpoint import check_name, load_checkpoint, load_pretrained, model_from_checkpoint
from haikugpt.device import inference_device
from haikugpt.files import one_line_errors, write_text
from haikugpt.haiku.form import FormConstraint, Lexicon, Particles, Rules, read_words, words_of
from haikugpt.haiku.verse import (
    HAIKU,
    SEASONS,
    Corpus,
    format_form,
    haiku_lines,
    haiku_report,
    parse_form,
    read_season_words,
)
from haikugpt.labels import is_classifier
from haikugpt.texts import dedupe_key
from haikugpt.tokenizer import EOT, CharTokenizer, Tokenizer, gpt2_tokenizer, load_tokenizer
from haikugpt.training import dataset_dir, read_meta
from model import GPT, check_sampling

SEPARATOR = "---------------"
MAX_CORPUS_TOKENS = 20_000_000  # a training set read for its words (the lexicon) and its haiku (copies) at most

DEFAULTS = dict(
    init_from="resume",  # 'resume' (out_dir's checkpoint), 'gpt2' ... 'gpt2-xl', 'EleutherAI/gpt-neo-1.3B', a folder
    out_dir="out",  # the folder train.py wrote (its best.pt is read, else ckpt.pt), or a checkpoint file
    start="",  # the prompt, or FILE:path to read it from a file; empty: the start of a new document
    num_samples=10,  # generated together, as one batch
    max_new_tokens=500,  # per sample; a haiku stops earlier, at end-of-text
    temperature=0.8,  # 1.0 samples the model's distribution, lower is more conservative, 0 is greedy
    top_k=200,  # sample only among the k likeliest tokens; 0 or None turns it off
    top_p=None,  # sample only among the likeliest tokens whose probabilities add up to p (nucleus); None: off
    seed=1337,
    device=None,  # 'cpu', 'cuda', 'cuda:1', 'mps'; None: cuda if available, else mps, else cpu
    dtype=None,  # 'float32', 'bfloat16' or 'float16'; None: as train.py, bfloat16 where the device has it
    compile=False,  # torch.compile the transformer blocks (compiling takes tens of seconds before the first token)
    out_file=None,  # also write the samples (and the report) to this text file
    haiku_report=False,  # judge the samples by every rule: lines, syllables, words, copies, seasons, rhymes, cuts
    form=None,  # '5-7-5', any dash-separated syllable counts (5-7-5-7-7), or 'free'; None: 5-7-5 on haiku data
    words=None,  # a file of more real words for --form (one per line), beside the CMU dictionary and the corpus
    season=None,  # a season word in every sample: spring, summer, autumn, winter, any, free; None: any with a form
    season_words=None,  # a file of more season words: lines like "winter: sleet hoarfrost", or words for every season
    cut=False,  # end line 1 or line 2 of every sample with a cutting mark: a dash, colon, semicolon or ellipsis
    particles=3,  # with a form: rows per sample, resampled by how likely the model finds them (form.Particles)
)


def sample(config: dict, typed: set[str] = frozenset()) -> list[str]:
    """Load the model, print the samples as they finish (and the report); return the samples. typed: the keys the
    user set (a value they typed wins over a default they did not choose)."""
    # what the user typed first (values, then the names and files they point to), then the model and its downloads
    top_k, top_p = check_sampling(config["temperature"], config["top_k"], config["top_p"])
    if min(config["num_samples"], config["max_new_tokens"], config["particles"]) < 1:
        raise ValueError("num_samples, max_new_tokens and particles must be at least 1")
    form = None if config["form"] in (None, "free") else parse_form(config["form"])
    if config["season"] not in (None, *SEASONS, "any", "free"):
        raise ValueError(f"unknown season {config['season']!r}: choose {', '.join(SEASONS)}, any or free")
    device, ctx = inference_device(config["device"], config["dtype"])
    if config["init_from"] != "resume":
        check_name(config["init_from"])
    start = read_start(config["start"])
    user_words = read_words(Path(config["words"])) if config["words"] else []
    season_words = read_season_words(Path(config["season_words"]) if config["season_words"] else None)
    model, tok, meta, data_dir = load_model(config["init_from"], config["out_dir"], device)
    if config["compile"]:
        for block in model.transformer.h:
            block.compile(dynamic=True)  # dynamic: a longer cache is not a new graph
    is_haiku = (meta or {}).get("dataset") == "haiku"
    form = HAIKU if config["form"] is None and is_haiku else form
    season = config["season"] or ("any" if form is not None and is_haiku else "free")
    if form is None and (season != "free" or config["cut"]):
        rule = f"--season={season}" if season != "free" else "--cut=True"
        raise ValueError(f"{rule} is a rule of the form: give one (--form=5-7-5), or drop it for the model alone")
    prompt = encode_prompt(start, tok, start_at_eot=is_haiku or not start or form is not None)
    if len(prompt) > model.config.block_size:  # the model could not see the rest anyway
        block_size = model.config.block_size
        note(f"the prompt is {len(prompt)} tokens, longer than block_size {block_size}: keeping its last {block_size}")
        prompt = prompt[-block_size:]
    corpus = read_training_haiku(data_dir)
    lexicon, logits_filter, particles, enforced = None, None, None, ""
    if form is not None or config["haiku_report"]:
        alphabet = {c for c in tok.chars if len(c) == 1} if isinstance(tok, CharTokenizer) else None
        lexicon = Lexicon.load(extra=words_of(corpus.docs) + user_words, alphabet=alphabet)
    if form is not None:
        kigo = {"free": None, "any": set().union(*season_words.values())}.get(season, season_words.get(season))
        constraint = FormConstraint(tok, Rules(form, lexicon, kigo, config["cut"]))
        enforced = f"{format_form(form)}, real words, line ends (no function word, no rhyme)" + (
            f", a season word ({season})" * bool(kigo) + ", a cut" * config["cut"])  # fmt: skip
        if config["max_new_tokens"] < constraint.rules.max_tokens() and "form" in typed:
            raise ValueError(f"form {config['form']} may take up to {constraint.rules.max_tokens()} tokens to finish; "
                             f"raise max_new_tokens to at least that")  # fmt: skip
        k = config["particles"] if config["temperature"] > 0 else 1  # greedy: one way to go
        states = constraint.rules.start(start, config["num_samples"] * k)
        particles = Particles(constraint, states, k, config["temperature"], config["seed"]) if k > 1 else None
        logits_filter = None if particles else constraint.logits_filter(states)

    generator = torch.Generator(device).manual_seed(config["seed"])
    sampling = dict(temperature=config["temperature"], top_k=top_k, top_p=top_p, generator=generator)
    stop_token = tok.eot_id if is_haiku or form is not None else None
    with ctx:
        stream = stream_samples(model, tok, prompt, config["num_samples"], config["max_new_tokens"],
                                config["num_samples"] == 1, particles, stop_token=stop_token,
                                logits_filter=logits_filter, **sampling)  # fmt: skip
        samples, unfinished = print_samples(stream, live=config["num_samples"] == 1)
    printed = "".join(f"{text}\n{SEPARATOR}\n" for text in samples)
    if form is not None and unfinished:
        note(f"samples {', '.join(map(str, unfinished))} of {len(samples)} did not finish the form "
             f"{format_form(form)} within max_new_tokens={config['max_new_tokens']}")  # fmt: skip
    if config["haiku_report"]:
        with ctx:
            scored = log_likelihood(model, tok, prompt, samples, stop_token)
        report = haiku_report(samples, corpus, form or HAIKU, lexicon, enforced, season_words, scored)
        print(report)
        printed += report + "\n"
    if config["out_file"]:
        write_text(Path(config["out_file"]), printed)
    return samples


def print_samples(stream: Iterator[tuple[str, bool, bool]], live: bool) -> tuple[list[str], list[int]]:
    """Print each sample as it finishes (a single one as it grows), with a separator after each; return them, and the
    numbers (from 1) of those that ran out of tokens before their stop token."""
    samples, unfinished, shown = [], [], ""
    for text, done, stopped in stream:
        if live:  # print what is new since the last token
            print(text[len(shown) :], end="\n" if done else "", flush=True)
            shown = text
        elif done:
            print(text, flush=True)
        if done:
            print(SEPARATOR, flush=True)
            samples.append(text)
            if not stopped:
                unfinished.append(len(samples))
    return samples, unfinished


def read_start(start: str) -> str:
    """The prompt: the text itself, or a file's text for FILE:path."""
    if not start.startswith("FILE:"):
        return start
    path = Path(start.removeprefix("FILE:")).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no prompt file {path} (from --start={start})")
    return path.read_text(encoding="utf-8")


def load_model(init_from: str, out_dir: str, device: torch.device) -> tuple[GPT, Tokenizer, dict | None, Path | None]:
    """The model in eval mode, its tokenizer, its dataset's meta.json (None for GPT-2) and its data folder if found."""
    if init_from != "resume":  # the tokenizer first: offline, GPT-2's BPE files are missing, better said before a load
        tok = gpt2_tokenizer()
        return load_pretrained(init_from).to(device).eval(), tok, None, None
    ckpt = load_checkpoint(out_dir, best=True)
    if is_classifier(ckpt):
        raise ValueError(f"{out_dir} holds a classifier (classify.py), which labels texts rather than writing them; "
                         f"label a file with `python classify.py --out_dir={out_dir} --predict=FILE`")  # fmt: skip
    data_dir = dataset_dir(ckpt["config"]["dataset"]) if ckpt["config"].get("dataset") else None
    meta = ckpt["meta"]
    if meta is None and data_dir is not None and any((data_dir / f).is_file() for f in ("meta.json", "meta.pkl")):
        meta = read_meta(data_dir)  # a nanoGPT checkpoint: its char table is beside its bins, as nanoGPT reads it
    tok = load_tokenizer(meta) if meta is not None else gpt2_tokenizer()  # else nanoGPT's GPT-2 BPE
    return model_from_checkpoint(ckpt, device).eval(), tok, meta, data_dir


def encode_prompt(start: str, tok: Tokenizer, start_at_eot: bool) -> list[int]:
    """The prompt's ids, after an end-of-text when start_at_eot (a char table without one starts at a newline)."""
    ids = tok.encode(start)
    if start_at_eot and tok.eot_id is None and not ids:
        ids = tok.encode("\n")  # nanoGPT's own default start
    elif start_at_eot and tok.eot_id is not None and ids[:1] != [tok.eot_id]:
        ids = [tok.eot_id, *ids]  # as in training, where every document follows an end-of-text
    return ids


def stream_samples(
    model: GPT, tok: Tokenizer, prompt: list[int], num_samples: int, max_new_tokens: int, live: bool = False,
    particles: Particles | None = None, **kw,
) -> Iterator[tuple[str, bool, bool]]:  # fmt: skip
    """Sample continuations of prompt as one batch: yield (text, True, stopped) for each sample as soon as it stops
    (stopped: at the stop token, not max_new_tokens) and, with live, (the text so far, False, False) after each token
    of the first. With particles (the logits filter), each sample is particles.k rows, one of them drawn by weight when
    all have stopped. kw are model.stream's sampling arguments."""
    k, stop_token = particles.k if particles else 1, kw.get("stop_token")
    if particles:
        kw["logits_filter"] = particles
    idx = torch.tensor([prompt] * num_samples * k, dtype=torch.long, device=model.lm_head.weight.device)  # (B, T)
    head = prompt[1:] if prompt[0] == tok.eot_id else prompt  # the prompt as a sample shows it
    rows: list[list[int]] = [[] for _ in range(num_samples * k)]
    stopped, waiting = [False] * num_samples * k, list(range(num_samples))
    for token in model.stream(idx, max_new_tokens, **kw):
        if particles and particles.rows is not None:  # the rows were resampled before this token: so are their records
            order, particles.rows = particles.rows.tolist(), None
            rows, stopped = [list(rows[i]) for i in order], [stopped[i] for i in order]
        for i, t in enumerate(token.tolist()):
            if not stopped[i]:
                stopped[i] = t == stop_token
                rows[i] += [] if stopped[i] else [t]
        for g in [g for g in waiting if all(stopped[g * k : (g + 1) * k])]:
            waiting.remove(g)
            yield tok.decode(head + rows[particles.choose(g) if particles else g]), True, True
        if live and waiting == [0] and k == 1:
            text = tok.decode(head + rows[0])
            if not text.endswith("\ufffd"):  # a character whose UTF-8 bytes are split across tokens: wait for the rest
                yield text, False, False
    for g in waiting:  # samples that reached max_new_tokens
        i = particles.choose(g) if particles else g
        yield tok.decode(head + rows[i]), True, stopped[i]


@torch.no_grad()
def log_likelihood(model: GPT, tok: Tokenizer, prompt: list[int], samples: list[str], stop: int | None):
    """The samples' tokens after the prompt (and the stop token that ended each), as their text encodes, scored by the
    model itself at temperature 1 with no filter: the summed log-probability, and the number of tokens."""
    head = prompt[1:] if prompt[0] == tok.eot_id else prompt
    total, count = 0.0, 0
    for text in samples:
        new = tok.encode(text)[len(head) :] + ([stop] if stop is not None else [])
        ids = (prompt + new)[-model.config.block_size - 1 :]
        n = min(len(new), len(ids) - 1)
        x = torch.tensor([ids], device=model.lm_head.weight.device)
        logp = torch.log_softmax(model(x[:, :-1])[0][0, -n:].float(), dim=-1)  # (n, vocab)
        total, count = total + logp.gather(1, x[0, -n:, None]).sum().item(), count + n
    return total, count


def read_training_haiku(data_dir: Path | None) -> Corpus:
    """The training split's haiku and their lines as prepare/haiku.py deduplicates them, where they came from (or why
    there are none), and the training documents of a small dataset (whose words the lexicon takes)."""
    if data_dir is None or not (data_dir / "train.bin").is_file() or not (data_dir / "meta.json").is_file():
        return Corpus("the checkpoint's training data folder was not found")
    meta = read_meta(data_dir)
    docs = []
    if (data_dir / "train.bin").stat().st_size <= 2 * MAX_CORPUS_TOKENS:
        text = load_tokenizer(meta).decode(np.fromfile(data_dir / "train.bin", dtype=np.uint16).tolist())
        docs = [doc for doc in text.split(EOT) if doc.strip()]  # the documents, between end-of-text ids
    if meta.get("dataset") != "haiku":
        return Corpus(f"{data_dir} is not a haiku dataset", docs=docs)
    keys = {dedupe_key(doc) for doc in docs}
    lines = {dedupe_key(line) for doc in docs for line in haiku_lines(doc)}
    return Corpus(f"{len(keys):,} training haiku in {data_dir}", keys, lines, docs)


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    with one_line_errors():
        user = overrides(DEFAULTS, sys.argv[1:] if argv is None else argv, __doc__, (__file__,))
        sample({**DEFAULTS, **user}, set(user))


if __name__ == "__main__":
    main()
