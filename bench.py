"""
The repository's speed figures, each measured side by side in one run and reported as ratios.

    python bench.py                 # everything
    python bench.py generate        # one part: generate, train, prepare, sample

This machine may be shared and noisy, so compare figures from the same run, not absolute times across runs.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from model import GPT, GPTConfig

REPO = Path(__file__).resolve().parent


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """Best wall time of fn() over repeat runs, and its last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_generate(prompt_len: int = 16, new_tokens: int = 256) -> None:
    """Generation with a random 124M GPT-2 in float32: KV cache vs recomputing the context vs transformers, and the
    KV cache with compiled blocks."""
    from transformers import GPT2Config, GPT2LMHeadModel

    print(f"== generate: GPT-2 124M (random weights), float32, {prompt_len}-token prompt, {new_tokens} new tokens")
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()
    with tempfile.TemporaryDirectory() as tmp:  # the same weights through the real loader
        hf.save_pretrained(tmp)
        model = GPT.from_pretrained(tmp).eval()
    prompt = torch.randint(0, 50257, (1, prompt_len), generator=torch.Generator().manual_seed(0))
    greedy = dict(max_new_tokens=new_tokens, temperature=0)
    model.generate(prompt, 8, temperature=0)  # warm up
    t_cache, ours = timed(lambda: model.generate(prompt, **greedy), repeat=2)
    mask = torch.ones_like(prompt)
    hf_kw = dict(max_new_tokens=new_tokens, do_sample=False, pad_token_id=50256, attention_mask=mask)
    hf.generate(prompt, **{**hf_kw, "max_new_tokens": 8})
    with torch.no_grad():
        t_hf, theirs = timed(lambda: hf.generate(prompt, **hf_kw), repeat=2)
    t_nocache, recomputed = timed(lambda: model.generate(prompt, **greedy, use_cache=False))
    same = torch.equal(ours, recomputed) and torch.equal(ours, theirs)
    print(f"KV cache            {new_tokens / t_cache:8.1f} tok/s")
    print(f"recomputed context  {new_tokens / t_nocache:8.1f} tok/s   cache is {t_nocache / t_cache:.1f}x faster")
    print(f"transformers        {new_tokens / t_hf:8.1f} tok/s   cache is {t_hf / t_cache:.2f}x as fast")
    print(f"identical greedy tokens from all three: {same}")
    for block in model.transformer.h:  # as sample.py --compile=True does
        block.compile(dynamic=True)
    t_first, _ = timed(lambda: model.generate(prompt, **greedy))
    t_compiled, compiled = timed(lambda: model.generate(prompt, **greedy), repeat=2)
    print(
        f"compiled blocks     {new_tokens / t_compiled:8.1f} tok/s   {t_cache / t_compiled:.2f}x the eager cache; "
        f"first run {t_first:.0f} s with compiling; same tokens: {torch.equal(compiled, ours)}"
    )


