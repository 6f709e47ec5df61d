"""``idflow codec-server | encryption init|rotate|rewrap | purge | retention``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import os
import sys
from pathlib import Path

from security import keys
from security.config import SecurityConfig
from security.log_policy import configure_logging
from security.staff_tokens import ensure_dev_tokens
from settings import Settings
from store import retention
from store.engine import get_engine
from store.envelope import open_data_keys


def register(subparsers: argparse._SubParsersAction) -> None:
    codec = subparsers.add_parser(
        "codec-server", help="serve /decode for the Temporal Web UI and CLI"
    )
    codec.add_argument("--host", help="bind address (default: IDFLOW_CODEC_HOST or 127.0.0.1)")
    codec.add_argument(
        "--port", type=int, help="port (default: IDFLOW_CODEC_PORT or Web UI port + 1)"
    )
    codec.add_argument(
        "--allow-same-user",
        action="store_true",
        help="serve token-less requests from this OS user's sockets (dev Web UI; loopback only)",
    )
    codec.set_defaults(run=run_codec_server)

    encryption = subparsers.add_parser("encryption", help="payload and blob encryption keys")
    actions = encryption.add_subparsers(dest="encryption_command", required=True, metavar="ACTION")
    actions.add_parser(
        "init", help="create dev key files and codec tokens under IDFLOW_HOME/keys (if missing)"
    ).set_defaults(run=run_init)
    rotate = actions.add_parser(
        "rotate", help="add a new current key to a key file (old keys stay)"
    )
    rotate.add_argument("purpose", choices=keys.PURPOSES)
    rotate.set_defaults(run=run_rotate)
    actions.add_parser(
        "rewrap", help="re-wrap every live data key under the current blob master key"
    ).set_defaults(run=run_rewrap)

    purge = subparsers.add_parser(
        "purge", help="destroy a verification's images and credential now (record and audit stay)"
    )
    purge.add_argument("verification_id")
    purge.add_argument("--reason", default="deletion requested")
    purge.add_argument("--actor", default=getpass.getuser(), help="who asks (default: OS user)")
    purge.set_defaults(run=lambda args: asyncio.run(run_purge(args)))

    keep = subparsers.add_parser(
        "retention", help="keep a verification's personal data N days from now"
    )
    keep.add_argument("verification_id")
    keep.add_argument("--days", type=float, required=True)
    keep.set_defaults(run=run_retention)


def run_codec_server(args: argparse.Namespace) -> int:
    from security.codec_server import run_codec_server as serve

    configure_logging()
    settings = Settings.from_env()
    config = SecurityConfig.from_env(settings)
    config = dataclasses.replace(
        config,
        codec_host=args.host or config.codec_host,
        codec_port=args.port if args.port is not None else config.codec_port,
        codec_same_user=args.allow_same_user or config.codec_same_user,
    )
    try:
        asyncio.run(serve(settings, config))
    except KeyboardInterrupt:
        pass
    return 0


def run_init(_: argparse.Namespace) -> int:
    settings = Settings.from_env()
    for purpose, path in keys.ensure_dev_keys(settings).items():
        print(f"{purpose} keys: {path}")
    tokens = ensure_dev_tokens(settings)
    print(f"codec tokens: {', '.join(sorted(tokens))} in {keys.dev_key_file(settings, 'x').parent}")
    print(
        "dev keys only: in production set IDFLOW_PAYLOAD_KEYS / IDFLOW_BLOB_KEYS (or *_KEY_FILE) "
        "and IDFLOW_CODEC_TOKENS from a secret manager"
    )
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if os.environ.get(f"IDFLOW_{args.purpose.upper()}_KEYS"):
        print(
            f"{args.purpose} keys come from IDFLOW_{args.purpose.upper()}_KEYS: put a new key "
            f"first in that list instead",
            file=sys.stderr,
        )
        return 1
    configured = os.environ.get(f"IDFLOW_{args.purpose.upper()}_KEY_FILE")
    path = Path(configured) if configured else keys.dev_key_file(settings, args.purpose)
    kid = keys.rotate_key_file(path, args.purpose)
    print(
        f"{args.purpose}: new current key {kid} in {path}; older keys kept for reading. "
        f"Restart workers, clients and the codec server to use it."
    )
    return 0


def run_rewrap(_: argparse.Namespace) -> int:
    data_keys = open_data_keys(Settings.from_env())
    moved = data_keys.rewrap()
    print(f"re-wrapped {moved} data keys under master key {data_keys.master.current_id}")
    return 0


async def run_purge(args: argparse.Namespace) -> int:
    from domain.contracts import PurgeRequest, PurgeResult
    from starter.connection import connect
    from workflows.retention import PurgeVerification

    settings = Settings.from_env()
    client = await connect(settings)
    print(f"purging the personal data of {args.verification_id} ...", flush=True)
    result: PurgeResult = await client.execute_workflow(
        PurgeVerification.run,
        PurgeRequest(args.verification_id, args.actor, args.reason),
        id=f"idflow-purge-{args.verification_id}",
        task_queue=settings.cpu_task_queue,
    )
    if result.already_purged:
        print(
            f"{args.verification_id}: already purged earlier; {result.blobs_deleted} files removed"
        )
    else:
        print(
            f"{args.verification_id}: data key destroyed, {result.blobs_deleted} blobs deleted; "
            f"the record, audit trail and history remain"
        )
    return 0


def run_retention(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    engine = get_engine(settings.database_url)
    if not retention.set_retention(engine, args.verification_id, args.days):
        print(f"{args.verification_id}: no personal data kept (unknown or purged)", file=sys.stderr)
        return 1
    print(f"{args.verification_id}: {retention.personal_data_status(engine, args.verification_id)}")
    return 0
