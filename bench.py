"""
The repository's speed figures, each measured side by side in one run and reported as ratios.

    python bench.py                 # everything
    python bench.py generate        # one part: generate, train, prepare, sample

This machine may be shared and noisy, so compare figures from the same run, not absolute times across runs.
"""

import sys
import tempfile
import time
from pathlib import Path

import torch

from model import GPT


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """Best wall time of fn() over repeat runs, and its last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_generate(prompt_len: int = 16, new_tokens: int = 256) -> None:
    """Generation with a random 124M GPT-2 in float32: KV cache vs recomputing the context vs transformers."""
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


BENCHES = {"generate": bench_generate}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"error: unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {Path.cwd()}")
    for name in names:
        BENCHES[name]()
