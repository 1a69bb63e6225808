"""Streamlit building blocks shared by the pages (the pages themselves stay thin).

Models are loaded once per process (``st.cache_resource``) and shared read-only by all
sessions; everything a user makes (seed, takes) lives in ``st.session_state``.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
import uuid

# pandas now, once: plotly imports it lazily, and a figure built by another session meanwhile
# sees it half-initialised ("partially initialized module 'pandas' has no attribute 'Series'").
import pandas  # noqa: F401
import streamlit as st

from ..generation.threads import serving_threads
from ..midi.examples import list_examples
from ..midi.io import LIMITS, MidiError, load_midi, load_midi_with_notice, midi_to_bytes, non_drum_tracks, track_label
from ..midi.synth import encode_audio, render_audio_with_notice
from ..serving.weights import list_models, load_model
from . import keys as K

serving_threads()  # one intra-op thread per session; a generation alone raises its own (generation/threads.py)
# Generation threads drop the GIL for every torch op and win it back only after other sessions'
# script runs yield it: a short switch interval keeps them fed (docs/performance.md).
sys.setswitchinterval(0.001)
POLL_S = 3.0  # how often a page polls its job, queued or running: each poll costs the server and the browser a run
KEEP = "session"  # widgets' persist_state: a setting keeps its value when the user visits another page and comes back
QUICK_WAIT_S = 1.5  # a new job is awaited this long before the live view is drawn (see job_panel)
MAX_SEED_S = 600.0  # longest seed excerpt: a take continued again and again grows past any small cap
NEAR_END_S = POLL_S  # a job due to end before the next poll is awaited by this one (no poll's delay on a take)
PREVIEW_EVERY_S = 1.5  # the live piano roll is redrawn at most this often (a figure costs GIL time)

DEFAULT_MODELS = ("flagship", "lstm")  # the first one installed is picked first
ACCEPTED = "Standard MIDI files (.mid/.midi), types 0/1/2, up to 4 MB (a longer piece keeps its first 60,000 notes / 60 minutes)"


def ensure_frame() -> None:
    """Call first on every page. Streamlit 1.67 treats a ``pages/`` folder as the legacy
    multipage mode until app.py has run ``st.navigation`` once in the process; a deep link
    (e.g. /ab) as the first request would run the page without its frame. Switch the
    process to st.navigation mode and rerun through app.py. Streamlit offers no supported switch;
    this is the one private API musiclab touches, and tests/test_app_frame.py fails if it changes."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


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


def prerender_audio(midis: list[bytes]) -> None:
    """Start filling ``audio_for``'s cache for new takes, two at a time, in the given order
    (pass the order the cards are drawn in), and return at once.
    FluidSynth runs as a subprocess and the OGG encoder drops the GIL, so both cores work. A card
    asking ``audio_for`` for a take that is being rendered waits for that render (st.cache_data
    holds a lock per key), so the first two cards play as soon as their pair is done instead of
    when the whole batch is. A take whose audio fails here fails again, with its message, in its card."""
    from concurrent.futures import ThreadPoolExecutor

    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    ctx = get_script_run_ctx()

    def one(midi: bytes) -> None:
        add_script_run_ctx(threading.current_thread(), ctx)
        try:
            audio_for(midi)
        except Exception:  # noqa: BLE001 (the take card shows it)
            pass

    pool = ThreadPoolExecutor(2, thread_name_prefix="musiclab-audio")
    for midi in midis:
        pool.submit(one, midi)
    pool.shutdown(wait=False)  # the threads end when the queue is done


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
    default = next((ok.index(n) for n in DEFAULT_MODELS if n in ok), 0)
    return st.selectbox(label, ok, index=default, key=key, persist_state=KEEP)


def content_id(data: bytes) -> str:
    """A short name for the MIDI bytes ``data``: their SHA-256 (another piece may well have the same
    length and count of notes: a transposed copy does)."""
    return hashlib.sha256(data).hexdigest()[:12]


