"""
Fine-tune a GPT to classify texts, judged by accuracy, precision, recall and F1: train.py's GPT with a linear head on
the hidden state of each text's last token (its end-of-text), all weights trained (or LoRA adapters and the head).
Keys, config files and overrides are train.py's (trainer.py's DEFAULTS) plus the few below; `python classify.py
--help` lists them all.

    python prepare/labelled.py --tokenizer=char          # the embedded haiku by season -> data/haiku_seasons_char
    python classify.py config/classify_haiku_seasons.py  # from train.py's char language model, out-haiku-char
    python classify.py config/classify_haiku_seasons.py --init_from=scratch --out_dir=out-seasons-scratch  # control
    python classify.py --init_from=resume --out_dir=out-seasons --max_iters=2000    # continue a run
    python classify.py --out_dir=out-seasons --eval_only=True --input=mine.csv      # judge it on a labelled file
    python classify.py --out_dir=out-seasons --predict=new.txt       # label texts -> out-seasons/new.predictions.csv
    python prepare/labelled.py --tokenizer=gpt2 && python classify.py --dataset=haiku_seasons_gpt2 --init_from=gpt2 \
        --out_dir=out-seasons-gpt2 --block_size=64 --learning_rate=5e-5 --max_iters=600   # GPT-2 (one GPU)
    python classify.py ... --init_from=EleutherAI/gpt-neo-1.3B --lora_rank=16             # GPT-Neo with LoRA
    torchrun --standalone --nproc_per_node=8 classify.py ...      # DDP, as train.py

init_from: scratch; resume; a train.py out_dir or checkpoint file (its language model is the starting point, and the
data must be in its vocabulary: prepare/labelled.py --tokenizer char or bpe gives the embedded corpus prepare/haiku.py's
vocabularies); gpt2 ... gpt2-xl, EleutherAI/gpt-neo-*, or a local Hugging Face folder (data prepared with --tokenizer
gpt2). Each text is a sequence of at most block_size tokens (a longer one keeps its start and its end-of-text);
micro-batches are right-padded to their longest text with an id past the data's vocabulary (the token table grows
by a zero row where it has none), which the head never reads.

Outputs in out_dir: ckpt.pt, best.pt (the best val macro F1), config.json and metrics.jsonl as train.py's, and
eval.json: the kept model's accuracy, macro_f1, majority_baseline (always answering the most common training label),
per_class precision, recall, F1 and support, and the confusion matrix (confusion[true][predicted]) on the val split.
Every eval prints them as a table. `python export.py --out_dir=out-seasons` writes a GPT2ForSequenceClassification
folder for transformers (BPE checkpoints only, as for language models).
"""

import csv
import io
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import ddp
import lora
import trainer
from checkpoint import checkpoint_path, load_checkpoint
from classifier import (
    Classifier,
    encode,
    fit_block,
    from_checkpoint,
    is_classifier,
    judge,
    lm_from_checkpoint,
    logits_of,
    make_room,
    pad_batch,
    pad_id,
    table,
)
from data import find_dataset, read_meta, to_device
from ddp import print0
from device import autocast, resolve_device, resolve_dtype
from files import error_line, write_json, write_text
from hf import check_name
from labels import read_labelled, read_split, to_names
from model import GPT, GPTConfig
from tokenizer import load_tokenizer, same_vocabulary

DEFAULTS = dict(
    trainer.DEFAULTS,
    dataset="haiku_seasons",  # a labelled dataset from prepare/labelled.py: a folder name under data/, or a path
    init_from="scratch",  # 'scratch', 'resume', a train.py out_dir or .pt file, 'gpt2' ... 'gpt2-xl', a local HF folder
    # classification
    input="",  # with eval_only=True: judge out_dir's classifier (best.pt, else ckpt.pt) on this labelled CSV or JSONL
    predict="",  # label the texts of this file (.txt, .csv, .jsonl) with out_dir's classifier: <name>.predictions.csv
    text_column=None,  # the text column of input and predict files; None: as prepared, else text, sentence, ...
    label_column=None,  # the label column of input files; None: as prepared, else label, class, category, ...
)
SOURCES = (__file__, trainer.__file__)  # where --help finds each key's comment
MODEL_SHAPE = ("n_layer", "n_head", "n_embd", "block_size", "bias")  # trainer.SHAPE_KEYS less LoRA's

Split = tuple[list[np.ndarray], np.ndarray]  # each text's token ids (ending with end-of-text), and the label ids


