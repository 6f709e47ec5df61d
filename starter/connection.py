"""The one way every idflow process connects to Temporal.

Clients, workers, the CLI, the dev stack and the tests all call ``connect``
so that they share one data converter (the encrypting payload codec) and one
way to reach a secured cluster:

- ``IDFLOW_TEMPORAL_TLS=true``: TLS, the server checked against the system's
  roots (Temporal Cloud); implied by any of the settings below.
- ``IDFLOW_TEMPORAL_TLS_CA``: a PEM file of the CA that signed the server's
  certificate (a self-hosted cluster with its own CA).
- ``IDFLOW_TEMPORAL_TLS_CERT`` and ``IDFLOW_TEMPORAL_TLS_KEY``: the client's
  certificate and key for mutual TLS (both or neither).
- ``IDFLOW_TEMPORAL_TLS_SERVER_NAME``: the name the server's certificate is
  checked against (and sent as SNI) when it differs from the address's host.
- ``IDFLOW_TEMPORAL_API_KEY`` (or ``IDFLOW_TEMPORAL_API_KEY_FILE``): an API
  key sent as a bearer token (Temporal Cloud API keys); implies TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import TLSConfig

from security.payload_codec import data_converter
from settings import Settings

__all__ = [
    "ConnectionSettingsError",
    "ServerUnreachable",
    "connect",
    "connect_options",
    "data_converter",
]


class ConnectionSettingsError(ValueError):
    """The Temporal connection settings are incomplete or name an unreadable file."""


class ServerUnreachable(ConnectionError):
    """No connection to Temporal: nothing listens, TLS failed or the server refused us.

    The message says where it looked and how to start a local stack."""


def _read(setting: str, path: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise ConnectionSettingsError(
            f"IDFLOW_{setting.upper()}: cannot read {path}: {error.strerror}"
        ) from None


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The TLS configuration the settings ask for; False for a plain connection."""
    if bool(settings.temporal_tls_cert) != bool(settings.temporal_tls_key):
        raise ConnectionSettingsError(
            "mutual TLS needs both IDFLOW_TEMPORAL_TLS_CERT and IDFLOW_TEMPORAL_TLS_KEY"
        )
    wanted = (
        settings.temporal_tls
        or settings.temporal_api_key
        or settings.temporal_tls_ca
        or settings.temporal_tls_cert
        or settings.temporal_tls_server_name
    )
    if not wanted:
        return False
    return TLSConfig(
        server_root_ca_cert=_read("temporal_tls_ca", settings.temporal_tls_ca),
        client_cert=_read("temporal_tls_cert", settings.temporal_tls_cert),
        client_private_key=_read("temporal_tls_key", settings.temporal_tls_key),
        domain=settings.temporal_tls_server_name or None,
    )


def connect_options(settings: Settings) -> dict[str, Any]:
    """Namespace, TLS and API key for ``Client.connect``: everything but the converter."""
    return {
        "namespace": settings.temporal_namespace,
        "tls": tls_config(settings),
        "api_key": settings.temporal_api_key or None,
    }


async def connect(settings: Settings, target: str | None = None, **options: Any) -> Client:
    """A client for ``target`` (default: the configured Temporal address).

    ``options`` go to ``Client.connect`` as they are (e.g. the worker's ``runtime``).
    """
    target = target or settings.temporal_address
    try:
        return await Client.connect(
            target, data_converter=data_converter(settings), **connect_options(settings), **options
        )
    except RuntimeError as error:  # the SDK's "Failed client connect: ..." (one line is enough)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ServerUnreachable(
            f"no Temporal server answers at {target} (IDFLOW_TEMPORAL_ADDRESS): {reason}; "
            "start the stack with `idflow dev` (or `make demo`)"
        ) from None