def seed_picker(key: str, what: str = "seed") -> tuple[bytes | None, str | None]:
    """Example / upload / current seed chooser; ``what`` the file is to the page ("seed", "piece").
    Returns (MIDI bytes, label) or (None, None)."""
    examples = list_examples()
    options = ["Example", "Upload"] + (["Current seed"] if st.session_state.get(K.SEED_BYTES) else [])
    src = st.radio(what.capitalize(), options, horizontal=True, key=f"{key}_src", persist_state=KEEP)
    if src == "Example":
        title = st.selectbox(f"Example {what}", list(examples), key=f"{key}_example", persist_state=KEEP)
        return examples[title].read_bytes(), title
    if src == "Upload":
        up = st.file_uploader("Your MIDI file", type=["mid", "midi"], key=f"{key}_upload", help=ACCEPTED)
        last = st.session_state.get(f"{key}_last_upload")
        if up is None and last:  # the uploader forgets its file on a page visit, and empties while it
            # swaps one file for another (a run without the controls resets them in the browser)
            st.caption(f"Using {last[1]}, uploaded before; upload another file to replace it.")
            return last
        if up is None:
            st.info(f"Upload a MIDI file to use as the {what}. Accepted: {ACCEPTED}.")
            return None, None
        data = up.getvalue()
        if len(data) > LIMITS.max_bytes:
            st.error(f"{up.name}: the file is {len(data) / 1e6:.1f} MB. Accepted: {ACCEPTED}.")
            return None, None
        st.session_state[f"{key}_new_upload"] = (data, up.name)  # remembered once it parses (parse_seed)
        return data, up.name
    return st.session_state[K.SEED_BYTES], st.session_state.get(K.SEED_LABEL, "current seed")


def parse_seed(data: bytes, label: str, key: str | None = None):
    """load_midi with the error shown in the page (None on error; nothing else is lost). With the
    ``key`` of its ``seed_picker``, a new upload that parses becomes the one remembered; a bad one
    does not replace a good one."""
    new = st.session_state.pop(f"{key}_new_upload", None) if key else None
    try:
        pm, notice = _parsed_seed(data)
    except MidiError as e:
        why = str(e).split(". Accepted:")[0].rstrip(".")  # the page names what it accepts in one wording
        st.error(f"{label}: {why}. Accepted: {ACCEPTED}.")
        return None
    if notice:
        st.info(f"{label}: {notice}.")
    if new is not None and new[0] is data:
        st.session_state[f"{key}_last_upload"] = new
    return pm


def track_picker(pm, key: str, seed_bytes: bytes, heading: str = "Tracks to continue") -> list[int] | None:
    """Tracks of a multi-track seed to continue (default: every non-drum track), one checkbox
    each: a multiselect's chips (and st.pills) run off the narrow column, hiding tracks.
    Keyed by the seed's content, so a new seed (another example, an upload, a take to continue)
    starts from its own default instead of the previous seed's choice."""
    if len(pm.instruments) <= 1:
        return None
    tag, default = content_id(seed_bytes), set(non_drum_tracks(pm))
    st.markdown(heading)
    cols = st.columns(2) if len(pm.instruments) > 4 else [st.container()]
    chosen = []
    for i in range(len(pm.instruments)):
        with cols[i % len(cols)]:
            label = track_label(pm, i)
            if st.checkbox(label, i in default, key=f"{key}_track_{tag}_{i}", persist_state=KEEP):
                chosen.append(i)
    return chosen


@st.cache_resource(show_spinner=False, max_entries=16)
def _parsed_seed(data: bytes):
    """(seed, notice), parsed once per file for every session and rerun; shared, so only read
    (generation copies its excerpt). Page runs parsed it each time: 8% of a busy server's GIL."""
    return load_midi_with_notice(data)


@st.cache_data(show_spinner=False, max_entries=32)
def _seed_figure(data: bytes, seconds: float, tracks: tuple[int, ...] | None):
    from ..midi.figure import pianoroll_figure
    from ..midi.io import seed_excerpt

    fig = pianoroll_figure(seed_excerpt(_parsed_seed(data)[0], seconds, tracks), seed_end=seconds, height=200)
    return fig.update_xaxes(range=[0, seconds * 1.02])  # from 0 s: a seed may open with a rest


def seed_preview(data: bytes, seconds: float, tracks: list[int] | None) -> str | None:
    """Piano roll of what the model will read: the first ``seconds`` of the chosen tracks. Returns
    why no take can be made from it (e.g. no notes in that span), or None. The figure also loads the
    browser's plotly code before the first take, which would otherwise hold that take's audio player back."""
    if tracks == []:
        return "no track chosen"  # the track picker already says to choose one
    try:
        fig = _seed_figure(data, float(seconds), None if tracks is None else tuple(tracks))
    except MidiError as e:
        st.warning(f"{str(e)[0].upper()}{str(e)[1:]}.")
        return str(e)
    st.caption(f"The seed as the model reads it: {seconds:g} s, up to the dashed line")
    st.plotly_chart(fig, key="seed_roll")
    return None


