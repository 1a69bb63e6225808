"""Streamlit building blocks of the A/B listening page (pages/ab.py stays thin).

Session state: ``ab_round`` (the current :class:`~musiclab.listening.ab.Round`), ``ab_revealed``
(voted on), ``ab_seed_bytes`` (the round's seed file, kept in memory only, stored with the
vote only if the listener opts in), ``ab_msg`` ((kind, text) shown once), ``ab_go`` (a
"next round" button asked for a new round). The vote file comes from the server's
environment (:func:`musiclab.listening.votes.default_db_path`), never from the browser.
"""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Callable

import plotly.graph_objects as go
import streamlit as st

from ..listening.ab import describe, make_round, own_sampling, surprise_pair
from ..listening.rating import head_to_head, leaderboard
from ..listening.votes import StoreError, VoteError, VoteStore
from ..midi.examples import list_examples
from ..midi.figure import pianoroll_figure
from ..midi.io import load_midi
from ..serving.weights import read_card
from . import keys as K
from .common import KEEP, Progress, cached_model, cached_models, model_picker, seed_length

LISTENER_PARAM = "listener"  # query parameter that keeps the anonymous listener id in the browser's URL
LISTENER_RE = re.compile(r"[0-9a-f]{16}")
VOTE_LABELS = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
MIN_GAMES_FOR_INTERVAL = 5  # fewer votes: the table leaves the 95% interval blank
MODES = ("Two models", "One model, two temperatures", "Surprise me")

Draw = Callable[[random.Random], list[tuple[str, dict]]]  # rng -> two (model, settings)


def listener_id() -> str:
    """The anonymous per-browser id: from ``?listener=`` if well-formed, else a new random one
    (16 hex digits) written to the URL so a bookmark or reload keeps it."""
    qp = st.query_params.get(LISTENER_PARAM)
    lid = qp if qp and LISTENER_RE.fullmatch(qp) else st.session_state.get(K.AB_LISTENER) or secrets.token_hex(8)
    st.session_state[K.AB_LISTENER] = lid
    if qp != lid:
        st.query_params[LISTENER_PARAM] = lid
    return lid


def ok_models() -> list[str]:
    return [r["name"] for r in cached_models() if r["status"] == "ok"]


def length_sliders(seed) -> tuple[float, float]:
    """(seed excerpt seconds, continuation seconds); the seed slider fits the seed's length."""
    seed_s = seed_length(seed, "ab_", 8.0)
    new_s = st.slider("Continue for (s)", 5, 60, 10, 5, key="ab_seconds", persist_state=KEEP)
    return seed_s, float(new_s)


def contestants_picker(settings: dict) -> Draw | None:
    """What to compare: returns rng -> [(model, settings), (model, settings)], or None."""
    models = ok_models()
    if not models:
        model_picker("ab_model_1")  # shows why no model is usable
        return None
    mode = st.radio("Compare", MODES, index=0 if len(models) > 1 else 1, key="ab_mode", persist_state=KEEP)
    if mode == "Two models":
        m1 = model_picker("ab_model_1", "Model 1")
        others = [m for m in models if m != m1] or models
        m2 = st.selectbox("Model 2", models, index=models.index(others[0]), key="ab_model_2", persist_state=KEEP)
        if m1 == m2:
            st.caption("Same model twice: a sanity check (only the random seeds differ).")
        pick = _settings_for(settings)
        return lambda rng: [(m1, pick(m1)), (m2, pick(m2))]
    if mode == "One model, two temperatures":
        m = model_picker("ab_model_1", "Model")
        t2 = st.slider("Second temperature", 0.0, 2.0, 1.3, 0.05, key="ab_temperature_2", persist_state=KEEP)
        if t2 == settings["temperature"]:
            st.caption("Both temperatures are equal: only the random seeds differ.")
        return lambda rng: [(m, dict(settings)), (m, {**settings, "temperature": t2})]
    st.caption("Each round: two random models, or one model with two random settings.")
    if len(models) < 2:
        return lambda rng: surprise_pair(models, settings, rng)
    pick = _settings_for(settings)
    return lambda rng: [(m, pick(m)) for m, _ in surprise_pair(models, settings, rng)]


