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


def token_kinds(tokenizer, ids: np.ndarray) -> np.ndarray:
    """(T,) names of what each id says: "bar", "position", "pitch" (bar/note: the whole note),
    "velocity", "duration", or "other"."""
    if getattr(tokenizer.config, "kind", None) == "bar-note":
        out = np.full(len(ids), "other", dtype=object)
        out[ids == tokenizer.bar] = "bar"
        out[tokenizer.pos_of[ids] >= 0] = "position"
        out[tokenizer.pitch_of[ids] >= 0] = "pitch"
        return out
    from ..codecs.remi import BAR, DURATION, PITCH, POSITION, VELOCITY

    names = {BAR: "bar", POSITION: "position", PITCH: "pitch", VELOCITY: "velocity", DURATION: "duration"}
    return np.array([names.get(int(k), "other") for k in tokenizer.kind_of[ids]], dtype=object)


@torch.no_grad()
def token_bits(model, ids: np.ndarray, pitch_block: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T-1,) bits of tokens 1..T-1, each given the tokens before it within the context, and
    (T-1,) bits of the pitch alone for note ids (bar/note: summed over duration and velocity;
    0 elsewhere). Windows of the context, half a context apart: every token is scored once, with
    at least half a context before it (all of it at the piece's start). ``pitch_block``: (first
    note id, ids per pitch) of a bar/note codec, whose note ids run pitch by pitch."""
    L = model.get_block_size()
    x = torch.as_tensor(ids, dtype=torch.long)
    bits, pitch_bits = np.zeros(len(ids) - 1), np.zeros(len(ids) - 1)
    start = 0
    while start + 1 < len(x):
        seg = x[start : start + L + 1]
        logits, _ = model(seg[:-1].unsqueeze(0))
        logp = torch.log_softmax(logits[0].float(), -1)  # (t, V)
        tgt, skip = seg[1:], (0 if start == 0 else L // 2)  # skipped targets were scored by the previous window
        bits[start + skip : start + len(tgt)] = (-logp.gather(1, tgt[:, None])[:, 0] / math.log(2))[skip:].numpy()
        if pitch_block is not None:
            base, per = pitch_block
            by_pitch = torch.logsumexp(logp[:, base:].reshape(len(tgt), -1, per), -1)  # (t, pitches)
            k = ((tgt - base) // per).clamp(min=0)
            pb = torch.where(tgt >= base, -by_pitch.gather(1, k[:, None])[:, 0] / math.log(2), 0.0)
            pitch_bits[start + skip : start + len(tgt)] = pb[skip:].numpy()
        if start + L + 1 >= len(x):
            break
        start += L // 2
    return bits, pitch_bits


def bits_per_note(model, pieces: list) -> dict:
    """{bits_per_note, notes, pieces, by_kind} of a LoadedModel over PrettyMIDI ``pieces``.
    ``by_kind``: bits per note spent on bar lines, positions, pitches, velocities, durations
    (a bar/note NOTE token's bits split into its pitch and the rest, "velocity+duration")."""
    model.net.eval()
    codec = model.codec
    bar_note = getattr(codec.config, "kind", None) == "bar-note"
    block = (codec.note_base, codec.n_dur * codec.n_vel) if bar_note else None
    total, notes, kinds = 0.0, 0, {}
    for pm in pieces:
        ids = piece_ids(codec, pm)
        bits, pitch_bits = token_bits(model.net, ids, block)
        names = token_kinds(codec, ids[1:])
        for kind in set(names):
            kinds[kind] = kinds.get(kind, 0.0) + float(bits[names == kind].sum())
        if bar_note:  # the NOTE token's bits: its pitch, then duration and velocity given the pitch
            kinds["velocity+duration"] = kinds.get("velocity+duration", 0.0) + float(
                (bits - pitch_bits)[names == "pitch"].sum()
            )
            kinds["pitch"] -= float((bits - pitch_bits)[names == "pitch"].sum())
        total += float(bits.sum())
        notes += note_count(codec, ids)
    n = max(notes, 1)
    return {"bits_per_note": total / n, "notes": notes, "pieces": len(pieces),
            "by_kind": {k: round(v / n, 3) for k, v in sorted(kinds.items())}}  # fmt: skip
