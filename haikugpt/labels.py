"""Classifying texts with a GPT (classify.py, export.py): a linear head on the hidden state of each text's last token
(its end-of-text), the labelled splits on disk, padded batches, and scores.

    model = Classifier(gpt, n_labels=5, pad_id=pad_id)       # after make_room(gpt, pad_id), if wte has no such row
    logits, loss = model(pad_batch(texts, pad_id), labels)   # texts: token ids, each ending with end-of-text
    print(format_scores(score_predictions(labels, predictions, names, majority=0)))

Texts are right-padded with pad_id, the first id past the data's vocabulary; a causal model never looks ahead, so
a text gets the same logits alone, in any batch, and from export.py's folder in GPT2ForSequenceClassification.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from haikugpt.checkpoint import model_from_checkpoint, on_meta
from haikugpt.files import write_bytes
from model import GPT, flops_per_token, padded_vocab


class Classifier(nn.Module):
    """A GPT and a bias-free linear head (transformers' `score`) on the final hidden state of each text's last token."""

    def __init__(self, gpt: GPT, n_labels: int, pad_id: int, seed: int = 0):
        super().__init__()
        if pad_id >= gpt.config.vocab_size:
            raise ValueError(f"padding id {pad_id} is outside the model's vocab_size {gpt.config.vocab_size}")
        self.gpt, self.config, self.pad_id = gpt, gpt.config, pad_id  # config: what checkpoints save as model_args
        self.score = nn.Linear(gpt.config.n_embd, n_labels, bias=False)
        if not self.score.weight.is_meta:  # classifier_from_checkpoint builds the head on the meta device
            nn.init.normal_(self.score.weight, 0.0, 0.02, generator=torch.Generator().manual_seed(seed))

    def forward(self, idx: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (B, n_labels) of right-padded texts idx (B, T); with labels (B,), the mean cross-entropy too."""
        hidden = self.gpt.hidden_states(idx)  # (B, T, C)
        last = (idx != self.pad_id).sum(dim=1) - 1  # (B,): each text's end-of-text
        logits = self.score(hidden[torch.arange(idx.size(0), device=idx.device), last])  # (B, n_labels)
        return logits, None if labels is None else F.cross_entropy(logits.float(), labels)

    def num_params(self) -> int:
        """Parameters, without the position table (as GPT.num_params)."""
        return self.gpt.num_params() + self.score.weight.numel()

    def flops_per_token(self) -> float:
        """As GPT's, less the lm_head's matmul, which a classifier never runs."""
        return flops_per_token(self.num_params() - self.gpt.transformer.wte.weight.numel(), self.config)

    configure_optimizers = GPT.configure_optimizers  # the one weight-decay rule, over these parameters


@torch.no_grad()
def make_room(gpt: GPT, pad_id: int) -> None:
    """Grow the token table (and the lm_head tied to it) with zero rows to padded_vocab(pad_id + 1), where it has no
    row for pad_id (GPT-2's 50,257 ids and the demo's 5,120 are all taken)."""
    old, new, wte = gpt.config.vocab_size, padded_vocab(pad_id + 1), gpt.transformer.wte
    if pad_id < old:
        return
    wte.weight = nn.Parameter(torch.cat([wte.weight, wte.weight.new_zeros(new - old, wte.embedding_dim)]))
    wte.num_embeddings = gpt.lm_head.out_features = new
    gpt.tie_weights()
    gpt.config = replace(gpt.config, vocab_size=new)


def is_classifier(ckpt: dict) -> bool:
    return "score.weight" in ckpt["model"]


def classifier_from_checkpoint(ckpt: dict, device: str | torch.device = "cpu") -> Classifier:
    """The classifier a classify.py checkpoint holds (in train mode), its label names and padding id from its meta."""
    meta, weight = ckpt["meta"] or {}, ckpt["model"].get("score.weight")
    if weight is None or "labels" not in meta:
        raise ValueError("the checkpoint holds a language model, not a classifier; train one with classify.py")
    if len(weight) != len(meta["labels"]):
        raise RuntimeError(f"the checkpoint's head scores {len(weight)} labels, its meta names {len(meta['labels'])}")
    gpt = model_from_checkpoint(ckpt, device)
    with on_meta():  # no throwaway init of a head that is about to be replaced
        model = Classifier(gpt, len(meta["labels"]), meta["vocab_size"])
    model.score.load_state_dict({"weight": weight.to(device)}, assign=True)
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Labelled splits on disk (a folder as prepare/ writes one, plus <split>_labels.bin), and batches of texts


def write_labels(folder: Path, split: str, ids: list[int]) -> None:
    """A split's label ids, one uint16 per text."""
    write_bytes(Path(folder) / f"{split}_labels.bin", np.asarray(ids, dtype=np.uint16).tobytes())


def read_split(folder: Path, split: str, eot_id: int) -> tuple[list[np.ndarray], np.ndarray]:
    """A labelled split: each text's token ids (ending with its end-of-text) and the label ids, checked to agree."""
    ids = np.fromfile(Path(folder) / f"{split}.bin", dtype=np.uint16)
    path = Path(folder) / f"{split}_labels.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has {split}.bin but no {path.name}: it is not a labelled dataset; prepare "
                                f"one with prepare/labelled.py")  # fmt: skip
    labels = np.fromfile(path, dtype=np.uint16).astype(np.int64)
    ends = np.flatnonzero(ids == eot_id) + 1
    texts = np.split(ids.astype(np.int64), ends)[:-1]
    if len(texts) != len(labels) or (len(ids) and ends[-1:].tolist() != [len(ids)]):
        raise ValueError(f"{folder}: {split}.bin holds {len(texts)} texts but {path.name} {len(labels)} labels; rerun "
                         "its prepare script")  # fmt: skip
    return texts, labels


