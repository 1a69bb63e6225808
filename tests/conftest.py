"""Shared fixtures: small MIDI files made with pretty_midi, a tiny trained-shape model dir,
and a real Streamlit server + Debian Chromium (Playwright) for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Test tiers (`make test-fast` runs the unit tier): a file's tier is what it drives. Unit: functions
# and small models in this process. Integration: pages through AppTest, the CLI and torchrun as
# subprocesses, shipped models end to end. Browser: a real Streamlit server and Chromium.
INTEGRATION = {
    "test_ab_page.py", "test_cli.py", "test_compose_page.py", "test_ddp.py", "test_evaluate_page.py", "test_fast.py",
    "test_faults.py", "test_generate.py", "test_jsb.py", "test_packaging.py",
}  # fmt: skip
CHROMIUM = os.environ.get("MUSICLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("browser"):
            continue
        tier = "integration" if item.path.name in INTEGRATION or item.get_closest_marker("integration") else "unit"
        item.add_marker(getattr(pytest.mark, tier))


def make_midi(notes=None, seconds: float = 12.0, program: int = 0, tempo: float = 120.0, drums: bool = False):
    """A PrettyMIDI with a C-major pattern (or ``notes`` = [(pitch, start, end)]), seconds."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(program=program, is_drum=drums)
    if notes is None:
        scale = [60, 62, 64, 65, 67, 69, 71, 72]
        step = 60.0 / tempo / 2  # eighth notes
        notes = [
            (scale[i % 8] - (12 if (i // 8) % 2 else 0), i * step, (i + 1) * step) for i in range(int(seconds / step))
        ]
    for p, s, e in notes:
        inst.notes.append(pretty_midi.Note(90, p, s, e))
    pm.instruments.append(inst)
    return pm


@pytest.fixture
def midi_file(tmp_path) -> Path:
    path = tmp_path / "seed.mid"
    make_midi().write(str(path))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(db_dir: Path, **env_vars: str):
    """A real `streamlit run app.py` on a free loopback port (``env_vars`` added to its
    environment, e.g. MUSICLAB_WEIGHTS); yields its URL."""
    port = _free_port()
    env = dict(os.environ, MUSICLAB_DB=str(db_dir / "votes.sqlite"), **env_vars)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {proc.returncode}") from None
                time.sleep(0.3)
        else:
            raise RuntimeError("streamlit did not start within 90 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Debian chromium driven by Playwright (it cannot download its own browsers here)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()


def take_rolls(at) -> list:
    """The takes' piano rolls (not the seed preview's)."""
    return [c for c in at.get("plotly_chart") if not c.proto.id.endswith("-seed_roll")]


def seed_roll(at) -> dict | None:
    """The seed preview's figure (plotly JSON), or None if the page shows none."""
    rolls = [c for c in at.get("plotly_chart") if c.proto.id.endswith("-seed_roll")]
    return json.loads(rolls[0].proto.spec) if rolls else None


def track_boxes(at) -> list:
    """Compose's "Tracks to continue" checkboxes, in track order."""
    return [c for c in at.checkbox if c.key and "_track_" in c.key]


def chosen_tracks(at) -> list[int]:
    return [i for i, box in enumerate(track_boxes(at)) if box.value]


def choose_tracks(at, tracks: list[int]) -> None:
    for i, box in enumerate(track_boxes(at)):
        box.set_value(i in tracks)


class Postgres:
    """A throwaway PostgreSQL server (Debian's ``postgresql`` package) on a free loopback port.

    Its data folder is a fresh temp dir; as root, the server runs as the ``postgres`` user (it
    refuses root). ``url`` is a ``postgresql://`` URL for musiclab's vote store."""

    def __init__(self):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            pytest.fail("PostgreSQL not found in /usr/lib/postgresql: `make test` installs Debian's postgresql")
        self.bin = bins[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="musiclab-pg-"))
        self.port = _free_port()
        self.url = f"postgresql://musiclab@127.0.0.1:{self.port}/postgres"
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "musiclab", "-A", "trust", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        out = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{tool} failed: {out.stderr[-500:]}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def kill(self) -> None:
        """Stop at once, as a crash would (no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    pg = Postgres()
    pg.start()
    yield pg
    pg.close()


# ---- songs and a small trained flagship (bar/note model) for the tests of infill, accompany, Edit ----
CHORDS = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]  # C Am F G


def merged(pm: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """The same song on one track (a solo-piano file)."""
    one = pretty_midi.Instrument(0)
    one.notes = [n for i in pm.instruments for n in i.notes]
    pm.instruments = [one]
    return pm


def song(seed: int = 0, bars: int = 16, tempo: float = 100.0, pedal: bool = False) -> pretty_midi.PrettyMIDI:
    """A two-track song: MELODY (eighths over the chords) and PIANO (the chords on beats 1 and 3)."""
    rng = np.random.default_rng(seed)
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    beat = 60.0 / tempo
    mel, acc = pretty_midi.Instrument(0, name="MELODY"), pretty_midi.Instrument(0, name="PIANO")
    for b in range(bars):
        chord = CHORDS[b % 4]
        for half in range(2):
            t = (b * 4 + half * 2) * beat
            for p in chord:
                acc.notes.append(pretty_midi.Note(70, p - 12, t, t + 2 * beat))
        for e in range(8):
            p = int(rng.choice(chord)) + 12
            t = (b * 4 + e * 0.5) * beat
            mel.notes.append(pretty_midi.Note(90, p, t, t + 0.5 * beat))
    if pedal:
        acc.control_changes += [
            pretty_midi.ControlChange(64, 127, 0.0),
            pretty_midi.ControlChange(64, 0, bars * 4 * beat),
        ]
    pm.instruments += [mel, acc]
    return pm


POP909_PICKUP = 0.9  # seconds before the first downbeat in make_song_corpus's POP909 songs (1.5 beats)


def make_song_corpus(root: Path) -> dict[str, str]:
    """Three little sources laid out like piano-midi.de, ASAP and POP909 (+ one broken file)."""
    for i in range(6):
        pm = merged(song(i))
        (root / "piano" / "comp").mkdir(parents=True, exist_ok=True)
        pm.write(str(root / "piano" / "comp" / f"p{i}.mid"))
    for piece in range(4):
        d = root / "asap" / "Comp" / "Work" / f"piece{piece}"
        d.mkdir(parents=True)
        for perf in range(3):  # three "performances" of one piece: near-duplicates, one split
            pm = merged(song(100 + piece, tempo=100 + 5 * perf))
            del pm.instruments[0].notes[10 * perf : 10 * perf + 3]  # each player misses other notes
            pm.write(str(d / f"Player{perf:02d}.mid"))
    for s in range(6):  # as POP909 has them: a pickup before the first downbeat, one beat-row a beat, chords
        d = root / "pop909" / f"{s:03d}"
        d.mkdir(parents=True)
        pm, beat = song(200 + s), 60.0 / 100  # song()'s tempo
        for inst in pm.instruments:
            for n in inst.notes:
                n.start, n.end = n.start + POP909_PICKUP, n.end + POP909_PICKUP
        pm.write(str(d / f"{s:03d}.mid"))
        rows = [f"{POP909_PICKUP + k * beat:.4f} 1.0 {float(k % 4 == 0)}\n" for k in range(64)]
        (d / "beat_midi.txt").write_text("".join(rows))
        names = ["C:maj", "A:min", "F:maj", "G:maj"]  # CHORDS, a bar each
        (d / "chord_midi.txt").write_text("".join(f"{POP909_PICKUP + b * 4 * beat:.4f}\t{POP909_PICKUP + (b + 1) * 4 * beat:.4f}\t"
                                                  f"{names[b % 4]}\n" for b in range(16)))  # fmt: skip
    (root / "piano" / "comp" / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    return {"piano": str(root / "piano"), "asap": str(root / "asap"), "pop909": str(root / "pop909")}


def use_weights(monkeypatch, root: Path) -> None:
    """Make the app and the API read model folders from ``root`` (caches cleared)."""
    import streamlit as st

    from musiclab.serving import weights

    monkeypatch.setattr(weights, "WEIGHTS_DIR", root)
    weights.clear_cache()
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="session")
def flagship_weights(tmp_path_factory) -> Path:
    """A weights folder with a small flagship-shaped model trained here on ``make_song_corpus``
    (a real bar/note model, 2 layers, 128-token context), exported as a shipped model is, beside
    links to the real shipped models."""
    from musiclab.training.export import export
    from musiclab.training.pretrain import PretrainConfig, train

    root = tmp_path_factory.mktemp("flagship")
    cfg = PretrainConfig(run=str(root / "run"), out="", data=make_song_corpus(root / "corpus"), total_steps=120,
                         batch_size=4, warmup_steps=2, lr=3e-3, eval_every=120, seed=3,
                         model={"n_layer": 2, "n_head": 2, "n_embd": 64, "n_ff": 128, "dropout": 0.1},
                         examples={"block_size": 128, "suffix_tokens": 32})  # fmt: skip
    train(cfg, log=lambda *a: None)
    weights = root / "weights"
    weights.mkdir()
    for real in (ROOT / "weights").iterdir():
        if real.is_dir() and real.name != "flagship":
            (weights / real.name).symlink_to(real)
    export(root / "run", weights / "flagship")
    return weights


@pytest.fixture(scope="session")
def tiny_model(flagship_weights):
    """The small flagship trained (augmentation on) and shipped by ``flagship_weights``."""
    from musiclab.serving.weights import load_model

    return load_model("flagship", root=flagship_weights, device="cpu")
