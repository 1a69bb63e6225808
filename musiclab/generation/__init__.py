"""Generation jobs beyond continuation: infill a span, accompany a melody."""
