"""What train.py and classify.py share, as plain functions their loops call: the training keys and their defaults, the
config a run resumes with, the model that init_from names, the datasets, the device, the learning-rate schedule, the
log line, checkpoints that resume exactly, and preemption.

A resumed run (init_from='resume') starts from the config stored in its checkpoint and applies the command line over
it, so `python train.py --init_from=resume --out_dir=out-haiku-bpe --max_iters=2000` continues a run.
"""

import dataclasses
import json
import math
import os
import pickle
import random
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

import configurator
from haikugpt.checkpoint import check_name, load_checkpoint, load_pretrained, model_from_checkpoint, save_checkpoint
from haikugpt.device import Ranks, all_mean, peak_flops, print0
from haikugpt.files import READ_ONLY, ROOT, WriteError, atomic_write, write_json
from haikugpt.tokenizer import load_tokenizer, same_vocabulary
from model import GPT, LORA_TARGETS, GPTConfig, add_adapters, padded_vocab

DEFAULTS = dict(
    # I/O
    out_dir="out",
    eval_interval=2000,  # eval (and save) every this many steps, and at the last one
    log_interval=1,  # log the training loss every this many steps
    eval_iters=200,  # batches per split in each eval
    eval_only=False,  # eval once, then exit
    always_save_checkpoint=True,  # save ckpt.pt at every eval, not only when the eval improves
    init_from="scratch",  # 'scratch', 'resume' (from out_dir), 'gpt2', 'gpt2-medium', ..., or a local HF folder
    seed=1337,  # the weights' init, the data order and dropout all follow from it
    # wandb
    wandb_log=False,  # log to wandb too (imported only then)
    wandb_project="owt",
    wandb_run_name="gpt2",
    # data
    dataset="openwebtext",  # a folder name under data/, or a path to a folder with train.bin, val.bin, meta.json
    gradient_accumulation_steps=5 * 8,  # micro-steps per step, in total over all DDP ranks, as in nanoGPT
    batch_size=12,  # sequences per rank and micro-step
    block_size=1024,  # tokens per sequence (a pretrained model's position table is cropped to it)
    # model (from scratch; resume takes the checkpoint's, GPT-2 inits take OpenAI's)
    n_layer=12,
    n_head=12,
    n_embd=768,
    dropout=0.0,  # 0 for pretraining, 0.1+ for fine-tuning; the one model key a resumed run may change
    bias=True,  # biases in Linear and LayerNorm layers, as GPT-2 has
    # LoRA: train low-rank adapters beside frozen weights instead of every weight (model.py: add_adapters)
    lora_rank=0,  # 0: fine-tune every weight; 8 or 16: adapters of that rank on lora_targets, the rest frozen
    lora_alpha=16.0,  # the adapters' output is scaled by lora_alpha / lora_rank
    lora_dropout=0.0,  # dropout on the adapters' input
    lora_targets=",".join(LORA_TARGETS),  # each block's projections that get adapters
    # AdamW
    learning_rate=6e-4,  # the peak, reached after warmup_iters
    max_iters=600000,  # total optimizer steps
    weight_decay=1e-1,  # on matrices and embeddings only
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,  # clip the global gradient norm to this; 0 disables clipping
    # learning rate: linear warmup, then cosine decay to min_lr at lr_decay_iters
    decay_lr=True,  # False: a constant learning_rate
    warmup_iters=2000,
    lr_decay_iters=600000,
    min_lr=6e-5,
    # system
    backend=None,  # DDP backend: None picks nccl on CUDA, gloo elsewhere
    device=None,  # None picks cuda, then mps, then cpu; or 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype=None,  # 'float32', 'bfloat16' or 'float16'; None: bfloat16 where the device runs it natively
    compile=None,  # torch.compile the model; None: on where it helps (CUDA)
)
POSITIVE_KEYS = ("batch_size", "block_size", "eval_interval", "log_interval", "eval_iters")
SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "lora_rank", "lora_alpha", "lora_targets")
DATA_DIR = ROOT / "data"  # where the prepare scripts write datasets, data/<name>
TRAIN_BATCHES_SEED, EVAL_BATCHES_SEED = 1_000, 2_000  # seed offsets of the random streams (+ rank on each DDP rank)


# ---------------------------------------------------------------------------------------------------------------------
# The config: the user's, checked in the order they typed it; what a run resolves is a separate record


