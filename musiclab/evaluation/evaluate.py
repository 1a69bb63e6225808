"""Model comparison: N takes per (model, seed), their metrics vs the seed, tables and charts.

Used by the Evaluate page and ``python -m musiclab evaluate``; no Streamlit here. One row
per take: the continuation's metrics (``cont_*``), the seed's own (``seed_*``) and the
histogram distances between the two (see :mod:`musiclab.evaluation.metrics` for units and ranges).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import pretty_midi

from .metrics import SCALARS, UNITS, compare, compare_files, corpus_stats, distances, segment_stats

DISTANCES = ("pc_wasserstein", "pc_tv", "ioi_tv")
LABELS = {
    "notes": "Notes",
    "pitch_range": "Pitch range (semitones)",
    "density": "Note density (notes/s)",
    "polyphony": "Polyphony (notes sounding)",
    "ioi_mean": "Mean inter-onset interval (beats)",
    "in_key": "In-key ratio (seed's key)",
    "repetition": "Repetition rate",
    "empty_bars": "Empty-bar rate",
    "pc_wasserstein": "Pitch-class Wasserstein to seed (semitones)",
    "pc_tv": "Pitch-class total variation to seed",
    "ioi_tv": "Rhythm (IOI) total variation to seed",
}


@dataclass
class EvalSettings:
    """One evaluation run: the same settings for every model and seed."""

    takes: int = 3  # takes per (model, seed), 1-8 (sampled as one batch)
    seed_seconds: float = 8.0  # seed length, seconds (cut to the seed file's length)
    seconds: float = 15.0  # continuation length, seconds
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 0.95  # 1 = off
    min_p: float = 0.0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off
    key_lock: bool = False  # only pitches of the seed's key
    random_seed: int = 1  # take i of a (model, seed) uses random_seed + i: reruns are identical


def take_row(pm: pretty_midi.PrettyMIDI, seed_end: float, seconds: float | None = None) -> dict:
    """Flat metrics of one take: cont_<metric>, seed_<metric>, distances, key."""
    c = compare(pm, seed_end, seconds)
    row = {"key": c["key"]}
    for k in SCALARS:
        row[f"cont_{k}"] = c["continuation"][k]
        row[f"seed_{k}"] = c["seed"][k]
    row.update(c["distance"])
    return row


def run_eval(
    models: list[str],
    seeds: list[tuple[str, pretty_midi.PrettyMIDI]],
    settings: EvalSettings,
    progress: Callable[[int, int, str], None] | None = None,
    load: Callable | None = None,
) -> dict:
    """Generate ``settings.takes`` takes per (model, seed) and measure each.

    ``seeds`` = [(label, PrettyMIDI)]; ``load(name)`` returns a model (default
    :func:`musiclab.load_model`); ``progress(done, total, label)`` is called per job.
    Returns {"rows": [one dict per take], "errors": ["model × seed: reason"], "settings"}.
    A job that fails (seed too short, bad settings) is reported and the others still run.
    """
    from ..generation.sampling import generate
    from ..midi.io import MidiError
    from ..serving.jobs import slot, threads_for
    from ..serving.weights import load_model

    load = load or load_model
    rows, errors = [], []
    jobs = [(m, label, pm) for m in models for label, pm in seeds]
    for i, (name, label, pm) in enumerate(jobs):
        if progress is not None:
            progress(i, len(jobs), f"{name} × {label}")
        seed_end = min(settings.seed_seconds, pm.get_end_time())
        try:
            model = load(name)
            with slot():  # in turn with every other generation in the process
                takes = generate(
                    model,
                    pm,
                    seed_seconds=seed_end,
                    seconds=settings.seconds,
                    temperature=settings.temperature,
                    top_k=settings.top_k,
                    top_p=settings.top_p,
                    min_p=settings.min_p,
                    repetition_penalty=settings.repetition_penalty,
                    key_lock=settings.key_lock,
                    variations=settings.takes,
                    random_seed=settings.random_seed,
                    threads=threads_for(model),
                )
        except (MidiError, ValueError) as e:  # SettingsError is a ValueError
            errors.append(f"{name} × {label}: {e}")
            continue
        for t, take in enumerate(takes):
            info = take.info
            row = {"model": name, "seed": label, "take": t + 1, "random_seed": info["random_seed"]}
            row.update(take_row(take.midi, seed_end, settings.seconds))
            row["tokens_per_s"] = info["tokens"] / max(info["compute_seconds"], 1e-9)
            rows.append(row)
    if progress is not None:
        progress(len(jobs), len(jobs), "done")
    return {"rows": rows, "errors": errors, "settings": asdict(settings)}


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> a DataFrame (undefined metrics become NaN)."""
    return pd.DataFrame(rows).astype({k: float for k in _metric_columns(rows)})


