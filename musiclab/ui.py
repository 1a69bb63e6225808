"""Streamlit building blocks shared by the pages (the pages themselves stay thin).

Models are loaded once per process (``st.cache_resource``) and shared read-only by all
sessions; everything a user makes (seed, takes) lives in ``st.session_state``.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import streamlit as st

from .examples import list_examples
from .midi_io import LIMITS, MidiError, load_midi, midi_to_bytes, non_drum_tracks, track_label
from .synth import encode_audio, render_audio_with_notice
from .weights import list_models, load_model

ACCEPTED = "Standard MIDI files (.mid/.midi), types 0/1/2, up to 4 MB, 60,000 notes and 60 minutes"


@st.cache_resource(show_spinner="Loading model…")
def cached_model(name: str):
    return load_model(name)


@st.cache_data(show_spinner=False)
def cached_models() -> list[dict]:
    return list_models()


@st.cache_data(show_spinner=False, max_entries=256)
def audio_for(midi_bytes: bytes) -> tuple[bytes, str | None, float]:
    """(OGG bytes, fallback notice or None, seconds) for a MIDI file's bytes."""
    pm = load_midi(midi_bytes)
    audio, sr, notice = render_audio_with_notice(pm)
    return encode_audio(audio, sr, "OGG"), notice, len(audio) / sr


@st.cache_data(show_spinner=False, max_entries=64)
def wav_for(midi_bytes: bytes) -> bytes:
    audio, sr, _ = render_audio_with_notice(load_midi(midi_bytes))
    return encode_audio(audio, sr, "WAV")


def model_picker(key: str, label: str = "Model") -> str | None:
    """Selectbox of usable models; unavailable ones are listed with their reason."""
    rows = cached_models()
    ok = [r["name"] for r in rows if r["status"] == "ok"]
    for r in rows:
        if r["status"] != "ok":
            st.caption(f"⚠️ {r['name']} is unavailable: {r['error']}")
    if not ok:
        st.error("No model is available: the weights/ folder has no loadable model.")
        return None
    default = ok.index("lstm") if "lstm" in ok else 0
    return st.selectbox(label, ok, index=default, key=key)


def seed_picker(key: str) -> tuple[bytes | None, str | None]:
    """Example / upload / current seed chooser. Returns (MIDI bytes, label) or (None, None)."""
    examples = list_examples()
    options = ["Example", "Upload"] + (["Current seed"] if st.session_state.get("seed_bytes") else [])
    src = st.radio("Seed", options, horizontal=True, key=f"{key}_src")
    if src == "Example":
        title = st.selectbox("Example seed", list(examples), key=f"{key}_example")
        return examples[title].read_bytes(), title
    if src == "Upload":
        up = st.file_uploader("Your MIDI file", type=["mid", "midi"], key=f"{key}_upload", help=ACCEPTED)
        if up is None:
            st.info(f"Upload a MIDI file to use as the seed. Accepted: {ACCEPTED}.")
            return None, None
        data = up.getvalue()
        if len(data) > LIMITS.max_bytes:
            st.error(f"{up.name}: the file is {len(data) / 1e6:.1f} MB; accepted: {ACCEPTED}.")
            return None, None
        return data, up.name
    return st.session_state["seed_bytes"], st.session_state.get("seed_label", "current seed")


def parse_seed(data: bytes, label: str):
    """load_midi with the error shown in the page (None on error; nothing else is lost)."""
    try:
        return load_midi(data)
    except MidiError as e:
        st.error(f"{label}: {e}. Accepted: {ACCEPTED}.")
        return None


def track_picker(pm, key: str) -> list[int] | None:
    tracks = non_drum_tracks(pm)
    if len(pm.instruments) <= 1:
        return None
    chosen = st.multiselect(
        "Tracks to continue",
        list(range(len(pm.instruments))),
        default=tracks,
        format_func=lambda i: track_label(pm, i),
        key=f"{key}_tracks",
    )
    return chosen


def new_take(pm, seed_end: float, label: str) -> dict:
    midi = midi_to_bytes(pm)
    return {
        "id": uuid.uuid4().hex[:8],
        "label": label,
        "midi": midi,
        "seed_end": seed_end,
        "info": getattr(pm, "musiclab_info", {}),
        "sha": hashlib.sha256(midi).hexdigest()[:12],
        "made": time.strftime("%H:%M:%S"),
    }


class Progress:
    """progress(done, total) callback drawing a bar with tokens/s."""

    def __init__(self, label: str = "Generating"):
        self.bar = st.progress(0.0, text=f"{label}…")
        self.t0 = time.perf_counter()
        self.label = label

    def __call__(self, done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - self.t0, 1e-6)
        self.bar.progress(min(done / max(total, 1), 1.0), text=f"{self.label}: {done} tokens, {rate:,.0f} tokens/s")
