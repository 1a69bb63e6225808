"""The chord model an accompaniment follows (editing/chordnet.py): trained by the CLI on songs laid
out as POP909's, shipped beside a model and read back strictly; the shipped one names the chords
of plain melodies in any key; a damaged file falls back to the rules and the take says why; the
bundled tune (lyrics and all) is accompanied in its lead sheet's chords and at POP909's pace."""

from __future__ import annotations

import bisect
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from conftest import ROOT, make_song_corpus, song

from musiclab.app.takes import chords_caption
from musiclab.codecs.barnote import MELODY
from musiclab.codecs.barnote_state import notes_from_pm
from musiclab.editing import chordnet
from musiclab.editing.accompany import accompany
from musiclab.editing.harmony import estimate_chords
from musiclab.editing.triads import TRIADS
from musiclab.midi.examples import list_examples
from musiclab.midi.io import load_midi
from musiclab.serving.weights import load_model, read_card

S = 16  # grid steps a bar at 4 positions a beat


def _bars(n: int) -> list[tuple[int, int]]:
    return [(k * S, (k + 1) * S) for k in range(n)]


def _arpeggios(chords: list[tuple[int, ...]], shift: int = 0) -> pretty_midi.PrettyMIDI:
    """A melody of one bar per chord, its tones a beat each (the last one an octave up)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(0, name="MELODY")
    for b, chord in enumerate(chords):
        for k, p in enumerate((*chord, chord[0] + 12)):
            inst.notes.append(pretty_midi.Note(90, p + shift, (4 * b + k) * 0.5, (4 * b + k + 1) * 0.5))
    pm.instruments.append(inst)
    return pm


@pytest.fixture(scope="module")
def shipped():
    model = load_model("flagship", device="cpu")
    net = chordnet.for_model(model)
    assert isinstance(net, chordnet.ChordNet), net
    return net


@pytest.mark.unit
def test_the_shipped_chord_model_names_the_chords_of_arpeggios_in_any_key(shipped):
    progression = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)] * 2  # C Am F G twice
    for shift, names in ((0, ["C", "Am", "F", "G"]), (8, ["Ab", "Fm", "Db", "Eb"]), (4, ["E", "C#m", "A", "B"])):
        h = estimate_chords(notes_from_pm(_arpeggios(progression, shift)), 4, _bars(8), shipped)
        assert h.by == "chord model" and h.estimated
        assert sum(a == b for a, b in zip(h.names, names * 2)) >= 7, (shift, h.names)


@pytest.mark.unit
def test_the_pull_is_as_sure_as_the_chord_model_of_each_pitch_class(shipped):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    tune = pretty_midi.Instrument(0, name="MELODY")  # C and E only: C major, or A minor, or E minor...
    tune.notes = [pretty_midi.Note(90, p, k * 0.5, (k + 1) * 0.5) for k, p in enumerate([60, 64] * 8)]
    pm.instruments.append(tune)
    h = estimate_chords(notes_from_pm(pm), 4, _bars(4), shipped)
    w = h.weights_at(np.arange(4 * S))  # (steps, 12)
    assert h.names == ["C"] * 4 and h.at(np.arange(4 * S))[:, [0, 4, 7]].all()  # the name: the likeliest triad
    assert (w[:, [0, 4]] > 0.95).all()  # the tones every likely chord holds are pulled hard...
    assert (w[:, 7] < 0.95).all() and (w[:, 7] > w[:, 9]).all()  # ...G less, A hardly: the melody leaves them open
    arps = estimate_chords(notes_from_pm(_arpeggios([(60, 64, 67), (57, 60, 64)])), 4, _bars(2), shipped)
    assert (arps.weights_at(np.arange(2 * S)) > 0.5).sum(1).tolist() == [3] * (2 * S)  # spelled out: sure of three


@pytest.mark.unit
def test_a_transposed_melody_gets_the_transposed_chords(shipped):
    pm = song(4, bars=8)
    pm.instruments = pm.instruments[:1]
    base = chordnet.triad_probs(shipped, notes_from_pm(pm), 4, _bars(8))
    for inst in pm.instruments:
        for n in inst.notes:
            n.pitch += 3
    up = chordnet.triad_probs(shipped, notes_from_pm(pm), 4, _bars(8))
    moved = [TRIADS.index(((r + 3) % 12, q)) for r, q in TRIADS]
    assert np.allclose(up[:, moved], base, atol=1e-5)  # the key turn makes it blind to transposition


@pytest.fixture(scope="module")
def trained(flagship_weights, tmp_path_factory):
    """A copy of the small flagship with a chord model trained and shipped by the CLI."""
    root = tmp_path_factory.mktemp("chords")
    shutil.copytree(flagship_weights / "flagship", root / "flagship")
    data = make_song_corpus(root / "corpus")
    cmd = [sys.executable, "-m", "musiclab", "train-chords", "--data", f"pop909={data['pop909']}",
           "--out", str(root / "flagship"), "--steps", "300"]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "shipped" in r.stdout and (root / "flagship" / chordnet.FILE).exists()
    return root


@pytest.mark.integration
def test_train_chords_ships_a_model_the_accompaniment_follows(trained):
    card = read_card("flagship", trained)["chords"]
    assert (
        card["songs"]["train"] >= 1
        and card["songs"]["dev"] == 0
        and card["songs"]["valid"] >= 1
        and card["valid_precision"] >= 0.9
    )
    model = load_model("flagship", root=trained, device="cpu")
    pm = song(9, bars=8)
    pm.instruments = pm.instruments[:1]  # C Am F G, as the training songs
    info = accompany(model, pm, 0, random_seed=1)[0].info
    assert info["chords_by"] == "chord model"
    assert sum(a == b for a, b in zip(info["chords"], ["C", "Am", "F", "G"] * 2)) >= 6, info["chords"]
    assert "estimated from the melody by the chord model" in chords_caption(info)


@pytest.mark.integration
def test_a_damaged_chord_model_falls_back_to_the_rules_and_says_why(trained, tmp_path):
    folder = tmp_path / "flagship"
    shutil.copytree(trained / "flagship", folder)
    raw = bytearray((folder / chordnet.FILE).read_bytes())
    raw[-64:] = bytes(64)  # the header still parses: only the SHA-256 tells
    (folder / chordnet.FILE).write_bytes(bytes(raw))
    model = load_model("flagship", root=tmp_path, device="cpu")  # the music model itself is fine
    pm = song(9, bars=4)
    pm.instruments = pm.instruments[:1]
    takes = accompany(model, pm, 0, random_seed=1)
    info = takes[0].info
    assert "SHA-256" in info["chords_by"] and takes[0].midi.instruments[-1].notes
    assert "(estimated from the melody by rule: chords.safetensors is damaged or replaced" in chords_caption(info)


@pytest.mark.unit
def test_a_chord_model_is_loaded_only_whole_hashed_and_of_its_shape(tmp_path):
    folder = tmp_path / "flagship"
    shutil.copytree(ROOT / "weights" / "flagship", folder, ignore=shutil.ignore_patterns("model.safetensors"))
    card = read_card("flagship")
    assert isinstance(chordnet.load(folder, card), chordnet.ChordNet)
    with pytest.raises(ValueError, match="ships no chord model"):
        chordnet.load(folder, {k: v for k, v in card.items() if k != "chords"})
    with pytest.raises(ValueError, match="SHA-256 differs"):  # a card that does not vouch for the file
        chordnet.load(folder, {**card, "chords": {**card["chords"], "sha256": None}})
    wide = {**card["chords"], "config": {**card["chords"]["config"], "n_in": 13}}
    with pytest.raises(ValueError, match="reads 13 numbers a half bar, musiclab gives 25"):
        chordnet.load(folder, {**card, "chords": wide})
    (folder / chordnet.FILE).unlink()
    with pytest.raises(ValueError, match="ships no chord model"):
        chordnet.load(folder, card)


@pytest.mark.unit
def test_a_span_without_melody_gets_no_chords_rather_than_invented_ones(shipped):
    pm = _arpeggios([(60, 64, 67), (57, 60, 64)])
    notes = notes_from_pm(pm)
    h = estimate_chords(notes, 4, [(4 * S, 5 * S), (5 * S, 6 * S)], shipped)  # bars after the melody's end
    assert h.by == "rules" and h.names == ["N", "N"] and not h.tones.any()
    empty = estimate_chords(notes_from_pm(_arpeggios([])), 4, _bars(2), shipped)
    assert empty.by == "rules" and empty.names == ["N", "N"]


def test_a_melody_file_with_lyrics_is_read_as_a_melody(shipped):
    """Song files carry lyrics; symusic reads them as a track of their own, which once shifted
    every track index by one: the melody came back empty and the chords were all "N"."""
    progression = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]  # C Am F G
    pm = _arpeggios(progression)
    pm.lyrics = [pretty_midi.Lyric(w, 0.5 * k) for k, w in enumerate("la la la la".split())]
    pm.text_events = [pretty_midi.Text("verse", 0.0)]
    take = accompany(load_model("flagship", device="cpu"), pm, 0, random_seed=0)[0]
    assert take.info["chords_by"] == "chord model"
    assert take.info["chords"] == ["C", "Am", "F", "G"], take.info["chords"]
    notes = lambda inst: [(n.start, n.end, n.pitch, n.velocity) for n in inst.notes]  # noqa: E731
    assert notes(take.midi.instruments[0]) == notes(pm.instruments[0])  # the melody, kept exactly


def _lead_sheet_chords(bars: int) -> list[tuple[float, set[int]]]:
    """(start, quarter notes; pitch classes) of the chords printed over Foster's tune, as played."""
    from music21 import corpus, harmony

    score = corpus.parse("leadSheet/fosterBrownHair.mxl").expandRepeats()
    out, at = [], 0.0
    for m in list(score.parts[0].getElementsByClass("Measure"))[:bars]:
        symbols = m.getElementsByClass(harmony.ChordSymbol)
        out += [(at + float(c.offset), {p.pitchClass for p in c.pitches}) for c in symbols]
        at += float(m.barDuration.quarterLength)
    return out


