"""The FastAPI application of ``idflow api``, and its OpenAPI document.

    app = create_app(Settings.from_env())   # serve with uvicorn

One router per concern is included here; the OpenAPI document is generated
from the routers' types and committed as ``api/openapi.json`` (a test checks
that it is what the app generates: ``idflow api --openapi`` writes it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from settings import Settings
from starter.client import VerificationClient

from . import problems, verifications, webhooks
from .clients import RateLimiter
from .uploads import DEFAULT_MAX_BODY_BYTES, BodyLimit

TITLE = "idflow"
VERSION = "1"


def create_app(settings: Settings, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.verifications = await VerificationClient.connect(settings)
        app.state.engine = app.state.verifications.engine
        yield

    app = FastAPI(
        title=TITLE,
        version=VERSION,
        summary="Durable identity verification over HTTP",
        description=(
            "Authenticate with `Authorization: Bearer <API key>` (`idflow api-clients add`). "
            "Writes accept an `Idempotency-Key`. Errors are RFC 9457 problem details "
            "(`application/problem+json`) with an idflow `code`."
        ),
        lifespan=lifespan,
    )
    app.state.rate_limiter = RateLimiter()
    problems.install(app)
    app.include_router(verifications.router)
    app.include_router(webhooks.router)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    _document_problem_schema(app)
    return app


def _document_problem_schema(app: FastAPI) -> None:
    """Add the Problem schema that the operations' problem responses refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = problems.Problem.model_json_schema()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_document(settings: Settings) -> str:
    """The OpenAPI document as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(create_app(settings).openapi(), indent=2, sort_keys=True) + "\n"
