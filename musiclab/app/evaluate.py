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


SHARES = (  # (label, compare() stat, delta colour: a rise is good / bad, help)
    ("In key", "in_key", "normal", "Share of notes in {key} (the seed's key)"),
    ("Repeats", "repetition", "inverse", "Repetition: share of onsets repeating the previous onset's notes exactly"),
)
AMOUNTS = (  # (label, compare() stat, number format, unit, help)
    ("Notes/s", "density", ".1f", "", "Note density"),
    ("Voices", "polyphony", ".1f", "", "Polyphony: mean notes sounding together"),
    ("Range", "pitch_range", "d", " st", "Highest minus lowest pitch, semitones"),
)


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
    for col, (label, key, rise, what) in zip(cols, SHARES):  # shares: percent, delta in points
        colour, what = _pts_colour(a[key], b[key], rise), what.format(key=c["key"])
        col.metric(label, _pct(a[key]), _pts(a[key], b[key]), delta_color=colour, help=f"{what}; delta vs the seed")
    for col, (label, key, fmt, unit, what) in zip(cols[2:], AMOUNTS):
        value = "–" if a[key] is None else format(a[key], fmt) + unit
        col.metric(
            label, value, _delta(a[key], b[key], "+" + fmt), delta_color="off", help=f"{what}; delta vs the seed"
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
