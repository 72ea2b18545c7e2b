"""
The training machinery that train.py (language models) and classify.py (classifiers) share: the training keys and
their defaults, the config a run resumes with, the resolved run (device, precision, compile, DDP, optimizer, random
streams), the learning-rate schedule, checkpoints that resume exactly, and the loop. An entry script brings the model,
its batches and its eval:

    config, user, ckpt = trainer.read_config(DEFAULTS, argv, __doc__, sources)
    run = trainer.setup(config, user, ckpt, model, meta, ranks, device)
    trainer.fit(run, batch=lambda generator: ..., evaluate=lambda model: {"train/loss": ..., "val/loss": ...})

Resuming (init_from='resume') starts from the config stored in the checkpoint and applies the command line over it,
so `python train.py --init_from=resume --out_dir=out-haiku-char --max_iters=2000` continues a run; a model-shape key
that differs from the checkpoint's is refused, naming the key and both values.
"""

import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

import checkpoint
import configurator
import ddp
import lora
from ddp import Ranks, print0
from device import DTYPES, autocast, keep_freed_memory, resolve_compile, resolve_dtype
from files import atomic_write, check_writable, write_json
from metrics import Log, Metrics
from model import GPTConfig
from tokenizer import same_vocabulary

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
    # LoRA: train low-rank adapters beside frozen weights instead of every weight (lora.py)
    lora_rank=0,  # 0: fine-tune every weight; 8 or 16: adapters of that rank on lora_targets, the rest frozen
    lora_alpha=16.0,  # the adapters' output is scaled by lora_alpha / lora_rank
    lora_dropout=0.0,  # dropout on the adapters' input
    lora_targets="attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj",  # each block's projections that get adapters
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
SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "lora_rank", "lora_alpha", "lora_targets")
# Seed offsets of the random streams, so no two share a sequence: + rank for each DDP rank.
TRAIN_BATCHES_SEED, EVAL_BATCHES_SEED = 1_000, 2_000


# ---------------------------------------------------------------------------------------------------------------------
# Config: the user's, checked in the order they typed it; what the run resolves is a separate record


def read_config(defaults: dict, argv: list[str], doc: str, sources: tuple) -> tuple[dict, dict, dict | None]:
    """The user's config, the keys they set themselves, and the checkpoint when resuming (its config is the base)."""
    user = configurator.overrides(defaults, argv, doc, sources)
    config = {**defaults, **user}
    check_values(config)
    if config["init_from"] != "resume":
        return config, user, None
    ckpt = checkpoint.load_checkpoint(config["out_dir"])
    saved = {k: v for k, v in ckpt["config"].items() if k in defaults}
    config = {**defaults, **saved, **user, "init_from": "resume"}
    check_values(config)
    for key in SHAPE_KEYS:  # fixed once a model exists
        kept = ckpt["model_args"].get(key, GPTConfig.__dataclass_fields__[key].default)
        kept = ",".join(kept) if key == "lora_targets" else kept
        if key in user and user[key] != kept:
            raise ValueError(
                f"{key}={user[key]!r} differs from the checkpoint's {key}={kept!r}: a resumed run keeps its model's "
                f"shape; drop --{key}, or train a new model with another out_dir"
            )
    changed = {k: (saved[k], config[k]) for k in user if k in saved and saved[k] != config[k] and k != "init_from"}
    detail = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
    print0(f"resuming {config['out_dir']} at step {ckpt['iter_num']}" + (f"; changed: {detail}" if detail else ""))
    return config, user, ckpt


