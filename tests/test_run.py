import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from haikugpt.run import (
    autocast,
    default_dtype,
    peak_flops,
    resolve_compile,
    resolve_device,
    resolve_dtype,
    token_bytes,
)  # fmt: skip
from haikugpt.tokenizer import BPETokenizer, train_bpe


def test_resolve_device_defaults_to_what_exists_and_explains_the_rest():
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert resolve_device(None, 0) == torch.device("cpu")
    assert resolve_device("cpu", 0) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu", 0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU; use --device=cpu"):
            resolve_device("cuda:1", 0)
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            resolve_device("mps", 0)


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bfloat16"), (False, True, "bfloat16"),
                                                         (False, False, "float32")])  # fmt: skip
def test_cpu_default_dtype_is_bfloat16_only_where_the_cpu_runs_it_natively(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    cpu = torch.device("cpu")
    assert default_dtype(cpu) == resolve_dtype(None, cpu) == expected
    assert resolve_dtype("float16", cpu) == "float16"


def test_one_spelling_for_the_default_and_one_autocast():
    cpu = torch.device("cpu")
    assert default_dtype(torch.device("mps")) == "float32"
    assert resolve_compile(None, cpu) == (False, None)  # compile by default on CUDA only
    compiled, problem = resolve_compile(None, torch.device("cuda"))
    assert compiled or "needs triton" in problem
    with pytest.raises(ValueError, match="dtype='float8': expected float32, bfloat16 or float16"):
        resolve_dtype("float8", cpu)
    with autocast(cpu, "bfloat16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, "float32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_cpu_peak_is_measured_once_without_touching_the_random_streams():
    peak_flops.cache_clear()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    peak = peak_flops(torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
    assert 1e9 < peak < 1e15  # a real matmul rate: more than a GFLOP/s, less than a PFLOP/s
    assert peak_flops(torch.device("cpu")) == peak  # cached: every MFU in a run shares one denominator


# In a fresh process, as the allocator setting lasts for the process: the median page faults of a training step of a
# one-layer GPT whose logits (64 MB) are over glibc's mmap threshold, over eight steps after four to settle. (Kept
# memory still grows by a block now and then, as a freed block is split for smaller ones: hence the median.)
_FAULTS = """
import resource, statistics, sys, torch
sys.path.insert(0, {repo!r})
from haikugpt.run import keep_freed_memory
from model import GPT, GPTConfig

kept = keep_freed_memory()
model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=64, block_size=256, vocab_size=8192))
optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
x = torch.randint(0, 8192, (8, 256), generator=torch.Generator().manual_seed(0))
faults = []
for step in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(x, x)[1].backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, statistics.median(faults[4:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "confstr") or sys.platform != "linux", reason="glibc's allocator only")
def test_keep_freed_memory_ends_the_page_faults_of_each_step():
    script = _FAULTS.format(repo=str(Path(__file__).parent.parent))
    faults = {}
    for name, env in {"kept": {}, "default": {"MALLOC_MMAP_MAX_": "65536"}}.items():  # glibc's default; yours win
        out = subprocess.run([sys.executable, "-c", script], env=os.environ | env, capture_output=True, text=True)
        kept, median = out.stdout.split()
        assert kept == str(name == "kept"), out.stderr
        faults[name] = float(median)
    assert faults["default"] > 16_384  # the logits alone are 16,384 pages of 4 KB, faulted in every step
    assert faults["kept"] < 1_000


def test_token_bytes_are_the_utf8_bytes_each_id_stands_for(tiny_gpt2_bpe):
    """Bits per byte divide by these: a character's UTF-8 bytes, the bytes a BPE token decodes to, 1 for end-of-text
    (the separator it stands for), 0 for the ids a model's vocabulary is padded with."""
    char = {"tokenizer": "char", "vocab_size": 4, "eot_id": 0, "chars": ["<|endoftext|>", "a", "\u00e9", "\u96ea"]}
    assert token_bytes(char, 6).tolist() == [1, 1, 2, 3, 0, 0]
    learnt = BPETokenizer(train_bpe(["the theme of the thistle"] * 3, 260), name="bpe")
    sizes = token_bytes(learnt.meta(), 264).tolist()
    assert sizes[:259] == [len(learnt.token_bytes(i)) for i in range(259)] and max(sizes[256:259]) > 1
    assert sizes[259:] == [1, 0, 0, 0, 0] and learnt.eot_id == 259
    gpt2 = token_bytes({"tokenizer": "gpt2", "vocab_size": 259, "eot_id": 258}, 320).tolist()  # "th", "the", eot
    assert gpt2[:256] == [1] * 256 and gpt2[256:259] == [2, 3, 1] and set(gpt2[259:]) == {0}


def test_token_bytes_without_gpt2s_files_are_zeros_and_a_note(monkeypatch, capsys):
    def offline(name):
        raise OSError("no network")

    monkeypatch.setattr("haikugpt.tokenizer.tiktoken.get_encoding", offline)
    assert token_bytes({"tokenizer": "gpt2", "vocab_size": 50257, "eot_id": 50256}, 50304).sum() == 0
    assert "note: no bits per byte in this run's evals" in capsys.readouterr().out
