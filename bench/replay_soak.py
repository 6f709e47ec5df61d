"""Replay soak: every verification path at once, each history replayed as it closes (not a test).

    .venv/bin/python bench/replay_soak.py [--rounds 20] [--replays 2] [--snapshots]
                                          [--db-lock SECONDS] [--chaos] [--out DIR]

Hunts nondeterminism that only some timings produce. Starts a dev server and
both worker pools as processes (as the tests do), then each round runs at once:
approved, face mismatch, no face, corrupt file, bound credential, review
approved / declined / expired, purge after the decision, an unknown model pin,
a face match that gives up on a corrupted model file; then a credential binding
that gives up while the issuer's key store is gone and is approved again. Each
history is fetched right after its run closes and replayed with
``cli.replay`` (``--replays`` times); ``--snapshots`` also replays
histories fetched while the runs are still going.

Stress that moves the timing: ``--db-lock S`` holds the SQLite write lock for
S seconds every 3 s (slow local activities, workflow-task heartbeats past 8 s);
``--chaos`` SIGSTOPs the CPU worker past the 10 s workflow task timeout and
SIGKILLs it now and then (task timeouts, runs replayed from scratch by a new
worker). Prints replays and failures per path; failing histories go to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from security.keys import new_key

os.environ.setdefault("IDFLOW_PAYLOAD_KEYS", f"soak:{new_key()}")
os.environ.setdefault("IDFLOW_BLOB_KEYS", f"soak-blob:{new_key()}")

from temporalio.client import WorkflowHistory

from cli.replay import ReplayFailed, fetch_history, replay, save_history
from devstack.faults import corrupted_model_pins, grey_zone_pins, take_issuer_keys_away
from devstack.samples import DEMO_CLAIMS, sample_pairs
from devstack.scratch import PoolStack, scratch_stack
from domain.contracts import PurgeRequest
from domain.enums import ModelTask
from mdoc import holder
from models.lifecycle.samples import fetch_samples
from workflows.retention import PurgeVerification


class Soak:
    def __init__(self, stack: PoolStack, replays: int, snapshots: bool, out: Path) -> None:
        self.stack, self.replays, self.snapshots, self.out = stack, replays, snapshots, out
        self.pairs = sample_pairs(fetch_samples())
        self.counts: dict[str, list[int]] = collections.defaultdict(
            lambda: [0, 0]
        )  # replays, failures
        self.errors: list[str] = []

    async def verify(
        self,
        case: str,
        pair: str,
        review: tuple[str, bool, str] | None = None,
        before_review: Callable[[], Any] | None = None,
        purge: bool = False,
        bind_device: bool = False,
        **start: Any,
    ) -> None:
        client = self.stack.client
        vid = f"{case}-{uuid.uuid4().hex[:8]}"
        draft = await client.create(self.pairs[pair].selfie, self.pairs[pair].document, "soak", vid)
        if bind_device:
            binding = holder.device_binding(
                holder.new_device_key(), draft.nonce, self.stack.settings.issuer_id
            )
            start |= {"device": binding, "claims": DEMO_CLAIMS}
        await client.start(draft, **start)
        snapshots: list[WorkflowHistory] = []
        snapper = asyncio.create_task(self._snapshot(vid, snapshots)) if self.snapshots else None
        try:
            if review is not None:
                while (await client.progress(vid)).stage.value != "awaiting_review":
                    await asyncio.sleep(0.05)
                if before_review is not None:
                    before_review()
                await self.stack.review(vid, *review)
            await client.result(vid)
            if purge:
                await client.temporal.execute_workflow(
                    PurgeVerification.run,
                    PurgeRequest(vid, "soak", "asked"),
                    id=f"idflow-purge-{vid}",
                    task_queue=self.stack.settings.cpu_task_queue,
                )
        except Exception as error:
            self.errors.append(f"{case} {vid}: {type(error).__name__}: {error}")
            return
        finally:
            if snapper is not None:
                snapper.cancel()
        for snapshot in snapshots:
            await self._replay(f"{case} (running)", snapshot)
        history = await fetch_history(client.temporal, vid)
        for _ in range(self.replays):
            await self._replay(case, history)

    async def _snapshot(self, vid: str, into: list[WorkflowHistory]) -> None:
        while True:
            await asyncio.sleep(random.uniform(0.0, 0.3))
            into.append(await fetch_history(self.stack.client.temporal, vid))

    async def _replay(self, case: str, history: WorkflowHistory) -> None:
        self.counts[case][0] += 1
        try:
            await replay(history, self.stack.settings)
        except ReplayFailed as failed:
            self.counts[case][1] += 1
            print(
                f"REPLAY FAILED {case}: {save_history(history, self.out)}\n  {failed}", flush=True
            )

    async def round(self, strict: dict[str, str], broken: dict[str, str], approve: bool) -> None:
        await asyncio.gather(
            self.verify("approved", "same person"),
            self.verify("face-mismatch", "different people"),
            self.verify("no-face", "no face"),
            self.verify("corrupt", "corrupt file"),
            self.verify("credential", "same person", bind_device=True),
            self.verify(
                "review-approved", "same person", ("staff-42", True, "ok"), model_pins=strict
            ),
            self.verify(
                "review-declined", "same person", ("staff-43", False, "no"), model_pins=strict
            ),
            self.verify(
                "review-expired", "same person", model_pins=strict, review_deadline_seconds=1
            ),
            self.verify("purged", "same person", purge=True),
            self.verify(
                "model-unavailable",
                "same person",
                model_pins={ModelTask.EMBED: "no-such-model@9.9.9"},
            ),
            self.verify(
                "processing-failed",
                "same person",
                ("soak", approve, "x"),
                model_pins=broken,
                processing_attempts=2,
            ),
        )
        # Alone: with the key store gone, no other binding in the round could sign either.
        put_back = take_issuer_keys_away(self.stack.settings)
        await self.verify(
            "binding-retried",
            "same person",
            ("soak", True, "keys back"),
            before_review=put_back,
            bind_device=True,
            processing_attempts=2,
        )


def hold_db_lock(database: Path, seconds: float, stop: threading.Event) -> None:
    while not stop.wait(3):
        connection = sqlite3.connect(database, timeout=60)
        connection.execute("BEGIN IMMEDIATE")
        stop.wait(seconds)
        connection.rollback()
        connection.close()


def chaos(stack: PoolStack, stop: threading.Event) -> None:
    for turn in range(1, sys.maxsize):
        if stop.wait(random.uniform(2, 6)):
            return
        if turn % 4 == 0:
            print("chaos: SIGKILL the cpu worker", flush=True)
            stack.replace_worker("cpu", kill=True)
            continue
        process = stack.workers["cpu"].process
        assert process is not None
        process.send_signal(signal.SIGSTOP)
        stop.wait(random.uniform(10.5, 13))  # past the 10 s workflow task timeout
        process.send_signal(signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--replays", type=int, default=2, help="replays of each finished history")
    parser.add_argument(
        "--snapshots", action="store_true", help="also replay histories of running runs"
    )
    parser.add_argument("--db-lock", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--chaos", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "idflow-soak-failed"
    )
    args = parser.parse_args()

    started = time.monotonic()
    with scratch_stack("idflow-soak-") as stack:
        soak = Soak(stack, args.replays, args.snapshots, args.out)
        stop = threading.Event()
        if args.db_lock:
            database = stack.settings.home / "idflow.db"
            threading.Thread(
                target=hold_db_lock, args=(database, args.db_lock, stop), daemon=True
            ).start()
        if args.chaos:
            threading.Thread(target=chaos, args=(stack, stop), daemon=True).start()
        try:
            strict = grey_zone_pins(stack.settings)
            with corrupted_model_pins(stack.settings, ModelTask.EMBED) as broken:
                for number in range(args.rounds):
                    stack.run(soak.round(strict, broken, approve=bool(number % 2)), timeout=900)
                    replays = sum(count for count, _ in soak.counts.values())
                    failures = sum(failed for _, failed in soak.counts.values())
                    print(
                        f"round {number + 1}/{args.rounds}: {time.monotonic() - started:.0f} s, "
                        f"{replays} replays, {failures} failed, "
                        f"{len(soak.errors)} runs not finished",
                        flush=True,
                    )
        finally:
            stop.set()
    print(f"\n{'path':<30}{'replays':>8}{'failed':>8}")
    for case, (count, failed) in sorted(soak.counts.items()):
        print(f"{case:<30}{count:>8}{failed:>8}")
    for error in soak.errors:
        print(f"not finished: {error}")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
