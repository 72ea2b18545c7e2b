"""
Train a GPT language model: from scratch, fine-tuned from OpenAI's GPT-2 or EleutherAI's GPT-Neo (all weights, or
LoRA adapters), or resumed from out_dir. Config files and overrides work as in nanoGPT (configurator.py); `python
train.py --help` lists every key with its default (haikugpt/run.py's DEFAULTS, which classify.py shares).

On one GPU, or on this laptop's CPU:
    python train.py config/train_haiku_bpe.py                  # the offline demo: a small model in a few minutes
    python train.py config/finetune_haiku.py --batch_size=4    # GPT-2 medium fine-tuned on haiku
    python train.py config/finetune_haiku_neo.py               # GPT-Neo 1.3B with LoRA adapters
    python train.py --init_from=resume --out_dir=out-haiku-bpe --max_iters=2000   # continue a run, same config

DDP on 8 GPUs of one node:
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py

DDP on 2 nodes of 8 GPUs each (run the first line on the master node, e.g. 123.456.123.456, the second on the other):
    torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 --master_port=1234 train.py
    torchrun --nproc_per_node=8 --nnodes=2 --node_rank=1 --master_addr=123.456.123.456 --master_port=1234 train.py
(if the nodes have no Infiniband, prepend NCCL_IB_DISABLE=1)

Outputs in out_dir: ckpt.pt (latest), best.pt (best val loss), config.json (your config and what the run resolved:
device, dtype, compile, the model's shape), metrics.jsonl (one JSON object per log line and per eval). SIGINT or
SIGTERM (a cluster's preemption) finishes the current step, saves ckpt.pt and exits 0.
"""

import math
import sys
from contextlib import nullcontext

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from haikugpt import run
from haikugpt.checkpoint import build_checkpoint, model_from_checkpoint
from haikugpt.files import one_line_errors
from haikugpt.run import DTYPES, all_max, all_mean, gather, print0, setup_device, teardown_ddp, to_device
from model import hold_frozen_in


