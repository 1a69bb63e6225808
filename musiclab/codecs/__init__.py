"""Codecs: MIDI notes <-> token ids."""
