"""Fixtures: temporal (to be written)."""
