"""Fixtures: photos (to be written)."""
