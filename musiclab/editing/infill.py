"""Infill: regenerate the notes that start inside a span, fitting what comes before and after.

The model reads ``INFILL <suffix> FILL_k <prefix> MID`` (musiclab/codecs/barnote.py) and writes
the middle: exactly k bar lines, onsets only inside the span, then EOM. Every note of the file
whose onset is outside [start, end) is kept exactly (pitch, times, velocity), and so are the
tracks not chosen; the chosen tracks' notes starting inside the span are replaced by the new
notes, which go on a track of their own ("musiclab infill").
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pretty_midi

from ..codecs.barnote import MAX_FILL_BARS, notes_from_score
from ..codecs.barnote_state import BarNoteState, cut_to_bar, score_of
from ..codecs.common import add_pedal, pedal_spans
from ..codecs.pace import PACE_BARS, one_line, pace_of
from ..generation.sampling import Sampling, SettingsError
from ..generation.take import Take
from ..midi.io import non_drum_tracks
from . import constrained

SUFFIX_SHARE, MIDDLE_SHARE = (
    1 / 4,
    3 / 8,
)  # of the context: the suffix read (256 of 1,024, as in training), room for the middle


def infill(model, pm: pretty_midi.PrettyMIDI, start: float, end: float, *, tracks: list[int] | None = None,
           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
           repetition_penalty: float = 1.0, key_lock: bool = False, variations: int = 1,
           random_seed: int | None = None, progress=None, stop=None, threads=None) -> list[Take]:  # fmt: skip
    """``variations`` new versions of ``pm`` with the span [start, end) seconds regenerated.

    Each :class:`Take`'s ``info`` has the model, span, settings, random seed, tokens, compute seconds."""
    constrained.check_model(model, "infill")
    s = Sampling(temperature, top_k, top_p, min_p, repetition_penalty, key_lock)
    constrained.check_settings(s, variations)
    start, end = constrained.check_span(pm, start, end)
    tracks = non_drum_tracks(pm) if tracks is None else list(tracks)
    bad = [t for t in tracks if not 0 <= t < len(pm.instruments)]
    if bad or not tracks:
        raise SettingsError(
            f"track(s) {bad or tracks} cannot be infilled; the file has tracks 0..{len(pm.instruments) - 1}"
        )
    codec = model.codec
    ppb, S = codec.config.positions_per_beat, codec.steps_per_bar
    s0 = math.ceil(constrained.seconds_to_step(pm, start, ppb) - 1e-6)
    s1 = math.ceil(constrained.seconds_to_step(pm, end, ppb) - 1e-6)
    b0, b1 = s0 // S, s1 // S
    if b1 - b0 > MAX_FILL_BARS:
        raise SettingsError(f"the span crosses {b1 - b0} bar lines; at most {MAX_FILL_BARS} can be infilled at once")
    if s1 <= s0:
        raise SettingsError(f"the span {start:g}-{end:g} s is shorter than one grid step; choose a longer one")
    chosen = copy.copy(pm)
    chosen.instruments = [pm.instruments[t] for t in tracks]
    score = score_of(chosen)
    q = codec.quantize(notes_from_score(score))  # as heard, as the model reads music
    block = model.net.get_block_size()
    suffix = codec.encode(q, b1, b1 + 64, step_lo=s1)[: int(block * SUFFIX_SHARE)].tolist()
    room = max(block - len(suffix) - int(block * MIDDLE_SHARE) - 3, 0)  # the window never drops the suffix
    prefix = cut_to_bar(codec.encode(q, 0, b0 + 1, step_hi=s0).tolist(), room, codec.bar)
    ids = [codec.ids["INFILL"], *suffix, codec.fill_id(b1 - b0), *prefix, codec.ids["MID"]]
    pitch_ok = None
    if key_lock:
        from ..codecs.common import estimate_key, scale_pitch_classes

        key = estimate_key(q[:, 1], None) if len(q) else (0, "major")
        pitch_ok = np.isin(codec.pitch_of % 12, list(scale_pitch_classes(*key)))
    has = bool(np.any((q[:, 0] >= b0 * S) & (q[:, 0] < s0)))
    written = codec.quantize(notes_from_score(score, pedal=False))  # the new notes play under the file's pedal
    pace = pace_of(codec, written, [(s0 - PACE_BARS * S, s0), (s1, s1 + PACE_BARS * S)])
    state = BarNoteState(codec, variations, s0, s1, first_bar=b0, bar_has_notes=has, fill_bars=b1 - b0,
                         end_step=s1, pitch_ok=pitch_ok, pace=pace, line=one_line(codec, written))  # fmt: skip
    facts = constrained.run(model, ids, state, s, variations, random_seed, progress, stop, threads)
    takes = []
    for b in range(variations):
        midi = _with_middle(pm, tracks, start, end, state.events(b), codec, s0, s1)
        info = {"model": model.name, "job": "infill", "span": [start, end],
                "tracks": tracks, "settings": s.__dict__.copy(), **facts,
                "random_seed": facts["random_seed"] + b, "stopped_early": bool(not state.done[b])}  # fmt: skip
        takes.append(Take(midi, info))
    return takes


def _with_middle(pm, tracks, start, end, events, codec, s0, s1) -> pretty_midi.PrettyMIDI:
    """A deep copy of ``pm`` without the chosen tracks' onsets in [start, end), plus the new notes."""
    out = copy.deepcopy(pm)
    for t in tracks:
        constrained.clear_span(out.instruments[t], start, end)
    ppb = codec.config.positions_per_beat
    new = pretty_midi.Instrument(program=pm.instruments[tracks[0]].program, name="musiclab infill")
    ev = events[(events[:, 0] >= s0) & (events[:, 0] < s1)] if len(events) else events
    if len(ev):
        t0 = constrained.step_to_seconds(pm, ev[:, 0], ppb)
        t1 = constrained.step_to_seconds(pm, ev[:, 0] + ev[:, 3], ppb)
        for a, z, (_, pitch, vel, _, _) in zip(t0, t1, ev):
            a = min(max(a, start), np.nextafter(end, start))  # rounding to ticks must not leave the span
            new.notes.append(pretty_midi.Note(int(vel), int(pitch), float(a), float(max(z, a + 1e-3))))
    # the new notes' own track (its own channel) takes the chosen tracks' pedal over the span
    add_pedal(new, [(max(a, start), b) for a, b in pedal_spans([pm.instruments[t] for t in tracks]) if b > start], end)
    out.instruments.append(new)
    return out