def read_config(defaults: dict, argv: list[str], doc: str, source: str = "") -> tuple[dict, dict, dict | None]:
    """The user's config, the keys they set themselves, and the checkpoint when resuming (its config is the base,
    and its model's shape is kept: keys that differ are refused, each named). source: the script whose comments
    --help shows beside this file's."""
    user = configurator.overrides(defaults, argv, doc, (__file__, source) if source else (__file__,))
    config = {**defaults, **user}
    check_values(config)
    if config["init_from"] != "resume":
        return config, user, None
    ckpt = load_checkpoint(config["out_dir"])
    saved = {k: v for k, v in ckpt["config"].items() if k in defaults}
    config = {**defaults, **saved, **user, "init_from": "resume"}
    check_values(config)
    kept = {k: ckpt["model_args"].get(k, getattr(GPTConfig(), k)) for k in SHAPE_KEYS}
    kept["lora_targets"] = ",".join(kept["lora_targets"])
    differ = [k for k in SHAPE_KEYS if k in user and user[k] != kept[k]]
    if differ:
        detail = ", ".join(f"{k}={user[k]!r} differs from the checkpoint's {k}={kept[k]!r}" for k in differ)
        drop = " and ".join(f"--{k}" for k in differ)
        raise ValueError(f"{detail}: a resumed run keeps its model's shape; drop {drop}, or train a new model with "
                         "another out_dir")  # fmt: skip
    changed = [f"{k} {saved[k]!r} -> {v!r}" for k, v in user.items() if k != "init_from" and saved.get(k, v) != v]
    print0(
        f"resuming {config['out_dir']} at step {ckpt['iter_num']}"
        + (f"; changed: {'; '.join(changed)}" if changed else "")
    )
    return config, user, ckpt


def check_values(config: dict) -> None:
    """Refuse values that cannot work, before any file is read."""
    for key in (*POSITIVE_KEYS, "gradient_accumulation_steps"):
        if config[key] < 1:
            raise ValueError(f"{key}={config[key]} must be at least 1")
    if config["decay_lr"] and config["warmup_iters"] > config["lr_decay_iters"]:
        raise ValueError(f"warmup_iters={config['warmup_iters']} exceeds lr_decay_iters={config['lr_decay_iters']}")
    if config["n_embd"] % config["n_head"]:
        raise ValueError(f"n_embd={config['n_embd']} must be divisible by n_head={config['n_head']}")
    if config["dtype"] not in (None, "float32", "bfloat16", "float16"):
        raise ValueError(f"dtype={config['dtype']!r}: expected float32, bfloat16 or float16 (or None for the default)")
    for key in ("dropout", "lora_dropout"):
        if not 0 <= config[key] < 1:
            raise ValueError(f"{key}={config[key]} must be in [0, 1)")
    if config["lora_rank"] < 0:
        raise ValueError(f"lora_rank={config['lora_rank']} must be 0 (no adapters: every weight trains) or more")
    unknown = [t for t in config["lora_targets"].split(",") if t not in LORA_TARGETS]
    if unknown:
        raise ValueError(f"lora_targets: {unknown[0]!r} is not a projection of the model; choose from "
                         f"{', '.join(LORA_TARGETS)}")  # fmt: skip


def check_vocab(meta: dict, ckpt_meta: dict | None, pretrained: str | None, prepare: str) -> None:
    """Refuse data whose token ids mean something else to the model, before any weights are read or downloaded: a
    checkpoint's vocabulary must be the data's, and pretrained weights read GPT-2 BPE (prepare: the command that
    makes GPT-2 BPE data)."""
    data = f"the dataset's {meta['tokenizer']} vocabulary of {meta['vocab_size']}"
    if ckpt_meta is not None and not same_vocabulary(ckpt_meta, meta):
        raise ValueError(f"the checkpoint was trained on a different vocabulary than {data}")
    if pretrained and meta["tokenizer"] != "gpt2":
        raise ValueError(f"{pretrained} reads GPT-2 BPE tokens but {data} is not GPT-2's; prepare GPT-2 BPE data "
                         f"(`{prepare}`) or start from scratch with --init_from=scratch")  # fmt: skip


def pretrained_name(init_from: str) -> str | None:
    """init_from when it names pretrained weights (checked to exist: a Hub name or a Hugging Face folder), else None."""
    if init_from in ("scratch", "resume"):
        return None
    check_name(init_from)
    return init_from


