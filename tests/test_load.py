"""Many users at once, on loopback only: one real `streamlit run app.py` and Debian Chromium.

A single user generates 10 s of music first (the baseline, same run, same box); then 8 sessions
(8 pages in one browser, each its own browser context = its own Streamlit session) press
Generate within a second of each other, and a 9th arrives just after. Every session must get
its <audio> and no error within the targets times a margin for this box's noise; the 9th is
told its place in the queue (jobs.MAX_RUNNING generations run at once, the rest wait first in,
first out). Prints click-to-audio median/p95 vs the single user and the server's peak memory
(VmHWM from /proc: psutil is not installed).

Run: `.venv/bin/python -m pytest tests/test_load.py -s` (about 2-3 minutes on a busy 2-core box).
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from musiclab.serving import jobs
from tests.conftest import streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SESSIONS = 8
MUSIC_S = 10  # seconds of new music each session asks for
TARGET_MEDIAN_S, TARGET_P95_S = 8.0, 12.0  # click-to-audio of the 8 sessions (issue 15)
MARGIN = 2.5  # this box's noise: medians of 6.8-8.5 s on a quiet box, 18-19 s under a nice'd training run


def _server_pid(url: str) -> int:
    """The `streamlit run` process listening on ``url``'s port (found in /proc)."""
    port = url.rsplit(":", 1)[1]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                args = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(args) and port.encode() in args:
                return int(d.name)
    raise AssertionError(f"no streamlit process on port {port}")


def _memory_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}


def _open_session(browser, url: str):
    """A new browser context (= a new Streamlit session) on Compose, set to MUSIC_S seconds."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("button", name="Generate").wait_for(timeout=180_000)  # the first one loads torch + model
    slider = page.get_by_role("slider", name="Continue for (s)")
    slider.focus()
    for _ in range((20 - MUSIC_S) // 5):  # default 20 s, steps of 5 s
        slider.press("ArrowLeft")
    deadline = time.time() + 30
    while slider.input_value() != str(MUSIC_S) and time.time() < deadline:
        page.wait_for_timeout(100)
    page.wait_for_timeout(800)  # the slider's rerun
    assert slider.input_value() == str(MUSIC_S)
    return ctx, page


def _failures(page) -> list[str]:
    errors = page.locator("[data-testid=stException], [data-testid=stAlertContentError]")
    return [errors.nth(i).inner_text()[:200] for i in range(errors.count())]


# One cheap probe per page and poll: the audio's duration, the queue notice, any error. Reading the
# whole page's text 20 times a second (as this test once did) cost Chromium more CPU than the app.
PROBE_JS = """() => {
  const a = document.querySelector('audio');
  const q = [...document.querySelectorAll('[data-testid=stAlertContentInfo]')]
    .map(e => e.textContent).find(t => t.includes('Waiting for a free generator'));
  const errs = [...document.querySelectorAll('[data-testid=stException], [data-testid=stAlertContentError]')]
    .map(e => e.textContent.slice(0, 200));
  return [a && isFinite(a.duration) ? a.duration : 0, q || '', errs];
}"""
POLL_S = 0.25  # a person glances at the page; the test need not read it faster


def _queue_ahead(text: str) -> int | None:
    """The queue notice's "N request(s) ahead of you", if shown."""
    m = re.search(r"Waiting for a free generator… (\d+) request", text)
    return int(m.group(1)) if m else None