def _metric_columns(rows: list[dict]) -> list[str]:
    cols = [f"{p}_{k}" for k in SCALARS for p in ("cont", "seed")] + list(DISTANCES)
    return [c for c in cols if rows and c in rows[0]]


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Per model: mean continuation metrics and distances over all its takes (and the seeds' own)."""
    cols = [f"cont_{k}" for k in SCALARS] + list(DISTANCES)
    out = df.groupby("model")[cols].mean()
    seeds = df.drop_duplicates("seed")[[f"seed_{k}" for k in SCALARS]].mean()
    out.loc["(seeds themselves)"] = [seeds[f"seed_{k}"] for k in SCALARS] + [0.0] * len(DISTANCES)
    out.columns = [c.removeprefix("cont_") for c in out.columns]
    return out.round(3)


def metric_figure(df: pd.DataFrame, metric: str) -> go.Figure:
    """Box + points of one continuation metric per model, next to the seeds' own values."""
    if metric not in SCALARS:
        raise ValueError(f"expected a metric in {SCALARS}, got {metric!r}")
    takes = df[["model", "seed", f"cont_{metric}"]].rename(columns={f"cont_{metric}": metric})
    ref = df.drop_duplicates("seed")[["seed", f"seed_{metric}"]].rename(columns={f"seed_{metric}": metric})
    ref.insert(0, "model", "seed itself")
    data = pd.concat([takes, ref], ignore_index=True)
    fig = px.box(data, x="model", y=metric, color="seed", points="all", title=LABELS[metric])
    fig.update_layout(yaxis_title=f"{metric} ({UNITS[metric]})", xaxis_title=None, height=380, boxmode="group")
    fig.update_yaxes(rangemode="tozero")  # every metric here is >= 0: small differences stay small
    return fig


def distance_figure(df: pd.DataFrame) -> go.Figure:
    """Distances from each take's continuation to its own seed, per model (lower = closer)."""
    long = df.melt(id_vars=["model", "seed"], value_vars=list(DISTANCES), var_name="distance", value_name="value")
    fig = px.box(
        long, x="model", y="value", color="model", facet_col="distance", points="all", title="Distance to the seed"
    )
    fig.update_yaxes(matches=None, showticklabels=True, rangemode="tozero")  # distances are >= 0
    fig.for_each_annotation(lambda a: a.update(text=LABELS[a.text.split("=")[-1]]))
    fig.update_layout(height=380, showlegend=True, legend_title_text="model")
    return fig


def to_csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


# ---- the CLI's file evaluation ----
def evaluate_file(pm: pretty_midi.PrettyMIDI, against=None, corpus=None, seed_end: float | None = None) -> dict:
    """Metrics of one file: alone, vs a reference file, vs a corpus's pooled stats, or its
    continuation (after ``seed_end`` seconds) vs its seed. Returns a dict with a
    ``columns`` pair naming the two sides compared."""
    if sum(x is not None for x in (against, corpus, seed_end)) > 1:
        raise ValueError("expected at most one of --against, --corpus, --seed-end")
    if seed_end is not None:
        c = compare(pm, seed_end)
        return _sides(
            c["key"], a=c["continuation"], b=c["seed"], distance=c["distance"], columns=("continuation", "seed")
        )
    if against is not None:
        c = compare_files(pm, against)
        return _sides(c["key"], a=c["file"], b=c["reference"], distance=c["distance"], columns=("file", "reference"))
    if corpus is not None:
        a, ref = segment_stats(pm), corpus_stats(corpus)
        return _sides(
            a["key"], a=a, b=ref, distance=distances(a, ref), columns=("file", f"corpus ({ref['files']} files)")
        )
    return _sides(None, a=segment_stats(pm), b=None, distance=None, columns=("file", None))


def _sides(key, *, a: dict, b: dict | None, distance: dict | None, columns: tuple) -> dict:
    """evaluate_file's answer: side ``a`` (the file or continuation) against side ``b``, named by ``columns``."""
    return {"key": key, "a": a, "b": b, "distance": distance, "columns": columns}


def load_corpus(folder: str | Path, max_files: int = 500) -> tuple[list[pretty_midi.PrettyMIDI], list[str]]:
    """(loaded files, skipped "name: reason") for up to ``max_files`` .mid/.midi files under ``folder``."""
    from ..midi.io import MidiError, load_midi

    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--corpus expected a folder of MIDI files, got {str(root)!r}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi"))[:max_files]
    pms, skipped = [], []
    for p in paths:
        try:
            pms.append(load_midi(p))
        except MidiError as e:
            skipped.append(f"{p.name}: {e}")
    if not pms:
        raise ValueError(f"--corpus {str(root)!r} has no readable .mid files ({len(paths)} found, all unreadable)")
    return pms, skipped


def format_report(r: dict) -> str:
    """A plain-text table of :func:`evaluate_file`'s result."""
    a_name, b_name = r["columns"]
    head = f"{'metric':<14} {a_name:>14}" + (f" {b_name:>20}" if b_name else "") + "  unit"
    lines = [head, "-" * len(head)]

    def fmt(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    for k in ("key",) + SCALARS:
        b = "" if r["b"] is None else f" {fmt(r['b'].get(k)):>20}"
        lines.append(f"{k:<14} {fmt(r['a'][k]):>14}{b}  {UNITS.get(k, '')}")
    for k, v in (r["distance"] or {}).items():
        lines.append(f"{k:<14} {fmt(v):>14}  {UNITS[k]}")
    return "\n".join(lines)