def init_gpt(config: dict, vocab_size: int, lm_ckpt: dict | None = None) -> GPT:
    """The GPT a new run starts from: a fresh one for init_from=scratch (vocab_size padded), a language model's
    checkpoint (lm_ckpt), or pretrained weights; with LoRA adapters, and the rest frozen, when lora_rank says so."""
    if config["init_from"] == "scratch":
        shape = {k: config[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "bias", "dropout")}
        model = GPT(GPTConfig(vocab_size=padded_vocab(vocab_size), **shape), seed=config["seed"])
    elif lm_ckpt is not None:
        lm_ckpt["model_args"]["dropout"] = config["dropout"]
        model = model_from_checkpoint(lm_ckpt)
    else:
        model = load_pretrained(config["init_from"], dropout=config["dropout"], block_size=config["block_size"])
    if config["lora_rank"]:
        lora = {k: config[k] for k in ("lora_rank", "lora_alpha", "lora_dropout")}
        add_adapters(model, config["seed"], **lora, lora_targets=tuple(config["lora_targets"].split(",")))
    return model


def describe_run(config: dict, model, ranks: Ranks, device, dtype: str, compiled: bool, accum: int) -> dict:
    """What the run resolved from the user's config (device, dtype, compile, ranks, the model's shape): printed after
    the config itself, as a config file, and returned for config.json and the checkpoints."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    resolved = {"device": str(device), "dtype": dtype, "compile": compiled, "ranks": ranks.world_size,
                "micro_steps_per_rank": accum, "parameters": model.num_params(), "trainable": trainable,
                "model": dataclasses.asdict(model.config)}  # fmt: skip
    lines = [f"{k} = {v!r}" for k, v in config.items()]
    lines.append("# resolved: " + ", ".join(f"{k} {v!r}" for k, v in resolved.items() if k != "model"))
    lines.append("# model: " + ", ".join(f"{k} {v!r}" for k, v in resolved["model"].items()))
    frozen = trainable < sum(p.numel() for p in model.parameters())  # LoRA
    lines.append(f"{model.num_params() / 1e6:.2f}M parameters" + f", {trainable / 1e6:.2f}M of them trained" * frozen)
    print0("\n".join(lines))
    return resolved


# ---------------------------------------------------------------------------------------------------------------------
# Datasets: a folder with train.bin and val.bin (uint16 token ids, documents separated by the end-of-text id) and
# meta.json (tokenizer, vocab_size, end-of-text id, the char table or the learnt BPE), as prepare/ writes them


def dataset_dir(name: str) -> Path | None:
    """The folder of dataset name: a path, data/<name> in the current directory, or data/<name> in the repository."""
    return next((d for d in (Path(name).expanduser(), Path("data") / name, DATA_DIR / name) if d.is_dir()), None)


def find_dataset(name: str) -> Path:
    """The dataset's folder, with both splits; an error naming the command that prepares it if it is missing."""
    folder = dataset_dir(name)
    if folder is None or not (folder / "train.bin").is_file():
        raise FileNotFoundError(f"dataset {name!r} is not prepared (no {DATA_DIR / name / 'train.bin'}); run "
                                f"`{prepare_command(name)}`")  # fmt: skip
    if not (folder / "val.bin").is_file():
        raise FileNotFoundError(f"{folder} has train.bin but no val.bin; rerun its prepare script")
    return folder


def prepare_command(name: str) -> str:
    """The command that writes data/<name>, as a prepare script's docstring shows it; else prepare/text.py's."""
    for script in sorted((ROOT / "prepare").glob("*.py")):
        for line in script.read_text().splitlines():
            if line.lstrip().startswith("python prepare/") and line.rstrip().endswith(f"-> data/{name}/"):
                return line.split("#")[0].strip()
    return f"python prepare/text.py --input YOUR_TEXT --name {name}"


def read_meta(folder: Path) -> dict:
    """A dataset's meta.json, checked for the keys the scripts rely on; nanoGPT's meta.pkl where there is no json."""
    path = Path(folder) / "meta.json"
    if not path.is_file() and path.with_suffix(".pkl").is_file():
        return read_nanogpt_meta(path.with_suffix(".pkl"))
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} has no meta.json; rerun its prepare script") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rerun its prepare script") from None
    missing = [k for k in ("tokenizer", "vocab_size") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ValueError(f"{path} has no {' or '.join(missing)}; rerun its prepare script")
    return meta


class _PlainData(pickle.Unpickler):
    """Builds dicts, lists, strings and numbers; any class or function in the pickle is refused, never called."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not plain data")


def read_nanogpt_meta(path: Path) -> dict:
    """nanoGPT's meta.pkl (vocab_size, itos, stoi of a char dataset) as a meta.json would hold it."""
    try:
        with open(path, "rb") as f:
            pkl = _PlainData(f).load()
        chars = [pkl["itos"][i] for i in range(pkl["vocab_size"])]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path} is not a nanoGPT char table ({e}); it was not loaded") from None
    return {"tokenizer": "char", "vocab_size": len(chars), "chars": chars, "eot_id": None, "dataset": path.parent.name}


