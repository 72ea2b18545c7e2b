"""Export a BPE checkpoint (GPT-2's, or one learnt by prepare/haiku.py --tokenizer bpe) to a Hugging Face folder that
transformers loads: GPT2LMHeadModel or GPTNeoForCausalLM, or for a classify.py checkpoint GPT2ForSequenceClassification
(GPTNeo...), with its label names and a <|pad|> token at its padding id.

    python export.py --out_dir=out-haiku --hf_dir=out-haiku-hf                 # best.pt, else ckpt.pt
    python export.py --out_dir=out-haiku/ckpt.pt --hf_dir=out-haiku-last-hf   # the latest rather than the best
    python -c "from transformers import pipeline; print(pipeline('text-generation', model='out-haiku-hf')(
        '<|endoftext|>', max_new_tokens=40, do_sample=True)[0]['generated_text'])"   # stops at end-of-text
    python sample.py --init_from=out-haiku-hf --start="autumn moon" --max_new_tokens=40

The weights are model.py's (LoRA adapters merged in) under the loader's names run backwards, so transformers' greedy
tokens are ours; the vocabulary keeps its padded size. The tokenizer files come from the tiktoken encoding, offline.
"""

import json
import sys
from pathlib import Path

import torch

from configurator import configure
from haikugpt.checkpoint import CONV1D_WEIGHTS, checkpoint_path, load_checkpoint, model_from_checkpoint
from haikugpt.files import one_line_errors, replace_folder
from haikugpt.labels import classifier_from_checkpoint, is_classifier
from haikugpt.tokenizer import EOT, load_tokenizer
from model import GPT, GPTConfig, merged_state_dict

DEFAULTS = dict(
    out_dir="out",  # the folder train.py wrote (its best.pt is read, else ckpt.pt), or a checkpoint file
    hf_dir="",  # where to write the Hugging Face folder; empty: hf/ next to the checkpoint
)


def main(argv: list[str] | None = None) -> None:
    with one_line_errors():
        config = configure(DEFAULTS, sys.argv[1:] if argv is None else argv, __doc__, (__file__,))
        print(f"wrote {export(config['out_dir'], config['hf_dir'])}")


