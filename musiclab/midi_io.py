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
from dataclasses import dataclass

import mido
import numpy as np
import pretty_midi

__all__ = [
    "LIMITS",
    "Limits",
    "MidiError",
    "load_midi",
    "midi_summary",
    "midi_to_bytes",
    "non_drum_tracks",
    "seed_excerpt",
]


class MidiError(ValueError):
    """A MIDI file (or a request about one) that musiclab cannot use; the message says why."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one uploaded MIDI file (all inclusive)."""

    max_bytes: int = 4 * 1024 * 1024  # file size; real piano pieces are < 200 kB
    max_messages: int = 400_000  # MIDI events over all tracks (notes, tempo, CC, ...)
    max_notes: int = 60_000  # note-on events with velocity > 0
    max_seconds: float = 3600.0  # duration to the last event, seconds
    max_ticks: int = 50_000_000  # largest absolute tick; beyond this a file is corrupt
    max_tracks: int = 256  # chunks of type MTrk


LIMITS = Limits()


def _read_bytes(data: bytes | str | os.PathLike, limits: Limits) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif isinstance(data, (str, os.PathLike)):
        try:
            size = os.path.getsize(data)
        except OSError as e:
            raise MidiError(f"cannot read {os.fspath(data)!r}: {e.strerror or e}") from None
        if size > limits.max_bytes:
            raise MidiError(_too_big(size, limits))
        with open(data, "rb") as f:
            raw = f.read(limits.max_bytes + 1)
    else:
        raise TypeError(f"load_midi expects bytes or a path, got {type(data).__name__}")
    if len(raw) == 0:
        raise MidiError("the file is empty (0 bytes); expected a Standard MIDI File (.mid)")
    if len(raw) > limits.max_bytes:
        raise MidiError(_too_big(len(raw), limits))
    return raw


def _too_big(size: int, limits: Limits) -> str:
    return (
        f"the file is {size / 1e6:.1f} MB; the limit is {limits.max_bytes / 1e6:.1f} MB "
        "(a solo-piano piece is usually well under 0.2 MB)"
    )


def _parse_mido(raw: bytes, limits: Limits) -> mido.MidiFile:
    if raw[:4] != b"MThd":
        if raw[:4] == b"RIFF":
            raise MidiError("this is a RIFF file (RMID or WAV), not a Standard MIDI File; export it as .mid")
        raise MidiError(
            "not a MIDI file: a Standard MIDI File starts with 'MThd' "
            f"but this one starts with {raw[:4]!r}. Accepted: .mid/.midi files, types 0, 1 and 2"
        )
    # Count track chunks cheaply before mido allocates anything per track.
    if raw.count(b"MTrk") > limits.max_tracks:
        raise MidiError(f"the file has more than {limits.max_tracks} tracks; the limit is {limits.max_tracks}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mid = mido.MidiFile(file=io.BytesIO(raw), clip=True)
    except EOFError:
        raise MidiError("the MIDI file is truncated: it ends in the middle of a track") from None
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise MidiError(f"the MIDI file is corrupt and cannot be parsed ({e})") from None
    if mid.type == 2:
        # pretty_midi reads all tracks on one timeline; type 2 tracks are independent
        # patterns, which we accept and overlay (documented behaviour).
        mid.type = 1
    if not mid.tracks:
        raise MidiError("the MIDI file has no tracks (zero MTrk chunks); nothing to play")
    if mid.ticks_per_beat <= 0:
        raise MidiError("SMPTE time division is not supported here; re-export with ticks per beat")
    return mid


def _check_content(mid: mido.MidiFile, limits: Limits) -> None:
    n_msgs = n_notes = n_drum_notes = 0
    max_tick = 0
    for track in mid.tracks:
        n_msgs += len(track)
        if n_msgs > limits.max_messages:
            raise MidiError(f"the file has more than {limits.max_messages:,} MIDI events; that is over the limit")
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                n_notes += 1
                if msg.channel == 9:
                    n_drum_notes += 1
        max_tick = max(max_tick, tick)
    if max_tick > limits.max_ticks:
        raise MidiError(
            f"the file's largest time is {max_tick:,} ticks (over {limits.max_ticks:,}); "
            "it has absurd delta times and is probably corrupt"
        )
    if n_notes == 0:
        raise MidiError("the MIDI file has no notes (only meta or control events); upload a file with notes")
    if n_notes == n_drum_notes:
        raise MidiError("the MIDI file has only drum notes (channel 10); musiclab models continue pitched music")
    if n_notes > limits.max_notes:
        raise MidiError(f"the file has {n_notes:,} notes; the limit is {limits.max_notes:,}")


def load_midi(data: bytes | str | os.PathLike, limits: Limits = LIMITS) -> pretty_midi.PrettyMIDI:
    """Load a Standard MIDI File (types 0, 1, 2; any resolution; tempo/meter changes).

    ``data`` is the file's bytes or a path. Raises :class:`MidiError` with a specific
    message when the file is not MIDI, is truncated or corrupt, has no (pitched) notes,
    or is over ``limits`` (size, events, notes, duration in seconds).
    """
    raw = _read_bytes(data, limits)
    mid = _parse_mido(raw, limits)
    _check_content(mid, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            buf = io.BytesIO()
            mid.save(file=buf)
            buf.seek(0)
            pm = pretty_midi.PrettyMIDI(buf)
    except (ValueError, KeyError, IndexError, EOFError, OSError) as e:
        raise MidiError(f"the MIDI file is corrupt and cannot be read ({e})") from None
    pm.instruments = [inst for inst in pm.instruments if inst.notes]
    end = pm.get_end_time()
    if end > limits.max_seconds:
        raise MidiError(f"the piece lasts {end / 60:.0f} min; the limit is {limits.max_seconds / 60:.0f} min")
    if not any(not inst.is_drum for inst in pm.instruments):
        raise MidiError("the MIDI file has only drum notes (channel 10); musiclab models continue pitched music")
    return pm


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
    tracks = non_drum_tracks(pm) if tracks is None else list(tracks)
    bad = [t for t in tracks if not 0 <= t < len(pm.instruments)]
    if bad:
        raise MidiError(f"track(s) {bad} do not exist; the file has tracks 0..{len(pm.instruments) - 1}")
    if not tracks:
        raise MidiError("no tracks chosen: pick at least one track with notes")
    if seconds is not None and not (np.isfinite(seconds) and seconds > 0):
        raise MidiError(f"seed length must be a positive number of seconds, got {seconds}")
    out = pretty_midi.PrettyMIDI(resolution=pm.resolution, initial_tempo=_initial_tempo(pm))
    out.time_signature_changes = list(pm.time_signature_changes)
    out.key_signature_changes = list(pm.key_signature_changes)
    for t in tracks:
        src = pm.instruments[t]
        inst = pretty_midi.Instrument(program=src.program, is_drum=src.is_drum, name=src.name)
        for n in src.notes:
            if seconds is None or n.start < seconds:
                end = n.end if seconds is None else min(n.end, seconds)
                inst.notes.append(pretty_midi.Note(n.velocity, n.pitch, n.start, max(end, n.start + 1e-3)))
        if inst.notes:
            out.instruments.append(inst)
    if not out.instruments:
        raise MidiError(f"the chosen tracks have no notes in the first {seconds:g} s; use a longer seed")
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
