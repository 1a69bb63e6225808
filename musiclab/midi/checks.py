"""What an uploaded MIDI file must pass before pretty_midi reads it: size, structure, events,
tempo, notes and length, checked on the bytes (then with mido) so a hostile file fails fast with
a :class:`MidiError`, and a long one keeps its beginning (:func:`retime` says what was cut)."""

from __future__ import annotations

import io
import os
import struct
import warnings
from array import array
from dataclasses import dataclass

import mido
import numpy as np
from mido.midifiles.meta import KeySignatureError


class MidiError(ValueError):
    """A MIDI file (or a request about one) that musiclab cannot use; the message says why."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one uploaded MIDI file (all inclusive)."""

    max_bytes: int = 4 * 1024 * 1024  # file size; real piano pieces are < 200 kB
    max_messages: int = 250_000  # MIDI events over all tracks (notes, tempo, CC, ...); mido parses ~100k/s
    max_meta: int = 50_000  # meta events (tempo, text, ...): the costliest kind for mido to build
    max_notes: int = 60_000  # note-on events with velocity > 0
    max_seconds: float = 3600.0  # duration to the last event, seconds
    max_beats: int = 200_000  # latest event, in beats (28 h at 120 bpm): beyond this a file is corrupt
    max_tracks: int = 256  # chunks of type MTrk
    max_bpm: float = 1000.0  # fastest tempo event; faster ones make a generator's beat clock run away


LIMITS = Limits()


def read_bytes(data: bytes | str | os.PathLike, limits: Limits) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif isinstance(data, (str, os.PathLike)):
        try:
            size = os.path.getsize(data)
        except OSError as e:
            raise MidiError(f"cannot read {os.fspath(data)!r}: {e.strerror or e}") from None
        if size > limits.max_bytes:
            raise MidiError(_too_big(size, limits))
        try:
            with open(data, "rb") as f:
                raw = f.read(limits.max_bytes + 1)
        except OSError as e:  # a folder, no permission, ...
            raise MidiError(f"cannot read {os.fspath(data)!r}: {e.strerror or e}") from None
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


# ---- bytes: chunks and events, checked before mido builds one object per event ----
_CHANNEL_DATA = (2, 2, 2, 2, 1, 1, 2)  # data bytes after status 0x8n, 0x9n, ..., 0xEn
_SYSTEM_DATA = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}
_META_LEN = {0x00: (0, 2), 0x20: (1,), 0x21: (1,), 0x2F: (0,), 0x51: (3,), 0x54: (5,), 0x58: (4,), 0x59: (2,)}
_SMPTE_FPS = {24: 24.0, 25: 25.0, 29: 29.97, 30: 30.0}  # -hi byte of an SMPTE division -> frames/s
TICK_BUDGET = 500_000  # most ticks handed to pretty_midi (a float64 per tick, 4 MB, and temporaries: ~8x at peak)


def _show_bytes(b: bytes) -> str:
    """Bytes for a message: '"text"' when printable ASCII, else hex ("ff d8 ff e0")."""
    text = b.decode("ascii", "replace")
    return f'"{text}"' if text.isprintable() and "\ufffd" not in text else " ".join(f"{x:02x}" for x in b)


def _split_chunks(raw: bytes, limits: Limits) -> tuple[int, int, bytearray, list[tuple[int, int]]]:
    """(format, division, buffer, [(start, end) of each MTrk body]). Unknown chunks are skipped."""
    if raw[:4] != b"MThd":
        if raw[:4] == b"RIFF":
            raise MidiError("this is a RIFF file (RMID or WAV), not a Standard MIDI File; export it as .mid")
        raise MidiError(
            "not a MIDI file: a Standard MIDI File starts with 'MThd' "
            f"but this one starts with {_show_bytes(raw[:4])}. Accepted: .mid/.midi files, types 0, 1 and 2"
        )
    hlen = int.from_bytes(raw[4:8], "big")
    if len(raw) < 14 or hlen < 6:
        raise MidiError("the MIDI file is truncated: its header (MThd) is incomplete")
    fmt, division = int.from_bytes(raw[8:10], "big"), int.from_bytes(raw[12:14], "big")
    buf, spans, pos = bytearray(raw), [], 8 + hlen
    while pos + 8 <= len(raw):
        tag, size = raw[pos : pos + 4], int.from_bytes(raw[pos + 4 : pos + 8], "big")
        if tag == b"MTrk":
            if pos + 8 + size > len(raw):
                raise MidiError("the MIDI file is truncated: it ends in the middle of a track")
            spans.append((pos + 8, pos + 8 + size))
            if len(spans) > limits.max_tracks:
                raise MidiError(f"the file has more than {limits.max_tracks} tracks; the limit is {limits.max_tracks}")
        pos += 8 + size  # any other chunk (vendor data) is skipped, as the standard asks
    if not spans:
        if pos != len(raw):
            raise MidiError("the MIDI file is truncated: it ends before its first track")
        raise MidiError("the MIDI file has no tracks (zero MTrk chunks); nothing to play")
    return fmt, division, buf, spans


