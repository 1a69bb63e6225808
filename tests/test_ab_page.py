"""A/B listening: round making, equal loudness, and the page (AppTest) from round to leaderboard."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_midi, take_rolls
from streamlit.testing.v1 import AppTest

from musiclab.listening.ab import loudness, make_round, matched_audio, surprise_pair
from musiclab.listening.votes import VoteStore
from musiclab.midi.examples import list_examples
from musiclab.midi.io import load_midi, midi_to_bytes
from musiclab.midi.synth import render_audio_with_notice
from musiclab.serving.weights import load_model

PAGE = Path(__file__).resolve().parent.parent / "pages" / "ab.py"
SETTINGS = {"temperature": 1.0, "top_k": 0, "top_p": 0.95, "min_p": 0.0, "repetition_penalty": 1.1, "key_lock": False}


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "votes.sqlite"
    monkeypatch.setenv("MUSICLAB_DB", str(path))
    return path


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def new_round(at: AppTest, mode: str = "One model, two temperatures", t1: float = 0.8, t2: float = 1.3) -> None:
    """Short settings (4 s seed, 5 s continuation), lstm at two temperatures, press New round."""
    at.run()
    at.slider(key="ab_seed_seconds").set_value(4.0)
    at.slider(key="ab_seconds").set_value(5)
    at.radio(key="ab_mode").set_value(mode)
    at.run()
    at.selectbox(key="ab_model_1").set_value("lstm")
    at.slider(key="ab_temperature").set_value(t1)
    if mode == "One model, two temperatures":
        at.slider(key="ab_temperature_2").set_value(t2)
    else:
        at.selectbox(key="ab_model_2").set_value("lstm")  # whatever else is in weights/, keep the test fast
    at.button(key="ab_new").click().run()
    assert not at.exception


def decoded_loudness(ogg: bytes, from_s: float) -> float:
    audio, sr = sf.read(io.BytesIO(ogg), dtype="float32")
    return loudness(audio, sr, int(from_s * sr))


def phrase(velocity: int, start: float = 0.0, count: int = 16):
    """Short notes with rests between them (the gate must skip the rests), seconds."""
    return [(60 + i % 5, start + 0.5 * i, start + 0.5 * i + 0.2, velocity) for i in range(count)]


def midi_with(notes):
    pm = make_midi([(p, s, e) for p, s, e, _ in notes])
    for n, (_, _, _, v) in zip(pm.instruments[0].notes, notes):
        n.velocity = v
    return pm


def test_matched_audio_has_equal_loudness_and_no_clipping():
    loud = midi_with(phrase(110))
    quiet = midi_with([(72, 0.0, 0.2, 127)] + phrase(25, start=0.5))  # one loud note sets the peak
    sr = 44100
    raw = [loudness(render_audio_with_notice(pm)[0], sr, sr) for pm in (loud, quiet)]
    assert max(raw) / min(raw) > 1.5  # peak normalisation alone leaves them at different loudness
    waves, sr, _ = matched_audio([loud, quiet], from_seconds=1.0)
    after = [loudness(w, sr, sr) for w in waves]
    assert after[0] == pytest.approx(after[1], rel=1e-3)
    assert after[0] == pytest.approx(min(raw), rel=1e-3)  # scaled down to the quieter one
    assert max(float(np.abs(w).max()) for w in waves) <= 1.0


def test_empty_continuation_does_not_silence_the_other_take():
    seed = phrase(90, count=8)  # 0-4 s
    empty = midi_with(seed)  # nothing after the seed end at 4 s
    full = midi_with(seed + phrase(90, start=4.0, count=8))
    waves, sr, _ = matched_audio([empty, full], from_seconds=4.0)
    whole = [loudness(w, sr) for w in waves]  # measured over the whole takes instead
    assert whole[0] == pytest.approx(whole[1], rel=1e-3)
    assert loudness(waves[1], sr, 4 * sr) > 0.5 * whole[1]


def test_surprise_me_draws_two_models_or_two_settings():
    rng = random.Random(0)
    for _ in range(20):
        (m1, s1), (m2, s2) = surprise_pair(["lstm", "bigru", "transformer"], SETTINGS, rng)
        assert m1 != m2 and s1 == s2 == SETTINGS
        (m1, s1), (m2, s2) = surprise_pair(["lstm"], SETTINGS, rng)
        assert m1 == m2 == "lstm" and s1 != s2
        assert {s1["top_k"], s2["top_k"]} == {0}  # settings not drawn stay as chosen
    with pytest.raises(ValueError, match="at least one usable model"):
        surprise_pair([], SETTINGS, rng)


def test_make_round_keeps_a_failed_side_and_shares_the_seed():
    seed = make_midi(seconds=8.0)
    data = midi_to_bytes(seed)
    pair = [("lstm", dict(SETTINGS)), ("no-such-model", dict(SETTINGS))]
    rnd = make_round(load_model, seed, data, pair, seed_seconds=4.0, seconds=5.0, rng=random.Random(1))
    assert rnd.failed and rnd.audio == []
    assert "unknown model 'no-such-model'" in rnd.error
    ok = rnd.a if rnd.a.model == "lstm" else rnd.b
    assert ok.midi and ok.error is None and ok.info["seconds"] == 5.0
    assert rnd.seed_sha == hashlib.sha256(data).hexdigest()
    assert load_midi(ok.midi).get_end_time() > 4.0  # seed excerpt + new notes after the seed end


def test_blind_round_vote_reveal_leaderboard_next_round(db):
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    new_round(at)
    assert texts(at.info)[-1].startswith("No votes yet")
    rnd = at.session_state["ab_round"]
    assert not rnd.failed and rnd.blind
    # blind: headings are only A and B, no model name anywhere before the vote
    assert [m for m in texts(at.markdown) if m.startswith("###")] == ["### A", "### B"]
    assert not any("lstm" in m for m in texts(at.markdown))
    assert len(at.get("audio")) == 2 and len(take_rolls(at)) == 2
    # both continue the same seed excerpt, and play at the same loudness over the new music
    seeds = [
        [(n.pitch, round(n.start, 3)) for i in load_midi(c.midi).instruments for n in i.notes if n.start < 4.0]
        for c in (rnd.a, rnd.b)
    ]
    assert seeds[0] and sorted(seeds[0]) == sorted(seeds[1])
    new_music = all(any(n.start >= 4.0 for i in load_midi(c.midi).instruments for n in i.notes) for c in (rnd.a, rnd.b))
    levels = [decoded_loudness(o, 4.0 if new_music else 0.0) for o in rnd.audio]
    assert levels[0] == pytest.approx(levels[1], rel=0.05)
    assert {rnd.a.settings["temperature"], rnd.b.settings["temperature"]} == {0.8, 1.3}

    at.button(key="ab_vote_b").click().run()
    assert texts(at.success) == ["Vote stored: B is better."]
    reveal = next(m for m in texts(at.markdown) if m.startswith("**Revealed:**"))
    assert f"A was **lstm · T={rnd.a.settings['temperature']:g}" in reveal
    assert f"B was **lstm · T={rnd.b.settings['temperature']:g}" in reveal
    assert "ab_vote_a" not in [b.key for b in at.button]  # one vote per round

    (row,) = VoteStore(db).votes()
    assert (row["vote"], row["round_id"], row["voter"]) == ("b", rnd.round_id, at.query_params["listener"])
    first_example = next(iter(list_examples().values()))
    assert row["seed_sha256"] == hashlib.sha256(first_example.read_bytes()).hexdigest()
    assert row["settings_b"]["temperature"] == rnd.b.settings["temperature"]
    assert VoteStore(db).seed_midi(row["seed_sha256"]) is None  # no opt-in: only the hash is kept

    # leaderboard: a model against itself is left out per model; per model + settings, B leads
    assert "1 compared a player with itself" in " ".join(texts(at.caption))
    at.radio(key="ab_rate_by").set_value("Model + settings").run()
    (board,) = [d.value for d in at.dataframe]
    assert len(board) == 2 and list(board["games"]) == [1, 1]
    assert board.iloc[0]["player"].startswith(f"lstm · T={rnd.b.settings['temperature']:g}")
    assert board.iloc[0]["rating"] > board.iloc[1]["rating"]

    at.button(key="ab_next_same").click().run()
    assert not at.exception
    nxt = at.session_state["ab_round"]
    assert nxt.round_id != rnd.round_id and nxt.seed_sha == rnd.seed_sha and not nxt.failed
    assert not at.button(key="ab_vote_a").disabled and not at.session_state["ab_revealed"]


def test_two_models_each_play_at_their_recommended_sampling_unless_turned_off(db):
    """The flagship's card recommends temperature 0.9 and no repetition penalty; lstm has none, so it
    plays at the app's defaults. The page's knobs (temperature 1.4 here) apply to both only when
    the listener turns recommended sampling off; the key lock is always the listener's."""
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    at.slider(key="ab_seed_seconds").set_value(4.0)
    at.slider(key="ab_seconds").set_value(5)
    at.radio(key="ab_mode").set_value("Two models").run()
    at.selectbox(key="ab_model_1").set_value("flagship").run()
    at.selectbox(key="ab_model_2").set_value("lstm")
    at.slider(key="ab_temperature").set_value(1.4)
    at.checkbox(key="ab_key_lock").check()
    at.button(key="ab_new").click().run()
    assert not at.exception
    rnd = at.session_state["ab_round"]
    got = {c.model: c.settings for c in (rnd.a, rnd.b)}
    assert (got["flagship"]["temperature"], got["flagship"]["repetition_penalty"]) == (0.9, 1.0)
    assert (got["lstm"]["temperature"], got["lstm"]["repetition_penalty"]) == (1.0, 1.1)
    assert got["flagship"]["key_lock"] and got["lstm"]["key_lock"] and not rnd.failed
    at.checkbox(key="ab_own_sampling").uncheck()
    at.button(key="ab_new").click().run()
    rnd = at.session_state["ab_round"]
    assert [c.settings["temperature"] for c in (rnd.a, rnd.b)] == [1.4, 1.4] and not rnd.failed


