"""
The repository's speed figures, each measured side by side in one run and reported as ratios.

    python bench.py                         # every part, on the default device (cuda if there is one)
    python bench.py generate train          # some parts: generate, train, finetune, prepare, sample, memory
    python bench.py train --device=cuda     # a device: cpu, cuda, cuda:1

On a CPU, generate compares GPT-2 124M (float32) with transformers at batch 1 and 8, train compares float32 and
bfloat16, eager and compiled, with nanoGPT's plain loop. On CUDA, train is GPT-2 124M at block 1024 in bfloat16,
compiled, with fused AdamW and flash attention, its MFU against the GPU's peak; finetune is config/finetune_haiku.py's
shape (GPT-2 medium, block 128); generate is batch 1 and 16, eager and compiled. This machine may be shared and noisy,
so compare figures from the same run, not absolute times across runs.
"""

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import regex
import tiktoken
import torch

from haikugpt.checkpoint import NEO, PRETRAINED, build_checkpoint, load_pretrained, save_checkpoint
from haikugpt.device import matmul_flops, peak_flops, resolve_device
from haikugpt.files import ROOT
from haikugpt.tokenizer import EOT, GPT2_PATTERN, BPETokenizer
from model import GPT, GPTConfig, padded_vocab

GPT2_124M = {"n_layer": 12, "n_head": 12, "n_embd": 768}
GPT2_MEDIUM = {"n_layer": 24, "n_head": 16, "n_embd": 1024}


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """Best wall time of fn() over repeat runs, and its last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def memory_bandwidth(device: torch.device, gb: float = 1.0) -> float:
    """Bytes per second read by a sum over a tensor of gb gigabytes: the best of several, as for matmul_flops."""
    x = torch.ones(int(gb * 2**30) // 4, device=device)
    x.sum().item()
    seconds, _ = timed(lambda: x.sum().item(), repeat=5)
    return x.numel() * 4 / seconds


def bench_generate(device: torch.device, prompt_len: int = 16, new_tokens: int = 128) -> None:
    """Cached generation with a random GPT-2 124M: on a CPU in float32 against transformers' generate (the same
    weights and greedy tokens) at batch 1 and 8, and against the rate at which the weights can be read; on CUDA in
    bfloat16 at batch 1 and 16, eager and with compiled blocks."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()
    with tempfile.TemporaryDirectory() as tmp:  # the same weights through the real loader
        hf.save_pretrained(tmp)
        model = load_pretrained(tmp).eval()
    greedy = dict(max_new_tokens=new_tokens, temperature=0)
    if device.type == "cuda":
        return bench_generate_cuda(model.to(device), device, prompt_len, new_tokens)
    weights = sum(p.numel() for p in model.parameters()) * 4 - model.transformer.wpe.weight.numel() * 4
    limit = memory_bandwidth(device) / weights
    print(f"== generate: GPT-2 124M (random weights), float32, {device}, {prompt_len}-token prompt, {new_tokens} new"
          f" tokens, greedy; weights read per step {weights / 1e6:.0f} MB: at most {limit:.1f} steps/s")  # fmt: skip
    print(f"{'batch':>5} {'ours tok/s':>11} {'transformers':>13} {'ratio':>6} {'% of limit':>11} {'same tokens':>12}")
    for batch in (1, 8):
        prompt = torch.randint(0, 50257, (batch, prompt_len), generator=torch.Generator().manual_seed(batch))
        model.generate(prompt, 4, temperature=0)  # warm up
        hf_kw = dict(max_new_tokens=new_tokens, do_sample=False, pad_token_id=50256,
                     attention_mask=torch.ones_like(prompt))  # fmt: skip
        with torch.no_grad():
            hf.generate(prompt, **{**hf_kw, "max_new_tokens": 4})
            t_ours, t_hf = float("inf"), float("inf")
            for _ in range(3):  # alternating, so that other work on the machine slows both alike
                t, ours = timed(lambda: model.generate(prompt, **greedy))  # noqa: B023
                t_ours = min(t_ours, t)
                t, theirs = timed(lambda: hf.generate(prompt, **hf_kw))  # noqa: B023
                t_hf = min(t_hf, t)
        rate = batch * new_tokens / t_ours
        print(f"{batch:>5} {rate:11.1f} {batch * new_tokens / t_hf:13.1f} {t_hf / t_ours:5.2f}x"
              f" {new_tokens / t_ours / limit:10.0%} {torch.equal(ours, theirs)!s:>12}", flush=True)  # fmt: skip
    prompt = prompt[:1]
    t_cache, ours = timed(lambda: model.generate(prompt, **greedy))
    t_nocache, recomputed = timed(lambda: model.generate(prompt, **greedy, use_cache=False))
    print(f"batch 1 recomputing the context: {new_tokens / t_nocache:.1f} tok/s, the KV cache is "
          f"{t_nocache / t_cache:.1f}x faster; same tokens: {torch.equal(ours, recomputed)}")  # fmt: skip
    t_first, t_compiled, compiled = compile_and_time(model, prompt, greedy)
    print(f"batch 1 compiled blocks: {t_cache / t_compiled:.2f}x the eager cache after {t_first:.0f} s of compiling; "
          f"same tokens: {torch.equal(compiled, ours)}")  # fmt: skip


