"""Fuzzing load_midi, the one door a user's file comes through.

Three sources of hostile bytes: real files (the bundled examples and small files made with
pretty_midi/mido) mutated and truncated; random bytes behind a valid header and chunk layout,
so the event reader sees garbage; and plain random bytes. Every case must either load or raise
MidiError, within CASE_SECONDS and CASE_BYTES of traced allocation (tracemalloc also sees
numpy's arrays). 3,000 cases in total, about a minute on a busy 2-core box.
"""

from __future__ import annotations

import collections
import io
import struct
import time
import tracemalloc
from pathlib import Path

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musiclab import MidiError, load_midi
from musiclab.midi.io import midi_to_bytes
from tests.conftest import make_midi

CASE_SECONDS = 2.0  # one case, wall clock (typical: 1-30 ms)
CASE_BYTES = 48e6  # traced peak of one case; pretty_midi's tick map is bounded at 4 MB by midi.checks.TICK_BUDGET
EXAMPLES = Path(__file__).resolve().parent.parent / "musiclab" / "examples"
COMMON = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _mido_bytes(mid: mido.MidiFile) -> bytes:
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def _rich_file(ticks_per_beat: int = 480, type_: int = 1) -> bytes:
    """Tempo, meter and key changes, program change, pitch bend, pedal, sysex, text, lyrics."""
    meta = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="conductor", time=0),
            mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
            mido.MetaMessage("key_signature", key="Eb", time=0),
            mido.MetaMessage("set_tempo", tempo=600000, time=0),
            mido.MetaMessage("set_tempo", tempo=450000, time=ticks_per_beat * 3),
            mido.MetaMessage("smpte_offset", time=0),
        ]
    )
    tr = mido.MidiTrack(
        [
            mido.Message("program_change", program=5, time=0),
            mido.Message("sysex", data=[0x7E, 0x7F, 0x09, 0x01], time=0),
            mido.MetaMessage("lyrics", text="la", time=0),
        ]
    )
    for i, p in enumerate([60, 64, 67, 72, 67, 64, 60, 55]):
        tr.append(mido.Message("note_on", note=p, velocity=70 + i, time=ticks_per_beat // 2))
        tr.append(mido.Message("control_change", control=64, value=127 if i % 2 else 0, time=0))
        tr.append(mido.Message("pitchwheel", pitch=(i - 4) * 500, time=ticks_per_beat // 4))
        tr.append(mido.Message("note_off", note=p, velocity=0, time=ticks_per_beat // 4))
    mid = mido.MidiFile(type=type_, ticks_per_beat=ticks_per_beat)
    mid.tracks += [meta, tr]
    return _mido_bytes(mid)


def _smpte_file() -> bytes:
    data = bytearray(_rich_file(type_=1))
    data[12:14] = bytes([0x100 - 25, 40])  # 25 frames/s x 40 ticks/frame
    return bytes(data)


CORPUS = [p.read_bytes() for p in sorted(EXAMPLES.glob("*.mid"))] + [
    midi_to_bytes(make_midi(seconds=6)),
    midi_to_bytes(make_midi(seconds=3, tempo=90, program=40)),
    _rich_file(),
    _rich_file(ticks_per_beat=96, type_=2),
    _rich_file(ticks_per_beat=32767),
    _smpte_file(),
]
OUTCOMES: collections.Counter = collections.Counter()
WORST = {"seconds": 0.0, "bytes": 0}  # the slowest case and the largest traced peak seen


def _check(data: bytes) -> None:
    """Load or MidiError, in bounded time and memory; record which."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    try:
        load_midi(data)
        OUTCOMES["loaded"] += 1
    except MidiError:
        OUTCOMES["MidiError"] += 1
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    WORST["seconds"], WORST["bytes"] = max(WORST["seconds"], seconds), max(WORST["bytes"], peak)
    assert seconds < CASE_SECONDS, f"{len(data)}-byte case took {seconds:.2f} s"
    assert peak < CASE_BYTES, f"{len(data)}-byte case allocated {peak / 1e6:.0f} MB"


MUTATION = st.tuples(
    st.sampled_from(["set", "insert", "delete", "truncate", "duplicate", "magic", "header"]),
    st.floats(0, 1, exclude_max=True),  # where, as a share of what follows the first track's header
    st.binary(min_size=1, max_size=8),
    st.integers(1, 64),
)
MAGIC = [b"\x00", b"\x7f", b"\x80", b"\xff", b"\xf0", b"\xf7", b"\xff\x51\x03", b"\xff\x58\x04", b"\xff\x59\x02",
         b"\xff\x2f\x00", b"\x8f\xff\xff\x7f", b"MTrk", b"\xff\xff\xff\xff"]  # fmt: skip


def _mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, blob, n in ops:
        if not b:
            break
        i = 22 + int(where * max(len(b) - 22, 0))  # "header": one of the 22 bytes before instead
        if op == "header":
            b[n % 22 : n % 22 + 1] = blob[:1]
        elif op == "set":
            b[i : i + len(blob)] = blob
        elif op == "insert":
            b[i:i] = blob
        elif op == "delete":
            del b[i : i + n]
        elif op == "truncate":
            del b[i:]
        elif op == "duplicate":
            b[i:i] = b[max(0, i - n) : i]
        else:
            m = MAGIC[n % len(MAGIC)]
            b[i : i + len(m)] = m
    return bytes(b)


@settings(COMMON, max_examples=1400)
@given(base=st.sampled_from(range(len(CORPUS))), ops=st.lists(MUTATION, min_size=1, max_size=6))
def test_mutated_real_files_load_or_midierror(base, ops):
    _check(_mutate(CORPUS[base], ops))


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


EVENT = st.one_of(
    st.tuples(st.integers(0x80, 0xEF), st.integers(0, 127), st.integers(0, 127)).map(
        lambda t: bytes(t[:2]) if 0xC0 <= t[0] < 0xE0 else bytes(t)
    ),  # any channel message
    st.tuples(st.integers(0, 127), st.integers(0, 127)).map(lambda t: bytes(t)),  # running status
    st.tuples(st.sampled_from([0x00, 0x01, 0x20, 0x21, 0x2F, 0x51, 0x54, 0x58, 0x59, 0x7F]), st.binary(max_size=6)).map(
        lambda t: bytes([0xFF, t[0]]) + _vlq(len(t[1])) + t[1]
    ),  # meta events with any data: tempo 0, 9 flats, meter 0/2^200, ...
    st.binary(max_size=8).map(lambda d: b"\xf0" + _vlq(len(d) + 1) + d + b"\xf7"),  # sysex
)
DELTA = st.one_of(st.integers(0, 480), st.integers(0, 0x0FFFFFFF))


@settings(COMMON, max_examples=800)
@given(
    division=st.one_of(st.sampled_from([1, 96, 480, 32767, 0xE728, 0xE250, 0xE350, 0xE801]), st.integers(1, 0xFFFF)),
    tracks=st.lists(st.lists(st.tuples(DELTA, EVENT), max_size=40), min_size=1, max_size=4),
)
def test_random_well_formed_events_load_or_midierror(division, tracks):
    """Every event is well formed, its values are not: the deep end (mido objects, retiming, pretty_midi)."""
    note = b"\x00\x90\x3c\x50\x60\x80\x3c\x00"
    data = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), division)
    for events in tracks:
        body = note + b"".join(_vlq(d) + e for d, e in events) + b"\x00\xff\x2f\x00"
        data += b"MTrk" + struct.pack(">I", len(body)) + body
    _check(data)


@settings(COMMON, max_examples=500)
@given(
    fmt=st.integers(0, 3),
    division=st.one_of(st.integers(0, 0xFFFF), st.sampled_from([96, 480, 0xE728, 0xE250, 0xE350])),
    tracks=st.lists(st.binary(max_size=600), min_size=1, max_size=3),
)
def test_random_events_in_valid_chunks_load_or_midierror(fmt, division, tracks):
    note = b"\x00\x90\x3c\x50\x60\x80\x3c\x00"  # a real note up front, so some cases get far
    data = b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division)
    data += b"".join(b"MTrk" + struct.pack(">I", len(note + t)) + note + t for t in tracks)
    _check(data)


@settings(COMMON, max_examples=300)
@given(data=st.one_of(st.binary(max_size=2048), st.binary(max_size=2048).map(lambda b: b"MThd" + b)))
def test_random_bytes_load_or_midierror(data):
    _check(data)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    total = sum(OUTCOMES.values())
    print(
        f"\nfuzzed load_midi: {total} cases, {OUTCOMES['loaded']} loaded, {OUTCOMES['MidiError']} MidiError, 0 other; "
        f"slowest {WORST['seconds'] * 1000:.0f} ms, largest traced peak {WORST['bytes'] / 1e6:.1f} MB"
    )


def test_fuzzing_reached_both_outcomes():
    """Runs after the fuzz tests (file order): mutations must keep some files loadable, or the
    deep end of the reader (mido, pretty_midi) was never exercised."""
    if sum(OUTCOMES.values()) < 2000:
        pytest.skip("run with the fuzz tests above")
    assert OUTCOMES["loaded"] > 400 and OUTCOMES["MidiError"] > 1000, OUTCOMES