def check_values(config: dict) -> None:
    """Refuse values that cannot work, before any file is read."""
    positive = ("batch_size", "block_size", "eval_interval", "log_interval", "eval_iters")
    for key in (*positive, "gradient_accumulation_steps"):
        if config[key] < 1:
            raise ValueError(f"{key}={config[key]} must be at least 1")
    if config["decay_lr"] and config["warmup_iters"] > config["lr_decay_iters"]:
        raise ValueError(f"warmup_iters={config['warmup_iters']} exceeds lr_decay_iters={config['lr_decay_iters']}")
    if config["n_embd"] % config["n_head"]:
        raise ValueError(f"n_embd={config['n_embd']} must be divisible by n_head={config['n_head']}")
    if config["dtype"] is not None and config["dtype"] not in DTYPES:
        raise ValueError(f"dtype={config['dtype']!r}: expected float32, bfloat16 or float16 (or None for the default)")
    for key in ("dropout", "lora_dropout"):
        if not 0 <= config[key] < 1:
            raise ValueError(f"{key}={config[key]} must be in [0, 1)")
    if config["lora_rank"] < 0:
        raise ValueError(f"lora_rank={config['lora_rank']} must be 0 (no adapters: every weight trains) or more")
    known = GPTConfig.__dataclass_fields__["lora_targets"].default
    unknown = [t for t in config["lora_targets"].split(",") if t not in known]
    if unknown:
        names = ", ".join(known)
        raise ValueError(f"lora_targets: {unknown[0]!r} is not a projection of the model; choose from {names}")


def check_vocab(meta: dict, ckpt_meta: dict | None, pretrained: str | None, prepare: str) -> None:
    """Refuse data whose token ids mean something else to the model, before any weights are read or downloaded:
    a checkpoint's vocabulary must be the data's, and pretrained weights (a name or folder) read GPT-2 BPE. prepare:
    the command that makes GPT-2 BPE data, for the message."""
    data_desc = f"the dataset's {meta['tokenizer']} vocabulary of {meta['vocab_size']}"
    if ckpt_meta is not None and not same_vocabulary(ckpt_meta, meta):
        raise ValueError(f"the checkpoint was trained on a different vocabulary than {data_desc}")
    if pretrained and meta["tokenizer"] != "gpt2":
        raise ValueError(f"{pretrained} reads GPT-2 BPE tokens but {data_desc} is not GPT-2's; prepare GPT-2 BPE data "
                         f"(`{prepare}`) or start from scratch with --init_from=scratch")  # fmt: skip


def micro_steps(gradient_accumulation_steps: int, world_size: int) -> int:
    """Micro-steps per rank: nanoGPT's gradient_accumulation_steps is the total over all ranks."""
    if gradient_accumulation_steps < 1 or gradient_accumulation_steps % world_size:
        nearest = max(1, round(gradient_accumulation_steps / world_size)) * world_size
        raise ValueError(
            f"gradient_accumulation_steps={gradient_accumulation_steps} is the total over all ranks (as in nanoGPT) "
            f"and must be a positive multiple of the {world_size} ranks; use {nearest}"
        )
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


# ---------------------------------------------------------------------------------------------------------------------
# The resolved run


@dataclass
class Run:
    config: dict  # the user's config, never changed
    resolved: dict  # what this run made of it: device, dtype, compile, ranks, the model's shape
    meta: dict  # the dataset's meta.json, saved in every checkpoint
    ranks: Ranks
    device: torch.device
    ctx: object  # autocast context, or nullcontext for float32
    raw_model: torch.nn.Module  # unwrapped and uncompiled: what is saved
    model: torch.nn.Module  # compiled and/or DDP-wrapped: what is run
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # draws the training batches; its state is checkpointed
    accum_steps: int  # micro-steps per step on this rank
    iter_num: int = 0
    best_score: float = float("inf")  # the best eval score so far (lower is better), which picks best.pt
    best_val_loss: float = float("inf")