def fit_block(texts: list[np.ndarray], block_size: int) -> tuple[list[np.ndarray], int]:
    """Texts cut to block_size tokens (the first block_size - 1 and the end-of-text), and how many were cut."""
    cut = sum(len(t) > block_size for t in texts)
    return [t if len(t) <= block_size else np.append(t[: block_size - 1], t[-1]) for t in texts], cut


def pad_batch(texts: list[np.ndarray], pad: int) -> Tensor:
    """Texts as one batch (B, T) on the CPU, right-padded with pad to the longest."""
    return pad_sequence([torch.as_tensor(t, dtype=torch.long) for t in texts], batch_first=True, padding_value=pad)


@torch.no_grad()
def logits_of(model, texts: list[np.ndarray], pad: int, batch_size: int, device: torch.device, ctx) -> Tensor:
    """Logits (N, n_labels) of texts, in float32 on the CPU; batched shortest first, so that little is padding."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    parts = []
    for start in range(0, len(texts), batch_size):
        x = pad_batch([texts[i] for i in order[start : start + batch_size]], pad).to(device)  # .cpu() syncs anyway
        with ctx:
            parts.append(model(x)[0].float().cpu())
    return torch.cat(parts)[torch.from_numpy(np.argsort(order))]  # back in the texts' order


def majority_label(meta: dict) -> int:
    """The id of the most common label in a labelled dataset's training split (the first of equals)."""
    counts = meta["label_counts"]["train"]
    return max(range(len(meta["labels"])), key=lambda i: counts.get(meta["labels"][i], 0))


def score_predictions(true: list[int], pred: list[int], names: list[str], majority: int) -> dict:
    """Accuracy; each label's precision, recall, F1 and support; macro F1 (over the labels that occur or are predicted);
    the accuracy of always answering label `majority`; the confusion matrix, confusion[true][predicted]."""
    n = len(names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (np.asarray(true), np.asarray(pred)), 1)
    total = int(confusion.sum())
    per_class, f1s = {}, []
    for i, name in enumerate(names):
        tp, predicted, actual = confusion[i, i], confusion[:, i].sum(), confusion[i].sum()
        precision = float(tp / predicted) if predicted else 0.0
        recall = float(tp / actual) if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual)}
        if actual or predicted:
            f1s.append(f1)
    return {"accuracy": float(np.trace(confusion) / total), "macro_f1": float(np.mean(f1s)),
            "majority_baseline": float(confusion[majority].sum() / total), "majority_label": names[majority],
            "texts": total, "per_class": per_class,
            "confusion": {names[i]: {names[j]: int(confusion[i, j]) for j in range(n)} for i in range(n)}}  # fmt: skip


def format_scores(scores: dict) -> str:
    """The scores as a small table: a row per true label, its scores, then what it was predicted as."""
    names = list(scores["per_class"])
    w = max(5, *map(len, names))
    lines = [f"{'label':<{w}} precision recall     f1 support | predicted as: " + " ".join(f"{n:>{w}}" for n in names)]
    for name, s in scores["per_class"].items():
        row = f"{name:<{w}} {s['precision']:9.3f} {s['recall']:6.3f} {s['f1']:6.3f} {s['support']:7,d} | "
        lines.append(row + " " * 14 + " ".join(f"{c:>{w},d}" for c in scores["confusion"][name].values()))
    lines.append(f"accuracy {scores['accuracy']:.3f} of {scores['texts']:,} texts (majority baseline "
                 f"{scores['majority_baseline']:.3f}: always {scores['majority_label']}), "
                 f"macro F1 {scores['macro_f1']:.3f}")  # fmt: skip
    return "\n".join(lines)