def token_bytes(meta: dict, vocab_size: int) -> torch.Tensor:
    """The UTF-8 bytes each token id stands for, (vocab_size,) float32, for bits_per_byte. End-of-text counts 1, the
    separator it stands for between documents; padding ids past the vocabulary 0. All zeros (with a note) where the
    tokenizer cannot be loaded: GPT-2's BPE files offline."""
    sizes = torch.zeros(vocab_size)
    try:
        tok = load_tokenizer(meta)
    except RuntimeError as e:
        print0(f"note: no bits per byte in this run's evals: {e}")
        return sizes
    n = min(vocab_size, tok.vocab_size)
    sizes[:n] = torch.tensor([1 if i == tok.eot_id else len(tok.token_bytes(i)) for i in range(n)])
    return sizes


def bits_per_byte(nats: float, n_bytes: float) -> float:
    """A loss in bits per byte of text, comparable across tokenizers: the loss summed over the targets, in bits, over
    the UTF-8 bytes those targets decode to (token_bytes). For one-byte characters it is the loss in nats / ln 2."""
    return nats / math.log(2) / n_bytes


# ---------------------------------------------------------------------------------------------------------------------
# The schedule, and the log


def micro_steps(gradient_accumulation_steps: int, world_size: int) -> int:
    """Micro-steps per rank: nanoGPT's gradient_accumulation_steps is the total over all ranks."""
    if gradient_accumulation_steps % world_size:
        nearest = max(1, round(gradient_accumulation_steps / world_size)) * world_size
        raise ValueError(f"gradient_accumulation_steps={gradient_accumulation_steps} is the total over all ranks (as "
                         f"in nanoGPT) and must be a multiple of the {world_size} ranks; use {nearest}")  # fmt: skip
    return gradient_accumulation_steps // world_size


