"""Bundled example seeds, made from music21's corpus (public-domain scores).

The files in ``musiclab/examples/`` are committed so the app starts instantly with no
upload; ``python -m musiclab.midi.examples`` rebuilds them from music21's bundled corpus.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

# file stem -> (music21 corpus path, title shown in the app, measures to keep)
SOURCES = {
    "joplin_maple_leaf_rag": ("joplin/maple_leaf_rag.mxl", "Joplin — Maple Leaf Rag (piano)", 16),
    "bach_chorale_bwv66_6": ("bach/bwv66.6.mxl", "Bach — Chorale BWV 66.6 (4 voices)", 12),
    "chopin_mazurka_6_2": ("chopin/mazurka06-2.krn", "Chopin — Mazurka op. 6 no. 2 (piano)", 24),
    "mozart_k155_1": ("mozart/k155/movement1.mxl", "Mozart — Quartet K. 155, I (4 strings)", 16),
}


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
        score = corpus.parse(src).measures(1, measures)
        out = EXAMPLES_DIR / f"{stem}.mid"
        score.write("midi", fp=str(out))
        print(f"{title}: {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    build_examples()
