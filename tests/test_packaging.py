"""Packaging: `pip install .` gives a `musiclab` command that runs from any folder, shipped
weights included (an install outside a checkout reads them from <prefix>/share/musiclab/weights)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_shipped_model_is_in_the_package():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = {p.parent.name for p in (ROOT / "weights").glob("*/config.json")}
    assert {Path(k).name for k in listed} == shipped


@pytest.mark.slow
def test_pip_install_gives_a_musiclab_command(tmp_path, midi_file):
    """A fresh venv that sees this one's packages (no download); the checkout is not on its path."""
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )  # pip, setuptools: this venv's
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co. from the test venv
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    src = tmp_path / "src"  # a copy: the build leaves build/ and *.egg-info beside the sources
    skip = shutil.ignore_patterns("__pycache__", "checkpoint")
    for name in ("musiclab", "weights"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run([*pip, str(src)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = subprocess.run([str(venv / "bin" / "musiclab"), "models"], capture_output=True, text=True, cwd=work)
    assert r.returncode == 0 and "lstm" in r.stdout and "UNAVAILABLE" not in r.stdout, r.stdout + r.stderr
    cmd = [str(venv / "bin" / "musiclab"), "generate", "--model", "lstm", "--seed", str(midi_file)]
    cmd += ["--seed-seconds", "4", "--seconds", "3", "--random-seed", "1", "--out", "take.mid"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert r.returncode == 0 and (work / "take.mid").stat().st_size > 100, r.stderr
    r = subprocess.run([str(venv / "bin" / "musiclab"), "generate"], capture_output=True, text=True, cwd=work)
    assert r.returncode == 2 and r.stderr.startswith("error: ")
