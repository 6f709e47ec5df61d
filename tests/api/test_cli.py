"""The CLI's answers a person reads: no server, rejection details, plain status values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..support.api import free_port


def idflow(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *argv],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_a_server_one_line_says_where_it_looked_and_how_to_start_one(
    tmp_path: Path, photo: Any
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    # A staff token, so that the review gets as far as connecting.
    env = {
        "IDFLOW_TEMPORAL_ADDRESS": address,
        "IDFLOW_HOME": str(tmp_path),
        "IDFLOW_STAFF_TOKEN": "t" * 32,
    }
    image = tmp_path / "selfie.jpg"
    image.write_bytes(photo("obama.jpg"))
    for argv in (
        ("verify", "--selfie", str(image), "--document", str(image)),
        ("status", "some-id"),
        ("review", "some-id", "--approve", "--staff", "r", "--reason", "ok"),
    ):
        run = idflow(*argv, env=env)
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert lines[0].startswith(f"idflow {argv[0]}: ")
        assert address in lines[0] and "idflow dev" in lines[0]
