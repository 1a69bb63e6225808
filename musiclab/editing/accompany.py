"""Accompany: write a piano accompaniment under a melody, bar by bar.

The model reads each bar as ``BAR MEL <the melody's notes> ACC`` (forced: the melody is given)
and writes that bar's accompaniment after it (musiclab/codecs/barnote.py, two-track streams),
so every accompaniment bar is written knowing its melody and everything before it. The melody
is kept exactly, and so is every other track unless ``replace_others`` (then their pitched notes
give way in the span); the accompaniment is a new track ("musiclab accompaniment", GM piano)
that players can mute on its own.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pretty_midi

from ..codecs.barnote import ACCOMP, MELODY, Notes
from ..codecs.barnote_state import BarNoteState, notes_from_pm
from ..codecs.pace import Pace
from ..generation.sampling import Sampling, SettingsError
from ..generation.take import Take
from . import chordnet, constrained
from .harmony import Harmony, bars_of, estimate_chords, parse_chords


def accompany(model, pm: pretty_midi.PrettyMIDI, melody_track: int, *, start: float | None = None,
              end: float | None = None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
              min_p: float = 0.0, repetition_penalty: float = 1.0, key_lock: bool = False, variations: int = 1,
              replace_others: bool = False, chords: str | Harmony | None = None, random_seed: int | None = None,
              progress=None, stop=None, threads=None) -> list[Take]:  # fmt: skip
    """``variations`` copies of ``pm`` with an accompaniment under track ``melody_track`` from
    ``start`` to ``end`` seconds (default: the melody's first to last note). The melody is kept
    exactly; so are the other tracks, unless ``replace_others``: then their pitched notes starting
    in the span are dropped, so the new accompaniment is heard instead of the old one. ``chords``:
    chord symbols, a bar each (the file's bars) from the bar holding ``start`` ("C Am F G",
    "C | Am | F G"; fewer loop; editing/harmony.parse_chords), or None to follow chords read
    from the melody by the chord model shipped with ``model`` (editing/chordnet.py; by rule
    without one: ``info["chords_by"]`` says which, and why)."""
    constrained.check_model(model, "accompany")
    s = Sampling(temperature, top_k, top_p, min_p, repetition_penalty, key_lock)
    constrained.check_settings(s, variations)
    n_tracks = len(pm.instruments)
    if not isinstance(melody_track, (int, np.integer)) or not 0 <= melody_track < n_tracks:
        raise SettingsError(f"melody track {melody_track!r} does not exist; the file has tracks 0..{n_tracks - 1}")
    mel = pm.instruments[melody_track]
    if mel.is_drum or not mel.notes:
        raise SettingsError(f"track {melody_track} ({mel.name or 'unnamed'}) has no pitched notes to accompany")
    first, last = min(n.start for n in mel.notes), max(n.end for n in mel.notes)
    start, end = constrained.check_span(pm, first if start is None else start, last if end is None else end)
    if end - start > MAX_SECONDS:
        raise SettingsError(f"the span is {end - start:.0f} s long; at most {MAX_SECONDS:.0f} s can be accompanied "
                            "at once: choose a span (start and end) within it")  # fmt: skip
    codec = model.codec
    ppb, S = codec.config.positions_per_beat, codec.steps_per_bar
    s0 = math.floor(constrained.seconds_to_step(pm, start, ppb) + 1e-6)
    s1 = math.ceil(constrained.seconds_to_step(pm, end, ppb) - 1e-6)
    b0, b1 = s0 // S, (s1 - 1) // S + 1  # whole bars, so each bar's melody is read whole
    only = copy.copy(pm)
    only.instruments = [mel]
    melody = notes_from_pm(only, {0: MELODY})
    first_bar, file_bars = bars_of(pm, s0, s1, ppb)  # the file's own bars (its meter), for the chords
    harmony = _harmony(chords, melody, ppb, file_bars, model)  # a typo in the chords is refused before any work
    q = codec.quantize(melody)
    bars = {b: codec.encode(q, b, b + 1, two_track=True).tolist() for b in range(b0, b1)}  # BAR MEL ... ACC
    pitch_ok = None
    if key_lock:
        from ..codecs.common import estimate_key, scale_pitch_classes

        pitch_ok = np.isin(codec.pitch_of % 12, list(scale_pitch_classes(*estimate_key(q[:, 1]))))
    beats = (constrained.seconds_to_step(pm, end, ppb) - constrained.seconds_to_step(pm, start, ppb)) / ppb
    pace = accompaniment_pace(melody, ppb, s0, s1, 60 * beats / (end - start))  # the span's mean tempo, as the fit's
    state = BarNoteState(codec, variations, b0 * S, b1 * S, first_bar=b0, pitch_ok=pitch_ok, max_empty_bars=2,
                         pace=pace)  # fmt: skip

    def on_bar(row: int, bar: int) -> None:  # after a drawn BAR, the next bar's melody is fed
        if bar < b1:
            state.queue[row] = list(bars[bar][1:])

    state.on_bar, state.section = on_bar, ACCOMP
    state.harmony, state.melody_top = harmony, (b0 * S, melody_top(melody, ppb, b0 * S, b1 * S))
    if harmony.shares is not None:  # the chord model's wider pull climbs over the melody more often
        state.under_pull = READ_UNDER_PULL
    most = max(4096, TOKENS_A_BAR * (b1 - b0))  # a long song is written whole; a runaway take still ends
    facts = constrained.run(model, bars[b0], state, s, variations, random_seed, progress, stop, threads, most)
    takes = []
    for b in range(variations):
        midi = _with_accompaniment(pm, state.events(b), codec, s0, s1)
        if replace_others:
            _drop_others(midi, melody_track, start, end)
        info = {"model": model.name, "job": "accompany", "melody_track": int(melody_track),
                "span": [start, end], "replaced_others": bool(replace_others), "chords": harmony.names,
                "chords_from": "melody" if harmony.estimated else "given", "chords_by": harmony.by, "chords_first_bar": first_bar,
                "chords_unused": harmony.unused, "chords_looped": harmony.looped, "settings": s.__dict__.copy(), **facts,
                "random_seed": facts["random_seed"] + b, "stopped_early": bool(not state.done[b])}  # fmt: skip
        takes.append(Take(midi, info))
    return takes


def _harmony(chords, melody, positions_per_beat: int, bars: list[tuple[int, int]], model) -> Harmony:
    """The chords to follow over ``bars`` (the file's bars, [lo, hi) grid steps): ``chords`` as
    given (symbols a bar each, or a Harmony), else estimated from the melody's notes (barnote.Notes)
    by the chord model shipped with ``model`` (or by rule without one)."""
    if isinstance(chords, Harmony):
        return chords
    if isinstance(chords, str) and chords.strip():
        return parse_chords(chords, bars)
    if chords is not None and not isinstance(chords, str):
        raise SettingsError(f"chords = {chords!r} is not accepted; expected chord symbols such as 'C Am F G', or None")
    return estimate_chords(melody, positions_per_beat, bars, chordnet.for_model(model))


TOKENS_A_BAR = 160  # melody and accompaniment ids a bar, at most (4-minute POP909 songs: 21-25 ids a bar)
MAX_SECONDS = 600.0  # longest span one request may accompany (a long song: about a minute of work)
READ_UNDER_PULL = 4.0  # under chords the chord model read, nats a note above the melody loses (tuned, docs/flagship.md)

# log(accompaniment notes a beat) = A + B log(melody notes a beat) + C log(mean beats a minute), over
# each POP909 training song's melody span (PIANO notes under MELODY; recipe in docs/flagship.md)
PACE_FIT = (2.7725, 0.283, -0.3696)
NOTES_PER_ONSET = 1.63  # POP909's PIANO, median over its training songs


def accompaniment_pace(melody: Notes, positions_per_beat: int, lo: int, hi: int, bpm: float) -> Pace | None:
    """How busy an accompaniment of this melody over grid steps [lo, hi) would be in POP909: notes
    and onsets a step (no pitch classes or lengths: the chords and the model choose those);
    None without melody there. Left alone, the model plays 1.3-1.4x POP909's density (docs/flagship.md)."""
    on = melody.onset * positions_per_beat
    notes = int(((on >= lo) & (on < hi)).sum())
    if not notes:
        return None
    a, b, c = PACE_FIT
    per_beat = math.exp(a + b * math.log(notes * positions_per_beat / (hi - lo)) + c * math.log(bpm))
    per_step = per_beat / positions_per_beat
    return Pace(per_step, per_step / NOTES_PER_ONSET, palette=None)


def melody_top(melody: Notes, positions_per_beat: int, lo: int, hi: int) -> np.ndarray:
    """(hi - lo,) the highest melody pitch sounding at each grid step [lo, hi) (-1: none), from
    the melody's notes (beats; their own lengths, held notes past 4 beats included)."""
    top = np.full(hi - lo, -1, dtype=np.int64)
    on = np.round(melody.onset * positions_per_beat).astype(np.int64) - lo
    off = np.round((melody.onset + melody.duration) * positions_per_beat).astype(np.int64) - lo
    for a, z, pitch in zip(np.clip(on, 0, hi - lo), np.clip(off, 0, hi - lo), melody.pitch.tolist()):
        top[a:z] = np.maximum(top[a:z], pitch)  # a note outside [lo, hi) clips to an empty range
    return top


def _drop_others(pm: pretty_midi.PrettyMIDI, melody_track: int, start: float, end: float) -> None:
    """Drop the notes starting in [start, end) seconds of every pitched track but the melody and
    the new accompaniment (the last track); notes sounding into the span stop at its start."""
    for t, inst in enumerate(pm.instruments[:-1]):
        if t != melody_track and not inst.is_drum:
            constrained.clear_span(inst, start, end)
            for n in inst.notes:
                if n.start < start < n.end:
                    n.end = start


def _with_accompaniment(pm, events, codec, s0, s1) -> pretty_midi.PrettyMIDI:
    out = copy.deepcopy(pm)
    new = pretty_midi.Instrument(program=0, name="musiclab accompaniment")
    ev = events[(events[:, 4] == ACCOMP) & (events[:, 0] >= s0) & (events[:, 0] < s1)] if len(events) else events
    if len(ev):
        ppb = codec.config.positions_per_beat
        t0 = constrained.step_to_seconds(pm, ev[:, 0], ppb)
        t1 = constrained.step_to_seconds(pm, np.minimum(ev[:, 0] + ev[:, 3], s1), ppb)
        for a, z, (_, pitch, vel, _, _) in zip(t0, t1, ev):
            new.notes.append(pretty_midi.Note(int(vel), int(pitch), float(a), float(max(z, a + 1e-3))))
    out.instruments.append(new)
    return out
