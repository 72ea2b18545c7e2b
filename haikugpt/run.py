"""What train.py and classify.py share, as plain functions their loops call: the training keys and their defaults, the
config a run resumes with (its checkpoint's, the command line over it), the model init_from names, the datasets, the
device (dtype, compile, peak FLOP/s; None means "this device's default" in every script), DDP ranks under torchrun,
the learning-rate schedule, the log line, checkpoints that resume exactly, and preemption."""

import ctypes
import dataclasses
import gc
import importlib.util
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import configurator
from haikugpt.checkpoint import check_name, load_checkpoint, load_pretrained, model_from_checkpoint, save_checkpoint
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
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Dense bf16/fp16 tensor-core FLOP/s from NVIDIA's datasheets, matched against torch.cuda.get_device_name() in this
# order (so "a100" is tried before "a10", A10 and AWS's A10G). MFU is against this 16-bit peak, whatever the dtype.
GPU_PEAK_FLOPS = {
    "b200": 2250e12, "h200": 989e12, "h100 nvl": 835e12, "h100 pcie": 756e12, "h100": 989e12, "h800": 989e12,
    "a100": 312e12, "a800": 312e12, "a10": 125e12, "l40s": 362e12, "l40": 181e12, "l4": 121e12, "a6000": 155e12,
    "4090": 165e12, "3090": 71e12, "v100": 125e12, "t4": 65e12,
}  # fmt: skip
RANK = int(os.environ.get("RANK", 0))  # set by torchrun


# ---------------------------------------------------------------------------------------------------------------------
# The config: the user's, checked in the order they typed it; what a run resolves is a separate record


def read_config(defaults: dict, argv: list[str], doc: str, source: str = "") -> tuple[dict, dict, dict | None]:
    """The user's config, the keys they set, and the checkpoint when resuming (its config the base, its model's shape
    kept: keys that differ are refused). source: the script whose comments --help shows beside this file's."""
    user = configurator.overrides(defaults, argv, doc, (__file__, source) if source else (__file__,))
    config = {**defaults, **user}
    check_values(config)
    if config["init_from"] != "resume":
        return config, user, None
    ckpt = load_checkpoint(config["out_dir"])
    saved = {k: v for k, v in ckpt["config"].items() if k in defaults}
    config = {**defaults, **saved, **user, "init_from": "resume"}
    check_values(config)
    ckpt["model_args"].update(dropout=config["dropout"], lora_dropout=config["lora_dropout"])  # the one change allowed
    kept = {k: ckpt["model_args"].get(k, getattr(GPTConfig(), k)) for k in SHAPE_KEYS}
    kept["lora_targets"] = ",".join(kept["lora_targets"])
    if differ := [k for k in SHAPE_KEYS if k in user and user[k] != kept[k]]:
        detail = ", ".join(f"{k}={user[k]!r} differs from the checkpoint's {k}={kept[k]!r}" for k in differ)
        drop = " and ".join(f"--{k}" for k in differ)
        raise ValueError(f"{detail}: a resumed run keeps its model's shape; drop {drop}, or train a new model with "
                         "another out_dir")  # fmt: skip
    edits = [f"{k} {saved[k]!r} -> {v!r}" for k, v in user.items() if k != "init_from" and saved.get(k, v) != v]
    print0(f"resuming {config['out_dir']} at step {ckpt['iter_num']}" + f"; changed: {'; '.join(edits)}" * bool(edits))
    return config, user, ckpt


def check_values(config: dict) -> None:
    """Refuse values that cannot work, before any file is read."""
    for key in (*POSITIVE_KEYS, "gradient_accumulation_steps"):
        if config[key] < 1:
            raise ValueError(f"{key}={config[key]} must be at least 1")
    if config["decay_lr"] and config["warmup_iters"] > config["lr_decay_iters"]:
        raise ValueError(f"warmup_iters={config['warmup_iters']} exceeds lr_decay_iters={config['lr_decay_iters']}")
    if config["n_embd"] % config["n_head"] and config["init_from"] != "resume":  # resuming: the checkpoint's shape
        raise ValueError(f"n_embd={config['n_embd']} must be divisible by n_head={config['n_head']}")
    for key in ("dropout", "lora_dropout"):
        if not 0 <= config[key] < 1:
            raise ValueError(f"{key}={config[key]} must be in [0, 1)")
    if config["lora_rank"] < 0:
        raise ValueError(f"lora_rank={config['lora_rank']} must be 0 (no adapters: every weight trains) or more")
    if unknown := [t for t in config["lora_targets"].split(",") if t not in LORA_TARGETS]:
        raise ValueError(f"lora_targets: {unknown[0]!r} is not a projection of the model; choose from "
                         f"{', '.join(LORA_TARGETS)}")  # fmt: skip
    resolve_dtype(config["dtype"], torch.device("meta"))  # its name; whether the device has it is checked on it


