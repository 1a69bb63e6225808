"""REMI events (Huang & Yang 2020; paper E) through miditok, plus grammar-aware decoding.

Vocabulary (miditok ``REMI``, defaults: 146 ids)
* ``0`` PAD (never generated); ``Bar``: a new bar starts; ``Position_p``: the onset of
  the notes that follow, ``p`` = 0 .. ``4 * positions_per_beat - 1`` grid steps into the
  bar (bars are 4 beats: no TimeSig tokens, which keeps the vocabulary small);
* a note is ``Pitch_n`` (21-108; other pitches are moved by octaves into range),
  ``Velocity_v`` (``num_velocities`` bins of 1-127), ``Duration_b.s.r`` (b + s/r beats,
  1/4-beat steps up to 4 beats, then 1/2-beat steps up to ``max_duration_beats``).
* all non-drum tracks are merged into one stream before encoding (sorted by onset, then
  pitch, duplicates dropped), so several notes at one position come in rising pitch.

Time is in beats (miditok reads ticks), so tempo changes do not smear the grid; the
decoding clock converts grid steps to seconds at the seed's end tempo.

Grammar (``RemiDecodeState.mask``): after ``Position`` only a ``Pitch``; after ``Pitch``
only a ``Velocity``; after ``Velocity`` only a ``Duration``; after a ``Duration``
another, higher ``Pitch`` at the same position (at most ``max_notes_per_position``), a
later ``Position`` in the bar, or ``Bar``; a bar may only be left without a note onset
``max_empty_bars`` times in a row, and a bar that must get a note only offers positions
before the end of the asked length. So every sampled stream decodes to notes up to the
asked length (paper E's failure was bars without pitches and too-short music).
"""

from __future__ import annotations

import copy
import importlib.metadata
import io
import math
import warnings
from dataclasses import asdict, dataclass, field, fields

import miditok
import numpy as np
import pretty_midi
import symusic
import torch

from ..midi.io import midi_to_bytes
from .common import HIGH, LOW, scale_pitch_classes, seed_traits, with_continuation

BAR, POSITION, PITCH, VELOCITY, DURATION = 1, 2, 3, 4, 5  # token kinds (0: PAD / special)
_KINDS = {"Bar": BAR, "Position": POSITION, "Pitch": PITCH, "Velocity": VELOCITY, "Duration": DURATION}
BEATS_PER_BAR = 4  # no TimeSig tokens: every bar is 4 beats
MIDITOK_VERSION = importlib.metadata.version("miditok")


@dataclass
class RemiConfig:
    """What the REMI vocabulary is; saved in each model's config.json."""

    kind: str = "remi"
    positions_per_beat: int = 4  # grid resolution: 4 = 16th notes, 16 positions per bar
    max_duration_beats: int = 12  # longest Duration token, beats (longer notes are clipped)
    num_velocities: int = 8  # velocity bins over 1-127
    pitch_range: list[int] = field(default_factory=lambda: [LOW, HIGH])  # MIDI pitches kept (inclusive)
    max_notes_per_position: int = 10  # grammar: at most this many onsets at one position
    max_empty_bars: int = 0  # grammar: bars in a row that may pass with no onset (0 = none)
    miditok_version: str = MIDITOK_VERSION  # the vocabulary is miditok's; recorded for the card


@dataclass
class RemiPrompt:
    """A seed as REMI ids plus the clock that maps grid steps (absolute, from bar 0) to seconds."""

    ids: list[int]  # the seed's tokens, then Bar tokens up to the bar holding the seed end
    start_seconds: float  # the seed cut, seconds
    origin_seconds: float  # time of grid step 0 at the end tempo (step a plays at origin + a * sps)
    seconds_per_step: float  # grid step length at the seed's end tempo
    end_step: int  # first grid step new notes may use (>= the cut and after every seed onset)
    bar_has_notes: bool  # the bar holding end_step already has seed onsets
    program: int  # GM program for the generated notes
    key: tuple[int, str]  # estimated key of the seed


