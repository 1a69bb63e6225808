"""Registry: architecture name -> (model class, config class). One interface for all (see base.py)."""

from __future__ import annotations

import dataclasses

from .base import MusicModel
from .lstm import LSTMConfig, LSTMModel

ARCHS: dict[str, tuple[type[MusicModel], type]] = {
    "lstm": (LSTMModel, LSTMConfig),
}


def _register_optional() -> None:
    # Zoo architectures register here as their modules land (one import each).
    import importlib

    for mod in ("bilstm", "attention", "bigru", "transformer", "pianoroll", "flagship"):
        try:
            m = importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{mod}":
                raise
            continue
        ARCHS.update(getattr(m, "ARCHS", {}))


_register_optional()


def arch_classes(arch: str) -> tuple[type[MusicModel], type]:
    """(model class, config class) for ``arch``; unknown names raise ValueError listing the known ones."""
    try:
        return ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}") from None


def build_model(arch: str, config: dict | None = None) -> MusicModel:
    """Build an untrained model from a config dict (unknown keys raise ValueError)."""
    cls, cfg_cls = arch_classes(arch)
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    extra = set(config or {}) - names
    if extra:
        raise ValueError(f"unknown config key(s) for {arch}: {sorted(extra)}; known: {sorted(names)}")
    return cls(cfg_cls(**(config or {})))


__all__ = ["ARCHS", "MusicModel", "arch_classes", "build_model"]
