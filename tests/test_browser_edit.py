"""The Edit page in a real Chromium: drag a box on the piano roll, Regenerate selection, hear the take."""

from __future__ import annotations

import re
import time

import pytest
from conftest import streamlit_server

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def edit_server(tmp_path_factory, flagship_weights):
    with streamlit_server(tmp_path_factory.mktemp("db"), MUSICLAB_WEIGHTS=str(flagship_weights)) as url:
        yield url


def test_drag_a_box_on_the_roll_then_regenerate_the_selection(edit_server, page):
    page.goto(f"{edit_server}/edit", wait_until="domcontentloaded")
    go = page.get_by_role("button", name="Regenerate selection")
    go.wait_for(timeout=180_000)  # the first load imports torch and the model
    roll = page.locator(".js-plotly-plot").first
    roll.wait_for(timeout=60_000)
    start_in = page.get_by_role("spinbutton", name="From (s)")
    before = start_in.input_value()  # the default span, before the drag
    drag = roll.locator(".nsewdrag").first  # plotly's drag surface over the plot area
    box = drag.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.30, y - 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=8)
    page.mouse.move(box["x"] + box["width"] * 0.60, y + 40, steps=8)
    page.mouse.up()
    deadline = time.time() + 30  # the selection reruns the page and fills the span in
    while start_in.input_value() == before and time.time() < deadline:
        page.wait_for_timeout(200)
    start, end = float(start_in.input_value()), float(page.get_by_role("spinbutton", name="To (s)").input_value())
    assert 0 < start < end and start_in.input_value() != before, (start, end)
    go.click()
    card = page.get_by_text(re.compile(r"Take 1 · infill of Joplin"))
    card.wait_for(timeout=120_000)
    deadline = time.time() + 60
    while time.time() < deadline:
        d = page.evaluate(
            "() => { const a = document.querySelector('audio'); return a && isFinite(a.duration) ? a.duration : 0 }"
        )
        if d > 0:
            break
        page.wait_for_timeout(200)
    assert d > end  # the whole piece plays, with the new passage in it
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stAlertContentError]").count() == 0
    # "Continue from this take" on Edit: Compose opens with the take as the seed, and says so
    page.get_by_role("button", name="Continue from this take").first.click()
    page.get_by_role("heading", name="Compose").wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"is the seed now")).wait_for(timeout=30_000)
    assert page.get_by_role("radio", name="Current seed").is_checked()


def test_a_new_piece_clears_the_chords_typed_for_the_last(edit_server, page):
    """Popping the chord box's key on a new piece left the browser showing, and sending back on the
    next click, the last piece's chords; the box is now set empty."""
    page.goto(f"{edit_server}/edit", wait_until="domcontentloaded")
    page.get_by_role("button", name="Regenerate selection").wait_for(timeout=180_000)
    page.get_by_text("Accompany a melody", exact=True).click()
    box = page.get_by_role("textbox", name=re.compile(r"Chords from bar"))
    box.wait_for(timeout=60_000)
    box.fill("F Bb F C")
    box.press("Enter")
    page.wait_for_timeout(2000)
    page.locator("[data-testid=stSelectbox]").filter(has_text="Example piece").click()
    page.get_by_role("option", name=re.compile(r"^Foster")).click()
    deadline = time.time() + 30
    while box.input_value() and time.time() < deadline:
        page.wait_for_timeout(200)
    assert box.input_value() == ""
    page.get_by_text("Only a span", exact=True).click()  # any other widget: the next run keeps it empty
    page.wait_for_timeout(2000)
    assert box.input_value() == ""
    assert page.get_by_role("button", name="Accompany").is_enabled()
