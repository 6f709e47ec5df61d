"""Record the histories of representative verifications for the replay tests.

    .venv/bin/python -m tests.histories.regenerate

Runs each case below on a fresh dev server with real worker processes and
writes ``tests/histories/idv-history-<case>.json``. Payloads are encrypted
with the test-only key in ``payload-keys.txt`` (committed: it protects
nothing but these recordings), so CI can decode them when it replays.
Regenerate after an intended, versioned change to the workflow (and keep the
old files while workflows recorded by the old code may still run).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAYLOAD_KEYS = (HERE / "payload-keys.txt").read_text().strip()

def main() -> None:
    os.environ["IDFLOW_PAYLOAD_KEYS"] = PAYLOAD_KEYS
    from security.keys import new_key

    os.environ.setdefault("IDFLOW_BLOB_KEYS", f"histories-blob:{new_key()}")

    from temporalio.testing import WorkflowEnvironment

    from mdoc import holder
    from models.pull import pull
    from models.samples import fetch_samples
    from settings import Settings
    from starter.devstack import TEMPORAL_BIN
    from starter.replay import fetch_history, save_history
    from starter.samples import DEMO_CLAIMS, sample_pairs
    from tests.support.temporal import (
        LoopThread,
        TemporalServer,
        grey_zone_pins,
        stack_settings,
        start_stack,
    )
    from workflows import search_attributes

    cache = pull(Settings.from_env()).cache_root
    pairs = sample_pairs(fetch_samples())
    loop = LoopThread()
    env = loop.run(
        WorkflowEnvironment.start_local(
            dev_server_existing_path=str(TEMPORAL_BIN), search_attributes=search_attributes.ALL
        )
    )
    home = Path(tempfile.mkdtemp(prefix="idflow-histories-"))
    target = env.client.service_client.config.target_host
    stack = start_stack(TemporalServer(loop, env), stack_settings(home, target, cache))
    client = stack.client
    try:

        async def record(case: str, pair: str, review: Any = None, **start: Any) -> None:
            verification_id = f"history-{case}"
            draft = client.create(pairs[pair].selfie, pairs[pair].document, "history", verification_id)
            if start.pop("bind_device", False):
                key = holder.new_device_key()
                start["device"] = holder.device_binding(key, draft.nonce, stack.settings.issuer_id)
                start["claims"] = DEMO_CLAIMS
            await client.start(draft, **start)
            if review is not None:
                while (await client.progress(verification_id)).stage.value != "awaiting_review":
                    await asyncio.sleep(0.1)
                await client.review(verification_id, *review)
            result = await client.result(verification_id)
            path = save_history(await fetch_history(client.temporal, verification_id), HERE)
            print(f"{path.name}: {result.decision.value} {[r.value for r in result.reasons]}")

        strict = grey_zone_pins(stack.settings)
        stack.run(record("approved", "same person"))
        stack.run(record("face-mismatch", "different people"))
        stack.run(record("no-face", "no face"))
        stack.run(record("corrupt", "corrupt file"))
        stack.run(record("credential", "same person", bind_device=True))
        stack.run(record("review-approved", "same person", ("staff-1", True, "checked"), model_pins=strict))
        stack.run(record("review-expired", "same person", model_pins=strict, review_deadline_seconds=1))
    finally:
        stack.stop()
        loop.run(env.shutdown())
        loop.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
