"""Piano-roll codec (paper E's "one-hot" roll): MIDI <-> multi-hot frames of the 88 piano keys.

* A **frame** is a (88,) 0/1 vector: key ``i`` is MIDI pitch ``21 + i`` (A0-C8) and is 1
  when that key sounds during the frame. Pitches outside 21-108 move by octaves into range.
* Frames sit on a beat grid of ``steps_per_beat`` frames per quarter note (4 = 16ths for
  piano; 1 for JSB Chorales). Beats come from the file's tempo map, so rubato written as
  tempo changes does not smear the grid. The roll is built with **pypianoroll**
  (``from_pretty_midi``, first beat at 0 s); notes shorter than one frame are first
  stretched to one frame so they are not lost.
* pypianoroll clears the frame before a re-struck key, so a re-strike shows as a
  one-frame gap. A re-strike with no gap (JSB data, or a generated roll) looks exactly
  like a hold: ``frames_to_notes`` turns every run of consecutive on-frames of a key into
  one held note.
* Every encoded array starts with an all-zero **start frame** (``encode`` returns
  (1 + T, 88)): the first real frame is predicted from it, as in the JSB benchmark. The
  prompt of a generation carries the same start frame, so training and use agree.

Sampling (``PianoRollCodec.sample``) draws each key on/off from its sigmoid, per take
(each take draws its 88 uniforms from its own generator: take i is the same alone or batched):

* ``repetition_penalty`` r >= 1: a key that has sounded for n beats in a row gets its
  logit lowered by ``n * ln(r)`` (r = 2 halves the odds of holding on per beat held).
* ``temperature``: logits / temperature; 0 = greedy (a key is on when p > 0.5).
* then the frame's **candidate keys** are chosen from the on-probabilities p; keys that are
  not candidates stay off, candidates keep their p:
  - ``top_k``: only the k likeliest keys (so at most k keys sound per frame);
  - ``top_p``: the likeliest keys whose p add up to ``top_p`` of the frame's total
    (its expected number of keys on); this cuts the long tail of unlikely keys that
    otherwise adds stray one-frame notes;
  - ``min_p``: keys with p >= ``min_p`` x the likeliest key's p.
* key lock: ``mask()`` turns out-of-key keys off for the whole take.

``pianoroll-nade`` picks candidates the same way from a mean-field estimate of each key's
chance (a pass that feeds keys their probabilities), then draws the candidates low to high
from their true conditionals.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import pretty_midi
import pypianoroll
import torch

from .common import LOW, copy_instrument, fold_pitch, scale_pitch_classes, seed_traits

N_KEYS = 88  # piano keys, MIDI 21 (A0) to 108 (C8)


@dataclass
class PianoRollConfig:
    """What a frame is; saved in each model's config.json."""

    kind: str = "pianoroll"
    steps_per_beat: int = 4  # frames per quarter note: 4 for piano (16ths), 1 for JSB Chorales


@dataclass
class FramePrompt:
    """A seed as frames, plus the clock that maps new frames to seconds."""

    ids: list[np.ndarray]  # the seed's frames, each (88,) uint8; empty when the seed has no notes
    start_seconds: float  # where new music starts (the seed cut), seconds
    seconds_per_step: float  # frame length at the seed's end tempo, seconds
    velocity: int  # velocity for generated notes (median of the seed's), 1-127
    program: int  # GM program for the generated notes
    key: tuple[int, str]  # estimated key of the seed (tonic pitch class 0-11, mode)


def with_start(frames: np.ndarray) -> np.ndarray:
    """(T, 88) -> (1 + T, 88): prepend the all-zero start frame."""
    return np.concatenate([np.zeros((1, N_KEYS), dtype=np.uint8), np.asarray(frames, dtype=np.uint8)])


