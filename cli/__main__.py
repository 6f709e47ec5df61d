"""``python -m cli ...`` is ``idflow ...`` (the dev stack starts its workers this way)."""

from cli.main import main

main()
