"""JSB Chorales benchmark (Boulanger-Lewandowski et al., ICML 2012): quarter-note piano rolls.

A split file is one JSON array of pieces; a piece is a list of time steps (one per quarter
note); a step is the sorted list of MIDI pitches sounding (see musiclab/data/jsb/README.md).

Metric, as in the paper's Table 1: NLL in **nats per time step**, summed over the 88 keys
and averaged over every step of the split (so pieces weigh by length). The first step of
each piece is predicted from an all-zero start frame. Frame accuracy follows Bay et al.
(2009): TP / (TP + FP + FN) summed over all steps, where the predicted frame is the model's
most likely one (pianoroll-lstm: keys with p > 0.5; pianoroll-nade: keys chosen greedily
low to high). The per-key 1-gram ("Note 1-Gram", frequencies fitted on ``train.json``
beside the split) scores 10.95 on ``valid.json``.

``python -m musiclab evaluate jsb --split FILE.json [--model NAME]`` calls :func:`evaluate_jsb`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..codecs.common import LOW
from ..codecs.pianoroll import N_KEYS, with_start

JSB_DIR = (
    Path(__file__).resolve().parents[1] / "data" / "jsb"
)  # train.json + valid.json, shipped (README: source, licence)

BASELINE = "note-1-gram"  # name of the baseline row
EPS = 1e-6  # the 1-gram's key probabilities are clipped to [EPS, 1 - EPS]


def load_split(path: str | Path) -> list[np.ndarray]:
    """A JSB split JSON -> one (T, 88) uint8 array per piece (key i = MIDI pitch 21 + i)."""
    path = Path(path)
    try:
        pieces = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read JSB split {path}: {e}") from None
    if not isinstance(pieces, list) or not pieces:
        raise ValueError(f"{path}: expected a JSON list of pieces, got {type(pieces).__name__}")
    out = []
    for i, piece in enumerate(pieces):
        if not isinstance(piece, list) or not piece:
            raise ValueError(f"{path}: piece {i}: expected a non-empty list of time steps, got {piece!r:.40}")
        roll = np.zeros((len(piece), N_KEYS), dtype=np.uint8)
        for t, step in enumerate(piece):
            for p in step:
                if not isinstance(p, int) or not LOW <= p < LOW + N_KEYS:
                    raise ValueError(f"{path}: piece {i} step {t}: expected MIDI pitches 21-108, got {p!r}")
                roll[t, p - LOW] = 1
        out.append(roll)
    return out


def _frame_counts(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int]:
    pred, true = pred.astype(bool), true.astype(bool)
    return int((pred & true).sum()), int((pred & ~true).sum()), int((~pred & true).sum())


def _row(name: str, nll_sum: float, steps: int, tp: int, fp: int, fn: int) -> dict:
    return {"model": name, "nll": nll_sum / steps, "steps": steps, "accuracy": tp / max(tp + fp + fn, 1)}


def unigram_result(train: list[np.ndarray], pieces: list[np.ndarray]) -> dict:
    """The per-key Bernoulli 1-gram fitted on ``train``, scored on ``pieces``."""
    p = np.clip(np.concatenate(train).mean(0), EPS, 1 - EPS)  # (88,)
    v = np.concatenate(pieces).astype(float)
    nll = -(v * np.log(p) + (1 - v) * np.log(1 - p)).sum()
    tp, fp, fn = _frame_counts(np.broadcast_to(p > 0.5, v.shape), v)
    return _row(BASELINE, float(nll), len(v), tp, fp, fn)


@torch.no_grad()
def model_result(model, pieces: list[np.ndarray], name: str | None = None) -> dict:
    """NLL and frame accuracy of a piano-roll network (a ``LoadedModel.net``) on whole pieces (state carried from step 1)."""
    if getattr(model, "output", None) != "multi-hot":
        raise ValueError(f"model {name!r}: expected a piano-roll (multi-hot) model, got output {model.output!r}")
    model.eval()
    dev = next(model.parameters()).device
    nll = 0.0
    tp = fp = fn = steps = 0
    for piece in pieces:
        x = torch.from_numpy(with_start(piece)[:-1]).float().unsqueeze(0).to(dev)  # (1, T, 88)
        y = torch.from_numpy(piece).float().unsqueeze(0).to(dev)
        logits, _ = model(x, y)  # exact per-key conditionals (NADE conditions on y's lower keys)
        nll += torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y, reduction="sum").item()
        h, _ = model.trunk(x)
        a, b, c = _frame_counts(model.predict_frames(h[0]).cpu().numpy(), piece)
        tp, fp, fn, steps = tp + a, fp + b, fn + c, steps + len(piece)
    return _row(name or type(model).__name__, nll, steps, tp, fp, fn)


def jsb_models(root: Path | None = None) -> list[str]:
    """Shipped piano-roll models whose card says they were trained on JSB Chorales."""
    from ..serving.weights import model_names, read_card

    names = []
    for n in model_names(root):
        try:
            card = read_card(n, root)
        except ValueError:
            continue
        if card.get("arch", "").startswith("pianoroll") and "JSB" in str(card.get("data", "")):
            names.append(n)
    return names


def _train_file(split: Path) -> Path:
    for cand in (split.parent / "train.json", JSB_DIR / "train.json"):
        if cand.is_file():
            return cand
    raise ValueError(f"the 1-gram baseline needs JSB train.json beside {split}; none found")


def evaluate_jsb(split_path: str | Path, model_names: list[str] | None = None, root: Path | None = None) -> dict:
    """Score the 1-gram baseline and piano-roll models on one JSB split.

    ``model_names`` None = every JSB-trained piano-roll model in ``root`` (default weights/).
    Returns ``{"split", "train", "results": [{"model", "nll", "steps", "accuracy"}]}``;
    nll in nats per time step (88 keys summed), accuracy 0-1. Unknown names raise ValueError.
    """
    from ..serving.weights import load_model

    split = Path(split_path)
    pieces = load_split(split)
    train = _train_file(split)
    results = [unigram_result(load_split(train), pieces)]
    for name in jsb_models(root) if model_names is None else model_names:
        results.append(model_result(load_model(name, root, device="cpu").net, pieces, name))
    return {"split": str(split), "train": str(train), "results": results}


def add_jsb_metrics(out: str | Path, split_path: str | Path) -> dict:
    """Score the model saved in ``out`` and the 1-gram on ``split_path``; record both in its
    config.json (``card["jsb"]``) and in a README.md section. Returns the updated card."""
    from ..serving.weights import clear_cache, load_model

    out, split = Path(out), Path(split_path)
    clear_cache()
    pieces = load_split(split)
    row = model_result(load_model(out.name, out.parent, device="cpu").net, pieces, out.name)
    base = unigram_result(load_split(_train_file(split)), pieces)
    card = json.loads((out / "config.json").read_text())
    card["jsb"] = {
        "split": split.name,
        "valid_nll": round(row["nll"], 4),
        "valid_accuracy": round(row["accuracy"], 4),
        "steps": row["steps"],
        "baseline_nll": round(base["nll"], 4),
        "metric": "nats per time step, 88 keys summed, whole pieces from a zero start frame; "
        "accuracy TP/(TP+FP+FN) of the most likely frame (Bay et al. 2009)",
    }
    (out / "config.json").write_text(json.dumps(card, indent=1) + "\n")
    with open(out / "README.md", "a") as f:
        f.write(
            f"\n## JSB Chorales benchmark ({split.name}, {row['steps']} steps, whole pieces)\n\n"
            "| | NLL (nats/step) | frame accuracy |\n|---|---:|---:|\n"
            f"| this model | {row['nll']:.3f} | {row['accuracy']:.3f} |\n"
            f"| note 1-gram (fitted on train) | {base['nll']:.3f} | {base['accuracy']:.3f} |\n"
            "| published, test split: LSTM (Bai et al. 2018) / RNN-NADE (Boulanger-Lewandowski 2012) "
            "| 8.45 / 5.56 | |\n\n"
            "NLL in nats per time step summed over the 88 keys; the first step of each piece is "
            "predicted from an all-zero start frame. Accuracy: TP / (TP + FP + FN) of the model's "
            "most likely frame. Reproduce: `python -m musiclab evaluate jsb --split "
            f"musiclab/data/jsb/{split.name} --model {out.name}`.\n"
        )
        for key in ("selection", "notes"):
            if card.get(key):
                f.write(f"\n{key.capitalize()}: {card[key]}\n")
    return card
