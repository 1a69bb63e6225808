"""JSB Chorales benchmark: split loading, the paper's metric (1-gram = 10.95 nats/step on
valid), model scoring on whole pieces, the train-folder format, and the shipped JSB weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclab.evaluation.jsb import JSB_DIR, evaluate_jsb, jsb_models, load_split, model_result, unigram_result
from musiclab.models import build_model
from musiclab.serving.weights import WEIGHTS_DIR, load_model, read_card, save_weights
from musiclab.training.dataset import build_corpus


@pytest.fixture(scope="module")
def jsb_dir() -> Path:
    return JSB_DIR  # shipped in the package: a clone with nothing beside it has it


def test_load_split_builds_the_roll(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps([[[60, 64, 67], [], [21, 108]], [[48]]]))
    a, b = load_split(path)
    assert a.shape == (3, 88) and b.shape == (1, 88) and a.dtype == np.uint8
    assert np.flatnonzero(a[0]).tolist() == [39, 43, 46] and a[1].sum() == 0
    assert np.flatnonzero(a[2]).tolist() == [0, 87] and np.flatnonzero(b[0]).tolist() == [27]
    path.write_text(json.dumps([[[60, 120]]]))
    with pytest.raises(ValueError, match="piece 0 step 0: expected MIDI pitches 21-108, got 120"):
        load_split(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match="expected a JSON list of pieces, got dict"):
        load_split(path)


def test_unigram_baseline_reproduces_10_95_on_valid(jsb_dir):
    res = evaluate_jsb(jsb_dir / "valid.json", model_names=[])
    (row,) = res["results"]
    assert row["model"] == "note-1-gram" and row["steps"] == 4602
    assert row["nll"] == pytest.approx(10.95, abs=0.01)
    # and a uniform 0.5 Bernoulli is 88 ln 2 = 61.00, the paper's "Random"
    half = [np.full((1, 88), 0.5)]  # frequencies 0.5 on every key
    assert unigram_result(half, load_split(jsb_dir / "valid.json"))["nll"] == pytest.approx(88 * math.log(2))


def test_model_scores_whole_pieces_from_a_start_frame(jsb_dir):
    pieces = load_split(jsb_dir / "valid.json")[:3]
    torch.manual_seed(0)
    m = build_model("pianoroll-lstm", {"n_embd": 8, "hidden": 16}).eval()
    row = model_result(m, pieces, "tiny")
    # by hand: each piece from the zero frame, BCE summed over keys, averaged over steps
    nll, steps = 0.0, 0
    for p in pieces:
        x = torch.cat([torch.zeros(1, 88), torch.from_numpy(p[:-1]).float()]).unsqueeze(0)
        logits = m(x)[0][0]
        nll += torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.from_numpy(p).float(), reduction="sum"
        )
        steps += len(p)
    assert row["steps"] == steps and row["nll"] == pytest.approx(nll.item() / steps, rel=1e-5)
    assert 0 <= row["accuracy"] <= 1


def test_evaluate_finds_jsb_trained_models_only(jsb_dir, tmp_path):
    torch.manual_seed(0)
    for name, data in (("tiny-jsb", "JSB Chorales split: train.json / valid.json"), ("tiny-piano", "piano")):
        m = build_model("pianoroll-nade", {"n_embd": 8, "hidden": 16, "made_hidden": 20})
        card = {"arch": "pianoroll-nade", "tokenizer": {"kind": "pianoroll", "steps_per_beat": 1}, "data": data}
        save_weights(m, tmp_path / name, card)
    assert jsb_models(tmp_path) == ["tiny-jsb"]
    res = evaluate_jsb(jsb_dir / "valid.json", root=tmp_path)
    assert [r["model"] for r in res["results"]] == ["note-1-gram", "tiny-jsb"]
    assert res["results"][1]["steps"] == 4602 and 30 < res["results"][1]["nll"] < 80  # untrained: near chance
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        evaluate_jsb(jsb_dir / "valid.json", ["nope"], root=tmp_path)


def test_jsb_folder_is_a_train_valid_corpus(jsb_dir):
    c = build_corpus(jsb_dir, {"kind": "pianoroll", "steps_per_beat": 1}, log=lambda *a: None)
    assert (len(c.train), len(c.valid)) == (229, 76) and "JSB" in c.split
    assert sum(len(a) - 1 for a in c.valid) == 4602  # each piece + its start frame
    assert all(a[0].sum() == 0 for a in c.train)


SHIPPED = [n for n in ("pianoroll-lstm-jsb", "pianoroll-nade-jsb") if (WEIGHTS_DIR / n / "config.json").exists()]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_jsb_weights_reproduce_their_card(jsb_dir, name):
    card = read_card(name)
    row = model_result(load_model(name, device="cpu").net, load_split(jsb_dir / "valid.json"), name)
    assert row["nll"] == pytest.approx(card["jsb"]["valid_nll"], abs=2e-3)
    assert row["accuracy"] == pytest.approx(card["jsb"]["valid_accuracy"], abs=2e-3)
    assert row["nll"] < {"pianoroll-lstm-jsb": 8.45, "pianoroll-nade-jsb": 5.56}[name]  # LSTM, RNN-NADE (published)


def test_shipped_split_is_the_one_its_readme_names(jsb_dir):
    import hashlib
    import re

    readme = (jsb_dir / "README.md").read_text()
    for name in ("train.json", "valid.json"):
        want = re.search(rf"`{name}`: `([0-9a-f]{{64}})`", readme).group(1)
        assert hashlib.sha256((jsb_dir / name).read_bytes()).hexdigest() == want
    assert "Licence" in readme and "czhuang/JSB-Chorales-dataset" in readme