# ---------------------------------------------------------------------------------------------------------------------
# The model init_from asks for


def init_kind(init_from: str) -> str:
    """What init_from names, checked to exist: 'scratch', 'resume', 'checkpoint' (a train.py out_dir or checkpoint
    file) or 'pretrained' (a Hugging Face Hub name or a local Hugging Face folder)."""
    if init_from in ("scratch", "resume"):
        return init_from
    path = Path(init_from).expanduser()
    if path.is_file() or any((path / name).is_file() for name in ("ckpt.pt", "best.pt")):
        return "checkpoint"
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"init_from={init_from} is a folder with no checkpoint (ckpt.pt, best.pt) and "
                                "no Hugging Face config.json; train a language model there with train.py")  # fmt: skip
    check_name(init_from)  # a Hub name, or a local Hugging Face folder
    return "pretrained"


def check_vocab(meta: dict, config: dict, kind: str, ckpt: dict | None, lm_ckpt: dict | None) -> None:
    """Refuse data whose token ids or labels mean something else to the model, before any weights are downloaded."""
    if ckpt is not None and not is_classifier(ckpt):
        raise ValueError(f"{config['out_dir']} holds a language model (train.py's), not a classifier to resume; start "
                         f"one from it with --init_from={config['out_dir']} and another --out_dir")  # fmt: skip
    pretrained = config["init_from"] if kind == "pretrained" else None
    ckpt_meta = (ckpt["meta"] or {}) if ckpt else None
    trainer.check_vocab(meta, ckpt_meta, pretrained, "python prepare/labelled.py --tokenizer gpt2")
    if ckpt is not None and ckpt["meta"].get("labels") != meta["labels"]:
        raise ValueError(f"the checkpoint's labels {ckpt['meta'].get('labels')} are not the dataset's {meta['labels']}")
    if lm_ckpt is not None:
        lm_meta = lm_ckpt["meta"] or {"tokenizer": "gpt2", "vocab_size": 50257}  # nanoGPT's checkpoints: GPT-2 BPE
        if not same_vocabulary(lm_meta, meta):
            raise ValueError(
                f"init_from={config['init_from']} was trained on a {lm_meta['tokenizer']} vocabulary of "
                f"{lm_meta['vocab_size']:,}, not the dataset's {meta['tokenizer']} vocabulary of "
                f"{meta['vocab_size']:,}; prepare the data in the language model's vocabulary (prepare/labelled.py "
                f"--tokenizer {lm_meta['tokenizer']}, on its corpus) or use --init_from=scratch"
            )


def init_model(config: dict, user: dict, kind: str, ckpt: dict | None, lm_ckpt: dict | None, meta: dict) -> Classifier:
    """A new classifier (a GPT from scratch, a language model's or OpenAI's, and a new head), or the resumed one."""
    if kind == "resume":
        # dropout is the one model setting a resumed run may change
        ckpt["model_args"].update(dropout=config["dropout"], lora_dropout=config["lora_dropout"])
        return from_checkpoint(ckpt)
    pad = pad_id(meta)
    if kind == "scratch":
        shape = {k: config[k] for k in (*MODEL_SHAPE, "dropout")}
        gpt = GPT(GPTConfig(vocab_size=math.ceil((pad + 1) / 64) * 64, **shape), seed=config["seed"])
    elif kind == "checkpoint":
        lm_ckpt["model_args"]["dropout"] = config["dropout"]
        gpt = lm_from_checkpoint(lm_ckpt)
    else:
        gpt = GPT.from_pretrained(config["init_from"], dropout=config["dropout"], block_size=config["block_size"])
    for key in MODEL_SHAPE:  # a config that also describes the scratch control must describe this model
        if key in user and user[key] != getattr(gpt.config, key):
            raise ValueError(f"{key}={user[key]!r} differs from init_from={config['init_from']}'s "
                             f"{key}={getattr(gpt.config, key)!r}; drop it, or use --init_from=scratch")  # fmt: skip
    make_room(gpt, pad)
    lora.adapt(gpt, config)  # with lora_rank, every other weight of the GPT is frozen; the new head trains in full
    return Classifier(gpt, len(meta["labels"]), pad, seed=config["seed"])


# ---------------------------------------------------------------------------------------------------------------------
# Training


