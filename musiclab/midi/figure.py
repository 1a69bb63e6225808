"""Piano-roll figures (plotly): one bar per note, time in seconds on x, MIDI pitch (0-127) on y.

Seed notes and continuation notes get distinct colours; a dashed line marks the seed
end. The figure is zoomable (drag to zoom, double-click to reset). Notes are drawn as one
SVG scatter trace per group (line segments, one path), so 10,000 notes stay fast. Not WebGL
(Scattergl): a browser allows ~16 WebGL contexts per page, and a session with more takes than
that showed empty rolls.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pretty_midi

SEED_COLOUR = "#7f8c8d"
NEW_COLOUR = "#e4572e"
TRACK_COLOURS = {"musiclab infill": ("infill", "#2e86de"), "musiclab accompaniment": ("accompaniment", "#27ae60")}
SPAN_COLOUR = "rgba(46, 134, 222, 0.12)"
MELODY_COLOUR = "#8e44ad"


def _segments(notes) -> tuple[list, list, list]:
    xs, ys, text = [], [], []
    for n in notes:
        name = pretty_midi.note_number_to_name(n.pitch)
        xs += [n.start, n.end, None]
        ys += [n.pitch, n.pitch, None]
        text += [f"{name} vel {n.velocity}", f"{name}", None]
    return xs, ys, text


def pianoroll_figure(
    pm: pretty_midi.PrettyMIDI,
    seed_end: float | None = None,
    height: int = 320,
    title: str | None = None,
    span: tuple[float, float] | None = None,
    selectable: bool = False,
    melody: int | None = None,
) -> go.Figure:
    """Figure of every non-drum note; notes starting before ``seed_end`` (seconds) are seed.

    Notes on a track an edit made ("musiclab infill", "musiclab accompaniment") get their own
    colour; ``span`` (start, end) seconds is shaded; ``selectable`` makes a drag select a time
    span (box select over an invisible marker at every onset) instead of zooming. ``melody``: the
    index of a track to draw in its own colour (the melody an accompaniment will follow)."""
    tracks = [inst for inst in pm.instruments if not inst.is_drum]
    tune = pm.instruments[melody] if melody is not None and 0 <= melody < len(pm.instruments) else None
    edits = [inst for inst in tracks if inst.name in TRACK_COLOURS or inst is tune]
    notes = [n for inst in tracks if inst not in edits for n in inst.notes]
    seed = [n for n in notes if seed_end is not None and n.start < seed_end - 1e-6]
    new = [n for n in notes if seed_end is None or n.start >= seed_end - 1e-6]
    groups = [(seed, "seed", SEED_COLOUR), (new, "continuation" if seed_end is not None else "notes", NEW_COLOUR)]
    groups += [(inst.notes, *TRACK_COLOURS.get(inst.name, ("melody", MELODY_COLOUR))) for inst in edits]
    fig = go.Figure()
    for group, label, colour in groups:
        if not group:
            continue
        xs, ys, text = _segments(group)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"width": 6, "color": colour},
                name=label,
                hovertext=text,
                hoverinfo="text+x",
            )
        )
    notes = [n for inst in tracks for n in inst.notes]
    if selectable and notes:  # box select needs points: one invisible marker per onset
        fig.add_trace(
            go.Scatter(
                x=[n.start for n in notes],
                y=[n.pitch for n in notes],
                mode="markers",
                marker={"size": 6, "opacity": 0},
                hoverinfo="none",  # "skip" would make the points unselectable
                showlegend=False,
                name="onsets",
            )  # fmt: skip
        )
    if span is not None:
        fig.add_vrect(x0=span[0], x1=span[1], fillcolor=SPAN_COLOUR, line_width=0, layer="below")
    if seed_end is not None:
        fig.add_vline(x=seed_end, line_dash="dash", line_color="#34495e")
    pitches = np.array([n.pitch for n in notes]) if notes else np.array([60])
    end = max(pm.get_end_time(), seed_end or 0.0, span[1] if span else 0.0, 1.0)  # drums play to the end too
    fig.update_layout(
        xaxis={"range": [0, end * 1.01]},  # from 0 as the audio plays it, not from a pickup's first note
        height=height,
        margin={"l": 40, "r": 10, "t": 30 if title else 10, "b": 30},
        title=title,
        xaxis_title="time (s)",
        yaxis_title="pitch",
        legend={"orientation": "h", "y": 1.08},
        yaxis={"range": [pitches.min() - 2, pitches.max() + 2]},
        dragmode="select" if selectable else "zoom",
    )
    return fig
