"""
Train a GPT-2: from scratch, fine-tuned from OpenAI's weights, or resumed from out_dir. Config files and overrides
work as in nanoGPT (see configurator.py); every key and its default is in DEFAULTS below.

On one GPU, or on this laptop's CPU:
    python train.py config/train_haiku_char.py                 # the offline demo: a char model in a few minutes
    python train.py config/finetune_haiku.py --batch_size=4    # GPT-2 fine-tuned on haiku
    python train.py config/train_haiku_char.py --init_from=resume --max_iters=4000   # continue a run

DDP on 8 GPUs of one node:
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py

DDP on 2 nodes of 8 GPUs each (run the first line on the master node, e.g. 123.456.123.456, the second on the other):
    torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 --master_port=1234 train.py
    torchrun --nproc_per_node=8 --nnodes=2 --node_rank=1 --master_addr=123.456.123.456 --master_port=1234 train.py
(if the nodes have no Infiniband, prepend NCCL_IB_DISABLE=1)

Outputs in out_dir: ckpt.pt (latest), best.pt (best val loss), config.json, metrics.jsonl (one JSON object per log).
SIGINT or SIGTERM (a cluster's preemption) finishes the current step, saves ckpt.pt and exits 0.
"""

import json
import math
import os
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import checkpoint
import configurator
from device import compile_problem, default_compile, default_dtype, keep_freed_memory, peak_flops, resolve_device
from model import GPT, GPTConfig

REPO_ROOT = Path(__file__).resolve().parent

DEFAULTS = dict(
    # I/O
    out_dir="out",
    eval_interval=2000,  # eval train/val loss (and save) every this many steps, and at the last one
    log_interval=1,
    eval_iters=200,  # batches per split in each eval
    eval_only=False,  # eval once, then exit
    always_save_checkpoint=True,  # save ckpt.pt at every eval, not only when val loss improves
    init_from="scratch",  # 'scratch', 'resume' (from out_dir), 'gpt2', 'gpt2-medium', ..., or a local HF folder
    seed=1337,
    # wandb
    wandb_log=False,
    wandb_project="owt",
    wandb_run_name="gpt2",
    # data
    dataset="openwebtext",  # a folder name under data/, or a path to a folder with train.bin, val.bin, meta.json
    gradient_accumulation_steps=5 * 8,  # in total over all DDP ranks, as in nanoGPT
    batch_size=12,  # per rank and micro-step
    block_size=1024,
    # model (from scratch; resume takes the checkpoint's, GPT-2 inits take OpenAI's)
    n_layer=12,
    n_head=12,
    n_embd=768,
    dropout=0.0,
    bias=True,
    # AdamW
    learning_rate=6e-4,
    max_iters=600000,
    weight_decay=1e-1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,  # 0 disables clipping
    # learning rate: linear warmup, then cosine decay to min_lr at lr_decay_iters
    decay_lr=True,
    warmup_iters=2000,
    lr_decay_iters=600000,
    min_lr=6e-5,
    # system
    backend=None,  # DDP backend: None picks nccl on CUDA, gloo elsewhere
    device=None,  # None picks cuda, then mps, then cpu; or 'cpu', 'cuda', 'cuda:1', 'mps'
    dtype=None,  # 'float32', 'bfloat16' or 'float16'; None: bfloat16 where supported (see default_dtype)
    compile=None,  # torch.compile; None: on where it helps (see default_compile)
)

PRETRAINED = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
PREPARE_COMMANDS = {
    "haiku": "python prepare/haiku.py",
    "haiku_char": "python prepare/haiku.py --tokenizer char",
    "openwebtext": "python prepare/openwebtext.py",
}
# Seed offsets of the random streams, so no two share a sequence: + rank for each DDP rank.
TRAIN_BATCHES_SEED, EVAL_BATCHES_SEED = 1_000, 2_000

RANK = int(os.environ.get("RANK", 0))  # set by torchrun


