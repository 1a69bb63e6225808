"""Generation: one sampler for every model, through the shared prefill/step interface.

The story of one step (``B`` takes sampled as one batch):
1. the model gives next-token logits (B, V) from its carried state (no window re-run
   for recurrent and Transformer models);
2. the tokenizer's grammar masks ids that would break the music (e.g. an 11th onset on
   one step, a repeated pitch in one chord, an out-of-key pitch with key lock);
3. a repetition penalty pushes down ids used in the last ``REPEAT_WINDOW`` tokens;
4. divide by the temperature (0 = greedy), keep the top-k ids, the top-p nucleus, and
   ids with at least ``min_p`` times the best probability;
5. draw one id per take from that take's own random stream (so take i is the same
   whether sampled alone or in a batch of 4). The bar/note codec (the flagship) first pulls
   each take towards the pace of the music around it and draws the kind of token (note,
   position, bar line) from the untempered odds, then does 3-5 within that kind, notes
   pulled towards the surrounding music's pitch classes and note lengths (an accompaniment's
   towards its chords, and under its melody);
6. feed the ids back: ``model.step`` -> new logits; the tokenizer's clock advances.
Stops when every take has ``seconds`` of new music (or ``stop()`` says so).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pretty_midi
import torch

from ..midi.io import MidiError, seed_excerpt
from .take import Take
from .threads import engine_threads, intra_op_threads  # noqa: F401 (engine_threads: callers' one import)

REPEAT_WINDOW = 16  # tokens looked back by the repetition penalty
MAX_SECONDS = 300.0  # longest continuation one request may ask for
MAX_VARIATIONS = 8


# What a page's Sampling controls start at; a model card's "sampling" puts the values that
# model sounds best with over these (app_defaults).
APP_DEFAULTS = {"temperature": 1.0, "top_k": 0, "top_p": 0.95, "min_p": 0.0, "repetition_penalty": 1.1,
                "key_lock": False}  # fmt: skip


LIMITS = {"temperature": (0.0, 2.0), "top_k": (0, 200), "top_p": (0.05, 1.0), "min_p": (0.0, 0.5),
          "repetition_penalty": (1.0, 3.0)}  # the pages' slider ranges  # fmt: skip


def app_defaults(card: dict | None = None) -> dict:
    """The app's sampling defaults with ``card["sampling"]`` (a model's own) over them, each of
    the default's type and within the pages' slider range (a card is hand-edited JSON)."""
    out = dict(APP_DEFAULTS)
    for k, v in ((card or {}).get("sampling") or {}).items():
        if k in out and isinstance(v, (int, float, bool)):
            lo, hi = LIMITS.get(k, (v, v))
            out[k] = type(APP_DEFAULTS[k])(min(max(v, lo), hi))
    return out


class SettingsError(ValueError):
    """A generation setting out of range; the message says what is accepted."""


@dataclass
class Sampling:
    """Sampling controls, identical for every model.

    temperature: >= 0; 0 means greedy (argmax), 1 the model's own distribution.
    top_k: keep the k most likely ids (0 = off). top_p: nucleus mass in (0, 1] (1 = off).
    (Bar/note models apply these within the kind of token drawn first: BarNoteTokenizer.sample.)
    min_p: drop ids below min_p x the best probability (0 = off).
    repetition_penalty: >= 1; logits of recently used ids are divided by it (1 = off).
    key_lock: only pitches of the seed's estimated key.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    key_lock: bool = False

    def validate(self) -> None:
        def bad(name, v, accepted):
            raise SettingsError(f"{name} = {v!r} is not accepted; expected {accepted}")

        for name in ("temperature", "top_p", "min_p", "repetition_penalty"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(name, v, "a finite number")
        if not 0 <= self.temperature <= 5:
            bad("temperature", self.temperature, "0 to 5 (0 = greedy)")
        if not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            bad("top_k", self.top_k, "an integer >= 0 (0 = off)")
        if not 0 < self.top_p <= 1:
            bad("top_p", self.top_p, "a number in (0, 1] (1 = off)")
        if not 0 <= self.min_p < 1:
            bad("min_p", self.min_p, "a number in [0, 1) (0 = off)")
        if not 1 <= self.repetition_penalty <= 10:
            bad("repetition_penalty", self.repetition_penalty, "1 to 10 (1 = off)")


def filter_row(x: np.ndarray, s: Sampling, penalize: np.ndarray | None = None) -> np.ndarray:
    """Steps 3-4 on one take's logits ``x`` (n,) (masked ids -inf); ``penalize`` (n,) bool marks
    the recent ids the repetition penalty pushes down. Returns probabilities (n,) float64
    (:func:`kept_row` spread out: 0 off the kept ids)."""
    ids, q = kept_row(x, s, penalize)
    p = np.zeros(len(x))
    p[ids] = q
    return p


def kept_row(x: np.ndarray, s: Sampling, penalize: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-4 on one take's logits ``x`` (n,): the ids kept, ascending (k,) int64, and their
    probabilities (k,) float64 summing to 1 (an id whose mass underflows may have 0). None kept
    when every id is masked (greedy: the first id then).

    One take at a time in NumPy: a take's odds then depend on its own logits only (the same
    alone or in a batch), and few passes over its thousands of ids (docs/performance.md)."""
    x = np.asarray(x, dtype=np.float64)
    if penalize is not None and s.repetition_penalty != 1:
        x = x.copy()
        v = x[penalize]
        x[penalize] = np.where(v > 0, v / s.repetition_penalty, v * s.repetition_penalty)
    if s.temperature == 0:
        return np.array([np.argmax(x)]), np.ones(1)
    top = x.max() if len(x) else -math.inf
    if not np.isfinite(top):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    y = x - top  # (n,) <= 0, a new array
    if s.temperature != 1:
        y /= s.temperature
    if s.top_k and s.top_k < len(y):
        y[y < np.partition(y, -s.top_k)[-s.top_k]] = -math.inf
    p = np.exp(y, out=y)  # unnormalized: the best id has 1
    ids = _nucleus(p, s.top_p) if s.top_p < 1 else np.flatnonzero(p)
    q = p[ids]
    if s.min_p > 0:
        keep = q >= s.min_p
        ids, q = ids[keep], q[keep]
    return ids, q / q.sum()


def _nucleus(p: np.ndarray, top_p: float) -> np.ndarray:
    """The ids (ascending) of ``p`` (n,) (masses, the best 1) with at most ``top_p`` of the mass
    above them, most likely first (ties by id): the smallest set reaching top_p, and an id tied at
    the boundary. Only ids above a cut are sorted: every id below it comes after them all, so once
    their mass passes top_p none below can be kept (a cut 1,000x under the best id almost always does)."""
    goal = top_p * p.sum()
    for cut in (1e-3, 1e-6, 0.0):
        cand = np.flatnonzero(p >= cut) if cut else np.arange(len(p))
        cand = cand[np.argsort(-p[cand], kind="stable")]  # descending; ties by id
        mass = np.cumsum(p[cand])
        if not cut or mass[-1] > goal:
            break
    before = np.concatenate(([0.0], mass[:-1]))  # the mass of the ids above each
    kept = cand[: int(np.searchsorted(before, goal, side="right"))]  # those with at most top_p above them
    return np.sort(kept[p[kept] > 0])


def draw_row(p: np.ndarray, gen: torch.Generator) -> int:
    """One index drawn from probabilities ``p`` (n,) with the take's own generator (inverse CDF
    over the ids with mass: never a 0-mass index)."""
    ids = np.flatnonzero(p)
    return draw_kept(ids, p[ids], gen, len(p))


def draw_kept(ids: np.ndarray, q: np.ndarray, gen: torch.Generator, n: int) -> int:
    """One of ``ids`` (k,) ascending, drawn by their masses ``q`` (k,) with the take's own generator
    (inverse CDF in id order); ``n - 1`` (the last id) when none is left, as the torch sampler gave."""
    u = float(torch.rand((), generator=gen))
    if not len(ids):
        return n - 1
    cdf = np.cumsum(q)
    return int(ids[min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(ids) - 1)])


def sample_row(x: np.ndarray, s: Sampling, gen: torch.Generator, penalize: np.ndarray | None = None) -> int:
    """Steps 3-5 on one take's logits ``x`` (n,): ``draw_row(filter_row(...))`` without spreading
    the kept ids out and finding them again."""
    return draw_kept(*kept_row(x, s, penalize), gen, len(x))


def sample_rows(logits: torch.Tensor, s: Sampling, gens: list[torch.Generator], recent=None) -> torch.Tensor:
    """Steps 3-5 on (B, V) masked logits: one id per row (B,), row b filtered on its own and drawn
    from ``gens[b]`` (``sample_row``; ``recent`` (B, R) ids it penalizes)."""
    x = logits.detach().float().cpu().numpy()
    ids = []
    for b, gen in enumerate(gens):
        penalize = None
        if recent is not None and s.repetition_penalty != 1:
            penalize = np.zeros(x.shape[1], dtype=bool)
            penalize[recent[b].cpu().numpy()] = True
        ids.append(sample_row(x[b], s, gen, penalize))
    return torch.tensor(ids, device=logits.device)


def ragged_ids(rows: list[list[int]]) -> torch.Tensor | None:
    """Per-take id lists -> (B, R) long tensor for ``sample_rows``' ``recent``; short rows are
    padded by repeating their first id (a duplicate index is harmless), empty rows with id 0
    (PAD, always masked). None when every row is empty."""
    width = max((len(r) for r in rows), default=0)
    if width == 0:
        return None
    return torch.tensor([r + [r[0] if r else 0] * (width - len(r)) for r in rows])


def _mark_end(pm: pretty_midi.PrettyMIDI, end: float) -> None:
    """Make ``pm.get_end_time()`` reach ``end`` (seconds) with a sustain-pedal-off (CC 64 = 0):
    silent, and MIDI files, players and the synth keep it. It goes on the last track with notes
    (the continuation, unless that is empty: readers drop a track without notes)."""
    voiced = [i for i in pm.instruments if i.notes]
    if voiced and pm.get_end_time() < end - 1e-3:
        voiced[-1].control_changes.append(pretty_midi.ControlChange(64, 0, end))


def _check_request(seed_seconds, seconds, variations) -> None:
    for name, v in (("seed_seconds", seed_seconds), ("seconds", seconds)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise SettingsError(f"{name} = {v!r} is not accepted; expected a positive number of seconds")
    if seconds > MAX_SECONDS:
        raise SettingsError(f"seconds = {seconds:g} is over the limit of {MAX_SECONDS:g} s per request")
    if not isinstance(variations, (int, np.integer)) or not 1 <= variations <= MAX_VARIATIONS:
        raise SettingsError(f"variations = {variations!r} is not accepted; expected 1 to {MAX_VARIATIONS}")


@torch.inference_mode()
def generate(
    model,
    seed: pretty_midi.PrettyMIDI,
    *,
    seed_seconds: float,
    seconds: float,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    key_lock: bool = False,
    variations: int = 1,
    random_seed: int | None = None,
    tracks: list[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    preview: Callable[[pretty_midi.PrettyMIDI], None] | None = None,
    threads: int | Callable[[], int] | None = None,
) -> list[Take]:
    """Continue ``seed`` with ``model`` (a :class:`~musiclab.serving.weights.LoadedModel`): each
    take = the first ``seed_seconds`` of the seed (chosen ``tracks``, default all non-drum) +
    ``seconds`` of new music starting at the seed end.

    The same ``random_seed`` gives the same takes; take i uses seed ``random_seed + i``.
    ``progress(done, total)`` is called with tokens produced so far and the estimated total.
    ``stop()`` returning True ends early and keeps what was made. ``preview(pm)`` gets take 0
    so far (a PrettyMIDI), at most every 0.3 s (for a piano roll that fills in as notes arrive).
    ``threads``: intra-op threads for this call (see :func:`engine_threads`), or a function asked
    again every 16 tokens (the app: all cores while alone, one once another generation starts);
    None keeps the caller's. Returns one :class:`Take` per variation: its ``midi`` and ``info``
    (model, settings, seeds, tokens, seconds of compute).
    """
    s = Sampling(temperature, top_k, top_p, min_p, repetition_penalty, key_lock)
    run = prepare(model, seed, s, seed_seconds, seconds, variations, random_seed, tracks)
    with intra_op_threads(threads) as update_threads:
        loop(run, Carried, progress, stop, preview, update_threads)
    return finish(run)


@dataclass
class Run:
    """One generation between :func:`prepare` and :func:`finish`: what the loop reads and counts."""

    model: Any  # the LoadedModel: its net predicts, its codec reads and writes music
    s: Sampling
    excerpt: pretty_midi.PrettyMIDI  # the seed as the model reads it (chosen tracks, first seed_seconds)
    prompt: Any  # the codec's prompt: ids or frames, the clock, the seed's traits
    state: Any  # the codec's per-take grammar and clock (mask, advance, done, to_midi)
    gens: list[torch.Generator]  # one random stream per take
    random_seed: int
    seed_seconds: float
    seconds: float
    tokens: int = 0  # steps taken (every take advances together)
    first_token_s: float | None = None
    compute_s: float = 0.0


def prepare(model, seed, s: Sampling, seed_seconds, seconds, variations, random_seed, tracks) -> Run:
    """Check the request, cut the seed excerpt, encode it, and give each take its random stream."""
    if not hasattr(model, "net") or not hasattr(model, "codec"):
        raise TypeError(
            f"expected a LoadedModel (musiclab.load_model(name), or LoadedModel(name, card, net, codec) "
            f"for a network of your own), got {type(model).__name__}"
        )
    s.validate()
    _check_request(seed_seconds, seconds, variations)
    if random_seed is None:
        random_seed = secrets.randbelow(2**31)
    excerpt = seed_excerpt(seed, seed_seconds, tracks)
    prompt = model.codec.prompt(excerpt, seed_seconds)
    if not prompt.ids:
        raise MidiError("the seed excerpt has no notes the model can read; use a longer seed or other tracks")
    state = model.codec.new_state(variations, prompt, seconds, s.key_lock)
    gens = [torch.Generator().manual_seed(int(random_seed) + i) for i in range(variations)]
    return Run(model, s, excerpt, prompt, state, gens, int(random_seed), seed_seconds, seconds)


class Carried:
    """The model's own state carried from token to token: the prompt is read once for every take
    (prefill), then each step feeds one new token (no window re-run)."""

    def __init__(self, net, x: torch.Tensor, rows: int):
        self.net = net
        self.logits, self.state = net.prefill(x, rows=rows)  # (B, V), whatever step needs

    def advance(self, new: torch.Tensor) -> None:
        self.logits, self.state = self.net.step(new, self.state)


def loop(run: Run, stepper=Carried, progress=None, stop=None, preview=None, update_threads=lambda: None) -> None:
    """Sample until every take has its length (or ``stop()``); ``stepper(net, prompt, rows)``
    gives the logits and advances the model (:class:`Carried`, or the bench's window re-run)."""
    net, codec, state, dev = run.model.net, run.model.codec, run.state, run.model.device
    t0 = last_preview = time.perf_counter()
    x = codec.prompt_tensor(run.prompt, 1).to(dev)  # (1, T) ids or (1, T, 88) frames: one prompt for every take
    model = stepper(net, x, len(run.gens))
    while not state.done.all():
        if stop is not None and stop():
            break
        masked = model.logits.float().masked_fill(~state.mask().to(dev), -math.inf)
        if hasattr(net, "sample_frame"):  # keys drawn one by one inside the model (pianoroll-nade)
            new = net.sample_frame(masked, model.state, run.s, state, run.gens)  # (B, 88) frames
        else:
            new = codec.sample(masked, run.s, state, run.gens)  # (B,) ids or (B, 88) frames
        state.advance(new.cpu().numpy())
        run.tokens += 1
        if run.first_token_s is None:
            run.first_token_s = time.perf_counter() - t0
        if run.tokens % 16 == 0:
            update_threads()
        if progress is not None and run.tokens % 8 == 0:
            progress(run.tokens, _estimated_total(run.tokens, state.progress))
        if preview is not None and time.perf_counter() - last_preview > 0.3:
            preview(state.to_midi(0, run.excerpt))
            last_preview = time.perf_counter()
        if not state.done.all():  # no prediction after the last token
            model.advance(new.to(dev))
    run.compute_s = time.perf_counter() - t0
    if progress is not None:
        progress(run.tokens, run.tokens)


def _estimated_total(done: int, frac: float) -> int:
    """Tokens a generation will take, from ``done`` so far and the share of the music made."""
    return max(done, round(done / frac)) if frac > 0 else done * 10


def finish(run: Run) -> list[Take]:
    """Each take's MIDI (seed excerpt + new notes) and the facts of how it was made."""
    takes = []
    for b in range(len(run.gens)):
        pm = run.state.to_midi(b, run.excerpt)
        if run.state.done[b]:  # a take that ends in a held note or a rest still lasts the asked length
            _mark_end(pm, run.prompt.start_seconds + run.seconds)
        info = {
            "model": run.model.name,
            "random_seed": run.random_seed + b,
            "seed_seconds": run.seed_seconds,
            "seconds": run.seconds,
            "settings": run.s.__dict__.copy(),
            "tokens": run.tokens,
            "compute_seconds": run.compute_s,
            "first_token_seconds": run.first_token_s,
            "stopped_early": bool(not run.state.done[b]),
        }
        takes.append(Take(pm, info))
    return takes
