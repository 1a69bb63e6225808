"""Every ``MUSICLAB_*`` environment setting, read here and nowhere else.

``current()`` parses them once into a frozen :class:`Settings`; it parses again only when one of
the variables has changed (a test, or a worker process that sets its own before starting).
A bad value raises ValueError naming the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    weights: Path | None = (
        None  # MUSICLAB_WEIGHTS: the model folders (unset: the checkout's weights/, else the installed ones)
    )
    threads: int | None = (
        None  # MUSICLAB_THREADS: intra-op threads for every generation and training (unset: musiclab's policy)
    )
    max_jobs: int = 2  # MUSICLAB_MAX_JOBS: generations running at once in a server (2 = the cores of a small box)
    max_waiting: int = 24  # MUSICLAB_MAX_WAITING: requests that may wait for a generator; past it, "busy"
    db: str | None = (
        None  # MUSICLAB_DB: the vote store, an SQLite path or a postgresql:// URL (unset: the user's data folder)
    )
    soundfont: str | None = (
        None  # MUSICLAB_SOUNDFONT: a .sf2 for the audio (unset: Debian's GM font, else pretty_midi's)
    )
    cache: Path = Path.home() / ".cache" / "musiclab"  # MUSICLAB_CACHE: tokenized corpora, reused across runs
    shard_mb: float = 256.0  # MUSICLAB_SHARD_MB: RAM a corpus build holds before it writes a shard
    dist_backend: str | None = (
        None  # MUSICLAB_DIST_BACKEND: torch.distributed backend (unset: NCCL with CUDA, else gloo)
    )
    dist_timeout: float = 120.0  # MUSICLAB_DIST_TIMEOUT: minutes before a stuck rank fails the run
    data: str | None = None  # MUSICLAB_DATA: the parent of the piano/, asap/, pop909/ corpora (training, quality bench)
    fast: bool = True  # MUSICLAB_FAST: 0 turns the models' fast paths off (models/fast.py; same takes but the flagship's on a bf16 CPU, slower)

    @classmethod
    def from_env(cls, env=None) -> Settings:
        env = os.environ if env is None else env
        return cls(**{f.name: _parse(f.name, env[var]) for f, var in zip(fields(cls), NAMES) if env.get(var)})


NAMES = tuple(f"MUSICLAB_{f.name.upper()}" for f in fields(Settings))
_KINDS = {
    "weights": Path,
    "cache": Path,
    "threads": int,
    "max_jobs": int,
    "max_waiting": int,
    "shard_mb": float,
    "dist_timeout": float,
}


def _parse(field: str, raw: str):
    name, kind = f"MUSICLAB_{field.upper()}", _KINDS.get(field, str)
    if field == "fast":
        if raw.lower() not in ("0", "1", "false", "true", "off", "on"):
            raise ValueError(f"{name} = {raw!r} is not accepted; expected 0 or 1")
        return raw.lower() in ("1", "true", "on")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} = {raw!r} is not accepted; expected a number") from None
    if kind in (int, float) and value <= 0:
        raise ValueError(f"{name} = {raw!r} is not accepted; expected a number > 0")
    return value


_seen: tuple = ()
_settings: Settings | None = None


def current() -> Settings:
    """The settings of this process's environment now."""
    global _seen, _settings
    now = tuple(os.environ.get(n) for n in NAMES)
    if _settings is None or now != _seen:
        _seen, _settings = now, Settings.from_env()
    return _settings