def _settings_for(settings: dict) -> Callable[[str], dict]:
    """model -> its sampling in a two-model round: its card's recommended one (the key lock the
    listener's) unless the listener turns that off, then the page's ``settings`` for both."""
    own = st.checkbox(
        "Each model's own sampling",
        True,
        key="ab_own_sampling",
        help="As Compose starts it: its card's sampling (the flagship's: temperature 0.9, no repetition "
        "penalty), else the app's defaults. Off: both play with the Sampling settings above.",
        persist_state=KEEP,
    )
    if own:
        st.caption(
            "Each model plays at its own recommended sampling; of the Sampling settings above, only the key lock applies."
        )
        return lambda m: own_sampling(read_card(m), settings)
    return lambda m: dict(settings)


def start_round(seed, seed_bytes: bytes, label: str, draw: Draw, seed_s: float, new_s: float, blind: bool) -> None:
    """Generate a new round (both takes + matched audio) into the session."""
    rng = random.Random()
    bar = Progress("Generating A and B")
    try:
        rnd = make_round(
            cached_model, seed, seed_bytes, draw(rng), seed_seconds=seed_s, seconds=new_s,
            seed_label=label, blind=blind, rng=rng, progress=bar,
        )  # fmt: skip
    finally:
        bar.bar.empty()  # the round (or its error) replaces the bar
    st.session_state.update({K.AB_ROUND: rnd, K.AB_REVEALED: False, "ab_seed_bytes": seed_bytes})
    st.session_state.pop(K.AB_MSG, None)


def cast_vote(vote: str) -> None:
    """Button callback: store the vote; reveal on success, keep the round on any error."""
    rnd = st.session_state.get(K.AB_ROUND)
    if rnd is None:
        return
    share = st.session_state.get("ab_share_seed") and st.session_state.get("ab_seed_bytes")
    try:
        VoteStore().record(rnd, vote, st.session_state[K.AB_LISTENER], seed_midi=share or None)
    except VoteError as e:
        st.session_state[K.AB_MSG] = ("error", f"Vote not stored: {e}")
    except StoreError as e:
        st.session_state[K.AB_MSG] = ("error", f"Vote not stored: {e}. This round is kept: vote again once fixed.")
    else:
        st.session_state[K.AB_REVEALED] = True
        st.session_state[K.AB_MSG] = ("success", f"Vote stored: {VOTE_LABELS[vote]}.")


def next_round(new_example: bool) -> None:
    """Button callback: ask for a new round, with the same seed or another bundled example."""
    if new_example:
        examples = list_examples()
        current = st.session_state.get("ab_example") if st.session_state.get("ab_src") == "Example" else None
        title = random.choice([t for t in examples if t != current] or list(examples))
        st.session_state.update(ab_src="Example", ab_example=title)
    st.session_state[K.AB_GO] = True


def show_round() -> None:
    """The current round: A and B side by side, vote buttons, then the reveal."""
    rnd = st.session_state.get(K.AB_ROUND)
    if rnd is None:
        st.info("Pick a seed and what to compare, then press **New round**.")
        return
    revealed = st.session_state.get(K.AB_REVEALED, False)
    if rnd.failed:
        st.error(f"Generation failed: {rnd.error}. This round cannot be voted on: start a new round.")
    if rnd.notice:
        st.warning(rnd.notice)
    skip = st.checkbox(
        "Play from the seed end",
        key="ab_skip_seed",
        help="Start both players 1 s before the new music",
        persist_state=KEEP,
    )
    for col, side, c, i in zip(st.columns(2), "AB", (rnd.a, rnd.b), (0, 1)):
        with col, st.container(border=True):
            shown = revealed or not rnd.blind
            st.markdown(f"### {side}")
            if shown:
                st.markdown(f"**{c.describe()}**")
            if c.midi:
                fig = pianoroll_figure(load_midi(c.midi), seed_end=rnd.seed_seconds, height=260)
                st.plotly_chart(fig, key=f"ab_roll_{rnd.round_id}_{side}")
            if len(rnd.audio) == 2:
                st.audio(rnd.audio[i], format="audio/ogg", start_time=int(max(0, rnd.seed_seconds - 1)) if skip else 0)
            if c.error:
                st.caption(f"No take: {c.error}")
    kind, text = st.session_state.pop(K.AB_MSG, (None, None))
    if kind:
        getattr(st, kind)(text)
    if revealed:
        st.markdown(
            f"**Revealed:** A was **{rnd.a.describe()}** (random seed {rnd.a.random_seed}), "
            f"B was **{rnd.b.describe()}** (random seed {rnd.b.random_seed})."
        )
    else:
        cols = st.columns(len(VOTE_LABELS))
        for col, (v, lab) in zip(cols, VOTE_LABELS.items()):
            col.button(
                lab, key=f"ab_vote_{v}", on_click=cast_vote, args=(v,), disabled=rnd.failed, use_container_width=True
            )
    if revealed or rnd.failed:
        c1, c2 = st.columns(2)
        c1.button("Next round · same seed", key="ab_next_same", on_click=next_round, args=(False,), type="primary")
        c2.button("Next round · new example", key="ab_next_example", on_click=next_round, args=(True,))


