"""Small helpers for DistributedDataParallel under torchrun: join and leave the process group, print on rank 0,
average and gather across ranks. Without torchrun every helper is a no-op on a world of one.

    ranks, device = ddp.setup(backend=None, device_name=None)    # RANK, LOCAL_RANK, WORLD_SIZE from torchrun
    ddp.print0("only rank 0 prints this")
    loss = ddp.all_mean(loss, ranks)
    ddp.teardown()
"""

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from device import resolve_device

RANK = int(os.environ.get("RANK", 0))  # set by torchrun


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


def setup(backend: str | None, device_name: str | None) -> tuple[Ranks, torch.device]:
    """Join the torchrun process group if there is one; pick this process's device."""
    if "WORLD_SIZE" not in os.environ:
        return Ranks(), resolve_device(device_name)
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    device = resolve_device(device_name, ranks.local_rank)
    dist.init_process_group(backend=backend or ("nccl" if device.type == "cuda" else "gloo"))
    if dist.get_backend() != "gloo":
        ranks.cpu_group = dist.new_group(backend="gloo")
    return ranks, device


def teardown() -> None:
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
