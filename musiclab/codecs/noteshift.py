"""Note/shift codec: MIDI notes <-> integer ids, plus the per-take decoding state (grammar + clock).

The **note/shift** vocabulary (used by the recurrent models) improves on the papers'
fixed 0.5-beat step: time lives on a beat grid, so rhythm and durations survive.

* grid: ``steps_per_beat`` steps per quarter note (default 4, i.e. 16th notes). Note
  onsets and durations are read in **beats** through the file's tempo map (so rubato in
  tempo events does not smear the grid), then rounded to the grid.
* ``0`` = PAD (left padding of short windows; never generated).
* ``1..max_shift`` = SHIFT k: advance the clock by k steps (k = 1..16, up to 4 beats;
  longer rests are several shifts).
* ``NOTE(pitch, dur)``: a note starting at the current step, pitch 21-108 (piano keys;
  other pitches are moved by octaves into range) and a duration bin from
  ``dur_bins`` (in steps: 1, 2, 3, 4, 6, 8, 12, 16). Several NOTE tokens with no SHIFT
  between them form a chord. id = ``1 + max_shift + (pitch - 21) * len(dur_bins) + bin``.

Size: 1 + 16 + 88 * 8 = 721 ids. The round trip MIDI -> ids -> MIDI keeps every pitch
in 21-108 and moves onsets by at most half a step (1/8 beat at the default grid).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pretty_midi
import torch

from .common import HIGH, LOW, copy_instrument, fold_pitch, scale_pitch_classes, seed_traits


@dataclass
class NoteTokenizerConfig:
    """What the note/shift vocabulary is; saved in each model's config.json."""

    kind: str = "note-shift"
    steps_per_beat: int = 4  # grid resolution: 4 = 16th notes
    max_shift: int = 16  # longest single SHIFT, in steps (16 = one 4/4 bar)
    dur_bins: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8, 12, 16])  # in steps
    max_notes_per_step: int = 10  # grammar: at most this many onsets on one step


@dataclass
class Prompt:
    """A seed turned into ids plus the clock that maps new steps to seconds."""

    ids: list[int]  # the seed's tokens, ending with shifts up to the seed's end
    start_seconds: float  # where new music starts (the seed cut), seconds
    seconds_per_step: float  # grid step length at the seed's end tempo
    velocity: int  # velocity for generated notes (median of the seed's), 1-127
    program: int  # GM program for the generated notes
    key: tuple[int, str]  # estimated key of the seed


