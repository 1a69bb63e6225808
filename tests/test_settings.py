"""musiclab/settings.py: every MUSICLAB_* variable read in one place, checked, and read again when it changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from musiclab import settings
from musiclab.settings import Settings, current

PKG = Path(__file__).resolve().parent.parent / "musiclab"


def test_defaults_and_parsed_values():
    assert Settings.from_env({}) == Settings()
    s = Settings.from_env(
        {"MUSICLAB_THREADS": "3", "MUSICLAB_FAST": "0", "MUSICLAB_WEIGHTS": "/w", "MUSICLAB_DB": "x.db"}
    )
    assert (s.threads, s.fast, s.weights, s.db, s.max_jobs) == (3, False, Path("/w"), "x.db", 2)


@pytest.mark.parametrize(
    "var, raw", [("MUSICLAB_THREADS", "two"), ("MUSICLAB_MAX_JOBS", "0"), ("MUSICLAB_FAST", "maybe")]
)
def test_a_bad_value_names_the_variable(var, raw):
    with pytest.raises(ValueError, match=f"{var} = '{raw}' is not accepted"):
        Settings.from_env({var: raw})


def test_current_follows_a_changed_variable(monkeypatch):
    before = current()
    assert current() is before  # parsed once while nothing changes
    monkeypatch.setenv("MUSICLAB_THREADS", "5")
    assert current().threads == 5


def test_no_module_but_settings_reads_a_musiclab_variable():
    readers = [
        p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py") if re.search(r"environ[^\n]*MUSICLAB_", p.read_text())
    ]
    assert readers == [], readers
    assert set(settings.NAMES) >= {"MUSICLAB_THREADS", "MUSICLAB_MAX_JOBS", "MUSICLAB_DB", "MUSICLAB_FAST"}
