import pytest
import torch

from device import default_compile, default_dtype, peak_flops, resolve_device


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


def test_cpu_defaults_follow_the_hardware():
    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert default_dtype(torch.device("cpu")) == ("bfloat16" if native_bf16 else "float32")
    assert default_dtype(torch.device("mps")) == "float32"
    assert default_compile(torch.device("cpu")) is False and default_compile(torch.device("cuda")) is True


def test_cpu_peak_is_measured_once_without_touching_the_random_streams():
    peak_flops.cache_clear()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    peak = peak_flops(torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
    assert 1e9 < peak < 1e15  # a real matmul rate: more than a GFLOP/s, less than a PFLOP/s
    assert peak_flops(torch.device("cpu")) == peak  # cached: every MFU in a run shares one denominator
