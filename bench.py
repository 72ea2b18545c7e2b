"""The repository's speed figures, each measured side by side in one run and reported as ratios (the machine may be
shared and noisy: compare figures from one run). Each part's function says what it measures on a CPU and on CUDA.

    python bench.py                         # every part, on the default device (cuda if there is one)
    python bench.py generate train          # some parts: generate, train, finetune, prepare, sample
    python bench.py train --device=cuda     # a device: cpu, cuda, cuda:1
"""

import json
import os
import random
import resource
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

from haikugpt.checkpoint import load_pretrained
from haikugpt.files import ROOT, one_line_errors
from haikugpt.run import matmul_flops, peak_flops, resolve_device
from haikugpt.tokenizer import EOT, GPT2_PATTERN, BPETokenizer, CharTokenizer
from model import GPT, GPTConfig

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


def bench_generate(device: torch.device, prompt_len: int = 16, new_tokens: int = 128) -> None:
    """Cached generation with a random GPT-2 124M: on a CPU in float32 against transformers (same weights, batch 1
    and 8) and the rate the weights can be read at; on CUDA in bfloat16 at batch 1 and 16, eager and compiled."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config()).eval()
    with tempfile.TemporaryDirectory() as tmp:  # the same weights through the real loader
        hf.save_pretrained(tmp)
        model = load_pretrained(tmp).eval()
    greedy = dict(max_new_tokens=new_tokens, temperature=0)
    if device.type == "cuda":
        model, rows = model.to(device), {}
        print(f"== generate: GPT-2 124M (random weights), bfloat16 autocast on {device}, {new_tokens} new tokens, "
              "greedy")  # fmt: skip
        with torch.autocast("cuda", dtype=torch.bfloat16):
            for batch in (1, 16):
                prompt = torch.randint(0, 50257, (batch, prompt_len), device=device)
                model.generate(prompt, 4, temperature=0)
                rows[batch] = (prompt, *timed(lambda: model.generate(prompt, **greedy), repeat=3))  # noqa: B023
            for batch, (prompt, t, eager) in rows.items():  # compiling changes the model: every eager run first
                t_first, t_compiled, compiled = compile_and_time(model, prompt, greedy)
                print(f"batch {batch:>2}: eager {batch * new_tokens / t:9,.0f} tok/s; compiled blocks "
                      f"{batch * new_tokens / t_compiled:9,.0f} tok/s ({t / t_compiled:.2f}x, {t_first:.0f} s first "
                      f"run); same tokens: {torch.equal(eager, compiled)}", flush=True)  # fmt: skip
        return
    weights = model.num_params() * 4  # bytes, in float32
    x = torch.ones(2**28, device=device)  # 1 GB, summed: the bytes per second memory can be read at, best of 5
    limit = x.numel() * 4 / timed(lambda: x.sum().item(), repeat=5)[0] / weights
    print(f"== generate: GPT-2 124M (random weights), float32, {device}, {prompt_len}-token prompt, {new_tokens} new"
          f" tokens, greedy; weights read per step {weights / 1e6:.0f} MB: at most {limit:.1f} steps/s")  # fmt: skip
    print(f"{'batch':>5} {'ours tok/s':>11} {'transformers':>13} {'ratio':>6} {'% of limit':>11} {'same tokens':>12}")
    for batch in (1, 8):
        prompt = torch.randint(0, 50257, (batch, prompt_len), generator=torch.Generator().manual_seed(batch))
        model.generate(prompt, 4, temperature=0)  # warm up
        hf_kw = dict(max_new_tokens=new_tokens, do_sample=False, pad_token_id=50256,
                     attention_mask=torch.ones_like(prompt))  # fmt: skip
        hf.generate(prompt, **{**hf_kw, "max_new_tokens": 4})  # generate runs under no_grad, as ours does
        # alternating, so that other work on the machine slows both alike; each one's best run
        runs = [[timed(lambda: model.generate(prompt, **greedy)), timed(lambda: hf.generate(prompt, **hf_kw))]  # noqa: B023
                for _ in range(3)]  # fmt: skip
        (t_ours, ours), (t_hf, theirs) = (min(column, key=lambda run: run[0]) for column in zip(*runs))
        print(f"{batch:>5} {batch * new_tokens / t_ours:11.1f} {batch * new_tokens / t_hf:13.1f} {t_hf / t_ours:5.2f}x"
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
    run = lambda: model.generate(prompt, **greedy)
    return timed(run)[0], *timed(run, repeat=2)


def write_random_bins(folder: Path, vocab: int, tokens: int = 400_000) -> Path:
    """Random token bins and a meta.json: a dataset of the right vocabulary for timing."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.random.default_rng(0).integers(1, vocab, tokens, dtype=np.uint16)
    ids.tofile(folder / "train.bin")
    ids[: tokens // 10].tofile(folder / "val.bin")
    chars = CharTokenizer([EOT, *map(chr, range(65, 64 + vocab))]) if vocab <= 256 else None  # a table of vocab ids
    meta = chars.meta() if chars else {"tokenizer": "gpt2", "vocab_size": vocab, "eot_id": 0}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def time_train(args: dict, env: dict, warmup: int, *config_files: str) -> dict:
    """A fresh `python train.py` with args, as a user runs it: median step time, MFU, tokens/s and peak memory."""
    out = Path(args["out_dir"])
    cmd = [sys.executable, str(ROOT / "train.py"), *config_files, *(f"--{k}={v}" for k, v in args.items())]
    env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": str(out / "inductor")} | env  # a cold compile
    memory = run_peak_mb(cmd, env)
    logged = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "time_ms" in r]
    steps = logged[warmup:]
    ms, mfu, tok_s = (statistics.median(r[key] for r in steps) for key in ("time_ms", "mfu", "tok_per_s"))
    memory = max((r.get("gpu_memory_mb", 0) for r in logged), default=0) or memory
    return {"ms": ms, "best": min(r["time_ms"] for r in steps), "mfu": mfu, "tok_s": tok_s,
            "first": logged[0]["time_ms"] / 1000, "memory": memory}  # fmt: skip


