"""Fixtures: models (to be written)."""
