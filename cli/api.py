"""``idflow api`` (serve the HTTP API) and ``idflow api-clients add | list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from settings import Settings
from store import api_clients
from store.engine import get_engine

SCOPES = ("verifications:write", "verifications:read", "reviews", "webhooks")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("api", help="serve the HTTP API (OpenAPI at /docs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--openapi", type=Path, metavar="FILE", help="write the OpenAPI document and exit"
    )
    serve.set_defaults(run=run_api)

    clients = subparsers.add_parser("api-clients", help="API clients and their keys")
    actions = clients.add_subparsers(dest="clients_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a client; prints its API key once")
    add.add_argument("name")
    add.add_argument(
        "--scopes", nargs="+", choices=SCOPES, default=["verifications:write", "verifications:read"]
    )
    add.add_argument(
        "--rate", type=int, default=api_clients.DEFAULT_RATE_PER_MINUTE, help="requests a minute"
    )
    add.set_defaults(run=run_add_client)
    listing = actions.add_parser("list", help="names, scopes and limits (never keys)")
    listing.set_defaults(run=run_list_clients)


def run_api(args: argparse.Namespace) -> int:
    from api.app import create_app, openapi_document

    settings = Settings.from_env()
    if args.openapi:
        args.openapi.write_text(openapi_document(settings))
        print(f"wrote {args.openapi}")
        return 0
    import uvicorn

    print(f"idflow API on http://{args.host}:{args.port} (OpenAPI: /openapi.json, docs: /docs)")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return 0


def run_add_client(args: argparse.Namespace) -> int:
    engine = get_engine(Settings.from_env().database_url)
    if args.rate < 1:
        print("idflow api-clients add: --rate must be at least 1", file=sys.stderr)
        return 1
    try:
        record, api_key = api_clients.add_client(engine, args.name, args.scopes, args.rate)
    except api_clients.ClientNameTaken as error:
        print(f"idflow api-clients add: {error}", file=sys.stderr)
        return 1
    print(f"client  {record.name} ({' '.join(record.scopes)}; {record.rate_per_minute}/min)")
    print(f"api key {api_key}")
    print("the key is shown once: store it now (idflow keeps only its sha256)")
    return 0


def run_list_clients(_: argparse.Namespace) -> int:
    for record in api_clients.list_clients(get_engine(Settings.from_env().database_url)):
        print(f"{record.name:<24}{' '.join(record.scopes):<48}{record.rate_per_minute}/min")
    return 0