def bench_train(device: torch.device, warmup: int = 2) -> None:
    """train.py, each variant a fresh process: on a CPU a char model and a GPT-2 124M shape, float32 and bfloat16, eager
    and compiled, against nanoGPT's plain float32 eager loop; on CUDA GPT-2 124M at block 1024, bfloat16."""
    if device.type == "cuda":
        shapes = {"GPT-2 124M": ({**GPT2_124M, "block_size": 1024, "batch_size": 16}, 50257, 20)}
        variants = [("bfloat16", True, "kept"), ("bfloat16", False, "kept")]
    else:
        # name: (model and batch keys, vocab of the random bins, steps timed: more where they are cheap)
        shapes = {"char 4x128": (dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=64), 61, 20),
                  "GPT-2 124M": ({**GPT2_124M, "block_size": 256, "batch_size": 4}, 50257, 6)}  # fmt: skip
        # "plain": glibc's default allocator (MALLOC_MMAP_MAX_=65536, glibc's default, turns run.keep_freed_memory
        # off); "kept": what train.py does on CPU
        modes = ((False, "plain"), (False, "kept"), (True, "kept"))
        variants = [(dtype, compile, freed) for dtype in ("float32", "bfloat16") for compile, freed in modes]
        # alternating, so that other work on the machine slows both alike
        runs = [[matmul_flops(device, dtype) / 1e12 for dtype in (torch.float32, torch.bfloat16)] for _ in range(4)]
        fp32, bf16 = map(max, zip(*runs))
        print(f"== train: matmul peak on {device} (2048x2048, best of alternating runs): float32 {fp32:.2f}, bfloat16")
        print(f"{bf16:.2f} TFLOP/s ({bf16 / fp32:.2f}x): the most bfloat16 can speed up a step's matmuls")
    print(f"== train on {device}: median step after {warmup} warmup, random tokens; MFU as train.py logs it against "
          f"{peak_flops(device) / 1e12:.0f} TFLOP/s; 'first' includes compiling; 'memory': peak (GPU, or process "
          "RSS)")  # fmt: skip
    print("shape       dtype     compile  freed   ms/step     best    tok/s    mfu  vs first  first   memory")
    fixed = {"eval_interval": 10**9, "eval_iters": 1, "gradient_accumulation_steps": 1, "warmup_iters": 0}
    for name, (keys, vocab, steps) in shapes.items():
        with tempfile.TemporaryDirectory() as tmp:
            data = write_random_bins(Path(tmp) / "data", vocab)
            base = None
            for dtype, compile, freed in variants:
                run = {"dtype": dtype, "compile": compile, "out_dir": Path(tmp) / f"{dtype}-{compile}-{freed}"}
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
        r = time_train(args, {}, warmup, "config/finetune_haiku.py")
        print(f"{r['ms']:,.0f} ms/step (best {r['best']:,.0f}), {r['tok_s']:,.0f} tok/s, MFU {r['mfu']:.1%}, "
              f"first step {r['first']:.1f} s, peak memory {r['memory']:,.0f} MB")  # fmt: skip


