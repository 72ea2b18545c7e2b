"""
Fine-tune a GPT to classify texts: a linear head on the hidden state of each text's last token (its end-of-text), all
weights trained (or LoRA adapters and the head). Keys, config files, overrides and outputs are train.py's plus the few
below (`python classify.py --help`); best.pt holds the best val macro F1. Every eval prints the val scores as a table;
out_dir/eval.json holds the kept model's (accuracy, macro_f1, majority_baseline, per_class, confusion[true][predicted]).

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

A language model or pretrained weights need the data in their vocabulary; bits per byte do not apply (the loss is
over labels). A text longer than block_size keeps its start and its end-of-text; micro-batches are right-padded with an
id past the data's vocabulary (the token table grows by a zero row where it has none), which the head never reads.
"""

import csv
import io
import math
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from haikugpt import labels, run
from haikugpt.checkpoint import build_checkpoint, checkpoint_path, load_checkpoint
from haikugpt.files import one_line_errors, write_json, write_text
from haikugpt.run import DTYPES, all_max, gather, inference_device, print0, setup_device, teardown_ddp, to_device
from haikugpt.texts import read_labelled, to_names
from haikugpt.tokenizer import load_tokenizer, same_vocabulary
from model import hold_frozen_in

DEFAULTS = dict(
    run.DEFAULTS,
    dataset="haiku_seasons",  # a labelled dataset from prepare/labelled.py: a folder name under data/, or a path
    init_from="scratch",  # 'scratch', 'resume', a train.py out_dir or .pt file, 'gpt2' ... 'gpt2-xl', a local HF folder
    # classification
    input="",  # with eval_only=True: judge out_dir's classifier (best.pt, else ckpt.pt) on this labelled CSV or JSONL
    predict="",  # label the texts of this file (.txt, .csv, .jsonl) with out_dir's classifier: <name>.predictions.csv
    text_column=None,  # the text column of input and predict files; None: as prepared, else text, sentence, ...
    label_column=None,  # the label column of input files; None: as prepared, else label, class, category, ...
)
MODEL_SHAPE = ("n_layer", "n_head", "n_embd", "block_size", "bias")


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
    run.pretrained_name(init_from)  # a Hub name, or a local Hugging Face folder
    return "pretrained"


def check_data(meta: dict, config: dict, kind: str, ckpt: dict | None, lm_ckpt: dict | None) -> None:
    """Refuse data whose token ids or labels mean something else to the model, before any weights are downloaded."""
    if ckpt is not None and not labels.is_classifier(ckpt):
        raise ValueError(f"{config['out_dir']} holds a language model (train.py's), not a classifier to resume; start "
                         f"one from it with --init_from={config['out_dir']} and another --out_dir")  # fmt: skip
    pretrained = config["init_from"] if kind == "pretrained" else None
    run.check_vocab(meta, ckpt and ckpt["meta"], pretrained, "python prepare/labelled.py --tokenizer gpt2")
    if ckpt is not None and ckpt["meta"].get("labels") != meta["labels"]:
        raise ValueError(f"the checkpoint's labels {ckpt['meta'].get('labels')} are not the dataset's {meta['labels']}")
    lm_meta = (lm_ckpt["meta"] or {"tokenizer": "gpt2", "vocab_size": 50257}) if lm_ckpt else meta  # nanoGPT's: GPT-2
    if not same_vocabulary(lm_meta, meta):
        raise ValueError(
            f"init_from={config['init_from']} was trained on a {lm_meta['tokenizer']} vocabulary of "
            f"{lm_meta['vocab_size']:,}, not the dataset's {meta['tokenizer']} vocabulary of {meta['vocab_size']:,}; "
            f"prepare the data in the language model's vocabulary (prepare/labelled.py --tokenizer "
            f"{lm_meta['tokenizer']}, on its corpus) or use --init_from=scratch"
        )


