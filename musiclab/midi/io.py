"""MIDI in and out: safe loading with limits, seed slicing, track choice, bytes out.

Every time here is in **seconds** unless a name says ticks or beats; pitches are MIDI
numbers 0-127. ``load_midi`` is the only door a user's file comes through: it checks
size and structure with mido before pretty_midi builds its (potentially large) tick
map, so hostile files fail fast with a :class:`MidiError` instead of eating the box.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pretty_midi

from .checks import LIMITS, Limits, MidiError, parse_mido, read_bytes, retime

__all__ = [
    "LIMITS",
    "Limits",
    "MidiError",
    "load_midi",
    "load_midi_with_notice",
    "midi_summary",
    "midi_to_bytes",
    "non_drum_tracks",
    "seed_excerpt",
]


def load_midi(data: bytes | str | os.PathLike, limits: Limits = LIMITS) -> pretty_midi.PrettyMIDI:
    """Load a Standard MIDI File (types 0, 1, 2; any resolution or SMPTE timing; tempo/meter changes).

    ``data`` is the file's bytes or a path. Raises :class:`MidiError` with a specific
    message when the file is not MIDI, is truncated or corrupt, has no (pitched) notes,
    or is over ``limits`` in size, events or tempo. A file over the note or duration limit
    keeps its beginning, with a RuntimeWarning saying so (:func:`load_midi_with_notice`
    returns that notice). Unknown chunks are skipped; impossible meta events (tempo 0, an
    unknown key) are ignored.
    """
    pm, notice = load_midi_with_notice(data, limits)
    if notice:
        warnings.warn(notice, RuntimeWarning, stacklevel=2)
    return pm


def load_midi_with_notice(
    data: bytes | str | os.PathLike, limits: Limits = LIMITS
) -> tuple[pretty_midi.PrettyMIDI, str | None]:
    """:func:`load_midi`, plus what was cut from a long file (None if nothing was)."""
    raw = read_bytes(data, limits)
    mid, division, event_cut = parse_mido(raw, limits)
    notice = retime(mid, division, limits, event_cut)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = pretty_midi.PrettyMIDI(mido_object=mid)
    except (ValueError, KeyError, IndexError, ZeroDivisionError, OverflowError) as e:
        raise MidiError(f"the MIDI file is corrupt and cannot be read ({e})") from None
    pm.instruments = [inst for inst in pm.instruments if inst.notes]
    if not pm.instruments:
        raise MidiError("the MIDI file has no playable notes (each note ends where it starts)")
    if not any(not inst.is_drum for inst in pm.instruments):
        raise MidiError("the MIDI file has only drum notes (channel 10); musiclab models continue pitched music")
    return pm, notice


def non_drum_tracks(pm: pretty_midi.PrettyMIDI) -> list[int]:
    """Indices into ``pm.instruments`` of the tracks with pitched notes."""
    return [i for i, inst in enumerate(pm.instruments) if not inst.is_drum and inst.notes]


def track_label(pm: pretty_midi.PrettyMIDI, i: int) -> str:
    inst = pm.instruments[i]
    prog = pretty_midi.program_to_instrument_name(inst.program)
    name = inst.name.strip() or prog
    return f"{i + 1}: {name} ({len(inst.notes)} notes{', drums' if inst.is_drum else ''})"


def seed_excerpt(
    pm: pretty_midi.PrettyMIDI, seconds: float | None = None, tracks: list[int] | None = None
) -> pretty_midi.PrettyMIDI:
    """The first ``seconds`` of the chosen tracks (default: all non-drum ones), as a new PrettyMIDI.

    Notes starting before ``seconds`` are kept (their ends clipped to ``seconds``); the
    tempo/meter map of the source is kept so beat positions survive.
    """
    what = "the seed has" if tracks is None else "the chosen tracks have"
    tracks = non_drum_tracks(pm) if tracks is None else list(tracks)
    bad = [t for t in tracks if not 0 <= t < len(pm.instruments)]
    if bad:
        raise MidiError(f"track(s) {bad} do not exist; the file has tracks 0..{len(pm.instruments) - 1}")
    if not tracks:
        raise MidiError("no tracks chosen: pick at least one track with notes")
    if seconds is not None and not (np.isfinite(seconds) and seconds > 0):
        raise MidiError(f"seed length must be a positive number of seconds, got {seconds}")
    out = pretty_midi.PrettyMIDI(resolution=pm.resolution, initial_tempo=_initial_tempo(pm))
    # keep the whole tempo map (rubato lives in tempo events), so beats stay where the source has them
    out._tick_scales = list(pm._tick_scales)
    out._update_tick_to_time(pm.time_to_tick(max(pm.get_end_time(), 1.0)) + 1)
    out.time_signature_changes = list(pm.time_signature_changes)
    out.key_signature_changes = list(pm.key_signature_changes)
    for t in tracks:
        src = pm.instruments[t]
        inst = pretty_midi.Instrument(program=src.program, is_drum=src.is_drum, name=src.name)
        for n in src.notes:
            if seconds is None or n.start < seconds:
                end = n.end if seconds is None else min(n.end, seconds)
                inst.notes.append(pretty_midi.Note(n.velocity, n.pitch, n.start, max(end, n.start + 1e-3)))
        # sustain pedal, so codecs that read it (bar/note) hear the seed's notes as held
        inst.control_changes = [
            pretty_midi.ControlChange(64, c.value, c.time)
            for c in src.control_changes
            if c.number == 64 and (seconds is None or c.time < seconds)
        ]
        # a pedal down at the cut is lifted there: readers (symusic) drop a press that is never lifted
        pedals = sorted(inst.control_changes, key=lambda c: (c.time, c.value))
        if seconds is not None and pedals and pedals[-1].value >= 64:
            inst.control_changes.append(pretty_midi.ControlChange(64, 0, seconds))
        if inst.notes:
            out.instruments.append(inst)
    if not out.instruments:
        starts = [n.start for t in tracks for n in pm.instruments[t].notes]
        first = f" (the first starts at {min(starts):.1f} s)" if starts else ""
        raise MidiError(f"{what} no notes in the first {seconds:g} s{first}; use a longer seed")
    return out


def time_window(pm: pretty_midi.PrettyMIDI, start: float, end: float) -> pretty_midi.PrettyMIDI:
    """The notes starting in [start, end) seconds, moved to start at 0 (ends clipped to the
    window; sustain pedal kept): what a player plays of a long piece around a passage."""
    out = pretty_midi.PrettyMIDI(resolution=pm.resolution, initial_tempo=_initial_tempo(pm))
    for src in pm.instruments:
        inst = pretty_midi.Instrument(program=src.program, is_drum=src.is_drum, name=src.name)
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start - start, max(min(n.end, end), n.start + 1e-3) - start)
                      for n in src.notes if start <= n.start < end]  # fmt: skip
        pedal = sorted((c for c in src.control_changes if c.number == 64 and c.time < end), key=lambda c: c.time)
        before = [c for c in pedal if c.time < start][-1:]  # the pedal as it stands when the window opens
        inst.control_changes = [pretty_midi.ControlChange(64, c.value, max(c.time - start, 0.0))
                                for c in before + [c for c in pedal if c.time >= start]]  # fmt: skip
        out.instruments.append(inst)
    return out


def _initial_tempo(pm: pretty_midi.PrettyMIDI) -> float:
    _, tempi = pm.get_tempo_changes()
    return float(tempi[0]) if len(tempi) else 120.0


def midi_to_bytes(pm: pretty_midi.PrettyMIDI) -> bytes:
    """Serialise to Standard MIDI File bytes (type 1)."""
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def midi_summary(pm: pretty_midi.PrettyMIDI) -> dict:
    """Plain facts about a loaded file: tracks, notes, seconds, tempo, pitch range."""
    notes = [n for inst in pm.instruments for n in inst.notes]
    pitches = [n.pitch for n in notes if True]
    times, tempi = pm.get_tempo_changes()
    return {
        "tracks": [track_label(pm, i) for i in range(len(pm.instruments))],
        "notes": len(notes),
        "seconds": round(pm.get_end_time(), 2),
        "tempo_bpm": round(float(tempi[0]), 1) if len(tempi) else 120.0,
        "tempo_changes": int(len(times)),
        "pitch_range": [int(min(pitches)), int(max(pitches))] if pitches else None,
        "resolution": pm.resolution,
    }


def bar_seconds(pm: pretty_midi.PrettyMIDI, at: float) -> float:
    """Length of one bar (seconds) at time ``at`` (seconds): meter and tempo in force there."""
    times, tempi = pm.get_tempo_changes()
    bpm = float(tempi[np.searchsorted(times, at, side="right") - 1]) if len(tempi) else 120.0
    ts = [t for t in pm.time_signature_changes if t.time <= at + 1e-9]
    num, den = (ts[-1].numerator, ts[-1].denominator) if ts else (4, 4)
    return num * 4.0 / den * 60.0 / bpm
