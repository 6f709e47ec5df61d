"""Fixtures: the HTTP API served by a real uvicorn on a free port, on the module's stack.

``api_server`` (module) serves ``api.app.create_app`` for ``idflow_stack``'s
settings in a thread, with three API clients in the stack's database: a
writer (write, read and webhooks), a reader (read only) and a slow one (2 requests a
minute, for the rate limit).
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from api.app import create_app
from store import api_clients
from store.engine import get_engine

from .temporal import IdflowStack


@dataclasses.dataclass
class ApiServer:
    base_url: str
    keys: dict[str, str]  # client name -> API key

    def client(self, name: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[name]}"} if name else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def api_server(idflow_stack: IdflowStack) -> Iterator[ApiServer]:
    engine = get_engine(idflow_stack.settings.database_url)
    clients = {
        "writer": (["verifications:write", "verifications:read", "webhooks"], 100_000),
        "reader": (["verifications:read"], 100_000),
        "slow": (["verifications:read"], 2),
    }
    keys = {
        name: api_clients.add_client(engine, name, scopes, rate)[1]
        for name, (scopes, rate) in clients.items()
    }
    port = free_port()
    config = uvicorn.Config(
        create_app(idflow_stack.settings), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield ApiServer(f"http://127.0.0.1:{port}", keys)
    finally:
        server.should_exit = True
        thread.join(30)
