"""Listening tests: A/B rounds at matched loudness, the SQLite vote store, Bradley-Terry ratings."""