def train(config: dict, user: dict, ckpt: dict | None) -> None:
    # Everything checked in the order the user typed it: keys and values, then the names and files they point to
    # (model, checkpoint, dataset), then what those imply (vocabularies, labels, downloads).
    kind = init_kind(config["init_from"])
    data_dir, meta = run.find_dataset(config["dataset"])
    if "labels" not in meta:
        raise ValueError(f"{data_dir} holds no labels (it is a language-model dataset); prepare a labelled one with "
                         "`python prepare/labelled.py`")  # fmt: skip
    lm_ckpt = load_checkpoint(config["init_from"], best=True) if kind == "checkpoint" else None
    check_data(meta, config, kind, ckpt, lm_ckpt)

    # the classifier on this rank's device: a new head on a GPT (new, a language model's, OpenAI's), or the resumed one
    ranks, device, dtype, ctx, compiled = setup_device(config)
    pad = meta["vocab_size"]  # the padding id: the first past the data's vocabulary, so that no text holds it
    if ckpt is not None:
        model = labels.classifier_from_checkpoint(ckpt)
    else:
        gpt = run.init_gpt(config, pad + 1, lm_ckpt)
        for key in MODEL_SHAPE if kind != "scratch" else ():  # a config that describes the scratch control too
            if key in user and user[key] != getattr(gpt.config, key):
                raise ValueError(f"{key}={user[key]!r} differs from init_from={config['init_from']}'s {key}="
                                 f"{getattr(gpt.config, key)!r}; drop it, or use --init_from=scratch")  # fmt: skip
        labels.make_room(gpt, pad)
        model = labels.Classifier(gpt, len(meta["labels"]), pad, seed=config["seed"])
    block_size = model.config.block_size
    splits = {}
    for split in ("train", "val"):
        texts, label_ids = labels.read_split(data_dir, split, meta["eot_id"])
        texts, cut = labels.fit_block(texts, block_size)
        if cut:
            print0(f"note: {cut:,} of {len(texts):,} {split} texts are longer than block_size {block_size} tokens: "
                   "each keeps its start and its end-of-text")  # fmt: skip
        splits[split] = (texts, label_ids)
    (train_texts, train_labels), val = splits["train"], splits["val"]

    # how it runs: precision, compile, DDP; the optimizer; where a resumed run continues
    accum_steps = run.micro_steps(config["gradient_accumulation_steps"], ranks.world_size)
    if model.config.lora_rank:  # frozen weights in the training dtype: half the memory in bfloat16
        hold_frozen_in(model.gpt, DTYPES[dtype])
    model.to(device)
    optimizer = model.configure_optimizers(
        config["weight_decay"], config["learning_rate"], (config["beta1"], config["beta2"]), device.type
    )
    scaler, generator = run.start_run(config, optimizer, ckpt, ranks, device, dtype)
    iter_num, best_val_loss = (ckpt["iter_num"], ckpt["best_val_loss"]) if ckpt else (0, float("inf"))
    best_f1 = ckpt["best"]["value"] if ckpt else -1.0
    raw_model = model  # unwrapped and uncompiled: what is saved
    model = torch.compile(model) if compiled else model
    model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if ranks.ddp else model
    resolved = run.describe_run(config, raw_model, ranks, device, dtype, compiled, accum_steps)
    print0(f"texts per iteration: {accum_steps * ranks.world_size * config['batch_size']:,} = {ranks.world_size} ranks "
           f"x {accum_steps} micro-steps x {config['batch_size']}, of up to {block_size} tokens")  # fmt: skip
    majority = labels.majority_label(meta)

    @torch.no_grad()
    def evaluate() -> tuple[dict[str, float], dict]:
        """Loss and accuracy on eval_iters batches of training texts and on the whole val split, and val's scores."""
        model.eval()
        same_texts = torch.Generator().manual_seed(config["seed"] + run.EVAL_BATCHES_SEED)  # the same each eval
        rows = torch.randperm(len(train_texts), generator=same_texts)[: config["eval_iters"] * config["batch_size"]]
        out, sample = {}, ([train_texts[i] for i in rows], train_labels[rows])
        for split, (texts, label_ids) in (("train", sample), ("val", val)):
            logits = labels.logits_of(model, texts, pad, config["batch_size"], device, ctx)
            out[f"{split}/loss"] = F.cross_entropy(logits, torch.from_numpy(label_ids)).item()
            out[f"{split}/accuracy"] = (logits.argmax(1).numpy() == label_ids).mean().item()
        scores = labels.score_predictions(label_ids.tolist(), logits.argmax(1).tolist(), meta["labels"], majority)
        model.train()
        return {**out, "val/macro_f1": scores["macro_f1"]}, scores

    def save(step: int, best: bool) -> None:
        """ckpt.pt (and best.pt) with every rank's random streams, so a resumed run repeats this one exactly."""
        rng, sampler = gather(run.rng_state(device), ranks), gather(generator.get_state(), ranks)
        if ranks.rank == 0:
            ckpt = build_checkpoint(raw_model, config, meta, resolved, optimizer, scaler, step, best_val_loss,
                                    {"metric": "val/macro_f1", "value": best_f1}, rng, sampler)  # fmt: skip
            run.save_run(ckpt, best)

    log = run.Log(config, resolved, ranks, device, raw_model.flops_per_token())
    with run.StopSignal() as stop:
        for step in range(iter_num, config["max_iters"] + 1):
            last_step = step == config["max_iters"]
            lr = run.get_lr(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # evaluate, and save the checkpoint (best.pt: the best val macro F1)
            if step % config["eval_interval"] == 0 or last_step or config["eval_only"]:
                with log.paused():
                    log.check_losses()  # never save weights that a non-finite loss has touched
                    results, scores = evaluate()
                    print0(f"step {step}: " + ", ".join(f"{k.replace('/', ' ')} {v:.4f}" for k, v in results.items()))
                    print0(labels.format_scores(scores))
                    if not all(map(math.isfinite, results.values())):
                        sys.exit(f"error: eval is not finite at step {step}; stopping without saving")
                    log.record({"iter": step, **results, "lr": lr})
                    improved = results["val/macro_f1"] > best_f1
                    best_f1 = max(best_f1, results["val/macro_f1"])
                    best_val_loss = min(best_val_loss, results["val/loss"])
                    keep = improved or config["always_save_checkpoint"] or last_step
                    if keep and step > iter_num and not config["eval_only"]:  # at the start nothing has changed
                        save(step, best=improved)
            if last_step or config["eval_only"]:
                break

            # forward, backward and update, with gradient accumulation over micro-steps (DDP syncs on the last one)
            loss_sum, tokens = torch.zeros((), device=device), 0
            for micro_step in range(accum_steps):  # batch_size random training texts, right-padded: x (B, T), y (B,)
                rows = torch.randint(len(train_texts), (config["batch_size"],), generator=generator).tolist()
                x = to_device(labels.pad_batch([train_texts[i] for i in rows], pad), device)
                y = to_device(torch.from_numpy(train_labels[rows]), device)
                no_sync = ranks.ddp and micro_step < accum_steps - 1
                with model.no_sync() if no_sync else nullcontext():
                    with ctx:
                        _, loss = model(x, y)
                    scaler.scale(loss / accum_steps).backward()
                loss_sum += loss.detach()
                tokens += x.numel()
            scaler.unscale_(optimizer)
            max_norm = config["grad_clip"] if config["grad_clip"] > 0 else float("inf")  # inf: measure, not clip
            grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), max_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

            log.add(step, loss_sum / accum_steps, tokens)
            if step % config["log_interval"] == 0:
                log.write_line(step, grad_norm, lr)
            if all_max(stop.signum != 0, ranks):
                log.check_losses()
                print0(f"{stop.name()}: stopping after step {step}")
                save(step + 1, best=False)
                break
    log.close()
    if ranks.rank == 0 and not config["eval_only"]:  # the kept checkpoint (best.pt, else ckpt.pt) on val: eval.json
        path = checkpoint_path(config["out_dir"], best=True)
        kept = load_checkpoint(path)
        model = labels.classifier_from_checkpoint(kept, device).eval()
        logits = labels.logits_of(model, val[0], model.pad_id, config["batch_size"], device, ctx)
        scores = labels.score_predictions(val[1].tolist(), logits.argmax(1).tolist(), meta["labels"], majority)
        out = path.parent / "eval.json"
        write_json(out, {"checkpoint": path.name, "step": kept["iter_num"], "split": "val", **scores})
        print0(f"kept {path} (step {kept['iter_num']}): val accuracy {scores['accuracy']:.3f} (majority baseline "
               f"{scores['majority_baseline']:.3f}), macro F1 {scores['macro_f1']:.3f}; wrote {out}")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# A trained classifier at work: --eval_only --input=FILE scores it on a labelled file, --predict=FILE labels texts