def export(out_dir: str, hf_dir: str = "") -> Path:
    """Write the Hugging Face folder for the checkpoint in out_dir (or the checkpoint file out_dir); return its path."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise RuntimeError("writing model.safetensors needs safetensors: pip install safetensors") from None
    ckpt = load_checkpoint(out_dir, best=True)
    meta = ckpt["meta"] or {"tokenizer": "gpt2"}  # nanoGPT's checkpoints have no meta: they are GPT-2 BPE
    if meta.get("tokenizer") not in ("gpt2", "bpe"):
        raise ValueError(f"{out_dir} holds a {meta.get('tokenizer')}-level model; only BPE checkpoints can be "
                         "exported, as Hugging Face's GPT-2 tokenizer has no character table")  # fmt: skip
    tok = load_tokenizer(meta)
    hf_dir = Path(hf_dir) if hf_dir else checkpoint_path(out_dir).parent / "hf"
    classifier = classifier_from_checkpoint(ckpt, "cpu") if is_classifier(ckpt) else None
    gpt = model_from_checkpoint(ckpt, "cpu") if classifier is None else classifier.gpt  # checks the weights' shapes
    config = hf_config(gpt.config, tok.eot_id)
    weights = hf_state_dict(gpt, neo=config["model_type"] == "gpt_neo")
    tok_config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": gpt.config.block_size, "bos_token": EOT,
                  "eos_token": EOT, "unk_token": EOT, "add_prefix_space": False}  # fmt: skip
    vocab, merges = bpe_files(tok.encoding)
    if classifier is not None:  # the head as score.weight, <|pad|> at the padding id, which transformers' pooling skips
        names = ckpt["meta"]["labels"]
        head = {"gpt2": "GPT2ForSequenceClassification", "gpt_neo": "GPTNeoForSequenceClassification"}
        config |= {"architectures": [head[config["model_type"]]], "id2label": dict(enumerate(names)),
                   "label2id": {n: i for i, n in enumerate(names)}, "pad_token_id": classifier.pad_id}  # fmt: skip
        tok_config["pad_token"], vocab["<|pad|>"] = "<|pad|>", classifier.pad_id
        weights["score.weight"] = classifier.score.weight.detach().cpu().contiguous()
    files = {
        "config.json": json.dumps(config, indent=2) + "\n",
        "tokenizer_config.json": json.dumps(tok_config, indent=2) + "\n",
        "vocab.json": json.dumps(vocab, ensure_ascii=False) + "\n",
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
    }
    # replace an earlier export, but never a folder holding anything else (such as the training run's own out_dir)
    ours = {*files, "model.safetensors"}
    others = sorted(p.name for p in hf_dir.iterdir() if p.name not in ours) if hf_dir.is_dir() else []
    if others or hf_dir.is_file():
        held = f"holds {', '.join(others[:3])}" if others else "is a file"
        raise ValueError(f"{hf_dir} {held}, so it is not an earlier export to replace; choose another --hf_dir")

    def fill(folder: Path) -> None:
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")

    replace_folder(hf_dir, fill)  # under a temporary name, then swapped in
    return hf_dir


def hf_state_dict(model: GPT, neo: bool) -> dict[str, torch.Tensor]:
    """A GPT's weights under Hugging Face's names; GPT-2 always has biases, so a bias=False model gets zeros."""
    hf, state = {}, merged_state_dict(model)
    del state["lm_head.weight"]  # tied to wte; config.json says tie_word_embeddings
    for key, weight in state.items():
        weight = weight.detach().float().cpu()
        if neo and key.endswith("attn.c_attn.weight"):
            for name, part in zip("qkv", weight.chunk(3, dim=0)):
                hf[key.replace("attn.c_attn.weight", f"attn.attention.{name}_proj.weight")] = part.contiguous()
        elif neo:
            hf[key.replace("attn.c_proj", "attn.attention.out_proj")] = weight.contiguous()
        else:
            hf[key] = (weight.t() if key.endswith(CONV1D_WEIGHTS) else weight).contiguous()  # Linear's (out, in)
            if not model.config.bias and key not in ("transformer.wte.weight", "transformer.wpe.weight"):
                hf[key.removesuffix("weight") + "bias"] = torch.zeros(weight.size(0))
    return hf


def hf_config(config: GPTConfig, eot_id: int) -> dict:
    """The config.json of a GPT2LMHeadModel or GPTNeoForCausalLM for a GPTConfig; an error for a mixture of the two."""
    gpt2 = config.scale_attn and config.qkv_bias and not config.local_layers
    if not gpt2 and (config.scale_attn or config.qkv_bias or not config.bias):
        raise ValueError("this model mixes GPT-2's and GPT-Neo's attention (scale_attn, qkv_bias, local_layers), which "
                         "neither Hugging Face architecture expresses; it cannot be exported")  # fmt: skip
    common = {"vocab_size": config.vocab_size, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
              "initializer_range": 0.02, "tie_word_embeddings": True, "bos_token_id": eot_id,
              "eos_token_id": eot_id}  # fmt: skip
    if not gpt2:
        kinds = ["local" if i in config.local_layers else "global" for i in range(config.n_layer)]
        return {"architectures": ["GPTNeoForCausalLM"], "model_type": "gpt_neo", **common,
                "max_position_embeddings": config.block_size, "hidden_size": config.n_embd,
                "num_layers": config.n_layer, "num_heads": config.n_head, "intermediate_size": None,
                "attention_types": [[[kind], 1] for kind in kinds], "window_size": config.window_size,
                "resid_dropout": config.dropout, "embed_dropout": config.dropout,
                "attention_dropout": config.dropout}  # fmt: skip
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", **common, "n_positions": config.block_size,
            "n_embd": config.n_embd, "n_layer": config.n_layer, "n_head": config.n_head, "n_inner": None,
            "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": config.dropout}  # fmt: skip


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte: printable Latin-1 bytes are themselves, the others map past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + n) for n, b in enumerate(others)}


def bpe_files(encoding) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab.json's token -> id map and merges.txt's pairs, in order, for a byte-level tiktoken encoding, which keeps
    only each token's rank (its id): BPE on its bytes with the tokens ranked before it leaves the pair it came from."""
    specials = {s: encoding.encode_single_token(s) for s in encoding.special_tokens_set}
    ranks = {encoding.decode_single_token_bytes(i): i for i in range(encoding.n_vocab) if i not in specials.values()}
    chars = byte_to_unicode()
    text = lambda token: "".join(chars[b] for b in token)  # a token as vocab.json and merges.txt spell it
    merges = []
    for token, rank in [(token, rank) for token, rank in ranks.items() if len(token) > 1]:  # ranks is in rank order
        parts = [bytes([b]) for b in token]  # merged, lowest rank first, while a pair's merge ranks below the token
        while len(parts) > 2:
            low, i = min((ranks.get(parts[i] + parts[i + 1], rank), i) for i in range(len(parts) - 1))
            if low >= rank:
                raise ValueError(f"token {token!r} (id {rank}) is no merge of two earlier tokens: not a BPE vocabulary")
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        merges.append((text(parts[0]), text(parts[1])))
    return {text(token): rank for token, rank in ranks.items()} | specials, merges


if __name__ == "__main__":
    main()
