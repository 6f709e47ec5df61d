"""Record the histories of representative verifications for the replay tests.

    .venv/bin/python -m tests.histories.regenerate [CASE ...]

Runs each case below (or only the ones named) on a fresh dev server with real worker processes and
writes ``tests/histories/idv-history-<case>.json``. Payloads are encrypted
with the test-only key in ``payload-keys.txt`` (committed: it protects
nothing but these recordings), so CI can decode them when it replays.
Regenerate after an intended, versioned change to the workflow (and keep the
old files while workflows recorded by the old code may still run).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PAYLOAD_KEYS = (HERE / "payload-keys.txt").read_text().strip()


def main(only: list[str]) -> None:
    os.environ["IDFLOW_PAYLOAD_KEYS"] = PAYLOAD_KEYS
    from security.keys import new_key

    os.environ.setdefault("IDFLOW_BLOB_KEYS", f"histories-blob:{new_key()}")

    from cli.replay import fetch_history, save_history
    from devstack.faults import corrupted_model_pins, grey_zone_pins, take_issuer_keys_away
    from devstack.samples import DEMO_CLAIMS, sample_pairs
    from devstack.scratch import scratch_stack
    from devstack.stack import free_port
    from mdoc import holder
    from models.lifecycle.samples import fetch_samples
    from security.keys import BLOB, load_key_ring
    from store import webhooks

    pairs = sample_pairs(fetch_samples())
    with scratch_stack("idflow-histories-") as stack:
        client = stack.client

        async def record(
            case: str, pair: str, review: Any = None, before_review: Any = None, **start: Any
        ) -> None:
            if only and case not in only:
                return
            verification_id = f"history-{case}"
            draft = await client.create(
                pairs[pair].selfie, pairs[pair].document, "history", verification_id
            )
            if start.pop("bind_device", False):
                key = holder.new_device_key()
                start["device"] = holder.device_binding(key, draft.nonce, stack.settings.issuer_id)
                start["claims"] = DEMO_CLAIMS
            await client.start(draft, **start)
            if review is not None:
                while (await client.progress(verification_id)).stage.value != "awaiting_review":
                    await asyncio.sleep(0.1)
                if before_review is not None:
                    before_review()
                await stack.review(verification_id, *review)
            result = await client.result(verification_id)
            path = save_history(await fetch_history(client.temporal, verification_id), HERE)
            print(f"{path.name}: {result.decision.value} {[r.value for r in result.reasons]}")

        strict = grey_zone_pins(stack.settings)
        stack.run(record("approved", "same person"))
        stack.run(record("face-mismatch", "different people"))
        stack.run(record("no-face", "no face"))
        stack.run(record("corrupt", "corrupt file"))
        stack.run(record("credential", "same person", bind_device=True))
        stack.run(
            record(
                "review-approved", "same person", ("staff-42", True, "checked"), model_pins=strict
            )
        )
        stack.run(
            record("review-expired", "same person", model_pins=strict, review_deadline_seconds=1)
        )
        stack.run(
            record("model-unavailable", "same person", model_pins={"embed": "no-such-model@9.9.9"})
        )
        with corrupted_model_pins(stack.settings, "embed") as broken:  # the face match gives up
            stack.run(
                record(
                    "processing-failed",
                    "same person",
                    ("staff-9", False, "no match"),
                    model_pins=broken,
                    processing_attempts=2,
                )
            )
        # Binding gives up while the issuer's key store is away; approved again once it is back.
        put_back = take_issuer_keys_away(stack.settings)
        stack.run(
            record(
                "binding-retried",
                "same person",
                ("staff-9", True, "keys restored"),
                before_review=put_back,
                bind_device=True,
                processing_attempts=2,
            )
        )
        # Announced to a registered webhook (nobody listens: its delivery keeps retrying).
        endpoint, _ = webhooks.add_endpoint(
            client.engine,
            load_key_ring(stack.settings, BLOB),
            "histories",
            f"http://127.0.0.1:{free_port()}/hook",
        )
        stack.run(record("webhook", "same person"))
        webhooks.delete_endpoint(client.engine, "histories", endpoint.webhook_id)


if __name__ == "__main__":
    main(sys.argv[1:])
