"""load_midi on good files of every kind and on broken ones made by code."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import mido
import pytest

from musiclab import MidiError, load_midi
from musiclab.midi.io import LIMITS, Limits, load_midi_with_notice, midi_to_bytes, seed_excerpt, time_window
from tests.conftest import make_midi


def _mido_bytes(mid: mido.MidiFile) -> bytes:
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def _track(notes=((60, 480),), channel=0, tempo=None):
    tr = mido.MidiTrack()
    if tempo:
        tr.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    for pitch, dur in notes:
        tr.append(mido.Message("note_on", note=pitch, velocity=80, channel=channel, time=0))
        tr.append(mido.Message("note_off", note=pitch, velocity=0, channel=channel, time=dur))
    return tr


def test_loads_pretty_midi_file_bytes_and_path(tmp_path):
    pm = make_midi(seconds=6)
    data = midi_to_bytes(pm)
    p = tmp_path / "a.mid"
    p.write_bytes(data)
    for src in (data, p, str(p)):
        got = load_midi(src)
        assert sum(len(i.notes) for i in got.instruments) == len(pm.instruments[0].notes)
        assert abs(got.get_end_time() - pm.get_end_time()) < 0.01


@pytest.mark.parametrize("resolution", [24, 96, 480, 960, 15360])
def test_any_resolution(resolution):
    mid = mido.MidiFile(type=0, ticks_per_beat=resolution)
    mid.tracks.append(_track([(60, resolution), (64, resolution * 2)]))
    pm = load_midi(_mido_bytes(mid))
    notes = pm.instruments[0].notes
    assert [n.pitch for n in notes] == [60, 64]
    assert notes[1].end == pytest.approx(1.5, abs=1e-3)  # 3 beats at 120 bpm


def test_type_1_with_tempo_and_meter_changes():
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0))
    meta.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    meta.append(mido.MetaMessage("set_tempo", tempo=1000000, time=960))  # 60 bpm after 2 beats
    mid.tracks += [meta, _track([(60, 960), (62, 480)])]
    pm = load_midi(_mido_bytes(mid))
    n = pm.instruments[0].notes
    assert n[0].end == pytest.approx(1.0, abs=1e-3)
    assert n[1].end == pytest.approx(2.0, abs=1e-3)  # one beat at 60 bpm
    assert pm.time_signature_changes[0].numerator == 3


def test_type_2_tracks_are_overlaid():
    mid = mido.MidiFile(type=2, ticks_per_beat=480)
    mid.tracks += [_track([(60, 480)]), _track([(67, 480)], channel=1)]
    pm = load_midi(_mido_bytes(mid))
    assert sorted(n.pitch for i in pm.instruments for n in i.notes) == [60, 67]


def test_multitrack_with_drums_keeps_drums_but_seed_uses_pitched():
    pm = make_midi(seconds=4)
    pm.instruments.append(make_midi(seconds=4, drums=True).instruments[0])
    got = load_midi(midi_to_bytes(pm))
    assert any(i.is_drum for i in got.instruments)
    ex = seed_excerpt(got, 2.0)
    assert not any(i.is_drum for i in ex.instruments)
    assert max(n.start for i in ex.instruments for n in i.notes) < 2.0


GOOD = midi_to_bytes(make_midi(seconds=8))


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"hello, this is not MIDI at all", "not a MIDI file"),
        (b"RIFF\x00\x00\x00\x00RMIDdata", "RIFF"),
        (GOOD[: len(GOOD) // 2], "truncated"),
        (GOOD[:20], "truncated"),
        (b"MThd" + struct.pack(">IHHH", 6, 1, 0, 480), "no tracks"),
    ],
    ids=["empty", "wrong-magic", "riff", "truncated-half", "truncated-header", "zero-tracks"],
)
def test_broken_files_raise_specific_midierror(data, words):
    with pytest.raises(MidiError, match=words):
        load_midi(data)


def test_huge_delta_times_rejected_fast():
    tr = mido.MidiTrack()
    for _ in range(20):
        tr.append(mido.MetaMessage("text", text="x", time=0x0FFFFFFF))  # the largest delta a VLQ allows
    tr.append(mido.Message("note_on", note=60, velocity=80, time=0))
    tr.append(mido.Message("note_off", note=60, velocity=0, time=480))
    mid = mido.MidiFile(type=0)
    mid.tracks.append(tr)
    with pytest.raises(MidiError, match="delta times"):
        load_midi(_mido_bytes(mid))


def test_no_notes_drums_only_and_limits():
    meta_only = mido.MidiFile(type=0)
    meta_only.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)]))
    with pytest.raises(MidiError, match="no notes"):
        load_midi(_mido_bytes(meta_only))
    with pytest.raises(MidiError, match="drum"):
        load_midi(midi_to_bytes(make_midi(seconds=4, drums=True)))
    with pytest.raises(MidiError, match="limit is 0.0 MB"):
        load_midi(GOOD, Limits(max_bytes=100))
    # over the note or duration limit: the beginning is kept, and the caller is told
    with pytest.warns(RuntimeWarning, match=r"kept its first .* \(10 of \d+ notes\)"):
        pm = load_midi(GOOD, Limits(max_notes=10))
    assert sum(len(i.notes) for i in pm.instruments) == 10
    pm, notice = load_midi_with_notice(GOOD, Limits(max_seconds=2))
    assert "kept its first 0.0 min" in notice and pm.get_end_time() <= 2.0 + 1e-6
    assert all(n.start < 2.0 for i in pm.instruments for n in i.notes)


def test_path_errors_are_midierrors(tmp_path):
    with pytest.raises(MidiError, match="cannot read"):
        load_midi(tmp_path / "missing.mid")


def test_seed_excerpt_errors():
    pm = make_midi(seconds=4)
    with pytest.raises(MidiError, match="do not exist"):
        seed_excerpt(pm, 2.0, tracks=[5])
    with pytest.raises(MidiError, match="positive"):
        seed_excerpt(pm, float("nan"))


def test_seed_excerpt_keeps_the_tempo_map():
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))  # 120 bpm for 4 beats (2 s)
    meta.append(mido.MetaMessage("set_tempo", tempo=1000000, time=1920))  # then 60 bpm
    mid.tracks += [meta, _track([(60, 480)] * 8)]
    pm = load_midi(_mido_bytes(mid))
    ex = seed_excerpt(pm, 5.0)
    # beat 6 is at 2 s + 2 x 1 s = 4 s in the source and must stay there in the excerpt
    assert ex.time_to_tick(4.0) == pm.time_to_tick(4.0) == 6 * 480
    assert len(ex.get_tempo_changes()[0]) == 2


def test_a_long_real_album_keeps_its_first_60000_notes():
    album = Path(__file__).resolve().parent / "data" / "album.mid"  # 21 tracks, 37 min, 66,000+ notes
    raw = album.read_bytes()
    assert len(raw) <= LIMITS.max_bytes
    with pytest.warns(RuntimeWarning, match="kept its first"):
        pm = load_midi(raw)
    kept = sum(len(i.notes) for i in pm.instruments)
    assert 59_000 < kept <= LIMITS.max_notes and len(pm.instruments) >= 20
    _, notice = load_midi_with_notice(raw)
    total = int(re.search(r"of ([\d,]+) notes", notice).group(1).replace(",", ""))
    assert total > 66_000 and f"({kept:,} of {total:,} notes)" in notice
    assert pm.get_end_time() < 37 * 60  # the beginning, not all of it


def test_a_file_over_the_event_limit_keeps_its_beginning():
    """The album played twice (over 250,000 MIDI events, once refused) loads its first 60,000
    notes; a performance whose pedal and controller data pass the event limit first is cut
    where they do, with a notice naming that limit."""
    album = mido.MidiFile(Path(__file__).resolve().parent / "data" / "album.mid")
    for track in album.tracks:  # each track again after its end-of-track
        body = [m for m in track if not m.is_meta or m.type != "end_of_track"]
        track[:] = body + [m.copy() for m in body] + [mido.MetaMessage("end_of_track")]
    buf = io.BytesIO()
    album.save(file=buf)
    raw = buf.getvalue()
    assert len(raw) <= LIMITS.max_bytes and sum(len(t) for t in album.tracks) > LIMITS.max_messages
    pm, notice = load_midi_with_notice(raw)
    assert sum(len(i.notes) for i in pm.instruments) > 59_000 and "60,000 notes" in notice

    perf = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    for i in range(2_000):  # a note a beat, under 150 controller events each (a dense pedal/expression curve)
        track.append(mido.Message("note_on", note=48 + i % 24, velocity=70, time=0))
        track += [mido.Message("control_change", control=11, value=j % 128, time=3) for j in range(150)]
        track.append(mido.Message("note_off", note=48 + i % 24, velocity=0, time=30))
    perf.tracks.append(track)
    buf = io.BytesIO()
    perf.save(file=buf)
    pm, notice = load_midi_with_notice(buf.getvalue())
    n = len(pm.instruments[0].notes)
    assert "250,000 MIDI events" in notice and f"({n:,} notes)" in notice
    assert 1_600 < n < 1_660  # 152 events a note: the cut falls at note 1,645
    assert [nt.pitch for nt in pm.instruments[0].notes[:30]] == [48 + i % 24 for i in range(30)]


@pytest.mark.parametrize("up_at, want", [(6.0, [(0, 0.0)]), (15.0, [(127, 0.0), (0, 5.0)])])
def test_a_time_window_moves_its_notes_to_zero_with_the_pedal_as_it_stands(up_at, want):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(80, 60 + i, float(i), i + 3.0) for i in range(25)]
    inst.control_changes = [pretty_midi.ControlChange(64, 127, 5.0), pretty_midi.ControlChange(64, 0, up_at)]
    pm.instruments.append(inst)
    out = load_midi(midi_to_bytes(time_window(pm, 10.0, 20.0)))  # as the player gets it
    notes = out.instruments[0].notes
    assert [(n.pitch, round(n.start, 3)) for n in notes] == [(70 + i, float(i)) for i in range(10)]
    assert max(n.end for n in notes) == pytest.approx(10.0, abs=1e-3)  # ends clipped to the window
    assert [(c.value, round(c.time, 3)) for c in out.instruments[0].control_changes] == want
