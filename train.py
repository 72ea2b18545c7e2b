"""
Train a GPT language model: from scratch, fine-tuned from OpenAI's GPT-2 or EleutherAI's GPT-Neo (all weights, or
LoRA adapters), or resumed from out_dir. Config files and overrides work as in nanoGPT (see configurator.py);
`python train.py --help` lists every key with its default (they are trainer.py's DEFAULTS, which classify.py shares).

On one GPU, or on this laptop's CPU:
    python train.py config/train_haiku_bpe.py                  # the offline demo: a small model in a few minutes
    python train.py config/finetune_haiku.py --batch_size=4    # GPT-2 fine-tuned on haiku
    python train.py config/finetune_haiku_neo.py               # GPT-Neo 1.3B with LoRA adapters
    python train.py --init_from=resume --out_dir=out-haiku-bpe --max_iters=2000   # continue a run, same config

DDP on 8 GPUs of one node:
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py

DDP on 2 nodes of 8 GPUs each (run the first line on the master node, e.g. 123.456.123.456, the second on the other):
    torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 --master_port=1234 train.py
    torchrun --nproc_per_node=8 --nnodes=2 --node_rank=1 --master_addr=123.456.123.456 --master_port=1234 train.py
(if the nodes have no Infiniband, prepend NCCL_IB_DISABLE=1)

Outputs in out_dir: ckpt.pt (latest), best.pt (best val loss), config.json (your config and what the run resolved:
device, dtype, compile, the model's shape), metrics.jsonl (one JSON object per log). SIGINT or SIGTERM (a cluster's
preemption) finishes the current step, saves ckpt.pt and exits 0.
"""

import math
import sys

import torch

import ddp
import lora
import trainer
from checkpoint import model_from_checkpoint
from data import Split, find_dataset, read_meta
from files import error_line
from hf import check_name
from model import GPT, GPTConfig

DEFAULTS = trainer.DEFAULTS


def check_init(config: dict, user: dict) -> None:
    """init_from names a model that exists, and no model-shape key is set that it would ignore."""
    init_from = config["init_from"]
    if init_from in ("scratch", "resume"):
        return
    check_name(init_from)
    ignored = [k for k in trainer.SHAPE_KEYS if k in user and k != "block_size" and not k.startswith("lora_")]
    if ignored:
        raise ValueError(f"{ignored[0]}={user[ignored[0]]!r} does not apply to init_from={init_from}, which brings "
                         f"its own shape; drop --{ignored[0]}")  # fmt: skip


def init_model(config: dict, ckpt: dict | None, meta: dict) -> GPT:
    """The model init_from asks for: a new one, the checkpoint's, or OpenAI's GPT-2 or EleutherAI's GPT-Neo; with
    LoRA adapters when lora_rank says so."""
    if config["init_from"] == "scratch":
        shape = {k: config[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "bias", "dropout")}
        vocab_size = math.ceil(meta["vocab_size"] / 64) * 64  # a multiple of 64 keeps the matmuls fast
        return GPT(GPTConfig(vocab_size=vocab_size, **shape, **lora.settings(config)), seed=config["seed"])
    if ckpt is not None:  # dropout is the one model setting a resumed run may change
        ckpt["model_args"].update(dropout=config["dropout"], lora_dropout=config["lora_dropout"])
        return model_from_checkpoint(ckpt)
    model = GPT.from_pretrained(config["init_from"], dropout=config["dropout"], block_size=config["block_size"])
    lora.adapt(model, config)
    return model


@torch.no_grad()
def estimate_loss(model, splits: dict[str, Split], run: trainer.Run) -> dict[str, float]:
    """Mean loss over eval_iters batches per split; the same batches at every eval, so evals compare."""
    model.eval()
    out = {}
    for name, split in splits.items():
        generator = torch.Generator().manual_seed(run.config["seed"] + trainer.EVAL_BATCHES_SEED + run.ranks.rank)
        losses = torch.zeros(run.config["eval_iters"], device=run.device)
        for k in range(run.config["eval_iters"]):
            x, y = split.batch(run.config["batch_size"], generator, run.device)
            with run.ctx:
                losses[k] = model(x, y)[1]
        out[f"{name}/loss"] = ddp.all_mean(losses.mean(), run.ranks).item()
    model.train()
    return out


def setup(argv: list[str]) -> tuple[trainer.Run, dict[str, Split]]:
    """Everything checked in the order the user typed it: keys and values, then the names and files they point to
    (model, checkpoint, dataset), then what those imply (vocabularies, downloads)."""
    config, user, ckpt = trainer.read_config(DEFAULTS, argv, __doc__, (trainer.__file__,))
    check_init(config, user)
    folder = find_dataset(config["dataset"])
    meta = read_meta(folder)
    pretrained = config["init_from"] if config["init_from"] not in ("scratch", "resume") else None
    trainer.check_vocab(meta, ckpt["meta"] if ckpt else None, pretrained, "python prepare/haiku.py")
    ranks, device = ddp.setup(config["backend"], config["device"])
    model = init_model(config, ckpt, meta)
    if meta["vocab_size"] > model.config.vocab_size:
        raise ValueError(f"the dataset's vocabulary of {meta['vocab_size']} does not fit the model's "
                         f"vocab_size {model.config.vocab_size}")  # fmt: skip
    splits = {name: Split(folder / f"{name}.bin", model.config.block_size) for name in ("train", "val")}
    return trainer.setup(config, ckpt, model, meta, ranks, device), splits


def train(argv: list[str]) -> None:
    run, splits = setup(argv)
    config = run.config
    trainer.fit(
        run,
        batch=lambda generator: splits["train"].batch(config["batch_size"], generator, run.device),
        evaluate=lambda model: estimate_loss(model, splits, run),
    )


def main(argv: list[str] | None = None) -> None:
    try:
        train(sys.argv[1:] if argv is None else argv)  # returns having dropped the model, so DDP leaves cleanly
    except (ValueError, OSError, RuntimeError) as e:
        sys.exit(f"error: {error_line(e)}" if ddp.RANK == 0 else 1)
    ddp.teardown()


if __name__ == "__main__":
    main()
