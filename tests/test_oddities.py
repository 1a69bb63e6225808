"""Real-world oddities that must LOAD, each file built byte by byte; odd requests (huge
uploads, NaN/inf or out-of-range settings, hostile URL parameters) that must get a clear
message; and static checks that there is no way in (no unpickling, no HTML, no paths from users)."""

from __future__ import annotations

import ast
import contextlib
import io
import struct
import time
import tomllib
from pathlib import Path

import pytest

from musiclab import MidiError, load_midi
from musiclab.midi.checks import LIMITS, TICK_BUDGET
from musiclab.midi.io import load_midi_with_notice
from tests.conftest import make_midi

ROOT = Path(__file__).resolve().parent.parent

EOT = b"\x00\xff\x2f\x00"
C4_E4 = b"\x00\x90\x3c\x50" + b"\x83\x60\x3c\x00" + b"\x00\x40\x50" + b"\x83\x60\x40\x00"  # 2 notes, running status


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def chunk(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack(">I", len(body)) + body


def smf(fmt: int, division: int, *tracks: bytes, n_tracks: int | None = None) -> bytes:
    header = chunk(b"MThd", struct.pack(">HHH", fmt, len(tracks) if n_tracks is None else n_tracks, division))
    return header + b"".join(chunk(b"MTrk", t) for t in tracks)


def notes(pm) -> list[tuple[int, float, float]]:
    """(pitch, start s, end s) of every note, sorted, times rounded to 1 ms."""
    return sorted((n.pitch, round(n.start, 3), round(n.end, 3)) for i in pm.instruments for n in i.notes)


TWO_NOTES = [(60, 0.0, 0.5), (64, 0.5, 1.0)]  # C4_E4 at 480 ticks per beat, 120 bpm


def test_running_status_across_meta_events():
    """Writers that keep running status over a meta event (text, marker) between two notes."""
    body = b"\x00\x90\x3c\x50" + b"\x00\xff\x01\x05hello" + b"\x83\x60\x3c\x00" + b"\x00\xff\x06\x01M"
    body += b"\x00\x40\x50\x83\x60\x40\x00" + EOT  # still 0x90: no status byte after the marker
    assert notes(load_midi(smf(0, 480, body))) == TWO_NOTES


@pytest.mark.parametrize(
    "fps_byte, fps, per_frame", [(0xE8, 24, 4), (0xE7, 25, 40), (0xE3, 29.97, 4), (0xE2, 30, 80), (0xE7, 25, 1)]
)
def test_smpte_timing_loads_with_times_in_seconds(fps_byte, fps, per_frame):
    """SMPTE division: a tick is 1/(fps x ticks-per-frame) s whatever the tempo events say."""
    tps = fps * per_frame  # ticks per second
    one_s = round(tps)
    tempo = b"\x00\xff\x51\x03\x0f\x42\x40"  # 60 bpm: must be ignored under SMPTE timing
    body = tempo + b"\x00\x90\x3c\x50" + vlq(one_s) + b"\x3c\x00" + b"\x00\x40\x50" + vlq(2 * one_s) + b"\x40\x00" + EOT
    pm = load_midi(smf(0, (fps_byte << 8) | per_frame, body))
    got = notes(pm)
    assert [p for p, _, _ in got] == [60, 64]
    assert got[0][2] == pytest.approx(one_s / tps, abs=2e-3)
    assert got[1][2] == pytest.approx(3 * one_s / tps, abs=2e-3)
    _, tempi = pm.get_tempo_changes()
    assert tempi[0] == pytest.approx(120 * 29.97 / 30 if fps == 29.97 else 120, abs=0.01)  # rewritten to a 120 bpm grid


def test_smpte_with_an_impossible_frame_rate_says_so():
    with pytest.raises(MidiError, match="SMPTE timing with 26 frames/s"):
        load_midi(smf(0, (0x100 - 26) << 8 | 40, C4_E4 + EOT))


def test_type_2_patterns_are_overlaid():
    pm = load_midi(smf(2, 480, C4_E4 + EOT, b"\x00\x91\x43\x50\x87\x40\x43\x00" + EOT))
    assert notes(pm) == [(60, 0.0, 0.5), (64, 0.5, 1.0), (67, 0.0, 1.0)]


def test_zero_length_tracks_and_missing_end_of_track():
    assert notes(load_midi(smf(1, 480, b"", C4_E4 + EOT, b""))) == TWO_NOTES
    assert notes(load_midi(smf(0, 480, C4_E4))) == TWO_NOTES  # no FF 2F 00 at the end


def test_unknown_chunks_are_skipped():
    data = smf(1, 480, C4_E4 + EOT)
    header, track = data[:14], data[14:]
    vendor = chunk(b"XFIH", b"\x01\x02 Yamaha XF info") + chunk(b"CM10", b"")
    assert notes(load_midi(header + vendor + track + chunk(b"XFKM", b"karaoke"))) == TWO_NOTES


def test_header_oddities_wrong_track_count_and_long_header():
    assert notes(load_midi(smf(1, 480, C4_E4 + EOT, n_tracks=7))) == TWO_NOTES  # says 7, has 1
    data = smf(0, 480, C4_E4 + EOT)
    longer = b"MThd" + struct.pack(">I", 10) + data[8:14] + b"\x00\x00\x00\x00" + data[14:]  # 4 extra header bytes
    assert notes(load_midi(longer)) == TWO_NOTES


@pytest.mark.parametrize("ppq", [1, 24, 32767])
def test_extreme_resolutions(ppq):
    body = b"\x00\x90\x3c\x50" + vlq(ppq) + b"\x3c\x00" + b"\x00\x40\x50" + vlq(ppq) + b"\x40\x00" + EOT
    assert notes(load_midi(smf(0, ppq, body))) == TWO_NOTES


def test_long_piece_at_32767_ppq_is_regridded_not_refused():
    """40 min at 32767 ppq = 157M ticks: pretty_midi would keep a float per tick (1.2 GB);
    load_midi puts it on a coarser grid (<= TICK_BUDGET ticks) and times stay within 1 ms."""
    ppq, beats = 32767, 4800  # 40 min at 120 bpm
    body = b"\x00\x90\x3c\x50" + vlq(ppq) + b"\x3c\x00" + vlq(ppq * (beats - 2)) + b"\x40\x50" + vlq(ppq) + b"\x40\x00"
    pm = load_midi(smf(0, ppq, body + EOT))
    assert pm.resolution * beats <= TICK_BUDGET
    assert notes(pm) == [(60, 0.0, 0.5), (64, pytest.approx(2399.5, abs=1e-3), pytest.approx(2400.0, abs=1e-3))]


def test_tens_of_thousands_of_tempo_events_load_in_bounded_time():
    """A tempo map from a performance: 40,000 tempo events, one every 10 ticks."""
    n = 40_000
    tempi = [400_000 + (i % 200) * 1000 for i in range(n)]
    meta = b"".join(vlq(10 if i else 0) + b"\xff\x51\x03" + t.to_bytes(3, "big") for i, t in enumerate(tempi))
    data = smf(1, 480, meta + EOT, b"\x00\x90\x3c\x50" + vlq(10 * n) + b"\x3c\x00" + EOT)
    t0 = time.perf_counter()
    pm = load_midi(data)
    seconds = time.perf_counter() - t0
    print(f"\n{n:,} tempo events: loaded in {seconds:.2f} s")
    expected_end = sum(t * 10 / 480 / 1e6 for t in tempi)  # each tempo holds for 10 ticks
    assert pm.instruments[0].notes[0].end == pytest.approx(expected_end, rel=1e-6)
    assert len(pm.get_tempo_changes()[0]) > 30_000
    assert seconds < 30  # a bound, not a benchmark: the unbounded reader took minutes at 400k
    too_many = b"".join(b"\x01\xff\x51\x03\x07\xa1\x20" for _ in range(LIMITS.max_meta + 1))
    t0 = time.perf_counter()
    pm, notice = load_midi_with_notice(smf(1, 480, too_many + EOT, C4_E4 + EOT))
    seconds = time.perf_counter() - t0
    print(f"{LIMITS.max_meta + 1:,} tempo events: the first {LIMITS.max_meta:,} kept in {seconds:.2f} s")
    assert notes(pm) == TWO_NOTES and f"{LIMITS.max_meta:,} of them meta events" in notice
    assert len(pm.get_tempo_changes()[0]) <= LIMITS.max_meta and seconds < 60
    at_start = b"\x00\xff\x51\x03\x07\xa1\x20" * (LIMITS.max_meta + 1)  # all at tick 0: nothing to keep
    with pytest.raises(MidiError, match="at its very start; that is over the limit"):
        load_midi(smf(1, 480, at_start + EOT, C4_E4 + EOT))


def test_impossible_meta_events_are_ignored_not_fatal():
    """Tempo 0 (a division by zero in pretty_midi), a key with 9 flats, a 0/4 meter, a short tempo."""
    odd = b"\x00\xff\x51\x03\x00\x00\x00" + b"\x00\xff\x59\x02\xf7\x00" + b"\x00\xff\x58\x04\x00\x02\x18\x08"
    odd += b"\x00\xff\x51\x01\x07" + b"\x00\xff\x59\x02\x02\x05"  # tempo with 1 data byte; mode 5
    pm = load_midi(smf(0, 480, odd + C4_E4 + EOT))
    assert notes(pm) == TWO_NOTES
    assert pm.key_signature_changes == [] and pm.time_signature_changes == []


def test_piled_up_note_ons_load():
    """30,000 note-ons of one key at one tick, each closed at that same tick (so none has a
    length), then a real tune: the pile is dropped, the tune is kept."""
    n = 30_000
    body = b"\x00\x90" + b"\x3c\x50\x00" * n + b"\x3c\x00\x00" * (n - 1) + b"\x3c\x00" + C4_E4 + EOT
    assert notes(load_midi(smf(0, 480, body))) == TWO_NOTES


def test_absurd_tempo_is_refused_with_the_limit():
    fast = b"\x00\xff\x51\x03\x00\x00\x01"  # 1 us per beat = 60,000,000 bpm
    with pytest.raises(MidiError, match="60,000,000 bpm; the limit is 1000 bpm"):
        load_midi(smf(0, 480, fast + C4_E4 + EOT))


def test_upload_over_the_size_limit_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.mid"
    with big.open("wb") as f:  # sparse: 4 MB + 1 byte
        f.seek(LIMITS.max_bytes)
        f.write(b"\x00")
    for src in (big, big.read_bytes()):
        with pytest.raises(MidiError, match=r"the file is 4\.2 MB; the limit is 4\.2 MB"):
            load_midi(src)
    with pytest.raises(MidiError, match="cannot read"):
        load_midi(tmp_path)  # a folder


def test_absurd_lengths_inside_the_file():
    with pytest.raises(MidiError, match="truncated"):  # a track claiming 4 GB
        load_midi(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk\xff\xff\xff\xff" + C4_E4)
    with pytest.raises(MidiError, match="truncated"):  # a header claiming 4 GB
        load_midi(b"MThd\xff\xff\xff\xff" + struct.pack(">HHH", 0, 1, 480) + chunk(b"MTrk", C4_E4 + EOT))
    with pytest.raises(MidiError, match="runs past the end"):  # a text event claiming 268 MB
        load_midi(smf(0, 480, b"\x00\xff\x01\xff\xff\xff\x7fabc" + C4_E4 + EOT))


# ---- settings from the command line: one line "error: ...", exit 2, never a traceback ----


@pytest.fixture(scope="module")
def seed_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("seed") / "seed.mid"
    make_midi(seconds=6).write(str(p))
    return p


def cli(*args) -> tuple[int, str]:
    from musiclab.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in args])
    return code, err.getvalue()


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--seconds", "nan", "expected a finite number"),
        ("--seconds", "inf", "expected a finite number"),
        ("--seconds", "1e308", "over the limit of 300 s"),
        ("--seconds", "0", "expected a positive number of seconds"),
        ("--seed-seconds", "-1", "expected a positive number of seconds"),
        ("--seed-seconds", "Infinity", "expected a finite number"),
        ("--temperature", "1e300", "expected 0 to 5"),
        ("--top-k", "-1", "expected an integer >= 0"),
        ("--top-k", "2.5", "expected a number"),
        ("--top-p", "NaN", "expected a finite number"),
        ("--top-p", "0", "expected a number in (0, 1]"),
        ("--min-p", "1", "expected a number in [0, 1)"),
        ("--repetition-penalty", "0.5", "expected 1 to 10"),
        ("--variations", "1000", "expected 1 to 8"),
        ("--random-seed", "99999999999999999999999", "expected 0 to 4294967295"),
        ("--random-seed", "-5", "expected 0 to 4294967295"),
        ("--tracks", "abc", "expected comma-separated track numbers"),
        ("--tracks", "0", "track numbers start at 1"),
        ("--tracks", "9", "--tracks 9 does not exist; the seed has tracks 1..1"),
        ("--wav", "/no/such/folder/x.wav", "folder '/no/such/folder' does not exist"),
        ("--out", "/no/such/folder/x.mid", "folder '/no/such/folder' does not exist"),
    ],
)
def test_generate_settings_out_of_range_get_one_clear_line(seed_path, tmp_path, flag, value, words):
    args = {"--model": "lstm", "--seed": seed_path, "--seed-seconds": 4, "--seconds": 3, "--out": tmp_path / "o.mid"}
    args[flag] = value
    code, err = cli("generate", *[x for kv in args.items() for x in kv])
    assert code == 2 and err.startswith("error: ") and words in err, err
    assert err.count("\n") == 1 and not (tmp_path / "o.mid").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["bench", "generate", "--seconds", "nan"], "expected a finite number"),
        (["bench", "generate", "--repeats", "0"], "--repeats >= 1"),
        (["bench", "generate", "--threads", "0"], "--threads must be at least 1"),
        (["evaluate", "SEED", "--seed-end", "inf"], "expected a finite number"),
        (["check", "FOLDER"], "cannot read"),
    ],
)
def test_other_commands_refuse_absurd_values(seed_path, args, words):
    args = [str(seed_path) if a == "SEED" else str(seed_path.parent) if a == "FOLDER" else a for a in args]
    code, err = cli(*args)
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err


