"""Who calls: API keys (``Authorization: Bearer <key>``), scopes and per-client rate limits.

    client: ApiClient = Depends(require(Scope.VERIFICATIONS_WRITE))

Keys are looked up by their sha256 (``store.api_clients``). The rate limit is
a token bucket per client in this process: ``rate_per_minute`` requests a
minute on average, bursts up to the same number.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from store import api_clients

from .problems import ProblemCode, ProblemError


class Scope(StrEnum):
    VERIFICATIONS_WRITE = "verifications:write"
    VERIFICATIONS_READ = "verifications:read"
    REVIEWS = "reviews"
    WEBHOOKS = "webhooks"


@dataclass(frozen=True)
class ApiClient:
    client_id: str
    name: str
    scopes: frozenset[str]


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        self._lock = threading.Lock()

    def retry_after(self, client_id: str, rate_per_minute: int) -> float:
        """0 when this request may go ahead (and takes its token), else seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client_id, (float(rate_per_minute), now))
            tokens = min(float(rate_per_minute), tokens + (now - last) * rate_per_minute / 60)
            if tokens >= 1:
                self._buckets[client_id] = (tokens - 1, now)
                return 0.0
            self._buckets[client_id] = (tokens, now)
            return (1 - tokens) * 60 / rate_per_minute


_bearer = HTTPBearer(auto_error=False, description="an API key from `idflow api-clients add`")


def _authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiClient:
    if credentials is None:
        raise ProblemError(
            401,
            ProblemCode.UNAUTHENTICATED,
            "API key required",
            "send the API key as 'Authorization: Bearer <key>'",
            {"WWW-Authenticate": "Bearer"},
        )
    record = api_clients.find_by_key(request.app.state.engine, credentials.credentials)
    if record is None:
        raise ProblemError(
            401,
            ProblemCode.UNAUTHENTICATED,
            "Unknown API key",
            "the API key is not known (it is shown once, by `idflow api-clients add`)",
            {"WWW-Authenticate": "Bearer"},
        )
    wait = request.app.state.rate_limiter.retry_after(record.client_id, record.rate_per_minute)
    if wait:
        raise ProblemError(
            429,
            ProblemCode.RATE_LIMITED,
            "Rate limit exceeded",
            f"at most {record.rate_per_minute} requests a minute for this client",
            {"Retry-After": str(max(1, round(wait)))},
        )
    return ApiClient(record.client_id, record.name, frozenset(record.scopes))


def require(scope: Scope) -> Callable[..., ApiClient]:
    """A dependency: the authenticated client, refused (403) without ``scope``."""

    def authorized(client: Annotated[ApiClient, Depends(_authenticate)]) -> ApiClient:
        if scope.value not in client.scopes:
            raise ProblemError(
                403,
                ProblemCode.SCOPE_MISSING,
                "Scope missing",
                f"this operation needs the scope {scope.value}",
            )
        return client

    return authorized
