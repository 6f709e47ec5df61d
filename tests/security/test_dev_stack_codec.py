"""``idflow dev`` starts the codec server and points its Web UI at it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from security.keys import PAYLOAD, parse_inline
from security.payload_codec import Binding, PayloadEncryptionCodec
from settings import Settings

from ..support.output import ProcessOutput, wait_until_ready
from ..support.temporal import grey_zone_pins

pytestmark = [pytest.mark.temporal, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _http(
    url: str, body: bytes | None = None, method: str = "POST", **headers: str
) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@dataclass
class DevStackRun:
    env: dict[str, str]
    output: list[str]
    home: Path
    codec_url: str
    ui: str


def _idflow(run: DevStackRun, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        check=False,  # callers assert on the exit code and output
        env=run.env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def dev_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, test_keys: dict[str, str]
) -> Iterator[DevStackRun]:
    """``idflow dev`` on a private data dir and free ports, stopped with Ctrl-C afterwards."""
    home = tmp_path_factory.mktemp("dev") / "home"
    ui_port, codec_port = _free_port(), _free_port()
    env = os.environ | {
        "IDFLOW_HOME": str(home),
        "IDFLOW_MODEL_CACHE": str(model_cache),
        "IDFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{_free_port()}",
        "IDFLOW_TEMPORAL_UI_PORT": str(ui_port),
        "IDFLOW_CODEC_PORT": str(codec_port),
    }
    ready_file = home.parent / f"{home.name}-dev.ready"
    dev = subprocess.Popen(
        [sys.executable, "-m", "cli", "dev", "--ready-file", str(ready_file)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    printed = ProcessOutput(dev)
    try:
        # Ready when the stack says so through its ready file; then read what it printed.
        wait_until_ready(dev, ready_file)
        output = printed.wait_for("Ctrl-C stops everything", timeout_s=30)
        yield DevStackRun(
            env, output, home, f"http://127.0.0.1:{codec_port}", f"http://127.0.0.1:{ui_port}"
        )
    finally:
        dev.send_signal(signal.SIGINT)
        printed.rest(timeout_s=90)
    with pytest.raises(OSError):  # the codec server stopped with the stack
        socket.create_connection(("127.0.0.1", codec_port), 1)


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:  # the process ended meanwhile
        return False
    return True


def test_dev_stack_serves_the_codec_to_its_web_ui(
    dev_stack: DevStackRun, test_keys: dict[str, str]
) -> None:
    codec_url, ui = dev_stack.codec_url, dev_stack.ui
    tokens = json.loads((dev_stack.home / "keys" / "codec-tokens.json").read_text())
    assert any(line.startswith(f"codec:   {codec_url}") for line in dev_stack.output)
    assert not any(entry["token"] in "".join(dev_stack.output) for entry in tokens.values())

    # No staff token where other local users can read it: the UI's unauthenticated
    # settings, any process's argv, the stack's logs.
    _, _, body = _http(f"{ui}/api/v1/settings", method="GET")
    assert json.loads(body)["Codec"]["Endpoint"] == codec_url
    secrets = [entry["token"].encode() for entry in tokens.values()]
    argv = [path.read_bytes() for path in Path("/proc").glob("[0-9]*/cmdline") if _readable(path)]
    assert any(f"--ui-codec-endpoint={codec_url}".encode() in args for args in argv)
    assert not [args for args in argv for secret in secrets if secret in args]
    logs = [path.read_bytes() for path in (dev_stack.home / "logs").iterdir()]
    assert logs and not [log for log in logs for secret in secrets if secret in log]

    codec = PayloadEncryptionCodec(
        parse_inline(PAYLOAD, test_keys["IDFLOW_PAYLOAD_KEYS"], "test"), Binding.ANY_WORKFLOW
    )
    sealed = json_format.MessageToJson(
        Payloads(payloads=[codec.encrypt(Payload(data=b'"x"'))])
    ).encode()
    assert (
        _http(f"{codec_url}/decode", sealed, Authorization="Bearer wrong-0123456789abcdefgh")[0]
        == 401
    )
    status, _, body = _http(
        f"{codec_url}/decode", sealed, Authorization=f"Bearer {tokens['dev-staff']['token']}"
    )
    assert status == 200 and json_format.Parse(body, Payloads()).payloads[0].data == b'"x"'
    # The dev UI's way in: no token, a socket of the stack's own OS user (this test's).
    status, _, body = _http(f"{codec_url}/decode", sealed, Origin=ui)
    assert status == 200 and json_format.Parse(body, Payloads()).payloads[0].data == b'"x"'
    status, headers, _ = _http(
        f"{codec_url}/decode",
        method="OPTIONS",
        Origin=ui,
        **{"Access-Control-Request-Method": "POST"},
    )
    assert status == 204 and headers["Access-Control-Allow-Origin"] == ui


def test_dev_server_keeps_closed_histories_for_the_configured_days(dev_stack: DevStackRun) -> None:
    async def retention() -> float:
        address = dev_stack.env["IDFLOW_TEMPORAL_ADDRESS"]
        client = await Client.connect(address)
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
        return described.config.workflow_execution_retention_ttl.ToTimedelta().days

    assert asyncio.run(retention()) == 30  # IDFLOW_HISTORY_RETENTION_DAYS' default


def test_purge_and_status_commands(dev_stack: DevStackRun, photo_dir: Path) -> None:
    verified = _idflow(
        dev_stack,
        "verify",
        "--selfie",
        str(photo_dir / "obama.jpg"),
        "--document",
        str(photo_dir / "obama2.jpg"),
        "--id",
        "purge-check-1",
    )
    assert verified.returncode == 0, verified.stderr
    assert "kept until" in _idflow(dev_stack, "status", "purge-check-1").stdout

    purged = _idflow(dev_stack, "purge", "purge-check-1", "--actor", "staff-7")
    assert purged.returncode == 0, purged.stderr
    # selfie, document and the face crops cut from them
    assert "data key destroyed, 3 blobs deleted" in purged.stdout

    status = _idflow(dev_stack, "status", "purge-check-1")
    assert status.returncode == 0, status.stderr
    assert "images       purged" in status.stdout and "approved" in status.stdout.lower()
    assert "purged             by staff-7" in status.stdout
    assert "already purged" in _idflow(dev_stack, "purge", "purge-check-1").stdout


def test_idflow_review_signs_as_the_staff_member_and_a_wrong_token_is_refused(
    dev_stack: DevStackRun, photo_dir: Path
) -> None:
    home = dev_stack.home
    settings = Settings(
        home=home,
        model_cache=Path(dev_stack.env["IDFLOW_MODEL_CACHE"]),
        blob_dir=home / "blobs",
        database_url=f"sqlite:///{home / 'idflow.db'}",
    )
    [(task, pin)] = grey_zone_pins(settings).items()
    started = _idflow(
        dev_stack,
        *("verify", "--selfie", str(photo_dir / "obama.jpg")),
        *("--document", str(photo_dir / "obama2.jpg"), "--id", "review-check-1"),
        *("--pin", f"{task}={pin}", "--no-wait"),
    )
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 120
    while (
        "awaiting_review"
        not in (status := _idflow(dev_stack, "status", "review-check-1")).stdout.lower()
    ):
        assert time.monotonic() < deadline, status.stdout + status.stderr
        time.sleep(0.5)

    forged = dev_stack.env | {"IDFLOW_STAFF_TOKEN": "x" * 43, "IDFLOW_STAFF_ID": "dev-staff"}
    refused = subprocess.run(
        [sys.executable, "-m", "cli", "review", "review-check-1", "--approve", "--reason", "x"],
        env=forged,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert refused.returncode == 1 and "does not verify" in refused.stderr

    reviewed = _idflow(dev_stack, "review", "review-check-1", "--approve", "--reason", "ok")
    assert reviewed.returncode == 0, reviewed.stderr
    assert "review-check-1: approved by dev-staff" in reviewed.stdout
    status = _idflow(dev_stack, "status", "review-check-1").stdout
    assert "review_refused" in status and "dev-staff" in status