# ---- the one URL parameter a page reads: ?listener= on the A/B page ----


@pytest.mark.parametrize(
    "value",
    ["<script>alert(1)</script>", "../../etc/passwd", "a" * 20_000, "0123456789ABCDEF", "é" * 16, "0123456789abcde\n"],
    ids=["html", "path", "20k-chars", "upper-hex", "unicode", "newline"],
)
def test_hostile_listener_parameter_is_replaced(tmp_path, monkeypatch, value):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MUSICLAB_DB", str(tmp_path / "votes.sqlite"))
    at = AppTest.from_file(str(ROOT / "pages" / "ab.py"), default_timeout=120)
    at.query_params["listener"] = value
    at.run()
    assert not at.exception
    lid = at.query_params["listener"]
    assert lid != value and len(lid) == 16 and set(lid) <= set("0123456789abcdef")
    assert value not in " ".join(m.value for m in at.markdown)


# ---- no way in: static checks over the code the server runs ----

CODE = sorted((ROOT / "musiclab").rglob("*.py")) + sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]
UI = [p for p in CODE if p.parent.name in ("pages", "app") or p.name == "app.py"]
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def test_nothing_is_unpickled_or_evaluated():
    """Weights load through safetensors only; no pickle, torch.load, eval or exec anywhere."""
    bad = []
    for path in CODE:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                bad += [f"{_where(path, node)} imports {n}" for n in names if n and n.split(".")[0] in UNPICKLERS]
            elif isinstance(node, ast.Call):
                f = node.func
                if (
                    isinstance(f, ast.Attribute)
                    and f.attr in ("load", "loads")
                    and getattr(f.value, "id", "") == "torch"
                ):
                    bad.append(f"{_where(path, node)} torch.{f.attr}")
                if isinstance(f, ast.Name) and f.id in ("eval", "exec", "__import__"):
                    bad.append(f"{_where(path, node)} {f.id}()")
                for kw in node.keywords:
                    value = getattr(kw.value, "value", None)
                    if (kw.arg, value) in (
                        ("allow_pickle", True),
                        ("weights_only", False),
                        ("trust_remote_code", True),
                    ):
                        bad.append(f"{_where(path, node)} {kw.arg}={value}")
    assert not bad, bad
    weights = (ROOT / "musiclab" / "serving" / "weights.py").read_text()
    assert "from safetensors.torch import load_model" in weights


