"""The Edit page (AppTest): infill a span, accompany a melody, and what it says when it cannot."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, use_weights
from streamlit.testing.v1 import AppTest

from musiclab.midi.examples import list_examples
from musiclab.midi.io import load_midi

PAGE = str(ROOT / "pages" / "edit.py")
JOPLIN, MOZART = "Joplin — Maple Leaf Rag (piano)", "Mozart — Quartet K. 155, I (4 strings)"
FOSTER = "Foster — Jeanie (melody)"


@pytest.fixture
def flagship(flagship_weights, monkeypatch):
    use_weights(monkeypatch, flagship_weights)
    yield
    use_weights(monkeypatch, ROOT / "weights")


def _app(example: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception
    at.selectbox(key="edit_example").set_value(example).run()
    return at


def notes_of(inst) -> list[tuple]:
    return [(n.start, n.end, n.pitch, n.velocity) for n in inst.notes]


def notes(pm, skip: str | None = None) -> list[tuple]:
    return sorted((n.start, n.end, n.pitch, n.velocity) for i in pm.instruments if i.name != skip for n in i.notes)


def test_infill_a_typed_span_makes_new_takes_and_keeps_the_rest(flagship):
    at = _app(JOPLIN)
    assert at.selectbox(key="edit_model").value == "flagship"
    at.number_input(key="edit_from").set_value(4.0)
    at.number_input(key="edit_to").set_value(10.0)
    at.slider(key="edit_variations").set_value(2)
    at.button(key="edit_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    takes = at.session_state["takes"]
    assert len(takes) == 2 and all(t["span"] == (4.0, 10.0) for t in takes)
    source = load_midi(list_examples()[JOPLIN])
    outside = [n for n in notes(source) if not 4.0 <= n[0] < 10.0]
    for t in takes:
        pm = load_midi(t["midi"])
        assert notes(pm, skip="musiclab infill") == outside  # every note outside the span, exactly
        assert all(4.0 <= n.start < 10.0 for n in pm.instruments[-1].notes)
    assert len(at.get("audio")) == 2
    assert {t["info"]["random_seed"] for t in takes} == {
        takes[0]["info"]["random_seed"],
        takes[0]["info"]["random_seed"] + 1,
    }


def test_an_edit_of_a_take_lists_its_new_takes_at_once_and_keeps_the_source_picked(flagship):
    at = _app(JOPLIN)
    at.number_input(key="edit_from").set_value(4.0)
    at.number_input(key="edit_to").set_value(8.0)
    at.button(key="edit_go").click().run()
    at.radio(key="edit_source").set_value("A take").run()
    first = at.session_state["takes"][0]["label"]
    assert at.selectbox(key="edit_take").value == first
    at.button(key="edit_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = [t["label"] for t in at.session_state["takes"]]
    assert labels[1] == f"Take 2 · infill of {first.removesuffix(' · flagship')} · flagship"
    assert at.selectbox(key="edit_take").options == labels[::-1]  # the new take is listed in the same click
    assert at.selectbox(key="edit_take").value == first


def test_switching_the_span_to_bars_keeps_the_bars_that_hold_it(flagship):
    at = _app(JOPLIN)
    at.number_input(key="edit_from").set_value(4.5)
    at.number_input(key="edit_to").set_value(9.5).run()
    at.radio(key="edit_unit").set_value("bars").run()
    downs = load_midi(list_examples()[JOPLIN]).get_downbeats()
    a, b = at.number_input(key="edit_bar_from").value, at.number_input(key="edit_bar_to").value
    assert a > 1 and downs[a - 1] <= 4.5 < downs[a] and downs[b - 1] < 9.5 <= downs[b], (a, b)
    assert not at.warning and not at.exception
    at.number_input(key="edit_bar_to").set_value(b + 1).run()
    at.radio(key="edit_unit").set_value("seconds").run()
    assert at.number_input(key="edit_from").value == pytest.approx(downs[a - 1], abs=0.01)  # and back
    assert at.number_input(key="edit_to").value == pytest.approx(downs[b + 1], abs=0.01)


def test_accompany_a_melody_track_and_mute_it_in_the_audio(flagship):
    at = _app(MOZART)
    at.radio(key="edit_job").set_value("Accompany a melody").run()
    next(s for s in at.selectbox if s.label == "Melody track").set_value(0).run()
    roll = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [len([x for x in t["x"] if x is not None]) // 2 for t in roll["data"] if t.get("name") == "melody"] == [
        len(load_midi(list_examples()[MOZART]).instruments[0].notes)
    ]  # the melody track in its own colour on the roll
    at.button(key="edit_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (take,) = at.session_state["takes"]
    pm, source = load_midi(take["midi"]), load_midi(list_examples()[MOZART])
    assert at.toggle(key="edit_replace_others").value  # four strings: the other three give way by default
    start, end = take["span"]
    kept = [
        (n.start, n.end, n.pitch, n.velocity)
        for i in source.instruments[1:]
        for n in i.notes
        if not start <= n.start < end
    ]
    assert notes(pm, skip="musiclab accompaniment") == sorted(notes_of(source.instruments[0]) + kept)
    assert pm.instruments[-1].name == "musiclab accompaniment" and pm.instruments[-1].notes
    rolls = [json.loads(c.proto.spec)["data"] for c in at.get("plotly_chart")]
    (card,) = [r for r in rolls if any(t.get("name") == "accompaniment" for t in r)]  # the take's own roll
    shown = [len([x for x in t["x"] if x is not None]) // 2 for t in card if t.get("name") == "melody"]
    assert shown == [len(pm.instruments[0].notes)]  # its melody keeps its colour beside the accompaniment
    assert any(c.value.startswith("Chords followed, a bar each from bar ") and "(estimated from the melody by " in c.value
               for c in at.caption)  # fmt: skip
    before = at.get("audio")[0].proto.url
    at.toggle(key=f"mute_{take['id']}").set_value(True).run()
    assert at.get("audio")[0].proto.url != before  # the mix without the accompaniment


@pytest.mark.parametrize(
    "start,end,words",
    [(10.0, 5.0, "starts at 10 s, after its end at 5 s"), (6.0, 6.0, "is empty"), (5.0, 99.0, "ends at 99 s, past")],
)
def test_a_bad_span_is_refused_with_a_reason_and_nothing_is_lost(flagship, start, end, words):
    at = _app(JOPLIN)
    at.number_input(key="edit_from").set_value(start)
    at.number_input(key="edit_to").set_value(end)
    at.button(key="edit_go").click().run()
    assert not at.exception
    assert any(words in e.value and e.value.startswith("Could not edit:") for e in at.error)
    assert "takes" not in at.session_state or at.session_state["takes"] == []
    assert at.number_input(key="edit_from").value == start  # the settings stay as typed
    assert at.number_input(key="edit_to").max is None  # a capped input would keep its old value in a browser


def test_a_bad_chord_symbol_is_refused_with_what_is_accepted(flagship):
    at = _app(MOZART)
    at.radio(key="edit_job").set_value("Accompany a melody").run()
    at.text_area(key="edit_chords").input("C Am H7 G xyz").run()
    assert not at.exception  # said at once, under the box, every bad symbol; Accompany waits for a fix
    assert any("'H7', 'xyz' are not chord symbols; expected e.g. C, Am" in e.value for e in at.error), at.error
    assert at.button(key="edit_go").disabled
    assert "takes" not in at.session_state or at.session_state["takes"] == []
    assert at.text_area(key="edit_chords").value == "C Am H7 G xyz"  # kept as typed, to fix
    at.radio(key="edit_job").set_value("Infill a passage").run()
    at.radio(key="edit_job").set_value("Accompany a melody").run()
    assert at.text_area(key="edit_chords").value == "C Am H7 G xyz"  # and kept across the job switch
    at.text_area(key="edit_chords").input("C Am F G").run()
    assert not at.error and not at.button(key="edit_go").disabled


def test_a_new_piece_forgets_the_chords_typed_for_the_last_and_the_takes_made_here_stay(flagship):
    at = _app(MOZART)
    at.radio(key="edit_job").set_value("Accompany a melody").run()
    at.text_area(key="edit_chords").input("F Bb F C").run()
    at.button(key="edit_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.selectbox(key="edit_example").set_value(FOSTER).run()
    assert at.text_area(key="edit_chords").value == ""  # not the last piece's chords on a tune in another key
    at.button(key="edit_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    first, second = at.session_state["takes"]
    assert first["info"]["chords_from"] == "given" and second["info"]["chords_from"] == "melody"
    assert not [w for w in at.warning if "meter" in w.value]  # Foster is in 4/4
    assert len(at.get("audio")) == 2  # both takes made here stay on the page, the newest first
    assert at.markdown[0].value.startswith(f"**{second['label']}**")


def test_the_chords_read_from_a_melody_can_be_edited_and_followed(flagship):
    at = _app(FOSTER)
    at.radio(key="edit_job").set_value("Accompany a melody").run()
    at.button(key="edit_go").click().run()
    (first,) = at.session_state["takes"]
    assert first["info"]["chords_from"] == "melody"
    at.button(key=f"chords_{first['id']}").click().run()
    assert at.text_area(key="edit_chords").value == " | ".join(first["info"]["chords"])
    at.button(key="edit_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    second = at.session_state["takes"][1]
    assert second["info"]["chords_from"] == "given" and second["info"]["chords"] == first["info"]["chords"]
    offered = lambda: any(b.key == f"chords_{first['id']}" for b in at.button)  # noqa: E731
    at.toggle(key="edit_accompany_span").set_value(True).run()
    at.number_input(key="edit_from").set_value(10.0).run()  # bar 6 at 120 bpm: the box counts from there
    assert not offered() and at.text_area(key="edit_chords").label.startswith("Chords from bar 6")
    at.toggle(key="edit_accompany_span").set_value(False).run()
    assert offered()
    at.selectbox(key="edit_example").set_value(MOZART).run()  # another piece: those chords are not offered
    assert not offered()


def test_without_a_model_that_can_edit_the_page_says_so(tmp_path, monkeypatch):
    (tmp_path / "lstm").symlink_to(ROOT / "weights" / "lstm")
    use_weights(monkeypatch, tmp_path)
    try:
        at = AppTest.from_file(PAGE, default_timeout=180).run()
        assert not at.exception
        assert any("No installed model can infill or accompany" in i.value for i in at.info)
        assert at.button(key="edit_go").disabled
    finally:
        use_weights(monkeypatch, ROOT / "weights")


def test_an_edit_of_a_long_piece_plays_around_its_span(flagship):
    """An infill in a 37-minute album renders seconds of audio around the span, not the whole album."""

    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["seed_bytes"] = (ROOT / "tests" / "data" / "album.mid").read_bytes()
    at.session_state["seed_label"] = "album.mid"
    at.run()
    at.radio(key="edit_src").set_value("Current seed").run()
    at.number_input(key="edit_from").set_value(600.0)
    at.number_input(key="edit_to").set_value(606.0)
    at.button(key="edit_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Plays 592–614 s, around the span" in c.value for c in at.caption)
    take = at.session_state["takes"][-1]
    assert load_midi(take["midi"]).get_end_time() > 30 * 60  # the take (and its downloads) keep the whole album
    ogg = at.get("audio")[0].proto.url  # the played audio is the window's
    assert ogg


def test_continue_from_a_take_on_edit_makes_it_the_seed_and_moves_to_compose(flagship):
    at = _app(JOPLIN)
    at.number_input(key="edit_from").set_value(4.0)
    at.number_input(key="edit_to").set_value(8.0)
    at.button(key="edit_go").click().run()
    take = at.session_state["takes"][-1]
    at.button(key=f"cont_{take['id']}").click().run()
    assert at.session_state["seed_bytes"] == take["midi"] and at.session_state["compose_src"] == "Current seed"
    assert not at.exception  # run alone the page cannot move (that is seen in Chromium, test_browser_edit.py):
    assert any("is the seed now" in i.value for i in at.info)  # it says where the seed went


def test_a_piece_in_three_four_is_told_the_model_writes_four_beat_bars(flagship):
    at = _app("Chopin — Mazurka op. 6 no. 2 (piano)")
    (meter,) = [w.value for w in at.warning if "meter" in w.value]
    assert meter.startswith("This piece is in 3/4; flagship writes bars of four beats")


def test_a_transposed_copy_is_another_piece_so_its_chords_start_empty(flagship):
    from musiclab.app import keys as K
    from musiclab.midi.io import midi_to_bytes

    up = load_midi(list_examples()[FOSTER])
    for n in up.instruments[0].notes:
        n.pitch += 2  # the same tune in another key: the same length and count of notes
    at = _app(FOSTER)
    at.session_state[K.SEED_BYTES], at.session_state[K.SEED_LABEL] = midi_to_bytes(up), "Foster up a tone"
    at.radio(key="edit_job").set_value("Accompany a melody").run()
    at.text_area(key="edit_chords").input("F Bb F C").run()
    assert at.text_area(key="edit_chords").value == "F Bb F C"  # kept while the piece stays
    at.radio(key="edit_src").set_value("Current seed").run()
    assert not at.exception and at.text_area(key="edit_chords").value == ""  # chords for F, not for G
