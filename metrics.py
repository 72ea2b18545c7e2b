"""What a training run logs: nanoGPT's log line (loss, step time, MFU) with the gradient norm, learning rate and
tokens per second after it, one JSON record per log in out_dir/metrics.jsonl, and the same records to wandb when
wandb_log is on (wandb is imported only then). Rank 0 writes; every rank takes part in averaging the loss.
"""

import json
import math
import os
import sys
import time
from pathlib import Path

import torch

import ddp
from ddp import print0
from device import peak_flops


class Metrics:
    """Log records to out_dir/metrics.jsonl and, with wandb_log, to wandb (imported only then). Rank 0 only."""

    def __init__(self, run):
        self.enabled = run.ranks.rank == 0
        self.path = Path(run.config["out_dir"]) / "metrics.jsonl"
        self.wandb = None
        if self.enabled and run.config["wandb_log"]:
            import wandb

            wandb_dir = os.environ.get("WANDB_DIR", run.config["out_dir"])
            config = {**run.config, "resolved": run.resolved}
            wandb.init(project=run.config["wandb_project"], name=run.config["wandb_run_name"], config=config,
                       dir=wandb_dir)  # fmt: skip
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


class Log:
    """The training log: losses stay on the device until a log line needs them (reading one syncs the device)."""

    def __init__(self, run):
        self.run = run
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet read back
        self.t_log, self.eval_seconds, self.steps, self.tokens = time.perf_counter(), 0.0, 0, 0
        self.flops_per_token = run.raw_model.estimate_flops_per_token()
        self.peak = peak_flops(run.device)

    def add(self, step: int, loss: torch.Tensor, tokens: int) -> None:
        self.pending.append((step, loss))
        self.steps, self.tokens = self.steps + 1, self.tokens + tokens

    def check_losses(self) -> list[float]:
        """Read back the pending losses (averaged over ranks); exit naming the first step that is not finite."""
        if not self.pending:
            return []
        values = ddp.all_mean(torch.stack([loss for _, loss in self.pending]), self.run.ranks).tolist()
        for (step, _), value in zip(self.pending, values):
            if not math.isfinite(value):
                sys.exit(
                    f"error: loss is {value} at step {step}; stopping without saving (the last checkpoint in "
                    f"{self.run.config['out_dir']} is untouched). Lower learning_rate, or use bfloat16, not float16."
                )
        self.pending.clear()
        return values

    def write(self, step: int, grad_norm: torch.Tensor, lr: float, metrics: Metrics) -> None:
        """nanoGPT's log line, with more figures after it; the same record to metrics.jsonl."""
        loss = self.check_losses()[-1]
        now = time.perf_counter()
        dt = (now - self.t_log - self.eval_seconds) / self.steps
        tok_s = self.tokens * self.run.ranks.world_size / self.steps / dt
        mfu = self.flops_per_token * tok_s / self.run.ranks.world_size / self.peak
        norm = grad_norm.item()
        print0(
            f"iter {step}: loss {loss:.4f}, time {dt * 1000:.2f}ms, mfu {mfu * 100:.2f}%, "
            f"grad norm {norm:.2f}, lr {lr:.1e}, {tok_s:,.0f} tok/s"
        )
        record = {"iter": step, "loss": loss, "time_ms": dt * 1000, "mfu": mfu, "grad_norm": norm, "lr": lr}
        if self.run.device.type == "cuda":
            record["gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.run.device) / 2**20
        metrics.log({**record, "tok_per_s": tok_s})
        self.t_log, self.eval_seconds, self.steps, self.tokens = now, 0.0, 0, 0
