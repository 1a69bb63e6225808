"""A/B rounds: two continuations of one seed, each model at its recommended sampling (or both at
the listener's), heard at one loudness.

A round pits two *contestants* (a model name + its sampling settings) against each other.
Both continue the same seed excerpt for the same number of seconds; the order shown to the
listener (A, B) is random, so a blind vote cannot lean on position. The audio of both takes
is rendered and scaled to equal (gated) RMS loudness over the new music after the seed end,
so the louder model does not win by being louder.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pretty_midi

from ..generation.sampling import Sampling, app_defaults, generate
from ..midi.io import load_midi, midi_to_bytes
from ..midi.synth import encode_audio, render_audio_with_notice
from ..serving import jobs

# "surprise me" with a single model: two distinct draws from these (temperature, top_p) grids
SURPRISE_TEMPERATURES = (0.6, 0.8, 1.0, 1.2, 1.4)
SURPRISE_TOP_P = (0.9, 0.95, 1.0)
BLOCK_S = 0.4  # loudness is measured in blocks of this many seconds
GATE_DB = -40.0  # blocks this far below the loudest block (dB) count as silence: not measured


@dataclass
class Contestant:
    """One side of a round. ``settings`` = the :class:`~musiclab.generation.sampling.Sampling` fields;
    ``midi`` = the take (seed excerpt + continuation) as MIDI bytes, None if it failed."""

    model: str
    settings: dict
    random_seed: int
    midi: bytes | None = None
    error: str | None = None
    info: dict = field(default_factory=dict)

    def describe(self) -> str:
        """Short label for reveals and leaderboards, e.g. ``lstm · T=0.8 · top-p 0.95``."""
        return describe(self.model, self.settings)


@dataclass
class Round:
    """Two contestants in display order (``a`` is shown as "A"), one shared seed excerpt.

    seed_sha: sha256 hex of the seed MIDI file bytes (the seed itself is not kept here).
    seed_seconds / seconds: seed excerpt length and continuation length, in seconds.
    """

    a: Contestant
    b: Contestant
    seed_sha: str
    seed_label: str
    seed_seconds: float
    seconds: float
    blind: bool = True
    round_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    made: float = field(default_factory=time.time)
    audio: list[bytes] = field(default_factory=list)  # OGG for a, b (equal RMS) once rendered
    notice: str | None = None  # why audio fell back to the sine synth, if it did

    @property
    def failed(self) -> bool:
        return any(c.midi is None or c.error for c in (self.a, self.b))

    @property
    def error(self) -> str | None:
        bad = [(side, c) for side, c in (("A", self.a), ("B", self.b)) if c.error or c.midi is None]
        if len(bad) == 2 and self.a.error == self.b.error:
            return f"A and B: {self.a.error or 'no take'}"
        return "; ".join(f"{side} ({c.model}): {c.error or 'no take'}" for side, c in bad) or None


def describe(model: str, settings: dict) -> str:
    """``model · T=… · top-p …`` plus any setting that differs from its default."""
    base = Sampling()
    parts = [model, f"T={settings.get('temperature', base.temperature):g}"]
    extra = {"top_k": "top-k {:g}", "top_p": "top-p {:g}", "min_p": "min-p {:g}", "repetition_penalty": "rep {:g}"}
    for name, fmt in extra.items():
        v = settings.get(name, getattr(base, name))
        if v != getattr(base, name):
            parts.append(fmt.format(v))
    if settings.get("key_lock"):
        parts.append("key lock")
    return " · ".join(parts)


def seed_hash(midi_bytes: bytes) -> str:
    """sha256 hex digest of the seed MIDI file's bytes (what votes store instead of the music)."""
    return hashlib.sha256(midi_bytes).hexdigest()


def own_sampling(card: dict | None, settings: dict) -> dict:
    """``settings`` with a model's recommended sampling (its card's "sampling" over the app's
    defaults) in place of the page's, the key lock kept: two models then each play as they sound
    best, as Compose starts them (the flagship's card: temperature 0.9, no repetition penalty)."""
    return {**settings, **{k: v for k, v in app_defaults(card).items() if k != "key_lock"}}


def surprise_pair(models: list[str], settings: dict, rng: random.Random) -> list[tuple[str, dict]]:
    """Two random contestants: two distinct models with ``settings``, or with one model,
    that model twice with two distinct random (temperature, top_p) settings."""
    if not models:
        raise ValueError("surprise me needs at least one usable model; got none")
    if len(models) >= 2:
        m1, m2 = rng.sample(sorted(models), 2)
        return [(m1, dict(settings)), (m2, dict(settings))]
    combos = [(t, p) for t in SURPRISE_TEMPERATURES for p in SURPRISE_TOP_P]
    (t1, p1), (t2, p2) = rng.sample(combos, 2)
    return [
        (models[0], {**settings, "temperature": t1, "top_p": p1}),
        (models[0], {**settings, "temperature": t2, "top_p": p2}),
    ]


