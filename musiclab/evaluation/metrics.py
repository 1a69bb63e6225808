"""Symbolic-music metrics: is a continuation in the seed's key, as busy, as varied?

All times are **seconds** unless a name says beats; pitches are MIDI numbers 0-127.
Drum tracks are ignored. A *segment* is the notes whose onset lies in ``[start, end)``;
``compare(take, seed_end)`` measures the continuation (onsets at/after ``seed_end``)
against the seed (onsets before it), with the key estimated from the seed.

Metrics of one segment (:func:`segment_stats`), each with unit and range:

==================  ==================================================================
``notes``           number of notes (count, >= 0)
``pc_hist``         pitch-class histogram, 12 shares for C..B summing to 1 (each note
                    counts once, whatever its length); all zeros if there are no notes
``pitch_low/high``  lowest / highest MIDI pitch (0-127; None without notes)
``pitch_range``     highest - lowest pitch, semitones (0-127; None without notes)
``density``         notes per second over the segment's span (>= 0)
``polyphony``       mean number of notes sounding, averaged over the time at least one
                    sounds (>= 1; 0 without notes). 1.0 = a pure melody
``ioi_hist``        inter-onset intervals in **beats** (from the tempo map), binned to the
                    nearest (log scale) of 1/4, 1/2, 1, 2, 4 beats; shares summing to 1
``ioi_mean``        mean inter-onset interval, beats (None with < 2 onsets)
``in_key``          share of notes whose pitch class is in the key's scale (0-1); the
                    key is given (the seed's) or estimated from the segment itself
``repetition``      share of onsets whose pitch set equals the previous onset's (0-1;
                    None with < 2 onsets). 1.0 = one note or chord repeated throughout
``empty_bars``      share of whole bars inside the segment with no onset (0-1; None if
                    no whole bar fits). Bars come from the time signature and tempo map
==================  ==================================================================

Onsets closer than ``ONSET_TOLERANCE`` seconds count as one onset (a chord).

Distances between two segments (:func:`distances`):

* ``pc_wasserstein``: earth mover's distance between pitch-class histograms on the
  **circle** of 12 semitones (C next to B), in semitones, range 0-6: moving all mass a
  semitone costs 1, to the tritone 6. C major vs G major (F -> F#) is 1/7 ~ 0.14.
* ``pc_tv``: total variation, half the L1 distance between pitch-class histograms, 0-1.
* ``ioi_tv``: total variation between inter-onset-interval histograms, 0-1.
"""

from __future__ import annotations

import numpy as np
import pretty_midi

from ..codecs.common import KEY_NAMES, estimate_key, scale_pitch_classes

ONSET_TOLERANCE = 0.03  # seconds: onsets this close are one chord (human chords spread ~20 ms)
IOI_BINS = (0.25, 0.5, 1.0, 2.0, 4.0)  # beats: 16th, 8th, quarter, half, whole note
SCALARS = ("notes", "pitch_range", "density", "polyphony", "ioi_mean", "in_key", "repetition", "empty_bars")
UNITS = {
    "notes": "count",
    "pitch_range": "semitones",
    "density": "notes/s",
    "polyphony": "notes",
    "ioi_mean": "beats",
    "in_key": "share 0-1",
    "repetition": "share 0-1",
    "empty_bars": "share 0-1",
    "pc_wasserstein": "semitones 0-6",
    "pc_tv": "0-1",
    "ioi_tv": "0-1",
}


def segment_notes(pm: pretty_midi.PrettyMIDI, start: float = 0.0, end: float | None = None) -> list[pretty_midi.Note]:
    """Non-drum notes with onset in ``[start, end)`` seconds, sorted by onset then pitch."""
    notes = [
        n
        for inst in pm.instruments
        if not inst.is_drum
        for n in inst.notes
        if n.start >= start - 1e-9 and (end is None or n.start < end - 1e-9)
    ]
    return sorted(notes, key=lambda n: (n.start, n.pitch))


def pitch_class_histogram(pitches) -> np.ndarray:
    """(12,) shares of each pitch class C..B (sum 1), or zeros for no pitches."""
    h = np.bincount(np.asarray(pitches, dtype=int) % 12, minlength=12).astype(float)
    return h / h.sum() if h.sum() else h


