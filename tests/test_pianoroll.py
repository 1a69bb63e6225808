"""Piano-roll codec and models: MIDI <-> frames against hand-built rolls, shapes, learning,
incremental == full, and generate() end to end with tiny saved models."""

from __future__ import annotations

import numpy as np
import pretty_midi
import pytest
import torch

from musiclab import generate
from musiclab.codecs import make_tokenizer
from musiclab.codecs.common import scale_pitch_classes
from musiclab.codecs.pianoroll import N_KEYS, PianoRollCodec, candidates, frames_to_notes, key_probs
from musiclab.generation.sampling import Sampling
from musiclab.models import build_model
from musiclab.serving.weights import load_model, model_names, read_card, save_weights
from musiclab.training.dataset import eval_windows, sample_windows

ARCHS = ["pianoroll-lstm", "pianoroll-nade"]
TINY = {"n_embd": 16, "hidden": 24, "block_size": 16}


def k(pitch: int) -> int:
    return pitch - 21


def midi(notes, tempo=120.0, resolution=480) -> pretty_midi.PrettyMIDI:
    """One piano track from (pitch, start beat, end beat) tuples; 120 bpm: a beat is 0.5 s."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo, resolution=resolution)
    inst = pretty_midi.Instrument(program=0)
    spb = 60.0 / tempo
    inst.notes = [pretty_midi.Note(90, p, s * spb, e * spb) for p, s, e in notes]
    pm.instruments.append(inst)
    return pm


def test_codec_frames_match_hand_built_roll():
    # 16th grid (4 frames per beat)
    pm = midi(
        [
            (60, 0, 1),  # C4 one beat: frames 0-3 ...
            (60, 1, 2),  # ... re-struck: pypianoroll clears frame 3, so the strike shows
            (64, 0, 0.5),  # E4 an eighth: frames 0-1
            (67, 2, 2.05),  # G4 shorter than a frame: stretched to one frame (8)
            (9, 0.25, 0.5),  # A-1 below the piano: moved up an octave to A0 (21)
            (115, 0.5, 1),  # G8 above the piano: moved down to G7 (103)
        ]
    )
    expected = np.zeros((9, N_KEYS), dtype=np.uint8)
    expected[0:3, k(60)] = 1
    expected[4:8, k(60)] = 1
    expected[0:2, k(64)] = 1
    expected[8, k(67)] = 1
    expected[1, k(21)] = 1
    expected[2:4, k(103)] = 1
    codec = PianoRollCodec()
    np.testing.assert_array_equal(codec.frames(pm), expected)
    enc = codec.encode(pm)  # the start frame first
    assert enc.shape == (10, N_KEYS) and enc.dtype == np.uint8
    np.testing.assert_array_equal(enc[0], 0)
    np.testing.assert_array_equal(enc[1:], expected)


def test_codec_round_trip_frames_midi_frames_and_tempo_map():
    codec = PianoRollCodec()
    pm = midi([(60, 0, 1), (60, 1, 2), (64, 0, 0.5), (72, 1.5, 3), (48, 0, 4)])
    frames = codec.frames(pm)
    back = codec.decode(frames, bpm=120.0)
    np.testing.assert_array_equal(codec.frames(back), frames)
    notes = sorted((n.pitch, round(n.start, 6), round(n.end, 6)) for n in back.instruments[0].notes)
    # one 16th = 0.125 s; the re-strike gap shortens the first C4 by one frame
    assert notes == [(48, 0.0, 2.0), (60, 0.0, 0.375), (60, 0.5, 1.0), (64, 0.0, 0.25), (72, 0.75, 1.5)]
    # frames follow beats, not seconds: at 60 bpm the same music gives the same frames
    slow = midi([(60, 0, 1), (60, 1, 2), (64, 0, 0.5), (72, 1.5, 3), (48, 0, 4)], tempo=60.0)
    np.testing.assert_array_equal(codec.frames(slow), frames)


def test_frames_to_notes_merges_runs_and_jsb_grid():
    f = np.zeros((6, N_KEYS), dtype=np.uint8)
    f[0:3, k(60)] = 1  # held three frames
    f[3:5, k(60)] = 1  # a re-strike without a gap looks like a hold
    f[1, k(67)] = f[4, k(67)] = 1  # two notes
    assert frames_to_notes(f) == [(0, 60, 5), (1, 67, 1), (4, 67, 1)]
    with pytest.raises(ValueError, match=r"expected frames of shape \(T, 88\), got \(6, 12\)"):
        frames_to_notes(np.zeros((6, 12)))
    jsb = PianoRollCodec.from_dict({"kind": "pianoroll", "steps_per_beat": 1})
    fr = jsb.frames(midi([(60, 0, 2), (64, 1, 2.4), (67, 2.4, 3)]))
    assert fr.shape == (3, N_KEYS)
    np.testing.assert_array_equal(np.flatnonzero(fr[:, k(60)]), [0, 1])
    np.testing.assert_array_equal(np.flatnonzero(fr[:, k(64)]), [1])
    np.testing.assert_array_equal(np.flatnonzero(fr[:, k(67)]), [2])  # onsets round to the beat, note-offs floor


def test_codec_dict_round_trip_and_errors():
    codec = make_tokenizer({"kind": "pianoroll", "steps_per_beat": 2})
    assert isinstance(codec, PianoRollCodec) and codec.vocab_size == 88
    assert PianoRollCodec.from_dict(codec.to_dict()).to_dict() == {"kind": "pianoroll", "steps_per_beat": 2}
    with pytest.raises(ValueError, match="steps_per_beat: expected an integer >= 1, got 0"):
        PianoRollCodec.from_dict({"kind": "pianoroll", "steps_per_beat": 0})


def test_key_probs_and_candidate_keys():
    logits = torch.tensor([[-4.0, -0.5, 0.0, 0.5, 4.0, -torch.inf]])
    p = key_probs(logits, Sampling())
    torch.testing.assert_close(p, torch.sigmoid(logits))
    assert p[0, -1] == 0  # masked key never on
    assert key_probs(logits, Sampling(temperature=0)).tolist() == [[0, 0, 0, 1, 1, 0]]
    torch.testing.assert_close(key_probs(logits, Sampling(temperature=2.0)), torch.sigmoid(logits / 2))
    # the penalty: a key held for 2 beats loses 2 ln r of logit
    held = torch.tensor([[0, 0, 2.0, 0, 0, 0]])
    p2 = key_probs(logits, Sampling(repetition_penalty=2.0), held)
    torch.testing.assert_close(p2[0, 2], torch.sigmoid(torch.tensor(-2 * np.log(2.0))).float())
    torch.testing.assert_close(p2[0, [0, 1, 3, 4]], p[0, [0, 1, 3, 4]])
    # p = .018 .378 .5 .622 .982 0 (total 2.5)
    assert candidates(p, Sampling()).tolist() == [[True] * 5 + [False]]
    assert candidates(p, Sampling(top_k=2)).tolist() == [[False, False, False, True, True, False]]
    # top_p 0.8: likeliest keys until 0.8 x 2.5 = 2.0 is reached: .982 + .622 + .5 = 2.104
    assert candidates(p, Sampling(top_p=0.8)).tolist() == [[False, False, True, True, True, False]]
    assert candidates(p, Sampling(top_p=0.5)).tolist() == [[False, False, False, True, True, False]]
    # min_p 0.3: p >= 0.3 x .982 = .295
    assert candidates(p, Sampling(min_p=0.3)).tolist() == [[False, True, True, True, True, False]]


def tiny(arch, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(arch, {**TINY, **kw})


def frames(n, t, seed=1, density=0.1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, t, N_KEYS, generator=g) < density).float()


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_loss_and_padding(arch):
    m = tiny(arch)
    x, y = frames(3, 16), frames(3, 16, seed=2)
    logits, loss = m(x, y)
    assert logits.shape == (3, 16, 88) and loss.shape == () and torch.isfinite(loss)
    # padded targets (-1) are ignored: the loss equals the loss over the real frames
    y_pad = torch.cat([y[:, :10], -torch.ones(3, 6, 88)], dim=1)
    logits_pad, loss_pad = m(x, y_pad)
    real = torch.nn.functional.binary_cross_entropy_with_logits(logits_pad[:, :10], y[:, :10])
    torch.testing.assert_close(loss_pad, real)
    with pytest.raises(ValueError, match=r"expected frames \(B, T, 88\), got \(3, 16\)"):
        m(torch.zeros(3, 16), torch.zeros(3, 16))


def test_nade_is_autoregressive_over_keys():
    m = tiny("pianoroll-nade").eval()
    x, y = frames(1, 4), frames(1, 4, seed=3, density=0.3)
    base = m(x, y)[0]
    for j in (0, 40, 86):
        y2 = y.clone()
        y2[0, 2, j] = 1 - y2[0, 2, j]
        out = m(x, y2)[0]
        torch.testing.assert_close(out[0, 2, : j + 1], base[0, 2, : j + 1])  # keys <= j do not see key j
        assert not torch.allclose(out[0, 2, j + 1 :], base[0, 2, j + 1 :])
        torch.testing.assert_close(out[0, [0, 1, 3]], base[0, [0, 1, 3]])  # other steps untouched
    with pytest.raises(ValueError, match="expected the target frames"):
        m(x)


@pytest.mark.parametrize("arch", ARCHS)
def test_overfits_a_tiny_batch(arch):
    m = tiny(arch, hidden=64)
    x = frames(2, 8, seed=4, density=0.05)
    y = torch.roll(x, -1, dims=1)  # memorise what comes next in two random rolls
    opt = torch.optim.Adam(m.parameters(), lr=2e-2)
    first = None
    for _ in range(200):
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert first > 0.6 and loss.item() < 0.03  # BCE per key: from chance (ln 2) to near 0


@pytest.mark.parametrize("arch", ARCHS)
def test_incremental_equals_full(arch):
    m = tiny(arch).eval()
    x, y = frames(2, 12, seed=5), frames(2, 12, seed=6)
    with torch.no_grad():
        full, _ = m(x, y)
        logits, st = m.prefill(x[:, :5])
        for t in range(5, 12):
            if arch == "pianoroll-nade":  # the carried h gives the same conditionals as forward
                torch.testing.assert_close(m.frame_logits(st[0], y[:, t - 1]), full[:, t - 1])
            else:
                torch.testing.assert_close(logits, full[:, t - 1])
            logits, st = m.step(x[:, t], st)


@pytest.mark.parametrize("arch", ARCHS)
def test_prompt_read_once_serves_every_row(arch):
    m = tiny(arch).eval()
    x, nxt = frames(1, 6, seed=5), frames(3, 2, seed=6)
    with torch.no_grad():
        ref, ref_st = m.prefill(x.repeat(3, 1, 1))
        got, st = m.prefill(x, rows=3)
        torch.testing.assert_close(got, ref)
        for t in range(2):
            (got, st), (ref, ref_st) = m.step(nxt[:, t], st), m.step(nxt[:, t], ref_st)
            torch.testing.assert_close(got, ref)
    assert not torch.allclose(got[0], got[1])


def test_windows_pad_frames_after_the_piece():
    a = np.zeros((6, N_KEYS), np.uint8)
    a[1:, 3] = 1
    x, y = sample_windows([a], 2, 8, True, np.random.default_rng(0))
    assert x.shape == y.shape == (2, 8, N_KEYS)
    np.testing.assert_array_equal(x[0, :5], a[:5])  # start frame first, padding after
    np.testing.assert_array_equal(y[0, :5], a[1:])
    assert (x[0, 5:] == 0).all() and (y[0, 5:] == -1).all()
    _, vy = eval_windows([a], 8, True)
    assert (vy[0, 5:] == -1).all() and (vy[0, :5] >= 0).all()


@pytest.fixture
def saved(tmp_path):
    """Both tiny untrained archs saved like shipped weights (piano grid: 4 frames a beat)."""
    for arch in ARCHS:
        save_weights(tiny(arch), tmp_path / arch, {"arch": arch, "tokenizer": {"kind": "pianoroll"}})
    return tmp_path


SEED = midi([(p, i * 0.5, i * 0.5 + 1) for i, p in enumerate([60, 64, 67, 72, 67, 64, 60, 55] * 2)])


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_takes_of_asked_length(saved, arch):
    m = load_model(arch, root=saved, device="cpu")
    kw = dict(seed_seconds=3.0, seconds=4.0, random_seed=11, temperature=1.0)
    takes = generate(m, SEED, variations=3, **kw)
    assert len(takes) == 3
    for take in takes:
        new = take.midi.instruments[-1].notes
        assert new and all(3.0 - 1e-6 <= n.start < n.end <= 7.0 + 1e-6 for n in new)
        assert max(n.end for n in new) == pytest.approx(7.0)  # 32 frames of 0.125 s
        assert take.info["tokens"] == 32
    # take i is the same alone as in a batch
    alone = generate(m, SEED, variations=1, **{**kw, "random_seed": 12})
    notes = lambda take: [(n.pitch, n.start, n.end) for n in take.midi.instruments[-1].notes]
    assert notes(alone[0]) == notes(takes[1])
    assert notes(takes[0]) != notes(takes[1])


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_key_lock_and_top_k(saved, arch):
    m = load_model(arch, root=saved, device="cpu")
    take = generate(m, SEED, seed_seconds=3.0, seconds=4.0, random_seed=3, key_lock=True, top_k=3)[0]
    new = take.midi.instruments[-1].notes
    assert new and {n.pitch % 12 for n in new} <= scale_pitch_classes(0, "major")  # the seed is in C major
    for t in np.arange(3.0, 7.0, 0.125) + 0.06:  # at most 3 keys sound in any frame
        assert sum(n.start <= t < n.end for n in new) <= 3


SHIPPED = [n for n in model_names() if read_card(n).get("arch", "").startswith("pianoroll")]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_pianoroll_weights_replay_their_golden_nll(name):
    loaded = load_model(name, device="cpu")
    golden, m = loaded.card["golden"], loaded.net
    fr = np.zeros((len(golden["frames"]), N_KEYS), np.float32)
    for t, keys in enumerate(golden["frames"]):
        fr[t, keys] = 1
    x = torch.from_numpy(fr).unsqueeze(0)
    with torch.no_grad():
        logits, _ = m(x[:, :-1], x[:, 1:])
    nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, x[:, 1:], reduction="sum").item()
    assert nll / (len(fr) - 1) == pytest.approx(golden["nll"], abs=1e-3)
    m = loaded.card["metrics"]
    assert m["valid_nll"] < 0.9 * m["baseline_nll"]  # beats the 1-gram by >= 10%


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_pianoroll_steps_equal_the_full_pass(name):
    """The shipped sizes step on oneDNN-prepacked gate kernels (lstm_step), 2 takes from one
    prompt: every step's prediction equals the full forward pass over the same frames."""
    m = load_model(name, device="cpu").net
    x = frames(1, 12, seed=8)
    nade = name.startswith("pianoroll-nade")
    with torch.inference_mode():
        full, _ = m(x, x) if nade else m(x)
        logits, st = m.prefill(x[:, :4], rows=2)
        for t in range(4, 12):
            got = m.frame_logits(st[0], x[:, t - 1].expand(2, -1)) if nade else logits
            torch.testing.assert_close(got, full[:, t - 1].expand(2, -1), atol=1e-4, rtol=1e-4)
            logits, st = m.step(x[:, t].expand(2, -1), st)