def _meta_ok(kind: int, data: bytes) -> bool:
    """Would mido decode this meta event into something sane? (tempo > 0, a real key, a meter > 0)"""
    if kind in _META_LEN and len(data) not in _META_LEN[kind]:
        return False
    if kind == 0x51:
        return int.from_bytes(data, "big") > 0
    if kind == 0x54:
        return data[0] >> 5 <= 3
    if kind == 0x58:
        return data[0] > 0 and data[1] <= 6  # numerator >= 1, denominator 1..64
    if kind == 0x59:
        return (data[0] <= 7 or data[0] >= 249) and data[1] <= 1  # -7..7 sharps, major/minor
    return True


def _vlq(buf: bytearray, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of a variable-length quantity that must end before ``end``."""
    value = 0
    while True:
        if pos >= end:
            raise MidiError("the MIDI file is corrupt: a track ends inside an event")
        b = buf[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, pos


def _scan_track(buf: bytearray, pos: int, end: int, budget: int, meta_budget: int,
                marks: tuple[array, array, array] | None = None) -> tuple[int, int]:  # fmt: skip
    """Walk one MTrk body ``buf[pos:end]`` event by event the way mido will: (events, meta
    events), stopping past either budget. Raises MidiError when an event is malformed.
    Meta events mido would choke on (tempo 0, 9 flats, meter 0/x) become text events in place.
    ``marks``: arrays that get each event's tick, start offset and 1 if it is a meta event.
    """
    n = n_meta = tick = 0
    status = None
    while pos < end:
        at = pos
        delta, pos = _vlq(buf, pos, end)
        tick += delta
        if pos >= end:
            raise MidiError("the MIDI file is corrupt: a track ends inside an event")
        st = buf[pos]
        if st < 0x80:  # running status: the previous status byte applies
            if status is None or status >= 0xF0:
                raise MidiError("the MIDI file is corrupt: running status without a channel message before it")
            st = status
        else:
            pos += 1
            if st != 0xFF:
                status = st
        if st == 0xFF or st in (0xF0, 0xF7):
            kind_at = pos
            n_meta += st == 0xFF
            length, pos = _vlq(buf, pos + (st == 0xFF), end)  # (meta type byte,) data length
            if st == 0xFF and buf[kind_at] in _META_LEN and pos + length <= end:
                if not _meta_ok(buf[kind_at], bytes(buf[pos : pos + length])):
                    buf[kind_at] = 0x01  # a text event of the same length: harmless to every reader
            pos += length
        elif st >= 0xF0:
            if st not in _SYSTEM_DATA:
                raise MidiError(f"the MIDI file is corrupt: undefined status byte 0x{st:02X}")
            pos += _SYSTEM_DATA[st]
        else:
            pos += _CHANNEL_DATA[(st >> 4) - 8]
        if pos > end:
            raise MidiError("the MIDI file is corrupt: an event runs past the end of its track")
        n += 1
        if marks is not None:
            marks[0].append(min(tick, 1 << 62))  # a corrupt delta time can pass 64 bits; retime refuses it
            marks[1].append(at)
            marks[2].append(st == 0xFF)
        if n > budget or n_meta > meta_budget:
            break
    return n, n_meta


def parse_mido(raw: bytes, limits: Limits) -> tuple[mido.MidiFile, int, int | None]:
    """Checked, cleaned bytes -> (mido file, raw 16-bit time division, cut tick or None).

    A file with more events than mido should build (``max_messages``, ``max_meta``) keeps those
    before the tick where the first limit is reached: the cut tick, for :func:`retime` to say so."""
    _, division, buf, spans = _split_chunks(raw, limits)
    # a track's events past either budget cannot move the cut (its own budget-th event is at or after it)
    marks = [(array("q"), array("q"), array("b")) for _ in spans]
    counts = [
        _scan_track(buf, start, end, limits.max_messages, limits.max_meta, m) for (start, end), m in zip(spans, marks)
    ]
    cut = None
    if sum(n for n, _ in counts) > limits.max_messages or sum(m for _, m in counts) > limits.max_meta:
        cut, spans = _cut_events(buf, spans, marks, limits)
    clean = b"MThd" + (6).to_bytes(4, "big") + struct.pack(">HHH", 1, len(spans), 480)
    clean += b"".join(b"MTrk" + (e - s).to_bytes(4, "big") + bytes(buf[s:e]) for s, e in spans)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mid = mido.MidiFile(file=io.BytesIO(clean), clip=True)
    except EOFError:
        raise MidiError("the MIDI file is truncated: it ends in the middle of a track") from None
    except (OSError, ValueError, KeyError, IndexError, KeySignatureError) as e:
        raise MidiError(f"the MIDI file is corrupt and cannot be parsed ({e})") from None
    # Read as type 1 (the header above): type 2 tracks are independent patterns, but pretty_midi
    # reads one timeline, so they are overlaid (documented). Type 0 with several tracks: the same.
    return mid, division, cut


def _cut_events(buf: bytearray, spans: list[tuple[int, int]], marks: list, limits: Limits):
    """(cut tick, track bodies ending before it): the first tick by which the file holds more than
    ``max_messages`` events or ``max_meta`` meta events (``marks``: each track's scanned events,
    see _scan_track); each body cut there gets a copy ending in an end-of-track event."""
    ticks = np.sort(np.concatenate([np.frombuffer(m[0], np.int64) for m in marks]))
    meta = np.sort(np.concatenate([np.frombuffer(m[0], np.int64)[np.frombuffer(m[2], np.int8) == 1] for m in marks]))
    cut = min(int(ticks[limits.max_messages]) if len(ticks) > limits.max_messages else ticks[-1] + 1,
              int(meta[limits.max_meta]) if len(meta) > limits.max_meta else ticks[-1] + 1)  # fmt: skip
    if cut <= 0:
        raise MidiError(
            f"the file has more than {limits.max_messages:,} MIDI events or {limits.max_meta:,} meta events "
            "(tempo, text, ...) at its very start; that is over the limit"
        )
    bodies = []
    for (start, end), (t, at, _) in zip(spans, marks):
        if not len(t) or t[-1] < cut:
            bodies.append((start, end))
            continue
        stop = at[int(np.searchsorted(np.frombuffer(t, np.int64), cut))]
        bodies.append((len(buf), len(buf) + stop - start + 4))
        buf += buf[start:stop] + b"\x00\xff\x2f\x00"
    return int(cut), bodies


def _tick_grid(division: int) -> tuple[int, int, int | None]:
    """(ticks per beat, tick multiplier, tempo to force or None) for a header's time division.

    SMPTE division (top bit set: -frames/s, ticks/frame) means absolute time, so it is
    rewritten as an equivalent beat grid at 120 bpm: ticks doubled, fps x ticks/frame per
    beat, one tempo event (29.97 fps: 500,501 us per beat) and the file's tempo events dropped.
    """
    if not division & 0x8000:
        if division == 0:
            raise MidiError("the MIDI file is corrupt: its time division is 0 ticks per beat")
        return division, 1, None
    fps_code, per_frame = 256 - (division >> 8), division & 0xFF
    if fps_code not in _SMPTE_FPS or per_frame == 0:
        raise MidiError(
            f"the MIDI file has SMPTE timing with {fps_code} frames/s and {per_frame} ticks/frame; "
            "expected 24, 25, 29.97 or 30 frames/s and at least 1 tick/frame"
        )
    nominal = 30 if fps_code == 29 else fps_code
    return nominal * per_frame, 2, round(500_000 * nominal / _SMPTE_FPS[fps_code])


def retime(mid: mido.MidiFile, division: int, limits: Limits, event_cut: int | None = None) -> str | None:
    """Check the content and put every track on one sane tick grid (in place): SMPTE -> beats,
    ticks rescaled to at most TICK_BUDGET. A file over the note, duration or event limit
    (``event_cut``: the file tick :func:`parse_mido` cut it at) keeps its beginning (notes still
    sounding end at the cut); returns what was cut, or None."""
    tpb, mult, forced_tempo = _tick_grid(division)
    n_drum = max_tick = 0
    note_ticks: list[int] = []
    timed: list[list[tuple[int, mido.Message]]] = []
    for track in mid.tracks:
        tick, rows = 0, []
        for msg in track:
            tick += msg.time * mult
            if msg.type == "set_tempo" and forced_tempo:
                continue
            if msg.type == "note_on" and msg.velocity > 0:
                note_ticks.append(tick)
                n_drum += msg.channel == 9
            rows.append((tick, msg))
        timed.append(rows)
        max_tick = max(max_tick, tick)
    n_notes = len(note_ticks)
    if max_tick > limits.max_beats * tpb:
        raise MidiError(
            f"the file's last event is at beat {max_tick // tpb:,} (over {limits.max_beats:,}); "
            "it has absurd delta times and is probably corrupt"
        )
    if n_notes == 0 and event_cut is not None:
        raise MidiError(
            f"the file's first {limits.max_messages:,} MIDI events hold no notes (only meta or control events); "
            "that is over the limit"
        )
    if n_notes == 0:
        raise MidiError("the MIDI file has no notes (only meta or control events); upload a file with notes")
    if n_notes == n_drum:
        raise MidiError("the MIDI file has only drum notes (channel 10); musiclab models continue pitched music")
    if forced_tempo:
        timed[0].insert(0, (0, mido.MetaMessage("set_tempo", tempo=forced_tempo, time=0)))
    cut = _check_tempo(timed[0], tpb, max_tick, limits)  # the tick where max_seconds is reached, or None
    if n_notes > limits.max_notes:
        by_notes = sorted(note_ticks)[limits.max_notes]
        cut = by_notes if cut is None else min(cut, by_notes)
    by_events = None if event_cut is None else event_cut * mult
    notice = None
    if by_events is not None and (cut is None or by_events < cut):
        cut = by_events
        limit, of = f"{limits.max_messages:,} MIDI events, {limits.max_meta:,} of them meta events", ""
    else:
        limit, of = f"{limits.max_notes:,} notes, {limits.max_seconds / 60:.0f} min", f" of {n_notes:,}"
    if cut is not None:
        timed = [_cut(rows, cut) for rows in timed]
        kept = sum(1 for rows in timed for _, m in rows if m.type == "note_on" and m.velocity > 0)
        seconds = _seconds_at(timed[0], tpb, cut)
        noun = "note" if (n_notes if of else kept) == 1 else "notes"
        notice = f"the file is over the limit ({limit}): kept its first {seconds / 60:.1f} min ({kept:,}{of} {noun})"
        max_tick = cut
    # a coarser grid when needed; even 1 tick per beat fits, as max_beats < TICK_BUDGET
    new_tpb = tpb if max_tick <= TICK_BUDGET else max(1, tpb * TICK_BUDGET // max_tick)
    for track, rows in zip(mid.tracks, timed):
        last = 0
        for tick, msg in rows:
            tick = (tick * new_tpb + tpb // 2) // tpb
            msg.time, last = tick - last, tick
        eot = [mido.MetaMessage("end_of_track", time=0)]  # pretty_midi fails on an empty track
        track[:] = [msg for _, msg in rows] or eot
    mid.ticks_per_beat = new_tpb
    return notice


def _cut(rows: list[tuple[int, mido.Message]], cut: int) -> list[tuple[int, mido.Message]]:
    """Events before tick ``cut``; notes still sounding there end at ``cut``."""
    out, sounding = [], {}
    for tick, msg in rows:
        if tick >= cut:
            break
        if msg.type == "note_on" and msg.velocity > 0:
            sounding[(msg.channel, msg.note)] = sounding.get((msg.channel, msg.note), 0) + 1
        elif msg.type in ("note_off", "note_on") and sounding.get((msg.channel, msg.note)):
            sounding[(msg.channel, msg.note)] -= 1
        out.append((tick, msg))
    for (ch, note), n in sounding.items():
        out += [(cut, mido.Message("note_off", channel=ch, note=note, velocity=0))] * n
    return out


def _seconds_at(rows: list[tuple[int, mido.Message]], tpb: int, at_tick: int) -> float:
    seconds, tick0, us = 0.0, 0, 500_000
    for tick, msg in rows:
        if tick > at_tick:
            break
        if msg.type == "set_tempo":
            seconds += (tick - tick0) * us / 1e6 / tpb
            tick0, us = tick, msg.tempo
    return seconds + (at_tick - tick0) * us / 1e6 / tpb


def _check_tempo(rows: list[tuple[int, mido.Message]], tpb: int, max_tick: int, limits: Limits) -> int | None:
    """Tempo in range (pretty_midi reads tempo from track 0 only); returns the tick at which the
    piece passes max_seconds, or None if it ends within them."""
    seconds, tick0, us = 0.0, 0, 500_000
    for tick, msg in rows:
        if msg.type == "set_tempo":
            if msg.tempo < 60e6 / limits.max_bpm:
                raise MidiError(
                    f"the file sets a tempo of {60e6 / msg.tempo:,.0f} bpm; the limit is {limits.max_bpm:g} bpm"
                )
            step = (tick - tick0) * us / 1e6 / tpb
            if seconds + step > limits.max_seconds:
                return tick0 + int((limits.max_seconds - seconds) * 1e6 * tpb / us)
            seconds += step
            tick0, us = tick, msg.tempo
    if seconds + (max_tick - tick0) * us / 1e6 / tpb > limits.max_seconds:
        return tick0 + int((limits.max_seconds - seconds) * 1e6 * tpb / us)
    return None