def setup(config: dict, user: dict, ckpt: dict | None) -> tuple[trainer.Run, dict[str, Split]]:
    """Everything checked in the order the user typed it: keys and values, then the names and files they point to
    (model, checkpoint, dataset), then what those imply (vocabularies, labels, downloads)."""
    kind = init_kind(config["init_from"])
    folder = find_dataset(config["dataset"])
    meta = read_meta(folder)
    if "labels" not in meta:
        raise ValueError(f"{folder} holds no labels (it is a language-model dataset); prepare a labelled one with "
                         "`python prepare/labelled.py`")  # fmt: skip
    lm_ckpt = load_checkpoint(config["init_from"], best=True) if kind == "checkpoint" else None
    check_vocab(meta, config, kind, ckpt, lm_ckpt)
    ranks, device = ddp.setup(config["backend"], config["device"])
    model = init_model(config, user, kind, ckpt, lm_ckpt, meta)
    splits = {}
    for name in ("train", "val"):
        texts, labels = read_split(folder, name, meta["eot_id"])
        texts, cut = fit_block(texts, model.config.block_size)
        if cut:
            print0(f"note: {cut:,} of {len(texts):,} {name} texts are longer than block_size {model.config.block_size}"
                   " tokens: each keeps its start and its end-of-text")  # fmt: skip
        splits[name] = (texts, labels)
    return trainer.setup(config, ckpt, model, meta, ranks, device), splits


def majority(meta: dict) -> int:
    """The id of the most common label in the training split (the first of equals)."""
    counts = meta["label_counts"]["train"]
    return max(range(len(meta["labels"])), key=lambda i: counts.get(meta["labels"][i], 0))


@torch.no_grad()
def evaluate(model, splits: dict[str, Split], run: trainer.Run) -> dict[str, float]:
    """Loss and accuracy on a fixed sample of training texts (eval_iters batches) and on the whole val split, whose
    macro F1 picks best.pt; the val split's figures are printed as a table."""
    model.eval()
    pad, size = run.raw_model.pad_id, run.config["batch_size"]
    sample = torch.Generator().manual_seed(run.config["seed"] + trainer.EVAL_BATCHES_SEED)  # the same texts each time
    train_texts, train_labels = splits["train"]
    rows = torch.randperm(len(train_texts), generator=sample)[: run.config["eval_iters"] * size].tolist()
    out = {}
    for name, (texts, labels) in (
        ("train", ([train_texts[i] for i in rows], train_labels[rows])),
        ("val", splits["val"]),
    ):
        logits = logits_of(model, texts, pad, size, run.device, run.ctx)
        out[f"{name}/loss"] = F.cross_entropy(logits, torch.from_numpy(labels)).item()
        out[f"{name}/accuracy"] = (logits.argmax(1).numpy() == labels).mean().item()
    report = judge(labels.tolist(), logits.argmax(1).tolist(), run.meta["labels"], majority(run.meta))  # val's
    print0(table(report))
    model.train()
    return {**out, "val/macro_f1": report["macro_f1"]}


def train(config: dict, user: dict, ckpt: dict | None) -> None:
    run, splits = setup(config, user, ckpt)
    texts, labels = splits["train"]

    def batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(len(texts), (config["batch_size"],), generator=generator).tolist()
        x = pad_batch([texts[i] for i in rows], run.raw_model.pad_id, run.device)
        return x, to_device(torch.from_numpy(labels[rows]), run.device)

    trainer.fit(run, batch, lambda model: evaluate(model, splits, run), "val/macro_f1", maximize=True, padded=True)
    if not config["eval_only"] and run.ranks.rank == 0:
        keep_report(run, splits["val"])


def keep_report(run: trainer.Run, val: Split) -> None:
    """Judge the kept checkpoint (best.pt, else ckpt.pt) on the val split again and write out_dir/eval.json."""
    path = checkpoint_path(run.config["out_dir"], best=True)
    ckpt = load_checkpoint(path)
    model = from_checkpoint(ckpt, run.device).eval()
    logits = logits_of(model, val[0], model.pad_id, run.config["batch_size"], run.device, run.ctx)
    report = judge(val[1].tolist(), logits.argmax(1).tolist(), run.meta["labels"], majority(run.meta))
    out = path.parent / "eval.json"
    write_json(out, {"checkpoint": path.name, "step": ckpt["iter_num"], "split": "val", **report})
    print0(f"kept {path} (step {ckpt['iter_num']}): val accuracy {report['accuracy']:.3f} (majority baseline "
           f"{report['majority_baseline']:.3f}), macro F1 {report['macro_f1']:.3f}; wrote {out}")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Using a trained classifier: --eval_only --input=FILE and --predict=FILE


