"""Builds tests/data/album.mid: a long, many-track real file, for the "long upload" tests.

Whole string-quartet movements from music21's bundled corpus (public-domain scores by Beethoven,
Mozart and Haydn, as music21 ships them), played back to back like an album, each movement on
tracks of its own (instruments recycled after 21 tracks), until it holds over 66,000 notes, then
played faster to last 37 minutes (music21 plays scores without tempo marks slowly).
Run: ``python tests/data/make_album.py`` (about a minute).
"""

from __future__ import annotations

from pathlib import Path

import pretty_midi
from music21 import corpus

from musiclab.midi.io import load_midi

MOVEMENTS = [f"beethoven/opus59no{n}/movement{m}.mxl" for n in (1, 2, 3) for m in (1, 2, 3, 4)] + [
    "beethoven/opus132.mxl", "beethoven/opus133.mxl", "beethoven/opus74.mxl",
    "mozart/k458/movement1.mxl", "mozart/k458/movement4.mxl", "haydn/opus74no1/movement1.mxl",
]  # fmt: skip
TRACKS, TARGET_NOTES, MINUTES = 21, 66_000, 37  # like the real album a listener uploaded


def main() -> None:
    album = pretty_midi.PrettyMIDI(initial_tempo=120)
    album.instruments = [pretty_midi.Instrument(program=40 + i % 4, name=f"track {i + 1}") for i in range(TRACKS)]
    t, track, notes = 0.0, 0, 0
    for path in MOVEMENTS:
        out = Path("/tmp/_movement.mid")
        try:
            corpus.parse(path).write("midi", fp=str(out))
        except Exception as e:  # music21 cannot expand some scores' repeats: skip those movements
            print(f"{path}: skipped ({type(e).__name__})")
            continue
        pm = load_midi(out)  # music21 writes fine tick grids pretty_midi alone refuses
        for inst in pm.instruments:
            dest = album.instruments[track % TRACKS]
            dest.notes += [pretty_midi.Note(n.velocity, n.pitch, n.start + t, n.end + t) for n in inst.notes]
            notes += len(inst.notes)
            track += 1
        t += pm.get_end_time() + 2.0
        print(f"{path}: {notes:,} notes, {t / 60:.1f} min")
        if notes > TARGET_NOTES:
            break
    scale = MINUTES * 60 / album.get_end_time()  # music21 plays scores without tempo marks slowly
    for inst in album.instruments:
        for n in inst.notes:
            n.start, n.end = n.start * scale, n.end * scale
    album.write(str(Path(__file__).with_name("album.mid")))


if __name__ == "__main__":
    main()
