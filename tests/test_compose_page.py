"""AppTest of the Compose page: example seed -> Generate -> piano roll, audio, downloads."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from conftest import ROOT, choose_tracks, chosen_tracks, seed_roll, take_rolls, use_weights
from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "compose.py")


def generate(at: AppTest, timeout: float = 300) -> AppTest:
    """Click Generate, then rerun (as the page's live fragment would) until the job ends."""
    at.button(key="generate").click().run()
    deadline = time.time() + timeout
    while "job" in at.session_state and time.time() < deadline:
        time.sleep(0.3)
        at.run()
    assert "job" not in at.session_state, "generation did not finish"
    return at


def _app() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.run()
    assert not at.exception
    return at


def test_example_seed_generate_shows_roll_and_audio():
    at = _app()
    assert at.selectbox(key="compose_model").value == "flagship"  # the default once installed
    at.slider(key="seconds").set_value(10)
    at.number_input(key="random_seed").set_value(11)
    generate(at)
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    takes = at.session_state["takes"]
    assert len(takes) == 1 and takes[0]["info"]["random_seed"] == 11
    assert len(take_rolls(at)) == 1 and seed_roll(at) is not None
    audio = at.get("audio")
    assert len(audio) == 1
    assert any("tokens/s" in s.value for s in at.success)


def test_generate_and_its_note_sit_at_the_top_of_the_takes_column():
    at = _app()
    left, right = at.columns[0], at.columns[1]
    assert [b.key for b in right.button][:1] == ["generate"] and "generate" not in [b.key for b in left.button]
    at.slider(key="seconds").set_value(3)
    generate(at)
    assert any("tokens/s" in s.value for s in at.columns[1].success)  # by the new take, not under the controls


def test_a_take_names_its_seed_and_a_bad_seed_greys_generate_out():
    at = _app()
    at.slider(key="seconds").set_value(3)
    generate(at)
    (take,) = at.session_state["takes"]
    assert take["from"] == "Joplin — Maple Leaf Rag (piano)"
    assert any(f"· from {take['from']} ·" in m.value for m in at.markdown)  # on its card
    at.session_state["seed_bytes"], at.session_state["seed_label"] = b"not a MIDI file", "junk.mid"
    at.run()
    at.radio(key="compose_src").set_value("Current seed").run()
    assert at.error and at.button(key="generate").disabled  # still there, greyed out, under the seed's error
    assert len(at.session_state["takes"]) == 1


def test_variations_and_earlier_takes_stay():
    at = _app()
    at.slider(key="seconds").set_value(5)
    at.slider(key="variations").set_value(2)
    generate(at)
    generate(at)
    assert not at.exception
    assert len(at.session_state["takes"]) == 4
    assert len(take_rolls(at)) == 4
    assert len(at.get("audio")) == 4  # every take has its player (rendered two at a time on arrival)


def test_continue_from_take_makes_it_the_seed():
    at = _app()
    at.slider(key="seconds").set_value(5)
    generate(at)
    take = at.session_state["takes"][0]
    at.button(key=f"cont_{take['id']}").click().run()
    assert not at.exception
    assert at.slider(key="seed_seconds").value == at.session_state["seed_seconds"] > 10  # the whole take
    assert at.radio(key="compose_src").value == "Current seed"
    assert at.session_state["seed_bytes"] == take["midi"]
    generate(at)
    assert not at.exception
    assert len(at.session_state["takes"]) == 2


def test_bad_settings_show_error_and_keep_takes():
    at = _app()
    at.slider(key="seconds").set_value(5)
    generate(at)
    at.session_state["takes"][0]["label"] = "kept"
    at.slider(key="top_p").set_value(0.05)
    at.slider(key="temperature").set_value(0.0)
    generate(at)  # greedy + tiny nucleus is still valid
    assert not at.exception and not at.error
    assert at.session_state["takes"][0]["label"] == "kept"


def test_take_shows_metrics_vs_seed():
    at = _app()
    at.slider(key="seconds").set_value(5)
    generate(at)
    assert not at.exception and not at.error
    shown = {m.label: m for m in at.metric}
    assert {"In key", "Repeats", "Notes/s", "Voices", "Range", "Drift (st)"} <= set(shown)
    assert 0 <= int(shown["In key"].value.rstrip("%")) <= 100
    assert shown["In key"].delta.endswith("pts")  # vs the seed


def test_length_in_bars():
    at = _app()
    at.selectbox(key="compose_example").set_value("Bach — Chorale BWV 66.6 (4 voices)").run()
    at.radio(key="length_unit").set_value("bars").run()
    at.slider(key="bars").set_value(2)
    generate(at)
    take = at.session_state["takes"][0]
    # the chorale is in 4/4 at 96 bpm: one bar = 4 x 0.625 s, so 2 bars = 5 s
    assert abs(take["info"]["seconds"] - 5.0) < 0.01


def test_a_new_seed_starts_from_its_own_default_tracks():
    """Switching examples (or continuing from a take) must not keep the previous seed's track
    choice: every non-drum track of the new seed is chosen, and Generate works."""
    from musiclab.midi.examples import list_examples
    from musiclab.midi.io import load_midi, non_drum_tracks

    at = _app()
    examples = list_examples()
    for title in ("Bach — Chorale BWV 66.6 (4 voices)", "Joplin — Maple Leaf Rag (piano)"):
        at.selectbox(key="compose_example").set_value(title).run()
        want = non_drum_tracks(load_midi(examples[title]))
        assert chosen_tracks(at) == want, (title, chosen_tracks(at))
    at.slider(key="seconds").set_value(5)
    generate(at)
    assert not at.error, [e.value for e in at.error]
    take = at.session_state["takes"][0]
    at.button(key=f"cont_{take['id']}").click().run()
    assert chosen_tracks(at) == non_drum_tracks(load_midi(take["midi"]))
    generate(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.session_state["takes"]) == 2


def test_takes_audio_rendered_two_at_a_time_is_each_takes_own():
    """prerender_audio fills audio_for's cache from two threads: each take still gets its own
    audio (real FluidSynth, OGG), as long as the take; a bad file does not stop the others."""
    import soundfile as sf

    from musiclab.app.common import audio_for, prerender_audio
    from musiclab.midi.io import midi_to_bytes
    from tests.conftest import make_midi

    midis = [midi_to_bytes(make_midi(seconds=s)) for s in (3, 5, 7)]
    prerender_audio(midis + [b"not a midi file"])
    for m, want in zip(midis, (3, 5, 7)):
        ogg, _, seconds = audio_for(m)
        assert ogg[:4] == b"OggS" and want <= seconds < want + 3
        info = sf.info(io.BytesIO(ogg))
        assert info.frames / info.samplerate == pytest.approx(seconds, abs=0.05)


def test_takes_audio_renders_in_the_background_and_each_take_once(monkeypatch):
    """prerender_audio returns at once; a card asking for a take's audio while it renders waits
    for that render instead of starting another (one FluidSynth run per take)."""
    import threading

    from musiclab.app.common import audio_for, prerender_audio
    from musiclab.midi import synth
    from musiclab.midi.io import midi_to_bytes
    from tests.conftest import make_midi

    runs = []
    real = synth._fluidsynth
    monkeypatch.setattr(synth, "_fluidsynth", lambda *a, **k: runs.append(1) or real(*a, **k))
    midis = [midi_to_bytes(make_midi(seconds=s)) for s in (21, 22, 23, 24)]
    prerender_audio(midis)
    assert any(t.name.startswith("musiclab-audio") for t in threading.enumerate())  # still rendering
    got = [audio_for(m) for m in midis]  # as the cards do, in their order
    assert all(want <= sec < want + 3 for (_, _, sec), want in zip(got, (21, 22, 23, 24)))
    for t in threading.enumerate():
        if t.name.startswith("musiclab-audio"):
            t.join(60)
    assert len(runs) == 4


def test_a_quick_take_shows_in_the_run_that_started_it():
    """A short generation is awaited in the click's own run (QUICK_WAIT_S), so the take is on the
    page at once instead of at the live view's next poll."""
    at = _app()
    at.selectbox(key="compose_model").set_value("pianoroll-lstm").run()
    at.slider(key="seconds").set_value(5)
    at.button(key="generate").click().run()
    assert not at.exception and "job" not in at.session_state
    assert len(at.session_state["takes"]) == 1 and len(at.get("audio")) == 1


def test_generate_is_greyed_out_while_a_job_runs_and_stop_keeps_the_partial_take():
    at = _app()
    at.selectbox(key="compose_model").set_value("transformer-remi").run()
    at.slider(key="seconds").set_value(120)
    at.button(key="generate").click().run()  # longer than the quick wait: the live view is drawn
    assert not at.exception and "job" in at.session_state
    assert at.button(key="generate").disabled
    assert any("Generating" in p.proto.text for p in at.get("progress")), "no live progress shown"
    at.button(key="job_stop").click().run()
    deadline = time.time() + 60
    while "job" in at.session_state and time.time() < deadline:
        time.sleep(0.3)
        at.run()
    takes = at.session_state["takes"]
    assert len(takes) == 1 and takes[0]["info"]["stopped_early"] and len(at.get("audio")) == 1
    assert not at.button(key="generate").disabled


def test_a_seed_shorter_than_the_seed_slider_is_used_whole():
    """A one-note, half-second seed: no 1.0-to-1.0 slider (Streamlit refuses one), the whole
    seed is used, and a take comes out."""
    import pretty_midi

    from musiclab.midi.io import midi_to_bytes

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes.append(pretty_midi.Note(90, 60, 0.0, 0.5))
    pm.instruments.append(inst)
    at = _app()
    at.session_state["seed_bytes"] = midi_to_bytes(pm)
    at.run()
    at.radio(key="compose_src").set_value("Current seed").run()
    assert not at.exception, at.exception
    assert any("all of it (0.5 s)" in c.value for c in at.caption)
    at.slider(key="seconds").set_value(5)
    generate(at)
    assert not at.exception and len(at.session_state["takes"]) == 1
    assert at.session_state["takes"][0]["seed_end"] == 0.5  # the new music starts where the seed ends


def test_another_seed_starts_at_its_default_seed_length():
    at = _app()
    at.slider(key="seed_seconds").set_value(4.0).run()
    examples = at.selectbox(key="compose_example").options
    at.selectbox(key="compose_example").set_value(examples[1]).run()
    assert not at.exception
    assert at.slider(key="seed_seconds").value == 10.0


def test_settings_survive_a_visit_to_another_page():
    at = AppTest.from_file(str(Path(PAGE).parent.parent / "app.py"), default_timeout=180).run()
    assert not at.exception
    at.selectbox(key="compose_model").set_value("bigru").run()
    at.selectbox(key="compose_example").set_value("Bach — Chorale BWV 66.6 (4 voices)").run()
    choose_tracks(at, [0, 2])
    at.slider(key="temperature").set_value(1.5)
    at.slider(key="seconds").set_value(60).run()
    at.switch_page("pages/models.py").run()
    assert not at.exception and not at.slider
    at.switch_page("pages/compose.py").run()
    assert not at.exception
    assert at.selectbox(key="compose_model").value == "bigru"
    assert at.slider(key="temperature").value == 1.5 and at.slider(key="seconds").value == 60
    assert chosen_tracks(at) == [0, 2]


def test_only_the_newest_takes_are_drawn_until_asked():
    at = _app()
    at.selectbox(key="compose_model").set_value("pianoroll-lstm").run()
    at.slider(key="seconds").set_value(5)
    at.slider(key="variations").set_value(4)
    for _ in range(3):
        generate(at)
    assert not at.exception and len(at.session_state["takes"]) == 12
    assert len(take_rolls(at)) == 8 and len(at.get("audio")) == 8
    at.toggle(key="show_older").set_value(True).run()
    assert not at.exception
    assert len(take_rolls(at)) == 12 and len(at.get("audio")) == 12


def test_generate_is_off_with_no_track_chosen():
    at = _app()
    at.selectbox(key="compose_example").set_value("Joplin — Maple Leaf Rag (piano)").run()
    choose_tracks(at, [])
    at.run()
    assert not at.exception and at.button(key="generate").disabled
    assert any("at least one track" in c.value for c in at.caption)
    assert seed_roll(at) is None


def test_the_seed_preview_shows_what_the_model_reads():
    """The seed's piano roll: the chosen tracks' notes up to the seed length, with its mark."""
    at = _app()
    at.selectbox(key="compose_example").set_value("Bach — Chorale BWV 66.6 (4 voices)").run()
    at.slider(key="seed_seconds").set_value(4.0).run()
    fig = seed_roll(at)
    assert not at.exception and fig is not None
    assert [shape["x0"] for shape in fig["layout"]["shapes"]] == [4.0]
    starts = [x for trace in fig["data"] for x in trace["x"][0::3]]  # segments: start, end, None
    assert starts and max(starts) < 4.0
    choose_tracks(at, [0])
    at.run()  # one voice: fewer notes than four
    one = [x for trace in seed_roll(at)["data"] for x in trace["x"][0::3]]
    assert 0 < len(one) < len(starts)


def test_a_seed_with_no_notes_in_its_excerpt_turns_generate_off():
    """Notes only from 12 s on, seed length 10 s: the page says so where the seed's piano roll
    would be, and Generate is off until the seed is long enough."""
    from musiclab.midi.io import midi_to_bytes
    from tests.conftest import make_midi

    at = _app()
    at.session_state["seed_bytes"] = midi_to_bytes(make_midi([(60, 12.0, 13.0), (62, 13.0, 14.0)]))
    at.session_state["job_note"] = "1 take(s): 99 tokens in 1.00 s (99 tokens/s)"  # the last run's, on another seed
    at.run()
    at.radio(key="compose_src").set_value("Current seed").run()
    assert not at.exception and seed_roll(at) is None
    assert not at.success  # no earlier run's success under this seed's warning
    assert any(
        "the seed has no notes in the first 10 s (the first starts at 12.0 s)" in w.value.lower() for w in at.warning
    )
    assert at.button(key="generate").disabled
    at.slider(key="seed_seconds").set_value(13.0).run()
    assert not at.warning and not at.button(key="generate").disabled
    assert seed_roll(at)["layout"]["xaxis"]["range"][0] == 0  # the opening rest is shown, not cut


def test_continue_from_a_long_take_keeps_all_of_it():
    """A 10 s seed + 120 s take (130 s) continued: the seed is the whole take, not its first 120 s."""
    at = _app()
    at.selectbox(key="compose_model").set_value("pianoroll-lstm").run()
    at.slider(key="seconds").set_value(120)
    generate(at)
    take = at.session_state["takes"][0]
    at.button(key=f"cont_{take['id']}").click().run()
    assert not at.exception
    assert at.slider(key="seed_seconds").value == pytest.approx(130.0, abs=0.1)
    assert seed_roll(at)["layout"]["shapes"][0]["x0"] == pytest.approx(130.0, abs=0.1)


def test_new_takes_are_announced_where_the_page_is_scrolled():
    """The takes appear at the top of the right column, out of view of a user scrolled down to
    Generate: a toast names them."""
    at = _app()
    at.slider(key="seconds").set_value(5)
    at.slider(key="variations").set_value(2)
    generate(at)
    assert [t.value for t in at.toast] == ["Takes 1-2 ready: at the top of your takes"]
    at.run()
    assert not at.toast  # once


def test_a_full_queue_says_busy_and_keeps_the_seed_and_takes(monkeypatch):
    from musiclab.serving import jobs

    at = _app()
    at.slider(key="seconds").set_value(5)
    generate(at)
    monkeypatch.setattr(jobs, "MAX_WAITING", 0)  # no room: every new request is refused
    at.button(key="generate").click().run()
    assert not at.exception and "job" not in at.session_state
    err = " ".join(e.value for e in at.error)
    assert "the server is busy" in err and "Try again in a minute; your seed and settings are kept" in err
    assert len(at.session_state["takes"]) == 1 and not at.button(key="generate").disabled
    monkeypatch.setattr(jobs, "MAX_WAITING", 24)
    generate(at)  # the same seed and settings, once there is room
    assert len(at.session_state["takes"]) == 2 and not at.error


@pytest.fixture
def tuned_flagship(flagship_weights, tmp_path, monkeypatch):
    """The small flagship with its own sampling defaults in its card, beside the shipped models."""
    import json
    import shutil

    root = tmp_path / "weights"
    root.mkdir()
    for d in flagship_weights.iterdir():
        if d.name == "flagship":
            shutil.copytree(d, root / d.name)
        else:
            (root / d.name).symlink_to(d.resolve())
    card = json.loads((root / "flagship" / "config.json").read_text())
    card["sampling"] = {"temperature": 0.85, "repetition_penalty": 1.0}
    (root / "flagship" / "config.json").write_text(json.dumps(card))
    use_weights(monkeypatch, root)
    yield
    use_weights(monkeypatch, ROOT / "weights")


def test_sampling_starts_at_the_picked_models_own_defaults(tuned_flagship):
    at = _app()
    assert at.selectbox(key="compose_model").value == "flagship"  # preferred once installed
    assert at.slider(key="temperature").value == 0.85 and at.slider(key="repetition_penalty").value == 1.0
    assert at.slider(key="top_p").value == 0.95  # the card does not set it: the app's default
    at.selectbox(key="compose_model").set_value("lstm").run()
    assert at.slider(key="temperature").value == 1.0 and at.slider(key="repetition_penalty").value == 1.1
    at.selectbox(key="compose_model").set_value("flagship").run()
    assert at.slider(key="temperature").value == 0.85  # picked again: its own again
    at.slider(key="temperature").set_value(0.6).run()
    at.slider(key="seconds").set_value(5)
    at.number_input(key="random_seed").set_value(3)
    generate(at)
    assert not at.exception
    assert at.session_state["takes"][-1]["info"]["settings"]["temperature"] == 0.6  # the user's change is used


def test_a_piece_in_three_four_is_told_the_flagship_writes_four_beat_bars():
    at = _app()
    at.selectbox(key="compose_example").set_value("Chopin — Mazurka op. 6 no. 2 (piano)").run()
    (meter,) = [w.value for w in at.warning if "meter" in w.value]
    assert meter.startswith("This piece is in 3/4; flagship writes bars of four beats")
    at.selectbox(key="compose_model").set_value("lstm").run()  # a model without bars: nothing to say
    assert not [w for w in at.warning if "meter" in w.value]
    at.selectbox(key="compose_model").set_value("flagship").run()
    at.selectbox(key="compose_example").set_value("Joplin — Maple Leaf Rag (piano)").run()  # 2/4: two to a bar
    assert not [w for w in at.warning if "meter" in w.value]