def check_vocab(meta: dict, ckpt_meta: dict | None, pretrained: str | None, prepare: str) -> None:
    """Refuse data whose token ids mean something else to the model (a checkpoint's vocabulary must be the data's, and
    pretrained weights read GPT-2 BPE, which prepare makes) before any weights are read or downloaded."""
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


def describe_run(config: dict, model, ranks: "Ranks", device, dtype: str, compiled: bool, accum: int) -> dict:
    """What the run resolved (device, dtype, compile, ranks, the model's shape): printed after the config, as a config
    file, and returned for config.json and the checkpoints."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    resolved = {"device": str(device), "dtype": dtype, "compile": compiled, "ranks": ranks.world_size,
                "micro_steps_per_rank": accum, "parameters": model.num_params(), "trainable": trainable,
                "model": dataclasses.asdict(model.config)}  # fmt: skip
    print0(*(f"{k} = {v!r}" for k, v in config.items()), sep="\n")
    print0("# resolved: " + ", ".join(f"{k} {v!r}" for k, v in resolved.items() if k != "model"))
    print0("# model: " + ", ".join(f"{k} {v!r}" for k, v in resolved["model"].items()))
    frozen = trainable < sum(p.numel() for p in model.parameters())  # LoRA
    print0(f"{model.num_params() / 1e6:.2f}M parameters" + f", {trainable / 1e6:.2f}M of them trained" * frozen)
    return resolved


# ---------------------------------------------------------------------------------------------------------------------
# Datasets: a folder with train.bin and val.bin (uint16 token ids, documents separated by the end-of-text id) and
# meta.json (tokenizer, vocab_size, end-of-text id, the char table or the learnt BPE), as prepare/ writes them


def dataset_dir(name: str) -> Path | None:
    """The folder of dataset name: a path, data/<name> in the current directory, or data/<name> in the repository."""
    return next((d for d in (Path(name).expanduser(), Path("data") / name, DATA_DIR / name) if d.is_dir()), None)


def find_dataset(name: str) -> tuple[Path, dict]:
    """The dataset's folder, with both splits, and its meta; an error naming the command that prepares it if missing."""
    folder = dataset_dir(name)
    if folder is None or not (folder / "train.bin").is_file():
        raise FileNotFoundError(f"dataset {name!r} is not prepared (no {DATA_DIR / name / 'train.bin'}); run "
                                f"`{prepare_command(name)}`")  # fmt: skip
    if not (folder / "val.bin").is_file():
        raise FileNotFoundError(f"{folder} has train.bin but no val.bin; rerun its prepare script")
    return folder, read_meta(folder)


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
    if missing := [k for k in ("tokenizer", "vocab_size") if not isinstance(meta, dict) or k not in meta]:
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
    """The UTF-8 bytes each token id stands for, (vocab_size,) float32, for bits per byte: end-of-text 1 (a separator),
    padding ids 0; all zeros (with a note) where the tokenizer cannot be loaded (GPT-2's BPE files offline)."""
    sizes = torch.zeros(vocab_size)
    try:
        tok = load_tokenizer(meta)
    except RuntimeError as e:
        print0(f"note: no bits per byte in this run's evals: {e}")
        return sizes
    n = min(vocab_size, tok.vocab_size)
    sizes[:n] = torch.tensor([1 if i == tok.eot_id else len(tok.token_bytes(i)) for i in range(n)])
    return sizes


