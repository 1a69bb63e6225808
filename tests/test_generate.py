"""generate() with the shipped LSTM: length, determinism, seed kept, controls, errors; audio."""

from __future__ import annotations

import math

import numpy as np
import pretty_midi
import pytest
import torch

from musiclab import MidiError, SettingsError, generate, list_models, load_model, pianoroll_figure, render_audio
from musiclab.codecs.common import scale_pitch_classes
from musiclab.midi.examples import list_examples
from musiclab.midi.io import load_midi
from musiclab.midi.synth import synth_status


@pytest.fixture(scope="module")
def model():
    return load_model("lstm")


@pytest.fixture(scope="module")
def seed():
    return load_midi(list_examples()["Chopin — Mazurka op. 6 no. 2 (piano)"])


def _new_notes(take):
    return take.midi.instruments[-1].notes


def test_take_is_seed_then_new_music_of_the_asked_length(model, seed):
    (take,) = generate(model, seed, seed_seconds=6.0, seconds=10.0, random_seed=3)
    seed_notes = [n for i in take.midi.instruments[:-1] for n in i.notes]
    want = [n for i in seed.instruments for n in i.notes if n.start < 6.0]
    assert len(seed_notes) == len(want)
    new = _new_notes(take)
    assert len(new) >= 5
    starts = np.array([n.start for n in new])
    assert starts.min() >= 6.0 - 1e-6  # onsets after the seed end
    assert max(n.end for n in new) <= 16.0 + 1e-6
    assert starts.max() >= 16.0 - 2.5  # the music reaches (close to) the asked end
    assert all(21 <= n.pitch <= 108 for n in new)


def test_same_random_seed_same_takes_batched_or_not(model, seed):
    kw = dict(seed_seconds=5.0, seconds=8.0, temperature=1.0, top_p=0.95)
    a = generate(model, seed, variations=3, random_seed=42, **kw)
    b = generate(model, seed, variations=3, random_seed=42, **kw)
    alone = generate(model, seed, variations=1, random_seed=43, **kw)[0]

    def notes(take):
        return [(n.pitch, round(n.start, 4), round(n.end, 4)) for n in _new_notes(take)]

    assert [notes(t) for t in a] == [notes(t) for t in b]
    assert notes(a[1]) == notes(alone)  # take i uses random_seed + i
    assert notes(a[0]) != notes(a[1])  # variations differ


def test_greedy_equals_top_k_1(model, seed):
    g = generate(model, seed, seed_seconds=5.0, seconds=6.0, temperature=0.0, random_seed=1)[0]
    k = generate(model, seed, seed_seconds=5.0, seconds=6.0, top_k=1, random_seed=99)[0]
    assert [(n.pitch, n.start) for n in _new_notes(g)] == [(n.pitch, n.start) for n in _new_notes(k)]


def test_key_lock_keeps_new_pitches_in_key(model, seed):
    take = generate(model, seed, seed_seconds=8.0, seconds=10.0, key_lock=True, temperature=1.5, random_seed=5)[0]
    key = take.info and model.codec.prompt(seed, 8.0).key
    allowed = scale_pitch_classes(*key)
    assert {n.pitch % 12 for n in _new_notes(take)} <= allowed


def test_progress_and_stop(model, seed):
    calls = []
    generate(model, seed, seed_seconds=4.0, seconds=8.0, random_seed=1, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] > 0
    assert all(d <= t for d, t in calls)
    n = [0]

    def stop():
        n[0] += 1
        return n[0] > 20

    take = generate(model, seed, seed_seconds=4.0, seconds=60.0, random_seed=1, stop=stop)[0]
    assert take.info["stopped_early"] and take.info["tokens"] == 20
    assert take.midi.get_end_time() < 64.0


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(seconds=0), "seconds"),
        (dict(seconds=float("nan")), "seconds"),
        (dict(seconds=10_000), "over the limit"),
        (dict(temperature=-1), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(top_k=-3), "top_k"),
        (dict(variations=9), "variations"),
        (dict(repetition_penalty=0.5), "repetition_penalty"),
    ],
)
def test_bad_settings_are_clear(model, seed, kw, words):
    args = dict(seed_seconds=4.0, seconds=5.0) | kw
    with pytest.raises(SettingsError, match=words):
        generate(model, seed, **args)


def test_bad_tracks(model, seed):
    with pytest.raises(MidiError, match="do not exist"):
        generate(model, seed, seed_seconds=4.0, seconds=5.0, tracks=[7])