def print0(*args, **kwargs) -> None:
    """print on rank 0 only, flushed so logs keep up when piped."""
    if RANK == 0:
        print(*args, **kwargs, flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# DDP


@dataclass
class Ranks:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    cpu_group: object = None  # a gloo group for host-side flags, so checking one never waits for the GPU

    @property
    def ddp(self) -> bool:
        return self.world_size > 1


def setup_ddp(backend: str | None, device_name: str | None) -> tuple[Ranks, torch.device]:
    """Join the torchrun process group if there is one; pick this process's device."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks(), resolve_device(device_name, 0)
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    device = resolve_device(device_name, ranks.local_rank)
    dist.init_process_group(backend=backend or ("nccl" if device.type == "cuda" else "gloo"))
    if dist.get_backend() != "gloo":
        ranks.cpu_group = dist.new_group(backend="gloo")
    return ranks, device


def all_mean(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Average a tensor over DDP ranks (SUM then divide: gloo has no AVG)."""
    if ranks.ddp:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ranks.world_size
    return t


def gather(obj, ranks: Ranks) -> list:
    """One object from every rank, in rank order."""
    if not ranks.ddp:
        return [obj]
    out = [None] * ranks.world_size
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Data


def find_dataset(name: str) -> Path:
    """The dataset folder: a path, or a name under data/; an error naming the prepare command if it is missing."""
    for folder in (Path(name).expanduser(), REPO_ROOT / "data" / name):
        if (folder / "train.bin").is_file():
            break
    else:
        command = PREPARE_COMMANDS.get(name, f"python prepare/text.py --input YOUR_TEXT --name {name}")
        raise FileNotFoundError(f"no train.bin for dataset {name!r} in {REPO_ROOT / 'data' / name}; run `{command}`")
    for file in ("val.bin", "meta.json"):
        if not (folder / file).is_file():
            raise FileNotFoundError(f"{folder} has train.bin but no {file}; rerun its prepare script")
    return folder


def load_meta(folder: Path) -> dict:
    """meta.json, checked for the keys training relies on."""
    meta = json.loads((folder / "meta.json").read_text())
    missing = [k for k in ("tokenizer", "vocab_size") if k not in meta]
    if missing:
        raise ValueError(f"{folder / 'meta.json'} has no {' or '.join(missing)}; rerun its prepare script")
    return meta


class Split:
    """One split's tokens (a memmapped uint16 .bin), from which random windows of block_size + 1 are drawn."""

    def __init__(self, path: Path, block_size: int):
        self.path, self.block_size = path, block_size
        n = len(self.tokens())
        if n <= block_size:
            raise ValueError(f"{path} holds {n} tokens, too few for block_size {block_size}; lower block_size")

    def tokens(self) -> np.memmap:
        return np.memmap(self.path, dtype=np.uint16, mode="r")

    def batch(
        self, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs x and targets y (x shifted by one), both (batch_size, block_size) int64 on device."""
        data = self.tokens()  # opened per batch: the pages a long-lived memmap has read stay in our memory
        T = self.block_size
        starts = torch.randint(len(data) - T, (batch_size,), generator=generator).tolist()
        x = torch.from_numpy(np.stack([data[i : i + T] for i in starts]).astype(np.int64))
        y = torch.from_numpy(np.stack([data[i + 1 : i + 1 + T] for i in starts]).astype(np.int64))
        if device.type == "cuda":  # pinned memory lets the copy overlap with the GPU's work
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)


def check_vocab(meta: dict, model: GPT, ckpt_meta: dict | None) -> None:
    """Refuse data whose token ids mean something else to the model, or do not fit its vocabulary."""
    data_desc = f"the dataset's {meta['tokenizer']} vocabulary of {meta['vocab_size']}"
    if meta["vocab_size"] > model.config.vocab_size:
        raise ValueError(f"{data_desc} does not fit the model's vocab_size {model.config.vocab_size}")
    if ckpt_meta is not None:
        keys = ("tokenizer", "vocab_size", "chars")
        if any(ckpt_meta.get(k) != meta.get(k) for k in keys):
            raise ValueError(f"the checkpoint was trained on a different vocabulary than {data_desc}")


# ---------------------------------------------------------------------------------------------------------------------
# Model, schedule, eval


def init_model(config: dict, meta: dict) -> tuple[GPT, dict | None]:
    """The model init_from asks for, and the checkpoint it came from when resuming."""
    init_from = config["init_from"]
    if init_from == "scratch":
        shape = {k: config[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "bias", "dropout")}
        if shape["n_embd"] % shape["n_head"]:
            raise ValueError(f"n_embd={shape['n_embd']} must be divisible by n_head={shape['n_head']}")
        vocab_size = math.ceil(meta["vocab_size"] / 64) * 64  # a multiple of 64 keeps the matmuls fast
        return GPT(GPTConfig(vocab_size=vocab_size, **shape), seed=config["seed"]), None
    if init_from == "resume":
        ckpt = checkpoint.load_checkpoint(config["out_dir"])
        ckpt["model_args"]["dropout"] = config["dropout"]  # the one model setting a resumed run may change
        return checkpoint.model_from_checkpoint(ckpt), ckpt
    if init_from in PRETRAINED or Path(init_from).expanduser().is_dir():
        if meta["tokenizer"] != "gpt2":  # said before the weights are downloaded, not after
            raise ValueError(
                f"{init_from} reads GPT-2 BPE tokens but the dataset's {meta['tokenizer']} vocabulary of "
                f"{meta['vocab_size']} is not GPT-2's; prepare GPT-2 BPE bins (e.g. `python prepare/haiku.py`) "
                "or train from scratch with --init_from=scratch"
            )
        return GPT.from_pretrained(init_from, dropout=config["dropout"], block_size=config["block_size"]), None
    raise ValueError(f"init_from={init_from!r}: expected scratch, resume, {', '.join(PRETRAINED)} or a folder")


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


@torch.no_grad()
def estimate_loss(model, splits: dict[str, Split], config: dict, ctx, device: torch.device, ranks: Ranks) -> dict:
    """Mean loss over eval_iters batches per split; the same batches at every eval, so evals compare."""
    model.eval()
    out = {}
    for name, split in splits.items():
        generator = torch.Generator().manual_seed(config["seed"] + EVAL_BATCHES_SEED + ranks.rank)
        losses = torch.zeros(config["eval_iters"], device=device)
        for k in range(config["eval_iters"]):
            x, y = split.batch(config["batch_size"], generator, device)
            with ctx:
                losses[k] = model(x, y)[1]
        out[name] = all_mean(losses.mean(), ranks).item()
    model.train()
    return out


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


class Metrics:
    """Log records to out_dir/metrics.jsonl and, with wandb_log, to wandb (imported only then). Rank 0 only."""

    def __init__(self, config: dict, enabled: bool):
        self.enabled = enabled
        self.path = Path(config["out_dir"]) / "metrics.jsonl"
        self.wandb = None
        if enabled and config["wandb_log"]:
            import wandb

            wandb_dir = os.environ.get("WANDB_DIR", config["out_dir"])
            wandb.init(project=config["wandb_project"], name=config["wandb_run_name"], config=config, dir=wandb_dir)
            self.wandb = wandb

    def log(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if k != "iter"}, step=record["iter"])

    def __enter__(self) -> "Metrics":
        return self

    def __exit__(self, *exc) -> None:
        if self.wandb is not None:
            self.wandb.finish()


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

    def requested(self, ranks: Ranks) -> bool:
        """True on every rank once any rank got a signal, so all of them stop after the same step."""
        if not ranks.ddp:
            return self.signum != 0
        flag = torch.tensor(float(self.signum != 0))  # on the CPU: a GPU tensor would sync the device every step
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=ranks.cpu_group)
        return bool(flag.item())


# ---------------------------------------------------------------------------------------------------------------------
# Setup: everything checked before the first step, so a bad config fails fast with one line


@dataclass
class Run:
    config: dict
    ranks: Ranks
    device: torch.device
    ctx: object  # autocast context, or nullcontext for float32
    splits: dict  # "train", "val" -> Split
    raw_model: GPT  # unwrapped and uncompiled: what is saved
    model: torch.nn.Module  # compiled and/or DDP-wrapped: what is run
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # draws the training windows; its state is checkpointed
    meta: dict
    iter_num: int
    best_val_loss: float
    accum_steps: int  # micro-steps per step on this rank


def micro_steps(gradient_accumulation_steps: int, world_size: int) -> int:
    """Micro-steps per rank: nanoGPT's gradient_accumulation_steps is the total over all ranks."""
    if gradient_accumulation_steps < 1 or gradient_accumulation_steps % world_size:
        nearest = max(1, round(gradient_accumulation_steps / world_size)) * world_size
        raise ValueError(
            f"gradient_accumulation_steps={gradient_accumulation_steps} is the total over all ranks (as in nanoGPT) "
            f"and must be a positive multiple of the {world_size} ranks; use {nearest}"
        )
    return gradient_accumulation_steps // world_size


def setup(config: dict) -> Run:
    ranks, device = setup_ddp(config["backend"], config["device"])
    config["device"] = str(device)
    if device.type == "cpu":
        keep_freed_memory()
    config["dtype"] = config["dtype"] or default_dtype(device)
    if config["dtype"] not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype={config['dtype']!r}: expected float32, bfloat16 or float16")
    if config["dtype"] == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU has no bfloat16; use --dtype=float16")
    if config["compile"] is None:
        config["compile"] = default_compile(device)
    for key in ("batch_size", "block_size", "eval_interval", "log_interval", "eval_iters"):
        if config[key] < 1:
            raise ValueError(f"{key}={config[key]} must be at least 1")
    if config["decay_lr"] and config["warmup_iters"] > config["lr_decay_iters"]:
        raise ValueError(f"warmup_iters={config['warmup_iters']} exceeds lr_decay_iters={config['lr_decay_iters']}")
    accum_steps = micro_steps(config["gradient_accumulation_steps"], ranks.world_size)

    folder = find_dataset(config["dataset"])
    meta = load_meta(folder)
    model, ckpt = init_model(config, meta)
    check_vocab(meta, model, ckpt["meta"] if ckpt else None)
    # record the model actually built (resume and GPT-2 inits bring their own shape)
    config.update({k: v for k, v in asdict(model.config).items() if k in config})
    splits = {name: Split(folder / f"{name}.bin", config["block_size"]) for name in ("train", "val")}

    model.to(device)
    optimizer = model.configure_optimizers(
        config["weight_decay"], config["learning_rate"], (config["beta1"], config["beta2"]), device.type
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config["dtype"] == "float16")
    generator = torch.Generator().manual_seed(config["seed"] + TRAIN_BATCHES_SEED + ranks.rank)
    torch.manual_seed(config["seed"] + ranks.rank)  # dropout; the weights come from the model's own generator
    iter_num, best_val_loss = 0, float("inf")
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"] is not None and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        iter_num, best_val_loss = ckpt["iter_num"], ckpt["best_val_loss"]
        if len(ckpt.get("sampler") or []) == ranks.world_size:
            generator.set_state(ckpt["sampler"][ranks.rank])
            checkpoint.set_rng_state(ckpt["rng"][ranks.rank], device)
        else:  # e.g. nanoGPT's checkpoints, or a different number of GPUs: continue on fresh random streams
            note = "note: the checkpoint has no random states for this number of ranks; the data order starts afresh"
            print0(note, file=sys.stderr)
            generator.manual_seed(config["seed"] + TRAIN_BATCHES_SEED + ranks.rank + iter_num)
        del ckpt  # the weights are in the model now; free the copy

    raw_model = model
    if config["compile"]:
        problem = compile_problem(device)
        if problem:
            print0(f"warning: {problem}; running eager", file=sys.stderr)
            config["compile"] = False
        else:
            # a compiler failure at the first step falls back to eager with a warning instead of a crash
            torch._dynamo.config.suppress_errors = True
            model = torch.compile(model)
    if ranks.ddp:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[config["dtype"]]
    ctx = nullcontext() if ptdtype == torch.float32 else torch.autocast(device.type, dtype=ptdtype)
    return Run(
        config, ranks, device, ctx, splits, raw_model, model, optimizer, scaler, generator, meta,
        iter_num, best_val_loss, accum_steps,
    )  # fmt: skip


def save(run: Run, iter_num: int, best: bool) -> None:
    """Write out_dir/ckpt.pt (and best.pt); called on every rank, since the random states are gathered."""
    rng = gather(checkpoint.rng_state(run.device), run.ranks)
    sampler = gather(run.generator.get_state(), run.ranks)
    if run.ranks.rank != 0:
        return
    out_dir = Path(run.config["out_dir"])
    ckpt = {
        "model": run.raw_model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "model_args": asdict(run.raw_model.config),
        "config": run.config,
        "iter_num": iter_num,
        "best_val_loss": run.best_val_loss,
        "rng": rng,
        "sampler": sampler,
        "meta": run.meta,
    }
    checkpoint.save_checkpoint(ckpt, out_dir / "ckpt.pt")
    if best:  # the same bytes: link them in (atomically), else copy
        tmp = out_dir / ".best.pt.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(out_dir / "ckpt.pt", tmp)
        except OSError:
            shutil.copyfile(out_dir / "ckpt.pt", tmp)
        os.replace(tmp, out_dir / "best.pt")
    print0(f"saved {out_dir / 'ckpt.pt'}{' and best.pt' if best else ''} at step {iter_num}")


# ---------------------------------------------------------------------------------------------------------------------
# The loop


def train(run: Run) -> None:
    config, ranks, device = run.config, run.ranks, run.device
    master = ranks.rank == 0
    out_dir = Path(config["out_dir"])
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", config)
        print0("\n".join(f"{k} = {v!r}" for k, v in config.items()))  # the resolved config, as a config file
    tokens_per_iter = run.accum_steps * ranks.world_size * config["batch_size"] * config["block_size"]
    print0(
        f"tokens per iteration: {tokens_per_iter:,} = {ranks.world_size} ranks x {run.accum_steps} micro-steps x "
        f"{config['batch_size']} x {config['block_size']}; {run.raw_model.num_params() / 1e6:.2f}M parameters"
    )
    flops_per_iter = run.raw_model.estimate_flops_per_token() * tokens_per_iter / ranks.world_size  # per rank
    peak = peak_flops(device)
    max_norm = config["grad_clip"] if config["grad_clip"] > 0 else float("inf")  # inf: measure, do not clip
    start = run.iter_num
    pending: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet read back: reading syncs the device
    t_log, eval_seconds, iters_since_log = time.perf_counter(), 0.0, 0

    def check_losses() -> list[float]:
        """Read back the pending losses (averaged over ranks); exit naming the first step that is not finite."""
        if not pending:
            return []
        values = all_mean(torch.stack([loss for _, loss in pending]), ranks).tolist()
        for (step, _), value in zip(pending, values):
            if not math.isfinite(value):
                sys.exit(
                    f"error: loss is {value} at step {step}; stopping without saving (the last checkpoint in "
                    f"{out_dir} is untouched). Lower learning_rate, or use bfloat16 rather than float16."
                )
        pending.clear()
        return values

    with StopSignal() as stop, Metrics(config, enabled=master) as metrics:
        for step in range(start, config["max_iters"] + 1):
            last_step = step == config["max_iters"]
            lr = get_lr(step, config)
            for group in run.optimizer.param_groups:
                group["lr"] = lr

            if step % config["eval_interval"] == 0 or last_step or config["eval_only"]:
                t_eval = time.perf_counter()
                check_losses()  # never save weights that a non-finite loss has touched
                losses = estimate_loss(run.model, run.splits, config, run.ctx, device, ranks)
                print0(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                if not all(math.isfinite(v) for v in losses.values()):
                    sys.exit(f"error: eval loss is not finite at step {step}; stopping without saving")
                metrics.log({"iter": step, "train/loss": losses["train"], "val/loss": losses["val"], "lr": lr})
                improved = losses["val"] < run.best_val_loss
                run.best_val_loss = min(run.best_val_loss, losses["val"])
                keep = improved or config["always_save_checkpoint"] or last_step
                if keep and step > start and not config["eval_only"]:  # at the start step nothing has changed
                    save(run, step, best=improved)
                eval_seconds += time.perf_counter() - t_eval
            if last_step or config["eval_only"]:
                break

            # one optimizer step: accumulate gradients over micro-steps, synchronising DDP only on the last one
            loss_sum = torch.zeros((), device=device)
            for micro in range(run.accum_steps):
                x, y = run.splits["train"].batch(config["batch_size"], run.generator, device)
                no_sync = ranks.ddp and micro < run.accum_steps - 1
                with run.model.no_sync() if no_sync else nullcontext():
                    with run.ctx:
                        _, loss = run.model(x, y)
                    run.scaler.scale(loss / run.accum_steps).backward()
                loss_sum += loss.detach()
            run.scaler.unscale_(run.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), max_norm)
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.optimizer.zero_grad(set_to_none=True)
            pending.append((step, loss_sum / run.accum_steps))
            iters_since_log += 1

            if step % config["log_interval"] == 0:
                loss = check_losses()[-1]
                now = time.perf_counter()
                dt = (now - t_log - eval_seconds) / iters_since_log
                mfu = flops_per_iter / dt / peak
                norm = grad_norm.item()
                print0(
                    f"iter {step}: loss {loss:.4f}, time {dt * 1000:.2f}ms, mfu {mfu * 100:.2f}%, "
                    f"grad norm {norm:.2f}, lr {lr:.1e}, {tokens_per_iter / dt:,.0f} tok/s"
                )
                metrics.log(
                    {"iter": step, "loss": loss, "time_ms": dt * 1000, "mfu": mfu, "grad_norm": norm, "lr": lr,
                     "tok_per_s": tokens_per_iter / dt}
                )  # fmt: skip
                t_log, eval_seconds, iters_since_log = now, 0.0, 0

            if stop.requested(ranks):
                check_losses()
                who = signal.Signals(stop.signum).name if stop.signum else "a signal to another rank"
                print0(f"{who}: stopping after step {step}")
                save(run, step + 1, best=False)
                break


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        run = setup(configurator.configure(DEFAULTS, argv))
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    try:
        train(run)
        if run.ranks.ddp:
            dist.barrier()  # leave together: tearing gloo down while rank 0 still saves can abort the others
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