# ---------------------------------------------------------------------------------------------------------------------
# The device: its dtype, whether to compile there, its peak FLOP/s, what a CPU does with the memory a step frees; and
# DDP under torchrun (without it every helper works on a world of one)


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """The device called name (None: cuda, else mps, else cpu), checked; under torchrun, cuda is cuda:local_rank."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if not re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", name):
        raise ValueError(f"unknown device {name!r}: expected cpu, cuda, cuda:N or mps")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but this torch build sees no CUDA GPU; use --device=cpu")
        if "WORLD_SIZE" in os.environ and device.index is None:
            device = torch.device("cuda", local_rank)  # one GPU per torchrun process
        torch.cuda.set_device(device)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS is not available here; use --device=cpu")
    return device


def default_dtype(device: torch.device) -> str:
    """bfloat16 where the hardware runs it natively: no gradient scaler, and 2-3x float32's matmul speed."""
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    native = device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return "bfloat16" if native else "float32"  # emulated bf16 (plain AVX512, ARM) is slower; MPS: autocast varies


def resolve_dtype(name: str | None, device: torch.device) -> str:
    """The dtype called name, checked to work on device; None: the device's default."""
    if name not in (None, *DTYPES):
        raise ValueError(f"dtype={name!r}: expected float32, bfloat16 or float16 (or None for the device's default)")
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("dtype='bfloat16' but this GPU has no bfloat16; use --dtype=float16")
    return name or default_dtype(device)


def autocast(device: torch.device, dtype: str):
    return nullcontext() if dtype == "float32" else torch.autocast(device.type, dtype=DTYPES[dtype])


def resolve_compile(flag: bool | None, device: torch.device) -> tuple[bool, str | None]:
    """Whether to torch.compile, and why not where it was asked for but cannot run. None: on CUDA only; on a CPU
    (bench.py train) compiling made steps 0.86-1.23x as fast, after 14-34 s of compiling."""
    if not (device.type == "cuda" if flag is None else flag):
        return False, None
    if device.type == "mps":
        return False, "torch.compile does not support mps"
    if device.type == "cuda":
        ok, needs = importlib.util.find_spec("triton") is not None, "triton (pip install triton)"
    else:
        ok = any(c and shutil.which(c) for c in (os.environ.get("CXX"), "g++", "clang++", "c++", "cl"))
        needs = "a C++ compiler"
    return ok, None if ok else f"torch.compile on {device.type.upper()} needs {needs}"


def setup_device(config: dict) -> tuple["Ranks", torch.device, str, object, bool]:
    """This rank's place under torchrun (if any) and its device, the dtype and its autocast context, and whether to
    compile (a warning where it was asked for but cannot run); on a CPU, memory a step frees is kept for the next."""
    torchrun = "WORLD_SIZE" in os.environ
    ranks = Ranks(*(int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))) if torchrun else Ranks()
    device = resolve_device(config["device"], ranks.local_rank)
    if torchrun:  # join its process group
        dist.init_process_group(backend=config["backend"] or ("nccl" if device.type == "cuda" else "gloo"))
        if dist.get_backend() != "gloo":
            ranks.cpu_group = dist.new_group(backend="gloo")
    dtype = resolve_dtype(config["dtype"], device)
    compiled, problem = resolve_compile(config["compile"], device)
    if problem:
        print0(f"warning: {problem}; running eager", file=sys.stderr)
    if compiled:  # a compiler failure falls back to eager, with a warning
        torch._dynamo.config.suppress_errors = True
    if device.type == "cpu":
        keep_freed_memory()
    return ranks, device, dtype, autocast(device, dtype), compiled


def inference_device(name: str | None, dtype: str | None) -> tuple[torch.device, object]:
    """The device called name and the autocast context of dtype there (None: each the device's default)."""
    device = resolve_device(name)
    return device, autocast(device, resolve_dtype(dtype, device))


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on device; on CUDA from pinned memory, so that the copy overlaps with the GPU's work."""
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


