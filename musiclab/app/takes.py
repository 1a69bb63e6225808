"""One take on the page: header, piano roll, metrics row, audio, downloads, continue."""

from __future__ import annotations

import streamlit as st

from ..midi.figure import pianoroll_figure
from ..midi.io import load_midi
from . import keys as K
from .common import MAX_SEED_S, audio_for, wav_for


def continue_from(take: dict, key: str = "compose", go: bool = False) -> None:
    """Make a take the seed (a button callback: runs before the next script run, so widgets may be
    set); ``go``: from another page, which then moves to Compose, where a toast says what happened."""
    st.session_state[K.SEED_BYTES] = take["midi"]
    st.session_state[K.SEED_LABEL] = take["label"]
    st.session_state[f"{key}_src"] = "Current seed"
    st.session_state[K.SEED_SECONDS] = float(min(round(load_midi(take["midi"]).get_end_time(), 1), MAX_SEED_S))
    st.session_state[K.SEED_FOR] = "keep"  # the whole take, not the default length of a new seed
    st.session_state[K.JOB_TOAST] = f"{take['label']} is the seed now: pick the length and press Generate"
    if go:
        st.session_state[K.GO_COMPOSE] = True


LONG_PIECE_S = 90.0  # an edit of a longer piece plays only around its span (a whole album takes minutes to render)
AROUND_S, MOST_S = 8.0, 120.0  # seconds played before / after the span; the longest window played


@st.cache_data(show_spinner=False, max_entries=32)
def _window_bytes(midi: bytes, start: float, end: float) -> bytes:
    from ..midi.io import midi_to_bytes, time_window

    return midi_to_bytes(time_window(load_midi(midi), start, end))


def playable(take: dict, midi: bytes | None = None) -> tuple[bytes, str | None]:
    """(the MIDI the card plays, a caption when that is only a window of the take): an edit of a
    long piece plays from AROUND_S before its span to AROUND_S after (at most MOST_S)."""
    midi = take["midi"] if midi is None else midi
    span, end = take.get("span"), take.get("seconds")
    if not span or end is None or end <= LONG_PIECE_S:
        return midi, None
    a, b = max(0.0, span[0] - AROUND_S), min(end, span[1] + AROUND_S)
    b = min(b, a + MOST_S)
    note = (
        f"Plays {a:.0f}–{b:.0f} s, around the span: the piece lasts {end / 60:.0f} min (the downloads have all of it)."
    )
    return _window_bytes(midi, round(a, 3), round(b, 3)), note


@st.cache_data(show_spinner=False, max_entries=32)
def without_track(midi: bytes, track: int) -> bytes:
    """The take's MIDI without one track (to hear the rest alone)."""
    from ..midi.io import midi_to_bytes

    pm = load_midi(midi)
    del pm.instruments[track]
    return midi_to_bytes(pm)


def made_seconds(pm, seed_end: float, info: dict) -> float | None:
    """Seconds of new music a take holds: the asked length, or for a take stopped early the
    span up to its last new note's end (rates such as notes/s are over this span)."""
    asked = info.get("seconds")
    if not info.get("stopped_early"):
        return asked
    ends = [n.end for i in pm.instruments for n in i.notes if n.start >= seed_end - 1e-6]
    return max(min(max(ends, default=seed_end) - seed_end, asked or float("inf")), 0.5)


def chords_caption(info: dict) -> str:
    """What an accompaniment's chords were: one a bar, from which bar, given or estimated."""
    how, by = "as given", info.get("chords_by", "")
    if info.get("chords_from") == "melody":
        how = "estimated from the melody" + (" by the chord model" if by == "chord model" else " by rule")
        how += f": {by}" if by not in ("", "chord model", "rules") else ""  # why the chord model was not used
    unused = info.get("chords_unused", 0)
    extra = f"; {unused} bar{'s' * (unused > 1)} of chords past the span not used" if unused else ""
    extra += ", repeated as a loop" if info.get("chords_looped") else ""
    return (f"Chords followed, a bar each from bar {info.get('chords_first_bar', 1)} ({how}{extra}): "
            + " | ".join(info["chords"]))  # fmt: skip


def _use_chords(names: list[str]) -> None:
    st.session_state[K.EDIT_CHORDS] = " | ".join(names)


def take_card(take: dict, elsewhere: bool = False) -> None:
    """One take's card; ``elsewhere``: on a page other than Compose ("Continue" moves to Compose)."""
    from .evaluate import metrics_panel

    with st.container(border=True):
        info = take["info"]
        stopped = " · stopped early" if info.get("stopped_early") else ""
        seed = f" · from {take['from']}" if take.get("from") else ""  # which piece, once takes of several pile up
        st.markdown(f"**{take['label']}**{seed} · {take['made']} · random seed {info.get('random_seed')}{stopped}")
        pm = load_midi(take["midi"])
        span = take.get("span")  # an edit: its span is shaded, no seed / continuation split
        melody = info.get("melody_track") if info.get("job") == "accompany" else None  # as on the Edit roll
        fig = pianoroll_figure(pm, seed_end=None if span else take["seed_end"], span=span, melody=melody)
        st.plotly_chart(fig, key=f"roll_{take['id']}")
        if info.get("chords"):
            st.caption(chords_caption(info))
        here = take.get("piece") == st.session_state.get("edit_for")  # the piece and bar the chord box is for
        here = here and info.get("chords_first_bar") == st.session_state.get(K.EDIT_CHORDS_BAR)
        if elsewhere and info.get("chords_from") == "melody" and here:
            st.button("Edit these chords", key=f"chords_{take['id']}", on_click=_use_chords, args=(info["chords"],),
                      help="Puts them in the chord box to change a bar or two, then accompany again")  # fmt: skip
        if take.get("kind") != "accompaniment" and take["seed_end"] > 0:  # nothing before to compare with
            metrics_panel(pm, take["seed_end"], made_seconds(pm, take["seed_end"], info))
        midi = take["midi"]
        added = [i for i, inst in enumerate(pm.instruments) if inst.name == "musiclab accompaniment"]
        if added and st.toggle("Mute the accompaniment", key=f"mute_{take['id']}"):
            midi = without_track(take["midi"], added[0])
        midi, window = playable(take, midi)
        if window:
            st.caption(window)
        ogg, notice, _ = audio_for(midi)
        if notice:
            st.warning(notice)
        st.audio(ogg, format="audio/ogg")
        c1, c2, c3 = st.columns([1, 1, 2])  # the third holds "Continue from this take" whole at 1280 px
        tid = take["id"]
        stem = f"musiclab-{info.get('model', 'take')}-{tid}"  # model names are registry names: safe in a file name
        c1.download_button("MIDI", take["midi"], f"{stem}.mid", "audio/midi", key=f"dl_mid_{tid}", on_click="ignore")
        c2.download_button(
            "WAV",
            lambda: wav_for(take["midi"]),
            f"{stem}.wav",
            "audio/wav",
            key=f"dl_wav_{tid}",
            on_click="ignore",
        )
        c3.button(
            "Continue from this take", key=f"cont_{tid}", on_click=continue_from, args=(take, "compose", elsewhere)
        )
