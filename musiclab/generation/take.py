"""A take: the music one generation made, with the facts of how it was made."""

from __future__ import annotations

from dataclasses import dataclass

import pretty_midi


@dataclass
class Take:
    """What :func:`musiclab.generate`, ``infill`` and ``accompany`` return, one per variation.

    midi: the seed excerpt (or the edited file) with the new notes; times in seconds.
    info: model name, job, settings, random seed, tokens, compute seconds, stopped early, ...
    """

    midi: pretty_midi.PrettyMIDI
    info: dict

    def __repr__(self) -> str:
        notes = sum(len(i.notes) for i in self.midi.instruments)
        return (
            f"Take({self.info.get('model', '?')}, random seed {self.info.get('random_seed')}, "
            f"{self.midi.get_end_time():.1f} s, {notes} notes)"
        )