def bench_train(warmup: int = 2) -> None:
    """train.py on this machine, each variant a fresh `python train.py` as a user runs it: the char demo and a GPT-2
    124M shape, float32/bfloat16, eager/compiled, compared with the plain float32 eager loop (as nanoGPT runs it, with
    glibc's default allocator)."""
    import configurator
    import train
    from device import matmul_flops, resolve_device

    device = resolve_device(None, 0)
    demo = configurator.configure(train.DEFAULTS, ["config/train_haiku_char.py"])
    shapes = {  # name: (model and batch keys, vocab of the random bins, steps timed: more where they are cheap)
        "char demo": ({k: demo[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size")}, 61, 20),
        "GPT-2 124M": ({"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 256, "batch_size": 4}, 50257, 6),
    }
    # (dtype, compile, allocator): "plain" is glibc's default, which device.keep_freed_memory leaves alone when
    # MALLOC_MMAP_MAX_ is set (65536 is glibc's own default); "kept" is what train.py does on CPU
    modes = ((False, "plain"), (False, "kept"), (True, "kept"))
    variants = [(dtype, compile, freed) for dtype in ("float32", "bfloat16") for compile, freed in modes]
    best = {torch.float32: 0.0, torch.bfloat16: 0.0}
    for _ in range(4):  # alternating, so that other work on the machine slows both alike
        for dtype in best:
            best[dtype] = max(best[dtype], matmul_flops(device, dtype))
    fp32, bf16 = best.values()
    print(f"== train: matmul peak on {device} (2048x2048, best of alternating runs): float32 {fp32 / 1e12:.2f},")
    print(f"bfloat16 {bf16 / 1e12:.2f} TFLOP/s ({bf16 / fp32:.2f}x): the most bfloat16 can speed up a step's matmuls")
    counts = ", ".join(f"{steps} for the {name}" for name, (_, _, steps) in shapes.items())
    print(f"train.py: median of the steps timed ({counts}) after {warmup} warmup, random tokens; MFU as train.py")
    print("logs it; 'first' is the first step, which includes compiling from an empty cache; 'memory' is peak RSS;")
    print("'freed': plain is glibc's default, which returns freed memory to the OS; kept is device.keep_freed_memory")
    header = ["shape", "dtype", "compile", "freed", "ms/step", "best", "tok/s", "mfu", "vs plain", "first", "memory"]
    print("{:<11} {:<9} {:<8} {:<6} {:>8} {:>8} {:>7} {:>6} {:>9} {:>6} {:>7}".format(*header))
    for name, (keys, vocab, steps) in shapes.items():
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            ids = np.random.default_rng(0).integers(1, vocab, 200_000, dtype=np.uint16)
            ids.tofile(data / "train.bin")
            ids[:20_000].tofile(data / "val.bin")
            tokenizer = "gpt2" if vocab > 256 else "char"
            (data / "meta.json").write_text(json.dumps({"tokenizer": tokenizer, "vocab_size": vocab, "eot_id": 0}))
            base = None
            for dtype, compile, freed in variants:
                out = Path(tmp) / f"{dtype}-{compile}-{freed}"
                args = {**keys, "dataset": data, "out_dir": out, "dtype": dtype, "compile": compile,
                        "max_iters": warmup + steps, "eval_interval": 10**9, "eval_iters": 1, "log_interval": 1,
                        "gradient_accumulation_steps": 1, "warmup_iters": 0}  # fmt: skip
                cmd = [sys.executable, str(REPO / "train.py"), *(f"--{k}={v}" for k, v in args.items())]
                env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(out / "inductor")}  # a cold compile
                env |= {"MALLOC_MMAP_MAX_": "65536"} if freed == "plain" else {}
                memory = run_peak_mb(cmd, env)
                records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                logged = [r for r in records if "time_ms" in r]
                ms = statistics.median(r["time_ms"] for r in logged[warmup:])
                fastest = min(r["time_ms"] for r in logged[warmup:])
                mfu = statistics.median(r["mfu"] for r in logged[warmup:])
                base = base or ms
                tok_s = keys["batch_size"] * keys["block_size"] / ms * 1000
                first = logged[0]["time_ms"] / 1000
                row = f"{name:<11} {dtype:<9} {compile!s:<8} {freed:<6} {ms:8.1f} {fastest:8.1f} {tok_s:7,.0f}"
                print(f"{row} {mfu:6.1%} {base / ms:8.2f}x {first:5.1f}s {memory:5,.0f}MB", flush=True)


def run_peak_mb(cmd: list[str], env: dict) -> float:
    """Run cmd, raising if it fails; its peak resident memory in MB (Linux: ru_maxrss is in KB)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, stderr=stderr)
    return usage.ru_maxrss / 1024


# The start of both scripts below, each run in a fresh process: the repository on sys.path, and a stand-in for GPT-2's
# BPE files, which cannot be downloaded here.
_SCRIPT_START = r"""
import contextlib, io, json, random, resource, sys, time
from collections import Counter
from pathlib import Path

import regex
import tiktoken

sys.path.insert(0, sys.argv[1])


def stand_in_encoding(corpus: str = "") -> tiktoken.Encoding:
    # GPT-2's pre-tokenizer pattern and 50,257 ids: the 256 bytes, every piece of corpus as one token (as GPT-2 has
    # most English words), then random strings
    pat = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
    ranks = {bytes([i]): i for i in range(256)}
    for piece, _ in Counter(regex.findall(pat, corpus)).most_common():
        ranks.setdefault(piece.encode(), len(ranks))
    rng = random.Random(0)
    while len(ranks) < 50256:
        ranks.setdefault(bytes(rng.randrange(97, 123) for _ in range(rng.randint(2, 8))), len(ranks))
    return tiktoken.Encoding("gpt2", pat_str=pat, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
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


def bench_prepare(repo: Path = REPO, sizes_mb: tuple[int, ...] = (25, 100)) -> None:
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


# A fresh process per measurement, so that OMP_NUM_THREADS takes effect as it would for a user.
_SAMPLE_RUN = (
    _SCRIPT_START
    + r"""
import sample
import tokenizer

stand_in = stand_in_encoding()
tokenizer.tiktoken.get_encoding = lambda name: stand_in
times = []
for config in json.loads(sys.argv[2]):
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        samples = sample.run(sample.DEFAULTS | config)
        times.append(time.perf_counter() - t0)
print(json.dumps({"seconds": times, "chars": [len(s) for s in samples]}))
"""
)


def bench_sample(demo: Path = REPO / "out-haiku-char") -> None:
    """sample.py's speed: 10 haiku from the char demo, 256 tokens from a 124M-shaped model, command to first haiku."""
    from checkpoint import save_checkpoint
    from configurator import read_config_file

    def measure(threads: str, *configs: dict) -> dict:
        env = os.environ | {"OMP_NUM_THREADS": threads}
        cmd = [sys.executable, "-c", _SAMPLE_RUN, str(REPO), json.dumps(configs)]
        return json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)

    cores = str(os.cpu_count())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The char demo: its trained checkpoint if `python train.py config/train_haiku_char.py` has run, else a model
        # of the same shape with random weights (whose haiku end at random, so the token count differs).
        if (demo / "ckpt.pt").is_file():
            what = f"trained checkpoint {demo}"
        else:
            shape = read_config_file(REPO / "config" / "train_haiku_char.py")
            meta = json.loads((REPO / "data" / "haiku_char" / "meta.json").read_text())
            keys = ("n_layer", "n_head", "n_embd", "block_size")
            config = GPTConfig(vocab_size=-(-meta["vocab_size"] // 64) * 64, **{k: shape[k] for k in keys})
            ckpt = {"model": GPT(config).state_dict(), "model_args": asdict(config), "config": {}, "meta": meta}
            demo = tmp / "demo"
            save_checkpoint(ckpt, demo / "ckpt.pt")
            what = "RANDOM weights in the demo's shape (no out-haiku-char checkpoint)"
        print(f"== sample: char demo, {what}, 10 haiku, sample.py's default dtype")
        for threads in sorted({"1", cores}):  # a model this small is fastest on one thread
            result = measure(threads, {"out_dir": str(demo)})
            tokens = sum(n + 1 for n in result["chars"])  # one id per character, plus each haiku's end-of-text
            seconds = result["seconds"][0]
            print(f"OMP_NUM_THREADS={threads}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:8.1f} tok/s")

        cmd = [sys.executable, str(REPO / "sample.py"), f"--out_dir={demo}"]
        for threads in sorted({"1", cores}):
            t0 = time.perf_counter()
            env = os.environ | {"OMP_NUM_THREADS": threads}
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=tmp, env=env)
            proc.stdout.readline()
            first = time.perf_counter() - t0
            proc.communicate()
            total = time.perf_counter() - t0
            launch = f"OMP_NUM_THREADS={threads} python sample.py --out_dir=..."
            print(f"`{launch}`: first haiku line after {first:.2f} s, all 10 after {total:.2f} s")

        config = GPTConfig()  # 124M, vocab 50304
        ckpt = {
            "model": GPT(config).state_dict(),
            "model_args": asdict(config),
            "config": {},
            "meta": {"tokenizer": "gpt2", "vocab_size": 50257, "eot_id": 50256, "dataset": "openwebtext"},
        }
        save_checkpoint(ckpt, tmp / "124m" / "ckpt.pt")
        for dtype in ("float32", "bfloat16"):
            for threads in sorted({"1", cores}):
                base = {"out_dir": str(tmp / "124m"), "num_samples": 1, "dtype": dtype}
                # both runs load the model and take the prompt; the difference is 256 generated tokens
                short, full = measure(threads, base | {"max_new_tokens": 1}, base | {"max_new_tokens": 257})["seconds"]
                print(
                    f"== sample: GPT-2 124M shape (random weights), 1 sample, {dtype}, OMP_NUM_THREADS={threads}: "
                    f"{256 / (full - short):6.1f} tok/s over 256 tokens (+{short:.2f} s to load and take the first)"
                )


BENCHES = {"generate": bench_generate, "train": bench_train, "prepare": bench_prepare, "sample": bench_sample}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"error: unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {Path.cwd()}")
    for name in names:
        BENCHES[name]()
