"""Sampling bar/note tokens: the prompt and clock of a seed, and the per-take grammar.

``BarNotePrompt`` is what a request reads (ids) plus how grid steps map to seconds.
``BarNoteState`` keeps, for each of ``B`` takes sampled together, where the take is (bar,
position, open chord) and which ids may come next (``mask()`` (B, V) bool); ``advance(ids)``
records what was drawn. Three jobs share it:
* continue: new bars until ``target`` steps (a BAR or POS at or past it ends the take);
* infill: the middle of a span [``start``, ``end``) steps: ``fill_bars`` BARs, positions
  inside the span only; EOM, or a BAR or position at or past the span's end in its last bar, ends it;
* accompany: forced tokens (the melody's ``BAR MEL ... ACC`` of each bar, ``forced()``) and
  sampled accompaniment notes in between, until ``target``; its notes are pulled towards the
  chords sounding (``harmony``: given, or estimated from the melody; editing/harmony.py) and
  kept under the melody note sounding (``melody_top``).
Grammar in every job: after POS a NOTE; notes at one position rise in pitch (at most
``max_notes_per_position``); positions rise within a bar (section); a bar may pass with no
onset at most ``max_empty_bars`` times in a row; PAD and the infill sentinels are never drawn.
Pace (continue, infill): each take is pulled back towards the notes per step, onsets per step,
pitch-class shares and note-length shares of the music around it (the seed's last bars; the
bars either side of a span), because left alone the model drifts off them (docs/flagship.md,
"How it samples"). An accompaniment keeps the notes and onsets per step of POP909's
accompaniments of such a melody at such a tempo (editing/accompany.accompaniment_pace).
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field

import numpy as np
import pretty_midi
import symusic
import torch

from .barnote import MAIN, BarNoteCodec, Notes, notes_from_score
from .pace import PACE_BARS, Pace, Pedal, in_register, looped, one_line, pace_of, pedal_pattern


@dataclass
class BarNotePrompt:
    """A seed as ids plus the clock: grid step ``s`` (from the seed's bar 0) plays at
    ``origin_seconds + s * seconds_per_step``."""

    ids: list[int]
    start_seconds: float  # where new music starts (the seed cut), seconds
    origin_seconds: float
    seconds_per_step: float  # at the seed's end tempo
    end_step: int  # first grid step new notes may use
    program: int
    key: tuple[int, str]
    bar_has_notes: bool = False  # the bar holding end_step already has onsets
    pace: Pace | None = None  # the seed's last bars
    line: tuple[int, int] | None = None  # a one-line seed (a tune alone): its lowest and highest pitch
    pedal: Pedal | None = None  # the seed's last bars' sustain pedal, repeated under the continuation
    extra: dict = field(default_factory=dict)


def notes_from_pm(pm: pretty_midi.PrettyMIDI, tracks: dict[int, int] | None = None, pedal: bool = True) -> Notes:
    """A PrettyMIDI's notes in beats (through its own ticks), sustain pedal included (``pedal``;
    False: as written). ``tracks``: {index in ``pm.instruments`` (0 .. len - 1): MAIN/MELODY/ACCOMP},
    read in that order; None takes every non-drum track."""
    if tracks is None:
        return notes_from_score(score_of(pm), None, pedal)
    parts = []
    for i, label in tracks.items():  # one at a time: symusic drops empty tracks, so indices would not line up
        one = copy.copy(pm)
        one.instruments = [pm.instruments[i]]
        parts.append(notes_from_score(score_of(one), {0: label}, pedal))
    return Notes.concat(parts)


def score_of(pm: pretty_midi.PrettyMIDI) -> symusic.Score:
    """``pm`` as a symusic Score (ticks), through MIDI bytes, without lyrics and text (symusic
    reads these as a track of their own)."""
    bare = copy.copy(pm)
    bare.lyrics, bare.text_events = [], []
    buf = io.BytesIO()
    bare.write(buf)
    return symusic.Score.from_midi(buf.getvalue())


def seed_clock(pm: pretty_midi.PrettyMIDI, seconds: float, positions_per_beat: int, bpm: float) -> tuple[float, float]:
    """(grid step of ``seconds``, seconds per step at ``bpm``, the tempo in force there)."""
    return pm.time_to_tick(seconds) / pm.resolution * positions_per_beat, 60.0 / bpm / positions_per_beat


ONSET_PULL = 2.0  # nats of logit per e-fold too few (many) onsets, per pace-typical gap ahead (0 = off)
CHORD_PULL = 8.0  # nats of logit per e-fold too thin (thick) chords, on another note here (0 = off)
PALETTE_PULL = 2.0  # nats of logit per e-fold a pitch class is under (over) used against the pace's (0 = off)
PALETTE_FLOOR = 1 / 24  # added to both shares, so a class rare in the pace is not pushed up for being unplayed
DURATION_PULL = 4.0  # the same for each duration bin's share of the notes (0 = off)
DURATION_FLOOR = 1 / 20  # as PALETTE_FLOOR, for the 10 duration bins
UNDER_PULL = 2.0  # accompany: nats of logit a note above the melody note sounding loses (0 = off)


def cut_to_bar(ids: list[int], n: int, bar_id: int) -> list[int]:
    """The last ``n`` ids at most, starting at a BAR."""
    if n <= 0:
        return []
    if len(ids) <= n:
        return ids
    tail = ids[-n:]
    return tail[tail.index(bar_id) :] if bar_id in tail else tail


class BarNoteState:
    """Per-take grammar, clock and forced tokens; see the module docstring."""

    def __init__(self, codec: BarNoteCodec, batch: int, start_step: int, target: int, *, first_bar: int,
                 bar_has_notes: bool = False, fill_bars: int | None = None, end_step: int | None = None,
                 pitch_ok: np.ndarray | None = None, max_empty_bars: int = 1,
                 pace: Pace | None = None, line: tuple[int, int] | None = None):  # fmt: skip
        self.codec, S = codec, codec.steps_per_bar
        self.target, self.fill_bars, self.end_step = target, fill_bars, end_step
        self.max_empty_bars = max_empty_bars
        self.bar = np.full(batch, start_step // S)
        self.pos = np.full(batch, start_step % S - 1)  # last position taken; the next must be later
        self.first_bar = first_bar  # bar of the first BAR in the ids this state's takes are decoded with
        self.bars_done = np.zeros(batch, dtype=np.int64)  # BARs drawn (infill counts them)
        self.expect_note = np.zeros(batch, dtype=bool)
        self.last_pitch = np.zeros(batch, dtype=np.int64)
        self.n_here = np.zeros(batch, dtype=np.int64)
        self.bar_notes = np.full(batch, bar_has_notes)
        self.empty_run = np.zeros(batch, dtype=np.int64)
        self.origin, self.pace = start_step, pace  # the pace to keep, or None
        self.notes_drawn = np.zeros(batch, dtype=np.int64)
        self.onsets_drawn = np.zeros(batch, dtype=np.int64)
        self.classes_drawn = np.zeros((batch, 12))  # notes drawn per pitch class
        self.durations_drawn = np.zeros((batch, codec.n_dur))  # notes drawn per duration bin
        self.most_here = 1 if line else codec.config.max_notes_per_position  # notes a position may hold
        self.ids: list[list[int]] = [[] for _ in range(batch)]
        self.queue: list[list[int]] = [[] for _ in range(batch)]  # forced ids, next first
        self.done = np.zeros(batch, dtype=bool)
        pitch_ok = codec.pitch_of >= 0 if pitch_ok is None else pitch_ok & (codec.pitch_of >= 0)
        if line:  # a tune alone goes on as a tune: in its register (pace.one_line), one note at a time
            pitch_ok = pitch_ok & in_register(codec, line)
        self.note_above = np.stack([pitch_ok & (codec.pitch_of > p) for p in range(129)])  # (129, V)
        self.on_bar = None  # accompany: called with (row, new bar) to queue that bar's forced tokens
        self.section = MAIN  # the section the first drawn ids are in (accompany: ACCOMP)
        self.harmony = None  # accompany: the chords to follow (editing/harmony.Harmony), or None
        self.melody_top: tuple[int, np.ndarray] | None = None  # accompany: (first grid step, (steps,) top melody pitch)
        self.under_pull = UNDER_PULL  # accompany: nats a note above the melody loses

    # ---- what may come next ----
    def _limit(self, b: int) -> int:
        """Positions below this may be drawn in the current bar."""
        S = self.codec.steps_per_bar
        if self.fill_bars is not None and self.bars_done[b] >= self.fill_bars:
            return S  # the span's last bar: a position at or past the span's end closes it (advance)
        must_fill = not self.bar_notes[b] and self.empty_run[b] >= self.max_empty_bars
        return min(S, self.target - self.bar[b] * S) if must_fill else S

    def _row(self, b: int) -> np.ndarray:
        c = self.codec
        if self.expect_note[b]:
            return self.note_above[0]
        m = self.note_above[self.last_pitch[b]].copy() if self.n_here[b] else np.zeros(c.vocab_size, bool)
        if self.n_here[b] >= self.most_here:
            m[:] = False
        m[c.pos_base + self.pos[b] + 1 : c.pos_base + max(self.pos[b] + 1, self._limit(b))] = True
        if self.fill_bars is not None:
            last = self.bars_done[b] >= self.fill_bars
            m[c.bar] = True  # in the last bar a BAR, like a late position, means the middle is over
            m[c.ids["EOM"]] = last
        else:
            m[c.bar] = self.bar_notes[b] or self.empty_run[b] < self.max_empty_bars
        if not m.any():  # nothing fits (e.g. a full chord at the span's last position): close the span
            m[c.ids["EOM"] if self.fill_bars is not None else c.bar] = True
        return m

    def mask(self) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._row(b) for b in range(len(self.done))]))

    def keep_pace(self, logits: np.ndarray) -> np.ndarray:
        """(B, V) logits pulled towards ``pace`` (unchanged without one): a take playing fewer
        onsets than the pace makes later positions (and the bar line, or the end of an infill's
        span) costlier, one with thinner chords makes another note at this position likelier; the
        reverse when it plays more. Each take's counts start from one bar at the pace, so its
        first notes are the model's own."""
        p = self.pace
        if p is None or not (ONSET_PULL or CHORD_PULL):
            return logits
        c, S = self.codec, self.codec.steps_per_bar
        pos, at = self.pos.astype(np.float64), self.bar * S  # at: the current bar's first step
        steps_made = np.maximum(at + np.maximum(pos, 0) - self.origin, 0)
        onsets, notes = self.onsets_drawn + p.onsets * S, self.notes_drawn + p.notes * S  # with the prior bar
        sparse = np.log(p.onsets * (steps_made + S) / onsets)  # > 0: too few onsets
        thin = np.log(p.notes / p.onsets * onsets / notes)  # > 0: too few notes an onset
        gaps = (np.arange(S)[None, :] - pos[:, None]) * p.onsets  # steps ahead, in the pace's mean gaps
        end = np.full(len(self.done), S)  # the bar line moves on to the next bar's step 0...
        if self.fill_bars is not None:  # ...but in an infill's last bar it (or EOM) ends the span at end_step
            end = np.where(self.bars_done >= self.fill_bars, self.end_step - at, S)
        ends = np.maximum(end - pos, 0) * p.onsets
        logits = np.array(logits, dtype=np.float64)
        logits[:, c.note_base :] += np.where(self.n_here > 0, CHORD_PULL * thin, 0.0)[:, None]
        logits[:, c.pos_base : c.note_base] -= ONSET_PULL * sparse[:, None] * gaps
        for i in (c.bar, c.ids["EOM"]):
            logits[:, i] -= ONSET_PULL * sparse * ends
        return logits

    def keep_palette(self, logits: np.ndarray) -> np.ndarray:
        """(B, V) logits with each note pulled towards the pace's shares of pitch classes and of
        duration bins: a class (bin) the take has used less than the pace made likelier, one used
        more costlier, by ``PALETTE_PULL`` (``DURATION_PULL``) x log((pace share + floor) / (take's
        share + floor)) (counts start from one bar's notes at the pace). ``sample`` adds it within
        the note kind, so it moves no onsets."""
        p = self.pace
        if p is None:
            return logits
        prior = p.notes * self.codec.steps_per_bar

        def pull(drawn: np.ndarray, shares: tuple[float, ...], strength: float, floor: float) -> np.ndarray:
            share = np.asarray(shares)
            used = (drawn + share * prior) / (self.notes_drawn[:, None] + prior)  # (B, K)
            return strength * np.log((share + floor) / (used + floor))  # (B, K) nats

        classes = durations = None
        if PALETTE_PULL and p.palette is not None:
            classes = pull(self.classes_drawn, p.palette, PALETTE_PULL, PALETTE_FLOOR)
        if DURATION_PULL and p.durations is not None:
            durations = pull(self.durations_drawn, p.durations, DURATION_PULL, DURATION_FLOOR)
        return self._add_by(logits, classes, durations)

    def keep_harmony(self, logits: np.ndarray) -> np.ndarray:
        """(B, V) logits with each note ``harmony.pull`` x ``harmony.weights_at`` (its pitch class,
        the take's position) nats likelier: the full pull on a typed chord's tones, a share of it on
        each class of chords the chord model read (unchanged without ``harmony``, or where no chord sounds)."""
        if self.harmony is None or not self.harmony.pull:
            return logits
        tones = self.harmony.weights_at(self.bar * self.codec.steps_per_bar + np.maximum(self.pos, 0))  # (B, 12)
        return self._add_by(logits, self.harmony.pull * tones)

    def keep_under(self, logits: np.ndarray) -> np.ndarray:
        """(B, V) logits with each note above the melody's highest note sounding at the take's
        position ``under_pull`` nats costlier, so an accompaniment stays under its melody
        (unchanged without ``melody_top``, or where the melody rests)."""
        if self.melody_top is None or not self.under_pull:
            return logits
        first, top = self.melody_top
        k = self.bar * self.codec.steps_per_bar + np.maximum(self.pos, 0) - first  # (B,)
        ceiling = np.where((k >= 0) & (k < len(top)), top[np.clip(k, 0, len(top) - 1)], -1)
        ceiling = np.where(ceiling < 0, 128, ceiling)  # no melody sounding: no ceiling
        return logits - self.under_pull * self.note_above[ceiling]  # (B, V); key-locked notes are masked anyway

    def _add_by(self, logits: np.ndarray, classes: np.ndarray | None, durations: np.ndarray | None = None):
        """(B, V) logits plus ``classes`` (B, 12) on each note id of that pitch class and ``durations``
        (B, n_dur) on each of that duration bin (None: nothing)."""
        c = self.codec
        if classes is None and durations is None:
            return logits
        B = len(logits)
        classes = np.zeros((B, 12)) if classes is None else classes
        durations = np.zeros((B, c.n_dur)) if durations is None else durations
        logits = np.array(logits, dtype=np.float64)
        table = classes[:, c.pitch_class_rows, None] + durations[:, None, :]  # (B, pitches, n_dur)
        # a view of the note ids by pitch, bin, velocity: the table added once per velocity
        notes = np.reshape(logits[:, c.note_base :], (B, -1, c.n_dur, c.n_vel), copy=False)
        notes += table[..., None]
        return logits

    def forced(self) -> np.ndarray:
        """(B,) the next forced id of each take, -1 where the model samples."""
        return np.array([q[0] if q else -1 for q in self.queue], dtype=np.int64)

    # ---- recording ----
    def advance(self, ids: np.ndarray) -> None:
        c, S = self.codec, self.codec.steps_per_bar
        for b, i in enumerate(ids.tolist()):
            if self.done[b]:
                continue
            if self.queue[b]:  # a forced id is recorded as given (melody tokens)
                self.queue[b].pop(0)
                self._track_forced(b, i)
                self.ids[b].append(i)
                continue
            if i == c.ids["EOM"] or self._past_span(b, i):
                self.done[b] = True  # the model wants to write on past the span: the middle ends here
                continue
            if i == c.bar:
                if self.fill_bars is None and (self.bar[b] + 1) * S >= self.target:
                    self.done[b] = True
                    continue
                self._new_bar(b)
                if self.on_bar is not None:
                    self.on_bar(b, int(self.bar[b]))
            elif c.pos_of[i] >= 0:
                if self.fill_bars is None and self.bar[b] * S + c.pos_of[i] >= self.target:
                    self.done[b] = True
                    continue
                self.pos[b], self.n_here[b], self.last_pitch[b], self.expect_note[b] = c.pos_of[i], 0, 0, True
                self.onsets_drawn[b] += 1
            elif c.pitch_of[i] >= 0:
                self.last_pitch[b], self.expect_note[b], self.bar_notes[b] = c.pitch_of[i], False, True
                self.n_here[b] += 1
                self.notes_drawn[b] += 1
                self.classes_drawn[b, c.pitch_of[i] % 12] += 1
                self.durations_drawn[b, c.dur_bin_of[i]] += 1
            else:
                raise ValueError(f"expected a bar/note BAR, POS or NOTE id while sampling, got {i}")
            self.ids[b].append(i)

    def _past_span(self, b: int, i: int) -> bool:
        """Infill: in the span's last bar, a BAR or a position at or after the span's end."""
        c = self.codec
        if self.fill_bars is None or self.bars_done[b] < self.fill_bars:
            return False
        return i == c.bar or (c.pos_of[i] >= 0 and self.bar[b] * c.steps_per_bar + c.pos_of[i] >= self.end_step)

    def _new_bar(self, b: int) -> None:
        self.empty_run[b] = 0 if self.bar_notes[b] else self.empty_run[b] + 1
        self.bar[b] += 1
        self.bars_done[b] += 1
        self.pos[b], self.n_here[b], self.bar_notes[b], self.expect_note[b] = -1, 0, False, False

    def _track_forced(self, b: int, i: int) -> None:
        """Forced ids of accompany: ACC starts the bar's accompaniment section (positions from 0)."""
        if i == self.codec.ids["ACC"]:
            self.pos[b], self.n_here[b], self.expect_note[b] = -1, 0, False

    def recent_notes(self, window: int = 16) -> np.ndarray:
        """(B, V) bool: the note ids sharing a pitch with the notes among each take's last ``window`` ids."""
        pitch_of = self.codec.pitch_of
        hit = np.zeros((len(self.ids), 129), dtype=bool)  # column 128: pitch_of's -1 (not a note)
        for b, ids in enumerate(self.ids):
            hit[b, pitch_of[np.asarray(ids[-window:], dtype=np.int64)]] = True
        hit[:, 128] = False
        return hit[:, pitch_of]

    @property
    def progress(self) -> float:
        """Share of the asked length made so far, over the slowest take (0-1)."""
        S = self.codec.steps_per_bar
        goal = self.end_step if self.fill_bars is not None else self.target
        now = np.where(self.done, goal, self.bar * S + np.maximum(self.pos, 0))
        start = getattr(self, "start_step", None)
        if start is None:
            self.start_step = start = int(np.min(now))
        return float(np.clip((np.min(now) - start) / max(goal - start, 1), 0, 1))

    def events(self, b: int) -> np.ndarray:
        """Take ``b``'s drawn notes: (onset step, pitch, velocity, duration steps, track) (N, 5)."""
        return self.codec.events(self.ids[b], first_bar=self.first_bar, section=self.section)


