"""Chords read from a melody by a small learned model: which major or minor triad sounds in each
half bar, trained on POP909's annotated chords (training/chords.py).

The melody of each half bar (the file's bars) is read as the beats it spends on each pitch class
in the half bar's two halves, turned so the key's major tonic (a minor key's relative major) is
C, and a two-layer bidirectional GRU over the span's half bars gives, for each, a distribution
over the 24 triads: it hears the whole phrase, before and after, as a musician harmonizing a
tune does. The flagship ships it next to its weights (``chords.safetensors``, described in its
config.json under ``"chords"``); without it, or if the file is damaged, editing/harmony.py
falls back to its rules.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .triads import TRIADS, half_edges, melody_beats

FILE = "chords.safetensors"
N_IN = 25  # 2 halves of a half bar x 12 pitch classes + which half of the bar


@dataclass
class ChordNetConfig:
    n_in: int = N_IN
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.1


class ChordNet(nn.Module):
    def __init__(self, c: ChordNetConfig):
        super().__init__()
        self.config = c
        self.inp = nn.Linear(c.n_in, c.hidden)
        self.gru = nn.GRU(c.hidden, c.hidden, c.layers, batch_first=True, bidirectional=True, dropout=c.dropout)
        self.out = nn.Linear(2 * c.hidden, len(TRIADS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, n_in) features of N half bars (``features``) -> logits (B, N, 24) over TRIADS,
        in the key-turned pitch classes of the input."""
        return self.out(self.gru(torch.relu(self.inp(x)))[0])


def key_turn(notes) -> int:
    """Semitones that take the melody's key (its major tonic, or a minor key's relative major) to C."""
    from ..codecs.common import estimate_key

    if not len(notes.pitch):
        return 0
    tonic, mode = estimate_key(notes.pitch, notes.duration)
    return (tonic + 3) % 12 if mode == "minor" else tonic


def features(notes, positions_per_beat: int, bars: list[tuple[int, int]], turn: int) -> np.ndarray:
    """(2 x bars, 25) float32: for each half bar of ``bars`` ([lo, hi) grid steps), log(1 + beats)
    of melody on each pitch class (turned down by ``turn`` semitones) in its first and second
    half, then 0 for a bar's first half and 1 for its second."""
    halves = half_edges(bars).astype(float)
    edges = np.sort(np.concatenate([halves, (halves[:-1] + halves[1:]) / 2])) / positions_per_beat
    beats = np.roll(melody_beats(notes, edges), -turn, axis=1).reshape(-1, 24)
    which = np.tile([0.0, 1.0], len(bars))[:, None]
    return np.concatenate([np.log1p(beats), which], axis=1).astype(np.float32)


@torch.no_grad()
def triad_probs(net: ChordNet, notes, positions_per_beat: int, bars: list[tuple[int, int]]) -> np.ndarray:
    """(2 x bars, 24): each half bar's probability of each of TRIADS (in the melody's own pitch
    classes) for a melody's ``notes`` (barnote.Notes, beats) over the file's ``bars``."""
    turn = key_turn(notes)
    x = torch.from_numpy(features(notes, positions_per_beat, bars, turn))[None]
    p = torch.softmax(net(x)[0].float(), -1).numpy()  # key-turned triads
    turned = [TRIADS.index(((r - turn) % 12, q)) for r, q in TRIADS]  # each triad's column in p
    return p[:, turned]


_lock = threading.Lock()
_nets: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LoadedModel -> its ChordNet, or why none


def load(folder: Path, card: dict) -> ChordNet:
    """The chord model shipped in a weights ``folder`` (``chords.safetensors``; its config and
    SHA-256 in ``card["chords"]``, checked before anything is built). Raises ValueError saying
    what is missing or damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from ..serving.weights import file_sha256

    meta = card.get("chords")
    path = Path(folder) / FILE
    if not isinstance(meta, dict) or not path.exists():
        raise ValueError(f"{Path(folder).name} ships no chord model")
    if not meta.get("sha256") or file_sha256(path) != meta["sha256"]:
        raise ValueError(f"{path.name} is damaged or replaced: its SHA-256 differs from config.json's")
    try:
        c = ChordNetConfig(**meta["config"])
        if c.n_in != N_IN:
            raise ValueError(f"it reads {c.n_in} numbers a half bar, musiclab gives {N_IN}")
        net = ChordNet(c)
        load_model(net, str(path), strict=True)
    except (KeyError, TypeError, ValueError, SafetensorError, RuntimeError, OSError) as e:
        raise ValueError(f"{path.name} does not match its config ({e})") from None
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise ValueError(f"{path.name} is damaged: it holds NaN or inf values")
    return net.float().eval()


def for_model(model) -> ChordNet | str:
    """The chord model shipped with ``model`` (a LoadedModel), loaded once per loaded model (new
    weights, a new one); or, when it has none or it is damaged, the reason (a string), so chords
    fall back to editing/harmony.py's rules."""
    from ..serving.weights import WEIGHTS_DIR

    with _lock:
        if model not in _nets:
            try:
                _nets[model] = load(Path(model.folder or WEIGHTS_DIR / model.name), model.card)
            except ValueError as e:
                _nets[model] = str(e)
        return _nets[model]


def card_entry(net: ChordNet, sha256: str, **facts) -> dict:
    """What config.json says of a shipped chord model: its shape, file hash and ``facts``."""
    return {"config": asdict(net.config), "params": sum(p.numel() for p in net.parameters()), "sha256": sha256,
            **facts}  # fmt: skip
