"""A/B listening in a real browser: a blind round with an example seed, a vote, the reveal."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from musiclab.serving.weights import list_models

pytestmark = pytest.mark.browser
ROUND_TIMEOUT_MS = 240_000  # two short continuations on a busy 2-core machine, plus audio


def test_blind_round_vote_and_reveal(app_server, page):
    # Open the app's root first: a fresh server sent straight to /ab runs pages/ab.py in Streamlit's
    # legacy pages/ mode (no app.py frame) until some session has run app.py's st.navigation.
    page.goto(app_server)
    page.get_by_role("heading", name="Compose").wait_for(timeout=90_000)
    page.goto(f"{app_server}/ab")  # st.navigation's url_path for pages/ab.py is its file stem, "ab"
    page.get_by_role("heading", name="A/B listening").wait_for(timeout=60_000)
    expect(page.get_by_test_id("stSidebarNav")).to_contain_text("A/B listening")  # the app.py frame
    # the anonymous listener id is put in the URL so a reload or bookmark keeps it
    page.wait_for_url(re.compile(r"/ab\?listener=[0-9a-f]{16}$"), timeout=30_000)
    lid = page.url.rsplit("=", 1)[1]

    # shortest continuation (5 s): focus the "Continue for" slider and press Home
    cont = page.get_by_role("slider", name="Continue for (s)").first
    cont.focus()
    page.keyboard.press("Home")
    expect(cont).to_have_value("5", timeout=30_000)
    page.get_by_role("button", name="New round").click()

    vote_a = page.get_by_role("button", name="A is better")
    vote_a.wait_for(timeout=ROUND_TIMEOUT_MS)
    main = page.locator("section.main, [data-testid='stMain']").first
    assert "Generation failed" not in main.inner_text(), main.inner_text()
    expect(page.locator("audio")).to_have_count(2, timeout=30_000)  # the players may render after the buttons
    headings = page.locator("h3").all_inner_texts()
    assert [h.strip() for h in headings if h.strip() in ("A", "B")] == ["A", "B"]
    names = [r["name"] for r in list_models() if r["status"] == "ok"]
    body = main.inner_text()
    assert "A is better" in body and "Both bad" in body
    assert not any(f"· {n} ·" in body or f"{n} · T=" in body for n in names)  # blind: no names shown

    vote_a.click()
    reveal = page.locator("[data-testid='stMarkdownContainer']", has_text="Revealed:")
    reveal.wait_for(timeout=60_000)
    text = reveal.inner_text()
    assert re.search(r"A was .+ · T=", text) and any(n in text for n in names)
    page.get_by_text("Vote stored: A is better.").wait_for(timeout=10_000)
    assert page.url.endswith(f"listener={lid}")
    shots = os.environ.get("MUSICLAB_SCREENSHOTS")
    if shots:
        page.screenshot(path=os.path.join(shots, "ab_reveal.png"), full_page=True)
    page.get_by_role("tab", name="Leaderboard").click()
    expect(page.get_by_text(re.compile(r"1 vote\(s\) stored"))).to_be_visible(timeout=30_000)
    if shots:
        page.screenshot(path=os.path.join(shots, "ab_leaderboard.png"), full_page=True)