def test_audio_is_real_fluidsynth_and_not_silent(model, seed):
    ok, why = synth_status()
    assert ok, why  # `make test` installs FluidSynth + a GM SoundFont
    take = generate(model, seed, seed_seconds=4.0, seconds=5.0, random_seed=2)[0]
    audio, sr = render_audio(take)
    assert sr == 44100 and audio.dtype == np.float32
    assert len(audio) / sr >= take.midi.get_end_time() - 0.1
    rms = np.sqrt(np.mean(audio[: int(sr * 8)] ** 2))
    assert rms > 0.01  # real sound, not silence
    spectrum = np.abs(np.fft.rfft(audio[: sr * 2]))
    assert (spectrum > spectrum.max() * 0.05).sum() > 50  # rich GM piano, not a few sine partials


def test_pianoroll_figure_colours_seed_and_continuation(model, seed):
    take = generate(model, seed, seed_seconds=4.0, seconds=5.0, random_seed=2)[0]
    fig = pianoroll_figure(take, seed_end=4.0)
    names = [t.name for t in fig.data]
    assert names == ["seed", "continuation"]
    assert fig.data[0].line.color != fig.data[1].line.color
    # SVG, not WebGL: a page holds only ~16 WebGL contexts, and a long session's rolls went blank
    assert [t.type for t in fig.data] == ["scatter", "scatter"]
    xs = [x for x in fig.data[1].x if x is not None]
    assert min(xs) >= 4.0 - 1e-6


def test_a_roll_starts_at_zero_like_its_audio_even_after_a_pickup():
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(80, 60 + k, 1.5 + k, 2.0 + k) for k in range(4)]  # silence, then a pickup
    pm.instruments.append(inst)
    lo, hi = pianoroll_figure(pm).layout.xaxis.range
    assert lo == 0 and 5.0 <= hi <= 5.1


def _repeat_rate(take, window: int = 4) -> float:
    """Share of new notes whose pitch is among the previous ``window`` new notes' pitches."""
    pitches = [n.pitch for n in sorted(_new_notes(take), key=lambda n: (n.start, n.pitch))]
    hits = sum(p in pitches[max(0, i - window) : i] for i, p in enumerate(pitches) if i)
    return hits / max(len(pitches) - 1, 1)


def test_repetition_penalty_lowers_repeat_rate(model, seed):
    kw = dict(seed_seconds=8.0, seconds=12.0, variations=4, random_seed=2024, temperature=0.8)
    plain = generate(model, seed, repetition_penalty=1.0, **kw)
    penal = generate(model, seed, repetition_penalty=3.0, **kw)
    a = np.mean([_repeat_rate(t) for t in plain])
    b = np.mean([_repeat_rate(t) for t in penal])
    assert b < a * 0.8, (a, b)


def test_min_p_and_top_p_narrow_the_choice(model, seed):
    """Nucleus/min-p cut the tail: with tiny top_p every take equals greedy."""
    g = generate(model, seed, seed_seconds=5.0, seconds=5.0, temperature=0.0, random_seed=1)[0]
    for kw in (dict(top_p=0.01), dict(min_p=0.999)):
        t = generate(model, seed, seed_seconds=5.0, seconds=5.0, random_seed=77, **kw)[0]
        assert [(n.pitch, n.start) for n in _new_notes(t)] == [(n.pitch, n.start) for n in _new_notes(g)]


