"""Compose: seed + model + controls -> takes you can hear, see, download and continue."""

import streamlit as st

from musiclab.app import keys as K
from musiclab.app.common import (
    KEEP,
    cached_model,
    ensure_frame,
    job_panel,
    meter_notice,
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

SHOWN = 8  # newest takes drawn as cards: every card redraws on each rerun
st.session_state.setdefault(K.TAKES, [])
st.title("Compose")
if toast := st.session_state.pop(K.JOB_TOAST, None):
    st.toast(toast, icon=":material/music_note:")


def collect(job: Job) -> None:
    """Job finished: keep its takes (also a stopped job's partial ones), or show why not."""
    st.session_state.pop(K.JOB, None)
    if job.error:
        st.session_state[K.JOB_ERROR] = job.error
        return
    n = len(st.session_state[K.TAKES])
    made = [
        new_take(take, job.kwargs["seed_seconds"], f"Take {n + i} · {job.model.name}", job.seed_label)
        for i, take in enumerate(job.result, 1)
    ]
    st.session_state[K.TAKES].extend(made)
    names = f"Take {n + 1}" if len(made) == 1 else f"Takes {n + 1}-{n + len(made)}"
    st.session_state[K.JOB_TOAST] = f"{names} ready: at the top of your takes"  # seen wherever the page is scrolled
    prerender_audio([t["midi"] for t in made[::-1]])  # newest first, as the cards are drawn
    info = job.result[0].info
    rate = info["tokens"] / max(info["compute_seconds"], 1e-6)
    stopped = " · stopped early, partial takes kept" if info["stopped_early"] else ""
    st.session_state[K.JOB_NOTE] = (
        f"{len(job.result)} take(s): {info['tokens']} tokens in {info['compute_seconds']:.2f} s "
        f"({rate:,.0f} tokens/s){stopped}"
    )


left, right = st.columns([1, 2])
go = right.container()  # Generate, its progress and notes at the top of the takes: in view, where takes arrive
with left:
    name = model_picker("compose_model")
    if name:
        card = cached_model(name).card
        with st.expander(f"About {name}"):
            m = card.get("metrics", {})
            st.write(card.get("paper", ""))
            vs = f" vs {m['baseline']} {m.get('baseline_nll')}" if m.get("baseline") else ""
            st.caption(
                f"{card.get('params', 0):,} params · valid NLL {m.get('valid_nll')}{vs} · data: {card.get('data', '?')}"
            )
    data, label = seed_picker("compose")
    seed = parse_seed(data, label, "compose") if data is not None else None
    if seed is not None:
        tracks = track_picker(seed, "compose", data)
        if meter := meter_notice(seed, name):
            st.warning(meter)
        preview = st.container()  # filled below, once the seed length is known (st.empty remounted the chart)
        settings = sampling_controls(seed, model=name, variations=False)  # Variations sits by Generate
        with preview:
            unusable = seed_preview(data, settings["seed_seconds"], tracks)

with go:
    button, count = st.columns([1, 2], vertical_alignment="bottom")
    if seed is None:  # greyed out rather than gone: the seed's error says why
        button.button("Generate", type="primary", disabled=True, key="generate")
    else:
        settings["variations"] = count.slider("Variations", 1, 4, 1, key="variations", persist_state=KEEP)
        if tracks == []:
            st.caption("Choose at least one track to continue.")
        busy = K.JOB in st.session_state
        if button.button("Generate", type="primary", disabled=name is None or busy or bool(unusable), key="generate"):
            st.session_state.pop(K.JOB_ERROR, None)
            st.session_state.pop(K.JOB_NOTE, None)  # the last run's note is not this run's
            try:
                job = Job(cached_model(name), seed, tracks=tracks, **settings)
                job.seed_label = label
                st.session_state[K.JOB] = job
            except Busy as e:
                st.session_state[K.JOB_ERROR] = str(e)
            st.rerun()  # draw the page as busy (Generate greyed out) while the job runs
    if K.JOB in st.session_state:
        job_panel(st.session_state[K.JOB], collect)
    if st.session_state.get(K.JOB_ERROR):
        st.error(f"Could not generate: {st.session_state['job_error']}")
    elif st.session_state.get(K.JOB_NOTE) and seed is not None and not unusable:  # not under a seed's error
        st.success(st.session_state[K.JOB_NOTE])

with right:
    takes = st.session_state[K.TAKES][::-1]  # newest first
    if not takes and K.JOB not in st.session_state:
        st.info("Your takes appear here. Pick a seed and press **Generate**.")
    for take in takes[:SHOWN]:
        take_card(take)
    if len(takes) > SHOWN:  # every card redraws on each rerun: older ones only when asked for
        older = len(takes) - SHOWN
        if st.toggle(f"Show {older} earlier take(s)", key="show_older", persist_state=KEEP):
            for take in takes[SHOWN:]:
                take_card(take)
