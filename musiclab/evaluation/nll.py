"""Held-out likelihood in bits per note, so models with different tokens can be compared.

A whole piece is encoded by the model's own codec (REMI events, bar/note tokens, ...) and scored
with windows of the model's context, half a context apart: every token is predicted once, with at
least half a context before it (all of it at the piece's start). The piece's total NLL (bits)
divided by the notes the codec wrote (``note_count``) is its bits per note; the mean over pieces
weights each note the same.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def piece_ids(tokenizer, pm) -> np.ndarray:
    """The whole piece (every non-drum track) as the codec writes it for training."""
    if getattr(tokenizer.config, "kind", None) == "bar-note":
        from ..codecs.barnote_state import notes_from_pm

        q = tokenizer.quantize(notes_from_pm(pm))
        lo, hi = tokenizer.bars_of(q)
        return tokenizer.encode(q, lo, hi)
    return np.asarray(tokenizer.encode(pm), dtype=np.int64)


def note_count(tokenizer, ids: np.ndarray) -> int:
    """Notes among ``ids``: bar/note NOTE ids, or REMI Pitch ids."""
    if getattr(tokenizer.config, "kind", None) == "bar-note":
        return int((tokenizer.pitch_of[ids] >= 0).sum())
    if getattr(tokenizer.config, "kind", None) == "remi":
        from ..codecs.remi import PITCH

        return int((tokenizer.kind_of[ids] == PITCH).sum())
    raise ValueError(f"bits per note needs a REMI or bar/note model, got tokenizer {tokenizer.config.kind!r}")


@torch.no_grad()
def total_nll_bits(model, ids: np.ndarray) -> float:
    """Sum over tokens 1..T-1 of -log2 p(token | the tokens before it, within the context)."""
    L = model.get_block_size()
    x = torch.as_tensor(ids, dtype=torch.long)
    total, start = 0.0, 0
    while True:
        seg = x[start : start + L + 1]
        if len(seg) < 2:
            break
        logits, _ = model(seg[:-1].unsqueeze(0))
        nll = F.cross_entropy(logits[0].float(), seg[1:], reduction="none")
        skip = 0 if start == 0 else L // 2  # those targets were scored by the previous window
        total += float(nll[skip:].sum()) / math.log(2)
        if start + L + 1 >= len(x):
            break
        start += L // 2
    return total


def bits_per_note(model, pieces: list) -> dict:
    """{bits_per_note, notes, pieces} of a LoadedModel over PrettyMIDI ``pieces``."""
    model.net.eval()
    bits = notes = 0.0
    for pm in pieces:
        ids = piece_ids(model.codec, pm)
        bits += total_nll_bits(model.net, ids)
        notes += note_count(model.codec, ids)
    return {"bits_per_note": bits / max(notes, 1), "notes": int(notes), "pieces": len(pieces)}
