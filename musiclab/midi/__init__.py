"""MIDI in and out: safe loading with limits, seed excerpts, audio rendering, piano-roll figures, bundled examples."""