def meter_notice(pm, model_name: str | None) -> str | None:
    """What a bar/note model (bars of four beats, no time-signature tokens) cannot follow in this
    piece's meters (3/4, 6/8...), or None: the model reads and writes its music in 4/4 bars."""
    from ..serving.weights import read_card

    try:
        kind = read_card(model_name).get("tokenizer", {}).get("kind") if model_name else None
    except ValueError:  # a broken card: the model picker says why
        return None
    fits = [4 * t.numerator / t.denominator in (2, 4, 8) for t in pm.time_signature_changes]
    odd = sorted({f"{t.numerator}/{t.denominator}" for t, ok in zip(pm.time_signature_changes, fits) if not ok})
    if kind != "bar-note" or not odd:
        return None
    return (f"This piece is {'partly ' * any(fits)}in {' and '.join(odd)}; {model_name} writes bars of four "
            "beats, so its rhythm will not keep to that meter.")  # fmt: skip


def new_take(take, seed_end: float, label: str, seed_label: str | None = None) -> dict:
    """A generation's :class:`~musiclab.generation.take.Take` as the page keeps it (MIDI bytes, info);
    ``seed_label``: what it continued, named on its card."""
    midi = midi_to_bytes(take.midi)
    return {
        "id": uuid.uuid4().hex[:8],
        "label": label,
        "from": seed_label,
        "midi": midi,
        "seed_end": seed_end,
        "info": take.info,
        "sha": content_id(midi),
        "made": time.strftime("%H:%M:%S"),
    }


def seed_length(seed, key: str, default: float) -> float:
    """The seed-length slider (s) for ``seed``, its value in session state ``{key}seed_seconds``.
    A new seed starts at ``default`` (all of a shorter seed); "Continue from this take" sets the
    take's length and marks it "keep" (``{key}seed_for``). A seed under 1.5 s is used whole; one
    longer than MAX_SEED_S is read up to MAX_SEED_S, and the page says so."""
    end = seed.get_end_time()
    top = min(max(1.0, round(end, 1)), MAX_SEED_S)
    # the default goes through session state, not value=: "Continue from this take" sets it too,
    # and a widget given both warns. Another seed starts again at its default length.
    ss, k, mark = st.session_state, f"{key}seed_seconds", f"{key}seed_for"
    fp = f"{end:.3f}/{sum(len(i.notes) for i in seed.instruments)}"
    if ss.get(mark) not in (fp, "keep"):
        ss.pop(k, None)
    ss[mark] = fp
    ss[k] = min(ss.get(k, min(default, top)), top)
    if top < 1.5:  # too short for a slider from 1 s: all of it
        st.caption(f"Seed length: all of it ({end:.1f} s)")
        return round(end, 3)
    if end > MAX_SEED_S + 0.05:
        st.caption(f"This seed lasts {end:.0f} s; seeds are read up to {MAX_SEED_S:.0f} s, the rest is not used.")
    return st.slider("Seed length (s)", 1.0, top, step=0.5, key=k, persist_state=KEEP)


