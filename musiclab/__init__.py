"""musiclab: continue your MIDI with published neural music models, in the browser or the CLI.

Stable API (pages, CLI, tests and outside tools use it): :func:`load_midi`,
:class:`MidiError`, :func:`list_models`, :func:`load_model`, :func:`generate`,
:func:`render_audio`, :func:`pianoroll_figure`; :class:`LoadedModel` (what load_model returns).
"""

__version__ = "0.1.0"

from .generation.sampling import SettingsError, generate  # noqa: E402
from .midi.io import MidiError, load_midi  # noqa: E402
from .serving.weights import LoadedModel, list_models, load_model  # noqa: E402


def render_audio(pm, soundfont=None):
    """Render to audio: (samples float32 (n,) mono in [-1, 1], sample rate Hz). See synth.py."""
    from .midi.synth import render_audio as _render

    return _render(pm, soundfont)


def pianoroll_figure(pm, seed_end=None, **kw):
    """Zoomable plotly piano roll; notes before ``seed_end`` (seconds) in the seed colour."""
    from .midi.figure import pianoroll_figure as _fig

    return _fig(pm, seed_end, **kw)


__all__ = [
    "LoadedModel",
    "MidiError",
    "SettingsError",
    "generate",
    "list_models",
    "load_midi",
    "load_model",
    "pianoroll_figure",
    "render_audio",
]