@pytest.mark.unit
def test_the_bundled_melody_is_accompanied_in_its_lead_sheets_chords():
    """The bundled tune alone (lyrics and all) gets an accompaniment whose notes are mostly tones
    of the chords printed in the lead sheet it comes from, though the chords are read from the tune."""
    pm = load_midi(list_examples()["Foster — Jeanie (melody)"])
    chords = _lead_sheet_chords(16)
    starts, shares = [c[0] for c in chords], []
    for seed in (0, 1):
        take = accompany(load_model("flagship", device="cpu"), pm, 0, random_seed=seed)[0]
        assert take.info["chords_by"] == "chord model"
        acc = take.midi.instruments[-1].notes
        at = [chords[max(bisect.bisect_right(starts, n.start / 0.5 + 1e-6) - 1, 0)][1] for n in acc]  # 120 bpm
        shares.append(np.mean([n.pitch % 12 in tones for n, tones in zip(acc, at)]))
    assert np.mean(shares) >= 0.6, shares  # 0.73 and 0.63 when written; the tune's own notes: 0.74


@pytest.mark.unit
def test_an_accompaniment_keeps_the_pace_predicted_for_its_melody(monkeypatch):
    """The bundled tune's takes play about as many notes as POP909's accompaniments of such a
    melody at such a tempo, nearer to it than the model alone, and a
    pace twice as busy makes them busier."""
    from musiclab.editing import accompany as acc
    from musiclab.editing.constrained import seconds_to_step

    pm = load_midi(list_examples()["Foster — Jeanie (melody)"])
    model = load_model("flagship", device="cpu")
    notes = pm.instruments[0].notes
    s0, s1 = (seconds_to_step(pm, t, 12) for t in (notes[0].start, notes[-1].end))  # the span accompanied
    want = acc.accompaniment_pace(notes_from_pm(pm, {0: MELODY}), 12, s0, s1, pm.get_tempo_changes()[1][0]).notes
    want *= s1 - s0

    def played() -> float:  # mean notes of eight takes (a take's count varies by ~15%)
        takes = [t for seed in (0, 100) for t in acc.accompany(model, pm, 0, variations=4, random_seed=seed)]
        return np.mean([len(t.midi.instruments[-1].notes) for t in takes])

    paced = played()
    a, b, c = acc.PACE_FIT
    monkeypatch.setattr(acc, "PACE_FIT", (a + np.log(2.0), b, c))
    busier = played()
    monkeypatch.setattr(acc, "accompaniment_pace", lambda *args: None)
    alone = played()
    assert abs(np.log(paced / want)) < min(0.2, abs(np.log(alone / want))), (paced, alone, want)
    assert busier > 1.3 * paced, (busier, paced)