def frames_to_notes(frames: np.ndarray) -> list[tuple[int, int, int]]:
    """(T, 88) 0/1 frames -> notes (start frame, MIDI pitch, length in frames), sorted.

    Each run of consecutive on-frames of one key is one note (a re-strike looks like a hold).
    """
    f = np.asarray(frames, dtype=bool)
    if f.ndim != 2 or f.shape[1] != N_KEYS:
        raise ValueError(f"expected frames of shape (T, {N_KEYS}), got {f.shape}")
    padded = np.concatenate([np.zeros((1, N_KEYS), bool), f, np.zeros((1, N_KEYS), bool)])
    d = np.diff(padded.astype(np.int8), axis=0)  # +1 at an onset, -1 just after a release
    notes = []
    for key in range(N_KEYS):
        ons, offs = np.flatnonzero(d[:, key] == 1), np.flatnonzero(d[:, key] == -1)
        notes += [(int(a), LOW + key, int(b - a)) for a, b in zip(ons, offs)]
    return sorted(notes)


class PianoRollCodec:
    """Multi-hot piano-roll "tokenizer" (the Codec interface of musiclab.codecs; see module doc)."""

    vocab_size = N_KEYS  # width of the logits: one per key

    def __init__(self, config: PianoRollConfig | None = None):
        self.config = config or PianoRollConfig()
        if self.config.kind != "pianoroll":
            raise ValueError(f"expected kind 'pianoroll', got {self.config.kind!r}")
        if not isinstance(self.config.steps_per_beat, int) or self.config.steps_per_beat < 1:
            raise ValueError(f"steps_per_beat: expected an integer >= 1, got {self.config.steps_per_beat!r}")

    def to_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_dict(cls, d: dict) -> PianoRollCodec:
        return cls(PianoRollConfig(**d))

    # ---- MIDI <-> frames ----
    def frames(self, pm: pretty_midi.PrettyMIDI, tracks: list[int] | None = None) -> np.ndarray:
        """(T, 88) uint8 frames of the non-drum notes (chosen ``tracks``); frame 0 starts at 0 s.

        T runs to the frame holding the last note-off. No start frame here (see ``encode``).
        """
        spb = self.config.steps_per_beat
        src = pm.instruments if tracks is None else [pm.instruments[t] for t in tracks]
        insts = [i for i in src if not i.is_drum and i.notes]
        if not insts:
            return np.zeros((0, N_KEYS), dtype=np.uint8)
        # a copy with every note at least one frame long (pypianoroll drops shorter ones)
        work = copy.copy(pm)  # shares the tempo map; pypianoroll reads it, nothing here changes it
        work.instruments = []
        step_ticks = pm.resolution / spb
        last = 0
        for src_inst in insts:
            inst = pretty_midi.Instrument(program=0)
            for n in src_inst.notes:
                on = round(pm.time_to_tick(n.start) / step_ticks)
                off = max(int(pm.time_to_tick(n.end) / step_ticks + 1e-6), on + 1)
                last = max(last, off)
                pitch = fold_pitch(n.pitch)
                # the end a hair past the grid line: pypianoroll floors note-offs (1.99999 -> 1)
                start, end = work.tick_to_time(round(on * step_ticks)), work.tick_to_time(round(off * step_ticks))
                inst.notes.append(pretty_midi.Note(1, pitch, start, end + 1e-6))  # velocity 1: overlaps add up
            work.instruments.append(inst)
        # a silent note two beats past the end, so pypianoroll's beat grid covers every note
        pad = pretty_midi.Instrument(program=0)
        pad.notes.append(pretty_midi.Note(0, LOW, 0.0, work.tick_to_time(round((last + 2 * spb) * step_ticks))))
        work.instruments.append(pad)
        multi = pypianoroll.from_pretty_midi(work, resolution=spb, algorithm="custom", first_beat_time=0.0)
        roll = np.zeros((multi.tracks[0].pianoroll.shape[0], 128), dtype=bool)
        for track in multi.tracks[:-1]:
            roll |= track.pianoroll > 0
        return roll[:last, LOW : LOW + N_KEYS].astype(np.uint8)

    def encode(self, pm: pretty_midi.PrettyMIDI, tracks: list[int] | None = None) -> np.ndarray:
        """A whole file -> (1 + T, 88) uint8: the start frame, then its frames (training data)."""
        return with_start(self.frames(pm, tracks))

    def decode(self, frames: np.ndarray, bpm: float = 120.0, program: int = 0, velocity: int = 80):
        """(T, 88) frames -> a one-track PrettyMIDI at a constant ``bpm`` (frame 0 at 0 s)."""
        sps = 60.0 / bpm / self.config.steps_per_beat
        pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
        inst = pretty_midi.Instrument(program=program)
        for start, pitch, n in frames_to_notes(frames):
            inst.notes.append(pretty_midi.Note(velocity, pitch, start * sps, (start + n) * sps))
        pm.instruments.append(inst)
        return pm

    # ---- generation support ----
    def prompt(self, excerpt: pretty_midi.PrettyMIDI, seed_seconds: float) -> FramePrompt:
        """The seed's frames from 0 s up to ``seed_seconds`` (rounded up to the grid)."""
        spb = self.config.steps_per_beat
        fr = self.frames(excerpt)
        end = int(np.ceil(excerpt.time_to_tick(seed_seconds) / excerpt.resolution * spb - 1e-6))
        end = max(end, 1)
        fr = np.concatenate([fr, np.zeros((max(0, end - len(fr)), N_KEYS), np.uint8)])[:end]
        s = seed_traits(excerpt, seed_seconds)
        ids = list(fr) if fr.any() else []
        return FramePrompt(ids, seed_seconds, 60.0 / s.bpm / spb, s.velocity, s.program, s.key)

    def prompt_tensor(self, prompt: FramePrompt, batch: int, max_len: int = 1024) -> torch.Tensor:
        """(B, T, 88) float: the start frame + the prompt's frames (the last ``max_len``), per take."""
        fr = with_start(np.stack(prompt.ids) if prompt.ids else np.zeros((0, N_KEYS)))[-max_len:]
        return torch.from_numpy(fr.astype(np.float32)).unsqueeze(0).repeat(batch, 1, 1)

    def new_state(self, batch: int, prompt: FramePrompt, seconds: float, key_lock: bool = False) -> FrameState:
        return FrameState(self, batch, prompt, seconds, key_lock)

    def sample(self, logits: torch.Tensor, s, state: FrameState, gens) -> torch.Tensor:
        """One frame (B, 88) float 0/1 from masked logits (B, 88): keys drawn independently."""
        p = key_probs(logits, s, state.held_beats())  # (B, 88)
        p = p * candidates(p, s)
        return (draw_uniforms(gens, p.device) < p).float()