class ContinueState(BarNoteState):
    """A continuation's state: the grammar plus the seed's clock, for ``to_midi``."""

    def __init__(self, codec: BarNoteCodec, batch: int, prompt: BarNotePrompt, seconds: float, key_lock: bool):
        cut = (prompt.start_seconds - prompt.origin_seconds) / prompt.seconds_per_step
        target = max(int(np.ceil(cut + seconds / prompt.seconds_per_step - 1e-6)), prompt.end_step + 1)
        pitch_ok = None
        if key_lock:
            from .common import scale_pitch_classes

            pitch_ok = np.isin(codec.pitch_of % 12, list(scale_pitch_classes(*prompt.key)))
        S = codec.steps_per_bar
        super().__init__(codec, batch, prompt.end_step, target, first_bar=prompt.end_step // S,
                         bar_has_notes=prompt.bar_has_notes, pitch_ok=pitch_ok, pace=prompt.pace,
                         line=prompt.line)  # fmt: skip
        self.prompt, self.end_seconds = prompt, prompt.start_seconds + seconds

    def to_midi(self, b: int, excerpt: pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
        """Seed excerpt (with its pedal) + take ``b``'s new notes (onsets at or after the seed end,
        seconds) under the seed's last bars' pedalling, repeated (pace.pedal_pattern)."""
        from .common import with_continuation

        p = self.prompt
        bpm = 60.0 / p.seconds_per_step / self.codec.config.positions_per_beat
        events = self.events(b)[:, :4]
        if p.line and len(events) > 1:  # a line: each note ends by the next one's onset
            events[:-1, 3] = np.minimum(events[:-1, 3], np.diff(events[:, 0]))
        S = self.codec.steps_per_bar
        pedal = None if p.pedal is None else looped(p.pedal, p.end_step // S * S, p.end_step, self.target)
        return with_continuation(excerpt, bpm, p.program, events, p.end_step, p.origin_seconds,
                                 p.seconds_per_step, self.end_seconds, pedal)  # fmt: skip


class BarNoteTokenizer(BarNoteCodec):
    """The bar/note codec with what ``sampling.generate`` asks of a tokenizer (continue a seed)."""

    prompt_tokens = 896  # a prompt's most ids: 128 of the 1,024-token window stay for new ones

    def prompt(self, excerpt: pretty_midi.PrettyMIDI, seed_seconds: float) -> BarNotePrompt:
        """The seed excerpt as ids from its bar 0 to the bar holding ``seed_seconds``."""
        from .common import seed_traits

        S = self.steps_per_bar
        traits = seed_traits(excerpt, seed_seconds)
        cut, sps = seed_clock(excerpt, seed_seconds, self.config.positions_per_beat, traits.bpm)
        score = score_of(excerpt)
        q = self.quantize(notes_from_score(score))  # as heard (pedal-extended), as the model reads music
        q = q[q[:, 0] < np.ceil(cut - 1e-6)]
        written = self.quantize(notes_from_score(score, pedal=False))  # as a take writes its notes (pedal apart)
        written = written[written[:, 0] < np.ceil(cut - 1e-6)]
        program, key = traits.program, traits.key
        if not len(q):
            return BarNotePrompt([], seed_seconds, seed_seconds - cut * sps, sps, int(np.ceil(cut)), program, key)
        last = int(q[:, 0].max())
        end_step = max(int(np.ceil(cut - 1e-6)), last + 1)
        ids = self.encode(q, 0, end_step // S + 1).tolist()
        has = last // S == end_step // S
        pace = pace_of(self, written, [(end_step - PACE_BARS * S, end_step)])
        line = one_line(self, written)
        pedal = pedal_pattern(self, excerpt, end_step)
        return BarNotePrompt(ids, seed_seconds, seed_seconds - cut * sps, sps, end_step, program, key, has, pace, line,
                             pedal)  # fmt: skip

    def prompt_tensor(self, prompt: BarNotePrompt, batch: int, max_len: int | None = None) -> torch.Tensor:
        """(B, T) ids: the prompt's last ids (from a bar line) repeated for each take."""
        ids = cut_to_bar(prompt.ids, min(max_len or self.prompt_tokens, self.prompt_tokens), self.bar)
        return torch.tensor(ids, dtype=torch.long).unsqueeze(0).repeat(batch, 1)

    def new_state(self, batch: int, prompt: BarNotePrompt, seconds: float, key_lock: bool = False) -> ContinueState:
        return ContinueState(self, batch, prompt, seconds, key_lock)

    def sample(self, logits: torch.Tensor, s, state: BarNoteState, gens) -> torch.Tensor:
        """Draw (B,) ids from masked logits (B, V) in two steps: the kind of the next token (a note,
        a later position, or a bar line / end) from the model's untempered odds with the pace's
        offsets (``keep_pace``), then the id of that kind, notes pulled towards the pace's pitch
        classes and lengths (``keep_palette``), an accompaniment's chords (``keep_harmony``) and
        under its melody (``keep_under``), under the temperature (which divides the pulls too),
        top-k, top-p, min-p and the penalty on recent pitches (so top-k 1 is the likeliest id of
        the drawn kind; temperature 0 takes the likelier kind, then its likeliest id).

        Why: a note's probability is spread over thousands of (pitch, duration, velocity) ids and
        "move on" over a few, so truncating all ids at once drops notes: at top-p 0.95 the
        flagship played 0.78x the real density, drawn this way 0.94x (docs/flagship.md)."""
        from ..generation.sampling import draw_row, sample_row

        x = state.keep_pace(logits.detach().float().cpu().numpy())  # (B, V), a copy when pulled
        pulled = state.keep_under(state.keep_harmony(state.keep_palette(x)))  # moves note ids only
        recent = state.recent_notes() if s.repetition_penalty != 1 else None
        odds = kind_odds(x, self.kinds)  # (B, K)
        ids = []
        for b, gen in enumerate(gens):  # one take at a time: its draws depend on its own row only
            k = int(np.argmax(odds[b])) if s.temperature == 0 else draw_row(odds[b], gen)
            a, z = self.kinds[k]
            ids.append(a + sample_row(pulled[b, a:z], s, gen, None if recent is None else recent[b, a:z]))
        return torch.tensor(ids)


def kind_odds(x: np.ndarray, kinds: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(B, V) logits -> (B, K) each row's probability of each kind of id (``kinds``: id ranges
    [a, z)), from that row alone (a masked kind: 0): its share of the row's softmax mass."""
    x = np.ascontiguousarray(x)  # each row summed in one order, whatever the layout it came in
    top = x.max(1, keepdims=True)
    e = np.exp(x - np.where(np.isfinite(top), top, 0.0))  # (B, V), one pass for every kind
    mass = np.stack([e[:, a:z].sum(1) for a, z in kinds], 1)  # (B, K)
    return mass / mass.sum(1, keepdims=True)