def h2h_figure(matches, order: list[str]) -> go.Figure:
    """Heatmap of head_to_head scores, players in ``order`` (best first) on both axes."""
    share, games = head_to_head(matches)
    share, games = share.loc[order, order], games.loc[order, order]
    text = [[f"{s:.0%} of {n}" if n else "" for s, n in zip(rs, rn)] for rs, rn in zip(share.values, games.values)]
    fig = go.Figure(
        go.Heatmap(z=share.values, x=order, y=order, zmin=0, zmax=1, colorscale="RdBu", text=text,
                   texttemplate="%{text}", colorbar=dict(title="score"))
    )  # fmt: skip
    fig.update_layout(title="Head to head: row's share of points against column", height=220 + 50 * len(order))
    fig.update_xaxes(title="opponent")
    fig.update_yaxes(autorange="reversed")
    return fig


@st.cache_data(show_spinner=False, max_entries=16)
def _board(matches: tuple[tuple[str, str, str], ...]):
    return leaderboard(matches)


def leaderboard_view() -> None:
    """Ratings with 95% intervals, win/tie/loss counts, head-to-head heatmap, CSV export."""
    store = VoteStore()
    try:
        votes = store.votes()
    except StoreError as e:
        st.error(str(e))
        return
    if not votes:
        st.info("No votes yet: listen to a round and vote.")
        return
    c1, c2 = st.columns(2)
    by = c1.radio("Rate", ["Model", "Model + settings"], horizontal=True, key="ab_rate_by", persist_state=KEEP)
    blind_only = c2.checkbox("Blind votes only", True, key="ab_blind_only", persist_state=KEEP)
    player = (lambda m, s: m) if by == "Model" else describe
    matches = tuple(
        (player(v["model_a"], v["settings_a"]), player(v["model_b"], v["settings_b"]), v["vote"])
        for v in votes
        if v["blind"] or not blind_only
    )
    same = sum(a == b for a, b, _ in matches)
    st.caption(
        f"{len(votes)} vote(s) stored, {len(matches) - same} used here"
        + (f"; {same} compared a player with itself (try **Model + settings**)" if same else "")
        + ". Rating: Bradley-Terry on the Elo scale (1000 = average, +400 = 10:1 odds), 95% bootstrap interval."
    )
    board = _board(matches).copy()
    if board.empty:
        st.info("No votes between two different players yet.")
    else:
        few = board["games"] < MIN_GAMES_FOR_INTERVAL
        for col in ("low", "high"):  # a bootstrap of 1-4 votes says nothing: shown as "–"
            board[col] = [("–" if f else f"{v:.0f}") for v, f in zip(board[col], few)]
        fmt = {"rating": st.column_config.NumberColumn(format="%.0f")}
        fmt["score"] = st.column_config.NumberColumn(format="percent", help="share of points (ties half)")
        st.dataframe(board, hide_index=True, column_config=fmt, key="ab_board")
        if few.any():
            st.caption(f"Intervals appear once a player has {MIN_GAMES_FOR_INTERVAL} votes.")
        st.plotly_chart(h2h_figure(matches, list(board["player"])), key="ab_h2h")
    st.download_button(
        "Download all votes (CSV)", store.export_csv, "musiclab-votes.csv", "text/csv", key="ab_csv", on_click="ignore"
    )
