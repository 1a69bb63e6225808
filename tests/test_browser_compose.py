"""Real Chromium (Debian) against a real `streamlit run app.py`: upload a MIDI file, Generate,
and find a playable <audio> (duration > 0) and a plotly piano roll. Prints click-to-audio."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


def _wait_audio(page, timeout_s: float) -> float:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        d = page.evaluate(
            """() => { const a = document.querySelector('audio');
                       return a && isFinite(a.duration) ? a.duration : 0 }"""
        )
        if d and d > 0:
            return d
        time.sleep(0.1)
    raise AssertionError("no <audio> with a duration appeared")


def test_upload_generate_hear_and_see(app_server, page, midi_file):
    page.goto(app_server, wait_until="domcontentloaded")
    page.get_by_text("Upload", exact=True).wait_for(timeout=120_000)  # first load imports torch + the model
    page.get_by_text("Upload", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(midi_file))
    gen = page.get_by_role("button", name="Generate")
    gen.wait_for(timeout=60_000)
    # continuation length slider: 20 s -> 30 s (two steps of 5 s) with the keyboard, like a user
    slider = page.get_by_role("slider", name="Continue for (s)")
    slider.focus()
    slider.press("ArrowRight")
    slider.press("ArrowRight")
    page.wait_for_timeout(800)
    assert slider.input_value() == "30"
    assert page.locator(".js-plotly-plot").count() == 1  # the seed's piano roll
    t0 = time.perf_counter()
    gen.click()
    duration = _wait_audio(page, 180)
    click_to_audio = time.perf_counter() - t0
    print(f"\nclick-to-audio for 30 s of music: {click_to_audio:.2f} s (audio {duration:.1f} s)")
    assert duration >= 30.0  # seed (10 s) + 30 s continuation
    assert page.locator(".js-plotly-plot").count() == 2  # the seed's and the take's
    assert page.get_by_text("tokens/s").count() >= 1
    # nothing broke on the page
    assert page.locator("[data-testid=stException]").count() == 0


@pytest.mark.parametrize(
    "content, words",
    [(b"this is a text file pretending to be MIDI", 'starts with "this"'), (b"", "the file is empty (0 bytes)")],
)
def test_bad_upload_shows_clear_error(app_server, page, tmp_path, content, words):
    bad = tmp_path / "notes.mid"
    bad.write_bytes(content)
    page.goto(app_server, wait_until="domcontentloaded")
    page.get_by_text("Upload", exact=True).wait_for(timeout=120_000)  # first load imports torch + the model
    page.get_by_text("Upload", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(bad))
    err = page.locator("[data-testid=stAlertContentError]")
    err.first.wait_for(timeout=60_000)
    text = err.first.inner_text()
    assert words in text and text.count("Accepted") == 1 and "up to 4 MB" in text, text  # one wording on the page
    assert page.locator("[data-testid=stException]").count() == 0


def test_deep_link_as_first_request_keeps_the_frame(page, tmp_path):
    from tests.conftest import streamlit_server

    with streamlit_server(tmp_path) as url:  # a fresh server: /models is its very first request
        page.goto(f"{url}/models", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Models").first.wait_for(timeout=60_000)
        nav = page.locator("[data-testid=stSidebarNav]")
        nav.wait_for(timeout=30_000)
        text = nav.inner_text()
        assert "A/B listening" in text and "Compose" in text  # the st.navigation frame, not legacy pages


def test_a_new_upload_keeps_the_settings_and_the_upload_is_remembered(app_server, page, tmp_path):
    """Swapping one uploaded seed for another used to show 'Continue for' back at its default in the
    browser while the server kept the old value. And Upload -> Example -> Upload keeps the file."""
    from conftest import make_midi

    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    make_midi(seconds=12).write(str(a))
    make_midi(seconds=16, program=4).write(str(b))
    page.goto(app_server, wait_until="domcontentloaded")
    page.get_by_text("Upload", exact=True).wait_for(timeout=120_000)
    page.get_by_text("Upload", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(a))
    slider = page.get_by_role("slider", name="Continue for (s)")
    slider.wait_for(timeout=60_000)
    slider.focus()
    for _ in range(4):
        slider.press("ArrowRight")
    page.wait_for_timeout(1500)

    def shown() -> str:  # the value the slider shows: "Continue for (s)", value, min, max
        text = page.locator("[data-testid=stSlider]").filter(has_text="Continue for").first.inner_text()
        return text.split()[3]

    assert shown() == "40"
    page.locator("input[type=file]").set_input_files(str(b))
    page.wait_for_timeout(3000)
    assert shown() == "40"
    page.get_by_text("Example", exact=True).first.click()
    page.wait_for_timeout(1500)
    page.get_by_text("Upload", exact=True).click()
    page.get_by_text("Using b.mid, uploaded before").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Generate").is_enabled()
    # a file that is not MIDI: a clear error, and it does not replace the good upload
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd not really")
    page.locator("input[type=file]").set_input_files(str(bad))
    page.get_by_text("bad.mid:").first.wait_for(timeout=30_000)
    page.get_by_text("Example", exact=True).first.click()
    page.wait_for_timeout(1500)
    page.get_by_text("Upload", exact=True).click()
    page.get_by_text("Using b.mid, uploaded before").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Generate").is_enabled()


ALBUM = (
    Path(__file__).resolve().parent / "data" / "album.mid"
)  # tests/data/make_album.py: 21 tracks, 37 min, 71,271 notes


def test_a_long_real_album_loads_its_beginning_with_a_notice(app_server, page):
    page.goto(app_server, wait_until="domcontentloaded")
    page.get_by_text("Upload", exact=True).wait_for(timeout=120_000)
    page.get_by_text("Upload", exact=True).click()
    page.locator("input[type=file]").set_input_files(str(ALBUM))
    note = page.locator("[data-testid=stAlertContentInfo]").filter(has_text="kept its first")
    note.first.wait_for(timeout=120_000)
    text = note.first.inner_text()
    assert "album.mid: the file is over the limit (60,000 notes, 60 min)" in text
    assert re.search(r"kept its first \d+\.\d min \((59,\d{3}|60,000) of (6[6-9]|7\d),\d{3} notes\)", text), text
    gen = page.get_by_role("button", name="Generate")
    gen.wait_for(timeout=60_000)
    assert gen.is_enabled() and page.locator(".js-plotly-plot").count() == 1  # its seed preview
    assert page.get_by_role("checkbox").count() >= 20  # one per track
    assert page.locator("[data-testid=stException]").count() == 0
