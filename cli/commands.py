"""``idflow dev | worker | verify | status | review | replay`` (``demo`` is in cli.demo)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError

from cli.main import clear_errors
from cli.replay import ReplayFailed, fetch_history, load_history, replay, save_history
from devstack import stack as devstack
from devstack.processes import POOLS
from domain.contracts import VerificationResult
from mdoc.holder import device_binding_from_pem
from security.keys import KeyConfigError
from security.log_policy import configure_logging
from security.staff_tokens import staff_credentials
from settings import Settings
from starter.client import InvalidVerificationId, VerificationClient, VerificationIdInUse
from store import audit, verifications
from store.retention import personal_data_status
from workflows.identity_verification import workflow_id


def register(subparsers: argparse._SubParsersAction) -> None:
    dev = subparsers.add_parser(
        "dev", help="run the dev stack: Temporal server + UI + both worker pools"
    )
    dev.add_argument(
        "--ready-file",
        type=Path,
        help="create this file once the server answers and both pools poll",
    )
    dev.set_defaults(run=lambda args: asyncio.run(run_dev(args.ready_file)))

    worker = subparsers.add_parser("worker", help="run one worker pool until SIGTERM/Ctrl-C")
    worker.add_argument("--pool", choices=POOLS, required=True)
    worker.add_argument(
        "--ready-file",
        type=Path,
        help="create this file once the pool polls all its queues (for process managers)",
    )
    worker.set_defaults(run=clear_errors(ValueError)(run_worker))

    verify = subparsers.add_parser("verify", help="verify a selfie against a document portrait")
    verify.add_argument("--selfie", type=Path, required=True)
    verify.add_argument("--document", type=Path, required=True)
    verify.add_argument("--device-key", type=Path, help="holder's device private key (PEM)")
    verify.add_argument("--claims", type=Path, help="credential claims (JSON file)")
    verify.add_argument("--id", dest="verification_id", help="verification id (default: random)")
    verify.add_argument("--subject", default="cli", help="opaque subject reference")
    verify.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="TASK=REF",
        help="pin a model: alias or name@version (repeatable)",
    )
    verify.add_argument("--no-wait", action="store_true", help="start and print the id only")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(
        run=clear_errors(VerificationIdInUse, InvalidVerificationId)(
            lambda args: asyncio.run(run_verify(args))
        )
    )

    status = subparsers.add_parser(
        "status", help="stage, decision and audit trail of a verification"
    )
    status.add_argument("verification_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=lambda args: asyncio.run(run_status(args)))

    review = subparsers.add_parser("review", help="decide a verification that awaits review")
    review.add_argument("verification_id")
    decision = review.add_mutually_exclusive_group(required=True)
    decision.add_argument("--approve", action="store_true")
    decision.add_argument("--decline", action="store_true")
    review.add_argument(
        "--staff",
        help="your staff id (default: IDFLOW_STAFF_ID; dev stack: dev-staff); "
        "your token comes from IDFLOW_STAFF_TOKEN or, on a dev stack, its token file",
    )
    review.add_argument("--reason", required=True)
    review.set_defaults(run=lambda args: asyncio.run(run_review(args)))

    replay_parser = subparsers.add_parser(
        "replay", help="replay a verification's history with the current workflow code"
    )
    replay_parser.add_argument("source", help="verification id, or a history .json file")
    replay_parser.add_argument(
        "--save", type=Path, metavar="DIR", help="also save the history here"
    )
    replay_parser.set_defaults(run=lambda args: asyncio.run(run_replay(args)))


# --- dev and worker -------------------------------------------------------------


async def run_dev(ready_file: Path | None = None) -> int:
    settings = Settings.from_env()
    if await devstack.server_answers(settings):
        print(
            f"a server already answers at {settings.temporal_address}; stop it first "
            f"or set IDFLOW_TEMPORAL_ADDRESS",
            file=sys.stderr,
        )
        return 1
    devstack.prepare(settings)
    stack = devstack.DevStack(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    print(
        f"starting the Temporal dev server at {settings.temporal_address} "
        f"(state: {settings.dev_server_db}) ...",
        flush=True,
    )
    try:
        await stack.start()
        print("loading models in the worker pools ...", flush=True)
        await asyncio.to_thread(stack.wait_ready)
        print(f"Web UI:  {devstack.ui_url(settings)}")
        print(f"codec:   {devstack.codec_server.describe_dev(settings)}")
        print(f"workers: cpu on {settings.cpu_task_queue}, gpu on {settings.gpu_task_queue}")
        print(f"logs:    {stack.log_dir}")
        print("Ctrl-C stops everything.", flush=True)
        if ready_file is not None:
            ready_file.write_text(f"{os.getpid()}\n")
        while not stopping.is_set():
            died = stack.check()
            if died:
                print(died, file=sys.stderr)
                return 1
            try:
                await asyncio.wait_for(stopping.wait(), 1.0)
            except TimeoutError:
                pass
        return 0
    finally:
        print("stopping workers, then the server ...", flush=True)
        stack.stop()
        print("stopped.", flush=True)


def run_worker(args: argparse.Namespace) -> int:
    from workers.pools import run_pool

    configure_logging()  # the no-personal-data log policy
    asyncio.run(run_pool(args.pool, Settings.from_env(), args.ready_file))
    return 0


# --- verify, status, review --------------------------------------------------------


async def run_verify(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    client = await VerificationClient.connect(settings)
    pins = dict(pin.split("=", 1) for pin in args.pin)
    claims = json.loads(args.claims.read_text()) if args.claims else None
    started = time.perf_counter()
    draft = await client.create(
        args.selfie.read_bytes(), args.document.read_bytes(), args.subject, args.verification_id
    )
    device = None
    if args.device_key:  # play the holder's wallet: sign the proof over this verification's nonce
        device = device_binding_from_pem(
            args.device_key.read_bytes(), draft.nonce, settings.issuer_id
        )
    await client.start(draft, device=device, claims=claims, model_pins=pins)
    if args.no_wait:
        print(draft.verification_id)
        return 0
    result = await client.result(draft.verification_id)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps(dataclasses.asdict(result) | {"seconds": round(elapsed, 3)}, indent=2))
    else:
        print(format_result(result, settings))
        print(f"{'took':<13}{elapsed * 1000:.0f} ms")
    return 0


def format_result(result: VerificationResult, settings: Settings) -> str:
    scores = "  ".join(f"{name} {value:.3f}" for name, value in sorted(result.scores.items()))
    models = ", ".join(f"{task} {ref}" for task, ref in sorted(result.model_versions.items()))
    lines = [
        ("verification", result.verification_id),
        ("decision", result.decision.value),
        ("reasons", ", ".join(reason.value for reason in result.reasons) or "-"),
        *(("detail", f"{reason}: {detail}") for reason, detail in sorted(result.details.items())),
        ("scores", scores or "-"),
        ("models", models or "-"),
    ]
    if result.canary:
        lines.append(("canary", ", ".join(result.canary)))
    if result.shadow_scores:
        shadow = "  ".join(f"{n} {v:.3f}" for n, v in sorted(result.shadow_scores.items()))
        lines.append(("shadow", f"{shadow}  (decided nothing)"))
    if result.reviewer:
        lines.append(("reviewer", result.reviewer))
    if result.credential:
        lines.append(
            (
                "credential",
                f"{result.credential.doc_type}, valid until {result.credential.valid_until}",
            )
        )
    lines.append(("ui", devstack.ui_url(settings, workflow_id(result.verification_id))))
    return "\n".join(f"{name:<13}{value}" for name, value in lines)


async def run_status(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    client = await VerificationClient.connect(settings)
    handle = client.handle(args.verification_id)
    try:
        description = await handle.describe()
    except RPCError as error:
        print(
            f"no verification {args.verification_id} on the server ({error.message})",
            file=sys.stderr,
        )
        return 1
    report: dict[str, Any] = {"workflow_status": description.status.name}
    if description.status is WorkflowExecutionStatus.COMPLETED:
        report["result"] = dataclasses.asdict(await handle.result())
    elif description.status is WorkflowExecutionStatus.RUNNING:
        report["progress"] = dataclasses.asdict(await client.progress(args.verification_id))
    row = verifications.get(client.engine, args.verification_id)
    report["record"] = row.model_dump(mode="json") if row else None
    report["personal_data"] = personal_data_status(client.engine, args.verification_id)
    report["audit"] = [
        {"at": entry.at.isoformat(), "event": entry.event, "actor": entry.actor} | entry.details
        for entry in audit.trail(client.engine, args.verification_id)
    ]
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(f"{'workflow':<13}{description.status.name.lower()}")
    details = report.get("result") or report.get("progress") or {}
    for key in (
        "stage",
        "decision",
        "reasons",
        "scores",
        "model_versions",
        "canary",
        "shadow_scores",
        "reviewer",
        "review_deadline",
        "details",
    ):
        if details.get(key) not in (None, [], {}):
            print(f"{key:<13}{plain(details[key])}")
    if report["personal_data"]:
        print(f"{'images':<13}{report['personal_data']}")
    print(f"{'ui':<13}{devstack.ui_url(settings, description.id)}")
    for entry in report["audit"]:
        print(f"  {entry['at']}  {entry['event']:<18} by {entry['actor']}")
    return 0


def plain(value: Any) -> str:
    """A value as a person reads it: enum values, lists joined, scores to three places."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return ", ".join(plain(item) for item in value)
    if isinstance(value, dict):
        return "  ".join(f"{plain(key)} {plain(item)}" for key, item in sorted(value.items()))
    return str(value)


async def run_review(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        staff_id, token = staff_credentials(settings, args.staff)
    except KeyConfigError as error:
        print(f"idflow review: {error}", file=sys.stderr)
        return 1
    client = await VerificationClient.connect(settings)
    try:
        decision = await client.review(
            args.verification_id, args.approve, args.reason, staff_id, token
        )
    except WorkflowUpdateFailedError as error:
        print(f"review refused: {error.cause}", file=sys.stderr)
        return 1
    print(f"{args.verification_id}: {decision.value} by {staff_id}")
    return 0


# --- replay --------------------------------------------------------------------


async def run_replay(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    source = Path(args.source)
    if source.suffix == ".json" and source.is_file():
        history = load_history(source)
    else:
        client = await VerificationClient.connect(settings)
        history = await fetch_history(client.temporal, args.source)
    if args.save:
        print(f"saved {save_history(history, args.save)}")
    try:
        await replay(history, settings)
    except ReplayFailed as failed:
        print(f"NON-DETERMINISTIC: {failed}", file=sys.stderr)
        return 1
    print(f"{history.workflow_id}: replays deterministically with the current code")
    return 0
