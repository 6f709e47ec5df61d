"""Errors as RFC 9457 problem details (``application/problem+json``).

Every refusal names an idflow code: a ``domain.reasons.ReasonCode`` where the
refusal is one (``INPUT_TOO_LARGE``, ``CLAIMS_INVALID``), else one of the API's
own codes below. ``detail`` says what was wrong in non-personal words (an
element and the rule it breaks, a limit), never a submitted value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"


class ProblemCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    SCOPE_MISSING = "SCOPE_MISSING"
    RATE_LIMITED = "RATE_LIMITED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"  # same key, another request
    IDEMPOTENCY_KEY_IN_FLIGHT = "IDEMPOTENCY_KEY_IN_FLIGHT"  # the first is still being answered
    REQUEST_INVALID = "REQUEST_INVALID"
    NOT_FOUND = "NOT_FOUND"
    VERIFICATION_ID_IN_USE = "VERIFICATION_ID_IN_USE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"


class Problem(BaseModel):
    """RFC 9457 problem details, with idflow's code in ``code``."""

    type: str = Field(description="URI of the problem type: urn:idflow:problem:<code>")
    title: str
    status: int
    detail: str
    code: str = Field(description="idflow reason code or API problem code")
    instance: str | None = None


class ProblemError(Exception):
    def __init__(
        self, status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.code = str(getattr(code, "value", code))
        self.headers = headers or {}

    def body(self, request: Request) -> dict[str, Any]:
        problem = Problem(
            type=f"urn:idflow:problem:{self.code}",
            title=self.title,
            status=self.status,
            detail=self.detail,
            code=self.code,
            instance=request.url.path,
        )
        return problem.model_dump(exclude_none=True)

    def response(self, request: Request) -> JSONResponse:
        return JSONResponse(
            self.body(request),
            status_code=self.status,
            media_type=MEDIA_TYPE,
            headers=self.headers,
        )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem statuses an operation may answer."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {"description": "problem details", "content": {MEDIA_TYPE: {"schema": schema}}}
        for status in statuses
    }


def _validation_detail(error: RequestValidationError) -> str:
    # Only where and what rule, never the submitted value (pydantic's "input").
    parts = []
    for issue in error.errors()[:5]:
        where = ".".join(str(part) for part in issue.get("loc", ()))
        parts.append(f"{where}: {issue.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request does not match the API's schema"


def install(app: FastAPI) -> None:
    """Answer every error, FastAPI's and Starlette's own included, as problem details."""

    @app.exception_handler(ProblemError)
    async def problem(request: Request, error: ProblemError) -> JSONResponse:
        return error.response(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        refusal = ProblemError(
            422, ProblemCode.REQUEST_INVALID, "Invalid request", _validation_detail(error)
        )
        return refusal.response(request)

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = ProblemCode.NOT_FOUND if error.status_code == 404 else ProblemCode.REQUEST_INVALID
        refusal = ProblemError(error.status_code, code, str(error.detail), str(error.detail))
        return refusal.response(request)