def train(argv: list[str]) -> None:
    # Everything checked in the order the user typed it: keys and values, then the names and files they point to
    # (model, checkpoint, dataset), then what those imply (vocabularies, downloads).
    config, user, ckpt = run.read_config(run.DEFAULTS, argv, __doc__)
    pretrained = run.pretrained_name(config["init_from"])
    ignored = [k for k in run.SHAPE_KEYS if k in user and k != "block_size" and not k.startswith("lora_")]
    if pretrained and ignored:
        raise ValueError(f"{ignored[0]}={user[ignored[0]]!r} does not apply to init_from={pretrained}, which brings "
                         f"its own shape; drop --{ignored[0]}")  # fmt: skip
    data_dir, meta = run.find_dataset(config["dataset"])
    run.check_vocab(meta, ckpt["meta"] if ckpt else None, pretrained, "python prepare/haiku.py")

    # the model, on this rank's device
    ranks, device, dtype, ctx, compiled = setup_device(config)
    model = model_from_checkpoint(ckpt) if ckpt else run.init_gpt(config, meta["vocab_size"])
    if meta["vocab_size"] > model.config.vocab_size:
        raise ValueError(f"the dataset's vocabulary of {meta['vocab_size']} does not fit the model's "
                         f"vocab_size {model.config.vocab_size}")  # fmt: skip
    block_size = model.config.block_size
    for split in ("train", "val"):
        n = len(np.memmap(data_dir / f"{split}.bin", dtype=np.uint16, mode="r"))
        if n <= block_size:
            raise ValueError(f"{data_dir / split}.bin holds {n} tokens, too few for block_size {block_size}; lower it")

    # how it runs: precision, compile, DDP; the optimizer; where a resumed run continues
    accum_steps = run.micro_steps(config["gradient_accumulation_steps"], ranks.world_size)
    if model.config.lora_rank:  # frozen weights in the training dtype: half the memory in bfloat16
        hold_frozen_in(model, DTYPES[dtype])
    model.to(device)
    optimizer = model.configure_optimizers(
        config["weight_decay"], config["learning_rate"], (config["beta1"], config["beta2"]), device.type
    )
    scaler, generator = run.start_run(config, optimizer, ckpt, ranks, device, dtype)
    iter_num, best_val_loss = (ckpt["iter_num"], ckpt["best_val_loss"]) if ckpt else (0, float("inf"))
    raw_model = model  # unwrapped and uncompiled: what is saved
    model = torch.compile(model) if compiled else model
    model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if ranks.ddp else model
    torch.backends.cuda.matmul.allow_tf32 = True  # CUDA's float32 matmuls on tensor cores (cuDNN's are by default)
    resolved = run.describe_run(config, raw_model, ranks, device, dtype, compiled, accum_steps)
    print0(f"tokens per iteration: {accum_steps * ranks.world_size * config['batch_size'] * block_size:,} = "
           f"{ranks.world_size} ranks x {accum_steps} micro-steps x {config['batch_size']} x {block_size}")  # fmt: skip

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """batch_size random windows of the split: inputs x and targets y, x shifted by one, (B, T) on device."""
        data = np.memmap(data_dir / f"{split}.bin", dtype=np.uint16, mode="r")  # reopened: its pages are not kept
        starts = torch.randint(len(data) - block_size, (config["batch_size"],), generator=generator).tolist()
        xy = torch.from_numpy(np.stack([data[i : i + 1 + block_size] for i in starts]).astype(np.int64))
        return to_device(xy[:, :-1], device), to_device(xy[:, 1:], device)

    nbytes = run.token_bytes(meta, raw_model.config.vocab_size).to(device)

    @torch.no_grad()
    def estimate_loss() -> dict[str, float]:
        """Mean loss over eval_iters batches per split, and bits per byte; the same batches at every eval."""
        model.eval()
        out, bpb = {}, {}
        for split in ("train", "val"):
            batches = torch.Generator().manual_seed(config["seed"] + run.EVAL_BATCHES_SEED + ranks.rank)
            total = torch.zeros(3, device=device)  # loss summed over targets (nats), targets, their bytes
            for _ in range(config["eval_iters"]):
                x, y = get_batch(split, batches)
                with ctx:
                    loss = model(x, y)[1]
                total += torch.stack([loss.float() * y.numel(), torch.tensor(y.numel()), nbytes[y].sum()])
            nats, targets, n_bytes = all_mean(total, ranks).tolist()
            out[f"{split}/loss"] = nats / targets
            if n_bytes:  # bits per byte, comparable across tokenizers (0 bytes: no tokenizer, see token_bytes)
                bpb[f"{split}/bpb"] = nats / math.log(2) / n_bytes
        model.train()
        return {**out, **bpb}

    def save(step: int, best: bool) -> None:
        """ckpt.pt (and best.pt) with every rank's random streams, so a resumed run repeats this one exactly."""
        rng, sampler = gather(run.rng_state(device), ranks), gather(generator.get_state(), ranks)
        if ranks.rank == 0:
            run.save_run(build_checkpoint(raw_model, config, meta, resolved, optimizer, scaler, step,
                                               best_val_loss, rng=rng, sampler=sampler), best)  # fmt: skip

    log = run.Log(config, resolved, ranks, device, raw_model.flops_per_token())
    with run.StopSignal() as stop:
        for step in range(iter_num, config["max_iters"] + 1):
            last_step = step == config["max_iters"]
            lr = run.get_lr(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr

            # evaluate the loss on train and val, and save the checkpoint
            if step % config["eval_interval"] == 0 or last_step or config["eval_only"]:
                with log.paused():
                    log.check_losses()  # never save weights that a non-finite loss has touched
                    losses = estimate_loss()
                    print0(f"step {step}: " + ", ".join(f"{k.replace('/', ' ')} {v:.4f}" for k, v in losses.items()))
                    if not all(map(math.isfinite, losses.values())):
                        sys.exit(f"error: eval is not finite at step {step}; stopping without saving")
                    log.record({"iter": step, **losses, "lr": lr})
                    improved = losses["val/loss"] < best_val_loss
                    best_val_loss = min(best_val_loss, losses["val/loss"])
                    keep = improved or config["always_save_checkpoint"] or last_step
                    if keep and step > iter_num and not config["eval_only"]:  # at the start nothing has changed
                        save(step, best=improved)
            if last_step or config["eval_only"]:
                break

            # forward, backward and update, with gradient accumulation over micro-steps (DDP syncs on the last one)
            loss_sum, tokens = torch.zeros((), device=device), 0
            for micro_step in range(accum_steps):
                x, y = get_batch("train", generator)
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


def main(argv: list[str] | None = None) -> None:
    with one_line_errors():
        train(sys.argv[1:] if argv is None else argv)  # returns having dropped the model, so DDP leaves cleanly
    teardown_ddp()


if __name__ == "__main__":
    main()
