"""Typed input rejections become non-retryable Temporal failures.

An activity that meets input no retry can fix raises a
``domain.errors.InputRejected`` subclass. Temporal must not retry it,
and the workflow must learn which reason code ended the verification, so the
error crosses Temporal as an ``ApplicationError`` with ``non_retryable=True``
and ``type`` = the reason code (e.g. ``"DEVICE_PROOF_INVALID"``).

Use the decorator under ``@activity.defn``::

    @activity.defn(name=names.ISSUE_CREDENTIAL)
    @non_retryable_rejections
    def issue_credential(self, request: IssueCredentialInput) -> IssuedCredential: ...

The message is the typed error's own (written to hold no personal data); the
Python cause chain is dropped so that no library message (which may quote
input) reaches Temporal history.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio.exceptions import ApplicationError

from domain.errors import InputRejected

F = TypeVar("F", bound=Callable[..., Any])


def application_error(err: InputRejected) -> ApplicationError:
    """The non-retryable Temporal failure for a typed input rejection."""
    return ApplicationError(str(err), type=err.reason.value, non_retryable=True)


def non_retryable_rejections(fn: F) -> F:
    """Wrap a sync or async activity so ``InputRejected`` leaves it as ``application_error``."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except InputRejected as err:
                raise application_error(err) from None

        return run_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InputRejected as err:
            raise application_error(err) from None

    return run  # type: ignore[return-value]
