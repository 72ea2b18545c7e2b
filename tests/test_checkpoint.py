"""checkpoint.py: one builder, atomic saves, safe loads (nanoGPT's files too), models built without a random init."""

import pytest
import torch

import checkpoint
from model import GPT, GPTConfig

CONFIG = GPTConfig(block_size=8, vocab_size=64, n_layer=2, n_head=2, n_embd=8)


def tiny_ckpt() -> tuple[GPT, dict]:
    model = GPT(CONFIG, seed=0)
    return model, checkpoint.build_checkpoint(model, {"dataset": "x"}, None, iter_num=3, best_val_loss=1.5)


def test_save_load_round_trip(tmp_path):
    model, ckpt = tiny_ckpt()
    checkpoint.save_checkpoint(ckpt, tmp_path / "ckpt.pt")
    loaded = checkpoint.load_checkpoint(tmp_path)  # an out_dir finds ckpt.pt
    assert loaded["iter_num"] == 3 and loaded["meta"] is None and loaded["scaler"] is None
    assert loaded["config"] == {"dataset": "x"} and loaded["model_args"]["n_embd"] == 8
    rebuilt = checkpoint.model_from_checkpoint(loaded)
    assert rebuilt.lm_head.weight is rebuilt.transformer.wte.weight  # tied again
    x = torch.randint(0, 64, (1, 8))
    assert torch.equal(rebuilt(x)[0], model(x)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_nanogpt_checkpoint_loads(tmp_path):
    """nanoGPT saves the compiled model's keys, a tensor best_val_loss, and (older versions) attn.bias masks."""
    model, ckpt = tiny_ckpt()
    state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    state["_orig_mod.transformer.h.0.attn.bias"] = torch.ones(1, 1, 8, 8).tril()
    ckpt.update(model=state, best_val_loss=torch.tensor(2.25), config={"dataset": "shakespeare_char", "extra": 1})
    del ckpt["resolved"], ckpt["meta"], ckpt["rng"], ckpt["sampler"], ckpt["scaler"]
    torch.save(ckpt, tmp_path / "nano.pt")
    loaded = checkpoint.load_checkpoint(tmp_path / "nano.pt")
    assert loaded["best_val_loss"] == 2.25
    assert not any(k.startswith("_orig_mod.") for k in loaded["model"])
    x = torch.randint(0, 64, (1, 8))
    assert torch.equal(checkpoint.model_from_checkpoint(loaded)(x)[0], model(x)[0])


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    _, ckpt = tiny_ckpt()
    path = tmp_path / "ckpt.pt"
    checkpoint.save_checkpoint(ckpt, path)
    before = path.read_bytes()

    def crash(obj, f):  # dies half way through writing, as a full disk or a kill would
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint({**ckpt, "iter_num": 4}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*ckpt\.pt; train one with `python train.py"):
        checkpoint.load_checkpoint(tmp_path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(RuntimeError, match="not a training checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "junk.pt")


def test_weights_that_do_not_fit_the_model_args_are_one_line(tmp_path):
    _, ckpt = tiny_ckpt()
    ckpt["model_args"]["n_embd"] = 16
    with pytest.raises(RuntimeError, match=r"^the checkpoint's weights do not fit its model_args \(transformer\.wte"):
        checkpoint.model_from_checkpoint(ckpt)
    del ckpt["model"]["transformer.ln_f.bias"]
    ckpt["model_args"]["n_embd"] = 8
    with pytest.raises(RuntimeError, match=r"missing \['transformer\.ln_f\.bias'\]"):
        checkpoint.model_from_checkpoint(ckpt)


def test_a_model_from_a_checkpoint_skips_the_random_init(monkeypatch):
    _, ckpt = tiny_ckpt()

    def no_init(self, seed):
        raise AssertionError("a throwaway random init")

    monkeypatch.setattr(GPT, "_init_weights", no_init)
    model = checkpoint.model_from_checkpoint(ckpt)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["model"].items())
    assert not any(p.is_meta for p in model.parameters())


def test_the_size_of_a_checkpoint_counts_shared_tensors_once():
    model, ckpt = tiny_ckpt()
    weights = sum(p.numel() * 4 for p in model.parameters())  # wte and lm_head share one tensor
    assert checkpoint.tensor_bytes(ckpt) == weights