def compile_and_time(model: GPT, prompt: torch.Tensor, greedy: dict) -> tuple[float, float, torch.Tensor]:
    """Compile the blocks as sample.py --compile=True does; the first run's time, then the best of two."""
    for block in model.transformer.h:
        block.compile(dynamic=True)
    t_first, _ = timed(lambda: model.generate(prompt, **greedy))
    t, out = timed(lambda: model.generate(prompt, **greedy), repeat=2)
    return t_first, t, out


def bench_generate_cuda(model: GPT, device: torch.device, prompt_len: int, new_tokens: int) -> None:
    print(f"== generate: GPT-2 124M (random weights), bfloat16 autocast on {device}, {new_tokens} new tokens, greedy")
    greedy = dict(max_new_tokens=new_tokens, temperature=0)
    rows = {}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for batch in (1, 16):
            prompt = torch.randint(0, 50257, (batch, prompt_len), device=device)
            model.generate(prompt, 4, temperature=0)
            rows[batch] = (prompt, *timed(lambda: model.generate(prompt, **greedy), repeat=3))  # noqa: B023
        for batch, (prompt, t, eager) in rows.items():
            t_first, t_compiled, compiled = compile_and_time(model, prompt, greedy)
            print(f"batch {batch:>2}: eager {batch * new_tokens / t:9,.0f} tok/s; compiled blocks "
                  f"{batch * new_tokens / t_compiled:9,.0f} tok/s ({t / t_compiled:.2f}x, {t_first:.0f} s first run); "
                  f"same tokens: {torch.equal(eager, compiled)}", flush=True)  # fmt: skip


