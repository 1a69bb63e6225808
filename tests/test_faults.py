"""Faults: each gives a clear message and the rest keeps working.

No FluidSynth, a missing or corrupt SoundFont -> sine audio with a notice; a corrupt weight
file -> only that model "unavailable"; a generation that dies or is stopped -> the job says
so and the session's takes stay. (A full disk or unwritable vote file: tests/test_votes.py
test_full_disk_gives_clear_error_and_keeps_earlier_votes and tests/test_ab_page.py
test_unwritable_vote_file_shows_error_and_keeps_the_round.)
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from musiclab.generation.sampling import generate
from musiclab.midi.io import load_midi
from musiclab.midi.synth import SAMPLE_RATE, find_soundfont, render_audio_with_notice, synth_status
from musiclab.serving import jobs
from musiclab.serving.jobs import Job
from musiclab.serving.weights import WEIGHTS_DIR, list_models, load_model
from tests.conftest import make_midi, take_rolls

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = str(ROOT / "pages" / "compose.py")


# ---- audio ----


def _spectrum(audio: np.ndarray, sr: int, seconds: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies Hz, magnitudes) of the first ``seconds`` of ``audio``, zero-padded 8x."""
    n = int(sr * seconds)
    return np.fft.rfftfreq(8 * n, 1 / sr), np.abs(np.fft.rfft(audio[:n] * np.hanning(n), n=8 * n))


def _assert_sine_audio_of(pm, audio: np.ndarray, sr: int) -> None:
    """The sine synth played this music: its length (+ pretty_midi's 1 s tail), not silent, the
    first note's pitch (C4) as a pure tone (no 2nd harmonic, unlike any SoundFont piano)."""
    assert sr == SAMPLE_RATE and audio.dtype == np.float32
    assert abs(len(audio) / sr - (pm.get_end_time() + 1.0)) < 0.05
    assert 0.5 < np.abs(audio).max() <= 1.0
    freq, mag = _spectrum(audio, sr)
    assert freq[mag.argmax()] == pytest.approx(261.6, abs=3)
    assert mag[np.abs(freq - 523.3) < 10].max() < 0.01 * mag.max()


def test_without_fluidsynth_audio_is_sine_with_a_notice(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no fluidsynth program
    ok, why = synth_status()
    assert not ok and "FluidSynth is not installed" in why
    pm = make_midi(seconds=3)
    audio, sr, notice = render_audio_with_notice(pm)
    assert notice == why
    _assert_sine_audio_of(pm, audio, sr)


def _junk(path: Path) -> Path:
    path.write_bytes(b"this is not a SoundFont " * 2000)
    return path


def _truncated(path: Path) -> Path:
    with open(find_soundfont(), "rb") as f:
        path.write_bytes(f.read(1_000_000))  # the first MB of the real 148 MB font
    return path


def _garbage_with_a_good_header(path: Path) -> Path:
    body = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    path.write_bytes(b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"sfbk" + body)
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p / "missing.sf2", "not found"),
        (_junk, "not a valid SoundFont"),
        (_truncated, "not a valid SoundFont"),
        (_garbage_with_a_good_header, "FluidSynth could not render"),  # only FluidSynth itself can tell
    ],
    ids=["missing", "junk", "truncated", "garbage-inside"],
)
def test_missing_or_corrupt_soundfont_gives_sine_audio_and_a_notice(monkeypatch, tmp_path, make, words):
    if shutil.which("fluidsynth") is None:
        pytest.skip("FluidSynth is not installed here: nothing to fall back from")
    sf2 = make(tmp_path / "font.sf2")
    monkeypatch.setenv("MUSICLAB_SOUNDFONT", str(sf2))
    pm = make_midi(seconds=3)
    audio, sr, notice = render_audio_with_notice(pm)
    assert notice is not None and words in notice and str(sf2) in notice and "sine" in notice
    _assert_sine_audio_of(pm, audio, sr)