def test_no_html_is_sent_from_python():
    """No unsafe_allow_html, st.html or components.html: every user string is rendered as text/markdown."""
    bad = []
    for path in CODE:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Attribute) and f.attr == "html":
                    bad.append(f"{_where(path, node)} .html()")
                bad += [
                    f"{_where(path, node)} unsafe_allow_html" for kw in node.keywords if kw.arg == "unsafe_allow_html"
                ]
    assert not bad, bad


def test_uploads_stay_in_memory_and_the_vote_file_is_the_servers_choice():
    """The UI never touches the file system: an upload is used through getvalue() (bytes into
    load_midi) and its name only as a label; VoteStore() takes no path from the page; the only
    URL parameter read is ?listener=."""
    bad = []
    for path in UI:
        tree = _tree(path)
        uploads = {
            t.id
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and "file_uploader" in ast.unparse(n.value)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = ast.unparse(node.func)
                if ast.unparse(node) == "Path(__file__)":  # the app's own folder
                    continue
                if f in ("open", "Path", "os.remove", "shutil.copy", "tempfile.NamedTemporaryFile") or f.endswith(
                    (".write_bytes", ".write_text", ".unlink", ".mkdir")
                ):
                    bad.append(f"{_where(path, node)} {f}()")
                if f == "VoteStore" and (node.args or node.keywords):
                    bad.append(f"{_where(path, node)} VoteStore(<path>)")
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) in uploads:
                if node.attr not in ("getvalue", "name"):
                    bad.append(f"{_where(path, node)} upload.{node.attr}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "query_params"
                and path.relative_to(ROOT).as_posix() != "musiclab/app/ab.py"
            ):
                bad.append(f"{_where(path, node)} query_params")
    assert not bad, bad
    # the vote store's location: read from the environment by settings.py, used only by votes.py
    assert sorted(p.name for p in CODE if "MUSICLAB_DB" in p.read_text()) == ["settings.py", "votes.py"]
    assert [p.name for p in CODE if "current().db" in p.read_text()] == ["votes.py"]


def test_server_config_is_hardened():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["server"].get("enableCORS", True) is True
    assert cfg["server"]["maxUploadSize"] * 1024 * 1024 == LIMITS.max_bytes
    assert cfg["client"]["showErrorDetails"] == "none"  # no tracebacks in the browser
    assert cfg["server"]["fileWatcherType"] == "none"
    assert cfg["runner"]["postScriptGC"] is False  # see tests/test_load.py


def test_a_delta_time_past_64_bits_is_refused_not_a_crash():
    """Found by the fuzz test: a delta time of 9 VLQ bytes (over 2**63 ticks)."""
    huge = b"\x81" + b"\x80" * 8 + b"\x00"  # 2**63 ticks
    with pytest.raises(MidiError, match="absurd delta times"):
        load_midi(smf(1, 480, C4_E4 + huge + b"\xff\x2f\x00"))
