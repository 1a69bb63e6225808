"""Session-state keys that more than one module reads or writes (widget keys stay beside their widgets)."""

TAKES = "takes"  # list of take dicts (app/common.new_take), oldest first: Compose and Edit add to it
SEED_BYTES, SEED_LABEL = "seed_bytes", "seed_label"  # the "Current seed" (a take to continue from)
SEED_SECONDS, SEED_FOR = "seed_seconds", "seed_for"  # the seed-length slider and whose default it holds
JOB, JOB_ERROR, JOB_NOTE, JOB_TOAST = "job", "job_error", "job_note", "job_toast"  # Compose's generation
JOB_PREVIEW = "job_preview_fig"  # (drawn at, the preview drawn, figure) of the live piano roll
AB_ROUND, AB_REVEALED, AB_MSG, AB_LISTENER, AB_GO = "ab_round", "ab_revealed", "ab_msg", "ab_listener", "ab_go"
EDIT_SPAN, EDIT_MADE, EDIT_ERROR = "edit_span", "edit_made", "edit_error"  # Edit: shaded span, new takes, error
EDIT_ASKED = "edit_asked"  # Edit: the request (model, piece, job, settings) EDIT_ERROR belongs to
GO_COMPOSE = "go_compose"  # Edit: "Continue from this take" was pressed; the page moves to Compose
EDIT_CHORDS, EDIT_CHORDS_BAR = "edit_chords", "edit_chords_bar"  # Edit: the chord box, the bar it starts at