def get_lr(step: int, config: dict) -> float:
    """Linear warmup from learning_rate / (warmup_iters + 1) (never 0), then cosine decay to min_lr."""
    lr, warmup, decay_iters, min_lr = (config[k] for k in ("learning_rate", "warmup_iters", "lr_decay_iters", "min_lr"))
    if not config["decay_lr"]:
        return lr
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step >= decay_iters:
        return min_lr
    progress = (step - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


class Log:
    """nanoGPT's log line (loss, step time, MFU) with the gradient norm, learning rate and tokens per second after it;
    one JSON record per log line and per eval in out_dir/metrics.jsonl, and the same to wandb with wandb_log. Losses
    stay on the device until a line needs them (reading one syncs the device). Rank 0 writes."""

    def __init__(self, config: dict, resolved: dict, ranks: Ranks, device: torch.device, flops_per_token: float):
        self.config, self.ranks, self.device = config, ranks, device
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet read back
        self.t_log, self.paused_s, self.steps, self.tokens = time.perf_counter(), 0.0, 0, 0
        self.flops_per_token, self.peak = flops_per_token, peak_flops(device)
        self.wandb = None
        if ranks.rank == 0 and config["wandb_log"]:
            import wandb

            wandb.init(project=config["wandb_project"], name=config["wandb_run_name"], dir=os.environ.get(
                "WANDB_DIR", config["out_dir"]), config={**config, "resolved": resolved})  # fmt: skip
            self.wandb = wandb

    def record(self, record: dict) -> None:
        """One JSON line in metrics.jsonl (and a wandb log), keyed by its "iter"."""
        if self.ranks.rank == 0:
            with open(Path(self.config["out_dir"]) / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.wandb is not None:
                self.wandb.log({k: v for k, v in record.items() if k != "iter"}, step=record["iter"])

    def add(self, step: int, loss: torch.Tensor, tokens: int) -> None:
        """A step's loss (on the device) and the tokens it read on this rank."""
        self.pending.append((step, loss))
        self.steps, self.tokens = self.steps + 1, self.tokens + tokens

    @contextmanager
    def paused(self):
        """Time spent inside (evals, saves) does not count toward the step time."""
        t0 = time.perf_counter()
        yield
        self.paused_s += time.perf_counter() - t0

    def check_losses(self) -> list[float]:
        """Read back the pending losses (averaged over ranks); exit naming the first step that is not finite, so no
        checkpoint is saved from weights it touched."""
        if not self.pending:
            return []
        values = all_mean(torch.stack([loss for _, loss in self.pending]), self.ranks).tolist()
        for (step, _), value in zip(self.pending, values):
            if not math.isfinite(value):
                sys.exit(
                    f"error: loss is {value} at step {step}; stopping without saving (the last checkpoint in "
                    f"{self.config['out_dir']} is untouched). Lower learning_rate, or use bfloat16, not float16."
                )
        self.pending.clear()
        return values

    def write_line(self, step: int, grad_norm: torch.Tensor, lr: float) -> None:
        """nanoGPT's log line over the steps since the last one, with more figures after it; the record too."""
        loss, now = self.check_losses()[-1], time.perf_counter()
        dt = (now - self.t_log - self.paused_s) / self.steps
        tok_s = self.tokens * self.ranks.world_size / self.steps / dt
        mfu, norm = self.flops_per_token * tok_s / self.ranks.world_size / self.peak, grad_norm.item()
        print0(f"iter {step}: loss {loss:.4f}, time {dt * 1000:.2f}ms, mfu {mfu * 100:.2f}%, grad norm {norm:.2f}, "
               f"lr {lr:.1e}, {tok_s:,.0f} tok/s")  # fmt: skip
        record = {"iter": step, "loss": loss, "time_ms": dt * 1000, "mfu": mfu, "grad_norm": norm, "lr": lr}
        if self.device.type == "cuda":
            record["gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.record({**record, "tok_per_s": tok_s})
        self.t_log, self.paused_s, self.steps, self.tokens = now, 0.0, 0, 0

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints that resume exactly, and preemption


def check_writable(folder: Path) -> None:
    """Refuse an out_dir that cannot be written before any work is done: create it, and a file in it."""
    folder = Path(folder)
    probe, created = folder / f".write-test.{os.getpid()}", not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # leave no trace of the attempt
        reason = READ_ONLY.get(e.errno, e.strerror or type(e).__name__)
        raise WriteError(f"out_dir {folder} cannot be written ({reason}); choose another folder") from e


def rng_state(device: torch.device) -> dict:
    """Every random generator a training step may touch (dropout; numpy and random for code you add)."""
    np_state = np.random.get_state()  # as a list: weights_only loads no numpy arrays
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:])}  # fmt: skip
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def save_run(ckpt: dict, best: bool) -> None:
    """Write out_dir/ckpt.pt (and best.pt, the same bytes), and config.json: the user's config and the resolved
    record."""
    out_dir = Path(ckpt["config"]["out_dir"])
    save_checkpoint(ckpt, out_dir / "ckpt.pt")
    write_json(out_dir / "config.json", {"config": ckpt["config"], "resolved": ckpt["resolved"]})
    if best:  # a hard link renamed into place, or an atomic copy where links are not possible
        src, dst, tmp = out_dir / "ckpt.pt", out_dir / "best.pt", out_dir / ".best.pt.link"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
            os.replace(tmp, dst)
        except OSError:
            tmp.unlink(missing_ok=True)
            with open(src, "rb") as f:
                atomic_write(dst, lambda out: shutil.copyfileobj(f, out), size=src.stat().st_size)
    print0(f"saved {out_dir / 'ckpt.pt'}{' and best.pt' if best else ''} at step {ckpt['iter_num']}")


def restore_run(ckpt: dict, optimizer, scaler, generator: torch.Generator, ranks: Ranks, device: torch.device,
                seed: int) -> None:  # fmt: skip
    """Continue where ckpt stopped: the optimizer, the scaler, and every rank's random streams."""
    if ckpt["optimizer"] is None:
        raise ValueError("the checkpoint holds no optimizer state (it was made for sampling); it cannot be resumed")
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt["scaler"] is not None and scaler.is_enabled():
        scaler.load_state_dict(ckpt["scaler"])
    if len(ckpt["sampler"] or []) == ranks.world_size:
        generator.set_state(ckpt["sampler"][ranks.rank])
        state = ckpt["rng"][ranks.rank]
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        np.random.set_state((state["numpy"][0], np.array(state["numpy"][1], dtype=np.uint32), *state["numpy"][2:]))
        if device.type == "cuda" and "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
    else:  # nanoGPT's checkpoints, or a different number of GPUs: continue on fresh random streams
        print0("note: the checkpoint has no random states for this number of ranks; the data order starts afresh")
        generator.manual_seed(seed + TRAIN_BATCHES_SEED + ranks.rank + ckpt["iter_num"])


class StopSignal:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step; a second Ctrl-C interrupts at once."""

    def __enter__(self) -> "StopSignal":
        self.signum = 0
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def handle(self, signum, frame) -> None:
        self.signum = signum
        signal.signal(signum, self.previous[signum])

    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "a signal to another rank"