def test_a_long_take_encodes_to_ogg_and_back(model, seed, tmp_path):
    """A 75 s take (seed + continuation) -> FluidSynth -> OGG for the browser -> decoded again.
    libsndfile's Vorbis encoder used to crash the whole server past 47.5 s of audio in one write,
    so the encoding runs in a child process here: a crash fails this test, not the suite."""
    import subprocess
    import sys

    take = generate(model, seed, seed_seconds=8.0, seconds=70.0, random_seed=5)[0]
    audio, sr = render_audio(take)
    assert len(audio) > 1 << 21  # past the old crash
    np.save(tmp_path / "audio.npy", audio)
    code = (
        "import numpy as np, soundfile as sf, io, sys; from musiclab.midi.synth import encode_audio; "
        f"a = np.load({str(tmp_path / 'audio.npy')!r}); "
        "ogg = encode_audio(a, 44100, 'OGG'); b, sr = sf.read(io.BytesIO(ogg), dtype='float32'); "
        "print(len(a), len(b), len(ogg))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"encoding crashed (exit {r.returncode}): {r.stderr[-500:]}"
    n_in, n_out, size = map(int, r.stdout.split())
    assert abs(n_out - n_in) < sr // 10 and size < len(audio)  # the whole take, compressed


def test_a_take_lasts_the_asked_length_even_if_it_ends_held_or_silent(seed):
    """Greedy pianoroll-lstm holds one note and then rests: the take (MIDI file, audio) still
    spans the seed cut + the asked seconds, and survives a round trip through MIDI bytes."""
    from musiclab.midi.io import midi_to_bytes

    take = generate(load_model("pianoroll-lstm"), seed, seed_seconds=4.0, seconds=12.0, temperature=0)[0]
    assert take.midi.get_end_time() == pytest.approx(16.0, abs=0.01)
    assert load_midi(midi_to_bytes(take.midi)).get_end_time() == pytest.approx(16.0, abs=0.01)


@pytest.mark.parametrize("name", [m["name"] for m in list_models() if m["status"] == "ok"])
def test_every_model_gives_take_i_the_same_alone_or_in_a_batch(name, seed):
    """Variations share one prompt read (prefill(x, rows)) and step as one batch; take i must
    still be exactly the take sampled alone with random_seed + i, for every shipped model."""
    m = load_model(name)
    kw = dict(seed_seconds=5.0, seconds=4.0, top_p=0.95)
    batch = generate(m, seed, variations=3, random_seed=7, **kw)
    alone = generate(m, seed, variations=1, random_seed=9, **kw)[0]

    def notes(take):
        return [(n.pitch, round(n.start, 4), round(n.end, 4)) for n in _new_notes(take)]

    assert notes(batch[2]) == notes(alone) and notes(alone)
    assert notes(batch[0]) != notes(batch[2])


def test_intra_op_threads_give_the_same_takes_and_are_restored(model, seed):
    """engine_threads: every core for a recurrent model alone, one when sharing, one for window
    models; generate(threads=...) gives the very same takes and leaves the caller's count as it was."""
    import torch

    from musiclab.generation.sampling import engine_threads

    assert engine_threads(model, alone=False) == 1 and engine_threads(load_model("bigru")) == 1
    assert engine_threads(model) >= 1
    before = torch.get_num_threads()
    kw = dict(seed_seconds=5.0, seconds=8.0, top_p=0.95, variations=2, random_seed=5)
    try:
        torch.set_num_threads(3)  # the caller's count, neither 1 nor 2
        one = generate(model, seed, threads=1, **kw)
        assert torch.get_num_threads() == 3
        asked = []
        two = generate(model, seed, threads=lambda: asked.append(1) or 2, **kw)  # re-asked as tokens come
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)

    def notes(take):
        return [(n.pitch, round(n.start, 4), round(n.end, 4)) for n in _new_notes(take)]

    assert [notes(t) for t in one] == [notes(t) for t in two] and notes(one[0])
    assert len(asked) >= 3


def test_musiclab_threads_wins_over_the_policy(model, monkeypatch):
    from musiclab.generation.sampling import engine_threads

    monkeypatch.setenv("MUSICLAB_THREADS", "3")
    assert engine_threads(model, alone=False) == 3 and engine_threads(load_model("bigru")) == 3


@pytest.mark.parametrize("scale, top_p", [(4.0, 0.9), (0.05, 0.9), (1.0, 0.999), (3.0, 0.05)])
def test_top_p_keeps_the_smallest_set_reaching_the_mass(scale, top_p):
    """The nucleus from sorting only the likelier ids equals the definition (sort every id, keep
    the smallest prefix whose mass reaches top_p), for peaked and flat rows, with masked ids, and
    for a row whose ids above the first cut hold less than top_p (a long tail of unlikely ids)."""
    from musiclab.generation.sampling import Sampling, filter_row

    g = torch.Generator().manual_seed(7)
    logits = torch.randn(4, 721, generator=g) * scale
    logits[1, :300] = -math.inf
    logits[2] = math.log(0.4 / 720) + torch.linspace(-0.01, 0.01, 721)  # each under a thousandth of the best...
    logits[2, 5] = math.log(0.6)  # ...which holds less than top_p alone, unless top_p is small
    probs = torch.softmax(logits, -1)
    sp, idx = probs.sort(-1, descending=True)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(1, idx, sp.cumsum(-1) - sp <= top_p)
    got = torch.from_numpy(np.stack([filter_row(row, Sampling(top_p=top_p)) for row in logits.numpy()])).float()
    assert torch.equal(got > 0, keep)
    assert torch.allclose(got, torch.where(keep, probs, 0) / torch.where(keep, probs, 0).sum(-1, keepdim=True))