def write_random_bins(folder: Path, vocab: int, tokens: int = 400_000) -> Path:
    """Random token bins and a meta.json: a dataset of the right vocabulary for timing."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.random.default_rng(0).integers(1, vocab, tokens, dtype=np.uint16)
    ids.tofile(folder / "train.bin")
    ids[: tokens // 10].tofile(folder / "val.bin")
    tokenizer = "gpt2" if vocab > 256 else "char"
    (folder / "meta.json").write_text(json.dumps({"tokenizer": tokenizer, "vocab_size": vocab, "eot_id": 0}))
    return folder


def time_train(args: dict, env: dict, warmup: int, config_file: str | None = None) -> dict:
    """A fresh `python train.py` with args, as a user runs it: median step time, MFU, tokens/s and peak memory."""
    out = Path(args["out_dir"])
    cmd = [sys.executable, str(ROOT / "train.py"), *([config_file] if config_file else [])]
    cmd += [f"--{k}={v}" for k, v in args.items()]
    env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(out / "inductor")} | env  # a cold compile
    memory = run_peak_mb(cmd, env)
    logged = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "time_ms" in r]
    timed_steps = logged[warmup:]
    return {
        "ms": statistics.median(r["time_ms"] for r in timed_steps),
        "best": min(r["time_ms"] for r in timed_steps),
        "mfu": statistics.median(r["mfu"] for r in timed_steps),
        "tok_s": statistics.median(r["tok_per_s"] for r in timed_steps),
        "first": logged[0]["time_ms"] / 1000,
        "memory": max((r.get("gpu_memory_mb", 0) for r in logged), default=0) or memory,
    }


def bench_train(device: torch.device, warmup: int = 2) -> None:
    """train.py, each variant a fresh process: on a CPU a small char model and a GPT-2 124M shape in float32 and
    bfloat16, eager and compiled, against the plain float32 eager loop (nanoGPT's, with glibc's default allocator);
    on CUDA GPT-2 124M at block 1024, bfloat16, compiled and eager."""
    if device.type == "cuda":
        shapes = {"GPT-2 124M": ({**GPT2_124M, "block_size": 1024, "batch_size": 16}, 50257, 20)}
        variants = [("bfloat16", True, "kept"), ("bfloat16", False, "kept")]
    else:
        small = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=64)
        shapes = {  # name: (model and batch keys, vocab of the random bins, steps timed: more where they are cheap)
            "char 4x128": (small, 61, 20),
            "GPT-2 124M": ({**GPT2_124M, "block_size": 256, "batch_size": 4}, 50257, 6),
        }
        # "plain" is glibc's default allocator (device.keep_freed_memory leaves it alone when MALLOC_MMAP_MAX_ is set,
        # 65536 being glibc's own default); "kept" is what train.py does on CPU
        modes = ((False, "plain"), (False, "kept"), (True, "kept"))
        variants = [(dtype, compile, freed) for dtype in ("float32", "bfloat16") for compile, freed in modes]
        best = {torch.float32: 0.0, torch.bfloat16: 0.0}
        for _ in range(4):  # alternating, so that other work on the machine slows both alike
            for dtype in best:
                best[dtype] = max(best[dtype], matmul_flops(device, dtype))
        fp32, bf16 = (f / 1e12 for f in best.values())
        print(f"== train: matmul peak on {device} (2048x2048, best of alternating runs): float32 {fp32:.2f}, bfloat16")
        print(f"{bf16:.2f} TFLOP/s ({bf16 / fp32:.2f}x): the most bfloat16 can speed up a step's matmuls")
    print(
        f"== train on {device}: median step after {warmup} warmup, random tokens; MFU as train.py logs it against "
        f"{peak_flops(device) / 1e12:.0f} TFLOP/s; 'first' includes compiling; 'memory': peak (GPU, or process RSS)"
    )
    header = ["shape", "dtype", "compile", "freed", "ms/step", "best", "tok/s", "mfu", "vs first", "first", "memory"]
    print("{:<11} {:<9} {:<8} {:<6} {:>8} {:>8} {:>8} {:>6} {:>9} {:>6} {:>8}".format(*header))
    for name, (keys, vocab, steps) in shapes.items():
        with tempfile.TemporaryDirectory() as tmp:
            data = write_random_bins(Path(tmp) / "data", vocab)
            base = None
            for dtype, compile, freed in variants:
                run = {"dtype": dtype, "compile": compile, "out_dir": Path(tmp) / f"{dtype}-{compile}-{freed}"}
                fixed = {"eval_interval": 10**9, "eval_iters": 1, "gradient_accumulation_steps": 1, "warmup_iters": 0}
                args = {**keys, **run, **fixed, "dataset": data, "device": device, "max_iters": warmup + steps}
                r = time_train(args, {"MALLOC_MMAP_MAX_": "65536"} if freed == "plain" else {}, warmup)
                base = base or r["ms"]
                row = f"{name:<11} {dtype:<9} {compile!s:<8} {freed:<6} {r['ms']:8.1f} {r['best']:8.1f}"
                print(f"{row} {r['tok_s']:8,.0f} {r['mfu']:6.1%} {base / r['ms']:8.2f}x {r['first']:5.1f}s "
                      f"{r['memory']:6,.0f}MB", flush=True)  # fmt: skip


def bench_finetune(device: torch.device, warmup: int = 2, steps: int = 5) -> None:
    """config/finetune_haiku.py's shape (GPT-2 medium, block 128, batch 16, 2 micro-steps) with random weights, as
    train.py runs it on this device by default (bfloat16 where it is native; compiled on CUDA)."""
    print(f"== finetune: config/finetune_haiku.py's shape on {device}, GPT-2 medium with random weights (no download)")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_random_bins(Path(tmp) / "data", 50257)
        args = {"init_from": "scratch", **GPT2_MEDIUM, "dataset": data, "out_dir": Path(tmp) / "out", "device": device,
                "max_iters": warmup + steps, "eval_interval": 10**9, "eval_iters": 1, "warmup_iters": 0}  # fmt: skip
        r = time_train(args, {}, warmup, config_file="config/finetune_haiku.py")
        print(f"{r['ms']:,.0f} ms/step (best {r['best']:,.0f}), {r['tok_s']:,.0f} tok/s, MFU {r['mfu']:.1%}, "
              f"first step {r['first']:.1f} s, peak memory {r['memory']:,.0f} MB")  # fmt: skip


def run_peak_mb(cmd: list[str], env: dict) -> float:
    """Run cmd, raising if it fails; its peak resident memory in MB (Linux: ru_maxrss is in KB)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, stderr=stderr)
    return usage.ru_maxrss / 1024


