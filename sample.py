"""
Sample from a trained model: a checkpoint written by train.py (or nanoGPT), OpenAI's GPT-2 or EleutherAI's GPT-Neo.

    python sample.py --out_dir=out-haiku-bpe                    # ten haiku from the demo, by every rule of the form
    python sample.py --out_dir=out-haiku-bpe --season=winter --cut=True --haiku_report=True    # judged by the rules
    python sample.py --out_dir=out-haiku-bpe --form=free --haiku_report=True --num_samples=100   # the model alone
    python sample.py --out_dir=out-haiku-char --form=5-7-5-7-7 --words=names.txt                 # tanka, more words
    python sample.py --out_dir=out-haiku/best.pt --temperature=0.6 --top_p=0.9 --out_file=haiku.txt
    python sample.py --init_from=gpt2-xl --start="What is the answer to life?" --num_samples=1 --max_new_tokens=100
    python sample.py --init_from=EleutherAI/gpt-neo-1.3B --start=FILE:prompt.txt --max_new_tokens=50

Options are --key=value overrides or config files, as in train.py (DEFAULTS below); the tokenizer comes from the
checkpoint's meta.json. On haiku data each sample starts after an end-of-text and stops at the next: one haiku per
sample. They are one batch with the KV cache, each printed as it stops (a single one token by token); same seed, same
samples.

--form constrains every sample to lines of so many syllables, of real words, ending where a phrase can end without
rhyming, with a season word (--season) and a cut (--cut) when asked (haikugpt/haiku/form.py). On a haiku checkpoint the
form is 5-7-5 and the season any; --form=free samples the model alone, which --haiku_report judges by the same rules.
"""

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from configurator import overrides
from haikugpt.checkpoint import check_name, load_checkpoint, load_pretrained, model_from_checkpoint
from haikugpt.files import one_line_errors, write_text
from haikugpt.haiku import verse
from haikugpt.haiku.form import FormConstraint, Lexicon, Particles, Rules, read_words
from haikugpt.labels import is_classifier
from haikugpt.run import dataset_dir, inference_device, read_meta
from haikugpt.texts import dedupe_key
from haikugpt.tokenizer import EOT, CharTokenizer, Tokenizer, gpt2_tokenizer, load_tokenizer
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
    user set (their value wins over a default). What they typed is checked first, then the model is loaded."""
    top_k, top_p = check_sampling(config["temperature"], config["top_k"], config["top_p"])
    if min(config["num_samples"], config["max_new_tokens"], config["particles"]) < 1:
        raise ValueError("num_samples, max_new_tokens and particles must be at least 1")
    form = None if config["form"] in (None, "free") else verse.parse_form(config["form"])
    if config["season"] not in (None, *verse.SEASONS, "any", "free"):
        raise ValueError(f"unknown season {config['season']!r}: choose {', '.join(verse.SEASONS)}, any or free")
    device, ctx = inference_device(config["device"], config["dtype"])
    if config["init_from"] != "resume":
        check_name(config["init_from"])
    start = config["start"]
    if start.startswith("FILE:"):  # the prompt from a file
        path = Path(start.removeprefix("FILE:")).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no prompt file {path} (from --start={start})")
        start = path.read_text(encoding="utf-8")
    user_words = read_words(Path(config["words"])) if config["words"] else []
    season_words = verse.read_season_words(Path(config["season_words"]) if config["season_words"] else None)
    model, tok, meta, data_dir = load_model(config["init_from"], config["out_dir"], device)
    if config["compile"]:
        for block in model.transformer.h:
            block.compile(dynamic=True)  # dynamic: a longer cache is not a new graph
    is_haiku = (meta or {}).get("dataset") == "haiku"
    form = verse.HAIKU if config["form"] is None and is_haiku else form
    season = config["season"] or ("any" if form is not None and is_haiku else "free")
    if form is None and (season != "free" or config["cut"]):
        rule = f"--season={season}" if season != "free" else "--cut=True"
        raise ValueError(f"{rule} is a rule of the form: give one (--form=5-7-5), or drop it for the model alone")
    prompt = tok.encode(start)
    if is_haiku or not start or form is not None:  # start after an end-of-text, as in training
        if tok.eot_id is not None and prompt[:1] != [tok.eot_id]:
            prompt = [tok.eot_id, *prompt]
        elif tok.eot_id is None and not prompt:
            prompt = tok.encode("\n")  # a char table without one: nanoGPT's own default start
    if len(prompt) > (block_size := model.config.block_size):  # the model could not see the rest anyway
        note(f"the prompt is {len(prompt)} tokens, longer than block_size {block_size}: keeping its last {block_size}")
        prompt = prompt[-block_size:]
    corpus = read_training_haiku(data_dir)
    lexicon, particles, enforced = None, None, ""
    if form is not None or config["haiku_report"]:
        gc.disable()  # while the lexicon and the constraint's tables are made: they would set off full collections
        alphabet = {c for c in tok.chars if len(c) == 1} if isinstance(tok, CharTokenizer) else None
        lexicon = Lexicon.load(extra=corpus.docs + user_words, alphabet=alphabet)
    if form is not None:
        kigo = {"free": None, "any": set().union(*season_words.values())}.get(season, season_words.get(season))
        constraint = FormConstraint(tok, Rules(form, lexicon, kigo, config["cut"]))
        enforced = f"{verse.format_form(form)}, real words, line ends (no function word, no rhyme)" + (
            f", a season word ({season})" * bool(kigo) + ", a cut" * config["cut"])  # fmt: skip
        if "form" in typed and config["max_new_tokens"] < constraint.rules.max_tokens():
            raise ValueError(f"form {config['form']} may take up to {constraint.rules.max_tokens()} tokens to finish; "
                             f"raise max_new_tokens to at least that")  # fmt: skip
        k = config["particles"] if config["temperature"] > 0 else 1  # greedy: one way to go
        states = constraint.rules.start(start, config["num_samples"] * k)
        particles = Particles(constraint, states, k, config["temperature"], config["seed"])  # k=1: a plain filter
    gc.freeze(), gc.enable()  # they live to the end: the collector need not walk them (a full collection, 0.1 s)

    stop_token, live = tok.eot_id if is_haiku or form is not None else None, config["num_samples"] == 1
    samples, unfinished, shown = [], [], ""  # unfinished: the numbers (from 1) of those that hit max_new_tokens
    with ctx:
        stream = stream_samples(model, tok, prompt, config["num_samples"], config["max_new_tokens"], live, particles,
                                stop_token=stop_token, temperature=config["temperature"], top_k=top_k, top_p=top_p,
                                generator=torch.Generator(device).manual_seed(config["seed"]))  # fmt: skip
        for text, done, stopped in stream:
            if live or done:  # a single sample as it grows, what is new since the last token; the others as they stop
                print(text[len(shown) :], end=f"\n{SEPARATOR}\n" if done else "", flush=True)
                shown = text if live else ""
            if done:
                samples.append(text)
                unfinished += [] if stopped else [len(samples)]
        scored = log_likelihood(model, tok, prompt, samples, stop_token) if config["haiku_report"] else None
    printed = "".join(f"{text}\n{SEPARATOR}\n" for text in samples)
    if form is not None and unfinished:
        note(f"samples {', '.join(map(str, unfinished))} of {len(samples)} did not finish the form "
             f"{verse.format_form(form)} within max_new_tokens={config['max_new_tokens']}")  # fmt: skip
    if config["haiku_report"]:
        report = verse.haiku_report(samples, corpus, form or verse.HAIKU, lexicon, enforced, season_words, scored)
        print(report)
        printed += report + "\n"
    if config["out_file"]:
        write_text(Path(config["out_file"]), printed)
    gc.unfreeze()
    return samples


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


def stream_samples(
    model: GPT, tok: Tokenizer, prompt: list[int], num_samples: int, max_new_tokens: int, live: bool = False,
    particles: Particles | None = None, **kw,
) -> Iterator[tuple[str, bool, bool]]:  # fmt: skip
    """Sample continuations of prompt as one batch (kw: model.stream's arguments): yield (text, True, stopped) for each
    sample as it stops (stopped: at the stop token), and with live (the text so far, False, False) after each token of
    the first. With particles (the logits filter) a sample is particles.k rows, one drawn by weight when all stop."""
    k, stop_token = particles.k if particles else 1, kw.get("stop_token")
    idx = torch.tensor([prompt] * num_samples * k, dtype=torch.long, device=model.lm_head.weight.device)  # (B, T)
    head = prompt[1:] if prompt[0] == tok.eot_id else prompt  # the prompt as a sample shows it
    rows: list[list[int]] = [[] for _ in range(num_samples * k)]
    stopped, waiting = [False] * num_samples * k, list(range(num_samples))
    for token in model.stream(idx, max_new_tokens, logits_filter=particles, **kw):
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
    """The summed log-probability and number of the samples' tokens after the prompt (and stop token), unfiltered."""
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


def read_training_haiku(data_dir: Path | None) -> verse.Corpus:
    """The training haiku and lines (deduplicated as prepare/haiku.py does), their source or why none, and the docs."""
    if data_dir is None or not (data_dir / "train.bin").is_file() or not (data_dir / "meta.json").is_file():
        return verse.Corpus("the checkpoint's training data folder was not found")
    meta, docs = read_meta(data_dir), []
    if (data_dir / "train.bin").stat().st_size <= 2 * MAX_CORPUS_TOKENS:
        text = load_tokenizer(meta).decode(np.fromfile(data_dir / "train.bin", dtype=np.uint16).tolist())
        docs = [doc for doc in text.split(EOT) if doc.strip()]  # the documents, between end-of-text ids
    if meta.get("dataset") != "haiku":
        return verse.Corpus(f"{data_dir} is not a haiku dataset", docs=docs)
    keys = {dedupe_key(doc) for doc in docs}
    lines = {dedupe_key(line) for doc in docs for line in verse.haiku_lines(doc)}
    return verse.Corpus(f"{len(keys):,} training haiku in {data_dir}", keys, lines, docs)


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    with one_line_errors():
        user = overrides(DEFAULTS, sys.argv[1:] if argv is None else argv, __doc__, (__file__,))
        sample({**DEFAULTS, **user}, set(user))


if __name__ == "__main__":
    main()