def _run_all(pages: list, timeout_s: float) -> tuple[list[float], list[float], list[int | None], dict]:
    """Click Generate on every page (in order), then poll all until each has <audio>. Returns
    click-to-audio seconds, audio durations, the largest queue place seen per page, and any error
    shown meanwhile (also short-lived ones in the live panel)."""
    clicks, done, durations = [], [None] * len(pages), [0.0] * len(pages)
    ahead: list[int | None] = [None] * len(pages)
    seen_errors: dict[int, list[str]] = {}
    for page in pages:
        page.get_by_role("button", name="Generate").click()
        clicks.append(time.perf_counter())
    deadline = time.perf_counter() + timeout_s
    while None in done and time.perf_counter() < deadline:
        for i, page in enumerate(pages):
            if done[i] is None:
                d, queue, errors = page.evaluate(PROBE_JS)
                if d > 0:
                    done[i], durations[i] = time.perf_counter(), d
                elif (q := _queue_ahead(queue)) is not None:
                    ahead[i] = max(q, ahead[i] or 0)
                if errors:
                    seen_errors.setdefault(i, []).extend(errors)
        time.sleep(POLL_S)
    missing = [i for i, t in enumerate(done) if t is None]
    assert not missing, f"sessions {missing} got no audio within {timeout_s:.0f} s"
    return [t - c for t, c in zip(done, clicks)], durations, ahead, seen_errors


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("db")) as url:
        yield url, _server_pid(url)


def test_uploads_without_the_xsrf_token_are_refused(server):
    """A page on another site cannot push a file into a session (XSRF protection is on)."""
    url, _ = server
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=30) as r:
        assert r.status == 200
    put = urllib.request.Request(f"{url}/_stcore/upload_file/some-session/some-file", data=b"MThd", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(put, timeout=30)
    assert e.value.code == 403


@pytest.mark.timeout(420)
def test_eight_sessions_at_once_all_get_audio_and_a_ninth_is_queued(browser, server):
    url, pid = server
    contexts = []
    try:
        ctx, solo = _open_session(browser, url)
        contexts.append(ctx)
        (solo_s,), (solo_dur,), _, solo_errors = _run_all([solo], 180)
        assert solo_dur >= MUSIC_S and not solo_errors and not _failures(solo)
        idle = _memory_mb(pid)

        pages = []
        for _ in range(SESSIONS + 1):
            ctx, page = _open_session(browser, url)
            contexts.append(ctx)
            pages.append(page)
        t0 = time.perf_counter()
        waits, durations, ahead, seen_errors = _run_all(pages, 300)
        wall = time.perf_counter() - t0
        mem = _memory_mb(pid)
        crowd, ninth = waits[:SESSIONS], waits[SESSIONS]
        failures = {i: f for i, p in enumerate(pages) if (f := _failures(p))} | seen_errors
        load = os.getloadavg()[0]
        print(
            f"\nload test ({jobs.MAX_RUNNING} generators at once, {MUSIC_S} s of music each, "
            f"{os.cpu_count()} cores, load average {load:.1f}):"
            f"\n  single user click-to-audio {solo_s:.1f} s"
            f"\n  {SESSIONS} sessions at once: median {np.median(crowd):.1f} s, p95 {np.percentile(crowd, 95):.1f} s, "
            f"max {max(crowd):.1f} s; all {SESSIONS} done in {wall:.1f} s; {len(failures)} with errors"
            f"\n  9th user: click-to-audio {ninth:.1f} s, shown up to {ahead[SESSIONS]} request(s) ahead in the queue"
            f"\n  queue places seen: {ahead}"
            f"\n  server memory: {idle['VmRSS']:.0f} MB after one user, peak (VmHWM) {mem['VmHWM']:.0f} MB"
        )
        assert not failures, failures
        assert all(d >= MUSIC_S for d in durations), durations
        print(f"  targets: median <= {TARGET_MEDIAN_S:g} s, p95 <= {TARGET_P95_S:g} s (asserted x {MARGIN:g})")
        median, p95 = np.median(crowd), np.percentile(crowd, 95)
        assert median <= MARGIN * TARGET_MEDIAN_S and p95 <= MARGIN * TARGET_P95_S, (median, p95, solo_s)
        # more sessions than generators: the late ones waited their turn and were told so
        assert ahead[SESSIONS] is not None and ahead[SESSIONS] >= 1, ahead
    finally:
        for ctx in contexts:
            ctx.close()