def stand_in_encoding(corpus: str = "") -> tiktoken.Encoding:
    """A stand-in for GPT-2's BPE, whose files cannot be downloaded here: GPT-2's pre-tokenizer pattern and 50,257 ids,
    the 256 bytes, every piece of corpus as one token (as GPT-2 has most English words), then random strings."""
    ranks = {bytes([i]): i for i in range(256)}
    for piece, _ in Counter(regex.findall(GPT2_PATTERN, corpus)).most_common():
        ranks.setdefault(piece.encode(), len(ranks))
    rng = random.Random(0)
    while len(ranks) < 50256:
        ranks.setdefault(bytes(rng.randrange(97, 123) for _ in range(rng.randint(2, 8))), len(ranks))
    return tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256})


# The scripts below run in a fresh process each, with the repository on sys.path.
_SCRIPT_START = r"""
import contextlib, io, json, resource, sys, time
from pathlib import Path

import regex

sys.path.insert(0, sys.argv[1])
from bench import stand_in_encoding
"""

# A fresh process per measurement, so that its peak memory is this run's alone.
_PREPARE_RUN = (
    _SCRIPT_START
    + r"""
from prepare import text

path, tokenizer, corpus = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]).read_text()
encoding = stand_in_encoding(corpus) if tokenizer == "gpt2" else None
def peak_kb() -> int:
    # the high-water mark of this process's memory: VmHWM starts afresh at exec, where ru_maxrss keeps the parent's
    status = Path("/proc/self/status")
    if status.exists():
        return int(regex.search(r"VmHWM:\s+(\d+)", status.read_text()).group(1))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


before = peak_kb()
start = time.perf_counter()
meta = text.prepare([path], out_dir=path.parent / "out", tokenizer=tokenizer, encoding=encoding)
seconds = time.perf_counter() - start
self_kb = peak_kb()
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
tokens = sum(meta["tokens"].values())
print(json.dumps({"seconds": seconds, "tokens": tokens, "before_kb": before, "self_kb": self_kb, "child_kb": child_kb}))
"""
)


