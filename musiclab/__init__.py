"""musiclab: continue your MIDI with published neural music models, in the browser or the CLI.

Stable API (pages, CLI, tests and outside tools use it): :func:`load_midi`,
:class:`MidiError`, :func:`list_models`, :func:`load_model`, :func:`generate`,
:func:`render_audio`, :func:`pianoroll_figure`; :class:`LoadedModel` (what load_model returns), :class:`Take` (what generate returns).
"""

__version__ = "0.1.0"

from .generation.sampling import SettingsError, generate  # noqa: E402
from .generation.take import Take  # noqa: E402
from .midi.io import MidiError, load_midi  # noqa: E402
from .serving.weights import LoadedModel, list_models, load_model  # noqa: E402


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
    return music.midi if isinstance(music, Take) else music


__all__ = [
    "LoadedModel",
    "MidiError",
    "SettingsError",
    "Take",
    "generate",
    "list_models",
    "load_midi",
    "load_model",
    "pianoroll_figure",
    "render_audio",
]