def draw_uniforms(gens, device=None) -> torch.Tensor:
    """(B, 88) uniforms in [0, 1), row b from take b's own generator ``gens[b]``."""
    return torch.stack([torch.rand(N_KEYS, generator=g) for g in gens]).to(device)


def key_probs(logits: torch.Tensor, s, held_beats: torch.Tensor | None = None) -> torch.Tensor:
    """Per-key on-probabilities (..., K) from logits (..., K) after the repetition penalty
    (``held_beats``: beats each key has sounded in a row) and the temperature (0: p is 0/1,
    on when the logit > 0). Masked keys (logit -inf) get 0."""
    logits = logits.float()
    if held_beats is not None and s.repetition_penalty != 1:
        logits = logits - math.log(s.repetition_penalty) * held_beats.to(logits.device)
    if s.temperature == 0:
        return (logits > 0).float()
    return torch.sigmoid(logits / s.temperature)


def candidates(p: torch.Tensor, s) -> torch.Tensor:
    """(B, K) bool: the keys of each frame that may sound, from on-probabilities p (B, K),
    by ``top_k``, ``top_p`` and ``min_p`` (see the module doc); all True when they are off."""
    keep = p > 0
    sp, idx = p.sort(dim=-1, descending=True)
    ranked = torch.ones_like(keep)  # in sorted order
    if s.top_k and s.top_k < p.size(-1):
        ranked[:, s.top_k :] = False
    if s.top_p < 1:  # smallest set of likeliest keys whose p reach top_p of the total
        before = sp.cumsum(-1) - sp
        ranked &= before < s.top_p * sp.sum(-1, keepdim=True)
    keep &= torch.zeros_like(keep).scatter(-1, idx, ranked)
    if s.min_p > 0:
        keep &= p >= s.min_p * p.max(-1, keepdim=True).values
    return keep


