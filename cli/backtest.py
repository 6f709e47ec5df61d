"""``idflow models backtest``: re-score retained verifications with candidate versions.

Starts the ``Backtest`` workflow on the CPU pool, shows its progress, and
prints the report of decision changes (purged verifications skipped and
counted). The report is also kept in the database (``store.backtests``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import uuid

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import FailureError

from domain.backtest import format_report
from domain.contracts import BacktestReport, BacktestRequest
from domain.reasons import Decision, ReasonCode
from models.lifecycle.compare import parse_window
from models.lifecycle.registry import InvalidRegistration, resolve
from settings import Settings
from starter.connection import connect
from store.engine import get_engine
from workflows.backtest import MAX_CASES, Backtest

POLL_SECONDS = 1.0


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "backtest",
        help="re-score retained verifications with candidate versions; report decision changes",
    )
    parser.add_argument(
        "--candidate",
        action="append",
        required=True,
        metavar="TASK=NAME@VERSION",
        help="the version that re-scores a task (repeatable), e.g. embed=my-embed@2",
    )
    parser.add_argument(
        "--reasons",
        default="",
        help="only verifications with any of these reason codes (comma-separated), "
        "e.g. FACE_MATCH_UNCERTAIN",
    )
    parser.add_argument(
        "--decision", choices=[d.value for d in Decision], help="only those decided so"
    )
    parser.add_argument("--since", default="7d", help="decided within: 30m, 24h, 7d (default 7d)")
    parser.add_argument("--limit", type=int, default=500, help=f"at most (<= {MAX_CASES})")
    parser.add_argument("--concurrency", type=int, default=4, help="re-scores at once")
    parser.add_argument("--id", dest="backtest_id", help="backtest id (default: random)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def run_backtest(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    request = _request(args, settings)
    try:
        report = asyncio.run(_run(request, settings))
    except WorkflowFailureError as error:
        cause = error.cause.message if isinstance(error.cause, FailureError) else error
        print(
            f"idflow models backtest: backtest {request.backtest_id} failed: {cause}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        print(format_report(report))
    return 0


def _request(args: argparse.Namespace, settings: Settings) -> BacktestRequest:
    """The workflow's input, with every argument checked first (one clear line each)."""
    engine = get_engine(settings.database_url)
    candidate = {}
    for item in args.candidate:
        task, _, ref = item.partition("=")
        if "@" not in ref:
            raise InvalidRegistration(f"--candidate takes TASK=NAME@VERSION, not {item!r}")
        candidate[task] = resolve(engine, task, ref).ref  # refuses unknown tasks and versions
    reasons = [r.strip() for r in args.reasons.split(",") if r.strip()]
    unknown = sorted(set(reasons) - {r.value for r in ReasonCode})
    if unknown:
        raise InvalidRegistration(f"unknown reason codes {unknown}")
    try:
        window = parse_window(args.since)
    except ValueError as error:
        raise InvalidRegistration(str(error)) from None
    if not 1 <= args.limit <= MAX_CASES or args.concurrency < 1:
        raise InvalidRegistration(f"--limit takes 1..{MAX_CASES}, --concurrency at least 1")
    return BacktestRequest(
        backtest_id=args.backtest_id or uuid.uuid4().hex[:12],
        candidate=candidate,
        reasons=reasons,
        decision=args.decision,
        since_seconds=int(window.total_seconds()),
        limit=args.limit,
        concurrency=args.concurrency,
        gpu_task_queue=settings.gpu_task_queue,
    )


async def _run(request: BacktestRequest, settings: Settings) -> BacktestReport:
    client = await connect(settings)
    handle = await client.start_workflow(
        Backtest.run,
        request,
        id=f"backtest-{request.backtest_id}",
        task_queue=settings.cpu_task_queue,
        static_summary="Backtest of candidate model versions",
    )
    print(f"backtest {request.backtest_id} started", file=sys.stderr, flush=True)
    result = asyncio.ensure_future(handle.result())
    shown = None
    while not result.done():
        await asyncio.wait({result}, timeout=POLL_SECONDS)
        if not result.done():
            done, selected = await handle.query(Backtest.progress)
            if selected and (done, selected) != shown:
                print(f"re-scored {done}/{selected}", file=sys.stderr, flush=True)
                shown = (done, selected)
    return result.result()
