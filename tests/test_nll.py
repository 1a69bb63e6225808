"""Held-out bits per note (evaluation/nll.py): windows score every token once, and the parts add up."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import song

from musiclab.evaluation.nll import bits_per_note, piece_ids, token_bits
from musiclab.serving.weights import load_model


@pytest.fixture(scope="module")
def tiny(flagship_weights):
    return load_model("flagship", root=flagship_weights, device="cpu")


def test_one_window_gives_the_plain_cross_entropy(tiny):
    ids = piece_ids(tiny.codec, song(3, bars=4))
    assert len(ids) <= tiny.net.get_block_size()
    bits, _ = token_bits(tiny.net.eval(), ids)
    with torch.no_grad():
        logits, _ = tiny.net(torch.as_tensor(ids[:-1])[None])
    want = F.cross_entropy(logits[0].float(), torch.as_tensor(ids[1:]), reduction="none").numpy() / math.log(2)
    np.testing.assert_allclose(bits, want, rtol=1e-4, atol=1e-4)


def test_a_long_piece_scores_every_token_once_with_context(tiny):
    ids = piece_ids(tiny.codec, song(4, bars=24))
    L = tiny.net.get_block_size()
    assert len(ids) > 2 * L
    bits, pitch_bits = token_bits(tiny.net.eval(), ids, (tiny.codec.note_base, tiny.codec.n_dur * tiny.codec.n_vel))
    assert bits.shape == (len(ids) - 1,) and np.all(bits > 0)
    h = L // 2  # the second window starts half a context in and scores from a whole context in
    with torch.no_grad():
        logits, _ = tiny.net(torch.as_tensor(ids[h : h + L])[None])
    second = F.cross_entropy(logits[0].float(), torch.as_tensor(ids[h + 1 : h + L + 1]), reduction="none") / math.log(2)
    np.testing.assert_allclose(bits[L : h + L], second[h:].numpy(), rtol=1e-4, atol=1e-4)
    note = tiny.codec.pitch_of[ids[1:]] >= 0
    assert np.all(pitch_bits[~note] == 0) and np.all(pitch_bits[note] > 0)
    assert np.all(pitch_bits[note] <= bits[note] + 1e-6)  # a pitch is likelier than any one note on it


def test_the_kinds_add_up_to_the_total(tiny):
    out = bits_per_note(tiny, [song(5), song(6)])
    assert out["pieces"] == 2 and out["notes"] > 0
    assert set(out["by_kind"]) >= {"bar", "position", "pitch", "velocity+duration"}
    assert sum(out["by_kind"].values()) == pytest.approx(out["bits_per_note"], abs=0.01)


def test_remi_kinds_are_its_event_types():
    remi = load_model("transformer-remi", device="cpu")
    out = bits_per_note(remi, [song(5)])
    assert set(out["by_kind"]) >= {"bar", "position", "pitch", "velocity", "duration"}
    assert sum(out["by_kind"].values()) == pytest.approx(out["bits_per_note"], abs=0.01)


def test_bench_nll_compares_tokenizations_on_held_out_piano_pieces(flagship_weights, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from conftest import ROOT, make_song_corpus

    from musiclab.training.dataset import split_of

    data = make_song_corpus(tmp_path)
    held_out = [
        p
        for p in (tmp_path / "piano").rglob("*.mid")
        if split_of(p.relative_to(tmp_path / "piano").as_posix()) == "valid"
    ]
    assert held_out  # the fixture corpus has some
    env = {**os.environ, "MUSICLAB_WEIGHTS": str(flagship_weights)}
    r = subprocess.run([sys.executable, "-m", "musiclab", "bench", "nll", "--data", f"piano={data['piano']}",
                        "--pieces", "1", "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["model"] for x in rows] == ["transformer-remi", "flagship"] and all(x["pieces"] == 1 for x in rows)
    assert all(x["bits_per_note"] > 0 and sum(x["by_kind"].values()) == pytest.approx(x["bits_per_note"], abs=0.01)
               for x in rows)  # fmt: skip