def test_unwritable_vote_file_shows_error_and_keeps_the_round(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("MUSICLAB_DB", str(blocker / "votes.sqlite"))
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    new_round(at, mode="Two models")
    rnd = at.session_state["ab_round"]
    at.button(key="ab_vote_a").click().run()
    err = " ".join(texts(at.error))
    assert "Vote not stored" in err and "MUSICLAB_DB" in err and "This round is kept" in err
    assert at.session_state["ab_round"] is rnd and len(at.get("audio")) == 2
    assert not at.session_state["ab_revealed"]
    good = tmp_path / "good.sqlite"
    monkeypatch.setenv("MUSICLAB_DB", str(good))  # the operator fixes it; the same round can be voted on
    at.checkbox(key="ab_share_seed").check()  # opt in: the seed's MIDI goes with this vote
    at.button(key="ab_vote_a").click().run()
    assert texts(at.success) == ["Vote stored: A is better."]
    assert [r["round_id"] for r in VoteStore(good).votes()] == [rnd.round_id]
    first_example = next(iter(list_examples().values())).read_bytes()
    assert VoteStore(good).seed_midi(rnd.seed_sha) == first_example


def test_a_seed_with_no_notes_in_its_excerpt_is_refused_before_a_round(db):
    """The Compose seed (session "seed_bytes") has no notes in its first 2 s: the page says so under
    the seed and New round is off, instead of generating a round that must fail."""
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["seed_bytes"] = midi_to_bytes(make_midi([(60, 6.0, 7.0), (64, 7.0, 8.0)]))
    at.run()
    at.radio(key="ab_src").set_value("Current seed").run()
    at.slider(key="ab_seed_seconds").set_value(2.0).run()
    assert not at.exception
    assert any("no notes in the first 2 s (the first starts at 6.0 s)" in w for w in texts(at.warning))
    assert at.button(key="ab_new").disabled
    at.slider(key="ab_seed_seconds").set_value(7.0).run()  # long enough now
    assert not at.warning and not at.button(key="ab_new").disabled


def test_failed_round_cannot_be_voted_then_new_example(db):
    """A round whose generation failed (here: a seed with no notes in its first 2 s, made with
    make_round as the page would) shows why and cannot be voted on; Next round moves on."""
    seed = make_midi([(60, 6.0, 7.0), (64, 7.0, 8.0)])
    data = midi_to_bytes(seed)
    rnd = make_round(load_model, seed, data, [("lstm", SETTINGS), ("lstm", SETTINGS)], seed_seconds=2.0, seconds=5.0)
    assert rnd.failed
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["seed_bytes"] = data
    at.session_state["ab_round"] = rnd
    at.run()
    err = " ".join(texts(at.error))
    assert "Generation failed" in err and "no notes in the first 2 s" in err and "cannot be voted on" in err
    assert all(at.button(key=f"ab_vote_{v}").disabled for v in ("a", "b", "tie", "both_bad"))
    assert VoteStore(db).count() == 0
    at.button(key="ab_next_example").click().run()
    assert not at.exception
    assert at.radio(key="ab_src").value == "Example"
    rnd = at.session_state["ab_round"]
    assert not rnd.failed and rnd.seed_label in list_examples()


@pytest.mark.parametrize("given, kept", [("0123456789abcdef", True), ("x'); DROP TABLE votes; --", False)])
def test_listener_id_lives_in_the_url(db, given, kept):
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.query_params["listener"] = given
    at.run()
    lid = at.query_params["listener"]
    assert (lid == given) is kept
    assert len(lid) == 16 and all(ch in "0123456789abcdef" for ch in lid)
    at.run()
    assert at.query_params["listener"] == lid == at.session_state["ab_listener"]


def test_another_seed_starts_at_the_default_seed_length(db):
    """A 0.5 s seed is used whole; an example chosen next starts again at 8 s, not at 1 s."""
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.session_state["seed_bytes"] = midi_to_bytes(make_midi([(60, 0.0, 0.5)]))
    at.run()
    at.radio(key="ab_src").set_value("Current seed").run()
    assert not at.exception and any("all of it (0.5 s)" in c for c in texts(at.caption))
    at.radio(key="ab_src").set_value("Example").run()
    assert not at.exception and at.slider(key="ab_seed_seconds").value == 8.0