class NoteTokenizer:
    """Note/shift tokenizer; see the module docstring for the vocabulary."""

    def __init__(self, config: NoteTokenizerConfig | None = None):
        self.config = config or NoteTokenizerConfig()
        c = self.config
        self.n_dur = len(c.dur_bins)
        self.note_base = 1 + c.max_shift
        self.vocab_size = self.note_base + (HIGH - LOW + 1) * self.n_dur
        self._dur_edges = np.log(np.asarray(c.dur_bins, dtype=float))
        # lookup tables for the decoding state: per id, shift steps (0 if not a shift) and pitch (-1)
        ids = np.arange(self.vocab_size)
        self.shift_of = np.where((ids >= 1) & (ids <= c.max_shift), ids, 0)
        self.pitch_of = np.where(ids >= self.note_base, LOW + (ids - self.note_base) // self.n_dur, -1)
        self.pitch_list = self.pitch_of.tolist()  # the same as Python ints (faster per-token lookups)

    def to_dict(self) -> dict:
        return asdict(self.config)

    # ---- ids <-> (step, pitch, duration) events ----
    def note_id(self, pitch: int, dur_steps: float) -> int:
        b = int(np.argmin(np.abs(self._dur_edges - np.log(max(dur_steps, 0.5)))))
        return self.note_base + (fold_pitch(pitch) - LOW) * self.n_dur + b

    def events_from_midi(self, pm: pretty_midi.PrettyMIDI, tracks: list[int] | None = None) -> np.ndarray:
        """Notes as an int array (N, 3) of (onset step, pitch, duration steps), sorted."""
        spb = self.config.steps_per_beat
        insts = pm.instruments if tracks is None else [pm.instruments[t] for t in tracks]
        rows = []
        for inst in insts:
            if inst.is_drum or not inst.notes:
                continue
            starts = np.array([n.start for n in inst.notes])
            ends = np.array([n.end for n in inst.notes])
            on = np.array([pm.time_to_tick(t) for t in starts]) / pm.resolution * spb
            off = np.array([pm.time_to_tick(t) for t in ends]) / pm.resolution * spb
            pitch = np.array([fold_pitch(n.pitch) for n in inst.notes])
            rows.append(np.stack([np.round(on), pitch, np.maximum(np.round(off - on), 1)], axis=1))
        if not rows:
            return np.zeros((0, 3), dtype=np.int64)
        ev = np.concatenate(rows).astype(np.int64)
        ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]
        # the same pitch twice on one step is one note (keep the longer)
        keep = np.ones(len(ev), dtype=bool)
        keep[1:] = ~((ev[1:, 0] == ev[:-1, 0]) & (ev[1:, 1] == ev[:-1, 1]))
        return ev[keep]

    def encode_events(self, ev: np.ndarray, end_step: int | None = None) -> list[int]:
        """Events (onset step, pitch, dur steps) -> ids; optional trailing shifts up to ``end_step``."""
        ids: list[int] = []
        cur = int(ev[0, 0]) if len(ev) else 0
        per_step = 0
        for step, pitch, dur in ev:
            if step > cur:
                ids += self._shifts(int(step - cur))
                cur, per_step = int(step), 0
            if per_step < self.config.max_notes_per_step:
                ids.append(self.note_id(int(pitch), float(dur)))
                per_step += 1
        if end_step is not None and end_step > cur:
            ids += self._shifts(end_step - cur)
        return ids

    def _shifts(self, n: int) -> list[int]:
        m = self.config.max_shift
        return [m] * (n // m) + ([n % m] if n % m else [])

    def encode(self, pm: pretty_midi.PrettyMIDI, tracks: list[int] | None = None) -> list[int]:
        """A whole file -> ids (what training uses)."""
        return self.encode_events(self.events_from_midi(pm, tracks))

    def decode_events(self, ids) -> np.ndarray:
        """ids -> events (onset step, pitch, dur steps); onset 0 is the first id's step."""
        cur, rows = 0, []
        for i in ids:
            i = int(i)
            if 1 <= i <= self.config.max_shift:
                cur += i
            elif i >= self.note_base:
                k = i - self.note_base
                rows.append((cur, LOW + k // self.n_dur, self.config.dur_bins[k % self.n_dur]))
        return np.array(rows, dtype=np.int64).reshape(-1, 3)

    def decode(self, ids, bpm: float = 120.0, program: int = 0, velocity: int = 80) -> pretty_midi.PrettyMIDI:
        """ids -> a one-track PrettyMIDI at a constant ``bpm``."""
        sps = 60.0 / bpm / self.config.steps_per_beat
        pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
        inst = pretty_midi.Instrument(program=program)
        for step, pitch, dur in self.decode_events(ids):
            inst.notes.append(pretty_midi.Note(velocity, int(pitch), step * sps, (step + dur) * sps))
        pm.instruments.append(inst)
        return pm

    # ---- generation support ----
    def prompt(self, excerpt: pretty_midi.PrettyMIDI, seed_seconds: float) -> Prompt:
        """Turn a seed excerpt into ids that end exactly at ``seed_seconds`` on the grid."""
        ev = self.events_from_midi(excerpt)
        spb = self.config.steps_per_beat
        end_step = int(np.ceil(excerpt.time_to_tick(seed_seconds) / excerpt.resolution * spb - 1e-6))
        ev = ev[ev[:, 0] < end_step]  # only notes that start before the cut
        ids = self.encode_events(ev, end_step)
        s = seed_traits(excerpt, seed_seconds)
        return Prompt(ids, seed_seconds, 60.0 / s.bpm / spb, s.velocity, s.program, s.key)

    def new_state(self, batch: int, prompt: Prompt, seconds: float, key_lock: bool = False) -> DecodeState:
        return DecodeState(self, batch, prompt, seconds, key_lock)

    def prompt_tensor(self, prompt: Prompt, batch: int, max_len: int = 1024) -> torch.Tensor:
        """(B, T) ids: the prompt (its last ``max_len`` ids) repeated for each take."""
        return torch.tensor(prompt.ids[-max_len:], dtype=torch.long).unsqueeze(0).repeat(batch, 1)

    def sample(self, logits: torch.Tensor, s, state: DecodeState, gens) -> torch.Tensor:
        """Categorical draw (B,) from masked logits (B, V); the penalty hits recent pitches."""
        from ..generation.sampling import sample_rows

        recent = state.recent_ids() if s.repetition_penalty != 1 else None  # skipped when off
        return sample_rows(logits, s, gens, recent)


class DecodeState:
    """Per-take grammar and clock while sampling ``batch`` takes at once.

    ``mask()`` is a (B, V) bool tensor of ids allowed next; ``advance(ids)`` records the
    sampled ids; ``done`` is True for a take once its clock passed ``seconds``.
    """

    def __init__(self, tok: NoteTokenizer, batch: int, prompt: Prompt, seconds: float, key_lock: bool):
        self.tok, self.prompt, self.seconds = tok, prompt, seconds
        self.target_steps = int(np.ceil(seconds / prompt.seconds_per_step))
        self.step = np.zeros(batch, dtype=np.int64)  # grid steps since the seed end
        self.onsets_here: list[set[int]] = [set() for _ in range(batch)]
        self.ids: list[list[int]] = [[] for _ in range(batch)]
        self.done = np.zeros(batch, dtype=bool)
        base = np.ones(tok.vocab_size, dtype=bool)
        base[0] = False  # PAD is never generated
        if key_lock:
            pcs = scale_pitch_classes(*prompt.key)
            is_note = tok.pitch_of >= 0
            base &= ~is_note | np.isin(tok.pitch_of % 12, list(pcs))
        self.base = base
        self.allowed = np.repeat(base[None], batch, axis=0)  # (B, V): kept up to date by advance()

    def mask(self) -> torch.Tensor:
        return torch.from_numpy(self.allowed.copy())

    def advance(self, ids: np.ndarray) -> None:
        for b, i in enumerate(ids.tolist()):
            if self.done[b]:
                continue
            s = self.tok.shift_of[i]
            if s:
                self.step[b] += s
                self.onsets_here[b] = set()
                self.allowed[b] = self.base
                if self.step[b] >= self.target_steps:
                    self.done[b] = True
                    continue
            else:
                p = int(self.tok.pitch_of[i])
                self.onsets_here[b].add(p)
                nb, nd = self.tok.note_base, self.tok.n_dur
                self.allowed[b, nb + (p - LOW) * nd : nb + (p - LOW + 1) * nd] = False  # a pitch sounds once per step
                if len(self.onsets_here[b]) >= self.tok.config.max_notes_per_step:
                    self.allowed[b, nb:] = False
            self.ids[b].append(i)

    def recent_ids(self, window: int = 16) -> torch.Tensor | None:
        """(B, R) note ids sharing a pitch with the last ``window`` generated tokens."""
        from ..generation.sampling import ragged_ids

        nb, nd, pitch_of = self.tok.note_base, self.tok.n_dur, self.tok.pitch_list
        rows = []
        for ids in self.ids:
            pitches = sorted({pitch_of[i] for i in ids[-window:]} - {-1})
            rows.append([i for p in pitches for i in range(nb + (p - LOW) * nd, nb + (p - LOW + 1) * nd)])
        return ragged_ids(rows)

    @property
    def progress(self) -> float:
        """Share of the asked length made so far, over the slowest take (0-1)."""
        return float(np.min(np.minimum(self.step, self.target_steps)) / max(self.target_steps, 1))

    def to_midi(self, b: int, excerpt: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
        """Seed excerpt + take ``b``'s new notes (onsets at or after the seed end, seconds)."""
        p = self.prompt
        out = pretty_midi.PrettyMIDI(resolution=excerpt.resolution, initial_tempo=60.0 / p.seconds_per_step / 4)
        out.instruments = [copy_instrument(i) for i in excerpt.instruments]
        out.time_signature_changes = list(excerpt.time_signature_changes)
        new = pretty_midi.Instrument(program=p.program, name="musiclab continuation")
        end = p.start_seconds + self.seconds
        for step, pitch, dur in self.tok.decode_events(self.ids[b]):
            t0 = p.start_seconds + step * p.seconds_per_step
            if t0 >= end:
                continue
            new.notes.append(pretty_midi.Note(p.velocity, int(pitch), t0, min(t0 + dur * p.seconds_per_step, end)))
        out.instruments.append(new)
        return out
