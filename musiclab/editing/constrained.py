"""The sampling loop for jobs with a shape: infill and accompany (forced ids + a grammar state).

Continuation uses ``sampling.generate``; these jobs need two more things from a step: ids the
request already knows (the melody of each bar) are fed instead of drawn, and the state decides
when a take ends (EOM, the span's end). Take b draws from its own generator at every step,
forced or not, so it is the same alone or in a batch.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable

import numpy as np
import pretty_midi
import torch

from ..generation.sampling import Sampling, SettingsError, intra_op_threads

MAX_VARIATIONS = 4


class CannotError(ValueError):
    """The chosen model cannot do this job; the message names the models that can."""


def check_model(model, job: str) -> None:
    """Raise CannotError unless ``model`` reads bar/note tokens (the only codec with infill
    sentinels and melody/accompaniment sections)."""
    if getattr(getattr(model.codec, "config", None), "kind", None) != "bar-note":
        from ..serving.weights import list_models

        able = [m["name"] for m in list_models() if m["status"] == "ok" and _reads_bar_note(m["name"])]
        raise CannotError(f"model {model.name!r} cannot {job}; models that can: {', '.join(able) or 'none installed'}")


def _reads_bar_note(name: str) -> bool:
    from ..serving.weights import read_card

    try:
        return read_card(name).get("tokenizer", {}).get("kind") == "bar-note"
    except ValueError:
        return False


def check_settings(s: Sampling, variations) -> None:
    s.validate()
    if not isinstance(variations, (int, np.integer)) or not 1 <= variations <= MAX_VARIATIONS:
        raise SettingsError(f"variations = {variations!r} is not accepted; expected 1 to {MAX_VARIATIONS}")


@torch.inference_mode()
def run(model, prompt_ids: list[int], state, s: Sampling, variations: int, random_seed: int | None,
        progress: Callable[[int, int], None] | None = None, stop: Callable[[], bool] | None = None,
        threads: int | None = None, max_tokens: int = 4096) -> dict:  # fmt: skip
    """Sample into ``state`` until every take is done (or ``stop()``, or ``max_tokens``).
    Returns facts for the takes' info: random seed, tokens, compute seconds."""
    if random_seed is None:
        random_seed = secrets.randbelow(2**31)
    gens = [torch.Generator().manual_seed(int(random_seed) + i) for i in range(variations)]
    dev, tok = model.device, model.codec
    with intra_op_threads(threads):
        t0 = time.perf_counter()
        x = torch.tensor(prompt_ids, dtype=torch.long, device=dev).unsqueeze(0)
        logits, cache = model.net.prefill(x, rows=variations)
        n = 0
        while not state.done.all() and n < max_tokens:
            if stop is not None and stop():
                break
            masked = logits.float().masked_fill(~state.mask().to(dev), -math.inf)
            new = tok.sample(masked, s, state, gens).cpu().numpy()
            forced = state.forced()
            new = np.where(forced >= 0, forced, new)
            state.advance(new)
            n += 1
            if progress is not None and n % 8 == 0:
                frac = state.progress
                progress(n, max(n, round(n / frac)) if frac > 0 else n * 10)
            if state.done.all():
                break
            logits, cache = model.net.step(torch.from_numpy(new).to(dev), cache)
    if progress is not None:
        progress(n, n)
    return {"random_seed": int(random_seed), "tokens": n, "compute_seconds": time.perf_counter() - t0}


def step_to_seconds(pm: pretty_midi.PrettyMIDI, steps, positions_per_beat: int) -> np.ndarray:
    """Grid steps (beats x positions_per_beat, from the file's tick 0) -> seconds, through the
    file's own tempo map."""
    ticks = np.asarray(steps, dtype=np.float64) / positions_per_beat * pm.resolution
    return np.array([pm.tick_to_time(int(round(t))) for t in np.atleast_1d(ticks)])


def seconds_to_step(pm: pretty_midi.PrettyMIDI, seconds: float, positions_per_beat: int) -> float:
    return pm.time_to_tick(seconds) / pm.resolution * positions_per_beat


def clear_span(inst: pretty_midi.Instrument, start: float, end: float) -> None:
    """Drop ``inst``'s notes whose onsets lie in [start, end) seconds (an edit rewrites them)."""
    inst.notes = [n for n in inst.notes if not start <= n.start < end]


def check_span(pm: pretty_midi.PrettyMIDI, start, end, what: str = "span") -> tuple[float, float]:
    """(start, end) seconds, or a SettingsError saying what is wrong and what is accepted."""
    length = pm.get_end_time()
    for name, v in (("start", start), ("end", end)):
        if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v) or v < 0:
            raise SettingsError(f"{what} {name} = {v!r} is not accepted; expected seconds >= 0")
    if start > end:
        raise SettingsError(f"the {what} starts at {start:g} s, after its end at {end:g} s: the start must come first")
    if start == end:
        raise SettingsError(f"the {what} is empty: it starts and ends at {start:g} s")
    if start >= length:
        raise SettingsError(f"the {what} starts at {start:g} s, past the end of the music ({length:.1f} s)")
    if end > length + 0.01:
        raise SettingsError(f"the {what} ends at {end:g} s, past the end of the music ({length:.1f} s)")
    return float(start), float(end)