def bench_prepare(device: torch.device | None = None, repo: Path = ROOT, sizes_mb: tuple[int, ...] = (25, 100)) -> None:
    """prepare/text.py's throughput (MB of text per second, every core) for the char and BPE tokenizers, and its peak
    memory at two input sizes: the embedded haiku corpus repeated to each size (repo: this file's folder)."""
    corpus_path = repo / "prepare" / "haiku_corpus.txt"
    corpus = corpus_path.read_text() + "\n"
    print(f"prepare/text.py on the haiku corpus repeated; {os.cpu_count()} worker processes, one per core")
    print("  gpt2: GPT-2's files cannot be downloaded here, so a tiktoken Encoding built locally stands in: GPT-2's")
    print("  pre-tokenizer pattern (most of tiktoken's cost), the 256 bytes, the corpus's pieces as tokens, 50,257 ids")
    print("  peak memory: the main process (VmHWM), the largest worker (ru_maxrss), the main process before the run")
    print(
        f"{'tokenizer':>9} {'input MB':>9} {'seconds':>8} {'MB/s':>6} {'tokens':>12} {'peak MB main/worker/before':>27}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes_mb:
            path = Path(tmp) / f"{size}" / "input.txt"
            path.parent.mkdir()
            with open(path, "w") as f:
                f.writelines(corpus for _ in range(size * 10**6 // len(corpus.encode()) + 1))
        for tokenizer in ("char", "gpt2"):
            for size in sizes_mb:
                path = Path(tmp) / f"{size}" / "input.txt"
                args = [sys.executable, "-c", _PREPARE_RUN, str(repo), str(path), tokenizer, str(corpus_path)]
                run = subprocess.run(args, capture_output=True, text=True, check=True)
                r = json.loads(run.stdout.strip().splitlines()[-1])
                mb = path.stat().st_size / 1e6
                peak = f"{r['self_kb'] / 1024:.0f} / {r['child_kb'] / 1024:.0f} / {r['before_kb'] / 1024:.0f}"
                speed = f"{r['seconds']:8.1f} {mb / r['seconds']:6.1f}"
                print(f"{tokenizer:>9} {mb:9.1f} {speed} {r['tokens']:12,} {peak:>27}")


def bench_sample(device: torch.device, demo: Path = ROOT / "out-haiku-bpe") -> None:
    """Form-constrained against free sampling: 100 haiku from the demo checkpoint, command to finish; and per token
    with a GPT-2 124M shape (random weights, the stand-in GPT-2 BPE), 10 haiku in a batch."""
    from configurator import read_config_file
    from haikugpt.haiku.form import FormConstraint, Lexicon
    from haikugpt.training import read_meta

    with tempfile.TemporaryDirectory() as tmp:
        if not (demo / "ckpt.pt").is_file():  # the demo's shape with random weights until the quick start has run
            shape = read_config_file(ROOT / "config" / "train_haiku_bpe.py")
            meta = read_meta(ROOT / "data" / shape["dataset"])
            keys = ("n_layer", "n_head", "n_embd", "block_size")
            config = GPTConfig(vocab_size=padded_vocab(meta["vocab_size"]), **{k: shape[k] for k in keys})
            demo = Path(tmp) / "demo"
            save_checkpoint(build_checkpoint(GPT(config), {}, meta), demo / "ckpt.pt")
        times = {"free": float("inf"), "5-7-5": float("inf")}
        for _ in range(2):  # alternating, so that other work on the machine slows both alike
            for form in times:
                cmd = [
                    sys.executable,
                    str(ROOT / "sample.py"),
                    f"--out_dir={demo}",
                    "--num_samples=100",
                    f"--form={form}",
                ]
                t0 = time.perf_counter()
                subprocess.run([*cmd, f"--device={device}"], capture_output=True, check=True, cwd=tmp)
                times[form] = min(times[form], time.perf_counter() - t0)
        print(f"== sample: 100 haiku from {demo}, `python sample.py` start to finish: free {times['free']:.1f} s, "
              f"5-7-5 {times['5-7-5']:.1f} s ({times['5-7-5'] / times['free']:.2f}x)")  # fmt: skip

    tok = BPETokenizer(stand_in_encoding((ROOT / "prepare" / "haiku_corpus.txt").read_text()))
    model = GPT(GPTConfig(), seed=0).to(device).eval()  # 124M
    t0 = time.perf_counter()
    constraint = FormConstraint(tok, (5, 7, 5), Lexicon.load())
    setup = time.perf_counter() - t0
    idx = torch.full((10, 1), tok.eot_id, device=device)
    kw = dict(temperature=0.8, top_k=200, generator=torch.Generator(device).manual_seed(0))
    model.generate(idx, 4)  # warm up
    rows = constraint.logits_filter(constraint.start("", 10))
    t_form, out = timed(
        lambda: model.generate(idx, constraint.max_tokens(), stop_token=tok.eot_id, logits_filter=rows, **kw)
    )
    steps = out.size(1) - 1
    t_free, _ = timed(lambda: model.generate(idx, steps, **kw))
    print(f"== sample: GPT-2 124M shape, stand-in GPT-2 BPE, 10 haiku in a batch ({steps} steps): free "
          f"{t_free / steps * 1000:.0f} ms/step, 5-7-5 {t_form / steps * 1000:.0f} ms/step ({t_form / t_free:.2f}x); "
          f"the lexicon and token tables took {setup:.1f} s")  # fmt: skip


def memory_estimate(config: GPTConfig, batch_size: int, adapters: bool, rank: int = 16) -> dict[str, float]:
    """Bytes a training step needs, by part, under bfloat16 autocast with float32 master weights and AdamW: without
    adapters every weight has a float32 gradient and two AdamW moments; with them the target projections are held in
    bfloat16 and frozen, and only the adapters have those. Activations: ~34 bytes per token per layer per unit of
    width, the figure of Korthikanti et al. (2022) for mixed precision without recomputation (attention's
    sequence-squared term is not stored: scaled_dot_product_attention recomputes it), plus the logits in bfloat16 and
    float32 with their gradient."""
    C, L, V, T = config.n_embd, config.n_layer, config.vocab_size, config.block_size
    total = L * (12 * C * C + 13 * C) + V * C + T * C + 2 * C  # blocks (four projections, two LayerNorms), tables
    targets = L * (12 * C * C + 9 * C)
    trained = L * rank * (4 * C + 2 * C + 5 * C + 5 * C) if adapters else total
    weights = 2 * targets + 4 * (total - targets) + 4 * trained if adapters else 4 * total
    return {
        "parameters": total,
        "weights": weights + 2 * (total if not adapters else total - targets),  # with autocast's bfloat16 copies
        "gradients": 4 * trained,
        "optimizer": 8 * trained,
        "activations": 34 * T * batch_size * C * L + 10 * T * batch_size * V,
    }


def bench_memory(device: torch.device | None = None, batch_size: int = 16, block_size: int = 128) -> None:
    """memory_estimate in GB for every GPT-2 and GPT-Neo size, with and without LoRA adapters of rank 16."""
    print(f"== memory: estimated GB to fine-tune at block {block_size}, batch {batch_size}, bfloat16 autocast")
    print(f"{'model':<36} {'params':>7} {'weights':>8} {'grads':>6} {'AdamW':>6} {'activ.':>7} {'total':>6}")
    for name, (L, H, C) in {**PRETRAINED, **NEO}.items():
        config = GPTConfig(block_size=block_size, vocab_size=50257, n_layer=L, n_head=H, n_embd=C)
        for adapters in (False, True):
            e = {k: v / 1e9 for k, v in memory_estimate(config, batch_size, adapters).items()}
            total = e["weights"] + e["gradients"] + e["optimizer"] + e["activations"]
            print(f"{name + (' + LoRA r16' if adapters else ''):<36} {e['parameters']:6.2f}B {e['weights']:8.1f} "
                  f"{e['gradients']:6.1f} {e['optimizer']:6.1f} {e['activations']:7.1f} {total:6.1f}")  # fmt: skip


BENCHES = {
    "generate": bench_generate,
    "train": bench_train,
    "finetune": bench_finetune,
    "prepare": bench_prepare,
    "sample": bench_sample,
    "memory": bench_memory,
}


def main(argv: list[str]) -> None:
    names, device_name = [], None
    for arg in argv:
        if arg in ("-h", "--help"):
            print(__doc__.strip())
            return
        if arg.startswith("--device="):
            device_name = arg.partition("=")[2]
        elif arg in BENCHES:
            names.append(arg)
        else:
            sys.exit(f"error: unknown argument {arg!r}; parts are {', '.join(BENCHES)}, and --device=cpu|cuda|cuda:N")
    try:
        device = resolve_device(device_name)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, {Path.cwd()}")
    for name in names or list(BENCHES):
        BENCHES[name](device)


if __name__ == "__main__":
    main(sys.argv[1:])
