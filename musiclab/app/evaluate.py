"""Streamlit pieces for evaluation: the Compose page's per-take metrics row and the
Evaluate page's seed gathering and run (the pages stay thin)."""

from __future__ import annotations

import pretty_midi
import streamlit as st

from ..evaluation.evaluate import EvalSettings, run_eval
from ..evaluation.metrics import compare
from ..midi.examples import list_examples
from ..midi.io import load_midi
from .common import cached_model, parse_seed


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _delta(a: float | None, b: float | None, fmt: str) -> str | None:
    return None if a is None or b is None else format(a - b, fmt)


def _pts(a: float | None, b: float | None) -> str | None:
    return None if a is None or b is None else f"{(a - b) * 100:+.0f} pts"


def _pts_colour(a: float | None, b: float | None, colour: str) -> str:
    """Grey for a change that rounds to 0 points (Streamlit would show "+0" as a rise)."""
    return "off" if a is None or b is None or round((a - b) * 100) == 0 else colour


def metrics_panel(pm: pretty_midi.PrettyMIDI, seed_end: float, seconds: float | None = None) -> None:
    """One compact row: continuation vs seed (in key, repetition, density, polyphony, range,
    pitch distance). ``seconds`` = the asked continuation length (default: to the last note)."""
    try:
        c = compare(pm, seed_end, seconds)
    except ValueError as e:
        st.caption(f"Metrics unavailable: {e}")
        return
    a, b = c["continuation"], c["seed"]
    cols = st.columns(6)
    cols[0].metric(
        "In key",
        _pct(a["in_key"]),
        _pts(a["in_key"], b["in_key"]),
        delta_color=_pts_colour(a["in_key"], b["in_key"], "normal"),
        help=f"Share of notes in {c['key']} (the seed's key); delta vs the seed",
    )
    cols[1].metric(
        "Repetition",
        _pct(a["repetition"]),
        _pts(a["repetition"], b["repetition"]),
        delta_color=_pts_colour(a["repetition"], b["repetition"], "inverse"),
        help="Share of onsets repeating the previous onset's notes exactly; delta vs the seed",
    )
    cols[2].metric(
        "Notes/s",
        f"{a['density']:.1f}",
        _delta(a["density"], b["density"], "+.1f"),
        delta_color="off",
        help="Note density; delta vs the seed",
    )
    cols[3].metric(
        "Polyphony",
        f"{a['polyphony']:.1f}",
        _delta(a["polyphony"], b["polyphony"], "+.1f"),
        delta_color="off",
        help="Mean notes sounding together; delta vs the seed",
    )
    cols[4].metric(
        "Range",
        "–" if a["pitch_range"] is None else f"{a['pitch_range']} st",
        _delta(a["pitch_range"], b["pitch_range"], "+d"),
        delta_color="off",
        help="Highest minus lowest pitch, semitones; delta vs the seed",
    )
    w = c["distance"]["pc_wasserstein"]
    cols[5].metric(
        "Drift (st)",
        "–" if w is None else f"{w:.2f}",
        help="Earth mover's distance between the continuation's and the seed's pitch-class histograms, semitones (0 = same, max 6)",
    )


def gather_seeds(example_titles: list[str], uploads) -> list[tuple[str, pretty_midi.PrettyMIDI]]:
    """Chosen examples + uploaded files as (label, PrettyMIDI); a bad upload shows st.error and is skipped."""
    examples = list_examples()
    seeds = [(t, load_midi(examples[t])) for t in example_titles if t in examples]
    for up in uploads or []:
        pm = parse_seed(up.getvalue(), up.name)  # None after showing why
        if pm is not None:
            seeds.append((up.name, pm))
    return seeds


def run_with_progress(models: list[str], seeds, settings: EvalSettings) -> dict | None:
    """run_eval with a progress bar; errors become st.error (None returned)."""
    bar = st.progress(0.0, text="Evaluating…")

    def progress(done: int, total: int, label: str) -> None:
        bar.progress(done / max(total, 1), text=f"{done}/{total} · {label}")

    try:
        return run_eval(models, seeds, settings, progress=progress, load=cached_model)
    except ValueError as e:  # MidiError and SettingsError are ValueErrors
        st.error(f"Evaluation failed: {e}")
        return None
    finally:
        bar.empty()
