"""The Edit page's pieces: what to edit, the span (dragged on the roll, or in seconds / bars), the runs."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ..midi.figure import pianoroll_figure
from ..midi.io import non_drum_tracks, track_label
from ..serving import jobs
from . import keys as K
from .common import KEEP, Progress, cached_model, cached_models, new_take, prerender_audio
from .takes import playable

JOBS = ("Infill a passage", "Accompany a melody")
SHOWN = 8  # takes made on this page shown under its roll, newest first


def editing_models() -> list[str]:
    """Usable models whose codec has infill sentinels and melody/accompaniment sections."""
    from ..serving.weights import read_card

    out = []
    for r in cached_models():
        if r["status"] == "ok" and read_card(r["name"]).get("tokenizer", {}).get("kind") == "bar-note":
            out.append(r["name"])
    return out


def source_picker() -> tuple[bytes | None, str | None]:
    """A take made on Compose (newest first) or, through the seed picker, an example or upload."""
    from .common import seed_picker

    takes = st.session_state.get(K.TAKES, [])[::-1]
    options = (["A take"] if takes else []) + ["Example or upload"]
    src = st.radio("Edit", options, horizontal=True, key="edit_source", persist_state=KEEP)
    if src == "A take":
        labels = [t["label"] for t in takes]
        pick = st.selectbox("Take", labels, key="edit_take", persist_state=KEEP)
        take = takes[labels.index(pick)] if pick in labels else takes[0]
        return take["midi"], take["label"]
    return seed_picker("edit", "piece")


def default_span(pm) -> tuple[float, float]:
    """A quarter of the way in, 8 s long (seconds)."""
    end = round(pm.get_end_time(), 2)
    return round(end * 0.25, 2), round(min(end, end * 0.25 + 8.0), 2)


def reset_choices_for(piece: str) -> None:
    """Another ``piece`` (its ``content_id``): forget the span and the chords typed for the one before (a
    tester nearly accompanied a G major tune in the F major chords of the example before it)."""
    ss = st.session_state
    if ss.get("edit_for") != piece:
        for k in (K.EDIT_SPAN, "edit_from", "edit_to", "edit_bar_from", "edit_bar_to", "edit_dragged"):
            ss.pop(k, None)
        ss[K.EDIT_CHORDS] = ""  # set, not popped: a popped key leaves the browser's box as it was
        ss["edit_for"] = piece


def dragged_span(pm, key: str = "edit_roll") -> tuple[float, float] | None:
    """The time span (seconds) of a box last dragged on the roll (its selection state), or None."""
    event = st.session_state.get(key) or {}
    boxes = event.get("selection", {}).get("box") or []
    if boxes and boxes[0].get("x"):
        x0, x1 = sorted(float(x) for x in boxes[0]["x"][:2])
        return max(x0, 0.0), min(x1, pm.get_end_time())
    return None


def roll(pm, span: tuple[float, float] | None, melody: int | None = None, key: str = "edit_roll") -> None:
    """The source's piano roll with ``span`` shaded and the ``melody`` track in its own colour;
    dragging a box on it selects a span. Drawn after the inputs, so it shades what Regenerate will
    use (a new figure also drops the old selection)."""
    fig = pianoroll_figure(pm, span=span, selectable=True, height=300, melody=melody)
    st.plotly_chart(fig, on_select="rerun", selection_mode="box", key=key)


def span_inputs(pm, dragged: tuple[float, float] | None) -> tuple[float, float]:
    """From / to, in seconds or in the file's bars; a dragged box fills them in. The span lives in
    ``K.EDIT_SPAN`` (seconds) whatever the unit, so switching units keeps it."""
    ss, end = st.session_state, round(pm.get_end_time(), 2)
    if dragged is not None and dragged != ss.get("edit_dragged"):
        ss["edit_dragged"] = dragged
        ss[K.EDIT_SPAN] = (round(dragged[0], 2), round(dragged[1], 2))
        ss["edit_unit"] = "seconds"
        ss.pop("edit_from", None), ss.pop("edit_to", None)
    span = ss.get(K.EDIT_SPAN) or default_span(pm)
    ss.setdefault("edit_from", min(span[0], end))  # the seconds inputs start from the span in force
    ss.setdefault("edit_to", min(span[1], end))
    unit = st.radio("Span in", ["seconds", "bars"], horizontal=True, key="edit_unit")
    c1, c2 = st.columns(2)
    if unit == "bars":
        downs = [float(t) for t in pm.get_downbeats()] + [end]
        n = max(len(downs) - 1, 1)
        first = max(int(np.searchsorted(downs, span[0] + 1e-6, side="right")), 1)  # the bars holding the span
        ss.setdefault("edit_bar_from", min(first, n))
        ss.setdefault("edit_bar_to", min(max(int(np.searchsorted(downs, span[1] - 1e-6, side="right")), first), n))
        # no upper bound: a capped input keeps its old value when a bar past the end is typed
        a = c1.number_input("From bar", 1, None, key="edit_bar_from")
        b = c2.number_input("To bar (included)", 1, None, key="edit_bar_to")
        bar_s = (downs[-1] - downs[0]) / n  # bars past the end lie past the music's end: refused with its length
        new = tuple(round(downs[k] if k <= n else end + (k - n) * bar_s, 2) for k in (a - 1, b))
        st.caption(f"Bars {a}-{b} = {new[0]:.2f}-{new[1]:.2f} s (the file has {n} bars, from its meter and tempo)")
        ss.pop("edit_from", None), ss.pop("edit_to", None)  # back in seconds, they show this span
    else:
        new = (float(c1.number_input("From (s)", 0.0, None, step=0.5, key="edit_from")),
               float(c2.number_input("To (s)", 0.0, None, step=0.5, key="edit_to")))  # fmt: skip
        st.caption(f"Drag a box on the piano roll to choose the span, or type it here (the music lasts {end:g} s).")
        ss.pop("edit_bar_from", None), ss.pop("edit_bar_to", None)  # back in bars, they show this span
    ss[K.EDIT_SPAN] = new
    return new


def melody_track(pm, piece: str) -> int:
    """Selectbox of the pitched tracks of ``pm`` (``piece``: its ``content_id``, so another piece
    starts from its own default): one named like a melody, else the first."""
    tracks = non_drum_tracks(pm)
    named = [
        t for t in tracks if "melod" in pm.instruments[t].name.lower() or "vocal" in pm.instruments[t].name.lower()
    ]
    return st.selectbox(
        "Melody track", tracks, index=tracks.index(named[0]) if named else 0,
        format_func=lambda t: track_label(pm, t), key=f"edit_melody_{piece}",
    )  # fmt: skip


def replace_toggle(pm, melody: int) -> bool:
    """Whether the file's other pitched tracks give way to the new accompaniment in the span (a
    toggle, on by default: two accompaniments at once rarely sound right); False without any."""
    if not [t for t in non_drum_tracks(pm) if t != melody]:
        return False
    return st.toggle("Replace the other tracks", value=True, key="edit_replace_others",
                     help="On: the accompaniment is heard instead of the file's other tracks, within the "
                     "span (the downloads keep them outside it). Off: it is added to them.")  # fmt: skip


def chords_input(pm, melody: int, start: float | None, end: float | None) -> tuple[str | None, bool]:
    """(chord symbols to follow, one bar each from the bar the accompaniment starts in (shown), or
    None: estimated from the melody; whether they read). What does not read is said at once."""
    from ..editing.constrained import seconds_to_step
    from ..editing.harmony import bars_of, parse_chords
    from ..generation.sampling import SettingsError

    notes = pm.instruments[melody].notes
    start = min((n.start for n in notes), default=0.0) if start is None else start
    end = max((n.end for n in notes), default=start) if end is None else end
    s0 = int(seconds_to_step(pm, start, 12) + 1e-6)
    bar, bars = bars_of(pm, s0, max(int(seconds_to_step(pm, end, 12)), s0 + 1), 12)  # as accompany() counts
    st.session_state[K.EDIT_CHORDS_BAR] = bar  # a take's chords are offered for the box only from this bar
    text = st.text_area(f"Chords from bar {bar} (optional)", key=K.EDIT_CHORDS, persist_state=KEEP, max_chars=2000, height=120,
                         placeholder="empty: read from the melody (or type e.g. C Am F G)",
                         help="One chord a bar (the file's own bars, as the bar inputs count them), from the "
                         "bar the accompaniment starts in, e.g. C Am F G7, or C | Am | F G | G7 where two "
                         "chords share a bar; a new line is a new bar. Read: slash chords (C/E), sevenths and the like (F#m7, CΔ7, "
                         "G7sus4, Bm7b5), N.C. for no chord, % for the bar before; a - after the root is "
                         "minor (C-7 = Cm7). Fewer chords than bars repeat as a loop; chords past the end "
                         "are not used. Empty: the chord model reads them from the melody.")  # fmt: skip
    if not text.strip():
        return None, True
    try:
        parse_chords(text, bars[:1])
    except SettingsError as e:
        st.error(str(e))
        return text, False
    return text, True


def run_edit(job: str, model_name: str, pm, label: str, **kw) -> None:
    """Run the edit in this page's turn of the generation queue; new takes go to the session's
    takes (shown here and on Compose). A refused or failed edit shows why; nothing is lost."""
    from ..editing.accompany import accompany
    from ..editing.infill import infill

    model = cached_model(model_name)
    bar = Progress("Infilling" if job == JOBS[0] else "Accompanying")
    try:
        with jobs.slot():
            if job == JOBS[0]:
                takes = infill(model, pm, progress=bar, threads=jobs.threads_for(model), **kw)
            else:
                takes = accompany(model, pm, progress=bar, threads=jobs.threads_for(model), **kw)
    except (ValueError, RuntimeError) as e:  # bad span or settings, a busy server, a model that cannot
        st.session_state[K.EDIT_ERROR] = str(e)
        return
    finally:
        bar.bar.empty()
    st.session_state.pop(K.EDIT_ERROR, None)
    n = len(st.session_state.setdefault(K.TAKES, []))
    what = "infill" if job == JOBS[0] else "accompaniment"
    made = []
    for i, pm_new in enumerate(takes, 1):  # Takes
        start, end = pm_new.info["span"]
        source = label.removesuffix(f" · {model_name}")  # a take's label already names its model
        take = new_take(pm_new, start, f"Take {n + i} · {what} of {source} · {model_name}")
        take["span"], take["kind"] = (start, end), what
        take["piece"] = st.session_state.get("edit_for")  # the piece its chords fit (reset_choices_for)
        take["info"]["seconds"] = end - start  # metrics: the new span against the music before it
        take["seconds"] = pm_new.midi.get_end_time()  # the whole piece (a long one plays around the span)
        made.append(take)
    st.session_state[K.TAKES].extend(made)
    kept = st.session_state.get(K.EDIT_MADE, []) + [t["id"] for t in made]
    st.session_state[K.EDIT_MADE] = kept[-SHOWN:]  # the newest made here; every take is on Compose
    prerender_audio([playable(t)[0] for t in made[::-1]])
    st.rerun()  # the take picker above was drawn before these takes existed
