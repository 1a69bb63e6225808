"""Codecs: MIDI <-> what a model reads and writes (note/shift ids, REMI ids, piano-roll frames).

Every codec has the same generation interface (see :class:`Codec`); :func:`make_tokenizer`
builds the one a model card names.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import pretty_midi
import torch

from .noteshift import NoteTokenizer, NoteTokenizerConfig


@runtime_checkable
class Codec(Protocol):
    """The interface training and :func:`musiclab.generate` use; note/shift, REMI and piano roll implement it."""

    vocab_size: int  # width of the model's logits: ids, or 88 keys for a piano roll

    def to_dict(self) -> dict:
        """The config saved in a model card's ``tokenizer`` entry (``make_tokenizer`` reads it back)."""

    def encode(self, pm: pretty_midi.PrettyMIDI, tracks: list[int] | None = None) -> Any:
        """A whole file -> training data: ids (T,) or frames (1 + T, 88)."""

    def prompt(self, excerpt: pretty_midi.PrettyMIDI, seed_seconds: float) -> Any:
        """A seed excerpt -> its ids/frames plus the clock (seconds per step) and the seed's traits."""

    def prompt_tensor(self, prompt: Any, batch: int, max_len: int = ...) -> torch.Tensor:
        """The prompt as the model's input, (B, T) ids or (B, T, 88) frames."""

    def new_state(self, batch: int, prompt: Any, seconds: float, key_lock: bool = False) -> Any:
        """Per-take grammar and clock: ``mask()``, ``advance(new)``, ``done``, ``progress``, ``to_midi(b, excerpt)``."""

    def sample(self, logits: torch.Tensor, s: Any, state: Any, gens: list[torch.Generator]) -> torch.Tensor:
        """One draw per take from masked logits (B, V), each take from its own generator."""


def make_tokenizer(d: dict):
    """Build the tokenizer a model card describes (its ``tokenizer`` dict)."""
    kind = d.get("kind", "note-shift")
    if kind == "note-shift":
        return NoteTokenizer(NoteTokenizerConfig(**d))
    if kind == "remi":
        from .remi import RemiTokenizer

        return RemiTokenizer.from_dict(d)
    if kind == "pianoroll":
        from .pianoroll import PianoRollCodec

        return PianoRollCodec.from_dict(d)
    if kind == "bar-note":
        from .barnote_state import BarNoteTokenizer

        return BarNoteTokenizer.from_dict(d)
    raise ValueError(f"unknown tokenizer kind {kind!r}; known: note-shift, remi, pianoroll, bar-note")
