"""Codecs: MIDI <-> what a model reads and writes (note/shift ids, REMI ids, piano-roll frames).

Every codec has the same generation interface (see :class:`Codec`); :func:`make_tokenizer`
builds the one a model card names.
"""

from __future__ import annotations

from .noteshift import NoteTokenizer, NoteTokenizerConfig


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
    raise ValueError(f"unknown tokenizer kind {kind!r}; known: note-shift, remi, pianoroll")
