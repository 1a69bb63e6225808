"""Edit: regenerate a passage of a piece (infill) or write a piano accompaniment under its melody."""

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from musiclab.app import keys as K
from musiclab.app.common import (
    KEEP,
    content_id,
    ensure_frame,
    meter_notice,
    parse_seed,
    sampling_knobs,
    track_picker,
)
from musiclab.app.edit import (
    JOBS,
    chords_input,
    dragged_span,
    editing_models,
    melody_track,
    replace_toggle,
    reset_choices_for,
    roll,
    run_edit,
    source_picker,
    span_inputs,
)
from musiclab.app.takes import take_card

ensure_frame()
if st.session_state.pop(K.GO_COMPOSE, False):  # "Continue from this take" on one of the cards below
    try:
        st.switch_page("pages/compose.py")
    except StreamlitPageNotFoundError:  # this page run alone, without the app's navigation
        st.info(st.session_state.pop(K.JOB_TOAST, "The take is the seed now") + " (on Compose).")
st.title("Edit")
able = editing_models()
left, right = st.columns([1, 2])
with left:
    if not able:
        st.info("No installed model can infill or accompany: they need the flagship (bar/note tokens).")
    name = st.selectbox("Model", able, key="edit_model", persist_state=KEEP) if able else None
    data, label = source_picker()
    pm = parse_seed(data, label, "edit") if data is not None else None
with left:
    shade = None
    if pm is not None:
        piece = content_id(data)
        reset_choices_for(piece)
        if meter := meter_notice(pm, name):
            st.warning(meter)
        dragged = dragged_span(pm)
        job = st.radio("Job", JOBS, key="edit_job", persist_state=KEEP)
        chords_read = True
        if job == JOBS[0]:
            start, end = shade = span_inputs(pm, dragged)
            kw = dict(start=start, end=end, tracks=track_picker(pm, "edit", data, "Tracks to infill"))
        else:
            kw = dict(melody_track=melody_track(pm, piece))
            kw["replace_others"] = replace_toggle(pm, kw["melody_track"])
            st.caption("The model reads the melody track only; the melody is kept exactly.")
            if st.toggle("Only a span", key="edit_accompany_span"):
                kw["start"], kw["end"] = shade = span_inputs(pm, dragged)
            kw["chords"], chords_read = chords_input(pm, kw["melody_track"], kw.get("start"), kw.get("end"))
        kw.update(sampling_knobs("edit_", expanded=False, model=name))
        verb = "Regenerate selection" if job == JOBS[0] else "Accompany"
        asked = f"{name}/{piece}/{job}/{sorted(kw.items())}"  # an error is shown until the request changes
        if st.button(verb, type="primary", disabled=name is None or not chords_read, key="edit_go"):
            st.session_state[K.EDIT_ASKED] = asked
            run_edit(job, name, pm, label, **kw)
        if (err := st.session_state.get(K.EDIT_ERROR)) and st.session_state.get(K.EDIT_ASKED) == asked:
            st.error(f"Could not edit: {err}")
with right:
    if pm is not None:
        roll(pm, shade, melody=kw.get("melody_track"))
    made = set(st.session_state.get(K.EDIT_MADE, []))
    if made:
        st.caption("Takes made here, newest first; every take of this session is also on Compose.")
    for take in [t for t in st.session_state.get(K.TAKES, [])[::-1] if t["id"] in made]:
        take_card(take, elsewhere=True)
