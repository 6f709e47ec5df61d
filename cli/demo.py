"""``idflow demo``: the product end to end on real photos, in one command.

Pulls the models, starts the dev stack unless one runs already (or only the
worker pools, when a server runs without them), runs one verification per
outcome on the registry sample photos, prints a table with timings, and
stops whatever it started.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

from devstack import stack as devstack
from devstack.samples import DEMO_CLAIMS, SamplePair, sample_pairs
from mdoc import holder
from settings import Settings
from starter.client import VerificationClient


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="run verifications on real photos through the stack (starts it if needed)"
    )
    demo.set_defaults(run=lambda args: asyncio.run(run_demo()))


@dataclass
class Row:
    case: str
    expected: str
    outcome: str
    scores: str
    credential: str
    millis: float

    @property
    def as_expected(self) -> bool:
        return self.outcome == self.expected


async def verify(
    client: VerificationClient, pair: SamplePair, bind_device: bool = False
) -> tuple[Any, float]:
    started = time.perf_counter()
    draft = await client.create(pair.selfie, pair.document, subject_ref="demo")
    options: dict[str, Any] = {}
    if bind_device:  # play the holder's wallet: a device key and its proof over the nonce
        key = holder.new_device_key()
        options = {
            "device": holder.device_binding(key, draft.nonce, client.settings.issuer_id),
            "claims": DEMO_CLAIMS,
        }
    await client.start(draft, **options)
    result = await client.result(draft.verification_id)
    return result, (time.perf_counter() - started) * 1000


def row(case: str, expected: str, result: Any, millis: float) -> Row:
    outcome = " ".join([result.decision.value, *(reason.value for reason in result.reasons)])
    scores = "  ".join(f"{name} {value:.3f}" for name, value in sorted(result.scores.items()))
    credential = (
        f"mDL, {len(result.credential.issuer_signed_b64) * 3 // 4} bytes"
        if result.credential
        else "-"
    )
    return Row(case, expected, outcome, scores or "-", credential, millis)


def print_table(rows: list[Row]) -> None:
    headers = ("case", "expected", "outcome", "scores", "credential", "ms", "check")
    cells = [
        (
            r.case,
            r.expected,
            r.outcome,
            r.scores,
            r.credential,
            f"{r.millis:.0f}",
            "ok" if r.as_expected else "UNEXPECTED",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *cells, strict=True)]
    for line in (headers, tuple("-" * w for w in widths), *cells):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


async def run_demo() -> int:
    settings = Settings.from_env()
    devstack.prepare(settings)
    pairs = sample_pairs()
    started: devstack.DevStack | None = None
    try:
        server_up = await devstack.server_answers(settings)
        if server_up:
            print(f"using the Temporal server at {settings.temporal_address}", flush=True)
        client = await VerificationClient.connect(settings) if server_up else None
        if client is None or not await devstack.pools_polling(client.temporal, settings):
            started = devstack.DevStack(settings)
            what = "worker pools" if server_up else "dev stack (Temporal server + worker pools)"
            print(f"starting the {what}; logs in {started.log_dir} ...", flush=True)
            await started.start(with_server=not server_up)
            client = client or await VerificationClient.connect(settings)
            await asyncio.to_thread(started.wait_ready)
        assert client is not None

        rows = []
        for pair in pairs.values():
            result, millis = await verify(client, pair)
            rows.append(row(pair.name, pair.expected, result, millis))
        same = pairs["same person"]
        result, millis = await verify(client, same, bind_device=True)
        rows.append(row("same person + device key", "approved", result, millis))

        print()
        print_table(rows)
        print()
        browse = f'{devstack.ui_url(settings)} (filter: IdflowDecision = "approved")'
        if started is None:
            print(f"Web UI: {browse}")
        else:
            # The server keeps its history on disk: `idflow dev` shows these runs again.
            print(f"Web UI: run `idflow dev` to browse these verifications at {browse}")
        return 0 if all(r.as_expected for r in rows) else 1
    finally:
        if started is not None:
            print("stopping what the demo started ...", flush=True)
            started.stop()