def test_kind_odds_are_each_rows_softmax_mass_per_kind_whatever_its_batch_mates():
    """The flagship draws the kind of token first: each kind's odds are its share of the row's
    softmax mass, a masked kind 0, and a row's odds do not change with the rows beside it."""
    from musiclab.codecs.barnote_state import kind_odds

    kinds = ((3, 9), (1, 3), (0, 1))
    x = np.log(np.array([[1.0, 2.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]]))  # masses 1 | 3 | 5 over 9
    assert np.allclose(kind_odds(x, kinds), [[5 / 9, 3 / 9, 1 / 9]])
    x[0, 1:3] = -math.inf  # positions masked
    assert np.allclose(kind_odds(x, kinds), [[5 / 6, 0.0, 1 / 6]])
    rows = np.random.default_rng(0).normal(0, 4, (4, 4481))
    rows[2, :81] = -math.inf
    wide = ((81, 4481), (33, 81), (0, 33))
    assert all(np.array_equal(kind_odds(rows[b : b + 1], wide)[0], kind_odds(rows, wide)[b]) for b in range(4))


def test_sample_row_draws_what_filter_row_then_draw_row_would():
    """The sampler's one-row path (kept ids only) gives the very ids of filtering the whole row and
    drawing from it, for every setting, and never a masked id."""
    from musiclab.generation.sampling import Sampling, draw_row, filter_row, sample_row

    rng = np.random.default_rng(3)
    settings = [Sampling(0.9, 0, 0.95), Sampling(1.0, 40, 1.0), Sampling(1.3, 0, 0.5, 0.05), Sampling(0.0)]
    for i in range(200):
        x = rng.normal(0, 3, 700)
        x[rng.random(700) < 0.5] = -math.inf
        s = settings[i % 4]
        a, b = torch.Generator().manual_seed(i), torch.Generator().manual_seed(i)
        got = sample_row(x, s, a)
        assert got == draw_row(filter_row(x, s), b) and np.isfinite(x[got])


def test_edited_tracks_get_their_own_colour_and_a_span_is_shaded():
    import pretty_midi as pm_
    from conftest import make_midi

    from musiclab.midi.figure import MELODY_COLOUR, NEW_COLOUR, SPAN_COLOUR, TRACK_COLOURS

    pm = make_midi(seconds=6)
    inf = pm_.Instrument(0, name="musiclab infill")
    inf.notes = [pm_.Note(80, 64, 2.0, 2.5), pm_.Note(80, 67, 2.5, 3.0)]
    acc = pm_.Instrument(0, name="musiclab accompaniment")
    acc.notes = [pm_.Note(60, 48, 0.0, 2.0)]
    pm.instruments += [inf, acc]
    fig = pianoroll_figure(pm, span=(2.0, 3.0), selectable=True)
    by_name = {t.name: t for t in fig.data}
    assert by_name["infill"].line.color == TRACK_COLOURS["musiclab infill"][1]
    assert by_name["accompaniment"].line.color == TRACK_COLOURS["musiclab accompaniment"][1]
    assert by_name["notes"].line.color == NEW_COLOUR
    assert [x for x in by_name["infill"].x if x is not None] == [2.0, 2.5, 2.5, 3.0]
    onsets = by_name["onsets"]
    assert onsets.mode == "markers" and len(onsets.x) == sum(len(i.notes) for i in pm.instruments)
    assert fig.layout.dragmode == "select"
    (rect,) = fig.layout.shapes
    assert (rect.x0, rect.x1, rect.fillcolor) == (2.0, 3.0, SPAN_COLOUR)
    tune = pianoroll_figure(pm, melody=0)  # the seed's own track, picked as a melody
    assert {t.name: t.line.color for t in tune.data}["melody"] == MELODY_COLOUR and "notes" not in {
        t.name for t in tune.data
    }
    assert pianoroll_figure(pm).layout.dragmode == "zoom" and "onsets" not in {
        t.name for t in pianoroll_figure(pm).data
    }