class FrameState:
    """Per-take clock (in frames) while sampling ``batch`` takes at once.

    ``mask()`` is a (B, 88) bool tensor of keys allowed on; ``advance(frames)`` records the
    sampled (B, 88) frames; ``done`` is True for a take once it has ``seconds`` of frames.
    """

    def __init__(self, codec: PianoRollCodec, batch: int, prompt: FramePrompt, seconds: float, key_lock: bool):
        self.codec, self.prompt, self.seconds = codec, prompt, seconds
        self.target_steps = max(1, int(np.ceil(seconds / prompt.seconds_per_step - 1e-9)))
        self.step = np.zeros(batch, dtype=np.int64)  # frames made per take
        self.frames = np.zeros((batch, self.target_steps, N_KEYS), dtype=np.uint8)
        self.done = np.zeros(batch, dtype=bool)
        # consecutive on-frames per key up to now, starting from the seed's tail
        held = np.zeros(N_KEYS, dtype=np.int64)
        for f in prompt.ids:
            held = (held + 1) * (np.asarray(f) > 0)
        self.held = np.tile(held, (batch, 1))
        base = np.ones(N_KEYS, dtype=bool)
        if key_lock:
            pcs = list(scale_pitch_classes(*prompt.key))
            base = np.isin((np.arange(N_KEYS) + LOW) % 12, pcs)
        self.base = base

    def mask(self) -> torch.Tensor:
        return torch.from_numpy(np.tile(self.base, (len(self.step), 1)))

    def held_beats(self) -> torch.Tensor:
        """(B, 88) float: how long each key has sounded without a break, in beats."""
        return torch.from_numpy(self.held / self.codec.config.steps_per_beat).float()

    def advance(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim != 2 or frames.shape[1] != N_KEYS:
            raise ValueError(f"expected frames (B, {N_KEYS}), got {frames.shape}")
        for b in range(len(self.step)):
            if self.done[b]:
                continue
            on = frames[b] > 0.5
            self.frames[b, self.step[b]] = on
            self.held[b] = (self.held[b] + 1) * on
            self.step[b] += 1
            self.done[b] = self.step[b] >= self.target_steps

    @property
    def progress(self) -> float:
        """Share of the asked length made so far, over the slowest take (0-1)."""
        return float(np.min(self.step) / self.target_steps)

    def to_midi(self, b: int, excerpt: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
        """Seed excerpt + take ``b``'s new notes from the seed end to ``seconds`` later (clipped)."""
        p = self.prompt
        bpm = 60.0 / (p.seconds_per_step * self.codec.config.steps_per_beat)
        out = pretty_midi.PrettyMIDI(resolution=excerpt.resolution, initial_tempo=bpm)
        out.instruments = [copy_instrument(i) for i in excerpt.instruments]
        out.time_signature_changes = list(excerpt.time_signature_changes)
        new = pretty_midi.Instrument(program=p.program, name="musiclab continuation")
        sps, end = p.seconds_per_step, p.start_seconds + self.seconds
        for start, pitch, n in frames_to_notes(self.frames[b, : self.step[b]]):
            t0 = p.start_seconds + start * sps
            if t0 < end - 1e-9:
                new.notes.append(pretty_midi.Note(p.velocity, pitch, t0, min(t0 + n * sps, end)))
        out.instruments.append(new)
        return out
