"""Compose: seed + model + controls -> takes you can hear, see, download and continue."""

import streamlit as st

from musiclab.app.common import (
    KEEP,
    cached_model,
    ensure_frame,
    job_panel,
    model_picker,
    new_take,
    parse_seed,
    prerender_audio,
    sampling_controls,
    seed_picker,
    seed_preview,
    track_picker,
)
from musiclab.app.takes import take_card
from musiclab.serving.jobs import Busy, Job

ensure_frame()

SHOWN = 8  # newest takes drawn as cards; a page of 30 cards took 10-12 s per rerun (tester)
st.session_state.setdefault("takes", [])
st.title("Compose")
if toast := st.session_state.pop("job_toast", None):
    st.toast(toast, icon=":material/music_note:")


def collect(job: Job) -> None:
    """Job finished: keep its takes (also a stopped job's partial ones), or show why not."""
    st.session_state.pop("job", None)
    if job.error:
        st.session_state["job_error"] = job.error
        return
    n = len(st.session_state["takes"])
    made = [
        new_take(take, job.kwargs["seed_seconds"], f"Take {n + i} · {job.model.name}")
        for i, take in enumerate(job.result, 1)
    ]
    st.session_state["takes"].extend(made)
    names = f"Take {n + 1}" if len(made) == 1 else f"Takes {n + 1}-{n + len(made)}"
    st.session_state["job_toast"] = f"{names} ready: at the top of your takes"  # seen wherever the page is scrolled
    prerender_audio([t["midi"] for t in made[::-1]])  # newest first, as the cards are drawn
    info = job.result[0].info
    rate = info["tokens"] / max(info["compute_seconds"], 1e-6)
    stopped = " · stopped early, partial takes kept" if info["stopped_early"] else ""
    st.session_state["job_note"] = (
        f"{len(job.result)} take(s): {info['tokens']} tokens in {info['compute_seconds']:.2f} s "
        f"({rate:,.0f} tokens/s){stopped}"
    )


left, right = st.columns([1, 2])
with left:
    name = model_picker("compose_model")
    if name:
        card = cached_model(name).card
        with st.expander(f"About {name}"):
            m = card.get("metrics", {})
            st.write(card.get("paper", ""))
            st.caption(
                f"{card.get('params', 0):,} params · valid NLL {m.get('valid_nll')} vs {m.get('baseline')} "
                f"{m.get('baseline_nll')} · data: {card.get('data', '?')}"
            )
    data, label = seed_picker("compose")
    seed = parse_seed(data, label, "compose") if data is not None else None
    if seed is not None:
        tracks = track_picker(seed, "compose", data)
        preview = st.empty()  # filled below, once the seed length is known
        settings = sampling_controls(seed)
        with preview.container():
            unusable = seed_preview(data, settings["seed_seconds"], tracks)
        busy = "job" in st.session_state
        if tracks == []:
            st.caption("Choose at least one track to continue.")
        if st.button("Generate", type="primary", disabled=name is None or busy or bool(unusable), key="generate"):
            st.session_state.pop("job_error", None)
            st.session_state.pop("job_note", None)  # the last run's note is not this run's
            try:
                st.session_state["job"] = Job(cached_model(name), seed, tracks=tracks, **settings)
            except Busy as e:
                st.session_state["job_error"] = str(e)
            st.rerun()  # draw the page as busy (Generate greyed out) while the job runs
    if "job" in st.session_state:
        job_panel(st.session_state["job"], collect)
    if st.session_state.get("job_error"):
        st.error(f"Could not generate: {st.session_state['job_error']}")
    elif st.session_state.get("job_note"):
        st.success(st.session_state["job_note"])

with right:
    takes = st.session_state["takes"][::-1]  # newest first
    if not takes and "job" not in st.session_state:
        st.info("Your takes appear here. Pick a seed and press **Generate**.")
    for take in takes[:SHOWN]:
        take_card(take)
    if len(takes) > SHOWN:  # every card redraws on each rerun: older ones only when asked for
        older = len(takes) - SHOWN
        if st.toggle(f"Show {older} earlier take(s)", key="show_older", persist_state=KEEP):
            for take in takes[SHOWN:]:
                take_card(take)
