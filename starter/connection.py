"""The one way every idflow process connects to Temporal.

Clients, workers, the CLI, the dev stack and the tests all call ``connect``
so that they share one data converter (the encrypting payload codec).
"""

from __future__ import annotations

from temporalio.client import Client

from security.payload_codec import data_converter
from settings import Settings

__all__ = ["connect", "data_converter"]


async def connect(settings: Settings, target: str | None = None) -> Client:
    """A client for ``target`` (default: the configured Temporal address)."""
    return await Client.connect(
        target or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
    )
