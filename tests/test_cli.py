"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from musiclab.midi.io import load_midi

ROOT = Path(__file__).resolve().parent.parent


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "musiclab", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def _argv(base: dict, changes: list[str]) -> list[str]:
    """Command-line words: ``base`` options with ``changes`` (option, value, ...) put over them."""
    opts = {**base, **dict(zip(changes[::2], changes[1::2]))}
    return [x for kv in opts.items() for x in kv]


def test_models_json_lists_lstm_ok():
    r = run("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    assert rows["lstm"]["status"] == "ok" and rows["lstm"]["params"] > 1_000_000


def test_check_good_and_bad(midi_file, tmp_path):
    r = run("check", midi_file)
    assert r.returncode == 0 and json.loads(r.stdout)["notes"] > 10
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi")
    r = run("check", bad)
    assert r.returncode == 2
    assert r.stderr.startswith("error: not a MIDI file") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_generate_variations_and_wav(midi_file, tmp_path):
    out = tmp_path / "out.mid"
    r = run(
        "generate",
        "--model",
        "lstm",
        "--seed",
        midi_file,
        "--seed-seconds",
        4,
        "--seconds",
        6,
        "--variations",
        2,
        "--random-seed",
        7,
        "--out",
        out,
        "--wav",
        tmp_path / "out.wav",
    )
    assert r.returncode == 0, r.stderr
    for i in (1, 2):
        pm = load_midi(tmp_path / f"out-{i}.mid")
        assert 9.0 <= pm.get_end_time() <= 10.5
        assert (tmp_path / f"out-{i}.wav").stat().st_size > 100_000
    # reproducible
    r2 = run(
        "generate",
        "--model",
        "lstm",
        "--seed",
        midi_file,
        "--seed-seconds",
        4,
        "--seconds",
        6,
        "--random-seed",
        8,
        "--out",
        tmp_path / "again.mid",
    )
    assert r2.returncode == 0
    assert (tmp_path / "again.mid").read_bytes() == (tmp_path / "out-2.mid").read_bytes()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "nope"], "unknown model 'nope'; known: "),
        (["--seconds", "nan"], "expected a finite number"),
        (["--seconds", "1e9"], "over the limit"),
        (["--temperature", "-2"], "temperature"),
        (["--seed", "/no/such/file.mid"], "cannot read"),
        (["--out", "x.txt"], "--out must end in .mid"),
    ],
)
def test_generate_user_mistakes_exit_2_one_line(midi_file, tmp_path, args, words):
    base = {
        "--model": "lstm",
        "--seed": str(midi_file),
        "--seed-seconds": "4",
        "--seconds": "5",
        "--out": str(tmp_path / "o.mid"),
    }
    r = run("generate", *_argv(base, args))
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and words in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_unknown_command_is_one_line():
    r = run("fly")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_help_and_parse_errors_do_not_load_torch():
    """`--help` and a mistake in the arguments answer at once: the package API loads on first use."""
    code = (
        "import sys, musiclab\n"
        "from musiclab.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert main(['generate', '--model', 'lstm']) == 2\n"
        "print('torch' in sys.modules)\n"
        "from musiclab import accompany, infill\n"
        "from musiclab.editing import accompany as a, infill as i\n"
        "print(infill is i.infill and accompany is a.accompany, 'torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-3:] == ["False", "True", "True"], r.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["--epochs", "-1"], "epochs = -1 is not accepted; expected a whole number >= 1"),
        (["--lr", "0"], "lr = 0.0 is not accepted; expected a positive number"),
        (["--batch-size", "0"], "batch_size = 0 is not accepted"),
        (["--arch", "nope"], "unknown architecture 'nope'; known: "),
        (["--set", "hiden=256"], "unknown model setting 'hiden' for lstm; known: block_size, dense, dropout, hidden,"),
    ],
)
def test_train_bad_settings_exit_2_before_any_work(midi_file, tmp_path, args, words):
    """Refused up front (no tokenizing, nothing written), with what is accepted."""
    base = {"--arch": "lstm", "--data": str(Path(midi_file).parent), "--out": str(tmp_path / "w")}
    r = run("train", *_argv(base, args))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not r.stdout and not (tmp_path / "w").exists()


