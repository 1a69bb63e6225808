"""Bar/note tokens: one token per note, bars and beat positions, sections for two tracks, infill sentinels.

The flagship model's vocabulary (``BarNoteCodec``). Time is read in **beats** through the
file's ticks (tempo changes do not move the grid), on ``positions_per_beat`` = 12 steps per
beat, so 16ths (3 steps) and triplets (4 steps) both land on the grid. Bars are 4 beats.

Ids, in order (4,480 by default):
* ``0`` PAD (never a target), ``1`` BAR (a new bar begins), then specials:
  ``EOS`` (reserved), ``INFILL`` (an infill example begins: the suffix follows),
  ``MID`` (the middle starts right here, after the prefix), ``EOM`` (the middle has ended),
  ``MEL`` / ``ACC`` (the melody / accompaniment section of a two-track bar), spare ids, and
  ``FILL_k`` (k = 0 .. 16: the middle spans k bar lines).
* ``POS_p``: the notes that follow start ``p`` steps into the bar (0 .. 47).
* ``NOTE(pitch, duration, velocity)``: pitch 21-108, a duration bin (``dur_bins``, steps:
  1/12 to 4 beats, sustain pedal included) and a velocity bin (``vel_edges``). One token per
  note keeps a second of piano music at ~15 tokens, about a third of REMI's.

Streams:
* one track (every chosen track merged): ``BAR POS NOTE NOTE POS NOTE ... BAR ...``; notes of
  one position rise in pitch; a pitch sounds once per position.
* two tracks (melody + accompaniment, e.g. POP909): each bar is
  ``BAR MEL <melody positions + notes> ACC <accompaniment positions + notes>``, so the
  accompaniment of a bar is written after reading that bar's melody. Training also shows bars
  with the accompaniment withheld (``BAR MEL <melody>``, no ACC section; training/examples.py).
* infill (suffix-prefix-middle): ``INFILL <suffix bars> FILL_k <prefix bars> MID <middle> EOM``;
  the middle continues the prefix's last bar and holds exactly k BAR tokens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import symusic

from .common import HIGH, LOW

SPECIALS = ["PAD", "BAR", "EOS", "INFILL", "MID", "EOM", "MEL", "ACC"]
N_SPARE = 8  # ids kept free for later specials without moving the note ids
MAX_FILL_BARS = 16
MAIN, MELODY, ACCOMP = 0, 1, 2  # note tracks: merged stream, melody section, accompaniment section


@dataclass
class BarNoteConfig:
    """What the bar/note vocabulary is; saved in the model's config.json."""

    kind: str = "bar-note"
    positions_per_beat: int = 12  # grid steps per beat: 16ths and triplets both on the grid
    beats_per_bar: int = 4  # bars are 4 beats (no time-signature tokens)
    dur_bins: list[int] = field(default_factory=lambda: [1, 3, 4, 6, 9, 12, 18, 24, 36, 48])  # steps
    vel_edges: list[int] = field(default_factory=lambda: [40, 60, 80, 100])  # velocity bin upper edges
    vel_values: list[int] = field(default_factory=lambda: [30, 50, 70, 90, 112])  # velocity of each bin
    max_notes_per_position: int = 10  # grammar: at most this many onsets at one position


@dataclass
class Notes:
    """Notes as parallel arrays (N,), times in beats from the file's start."""

    onset: np.ndarray  # float64 beats
    duration: np.ndarray  # float64 beats (sustain pedal included)
    pitch: np.ndarray  # int64 MIDI pitch
    velocity: np.ndarray  # int64 1-127
    track: np.ndarray  # int64 MAIN / MELODY / ACCOMP

    def __len__(self) -> int:
        return len(self.onset)

    def take(self, idx) -> Notes:
        return Notes(*(a[idx] for a in (self.onset, self.duration, self.pitch, self.velocity, self.track)))

    @staticmethod
    def concat(parts: list[Notes]) -> Notes:
        if not parts:
            return Notes(*(np.zeros(0, dt) for dt in (np.float64, np.float64, np.int64, np.int64, np.int64)))
        return Notes(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Notes)))


def pedal_extend(onset: np.ndarray, end: np.ndarray, pitch: np.ndarray, pedals: np.ndarray) -> np.ndarray:
    """Note ends (beats) held on by the sustain pedal: a note released while the pedal is down
    sounds until the pedal lifts or the same pitch is struck again. ``pedals`` (P, 2) down/up."""
    if not len(pedals) or not len(onset):
        return end
    end = end.copy()
    i = np.searchsorted(pedals[:, 0], end, side="right") - 1  # last pedal press at or before the release
    held = (i >= 0) & (end < pedals[np.maximum(i, 0), 1])
    end[held] = pedals[i[held], 1]
    order = np.lexsort((onset, pitch))  # the next onset of the same pitch cuts the held note
    p, o = pitch[order], onset[order]
    nxt = np.full(len(o), np.inf)
    same = p[1:] == p[:-1]
    nxt[:-1][same] = o[1:][same]
    cut = np.empty_like(nxt)
    cut[order] = nxt
    return np.maximum(np.minimum(end, cut), onset + 1e-3)