def score_or_label_file(config: dict) -> None:
    """Score out_dir's classifier on a labelled file (input), or label a file's texts (predict)."""
    if config["input"] and config["predict"]:
        raise ValueError("give --input (with --eval_only=True) or --predict, not both")
    if config["input"] and not config["eval_only"]:
        raise ValueError("--input is a file to judge a trained classifier on: add --eval_only=True (to train on a "
                         "file, prepare it with `python prepare/labelled.py --input FILE`)")  # fmt: skip
    path = Path(config["input"] or config["predict"])
    if not path.is_file():
        raise FileNotFoundError(f"--{'input' if config['input'] else 'predict'}={path}: no such file")
    device, ctx = inference_device(config["device"], config["dtype"])
    ckpt_path = checkpoint_path(config["out_dir"], best=True)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"no classifier checkpoint at {ckpt_path}; train one with `python classify.py CONFIG "
                                f"--out_dir={config['out_dir']}`, or pass the checkpoint file as out_dir")  # fmt: skip
    ckpt = load_checkpoint(ckpt_path)
    if not labels.is_classifier(ckpt):
        raise ValueError(f"{ckpt_path} holds a language model, not a classifier; train one from it with "
                         f"`python classify.py --init_from={config['out_dir']} ...`")  # fmt: skip
    meta, names = ckpt["meta"], ckpt["meta"]["labels"]
    columns = {k: config[k] or meta.get(k) for k in ("text_column", "label_column")}  # else as the data was read
    file = read_labelled(path, **columns, need_labels=bool(config["input"]))
    named = to_names(file.labels, names, file.base) if config["input"] else []
    if None in named:
        raise ValueError(f"{path}: label {file.labels[named.index(None)]!r} was never seen in training (the classifier "
                         f"knows {', '.join(names)})")  # fmt: skip
    tok = load_tokenizer(meta)
    try:  # each text's ids and its end-of-text, as prepare/labelled.py writes them
        texts = [np.append(tok.encode_array(text), tok.eot_id).astype(np.int64) for text in file.texts]
    except ValueError as e:  # a character the char table lacks
        raise ValueError(f"{path}: {e}; this classifier reads only the characters it was trained on") from None
    model = labels.classifier_from_checkpoint(ckpt, device).eval()
    texts = labels.fit_block(texts, model.config.block_size)[0]
    logits = labels.logits_of(model, texts, model.pad_id, config["batch_size"], device, ctx)
    out_dir = ckpt_path.parent
    if config["predict"]:
        probs, ids = F.softmax(logits, dim=-1).max(dim=-1)
        out, rows = out_dir / f"{path.stem}.predictions.csv", io.StringIO()
        csv.writer(rows).writerows([("text", "label", "probability"), *((text, names[i], f"{p:.4f}") for text, i, p in
                                    zip(file.texts, ids.tolist(), probs.tolist()))])  # fmt: skip
        write_text(out, rows.getvalue())
        counts = ", ".join(f"{(ids == i).sum().item():,} {name}" for i, name in enumerate(names))
        print(f"wrote {out}: {len(file.texts):,} texts ({counts})")
        return
    true = [names.index(label) for label in named]
    scores = labels.score_predictions(true, logits.argmax(1).tolist(), names, labels.majority_label(meta))
    print(labels.format_scores(scores))
    write_json(out_dir / f"eval_{path.stem}.json", {"checkpoint": str(ckpt_path), "input": str(path), **scores})
    print(f"wrote {out_dir / f'eval_{path.stem}.json'}")


def main(argv: list[str] | None = None) -> None:
    with one_line_errors():
        config, user, ckpt = run.read_config(DEFAULTS, sys.argv[1:] if argv is None else argv, __doc__, __file__)
        if config["input"] or config["predict"]:
            score_or_label_file(config)
        else:
            train(config, user, ckpt)  # returns having dropped the model, so DDP leaves cleanly
    teardown_ddp()


if __name__ == "__main__":
    main()
