"""The one way every idflow process connects to Temporal.

Clients, workers, the CLI, the dev stack and the tests all call ``connect``
so that they share one data converter (the encrypting payload codec).
"""

from __future__ import annotations

from temporalio.client import Client

from security.payload_codec import data_converter
from settings import Settings

__all__ = ["ServerUnreachable", "connect", "data_converter"]


class ServerUnreachable(RuntimeError):
    """No Temporal server answers at the address: the message says where and how to start one."""


async def connect(settings: Settings, target: str | None = None) -> Client:
    """A client for ``target`` (default: the configured Temporal address)."""
    address = target or settings.temporal_address
    try:
        return await Client.connect(
            address,
            namespace=settings.temporal_namespace,
            data_converter=data_converter(settings),
        )
    except RuntimeError as error:
        if not str(error).startswith("Failed client connect"):
            raise
        raise ServerUnreachable(
            f"no Temporal server answers at {address} (IDFLOW_TEMPORAL_ADDRESS); "
            "start the stack with `idflow dev` (or `make demo`)"
        ) from None
