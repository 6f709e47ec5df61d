"""``idflow dev`` starts the codec server and points its Web UI at it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from security.keys import PAYLOAD, parse_inline
from security.payload_codec import PayloadEncryptionCodec

pytestmark = [pytest.mark.temporal, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _http(url: str, body: Optional[bytes] = None, method: str = "POST", **headers: str) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_dev_stack_serves_the_codec_to_its_web_ui_and_stops_it(
    tmp_path: Path, model_cache: Path, test_keys: dict[str, str]
) -> None:
    ui_port, codec_port = _free_port(), _free_port()
    env = os.environ | {
        "IDFLOW_HOME": str(tmp_path / "home"),
        "IDFLOW_MODEL_CACHE": str(model_cache),
        "IDFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{_free_port()}",
        "IDFLOW_TEMPORAL_UI_PORT": str(ui_port),
        "IDFLOW_CODEC_PORT": str(codec_port),
    }
    codec_url, ui = f"http://127.0.0.1:{codec_port}", f"http://127.0.0.1:{ui_port}"
    dev = subprocess.Popen([sys.executable, "-m", "starter", "dev"], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[str] = []
    try:
        assert dev.stdout is not None
        deadline = time.monotonic() + 180
        while not output or "Ctrl-C stops everything" not in output[-1]:
            line = dev.stdout.readline()
            assert line or dev.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            output.append(line)
        tokens = json.loads((tmp_path / "home" / "keys" / "codec-tokens.json").read_text())
        assert any(line.startswith(f"codec:   {codec_url}") for line in output)
        assert not any(token in "".join(output) for token in tokens.values())

        _, _, body = _http(f"{ui}/api/v1/settings", method="GET")
        assert json.loads(body)["Codec"]["Endpoint"] == f"{codec_url}/t/{tokens['dev-web-ui']}"

        codec = PayloadEncryptionCodec(parse_inline(PAYLOAD, test_keys["IDFLOW_PAYLOAD_KEYS"], "test"))
        sealed = json_format.MessageToJson(Payloads(payloads=[codec.encrypt(Payload(data=b'"x"'))])).encode()
        assert _http(f"{codec_url}/decode", sealed)[0] == 401
        status, _, body = _http(f"{codec_url}/decode", sealed, Authorization=f"Bearer {tokens['dev-staff']}")
        assert status == 200 and json_format.Parse(body, Payloads()).payloads[0].data == b'"x"'
        status, headers, _ = _http(f"{codec_url}/t/{tokens['dev-web-ui']}/decode", method="OPTIONS",
                                   Origin=ui, **{"Access-Control-Request-Method": "POST"})
        assert status == 204 and headers["Access-Control-Allow-Origin"] == ui
    finally:
        dev.send_signal(signal.SIGINT)
        dev.communicate(timeout=90)
    with pytest.raises(OSError):  # the codec server stopped with the stack
        socket.create_connection(("127.0.0.1", codec_port), 1)
