"""Bundled example seeds, made from music21's corpus (public-domain scores).

The files in ``musiclab/examples/`` are committed so the app starts instantly with no
upload; ``python -m musiclab.midi.examples`` rebuilds them from music21's bundled corpus.
"""

from __future__ import annotations

import copy
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

# file stem -> (music21 corpus path, title shown in the app, measures to keep)
SOURCES = {
    "joplin_maple_leaf_rag": ("joplin/maple_leaf_rag.mxl", "Joplin — Maple Leaf Rag (piano)", 16),
    "bach_chorale_bwv66_6": ("bach/bwv66.6.mxl", "Bach — Chorale BWV 66.6 (4 voices)", 12),
    "chopin_mazurka_6_2": ("chopin/mazurka06-2.krn", "Chopin — Mazurka op. 6 no. 2 (piano)", 24),
    "mozart_k155_1": ("mozart/k155/movement1.mxl", "Mozart — Quartet K. 155, I (4 strings)", 16),
    "foster_jeanie_melody": ("leadSheet/fosterBrownHair.mxl", "Foster — Jeanie (melody)", 16),  # ...Light Brown Hair
}
# lead sheets: the tune alone (chord symbols dropped), on this GM program (flute)
MELODIES = {"foster_jeanie_melody": 73}


def list_examples() -> dict[str, Path]:
    """Title -> path of each bundled example seed."""
    return {
        title: EXAMPLES_DIR / f"{stem}.mid"
        for stem, (_, title, _) in SOURCES.items()
        if (EXAMPLES_DIR / f"{stem}.mid").exists()
    }


def build_examples() -> None:
    from music21 import corpus

    EXAMPLES_DIR.mkdir(exist_ok=True)
    for stem, (src, title, measures) in SOURCES.items():
        out = EXAMPLES_DIR / f"{stem}.mid"
        if stem in MELODIES:
            _write_melody(corpus.parse(src), measures, MELODIES[stem], out)
        else:
            corpus.parse(src).measures(1, measures).write("midi", fp=str(out))
        print(f"{title}: {out} ({out.stat().st_size} bytes)")


def _write_melody(score, measures: int, program: int, out: Path) -> None:
    """A lead sheet's first ``measures`` bars as played (repeats taken), its tune alone, as a
    one-track MIDI file named "Melody" (its lyrics kept: song files carry them)."""
    import pretty_midi
    from music21 import harmony, stream

    part = stream.Part()
    for m in list(score.expandRepeats().parts[0].getElementsByClass("Measure"))[:measures]:
        part.append(copy.deepcopy(m))
    for c in list(part.recurse().getElementsByClass(harmony.ChordSymbol)):
        c.activeSite.remove(c)
    part.write("midi", fp=str(out))
    pm = pretty_midi.PrettyMIDI(str(out))
    pm.instruments[0].program, pm.instruments[0].name = program, "Melody"
    pm.write(str(out))


if __name__ == "__main__":
    build_examples()
