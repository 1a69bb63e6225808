"""A/B listening: two continuations of one seed, a blind vote, then the reveal; a leaderboard."""

import streamlit as st

from musiclab.app import keys as K
from musiclab.app.ab import (
    contestants_picker,
    leaderboard_view,
    length_sliders,
    listener_id,
    show_round,
    start_round,
)
from musiclab.app.common import KEEP, ensure_frame, parse_seed, sampling_knobs, seed_picker, seed_preview

ensure_frame()

st.title("A/B listening")
listener_id()
pending = st.session_state.pop(K.AB_GO, False)  # a "next round" button was pressed

listen, board = st.tabs(["Listen", "Leaderboard"])
with board:  # filled first is fine: a vote is stored by its button callback before this run
    leaderboard_view()

with listen:
    left, right = st.columns([1, 2])
    with left:
        data, label = seed_picker("ab")
        seed = parse_seed(data, label, "ab") if data is not None else None
        if seed is not None:
            seed_s, new_s = length_sliders(seed)
            unusable = seed_preview(data, seed_s, None)
            settings = sampling_knobs("ab_", expanded=False, variations=False, random_seed=False)
            draw = contestants_picker(settings)
            blind = st.checkbox("Blind: hide the names until I vote", True, key="ab_blind", persist_state=KEEP)
            st.checkbox(
                "Share this seed's MIDI with my vote",
                key="ab_share_seed",
                help="Off: only its sha256 is kept",
                persist_state=KEEP,
            )
            go = st.button("New round", type="primary", disabled=draw is None or bool(unusable), key="ab_new")
            if (go or pending) and draw is not None and not unusable:
                start_round(seed, data, label, draw, seed_s, new_s, blind)
    with right:
        show_round()