class RemiTokenizer:
    """REMI tokenizer over miditok; see the module docstring for the vocabulary and grammar."""

    def __init__(self, config: RemiConfig | None = None):
        self.config = c = config or RemiConfig()
        if c.miditok_version != MIDITOK_VERSION:
            warnings.warn(
                f"REMI vocabulary was built with miditok {c.miditok_version}, miditok {MIDITOK_VERSION} is "
                "installed; ids may differ",
                stacklevel=2,
            )
        self.miditok = miditok.REMI(
            miditok.TokenizerConfig(
                pitch_range=tuple(c.pitch_range),
                beat_res={(0, 4): c.positions_per_beat, (4, c.max_duration_beats): max(c.positions_per_beat // 2, 1)},
                num_velocities=c.num_velocities,
                special_tokens=["PAD"],
                use_velocities=True,
                use_time_signatures=False,
                use_pitchdrum_tokens=False,
                remove_duplicated_notes=True,
            )
        )
        vocab = self.miditok.vocab  # token string -> id
        self.vocab_size = len(vocab)
        if vocab.get("PAD_None") != 0:
            raise ValueError(f"expected miditok's PAD at id 0 (musiclab's PAD), got {vocab.get('PAD_None')}")
        self.steps_per_bar = BEATS_PER_BAR * c.positions_per_beat
        # per-id lookup tables: kind, and value (position step, pitch, velocity, duration in steps)
        self.kind_of = np.zeros(self.vocab_size, dtype=np.int64)
        self.value_of = np.zeros(self.vocab_size, dtype=np.float64)
        for tok, i in vocab.items():
            name, val = tok.split("_", 1)
            self.kind_of[i] = _KINDS.get(name, 0)
            if name == "Duration":
                b, s, r = (int(v) for v in val.split("."))
                self.value_of[i] = (b + s / r) * c.positions_per_beat
            elif name in ("Position", "Pitch", "Velocity"):
                self.value_of[i] = int(val)
        self.bar_id = vocab["Bar_None"]
        self.pos_ids = np.array([vocab[f"Position_{p}"] for p in range(self.steps_per_bar)])

    @classmethod
    def from_dict(cls, d: dict) -> RemiTokenizer:
        names = {f.name for f in fields(RemiConfig)}
        extra = set(d) - names
        if extra or d.get("kind", "remi") != "remi":
            raise ValueError(f"expected a REMI tokenizer dict with keys {sorted(names)}, got {sorted(d)}")
        return cls(RemiConfig(**d))

    def to_dict(self) -> dict:
        return asdict(self.config)

    # ---- MIDI <-> ids ----
    def score(self, pm: pretty_midi.PrettyMIDI, tracks: list[int] | None = None) -> symusic.Score:
        """The chosen tracks (indices into ``pm.instruments``; default all) merged into one
        symusic track, drums left out, ticks as in ``pm``."""
        if tracks is not None:
            pm = copy.copy(pm)  # shallow: same tempo map, fewer instruments
            pm.instruments = [pm.instruments[t] for t in tracks]
        src = symusic.Score.from_midi(midi_to_bytes(pm))
        cols = [t.notes.numpy() for t in src.tracks if not t.is_drum and len(t.notes)]
        out = symusic.Score(src.ticks_per_quarter)
        merged = symusic.Track(program=0)
        if cols:
            lo, hi = self.config.pitch_range
            pitch = np.concatenate([c["pitch"] for c in cols]).astype(np.int64)
            pitch = np.where(pitch < lo, pitch + 12 * np.ceil((lo - pitch) / 12), pitch)  # fold by octaves
            pitch = np.where(pitch > hi, pitch - 12 * np.ceil((pitch - hi) / 12), pitch)
            merged.notes = symusic.Note.from_numpy(
                np.concatenate([c["time"] for c in cols]),
                np.concatenate([c["duration"] for c in cols]),
                pitch.astype(np.int8),
                np.concatenate([c["velocity"] for c in cols]),
            )
        out.tracks.append(merged)
        return out

    def encode(self, pm: pretty_midi.PrettyMIDI, tracks: list[int] | None = None) -> np.ndarray:
        """A whole file -> 1-D int64 ids (what training uses); empty if it has no notes in range."""
        seqs = self.miditok.encode(self.score(pm, tracks))
        ids = seqs[0].ids if seqs else []
        return np.asarray(ids, dtype=np.int64)

    def decode(self, ids, bpm: float = 120.0, program: int = 0) -> pretty_midi.PrettyMIDI:
        """ids -> a one-track PrettyMIDI at a constant ``bpm`` (miditok's decoder)."""
        sc = self.miditok.decode([[int(i) for i in ids]])
        sc.tempos.append(symusic.Tempo(0, float(bpm)))
        for tr in sc.tracks:
            tr.program = program
        return pretty_midi.PrettyMIDI(io.BytesIO(sc.dumps_midi()))

    def events(self, ids) -> np.ndarray:
        """ids -> notes (onset step from bar 0, pitch, velocity, duration steps), float (N, 4)."""
        bar, pos, rows, note = -1, 0, [], None
        for i in ids:
            k, v = self.kind_of[int(i)], self.value_of[int(i)]
            if k == BAR:
                bar += 1
            elif k == POSITION:
                pos = max(bar, 0) * self.steps_per_bar + v
            elif k == PITCH:
                note = [pos, v]
            elif k == VELOCITY and note is not None and len(note) == 2:
                note.append(v)
            elif k == DURATION and note is not None and len(note) == 3:
                rows.append(note + [v])
                note = None
        return np.array(rows, dtype=np.float64).reshape(-1, 4)

    # ---- generation support ----
    def prompt(self, excerpt: pretty_midi.PrettyMIDI, seed_seconds: float) -> RemiPrompt:
        """The seed excerpt as ids that end exactly at ``seed_seconds`` on the grid (Bar tokens padded)."""
        ids = self.encode(excerpt).tolist()
        s = seed_traits(excerpt, seed_seconds)
        sps = 60.0 / s.bpm / self.config.positions_per_beat
        program, key = s.program, s.key
        cut = excerpt.time_to_tick(seed_seconds) / excerpt.resolution * self.config.positions_per_beat  # steps
        if not ids:
            return RemiPrompt([], seed_seconds, seed_seconds - cut * sps, sps, math.ceil(cut), False, program, key)
        n_bars = int(np.sum(self.kind_of[ids] == BAR))
        last = int(self.events(ids)[:, 0].max())
        end_step = max(math.ceil(cut - 1e-6), last + 1)
        end_bar = end_step // self.steps_per_bar
        ids += [self.bar_id] * (end_bar + 1 - n_bars)
        has = last // self.steps_per_bar == end_bar
        return RemiPrompt(ids, seed_seconds, seed_seconds - cut * sps, sps, end_step, has, program, key)

    def prompt_tensor(self, prompt: RemiPrompt, batch: int, max_len: int = 512) -> torch.Tensor:
        """(B, T) ids: the prompt (its last ``max_len`` ids) repeated for each take."""
        return torch.tensor(prompt.ids[-max_len:], dtype=torch.long).unsqueeze(0).repeat(batch, 1)

    def new_state(self, batch: int, prompt: RemiPrompt, seconds: float, key_lock: bool = False) -> RemiDecodeState:
        return RemiDecodeState(self, batch, prompt, seconds, key_lock)

    def sample(self, logits: torch.Tensor, s, state: RemiDecodeState, gens) -> torch.Tensor:
        """Categorical draw (B,) from masked logits (B, V); the penalty hits recent Pitch ids."""
        from ..generation.sampling import sample_rows

        recent = state.recent_ids() if s.repetition_penalty != 1 else None  # skipped when off
        return sample_rows(logits, s, gens, recent)


class RemiDecodeState:
    """Per-take REMI grammar and clock while sampling ``batch`` takes at once.

    ``mask()`` (B, V) bool: ids allowed next. ``advance(ids)`` records sampled ids (B,).
    ``done[b]`` turns True when take b reaches the asked length: a ``Bar`` or
    ``Position`` at or past ``seconds`` after the seed cut (that token is not kept).
    """

    def __init__(self, tok: RemiTokenizer, batch: int, prompt: RemiPrompt, seconds: float, key_lock: bool):
        self.tok, self.prompt = tok, prompt
        S = tok.steps_per_bar
        cut = (prompt.start_seconds - prompt.origin_seconds) / prompt.seconds_per_step  # in steps
        self.target = max(math.ceil(cut + seconds / prompt.seconds_per_step - 1e-6), prompt.end_step + 1)
        self.end_seconds = prompt.start_seconds + seconds
        self.bar = np.full(batch, prompt.end_step // S)  # current bar (from bar 0 of the seed)
        self.pos = np.full(batch, prompt.end_step % S - 1)  # last position taken; the next must be later
        self.expect = np.zeros(batch, dtype=np.int64)  # 0: Pitch/Position/Bar, else the one kind allowed
        self.more_here = np.zeros(batch, dtype=bool)  # another note may join the current position
        self.last_pitch = np.zeros(batch, dtype=np.int64)  # notes at one position rise in pitch
        self.n_here = np.zeros(batch, dtype=np.int64)
        self.bar_notes = np.full(batch, prompt.bar_has_notes)  # the current bar has an onset
        self.empty_run = np.zeros(batch, dtype=np.int64)  # bars in a row left without onsets
        self.ids: list[list[int]] = [[] for _ in range(batch)]
        self.done = np.zeros(batch, dtype=bool)
        kind, val = tok.kind_of, tok.value_of
        pitch_ok = kind == PITCH
        if key_lock:
            pitch_ok &= np.isin(val.astype(np.int64) % 12, list(scale_pitch_classes(*prompt.key)))
        # rows of allowed ids: pitch_above[p] = allowed pitches higher than p; one row per single kind
        self.pitch_above = np.stack([pitch_ok & (val > p) for p in range(129)])
        self.only = {k: kind == k for k in (VELOCITY, DURATION)}
        self.only[PITCH] = pitch_ok

    def _row(self, b: int) -> np.ndarray:
        if self.expect[b]:
            return self.only[int(self.expect[b])]
        tok, S = self.tok, self.tok.steps_per_bar
        m = self.pitch_above[self.last_pitch[b]].copy() if self.more_here[b] else np.zeros(tok.vocab_size, bool)
        may_skip = self.bar_notes[b] or self.empty_run[b] < tok.config.max_empty_bars
        # a bar that must still get a note only offers positions before the end of the take
        hi = S if may_skip else min(S, self.target - self.bar[b] * S)
        m[tok.pos_ids[self.pos[b] + 1 : hi]] = True
        m[tok.bar_id] = may_skip
        return m

    def mask(self) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._row(b) for b in range(len(self.done))]))

    def advance(self, ids: np.ndarray) -> None:
        tok, S = self.tok, self.tok.steps_per_bar
        for b, i in enumerate(ids.tolist()):
            if self.done[b]:
                continue
            k, v = tok.kind_of[i], int(tok.value_of[i])
            if k == BAR:
                if (self.bar[b] + 1) * S >= self.target:
                    self.done[b] = True
                    continue
                self.empty_run[b] = 0 if self.bar_notes[b] else self.empty_run[b] + 1
                self.bar[b] += 1
                self.pos[b], self.bar_notes[b], self.more_here[b] = -1, False, False
            elif k == POSITION:
                if self.bar[b] * S + v >= self.target:
                    self.done[b] = True
                    continue
                self.pos[b], self.last_pitch[b], self.n_here[b], self.expect[b] = v, 0, 0, PITCH
            elif k == PITCH:
                self.last_pitch[b], self.expect[b], self.bar_notes[b] = v, VELOCITY, True
                self.n_here[b] += 1
            elif k == VELOCITY:
                self.expect[b] = DURATION
            elif k == DURATION:
                self.expect[b] = 0
                self.more_here[b] = self.n_here[b] < tok.config.max_notes_per_position
            else:
                raise ValueError(f"expected a REMI Bar/Position/Pitch/Velocity/Duration id, got {i}")
            self.ids[b].append(i)

    def recent_ids(self, window: int = 16) -> torch.Tensor | None:
        """(B, R) Pitch ids among each take's last ``window`` generated tokens (rows padded by repeats)."""
        from ..generation.sampling import ragged_ids

        return ragged_ids([sorted({i for i in ids[-window:] if self.tok.kind_of[i] == PITCH}) for ids in self.ids])

    @property
    def progress(self) -> float:
        """Share of the asked length made so far, over the slowest take (0-1)."""
        now = self.bar * self.tok.steps_per_bar + np.maximum(self.pos, 0)
        span = max(self.target - self.prompt.end_step, 1)
        return float(np.clip(np.min(np.where(self.done, self.target, now)) - self.prompt.end_step, 0, span) / span)

    def to_midi(self, b: int, excerpt: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
        """Seed excerpt + take ``b``'s new notes (onsets at or after the seed end, seconds)."""
        p, tok = self.prompt, self.tok
        bpm = 60.0 / p.seconds_per_step / tok.config.positions_per_beat
        # the generated ids continue the prompt's bar count: prefix Bars so events() counts from bar 0
        n_bars = int(np.sum(tok.kind_of[p.ids] == BAR))
        events = tok.events([tok.bar_id] * n_bars + self.ids[b])
        return with_continuation(excerpt, bpm, p.program, events, p.end_step, p.origin_seconds,
                                 p.seconds_per_step, self.end_seconds)  # fmt: skip