def test_bench_prints_figures_for_a_model():
    """The benchmark runs for real (a small model, short music): every figure is there and sane."""
    r = run("bench", "generate", "--models", "pianoroll-lstm-jsb", "--seconds", "4", "--repeats", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (row,) = out["results"]
    assert out["env"]["threads"] == "auto" and row["model"] == "pianoroll-lstm-jsb" and row["threads"] >= 1
    assert row["tokens"] > 0 and row["realtime_x_1"] > 0 and row["wall_s_4"] > 0 and 0 < row["load_s"] < 30
    assert row["speedup_vs_naive"] > 0 and row["longest_vs_single"] >= 1
    r = run("bench", "generate", "--models", "bigru", "--seconds", "2", "--repeats", "1", "--threads", "1")
    assert r.returncode == 0 and "threads per generation: 1" in r.stdout and "| bigru | 1 |" in r.stdout, r.stderr


def test_readme_models_table_is_what_models_markdown_prints():
    r = run("models", "--markdown")
    assert r.returncode == 0, r.stderr
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- models-table -->\n", 1)[1].split("\n\n", 1)[0]
    assert table.strip() == r.stdout.strip()


def _notes(pm, name=None) -> list[tuple]:
    return sorted(
        (n.pitch, round(n.start, 6), round(n.end, 6), n.velocity)
        for i in pm.instruments
        if name is None or i.name == name
        for n in i.notes
    )


def test_infill_keeps_every_note_outside_the_span(midi_file, tmp_path):
    """The shipped flagship regenerates 4-8 s; every note starting outside it is written back exactly."""
    out = tmp_path / "filled.mid"
    r = run("infill", "--model", "flagship", "--input", midi_file, "--start", 4, "--end", 8, "--out", out,
            "--random-seed", 3)  # fmt: skip
    assert r.returncode == 0, r.stderr
    before, after = load_midi(midi_file), load_midi(out)
    outside = [n for n in _notes(before) if not 4 <= n[1] < 8]
    assert [n for n in _notes(after) if n not in _notes(after, "musiclab infill")] == outside
    new = _notes(after, "musiclab infill")
    assert new and all(4 <= n[1] < 8 for n in new)


def test_accompany_keeps_the_melody_and_adds_a_track(midi_file, tmp_path):
    out = tmp_path / "acc.mid"
    r = run("accompany", "--model", "flagship", "--input", midi_file, "--melody-track", 1, "--out", out)
    assert r.returncode == 0, r.stderr
    before, after = load_midi(midi_file), load_midi(out)
    assert _notes(after, before.instruments[0].name) == _notes(before)
    assert _notes(after, "musiclab accompaniment")


@pytest.mark.parametrize(
    "cmd, args, words",
    [
        ("infill", ["--start", "30", "--end", "34"], "past the end"),
        ("infill", ["--start", "5", "--end", "5"], "empty"),
        ("infill", ["--start", "6", "--end", "5"], "starts at 6 s, after its end at 5 s"),
        ("infill", ["--model", "lstm", "--start", "4", "--end", "8"], "flagship"),
        ("accompany", ["--melody-track", "2"], "--melody-track 2 does not exist; the file has tracks 1..1"),
        ("accompany", ["--model", "lstm", "--melody-track", "1"], "flagship"),
        ("accompany", ["--melody-track", "1", "--chords", "C H7"], "'H7' is not a chord symbol; expected e.g. C, Am"),
    ],
)
def test_edit_mistakes_exit_2_with_one_line(midi_file, tmp_path, cmd, args, words):
    opts = {"--model": "flagship", "--input": str(midi_file), "--out": str(tmp_path / "o.mid")}
    r = run(cmd, *_argv(opts, args))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and words in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "o.mid").exists()
