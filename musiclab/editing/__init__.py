"""Editing a piece with the flagship: infill a span, accompany a melody (the constrained sampling loop they share)."""