def load_classifier(out_dir: str) -> dict:
    path = checkpoint_path(out_dir, best=True)
    if not path.is_file():
        raise FileNotFoundError(f"no classifier checkpoint at {path}; train one with `python classify.py CONFIG "
                                f"--out_dir={out_dir}`, or pass the checkpoint file as out_dir")  # fmt: skip
    ckpt = load_checkpoint(path)
    if not is_classifier(ckpt):
        raise ValueError(f"{path} holds a language model, not a classifier; train one from it with "
                         f"`python classify.py --init_from={out_dir} ...`")  # fmt: skip
    return ckpt


def use(config: dict) -> None:
    """Judge out_dir's classifier on a labelled file (input) or label a file's texts (predict)."""
    if config["input"] and config["predict"]:
        raise ValueError("give --input (with --eval_only=True) or --predict, not both")
    if config["input"] and not config["eval_only"]:
        raise ValueError("--input is a file to judge a trained classifier on: add --eval_only=True (to train on a "
                         "file, prepare it with `python prepare/labelled.py --input FILE`)")  # fmt: skip
    path = Path(config["input"] or config["predict"])
    if not path.is_file():
        raise FileNotFoundError(f"--{'input' if config['input'] else 'predict'}={path}: no such file")
    device = resolve_device(config["device"])
    ctx = autocast(device, resolve_dtype(config["dtype"], device))
    ckpt = load_classifier(config["out_dir"])
    meta, names = ckpt["meta"], ckpt["meta"]["labels"]
    columns = {k: config[k] or meta.get(k) for k in ("text_column", "label_column")}  # else as the data was read
    file = read_labelled(path, **columns, need_labels=bool(config["input"]))
    labels = to_names(file.labels, names, file.base) if config["input"] else []
    if None in labels:
        unseen = file.labels[labels.index(None)]
        raise ValueError(f"{path}: label {unseen!r} was never seen in training (the classifier knows "
                         f"{', '.join(names)})")  # fmt: skip
    tok = load_tokenizer(meta)
    try:
        texts = encode(tok, file.texts)
    except ValueError as e:  # a character the char table lacks
        raise ValueError(f"{path}: {e}; this classifier reads only the characters it was trained on") from None
    model = from_checkpoint(ckpt, device).eval()
    logits = logits_of(model, fit_block(texts, model.config.block_size)[0], model.pad_id, config["batch_size"],
                       device, ctx)  # fmt: skip
    out_dir = checkpoint_path(config["out_dir"]).parent
    if config["predict"]:
        return write_predictions(out_dir / f"{path.stem}.predictions.csv", file.texts, logits, names)
    report = judge([names.index(label) for label in labels], logits.argmax(1).tolist(), names, majority(meta))
    print(table(report))
    write_json(out_dir / f"eval_{path.stem}.json", {"checkpoint": str(checkpoint_path(config["out_dir"], best=True)),
                                                     "input": str(path), **report})  # fmt: skip
    print(f"wrote {out_dir / f'eval_{path.stem}.json'}")


def write_predictions(path: Path, texts: list[str], logits: torch.Tensor, names: list[str]) -> None:
    """A CSV of each text, its predicted label and that label's probability."""
    probs, ids = F.softmax(logits, dim=-1).max(dim=-1)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label", "probability"])
    writer.writerows((text, names[i], f"{p:.4f}") for text, i, p in zip(texts, ids.tolist(), probs.tolist()))
    write_text(path, out.getvalue())
    counts = ", ".join(f"{(ids == i).sum().item():,} {name}" for i, name in enumerate(names))
    print(f"wrote {path}: {len(texts):,} texts ({counts})")


def classify(argv: list[str]) -> None:
    config, user, ckpt = trainer.read_config(DEFAULTS, argv, __doc__, SOURCES)
    if config["input"] or config["predict"]:
        use(config)
    else:
        train(config, user, ckpt)


def main(argv: list[str] | None = None) -> None:
    try:
        classify(sys.argv[1:] if argv is None else argv)  # returns having dropped the model, so DDP leaves cleanly
    except (ValueError, OSError, RuntimeError) as e:
        sys.exit(f"error: {error_line(e)}" if ddp.RANK == 0 else 1)
    ddp.teardown()


if __name__ == "__main__":
    main()