@cache
def peak_flops(device: torch.device) -> float:
    """The device's peak FLOP/s for MFU: a known GPU's 16-bit figure, else a matmul's in its default dtype, timed."""
    name = torch.cuda.get_device_name(device).lower() if device.type == "cuda" else ""
    known = next((flops for key, flops in GPU_PEAK_FLOPS.items() if key in name), None)
    return known or matmul_flops(device, torch.bfloat16 if default_dtype(device) == "bfloat16" else torch.float32)


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    """FLOP/s of an n x n matmul in dtype: the fastest of ~0.5 s of runs, the one least disturbed by other work."""
    gen = torch.Generator(device).manual_seed(0)  # its own: the training's random streams stay untouched
    a, b = (torch.randn(n, n, dtype=dtype, device=device, generator=gen) for _ in range(2))
    (a @ b).sum().item()  # warmup
    times: list[float] = []
    while len(times) < 3 or sum(times) < 0.5:
        t0 = time.perf_counter()
        (a @ b).sum().item()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times)


def keep_freed_memory() -> bool:
    """Make glibc keep the memory a step frees for the next, not unmap large blocks to fault them back in page by page
    (~1.5 GB per GPT-2 124M step): steps 1.16-1.73x as fast (bench.py train), peak 3.5 instead of 3.0 GB. True if it
    did; glibc only, and MALLOC_MMAP_MAX_ or MALLOC_TRIM_THRESHOLD_ in the environment wins."""
    try:
        glibc = bool(os.confstr("CS_GNU_LIBC_VERSION"))  # e.g. "glibc 2.36"
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name (macOS, musl)
        glibc = False
    if not glibc or "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(None)  # the C library this process runs on
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h; no mmap: large blocks come from the heap too
    return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1


def print0(*args, **kwargs) -> None:
    """print on rank 0 only, flushed so logs keep up when piped."""
    if RANK == 0:
        print(*args, **kwargs, flush=True)


@dataclasses.dataclass
class Ranks:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    cpu_group: object = None  # a gloo group for host-side flags, so checking one never waits for the GPU

    @property
    def ddp(self) -> bool:
        return self.world_size > 1


def teardown_ddp() -> None:
    """Leave the process group together: wait for every rank, free what holds on to the group, then destroy it."""
    if dist.is_initialized():
        dist.barrier()
        gc.collect()  # a DDP reducer left for the interpreter's exit would outlive the group it works on
        dist.destroy_process_group()


def all_mean(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Average a tensor over DDP ranks (SUM then divide: gloo has no AVG)."""
    if ranks.ddp:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ranks.world_size
    return t


def all_max(flag: bool, ranks: Ranks) -> bool:
    """True on every rank if it is True on any (on the CPU: a GPU tensor would sync the device)."""
    if not ranks.ddp:
        return flag
    t = torch.tensor(float(flag))
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=ranks.cpu_group)
    return bool(t.item())


def gather(obj, ranks: Ranks) -> list:
    """One object from every rank, in rank order."""
    if not ranks.ddp:
        return [obj]
    out = [None] * ranks.world_size
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The pieces the loop calls: the schedule, the log, checkpoints that resume exactly, and preemption


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
    """nanoGPT's log line (loss, step time, MFU), then grad norm, lr and tokens/s; a JSON record per line and per eval
    in out_dir/metrics.jsonl (and wandb). Losses stay on the device until a line reads them. Rank 0 writes."""

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
    """Write out_dir/ckpt.pt (and best.pt, the same bytes), and config.json: the user's config and the resolved one."""
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


def start_run(config: dict, optimizer, ckpt: dict | None, ranks: Ranks, device: torch.device, dtype: str
              ) -> tuple[torch.amp.GradScaler, torch.Generator]:  # fmt: skip
    """out_dir checked writable (before the first step, not at the first save); this rank's scaler and batch generator,
    seeded (torch too); resuming, these and the optimizer as ckpt left them."""
    if ranks.rank == 0:
        check_writable(config["out_dir"])
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "float16")
    generator = torch.Generator().manual_seed(config["seed"] + TRAIN_BATCHES_SEED + ranks.rank)  # the batches
    torch.manual_seed(config["seed"] + ranks.rank)  # dropout; the weights come from the model's own generator
    if ckpt is None:
        return scaler, generator
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
        generator.manual_seed(config["seed"] + TRAIN_BATCHES_SEED + ranks.rank + ckpt["iter_num"])
    return scaler, generator


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
