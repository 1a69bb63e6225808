"""musiclab: continue your MIDI with published neural music models, in the browser or the CLI.

Stable API (pages, CLI, tests and outside tools use it): :func:`load_midi`,
:class:`MidiError`, :func:`list_models`, :func:`load_model`, :func:`generate`,
:func:`render_audio`, :func:`pianoroll_figure`, :func:`infill`, :func:`accompany` (models with
bar/note tokens); :class:`LoadedModel` (what load_model returns), :class:`Take` (what generate,
infill and accompany return).
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING

# The API is imported on first use: `python -m musiclab --help` or a bad file named on the
# command line answers without loading torch first.
_API = {
    "SettingsError": "generation.sampling",
    "generate": "generation.sampling",
    "Take": "generation.take",
    "MidiError": "midi.io",
    "load_midi": "midi.io",
    "LoadedModel": "serving.weights",
    "list_models": "serving.weights",
    "load_model": "serving.weights",
    "infill": "editing.infill",
    "accompany": "editing.accompany",
}
if TYPE_CHECKING:
    from .editing.accompany import accompany
    from .editing.infill import infill
    from .generation.sampling import SettingsError, generate
    from .generation.take import Take
    from .midi.io import MidiError, load_midi
    from .serving.weights import LoadedModel, list_models, load_model


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'musiclab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def render_audio(music, soundfont=None):
    """A Take or a PrettyMIDI -> audio: (samples float32 (n,) mono in [-1, 1], sample rate Hz). See synth.py."""
    from .midi.synth import render_audio as _render

    return _render(_midi(music), soundfont)


def pianoroll_figure(music, seed_end=None, **kw):
    """A Take or a PrettyMIDI -> a zoomable plotly piano roll; notes before ``seed_end`` (seconds)
    in the seed colour."""
    from .midi.figure import pianoroll_figure as _fig

    return _fig(_midi(music), seed_end, **kw)


def _midi(music):
    from .generation.take import Take

    return music.midi if isinstance(music, Take) else music


__all__ = [
    "LoadedModel",
    "MidiError",
    "SettingsError",
    "Take",
    "accompany",
    "generate",
    "infill",
    "list_models",
    "load_midi",
    "load_model",
    "pianoroll_figure",
    "render_audio",
]