def circular_wasserstein(p, q) -> float:
    """Earth mover's distance between two (12,) histograms on a circle of unit steps.

    W1 on a circle = min over c of sum_i |F_i - G_i - c| (F, G the cumulative sums); the
    minimising c is the median of F - G. Both inputs are normalised first; if either is
    all zeros the distance is undefined and NaN is returned.
    """
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != (12,) or q.shape != (12,):
        raise ValueError(f"expected two (12,) pitch-class histograms, got {p.shape} and {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    d = np.cumsum(p / p.sum()) - np.cumsum(q / q.sum())
    return float(np.abs(d - np.median(d)).sum())


def total_variation(p, q) -> float:
    """Half the L1 distance between two normalised histograms (0-1; NaN if one is empty)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def onset_groups(notes: list[pretty_midi.Note]) -> list[tuple[float, frozenset[int]]]:
    """Notes grouped into onsets: [(onset seconds, pitch set)], chords within ONSET_TOLERANCE."""
    groups: list[tuple[float, set[int]]] = []
    for n in sorted(notes, key=lambda n: n.start):
        if groups and n.start - groups[-1][0] <= ONSET_TOLERANCE:
            groups[-1][1].add(n.pitch)
        else:
            groups.append((n.start, {n.pitch}))
    return [(t, frozenset(s)) for t, s in groups]


def repetition_rate(groups) -> float | None:
    """Share of onsets (from the 2nd) whose pitch set equals the previous one's; None if < 2."""
    if len(groups) < 2:
        return None
    return sum(a[1] == b[1] for a, b in zip(groups, groups[1:])) / (len(groups) - 1)


def polyphony(notes: list[pretty_midi.Note]) -> float:
    """Mean count of sounding notes over the time at least one sounds (0 without notes)."""
    if not notes:
        return 0.0
    ev = sorted([(n.start, 1) for n in notes] + [(n.end, -1) for n in notes], key=lambda e: (e[0], e[1]))
    busy = area = 0.0
    count, t_prev = 0, ev[0][0]
    for t, d in ev:
        if count > 0:
            busy += t - t_prev
            area += count * (t - t_prev)
        count, t_prev = count + d, t
    return area / busy if busy > 0 else float(len(notes))  # zero-length notes: count them as one chord


def _beats(pm: pretty_midi.PrettyMIDI, times) -> np.ndarray:
    """Seconds -> beats (quarter notes) through the file's tempo map."""
    return np.array([pm.time_to_tick(t) for t in times], dtype=float) / pm.resolution


def ioi_histogram(pm: pretty_midi.PrettyMIDI, onsets) -> tuple[np.ndarray, float | None]:
    """((5,) shares over IOI_BINS, mean IOI in beats) for sorted onset times in seconds."""
    if len(onsets) < 2:
        return np.zeros(len(IOI_BINS)), None
    ioi = np.diff(_beats(pm, onsets))
    ioi = ioi[ioi > 0]
    if not len(ioi):
        return np.zeros(len(IOI_BINS)), None
    idx = np.abs(np.log2(ioi)[:, None] - np.log2(IOI_BINS)[None, :]).argmin(1)
    h = np.bincount(idx, minlength=len(IOI_BINS)).astype(float)
    return h / h.sum(), float(ioi.mean())


def bar_starts(pm: pretty_midi.PrettyMIDI, until: float) -> np.ndarray:
    """Downbeat times (seconds) from the time signature + tempo map, extended past the end
    of the file (last bar length repeated) up to ``until``; 4/4 if no time signature."""
    down = list(pm.get_downbeats())
    if len(down) < 2:
        times, tempi = pm.get_tempo_changes()
        bpm = float(tempi[-1]) if len(tempi) else 120.0
        ts = pm.time_signature_changes[-1] if pm.time_signature_changes else None
        beats = ts.numerator * 4 / ts.denominator if ts else 4.0
        down = [down[0] if down else 0.0]
        down.append(down[0] + beats * 60 / bpm)
    bar = down[-1] - down[-2]
    while down[-1] <= until + bar and bar > 0:
        down.append(down[-1] + bar)
    return np.array(down)


def empty_bar_rate(pm: pretty_midi.PrettyMIDI, onsets, start: float, end: float) -> float | None:
    """Share of whole bars within [start, end] seconds that hold no onset; None if no bar fits."""
    down = bar_starts(pm, end)
    eps = 1e-6
    bars = [(a, b) for a, b in zip(down, down[1:]) if a >= start - eps and b <= end + eps]
    if not bars:
        return None
    on = np.asarray(onsets, dtype=float)
    empty = sum(not np.any((on >= a - eps) & (on < b - eps)) for a, b in bars)
    return empty / len(bars)


def segment_stats(
    pm: pretty_midi.PrettyMIDI, start: float = 0.0, end: float | None = None, key: tuple[int, str] | None = None
) -> dict:
    """Metrics of the notes with onset in ``[start, end)`` (see the module docstring).

    ``end`` defaults to the file's end; the span ``end - start`` (seconds) is what density
    and empty bars are measured over. ``key`` = (tonic 0-11, "major"|"minor") for
    ``in_key``; None estimates it from the segment.
    """
    end = pm.get_end_time() if end is None else end
    notes = segment_notes(pm, start, end)
    pitches = np.array([n.pitch for n in notes], dtype=int)
    if key is None:
        key = estimate_key(pitches, np.array([n.end - n.start for n in notes])) if notes else (0, "major")
    groups = onset_groups(notes)
    onsets = [t for t, _ in groups]
    ioi_h, ioi_mean = ioi_histogram(pm, onsets)
    scale = scale_pitch_classes(*key)
    span = max(end - start, 0.0)
    return {
        "key": f"{KEY_NAMES[key[0]]} {key[1]}",
        "seconds": span,
        "notes": len(notes),
        "pc_hist": pitch_class_histogram(pitches).tolist(),
        "pitch_low": int(pitches.min()) if len(pitches) else None,
        "pitch_high": int(pitches.max()) if len(pitches) else None,
        "pitch_range": int(pitches.max() - pitches.min()) if len(pitches) else None,
        "density": len(notes) / span if span > 0 else 0.0,
        "polyphony": polyphony(notes),
        "ioi_hist": ioi_h.tolist(),
        "ioi_mean": ioi_mean,
        "in_key": float(np.isin(pitches % 12, list(scale)).mean()) if len(pitches) else None,
        "repetition": repetition_rate(groups),
        "empty_bars": empty_bar_rate(pm, onsets, start, end),
    }


def distances(a: dict, b: dict) -> dict:
    """Histogram distances between two :func:`segment_stats` dicts (NaN -> None if one is empty)."""

    def clean(x: float) -> float | None:
        return None if np.isnan(x) else x

    return {
        "pc_wasserstein": clean(circular_wasserstein(a["pc_hist"], b["pc_hist"])),
        "pc_tv": clean(total_variation(a["pc_hist"], b["pc_hist"])),
        "ioi_tv": clean(total_variation(a["ioi_hist"], b["ioi_hist"])),
    }


def seed_key(pm: pretty_midi.PrettyMIDI, seed_end: float | None = None) -> tuple[int, str]:
    """Krumhansl-Schmuckler key of the notes before ``seed_end`` (whole file if None), duration-weighted."""
    notes = segment_notes(pm, 0.0, seed_end)
    if not notes:
        return 0, "major"
    return estimate_key(np.array([n.pitch for n in notes]), np.array([n.end - n.start for n in notes]))


def compare(take_pm: pretty_midi.PrettyMIDI, seed_end: float, seconds: float | None = None) -> dict:
    """Continuation (onsets at/after ``seed_end``) vs seed (onsets before it) of one take.

    ``seconds`` = asked continuation length (default: to the file's last note end).
    Returns {"key", "seed": stats, "continuation": stats, "distance": {...}}; both sides'
    ``in_key`` use the key estimated from the seed.
    """
    if not np.isfinite(seed_end) or seed_end <= 0:
        raise ValueError(f"expected seed_end > 0 seconds, got {seed_end}")
    key = seed_key(take_pm, seed_end)
    end = seed_end + seconds if seconds is not None else max(take_pm.get_end_time(), seed_end)
    seed = segment_stats(take_pm, 0.0, seed_end, key)
    cont = segment_stats(take_pm, seed_end, end, key)
    return {"key": seed["key"], "seed": seed, "continuation": cont, "distance": distances(cont, seed)}


def compare_files(pm: pretty_midi.PrettyMIDI, ref: pretty_midi.PrettyMIDI) -> dict:
    """A whole file vs a reference file; ``in_key`` of both uses the reference's key."""
    key = seed_key(ref)
    a, b = segment_stats(pm, key=key), segment_stats(ref, key=key)
    return {"key": b["key"], "file": a, "reference": b, "distance": distances(a, b)}


def corpus_stats(pms: list[pretty_midi.PrettyMIDI]) -> dict:
    """Pooled reference over many files: histograms averaged over files (each file weighs
    the same), scalar metrics averaged over the files where they are defined; ``in_key``
    of each file uses its own estimated key."""
    if not pms:
        raise ValueError("expected at least one MIDI file in the corpus, got none")
    per = [segment_stats(pm) for pm in pms]
    out: dict = {"key": "per file", "files": len(per)}
    for h in ("pc_hist", "ioi_hist"):
        rows = [np.asarray(s[h]) for s in per if np.sum(s[h]) > 0]
        out[h] = (np.mean(rows, axis=0) if rows else np.zeros(len(per[0][h]))).tolist()
    for k in SCALARS + ("seconds",):
        vals = [s[k] for s in per if s[k] is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out