# Runs a script as `python script args` would, and reports its peak memory at exit: VmHWM starts afresh at exec, where
# ru_maxrss (wait4) counts the process it was spawned from, so a child of a big pytest process would read pytest's size.
PEAK_AT_EXIT = """import atexit, os, re, resource, runpy, sys
def peak_kb():
    if os.path.exists("/proc/self/status"):
        return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
atexit.register(lambda: print(f"peak_kb {peak_kb()}", file=sys.stderr))
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_peak_mb(cmd: list[str], env: dict) -> float:
    """Run cmd (python, a script, its arguments), raising if it fails; its peak resident memory in MB."""
    proc = subprocess.run([cmd[0], "-c", PEAK_AT_EXIT, *cmd[1:]], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)  # fmt: skip
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, stderr=proc.stderr)
    return int(proc.stderr.rsplit("peak_kb ", 1)[1].split()[0]) / 1024


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


def peak_kb() -> int:
    """This process's peak memory in KB: VmHWM, which starts afresh at exec where ru_maxrss keeps the parent's."""
    status = Path("/proc/self/status")
    if status.exists():
        return int(regex.search(r"VmHWM:\s+(\d+)", status.read_text())[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def prepare_in_process(path: str, tokenizer: str, corpus_path: str) -> None:
    """prepare/text.py on path, in a fresh process of its own (bench_prepare's): seconds, tokens and peak KB as JSON."""
    from prepare import text

    encoding = stand_in_encoding(Path(corpus_path).read_text()) if tokenizer == "gpt2" else None
    before, start = peak_kb(), time.perf_counter()
    meta = text.prepare([Path(path)], out_dir=Path(path).parent / "out", tokenizer=tokenizer, encoding=encoding)
    print(json.dumps({"seconds": time.perf_counter() - start, "tokens": sum(meta["tokens"].values()),
                      "before_kb": before, "self_kb": peak_kb(),
                      "child_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))  # fmt: skip


def bench_prepare(device: torch.device | None = None, sizes_mb: tuple[int, ...] = (25, 100)) -> None:
    """prepare/text.py's speed (MB/s, every core) and peak memory, char and BPE, on the corpus repeated to two sizes."""
    corpus_path = ROOT / "prepare" / "haiku_corpus.txt"
    corpus = corpus_path.read_text() + "\n"
    print(f"prepare/text.py on the haiku corpus repeated; {os.cpu_count()} worker processes, one per core")
    print("  gpt2: GPT-2's files cannot be downloaded here, so a tiktoken Encoding built locally stands in: GPT-2's")
    print("  pre-tokenizer pattern (most of tiktoken's cost), the 256 bytes, the corpus's pieces as tokens, 50,257 ids")
    print("  peak memory: the main process (VmHWM), the largest worker (ru_maxrss), the main process before the run")
    print("tokenizer  input MB  seconds   MB/s       tokens  peak MB main/worker/before")
    measure = [sys.executable, "-c", "import bench, sys; bench.prepare_in_process(*sys.argv[1:])"]  # run in ROOT
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"{size}.txt" for size in sizes_mb]
        for size, path in zip(sizes_mb, paths):
            path.write_text(corpus * (size * 10**6 // len(corpus.encode()) + 1))
        for tokenizer, path in [(t, p) for t in ("char", "gpt2") for p in paths]:
            out = subprocess.check_output([*measure, path, tokenizer, corpus_path], cwd=ROOT, stderr=subprocess.DEVNULL)
            r, mb = json.loads(out.splitlines()[-1]), path.stat().st_size / 1e6
            peak = f"{r['self_kb'] / 1024:.0f} / {r['child_kb'] / 1024:.0f} / {r['before_kb'] / 1024:.0f}"
            print(f"{tokenizer:>9} {mb:9.1f} {r['seconds']:8.1f} {mb / r['seconds']:6.1f} {r['tokens']:12,} {peak:>27}")


def bench_sample(device: torch.device, demo: Path = ROOT / "out-haiku-bpe") -> None:
    """Sampling with the defaults (5-7-5, the haiku's rules, particles) against free: 100 haiku from the demo model,
    command to finish; per step, a GPT-2 124M shape (random weights, stand-in BPE), 10 haiku a batch, one particle."""
    from haikugpt.haiku.form import FormConstraint, Lexicon, Rules
    from haikugpt.haiku.verse import read_season_words

    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"XDG_CACHE_HOME": tmp}  # the lexicon's cache: empty before the first run builds it

        def run(script: str, *args: str) -> float:  # seconds to run one of the repository's scripts, start to finish
            cmd = [sys.executable, ROOT / script, *args, f"--device={device}"]
            return timed(lambda: subprocess.run(cmd, capture_output=True, check=True, cwd=tmp, env=env))[0]

        if not (demo / "ckpt.pt").is_file():  # the demo's shape, trained one step, until the quick start has run
            demo = Path(tmp) / "demo"
            run("train.py", "config/train_haiku_bpe.py", f"--out_dir={demo}", "--max_iters=1", "--compile=False")
        # alternating, so that other work on the machine slows both alike
        runs = [[run("sample.py", f"--out_dir={demo}", "--num_samples=100", *f) for f in (["--form=free"], [])]
                for _ in range(3)]  # fmt: skip
        free, rules = map(min, zip(*runs))
        print(f"== sample: 100 haiku from {demo}, `python sample.py` start to finish: --form=free {free:.1f} s, "
              f"the defaults (5-7-5, a season word, no rhyme, line ends, particles) {rules:.1f} s ({rules / free:.2f}x;"
              f" the first run, which builds the lexicon's cache, {runs[0][1]:.1f} s)")  # fmt: skip

    tok = BPETokenizer(stand_in_encoding((ROOT / "prepare" / "haiku_corpus.txt").read_text()))
    model = GPT(GPTConfig(), seed=0).to(device).eval()  # 124M
    kigo = set().union(*read_season_words().values())
    setup, form = timed(lambda: FormConstraint(tok, Rules((5, 7, 5), Lexicon.load(), kigo)))
    idx = torch.full((10, 1), tok.eot_id, device=device)
    kw = dict(temperature=0.8, top_k=200, generator=torch.Generator(device).manual_seed(0))
    model.generate(idx, 4)  # warm up
    mask = form.logits_filter(form.rules.start("", 10))
    t_form, out = timed(lambda: model.generate(idx, form.rules.max_tokens(), stop_token=tok.eot_id, logits_filter=mask,
                                               **kw))  # fmt: skip
    steps = out.size(1) - 1
    t_free, _ = timed(lambda: model.generate(idx, steps, **kw))
    print(f"== sample: GPT-2 124M shape, stand-in GPT-2 BPE, 10 haiku in a batch ({steps} steps): free "
          f"{t_free / steps * 1000:.0f} ms/step, the rules {t_form / steps * 1000:.0f} ms/step "
          f"({t_form / t_free:.2f}x); the lexicon and token tables took {setup:.1f} s")  # fmt: skip


BENCHES = dict(generate=bench_generate, train=bench_train, finetune=bench_finetune, prepare=bench_prepare,
               sample=bench_sample)  # fmt: skip


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
    with one_line_errors():
        device = resolve_device(device_name)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, {Path.cwd()}")
    for name in names or list(BENCHES):
        BENCHES[name](device)


if __name__ == "__main__":
    main(sys.argv[1:])