def make_round(
    load: Callable[[str], object],
    seed: pretty_midi.PrettyMIDI,
    seed_bytes: bytes,
    pair: list[tuple[str, dict]],
    *,
    seed_seconds: float,
    seconds: float,
    seed_label: str = "",
    blind: bool = True,
    rng: random.Random | None = None,
    tracks: list[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Round:
    """Generate both takes of a round (in random display order) and their matched audio.

    ``pair`` = two (model name, settings dict) in the order the listener picked them;
    ``load(name)`` returns a loaded model. A side whose generation fails keeps its error
    message (the round is then :attr:`Round.failed` and cannot be voted on); nothing raises
    for a model or seed problem.
    """
    if len(pair) != 2:
        raise ValueError(f"a round needs 2 contestants; got {len(pair)}")
    rng = rng or random.Random()
    order = list(pair)
    rng.shuffle(order)
    sides = [Contestant(m, dict(s), rng.randrange(1, 2**31)) for m, s in order]
    for i, c in enumerate(sides):
        # one bar for both takes: side i fills the i-th half
        part = None if progress is None else (lambda done, total, i=i: progress(i * total + done, 2 * total))
        try:
            model = load(c.model)
            with jobs.slot():  # in turn with every other generation in the process
                take = generate(
                    model,
                    seed,
                    seed_seconds=seed_seconds,
                    seconds=seconds,
                    variations=1,
                    random_seed=c.random_seed,
                    tracks=tracks,
                    progress=part,
                    threads=jobs.threads_for(model),
                    **c.settings,
                )[0]
        except (ValueError, RuntimeError, TypeError) as e:  # MidiError/SettingsError are ValueErrors
            c.error = str(e) or type(e).__name__
            continue
        c.midi = midi_to_bytes(take.midi)
        c.info = dict(take.info)
    rnd = Round(sides[0], sides[1], seed_hash(seed_bytes), seed_label, seed_seconds, seconds, blind)
    if not rnd.failed:
        waves, sr, rnd.notice = matched_audio([load_midi(rnd.a.midi), load_midi(rnd.b.midi)], seed_seconds)
        with ThreadPoolExecutor(2) as pool:  # the OGG encoder drops the GIL
            rnd.audio = list(pool.map(lambda w: encode_audio(w, sr, "OGG"), waves))
    return rnd


def rms(audio: np.ndarray, start: int = 0) -> float:
    """Root-mean-square level of mono samples ``audio[start:]`` (float, same units as samples)."""
    part = np.asarray(audio[start:], dtype=np.float64)
    return float(np.sqrt(np.mean(part**2))) if part.size else 0.0


def loudness(audio: np.ndarray, sr: int, start: int = 0) -> float:
    """Gated RMS of ``audio[start:]``: the RMS over its ``BLOCK_S`` blocks at most ``-GATE_DB``
    dB below the loudest block, so rests and release tails do not count (like EBU R128's
    relative gate, without its frequency weighting). Scale-invariant: loudness(g * x) =
    g * loudness(x). 0.0 if every block is silent."""
    x = np.asarray(audio[start:], dtype=np.float64)
    n = max(1, int(BLOCK_S * sr))
    blocks = max(1, len(x) // n)
    power = np.array([np.mean(b**2) if b.size else 0.0 for b in np.array_split(x, blocks)])
    loud = power[(power > 0) & (power >= power.max() * 10 ** (GATE_DB / 10))]
    return float(np.sqrt(loud.mean())) if loud.size else 0.0


def matched_audio(
    pms: list[pretty_midi.PrettyMIDI], from_seconds: float = 0.0
) -> tuple[list[np.ndarray], int, str | None]:
    """Render each MIDI and scale them to the same gated-RMS loudness (:func:`loudness`).

    Loudness is measured from ``from_seconds`` on (the new music), or over the whole takes
    if any take has no note starting after ``from_seconds`` (an empty continuation must not
    pull the other take down to its silence). Every take is scaled *down* to the quietest
    one's level, so none clips (synth output peaks at -1 dBFS). Returns (mono float32
    sample arrays, sample rate Hz, notice or None).
    """
    # FluidSynth is a subprocess, so both cores work (render + OGG, 2 x 40 s: 1.58 -> 0.89 s)
    with ThreadPoolExecutor(2) as pool:
        rendered = list(pool.map(render_audio_with_notice, pms))
    sr = rendered[0][1]
    notice = next((n for _, _, n in rendered if n), None)
    new_music = all(any(n.start >= from_seconds - 1e-3 for i in pm.instruments for n in i.notes) for pm in pms)
    start = int(from_seconds * sr) if new_music else 0
    levels = [loudness(a, sr, start) for a, _, _ in rendered]
    target = min((lv for lv in levels if lv > 0), default=0.0)
    waves = [(a * (target / lv) if lv > 0 else a).astype(np.float32) for (a, _, _), lv in zip(rendered, levels)]
    return waves, sr, notice
