"""The ``idflow`` commands as people run them: dev stack, verify, status, replay, demo, Ctrl-C."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.samples import DEMO_CLAIMS
from mdoc import holder
from mdoc.keystore import KeyStore, keys_dir
from mdoc.verify import verify_issuer_signed

from ..support.output import ProcessOutput, wait_until_ready

pytestmark = [pytest.mark.temporal, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def cli_env(tmp_path: Path, model_cache: Path, test_keys: dict[str, str]) -> dict[str, str]:
    """A private data dir and free ports: never the default 7233/8233."""
    return os.environ | {
        "IDFLOW_HOME": str(tmp_path / "home"),
        "IDFLOW_MODEL_CACHE": str(model_cache),
        "IDFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "IDFLOW_TEMPORAL_UI_PORT": str(free_port()),
        "IDFLOW_CODEC_PORT": str(free_port()),
    }


def idflow(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        check=False,  # callers assert on the exit code and output
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_dev_stack_serves_verify_status_replay_and_stops_on_ctrl_c(
    cli_env: dict[str, str], photo_dir: Path, tmp_path: Path
) -> None:
    ready_file = tmp_path.parent / f"{tmp_path.name}-dev.ready"
    dev = subprocess.Popen(
        [sys.executable, "-m", "cli", "dev", "--ready-file", str(ready_file)],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed = ProcessOutput(dev)
    try:
        # Ready when the stack says so through its ready file; then read what it printed.
        wait_until_ready(dev, ready_file)
        output = printed.wait_for("Ctrl-C stops everything", timeout_s=30)
        assert any(
            f"Web UI:  http://127.0.0.1:{cli_env['IDFLOW_TEMPORAL_UI_PORT']}" in line
            for line in output
        )

        holder_key = holder.new_device_key()
        device_key = tmp_path / "device.pem"
        device_key.write_bytes(holder.device_key_pem(holder_key))
        claims = tmp_path / "claims.json"
        claims.write_text(json.dumps(DEMO_CLAIMS))
        verified = idflow(
            cli_env,
            "verify",
            "--selfie",
            str(photo_dir / "obama.jpg"),
            "--document",
            str(photo_dir / "obama2.jpg"),
            "--device-key",
            str(device_key),
            "--claims",
            str(claims),
            "--id",
            "cli-check-1",
            "--json",
        )
        assert verified.returncode == 0, verified.stderr
        result: dict[str, Any] = json.loads(verified.stdout)
        assert result["decision"] == "approved" and result["reasons"] == []
        # Bound to the holder's key, under the stack's IACA, as a relying party checks it.
        iaca = KeyStore.open(keys_dir(Path(cli_env["IDFLOW_HOME"]))).iaca()
        issuer_signed = base64.b64decode(result["credential"]["issuer_signed_b64"])
        bound = verify_issuer_signed(issuer_signed, iaca, device_key=holder_key.public_key())
        assert bound.elements["family_name"] == DEMO_CLAIMS["family_name"]
        assert set(result["model_versions"]) >= {"embed", "liveness"}

        status = idflow(cli_env, "status", "cli-check-1", "--json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["workflow_status"] == "COMPLETED"
        assert report["record"]["decision"] == "approved" and report["record"]["credential_issued"]
        assert [entry["event"] for entry in report["audit"]][:1] == ["created"]

        replayed = idflow(cli_env, "replay", "cli-check-1")
        assert replayed.returncode == 0, replayed.stderr
        assert "replays deterministically" in replayed.stdout

        reused = idflow(
            cli_env,
            "verify",
            "--selfie",
            str(photo_dir / "biden.jpg"),
            "--document",
            str(photo_dir / "obama2.jpg"),
            "--id",
            "cli-check-1",
        )
        assert reused.returncode == 1 and "Traceback" not in reused.stderr
        assert reused.stderr.strip().splitlines()[-1] == (
            "idflow verify: verification id cli-check-1 is taken by another request; "
            "nothing was stored"
        )
    finally:
        dev.send_signal(signal.SIGINT)
        rest = printed.rest(timeout_s=90)
    assert dev.returncode == 0, rest
    assert "stopped." in rest
    with pytest.raises(OSError):  # the server is gone with it
        socket.create_connection(
            ("127.0.0.1", int(cli_env["IDFLOW_TEMPORAL_ADDRESS"].rsplit(":", 1)[1])), 1
        )


def test_demo_starts_a_stack_runs_every_case_and_stops_it(cli_env: dict[str, str]) -> None:
    demo = idflow(cli_env, "demo", timeout=600)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    for case in (
        "same person",
        "different people",
        "no face",
        "corrupt file",
        "same person + device key",
    ):
        assert case in demo.stdout
    assert "UNEXPECTED" not in demo.stdout
    assert "stopping what the demo started" in demo.stdout
    with pytest.raises(OSError):
        socket.create_connection(
            ("127.0.0.1", int(cli_env["IDFLOW_TEMPORAL_ADDRESS"].rsplit(":", 1)[1])), 1
        )
