"""The codec server over real HTTP: tokens and roles, CORS, malformed bodies, same-user, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from security.codec_server import app_from_settings, create_app
from security.config import SecurityConfig
from security.keys import PAYLOAD, KeyConfigError, new_key, parse_inline
from security.payload_codec import Binding, PayloadEncryptionCodec
from security.staff_tokens import StaffTokens, ensure_dev_tokens, load_staff_tokens
from settings import Settings

UI = "http://localhost:8233"
TOKEN = "alice-token-0123456789abcdef"
REVIEWER = "rita-token-0123456789abcdef"  # may review, not decode
# A system Python that another user (nobody) may run: only root can start one as them.
OTHER_USERS_PYTHON = "/usr/bin/python3"
CAN_ACT_AS_OTHER_USER = os.getuid() == 0 and os.access(OTHER_USERS_PYTHON, os.X_OK)
SECRET = b'{"family_name":"Mustermann"}'
CODEC = PayloadEncryptionCodec(
    parse_inline(PAYLOAD, f"k1:{new_key()}", "test"), Binding.ANY_WORKFLOW
)


def _body(payloads: list[Payload]) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def _sealed() -> str:
    return _body([CODEC.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=SECRET))])


def _serve(
    test: Callable[[aiohttp.ClientSession, str], Awaitable[None]], same_user: bool = False
) -> None:
    async def run() -> None:
        tokens = StaffTokens.from_entries(
            {"alice": (TOKEN, frozenset({"decode"})), "rita": (REVIEWER, frozenset({"review"}))},
            "test",
        )
        app = create_app(CODEC, tokens, [UI], same_user)
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            await test(session, str(server.make_url("")).rstrip("/"))

    asyncio.run(run())


async def _post(
    session: aiohttp.ClientSession, url: str, body: str, **headers: str
) -> tuple[int, Any, Any]:
    async with session.post(
        url, data=body, headers={"Content-Type": "application/json", **headers}
    ) as r:
        text = await r.text()
        return (
            r.status,
            r.headers,
            json.loads(text) if r.content_type == "application/json" else text,
        )


def test_valid_token_decodes_and_there_is_no_encode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "idflow.codec_server")

    async def test(session: aiohttp.ClientSession, base: str) -> None:
        status, headers, body = await _post(
            session,
            base + "/decode",
            _sealed(),
            Authorization=f"Bearer {TOKEN}",
            Origin=UI,
            **{"X-Namespace": "default"},
        )
        assert status == 200, body
        assert headers["Access-Control-Allow-Origin"] == UI
        [decoded] = json_format.ParseDict(body, Payloads()).payloads
        assert decoded.data == SECRET

        # Plaintext (the SDK's marker data, or a forgery the workers refuse) is shown as is.
        plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"score":0.999}')
        status, _, body = await _post(
            session, base + "/decode", _body([plain]), Authorization=f"Bearer {TOKEN}"
        )
        assert status == 200 and json_format.ParseDict(body, Payloads()).payloads == [plain]

        # Nobody turns typed text into a payload the workers would accept.
        status, _, _ = await _post(
            session, base + "/encode", _body([plain]), Authorization=f"Bearer {TOKEN}"
        )
        assert status in (404, 405)

    _serve(test)
    assert "decode 1 payloads for staff alice (namespace default)" in caplog.text
    assert TOKEN not in caplog.text and "Mustermann" not in caplog.text


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token-0123456789abcdef",
        f"Basic {TOKEN}",
        "Bearer ",
        f"Bearer {REVIEWER}",
    ],
)
def test_missing_or_invalid_token_is_401_and_logged_without_secrets(
    authorization: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    async def test(session: aiohttp.ClientSession, base: str) -> None:
        status, response_headers, body = await _post(
            session, f"{base}/decode", _sealed(), **headers
        )
        assert status == 401 and body == {"error": "a valid bearer token is required"}
        assert response_headers["WWW-Authenticate"].startswith("Bearer")

    _serve(test)
    assert "refused: missing bearer token" in caplog.text or "refused: invalid token" in caplog.text
    assert "wrong-token" not in caplog.text and TOKEN not in caplog.text
    assert REVIEWER not in caplog.text


def test_allowed_origin_preflight_is_granted_and_other_origins_are_not() -> None:
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        }
        async with session.options(base + "/decode", headers={"Origin": UI, **preflight}) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == UI
            allowed = {h.strip() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
            assert {"authorization", "content-type", "x-namespace"} <= allowed
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
        for evil in ("http://evil.example", "http://localhost:8233.evil.example", "null", UI + "/"):
            async with session.options(
                base + "/decode", headers={"Origin": evil, **preflight}
            ) as r:
                assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
            status, headers, _ = await _post(
                session, base + "/decode", _sealed(), Origin=evil, Authorization=f"Bearer {TOKEN}"
            )
            assert status == 403 and "Access-Control-Allow-Origin" not in headers

    _serve(test)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "",
        "[]",
        '{"payloads": "x"}',
        '{"payloads": [{"data": "***not base64***"}]}',
        '{"payloads": [{"metadata": {"encoding": 5}}]}',
        '{"unknown": 1}',
    ],
)
def test_malformed_bodies_are_400(body: str) -> None:
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        status, _, answer = await _post(
            session, base + "/decode", body, Authorization=f"Bearer {TOKEN}"
        )
        assert status == 400 and answer == {"error": "body must be Payloads in proto-JSON"}

    _serve(test)


def test_payloads_that_do_not_decrypt_are_422() -> None:
    other = PayloadEncryptionCodec(parse_inline(PAYLOAD, f"k9:{new_key()}", "test"))
    foreign = _body([other.encrypt(Payload(data=b"x"))])

    async def test(session: aiohttp.ClientSession, base: str) -> None:
        status, _, answer = await _post(
            session, base + "/decode", foreign, Authorization=f"Bearer {TOKEN}"
        )
        assert status == 422 and "'k9' is not configured" in answer["error"]

    _serve(test)


def _post_as(uid: int, url: str) -> int:
    """POST a sealed payload to ``url`` from a child process running as ``uid``."""
    script = (
        "import sys, urllib.request, urllib.error\n"
        "request = urllib.request.Request(sys.argv[1], data=sys.stdin.buffer.read(),"
        " headers={'Content-Type': 'application/json'})\n"
        "try:\n    print(urllib.request.urlopen(request, timeout=10).status)\n"
        "except urllib.error.HTTPError as error:\n    print(error.code)\n"
    )
    child = subprocess.run(
        [OTHER_USERS_PYTHON, "-c", script, url],
        input=_sealed().encode(),
        capture_output=True,
        check=True,
        timeout=30,
        user=uid,
        cwd="/",
    )
    return int(child.stdout)


def test_same_user_serves_this_os_users_sockets_only(caplog: pytest.LogCaptureFixture) -> None:
    """The dev Web UI sends no token: its requests are served when the socket is ours."""
    caplog.set_level(logging.INFO, "idflow.codec_server")

    async def off(session: aiohttp.ClientSession, base: str) -> None:
        status, _, _ = await _post(session, f"{base}/decode", _sealed(), Origin=UI)
        assert status == 401

    async def on(session: aiohttp.ClientSession, base: str) -> None:
        status, _, body = await _post(session, f"{base}/decode", _sealed(), Origin=UI)
        assert status == 200 and json_format.ParseDict(body, Payloads()).payloads[0].data == SECRET
        if CAN_ACT_AS_OTHER_USER:  # another local user's process is refused
            other = await asyncio.to_thread(_post_as, 65534, f"{base}/decode")
            assert other == 401

    _serve(off)
    _serve(on, same_user=True)
    assert f"decode 1 payloads for staff os-user-{os.getuid()}" in caplog.text
    if CAN_ACT_AS_OTHER_USER:
        assert "the socket is not this OS user's" in caplog.text


def test_same_user_refused_off_loopback(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, model_cache=tmp_path, blob_dir=tmp_path, database_url="sqlite://"
    )
    ensure_dev_tokens(settings)
    with pytest.raises(KeyConfigError, match="loopback"):
        app_from_settings(settings, SecurityConfig(codec_host="0.0.0.0", codec_same_user=True))


def test_dev_tokens_are_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDFLOW_CODEC_TOKENS", raising=False)
    settings = Settings(
        home=tmp_path, model_cache=tmp_path, blob_dir=tmp_path, database_url="sqlite://"
    )
    with pytest.raises(KeyConfigError, match="IDFLOW_CODEC_TOKENS"):
        load_staff_tokens(settings)
    tokens = ensure_dev_tokens(settings)
    assert ensure_dev_tokens(settings) == tokens and list(tokens) == ["dev-staff"]
    loaded = load_staff_tokens(settings)
    assert loaded.staff_for(tokens["dev-staff"], role="decode") == "dev-staff"
    assert loaded.staff_for(tokens["dev-staff"], role="review") == "dev-staff"
    assert loaded.staff_for(tokens["dev-staff"] + "x") is None
    monkeypatch.setenv("IDFLOW_CODEC_TOKENS", f"ann:{TOKEN},rita:{REVIEWER}:review")
    inline = load_staff_tokens(settings)
    assert inline.staff_for(TOKEN) == "ann" and inline.staff_for(TOKEN, role="review") is None
    assert (
        inline.staff_for(REVIEWER, role="review") == "rita" and inline.staff_for(REVIEWER) is None
    )
    monkeypatch.setenv("IDFLOW_CODEC_TOKENS", "bob:short")
    with pytest.raises(KeyConfigError, match="shorter than 22"):
        load_staff_tokens(settings)


def test_metrics_count_answers_by_status_without_tokens_and_health_answers() -> None:
    async def scrape(session: aiohttp.ClientSession, base: str) -> str:
        async with session.get(f"{base}/metrics") as r:
            assert r.status == 200 and r.content_type == "text/plain"
            return await r.text()

    def count(text: str, status: str) -> float:
        line = f'idflow_codec_requests_total{{operation="decode",status="{status}"}} '
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].removeprefix(line)) if found else 0.0

    async def test(session: aiohttp.ClientSession, base: str) -> None:
        before = await scrape(session, base)
        await _post(session, f"{base}/decode", _sealed(), Authorization=f"Bearer {TOKEN}")
        await _post(session, f"{base}/decode", _sealed(), Authorization="Bearer wrong-token")
        after = await scrape(session, base)
        assert count(after, "200") - count(before, "200") == 1
        assert count(after, "401") - count(before, "401") == 1
        assert TOKEN not in after and "wrong-token" not in after
        async with session.get(f"{base}/healthz") as r:
            assert r.status == 200 and await r.text() == "ok\n"

    _serve(test)
