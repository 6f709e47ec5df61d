"""``python -m starter ...`` is ``idflow ...`` (the dev stack starts its workers this way)."""

from starter.cli import main

main()