@pytest.mark.unit
def test_training_targets_are_turned_with_the_melody(tmp_path):
    from musiclab.training.chords import read_song

    data = make_song_corpus(tmp_path / "corpus")
    folder = Path(data["pop909"]) / "000"
    pm = pretty_midi.PrettyMIDI(str(folder / "000.mid"))
    for inst in pm.instruments:
        for n in inst.notes:
            n.pitch += 3  # C Am F G -> Eb Cm Ab Bb
    pm.write(str(folder / "000.mid"))
    rows = (folder / "chord_midi.txt").read_text().splitlines()
    names = {"C:maj": "Eb:maj", "A:min": "C:min", "F:maj": "Ab:maj", "G:maj": "Bb:maj"}
    (folder / "chord_midi.txt").write_text("".join(f"{a}\t{b}\t{names[c]}\n" for a, b, c in map(str.split, rows)))
    sc = read_song(folder / "000.mid", "pop909/000/000.mid")
    assert chordnet.key_turn(sc.notes) == 3
    has = sc.chords.any(1)  # the pickup before the first downbeat has no chord
    named = [TRIADS[i] for i in sc.target[has].argmax(1)]
    changes = [t for k, t in enumerate(named) if k == 0 or t != named[k - 1]]
    assert changes[:4] == [(0, ""), (9, "m"), (5, ""), (7, "")]  # in C, as the turned melody
    assert np.flatnonzero(sc.chords[has][0]).tolist() == [3, 7, 10]  # the annotation itself is kept as written


@pytest.mark.integration
def test_train_chords_refuses_a_folder_that_is_not_a_model_and_missing_data(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "musiclab", "train-chords", *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)  # fmt: skip
    r = run("--data", f"pop909={tmp_path}", "--out", str(tmp_path))
    assert r.returncode == 2 and "is not a weights folder (no config.json)" in r.stderr, r.stderr
    r = run("--data", f"piano={tmp_path}", "--out", str(tmp_path))
    assert r.returncode == 2 and "train-chords reads POP909" in r.stderr, r.stderr


@pytest.mark.integration
def test_shipping_the_flagship_again_keeps_its_chord_model(trained, flagship_weights, tmp_path):
    from musiclab.training.export import export

    folder = tmp_path / "flagship"
    shutil.copytree(trained / "flagship", folder)
    before = read_card("flagship", trained)["chords"]
    export(flagship_weights.parent / "run", folder)  # train-flagship ships a finished run this way
    assert read_card("flagship", tmp_path)["chords"] == before
    assert "## Chord model (`chords.safetensors`)" in (folder / "README.md").read_text()
    assert chordnet.for_model(load_model("flagship", root=tmp_path, device="cpu")).__class__ is chordnet.ChordNet
