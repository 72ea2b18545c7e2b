"""Where a script runs: the device, its precision, whether torch.compile can run there, its peak FLOP/s, how the C
library treats the memory a CPU training step frees, and the DDP ranks under torchrun. None means "the default for
this device" for device, dtype and compile alike, in every script.

    ranks, device, dtype, ctx, compiled = setup_device(config)   # RANK, LOCAL_RANK, WORLD_SIZE from torchrun, if any
    with ctx: logits, loss = model(x, y)                          # autocast to dtype (bfloat16 where it is native)
    print0("only rank 0 prints this"); loss = all_mean(loss, ranks); teardown_ddp()
"""

import ctypes
import gc
import importlib.util
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache

import torch
import torch.distributed as dist

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Dense bf16/fp16 tensor-core FLOP/s from NVIDIA's datasheets, matched against torch.cuda.get_device_name() in this
# order (so "a100" is tried before "a10", A10 and AWS's A10G). MFU is against this 16-bit peak, whatever the dtype.
GPU_PEAK_FLOPS = {
    "b200": 2250e12, "h200": 989e12, "h100 nvl": 835e12, "h100 pcie": 756e12, "h100": 989e12, "h800": 989e12,
    "a100": 312e12, "a800": 312e12, "a10": 125e12, "l40s": 362e12, "l40": 181e12, "l4": 121e12, "a6000": 155e12,
    "4090": 165e12, "3090": 71e12, "v100": 125e12, "t4": 65e12,
}  # fmt: skip
RANK = int(os.environ.get("RANK", 0))  # set by torchrun


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """The device called name (None: cuda, else mps, else cpu), checked to exist; under torchrun, cuda means the
    process's own GPU, cuda:local_rank."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: expected cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but this torch build sees no CUDA GPU; use --device=cpu")
        if "WORLD_SIZE" in os.environ and device.index is None:
            device = torch.device("cuda", local_rank)  # one GPU per torchrun process
        torch.cuda.set_device(device)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} but MPS is not available here; use --device=cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={name!r}: expected cpu, cuda, cuda:N or mps")
    return device


def default_dtype(device: torch.device) -> str:
    """bfloat16 where the hardware runs it natively: no gradient scaler, and 2-3x float32's matmul speed."""
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device.type == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return "bfloat16" if native else "float32"  # emulated bf16 (plain AVX512, ARM) is slower than float32
    return "float32"  # MPS: its autocast support varies with the macOS version


def resolve_dtype(name: str | None, device: torch.device) -> str:
    """The dtype called name, checked to work on device; None: the device's default."""
    if name is None:
        return default_dtype(device)
    if name not in DTYPES:
        raise ValueError(f"dtype={name!r}: expected float32, bfloat16 or float16 (or None for the device's default)")
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("dtype='bfloat16' but this GPU has no bfloat16; use --dtype=float16")
    return name


def autocast(device: torch.device, dtype: str):
    """The context a forward pass runs in: autocast to dtype, or nothing for float32."""
    return nullcontext() if dtype == "float32" else torch.autocast(device.type, dtype=DTYPES[dtype])


def resolve_compile(flag: bool | None, device: torch.device) -> tuple[bool, str | None]:
    """Whether to torch.compile, and why not where it was asked for but cannot run. None: on CUDA only. On a 2-core
    CPU (bench.py train, three runs) compiling made the char demo's step 0.86-1.23x as fast and GPT-2 124M's in
    bfloat16 0.98-1.07x, after 14-34 s of compiling: eager is the better default there."""
    if not (device.type == "cuda" if flag is None else flag):
        return False, None
    if device.type == "mps":
        problem = "torch.compile does not support mps"
    elif device.type == "cuda":
        problem = (
            None if importlib.util.find_spec("triton") else "torch.compile on CUDA needs triton (pip install triton)"
        )
    else:
        compilers = [os.environ.get("CXX"), "g++", "clang++", "c++", "cl"]
        problem = None if any(c and shutil.which(c) for c in compilers) else "torch.compile on CPU needs a C++ compiler"
    return problem is None, problem


def setup_device(config: dict) -> tuple["Ranks", torch.device, str, object, bool]:
    """This rank's place under torchrun (if any) and its device, the dtype and its autocast context, and whether to
    compile (a warning where it was asked for but cannot run); on a CPU, memory a step frees is kept for the next."""
    ranks, device = setup_ddp(config["backend"], config["device"])
    dtype = resolve_dtype(config["dtype"], device)
    compiled, problem = resolve_compile(config["compile"], device)
    if problem:
        print0(f"warning: {problem}; running eager", file=sys.stderr)
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
    """The device's peak FLOP/s for MFU: the 16-bit figure from the table for known GPUs, else timed once with a matmul
    in the device's default dtype (bfloat16 on a CPU that has it)."""
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
    """Make glibc keep the memory a training step frees for the next step instead of returning it to the OS; True if
    it did. By default glibc maps large blocks afresh and unmaps them when freed, so each CPU step faults its
    activations, logits and autocast copies back in page by page (~1.5 GB of faults per GPT-2 124M step); keeping
    them made steps 1.16-1.73x as fast (bench.py train), for the peak memory held (124M: 3.5 instead of 3.0 GB).
    Linux with glibc only; MALLOC_MMAP_MAX_ or MALLOC_TRIM_THRESHOLD_ in the environment wins."""
    try:
        glibc = bool(os.confstr("CS_GNU_LIBC_VERSION"))  # e.g. "glibc 2.36"
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name (macOS, musl)
        glibc = False
    if not glibc or "MALLOC_MMAP_MAX_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(None)  # the C library this process runs on
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h; no mmap: large blocks come from the heap too
    return libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1


# ---------------------------------------------------------------------------------------------------------------------
# DDP under torchrun; without it every helper works on a world of one


def print0(*args, **kwargs) -> None:
    """print on rank 0 only, flushed so logs keep up when piped."""
    if RANK == 0:
        print(*args, **kwargs, flush=True)


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
        return Ranks(), resolve_device(device_name)
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    device = resolve_device(device_name, ranks.local_rank)
    dist.init_process_group(backend=backend or ("nccl" if device.type == "cuda" else "gloo"))
    if dist.get_backend() != "gloo":
        ranks.cpu_group = dist.new_group(backend="gloo")
    return ranks, device


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