def setup(config: dict, ckpt: dict | None, model, meta: dict, ranks: Ranks, device: torch.device) -> Run:
    """Everything the loop needs, with the optimizer, scaler and random streams of ckpt when resuming."""
    accum_steps = micro_steps(config["gradient_accumulation_steps"], ranks.world_size)
    dtype = resolve_dtype(config["dtype"], device)
    compiled, problem = resolve_compile(config["compile"], device)
    if problem:
        print0(f"warning: {problem}; running eager", file=sys.stderr)
    if ranks.rank == 0:
        check_writable(Path(config["out_dir"]), "out_dir")  # before the first step, not at the first save
    if device.type == "cpu":
        keep_freed_memory()
    if getattr(model.config, "lora_rank", 0):  # frozen weights in the training dtype: half the memory in bfloat16
        lora.hold_base_in(getattr(model, "gpt", model), DTYPES[dtype])  # a classifier's GPT, or the GPT itself
    model.to(device)
    optimizer = model.configure_optimizers(
        config["weight_decay"], config["learning_rate"], (config["beta1"], config["beta2"]), device.type
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "float16")
    generator = torch.Generator().manual_seed(config["seed"] + TRAIN_BATCHES_SEED + ranks.rank)
    torch.manual_seed(config["seed"] + ranks.rank)  # dropout; the weights come from the model's own generator
    resolved = {
        "device": str(device), "dtype": dtype, "compile": compiled, "ranks": ranks.world_size,
        "micro_steps_per_rank": accum_steps, "parameters": model.num_params(), "trainable": lora.trainable(model),
        "model": asdict(model.config),
    }  # fmt: skip
    run = Run(config, resolved, meta, ranks, device, autocast(device, dtype), model, model, optimizer, scaler,
              generator, accum_steps)  # fmt: skip
    if ckpt is not None:
        restore(run, ckpt)
    if compiled:
        torch._dynamo.config.suppress_errors = True  # a compiler failure falls back to eager, with a warning
        run.model = torch.compile(run.model)
    if ranks.ddp:
        run.model = DDP(run.model, device_ids=[device.index] if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    return run


def restore(run: Run, ckpt: dict) -> None:
    """Continue where ckpt stopped: the optimizer, the scaler, the step, and every rank's random streams."""
    if ckpt["optimizer"] is None:
        raise ValueError("the checkpoint holds no optimizer state (it was made for sampling); it cannot be resumed")
    run.optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt["scaler"] is not None and run.scaler.is_enabled():
        run.scaler.load_state_dict(ckpt["scaler"])
    run.iter_num, run.best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
    run.best_score = ckpt.get("best_score", ckpt["best_val_loss"])
    if len(ckpt["sampler"] or []) == run.ranks.world_size:
        run.generator.set_state(ckpt["sampler"][run.ranks.rank])
        checkpoint.set_rng_state(ckpt["rng"][run.ranks.rank], run.device)
    else:  # nanoGPT's checkpoints, or a different number of GPUs: continue on fresh random streams
        print0("note: the checkpoint has no random states for this number of ranks; the data order starts afresh")
        run.generator.manual_seed(run.config["seed"] + TRAIN_BATCHES_SEED + run.ranks.rank + run.iter_num)


def describe(run: Run) -> str:
    """The user's config as a config file, then the resolved record, for the log."""
    lines = [f"{k} = {v!r}" for k, v in run.config.items()]
    lines.append("# resolved: " + ", ".join(f"{k} {v!r}" for k, v in run.resolved.items() if k != "model"))
    lines.append("# model: " + ", ".join(f"{k} {v!r}" for k, v in run.resolved["model"].items()))
    return "\n".join(lines)


def save(run: Run, iter_num: int, best: bool) -> None:
    """Write out_dir/ckpt.pt (and best.pt); called on every rank, since the random states are gathered."""
    rng = ddp.gather(checkpoint.rng_state(run.device), run.ranks)
    sampler = ddp.gather(run.generator.get_state(), run.ranks)
    if run.ranks.rank != 0:
        return
    out_dir = Path(run.config["out_dir"])
    ckpt = checkpoint.build_checkpoint(
        run.raw_model, run.config, run.meta, run.resolved, run.optimizer, run.scaler, iter_num,
        run.best_val_loss, rng, sampler,
    )  # fmt: skip
    ckpt["best_score"] = run.best_score
    checkpoint.save_checkpoint(ckpt, out_dir / "ckpt.pt")
    if best:  # the same bytes: link them in (atomically), else copy
        link_or_copy(out_dir / "ckpt.pt", out_dir / "best.pt")
    print0(f"saved {out_dir / 'ckpt.pt'}{' and best.pt' if best else ''} at step {iter_num}")


def link_or_copy(src: Path, dst: Path) -> None:
    """Make dst hold src's bytes: a hard link renamed into place, or an atomic copy where links are not possible."""
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        with open(src, "rb") as f:
            atomic_write(dst, lambda out: shutil.copyfileobj(f, out), size=src.stat().st_size)


# ---------------------------------------------------------------------------------------------------------------------
# Preemption


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


# ---------------------------------------------------------------------------------------------------------------------
# The loop


def fit(
    run: Run,
    batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    score: str = "val/loss",
    maximize: bool = False,
    padded: bool = False,
) -> None:
    """Train run.model to max_iters: batch(generator) gives a micro-batch (x, y), evaluate(model) a dict of figures
    every eval_interval steps, of which `score` picks best.pt. Saves at evals and on SIGINT/SIGTERM. padded: x holds
    texts padded to the micro-batch's longest (classify.py), not windows of block_size tokens."""
    config, ranks = run.config, run.ranks
    if ranks.rank == 0 and not config["eval_only"]:
        write_json(Path(config["out_dir"]) / "config.json", {"config": config, "resolved": run.resolved})
    print0(describe(run))
    rows = run.accum_steps * ranks.world_size * config["batch_size"]
    shape = f"{ranks.world_size} ranks x {run.accum_steps} micro-steps x {config['batch_size']}"
    params = f"{run.raw_model.num_params() / 1e6:.2f}M parameters"
    if run.resolved["trainable"] < sum(p.numel() for p in run.raw_model.parameters()):  # LoRA: some are frozen
        params += f", {run.resolved['trainable'] / 1e6:.2f}M of them trained"
    if padded:
        print0(f"texts per iteration: {rows:,} = {shape}, of up to {run.raw_model.config.block_size} tokens; {params}")
    else:
        print0(f"tokens per iteration: {rows * config['block_size']:,} = {shape} x {config['block_size']}; {params}")
    log = Log(run)
    with StopSignal() as stop, Metrics(run) as metrics:
        for step in range(run.iter_num, config["max_iters"] + 1):
            last_step = step == config["max_iters"]
            lr = get_lr(step, config)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            if step % config["eval_interval"] == 0 or last_step or config["eval_only"]:
                t_eval = time.perf_counter()
                log.check_losses()  # never save weights that a non-finite loss has touched
                eval_and_save(run, step, evaluate, score, maximize, metrics, lr)
                log.eval_seconds += time.perf_counter() - t_eval
            if last_step or config["eval_only"]:
                break
            loss, grad_norm, n_tokens = train_step(run, batch)
            log.add(step, loss, n_tokens)
            if step % config["log_interval"] == 0:
                log.write(step, grad_norm, lr, metrics)
            if ddp.all_max(stop.signum != 0, ranks):
                log.check_losses()
                who = signal.Signals(stop.signum).name if stop.signum else "a signal to another rank"
                print0(f"{who}: stopping after step {step}")
                save(run, step + 1, best=False)
                break


def eval_and_save(run: Run, step: int, evaluate, score: str, maximize: bool, metrics: Metrics, lr: float) -> None:
    """Evaluate, log, and save ckpt.pt (and best.pt when the score improved)."""
    results = evaluate(run.model)
    print0(f"step {step}: " + ", ".join(f"{k.replace('/', ' ')} {v:.4f}" for k, v in results.items()))
    if not all(math.isfinite(v) for v in results.values()):
        sys.exit(f"error: eval is not finite at step {step}; stopping without saving")
    metrics.log({"iter": step, **results, "lr": lr})
    value = -results[score] if maximize else results[score]
    improved = value < run.best_score
    run.best_score = min(run.best_score, value)
    run.best_val_loss = min(run.best_val_loss, results.get("val/loss", float("inf")))
    keep = improved or run.config["always_save_checkpoint"] or step == run.config["max_iters"]
    if keep and step > run.iter_num and not run.config["eval_only"]:  # at the start step nothing has changed
        save(run, step, best=improved)


def train_step(run: Run, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One optimizer step: gradients accumulated over micro-steps, synchronising DDP only on the last one. Returns
    the mean loss and the gradient norm (still on the device) and the tokens seen on this rank."""
    loss_sum, n_tokens = torch.zeros((), device=run.device), 0
    for micro in range(run.accum_steps):
        x, y = batch(run.generator)
        no_sync = run.ranks.ddp and micro < run.accum_steps - 1
        with run.model.no_sync() if no_sync else nullcontext():
            with run.ctx:
                _, loss = run.model(x, y)
            run.scaler.scale(loss / run.accum_steps).backward()
        loss_sum += loss.detach()
        n_tokens += x.numel()
    run.scaler.unscale_(run.optimizer)
    max_norm = run.config["grad_clip"] if run.config["grad_clip"] > 0 else float("inf")  # inf: measure, not clip
    grad_norm = torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), max_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum / run.accum_steps, grad_norm, n_tokens
