"""The ``idflow`` command line.

Each role registers its own subcommands: a module listed in COMMAND_MODULES
has ``register(subparsers)`` which adds parsers whose defaults carry
``run=<function(args) -> int>``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Callable

from starter.connection import ServerUnreachable

COMMAND_MODULES: list[str] = [
    "cli.models",
    "cli.commands",
    "cli.credentials",
    "cli.privacy",
    "cli.demo",
    "cli.api",
]

Command = Callable[[argparse.Namespace], int]


def clear_errors(
    *errors: type[Exception], action: str | None = None
) -> Callable[[Command], Command]:
    """Print the typed error's message (it names the file, hash or limit) instead of a traceback.

    The line reads ``idflow <command>[ <action>]: <error>`` and the command returns 1;
    ``action`` names the attribute that holds the subcommand (e.g. ``"models_command"``).
    """

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def run(args: argparse.Namespace) -> int:
            try:
                return command(args)
            except errors as error:
                name = f"{args.command} {getattr(args, action)}" if action else args.command
                print(f"idflow {name}: {error}", file=sys.stderr)
                return 1

        return run

    return decorate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idflow", description="Durable identity verification.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ServerUnreachable as error:  # every command that needs the server: one line
        print(f"idflow {args.command}: {error}", file=sys.stderr)
        return 1


def main() -> None:
    # Whatever idflow (and the Temporal dev server it starts) writes under
    # $IDFLOW_HOME: keys, databases, blobs, logs, models is its owner's only.
    os.umask(0o077)
    try:
        rc = run()
    except KeyboardInterrupt:
        rc = 130
    # Short-lived Temporal clients can crash at interpreter exit (sdk-python #300):
    # flush what we printed and leave without running interpreter teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