def test_the_good_soundfont_renders_with_fluidsynth_and_no_notice():
    """The control for the two tests above: the fallbacks are not taken when nothing is wrong."""
    if not synth_status()[0]:
        pytest.skip(synth_status()[1])
    pm = make_midi(seconds=3)
    audio, sr, notice = render_audio_with_notice(pm)
    assert notice is None
    freq, mag = _spectrum(audio, sr)
    assert mag[np.abs(freq - 523.3) < 10].max() > 0.01 * mag.max()  # a real piano: harmonics


# ---- weights ----


def _copy_weights(root: Path, name: str) -> None:
    """Copy a shipped model, retrying while a training job may be rewriting it."""
    for _ in range(20):
        shutil.rmtree(root / name, ignore_errors=True)
        shutil.copytree(WEIGHTS_DIR / name, root / name, ignore=shutil.ignore_patterns("checkpoint"))
        try:
            load_model(name, root, device="cpu")
            return
        except ValueError:
            time.sleep(1.0)
    pytest.fail(f"could not copy a loadable weights/{name}")


def _nan_fill(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-40_000] + b"\xff\x7f" * 20_000)  # fp16 NaN over the last tensors


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1001] ^= 0x01  # lowest mantissa bit of an fp16 weight: still finite, still loads
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "header-garbage": (lambda p: p.write_bytes(b"\xff" * 64 + p.read_bytes()[64:]), "weight file is corrupt"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "weight file is corrupt"),
    "empty": (lambda p: p.write_bytes(b""), "weight file is corrupt"),
    "nan-values": (_nan_fill, "holds NaN or inf values"),
    "one-bit-flipped": (_flip_a_bit, "its SHA-256 differs from config.json's"),
    "missing": (lambda p: p.unlink(), "weight file model.safetensors is missing"),
    "card-not-json": (lambda p: (p.parent / "config.json").write_text("{oops"), "config.json is not valid JSON"),
    "card-unknown-arch": (
        lambda p: (p.parent / "config.json").write_text(json.dumps({**json.loads((p.parent / "config.json").read_text()), "arch": "gpt-9"})),
        "does not describe a model musiclab can build (unknown architecture 'gpt-9'",
    ),
    "card-empty": (lambda p: (p.parent / "config.json").write_text("{}"), "does not describe a model musiclab can build (no 'arch' entry)"),
    "card-a-list": (lambda p: (p.parent / "config.json").write_text("[1, 2]"), "config.json holds a list"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_weight_file_makes_only_that_model_unavailable(tmp_path, kind):
    for name in ("lstm", "pianoroll-lstm"):
        _copy_weights(tmp_path, name)
    root = tmp_path / "fresh"  # new paths: load_model caches by path
    shutil.copytree(tmp_path, root, ignore=shutil.ignore_patterns("fresh"))
    corrupt, words = CORRUPTIONS[kind]
    corrupt(root / "lstm" / "model.safetensors")
    rows = {r["name"]: r for r in list_models(root)}
    assert rows["lstm"]["status"] == "unavailable" and words in rows["lstm"]["error"], rows["lstm"]["error"]
    assert "'lstm'" in rows["lstm"]["error"]
    assert rows["pianoroll-lstm"]["status"] == "ok" and rows["pianoroll-lstm"]["error"] is None
    with pytest.raises(ValueError, match="lstm"):
        load_model("lstm", root, device="cpu")


def test_the_other_models_keep_generating_next_to_a_corrupt_one(tmp_path):
    from musiclab import generate

    for name in ("lstm", "pianoroll-lstm"):
        _copy_weights(tmp_path, name)
    root = tmp_path / "fresh"
    shutil.copytree(tmp_path, root, ignore=shutil.ignore_patterns("fresh"))
    (root / "lstm" / "model.safetensors").write_bytes(b"")
    assert [r["status"] for r in list_models(root)] == ["unavailable", "ok"]
    take = generate(load_model("pianoroll-lstm", root, device="cpu"), make_midi(seconds=6), seed_seconds=4, seconds=3)
    assert len(take[0].midi.instruments[-1].notes) > 0


# ---- generation jobs ----


class _SteppedNet:
    """A shipped network whose every ``step`` first calls ``before()``."""

    def __init__(self, net, before):
        self._net, self._before = net, before

    def __getattr__(self, name):
        return getattr(self._net, name)

    def step(self, x, state):
        self._before()
        return self._net.step(x, state)


class FaultyModel:
    """The real shipped model, except that its ``fail_at``-th step raises ``error`` (a fault
    inside generate(): out of memory, a torch bug, ...)."""

    def __init__(self, model, fail_at: int, error: BaseException):
        self._model, self._fail_at, self._error, self._steps = model, fail_at, error, 0
        self.net = _SteppedNet(model.net, self._count)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def _count(self):
        self._steps += 1
        if self._steps >= self._fail_at:
            raise self._error


class HeldModel:
    """The real shipped model, except that every step first waits (up to 20 ms) for ``release``:
    a job on it holds its slot until stopped, without burning the cores the other jobs need."""

    def __init__(self, model):
        self._model, self.release = model, threading.Event()
        self.net = _SteppedNet(model.net, lambda: self.release.wait(0.02))

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.fixture(scope="module")
def lstm():
    return load_model("lstm")


@pytest.fixture
def held(lstm):
    return HeldModel(lstm)


@pytest.fixture(scope="module")
def seed():
    return make_midi(seconds=8)


def _finish(*all_jobs: Job) -> None:
    for j in all_jobs:
        j.stop()
    for j in all_jobs:
        assert j.wait(120), "a job did not end after stop()"


def _hold_every_slot(held, seed) -> list[Job]:
    """MAX_RUNNING jobs on the held model, once they all run (each holds a slot until stopped)."""
    busy = [Job(held, seed, seed_seconds=4, seconds=240) for _ in range(jobs.MAX_RUNNING)]
    deadline = time.time() + 30
    while any(j.state == "queued" for j in busy) and time.time() < deadline:
        time.sleep(0.05)
    return busy


def test_exception_inside_generate_fails_the_job_with_a_message_and_frees_its_slot(lstm, seed):
    bad = [Job(FaultyModel(lstm, 20, RuntimeError("simulated: out of memory")), seed, seed_seconds=4, seconds=30)
           for _ in range(jobs.MAX_RUNNING + 1)]  # fmt: skip
    try:
        for j in bad:
            assert j.wait(120)
            assert j.state == "failed" and j.result is None
            assert j.error == "generation failed unexpectedly (RuntimeError: simulated: out of memory)"
        good = Job(lstm, seed, seed_seconds=4, seconds=3, random_seed=1)  # every slot came back
        assert good.wait(120) and good.state == "done", good.error
        assert len(good.result[0].midi.instruments[-1].notes) > 0
    finally:
        _finish(*bad)


def test_stop_keeps_what_was_made_and_a_queued_stop_says_so(lstm, held, seed):
    running = [Job(held, seed, seed_seconds=4, seconds=240, random_seed=i) for i in range(jobs.MAX_RUNNING)]
    waiting = Job(lstm, seed, seed_seconds=4, seconds=3)
    try:
        deadline = time.time() + 60
        while not all(j.state == "running" and j.done >= 16 for j in running) and time.time() < deadline:
            time.sleep(0.1)
        assert waiting.state == "queued" and waiting.queue_position == 0  # first in line, behind MAX_RUNNING
        waiting.stop()
        assert waiting.wait(10) and waiting.state == "failed" and waiting.error == "stopped while waiting in the queue"
        running[0].stop()
        assert running[0].wait(30) and running[0].state == "done"
        take = running[0].result[0]
        assert take.info["stopped_early"] and len(take.midi.instruments[-1].notes) > 0
        assert take.midi.get_end_time() < 4 + 240  # partial, but kept
    finally:
        _finish(*running, waiting)


def test_a_live_roll_is_drawn_only_while_no_other_generation_runs_or_waits(lstm, held, seed):
    alone = Job(lstm, seed, seed_seconds=4, seconds=90, random_seed=1)
    assert alone.wait(120) and alone.state == "done" and alone.preview is not None
    holder = Job(held, seed, seed_seconds=4, seconds=240)  # another user's generation, holding a slot
    try:
        deadline = time.time() + 30
        while holder.state != "running" and time.time() < deadline:
            time.sleep(0.05)
        crowded = Job(lstm, seed, seed_seconds=4, seconds=90, random_seed=1)
        assert crowded.wait(120) and crowded.state == "done" and crowded.preview is None  # a progress bar only
        assert crowded.result[0].info["tokens"] == alone.result[0].info["tokens"]  # the same take all the same
    finally:
        _finish(holder)


def test_the_queue_is_first_in_first_out(lstm, held, seed):
    busy = _hold_every_slot(held, seed)
    line = [Job(lstm, seed, seed_seconds=4, seconds=2, random_seed=i) for i in range(4)]
    try:
        assert [j.queue_position for j in line] == [0, 1, 2, 3]
        _finish(*busy)  # free every slot at once: the oldest waiting jobs must go first
        for j in line:
            assert j.wait(120) and j.state == "done", j.error
        starts = [j.started for j in line]
        assert starts == sorted(starts)
    finally:
        _finish(*busy, *line)


def test_in_session_generations_wait_their_turn_in_the_same_queue(lstm, held, seed):
    """A/B rounds and Evaluate generate in the page's own thread through jobs.slot(): with every
    slot busy they wait behind the jobs queued before them, and a Job queued later waits behind them."""
    busy = _hold_every_slot(held, seed)
    got, entered = [], threading.Event()

    def in_session():
        with jobs.slot():
            entered.set()
            got.append(generate(lstm, seed, seed_seconds=4, seconds=2, random_seed=3))

    t = threading.Thread(target=in_session)
    t.start()
    later = Job(lstm, seed, seed_seconds=4, seconds=2, random_seed=4)
    try:
        time.sleep(0.5)
        assert not entered.is_set() and later.queue_position == 1  # the in-session request is ahead
        _finish(*busy)
        t.join(120)
        assert got and len(got[0][0].midi.instruments[-1].notes) > 0
        assert later.wait(120) and later.state == "done", later.error
    finally:
        _finish(*busy, later)
        t.join(120)


def test_a_job_nobody_watches_any_more_stops(monkeypatch, lstm, held, seed):
    monkeypatch.setattr(jobs, "ABANDONED_S", 1.0)
    watched_once = Job(held, seed, seed_seconds=4, seconds=240)
    never_watched = Job(lstm, seed, seed_seconds=4, seconds=4)  # CLI-style: never polled, never abandoned
    try:
        watched_once.touch()  # the page polled it once, then the tab closed
        assert watched_once.wait(60), "an abandoned job kept its slot"
        assert watched_once.result[0].info["stopped_early"]
        assert never_watched.wait(120) and not never_watched.result[0].info["stopped_early"]
    finally:
        _finish(watched_once, never_watched)


def _compose_with_one_take() -> AppTest:
    at = AppTest.from_file(COMPOSE, default_timeout=180)
    at.run()
    at.slider(key="seconds").set_value(5)
    at.button(key="generate").click().run()
    _poll(at)
    assert len(at.session_state["takes"]) == 1 and not at.exception
    return at


def _poll(at: AppTest, timeout: float = 180) -> None:
    """Rerun as the page's live fragment would, until the job is collected."""
    deadline = time.time() + timeout
    while "job" in at.session_state and time.time() < deadline:
        time.sleep(0.3)
        at.run()
    assert "job" not in at.session_state


def test_a_generation_that_dies_shows_why_and_keeps_the_takes(lstm):
    at = _compose_with_one_take()
    before = [t["id"] for t in at.session_state["takes"]]
    seed = load_midi(at.session_state["takes"][0]["midi"])
    at.session_state["job"] = Job(FaultyModel(lstm, 5, MemoryError()), seed, seed_seconds=4, seconds=10)
    at.run()
    _poll(at)
    assert not at.exception
    err = " ".join(e.value for e in at.error)
    assert "Could not generate: generation failed unexpectedly (MemoryError" in err
    assert [t["id"] for t in at.session_state["takes"]] == before
    assert len(take_rolls(at)) == 1 and len(at.get("audio")) == 1  # the take is still shown and playable
    at.button(key="generate").click().run()  # and the page still generates
    _poll(at)
    assert len(at.session_state["takes"]) == 2 and not at.error


def test_stop_on_the_page_keeps_a_partial_take():
    at = _compose_with_one_take()
    # a job that outlasts the click's own run (which awaits a job up to 1.5 s, and one due to end
    # within 1 s): 4 x 120 s of bigru, ~10 s here (120 s of lstm alone, ~2 s, could end in it)
    at.selectbox(key="compose_model").set_value("bigru")
    at.slider(key="seconds").set_value(120)
    at.slider(key="variations").set_value(4)
    at.button(key="generate").click().run()
    deadline = time.time() + 60
    while at.session_state["job"].done < 16 and time.time() < deadline:
        time.sleep(0.2)
    at.button(key="job_stop").click().run()
    _poll(at)
    takes = at.session_state["takes"]
    assert len(takes) == 5 and all(t["info"]["stopped_early"] for t in takes[1:]) and not at.error


def test_a_running_job_estimates_its_end(lstm, seed):
    """eta_seconds (what a page uses to await a job about to end, ui.NEAR_END_S): unknown before
    progress, then finite and shrinking, None once the job has ended."""
    job = Job(lstm, seed, seed_seconds=4, seconds=240, random_seed=3)
    try:
        deadline = time.time() + 60
        while job.done < 64 and time.time() < deadline:
            time.sleep(0.05)
        first = job.eta_seconds
        assert first is not None and 0 < first < 600
        while job.done < job.total // 2 and time.time() < deadline + 60:  # half the work left: half the wait,
            time.sleep(0.05)  # unless the box slowed down twofold meanwhile (a 0.5 s window was not enough)
        later = job.eta_seconds
        assert later is not None and later < first
    finally:
        job.stop()
        assert job.wait(60)
    assert job.eta_seconds is None


def test_past_max_waiting_a_request_is_refused_at_once_and_the_queue_goes_on(lstm, held, seed, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_WAITING", 2)
    busy = _hold_every_slot(held, seed)
    line = [Job(lstm, seed, seed_seconds=4, seconds=2, random_seed=i) for i in range(2)]
    try:
        t0 = time.perf_counter()
        with pytest.raises(
            jobs.Busy, match=r"the server is busy: 2 requests are already waiting .* \(the limit is 2\)"
        ):
            Job(lstm, seed, seed_seconds=4, seconds=2)
        with pytest.raises(jobs.Busy):  # A/B and Evaluate queue through slot(): refused the same way
            with jobs.slot():
                pass
        assert time.perf_counter() - t0 < 1.0  # refused at once, not after a wait
        assert [j.queue_position for j in line] == [0, 1]  # those already waiting keep their places
        _finish(*busy)
        for j in line:
            assert j.wait(120) and j.state == "done", j.error
        late = Job(lstm, seed, seed_seconds=4, seconds=2)  # room again
        assert late.wait(120) and late.state == "done"
    finally:
        _finish(*busy, *line)
