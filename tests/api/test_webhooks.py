"""Webhooks against a real stack: the API registers endpoints, the CPU pool's
WebhookDelivery workflows POST signed decision events to local receivers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from devstack.stack import free_port
from starter.webhooks import HEADER, SignatureInvalid, verify_webhook
from store import api_clients, webhooks
from store.engine import get_engine

from ..support.api import ApiServer
from ..support.temporal import IdflowStack
from ..workflow.test_metrics import scrape, value
from .test_api import upload, wait_decided

pytestmark = [pytest.mark.temporal, pytest.mark.slow]


@dataclass
class Received:
    event: dict[str, Any]
    delivery_id: str
    event_id: str


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: it checks each request's signature with the
    client library's helper and answers 200, 400 (bad signature) or ``refuse_with``."""

    port: int = field(default_factory=free_port)
    secret: str = ""
    refuse_with: int | None = None
    received: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/idflow"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    event = verify_webhook(receiver.secret, body, self.headers[HEADER])
                except SignatureInvalid:
                    receiver.bad_signatures += 1
                    self.send_response(400)
                else:
                    if receiver.refuse_with is None:
                        receiver.received.append(
                            Received(
                                event,
                                self.headers["Idflow-Delivery-Id"],
                                self.headers["Idflow-Event-Id"],
                            )
                        )
                    self.send_response(receiver.refuse_with or 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events_for(self, verification_id: str) -> list[Received]:
        return [r for r in self.received if r.event["data"]["verification_id"] == verification_id]


@pytest.fixture(scope="module")
def hooks(api_server: ApiServer, idflow_stack: IdflowStack) -> Iterator[httpx.Client]:
    """A client with the webhooks scope (and the verification scopes)."""
    engine = get_engine(idflow_stack.settings.database_url)
    scopes = ["webhooks", "verifications:write", "verifications:read"]
    _, key = api_clients.add_client(engine, "hooks", scopes, 100_000)
    with httpx.Client(
        base_url=api_server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="module")
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop()


def register(hooks: httpx.Client, receiver: Receiver) -> str:
    created = hooks.post("/v1/webhooks", json={"url": receiver.url})
    assert created.status_code == 201, created.text
    receiver.secret = created.json()["secret"]
    assert receiver.secret.startswith("whsec_")
    return created.json()["webhook_id"]


def verify_via_api(hooks: httpx.Client, photo: Any) -> dict[str, Any]:
    vid = hooks.post("/v1/verifications", **upload(photo)).json()["verification_id"]
    started = hooks.post(f"/v1/verifications/{vid}/start", json={})
    assert started.status_code == 202, started.text
    return wait_decided(hooks, vid)


def deliveries(hooks: httpx.Client, webhook_id: str) -> list[dict[str, Any]]:
    log = hooks.get(f"/v1/webhooks/{webhook_id}/deliveries")
    assert log.status_code == 200, log.text
    return log.json()["deliveries"]


def wait_for(what: str, found: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + 120
    while not (value := found()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)
    return value


def delivery_of(hooks: httpx.Client, webhook_id: str, verification_id: str, status: str) -> Any:
    return next(
        (
            d
            for d in deliveries(hooks, webhook_id)
            if d["verification_id"] == verification_id and d["status"] == status
        ),
        None,
    )


def test_a_decision_is_delivered_signed_to_every_endpoint(
    hooks: httpx.Client, photo: Any, receivers: list[Receiver], idflow_stack: IdflowStack
) -> None:
    receiver = Receiver().start()
    refusing = Receiver(refuse_with=410).start()
    receivers += [receiver, refusing]
    webhook_id, refusing_id = register(hooks, receiver), register(hooks, refusing)
    listed = hooks.get("/v1/webhooks").json()["webhooks"]
    assert {w["webhook_id"] for w in listed} >= {webhook_id, refusing_id}
    assert all("secret" not in w for w in listed)

    result = verify_via_api(hooks, photo)
    vid = result["verification_id"]

    delivered = wait_for("the delivery", lambda: delivery_of(hooks, webhook_id, vid, "delivered"))
    [got] = receiver.events_for(vid)  # exactly one request, and its signature checked
    assert receiver.bad_signatures == 0
    event = got.event
    assert event["type"] == "verification.decided" and event["id"] == got.event_id
    assert event["data"] == {
        "verification_id": vid,
        "decision": result["decision"],
        "reasons": result["reasons"],
    }
    assert set(event) == {"id", "type", "created_at", "data"}  # no subject ref, no scores
    assert delivered["event_id"] == got.event_id and delivered["delivery_id"] == got.delivery_id
    assert delivered["trigger"] == "decision"
    [attempt] = delivered["attempts"]
    assert (attempt["outcome"], attempt["status_code"]) == ("delivered", 200)

    # A 410 is the receiver refusing it: one attempt, not retried, the delivery failed.
    failed = wait_for("the refusal", lambda: delivery_of(hooks, refusing_id, vid, "failed"))
    assert [(a["outcome"], a["status_code"]) for a in failed["attempts"]] == [("refused", 410)]
    assert "410" in failed["failure"]
    samples = scrape(idflow_stack, "cpu")
    assert value(samples, "idflow_webhook_attempts_total", outcome="refused") >= 1
    assert value(samples, "idflow_webhook_deliveries_total", outcome="failed") >= 1

    # The secret is stored sealed; deleting the endpoint erases it and stops deliveries.
    engine = get_engine(idflow_stack.settings.database_url)
    with Session(engine) as session:
        row = session.get(webhooks.WebhookEndpoint, refusing_id)
        assert row is not None and row.sealed_secret is not None
        assert refusing.secret.encode() not in row.sealed_secret
    assert hooks.delete(f"/v1/webhooks/{refusing_id}").status_code == 204
    assert hooks.delete(f"/v1/webhooks/{refusing_id}").status_code == 404
    with Session(engine) as session:
        row = session.get(webhooks.WebhookEndpoint, refusing_id)
        assert row is not None and row.sealed_secret is None and row.deleted_at is not None
    assert refusing_id not in {
        w["webhook_id"] for w in hooks.get("/v1/webhooks").json()["webhooks"]
    }
    assert deliveries(hooks, refusing_id)  # its log still reads

    # Redelivery: a new delivery of the same event, signed anew.
    again = hooks.post(f"/v1/webhooks/{webhook_id}/events/{got.event_id}/redeliver")
    assert again.status_code == 202, again.text
    redelivery = again.json()
    assert redelivery["trigger"] == "redelivery" and redelivery["event_id"] == got.event_id
    assert redelivery["delivery_id"] != got.delivery_id
    wait_for(
        "the redelivery",
        lambda: any(d.delivery_id == redelivery["delivery_id"] for d in receiver.events_for(vid)),
    )
    assert [r.event for r in receiver.events_for(vid)] == [event, event]
    missing = hooks.post(f"/v1/webhooks/{webhook_id}/events/evt_{'0' * 32}/redeliver")
    assert missing.status_code == 404


def test_a_receiver_that_is_down_gets_the_event_once_it_is_up(
    hooks: httpx.Client, photo: Any, receivers: list[Receiver], idflow_stack: IdflowStack
) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    receivers.append(receiver)
    webhook_id = register(hooks, receiver)
    vid = verify_via_api(hooks, photo)["verification_id"]

    def failed_attempt() -> bool:
        pending = delivery_of(hooks, webhook_id, vid, "pending")
        return bool(pending) and any(a.get("outcome") == "retry" for a in pending["attempts"])

    wait_for("a refused connection", failed_attempt)
    receiver.start()
    delivered = wait_for("the delivery", lambda: delivery_of(hooks, webhook_id, vid, "delivered"))

    assert len(receiver.events_for(vid)) == 1 and receiver.bad_signatures == 0
    outcomes = [a["outcome"] for a in delivered["attempts"]]
    assert outcomes[-1] == "delivered" and outcomes.count("delivered") == 1
    assert set(outcomes[:-1]) == {"retry"}
    assert all(a["error"] and "status_code" not in a for a in delivered["attempts"][:-1])
    assert [a["attempt"] for a in delivered["attempts"]] == list(range(1, len(outcomes) + 1))
    samples = scrape(idflow_stack, "cpu")
    assert value(samples, "idflow_webhook_attempts_total", outcome="retry") >= len(outcomes) - 1
    assert value(samples, "idflow_webhook_deliveries_total", outcome="delivered") >= 1


def test_webhooks_need_their_scope_and_a_safe_url(
    api_server: ApiServer, hooks: httpx.Client
) -> None:
    with api_server.client("reader") as reader:
        denied = reader.post("/v1/webhooks", json={"url": "https://example.com/hook"})
    assert denied.status_code == 403 and denied.json()["code"] == "SCOPE_MISSING"
    assert "webhooks" in denied.json()["detail"]
    for url in ("http://example.com/hook", "ftp://127.0.0.1/x", "https://"):
        refused = hooks.post("/v1/webhooks", json={"url": url})
        assert refused.status_code == 422, url
        assert refused.json()["code"] == "REQUEST_INVALID"
    assert hooks.get(f"/v1/webhooks/whk_{'0' * 32}/deliveries").status_code == 404
