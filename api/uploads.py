"""A cap on request bodies, enforced while they stream in.

A body that declares more than the cap (``Content-Length``) is refused before
any byte is read; a body that streams past it (chunked) is refused at the
first chunk over the cap. Either way nothing of it is buffered whole, and the
route never runs, so nothing is stored.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.reasons import ReasonCode
from imaging.limits import ImageLimits, MiB

from .problems import ProblemError

# Two images at the ingest limit, plus the form's other fields and framing.
DEFAULT_MAX_BODY_BYTES = 2 * ImageLimits().max_bytes + MiB


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0
        over = refused = False

        async def capped_receive() -> Message:
            # Past the cap the app sees the client go away: it stops reading and stores nothing.
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app answers to the cut-off body, the client gets the 413.
            nonlocal refused
            if not over:
                await send(message)
            elif not refused:
                refused = True
                await self._refuse(scope, send)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not refused:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        refusal = ProblemError(
            413,
            ReasonCode.INPUT_TOO_LARGE,
            "Upload too large",
            f"the request body may have at most {self.max_bytes} bytes; nothing was stored",
        )
        response = refusal.response(Request(scope))
        response.headers["Connection"] = "close"
        await response(scope, _drain_nothing, send)


async def _drain_nothing() -> Message:
    return {"type": "http.disconnect"}
