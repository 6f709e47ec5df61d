"""Shared test setup. Fixtures live in tests/support/ modules, one per role."""

pytest_plugins = [
    "tests.support.photos",
    "tests.support.models",
    "tests.support.temporal",
    "tests.support.mdoc",
    "tests.support.security",
    "tests.support.api",
]