def sampling_controls(seed, key: str = "", model: str | None = None, variations: bool = True) -> dict:
    """Seed length, continuation length (seconds or bars) and the sampling controls -> generate() kwargs
    (``variations`` False: the page draws that slider itself, e.g. beside its Generate button)."""
    from ..midi.io import bar_seconds

    seed_s = seed_length(seed, key, 10.0)
    unit = st.radio("Length in", ["seconds", "bars"], horizontal=True, key=f"{key}length_unit", persist_state=KEEP)
    if unit == "bars":
        bar = bar_seconds(seed, seed_s)
        bars = st.slider(
            "Continue for (bars)",
            1,
            max(1, int(120 // bar)),
            max(1, min(8, int(120 // bar))),
            key=f"{key}bars",
            persist_state=KEEP,
        )
        seconds = round(bars * bar, 3)
        st.caption(f"{bars} bars ≈ {seconds:.1f} s at the seed's tempo and meter")
    else:
        seconds = float(st.slider("Continue for (s)", 5, 120, 20, 5, key=f"{key}seconds", persist_state=KEEP))
    return dict(seed_seconds=seed_s, seconds=seconds, **sampling_knobs(key, model=model, variations=variations))


def sampling_knobs(key: str = "", expanded: bool = True, variations: bool = True, random_seed: bool = True,
                   model: str | None = None) -> dict:  # fmt: skip
    """The sampling controls every page shares (widget keys ``{key}temperature`` ...): temperature,
    top-k, top-p, min-p, repetition penalty, key lock, and (when asked) variations and a random seed
    -> the generate() / infill() / accompany() keyword arguments they name. They start at the app's
    defaults, or at ``model``'s own (its card's "sampling") each time another model is picked."""
    from ..generation.sampling import LIMITS, app_defaults
    from ..serving.weights import read_card

    ss, own = st.session_state, app_defaults(read_card(model) if model else None)
    if model and ss.get(f"{key}sampling_for") != model:  # a model was picked: its defaults
        ss.update({f"{key}{k}": v for k, v in own.items()})
        ss[f"{key}sampling_for"] = model
    for k, v in own.items():
        ss.setdefault(f"{key}{k}", v)
    with st.expander("Sampling", expanded=expanded):
        if model and own != app_defaults():
            st.caption(f"Set to {model}'s recommended sampling (its card); picking another model resets these.")
        kw = dict(
            temperature=st.slider(
                "Temperature",
                *LIMITS["temperature"],
                step=0.05,
                key=f"{key}temperature",
                help="0 = greedy: always the likeliest next note, which soon repeats itself in a loop",
                persist_state=KEEP,
            ),  # fmt: skip
            top_k=st.slider("Top-k (0 = off)", *LIMITS["top_k"], key=f"{key}top_k", persist_state=KEEP),
            top_p=st.slider("Top-p", *LIMITS["top_p"], step=0.01, key=f"{key}top_p", persist_state=KEEP),
            min_p=st.slider("Min-p (0 = off)", *LIMITS["min_p"], step=0.01, key=f"{key}min_p", persist_state=KEEP),
            repetition_penalty=st.slider(
                "Repetition penalty",
                *LIMITS["repetition_penalty"],
                step=0.05,
                key=f"{key}repetition_penalty",
                persist_state=KEEP,
            ),
            key_lock=st.checkbox("Key lock (stay in the seed's key)", key=f"{key}key_lock", persist_state=KEEP),
        )
        if variations:
            kw["variations"] = st.slider("Variations", 1, 4, 1, key=f"{key}variations", persist_state=KEEP)
        if random_seed:
            rseed = st.number_input(
                "Random seed (0 = new each time)", 0, 2**31 - 1, 0, key=f"{key}random_seed", persist_state=KEEP
            )
            kw["random_seed"] = int(rseed) or None
    return kw


def job_panel(job, on_done) -> None:
    """Live view of a generation: its place in the queue, or progress, tokens/s, the partial
    piano roll; Stop. When the job ends, ``on_done(job)`` runs and the whole page reruns.

    Each session's view polls its job with a fragment rerun, which costs the server CPU and the
    GIL the generators need: every POLL_S, queued or running, in one fragment, so a job's start
    costs no whole-page rerun (Streamlit's gc.collect() after each run is off in
    .streamlit/config.toml for that reason).
    A job younger than QUICK_WAIT_S that holds a slot is first awaited in this run: most takes
    are then shown right away instead of at the next poll (up to POLL_S).
    Likewise any run (this one or a poll) first awaits a job due to end within NEAR_END_S.
    """
    young = QUICK_WAIT_S - (time.perf_counter() - job.created)
    if young > 0 and not job.finished.is_set() and job.queue_position == 0:
        job.finished.wait(young)
    _job_live(job, on_done)


@st.fragment(run_every=POLL_S)
def _job_live(job, on_done) -> None:
    _job_view(job, on_done)


def _job_view(job, on_done) -> None:
    from ..midi.figure import pianoroll_figure

    job.touch()  # a job nobody watches any more (tab closed) stops and frees its slot
    eta = job.eta_seconds
    if eta is not None and eta < NEAR_END_S:  # show the takes when it ends, not at the next poll
        job.finished.wait(eta + 0.25)
    if job.finished.is_set():
        st.session_state.pop(K.JOB_PREVIEW, None)
        if st.session_state.get(K.JOB) is job:  # a poll that ran late finds it collected already
            on_done(job)
        st.rerun()
    if job.state == "queued":
        st.info(f"Waiting for a free generator… {job.queue_position} request(s) ahead of you.")
    else:
        frac = job.done / job.total if job.total else 0.0
        st.progress(min(frac, 1.0), text=f"Generating: {job.done} tokens, {job.tokens_per_second:,.0f} tokens/s")
    if job.preview is not None:
        drawn_at, drawn, fig = st.session_state.get(K.JOB_PREVIEW, (0.0, None, None))
        if drawn is not job.preview and time.monotonic() - drawn_at > PREVIEW_EVERY_S:  # new notes to draw
            fig = pianoroll_figure(job.preview, seed_end=job.kwargs.get("seed_seconds"), height=220)
            st.session_state[K.JOB_PREVIEW] = (time.monotonic(), job.preview, fig)
        st.plotly_chart(fig, key="job_preview")
    st.button("Stop", key="job_stop", on_click=job.stop, help="End now and keep what was made")


class Progress:
    """progress(done, total) callback drawing a bar with tokens/s."""

    def __init__(self, label: str = "Generating"):
        self.bar = st.progress(0.0, text=f"{label}…")
        self.t0 = time.perf_counter()
        self.label = label

    def __call__(self, done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - self.t0, 1e-6)
        self.bar.progress(min(done / max(total, 1), 1.0), text=f"{self.label}: {done} tokens, {rate:,.0f} tokens/s")