def notes_from_score(score: symusic.Score, tracks: dict[int, int] | None = None, pedal: bool = True) -> Notes:
    """Non-drum notes of a symusic Score (ticks) -> Notes in beats, pedal-extended per track
    (``pedal``; False: as written).

    ``tracks``: {track index: MAIN/MELODY/ACCOMP}; None takes every non-drum track as MAIN.
    Pitches outside 21-108 move by octaves into range."""
    tpq = float(score.ticks_per_quarter)
    parts = []
    for t, tr in enumerate(score.tracks):
        if tr.is_drum or not len(tr.notes) or (tracks is not None and t not in tracks):
            continue
        n = tr.notes.numpy()
        onset = n["time"].astype(np.float64) / tpq
        end = onset + np.maximum(n["duration"], 0).astype(np.float64) / tpq
        pitch = n["pitch"].astype(np.int64)
        pitch = np.where(pitch < LOW, pitch + 12 * np.ceil((LOW - pitch) / 12), pitch)
        pitch = np.where(pitch > HIGH, pitch - 12 * np.ceil((pitch - HIGH) / 12), pitch).astype(np.int64)
        if pedal and len(tr.pedals):
            ped = tr.pedals.numpy()
            down = np.stack([ped["time"], ped["time"] + ped["duration"]], axis=1).astype(np.float64) / tpq  # (P, 2)
            end = pedal_extend(onset, end, pitch, down)
        vel = np.clip(n["velocity"].astype(np.int64), 1, 127)
        label = MAIN if tracks is None else tracks[t]
        parts.append(Notes(onset, end - onset, pitch, vel, np.full(len(onset), label, dtype=np.int64)))
    return Notes.concat(parts)


class BarNoteCodec:
    """Bar/note tokens; see the module docstring for the vocabulary and streams."""

    def __init__(self, config: BarNoteConfig | None = None):
        self.config = c = config or BarNoteConfig()
        self.steps_per_bar = c.positions_per_beat * c.beats_per_bar
        self.n_dur, self.n_vel = len(c.dur_bins), len(c.vel_values)
        if len(c.vel_edges) != self.n_vel - 1:
            raise ValueError(f"expected {self.n_vel - 1} velocity edges for {self.n_vel} values, got {c.vel_edges}")
        self.ids = {name: i for i, name in enumerate(SPECIALS)}
        self.bar = self.ids["BAR"]
        self.fill_base = len(SPECIALS) + N_SPARE
        self.pos_base = self.fill_base + MAX_FILL_BARS + 1
        self.note_base = self.pos_base + self.steps_per_bar
        self.vocab_size = self.note_base + (HIGH - LOW + 1) * self.n_dur * self.n_vel
        self.kinds = (
            (self.note_base, self.vocab_size),
            (self.pos_base, self.note_base),
            (0, self.pos_base),
        )  # note, position, other ids
        self._log_dur = np.log(np.asarray(c.dur_bins, dtype=np.float64))
        # per-id lookup tables: pitch (-1 if not a note), duration bin and steps, velocity, position (-1)
        k = np.arange(self.vocab_size) - self.note_base
        note = k >= 0
        self.pitch_of = np.where(note, LOW + k // (self.n_dur * self.n_vel), -1)
        self.dur_bin_of = np.where(note, (k // self.n_vel) % self.n_dur, -1)
        self.dur_of = np.where(note, np.asarray(c.dur_bins)[self.dur_bin_of], 0)
        self.vel_of = np.where(note, np.asarray(c.vel_values)[k % self.n_vel], 0)
        self.pitch_class_rows = np.arange(LOW, HIGH + 1) % 12  # the pitch class of each pitch the notes span
        i = np.arange(self.vocab_size)
        self.pos_of = np.where((i >= self.pos_base) & (i < self.note_base), i - self.pos_base, -1)

    @classmethod
    def from_dict(cls, d: dict) -> BarNoteCodec:
        names = {f.name for f in fields(BarNoteConfig)}
        if set(d) - names or d.get("kind", "bar-note") != "bar-note":
            raise ValueError(f"expected a bar-note codec dict with keys {sorted(names)}, got {sorted(d)}")
        return cls(BarNoteConfig(**d))

    def to_dict(self) -> dict:
        return asdict(self.config)

    def fill_id(self, bars: int) -> int:
        if not 0 <= bars <= MAX_FILL_BARS:
            raise ValueError(f"an infill spans 0 to {MAX_FILL_BARS} bar lines, got {bars}")
        return self.fill_base + bars

    # ---- notes -> grid ----
    def quantize(self, notes: Notes) -> np.ndarray:
        """Notes -> int64 (N, 5) rows (onset step, pitch, note id, track, velocity), sorted by
        track, onset, pitch; the same pitch twice at one step of one track is kept once."""
        c = self.config
        step = np.round(notes.onset * c.positions_per_beat).astype(np.int64)
        dur = np.maximum(notes.duration * c.positions_per_beat, 0.5)
        d = np.abs(np.log(dur)[:, None] - self._log_dur[None]).argmin(axis=1)
        v = np.searchsorted(np.asarray(c.vel_edges), notes.velocity, side="left")
        nid = self.note_base + ((notes.pitch - LOW) * self.n_dur + d) * self.n_vel + v
        q = np.stack([step, notes.pitch, nid, notes.track, notes.velocity], axis=1)
        q = q[np.lexsort((q[:, 1], q[:, 0], q[:, 3]))]
        keep = np.ones(len(q), dtype=bool)
        keep[1:] = (q[1:, 0] != q[:-1, 0]) | (q[1:, 1] != q[:-1, 1]) | (q[1:, 3] != q[:-1, 3])
        return q[keep]

    # ---- grid -> ids ----
    def encode(self, q: np.ndarray, bar_lo: int, bar_hi: int, two_track: bool = False,
               step_lo: int | None = None, step_hi: int | None = None) -> np.ndarray:  # fmt: skip
        """Quantized rows -> ids for bars [bar_lo, bar_hi): a BAR per bar, then its notes.

        Only onsets in [step_lo, step_hi) (default: the whole bars) are written; the BAR tokens
        are still there for every bar. ``two_track``: MEL / ACC sections per bar (MELODY notes,
        then ACCOMP notes; MAIN notes go with ACCOMP); otherwise one merged stream (each pitch
        once per position). Returns int64 ids."""
        S = self.steps_per_bar
        lo = bar_lo * S if step_lo is None else step_lo
        hi = bar_hi * S if step_hi is None else step_hi
        q = q[(q[:, 0] >= max(lo, bar_lo * S)) & (q[:, 0] < min(hi, bar_hi * S))]
        if two_track:
            sec = np.where(q[:, 3] == MELODY, 1, 2)
        else:
            q = q[np.lexsort((q[:, 1], q[:, 0]))]
            keep = np.ones(len(q), dtype=bool)
            keep[1:] = (q[1:, 0] != q[:-1, 0]) | (q[1:, 1] != q[:-1, 1])
            q = q[keep]
            sec = np.zeros(len(q), dtype=np.int64)
        bar, pos = q[:, 0] // S, q[:, 0] % S
        # events as sort keys (bar, section, position, kind, pitch) and ids; kind 0 marker, 1 POS, 2 NOTE
        keys = [np.stack([bar, sec, pos, np.full(len(q), 2), q[:, 1]], 1)]
        vals = [q[:, 2]]
        grp = np.unique(np.stack([bar, sec, pos], 1), axis=0).reshape(-1, 3)
        keys.append(np.concatenate([grp, np.ones((len(grp), 1), np.int64), np.zeros((len(grp), 1), np.int64)], 1))
        vals.append(self.pos_base + grp[:, 2])
        bars = np.arange(bar_lo, bar_hi, dtype=np.int64)
        marks = [(0, self.bar)] + ([(1, self.ids["MEL"]), (2, self.ids["ACC"])] if two_track else [])
        for s, tid in marks:
            z = np.zeros(len(bars), np.int64)
            keys.append(np.stack([bars, z + s, z - 1, z, z], 1))
            vals.append(np.full(len(bars), tid, np.int64))
        k, v = np.concatenate(keys), np.concatenate(vals)
        order = np.lexsort(k.T[::-1])
        return v[order].astype(np.int64)

    def bars_of(self, q: np.ndarray) -> tuple[int, int]:
        """(first bar, one past the last bar) holding an onset of ``q``."""
        if not len(q):
            return 0, 0
        return int(q[:, 0].min() // self.steps_per_bar), int(q[:, 0].max() // self.steps_per_bar) + 1

    # ---- ids -> notes ----
    def events(self, ids, first_bar: int = -1, section: int = MAIN) -> np.ndarray:
        """ids -> notes (onset step, pitch, velocity, duration steps, track), int64 (N, 5).

        Bars count from ``first_bar`` + 1 at the first BAR; ids before it are in ``section``;
        INFILL/FILL/MID/EOM are skipped (decode each part of an infill stream on its own)."""
        S, bar, pos, sec, rows = self.steps_per_bar, first_bar, 0, section, []
        mel, acc = self.ids["MEL"], self.ids["ACC"]
        for i in ids:
            i = int(i)
            if i == self.bar:
                bar, pos, sec = bar + 1, 0, MAIN
            elif i == mel or i == acc:
                sec, pos = (MELODY if i == mel else ACCOMP), 0
            elif self.pos_of[i] >= 0:
                pos = int(self.pos_of[i])
            elif self.pitch_of[i] >= 0:
                rows.append((max(bar, 0) * S + pos, self.pitch_of[i], self.vel_of[i], self.dur_of[i], sec))
        return np.array(rows, dtype=np.int64).reshape(-1, 5)
