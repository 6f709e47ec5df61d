"""Staff identities: bearer tokens, each with the roles its holder may use.

Roles: ``decode`` (read payloads through the codec server) and ``review``
(decide a verification that awaits review, ``security.staff_assertions``).
Each token maps to a staff identity, which is logged (or audited) with every
request it makes or is refused (never the token). Sources, first match wins:

1. ``IDFLOW_CODEC_TOKENS``: ``staff-id:token[:role+role],...`` (no roles: ``decode``).
2. ``IDFLOW_CODEC_TOKEN_FILE``: JSON, mode 0600, each entry either
   ``"staff-id": "token"`` (role ``decode``) or
   ``"staff-id": {"token": "...", "roles": ["decode", "review"]}``.
3. ``<IDFLOW_HOME>/keys/codec-tokens.json`` if it exists: the dev stack's,
   written by ``ensure_dev_tokens`` (identity ``dev-staff``, both roles).

Tokens are kept only as their SHA-256 (a lookup does not compare secrets byte
by byte) and as the key that checks the staff member's signed assertions. A
token must have at least 128 bits of entropy's worth of characters (22);
generate one with ``python -c 'import secrets; print(secrets.token_urlsafe())'``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from settings import Settings

from .keys import KeyConfigError, read_private_json, write_private_json

MIN_TOKEN_CHARS = 22
DEV_CLI = "dev-staff"
DECODE = "decode"
REVIEW = "review"
ROLES = (DECODE, REVIEW)
_STAFF_ID = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def assertion_key(token: str) -> bytes:
    """The key a staff member signs assertions with, derived from their token."""
    return hashlib.sha256(b"idflow-staff-assertion/v1|" + token.encode()).digest()


@dataclass(frozen=True)
class StaffMember:
    staff_id: str
    roles: frozenset[str]
    assertion_key: bytes


@dataclass(frozen=True)
class StaffTokens:
    by_digest: Mapping[bytes, StaffMember]
    source: str

    def staff_for(self, token: str | None, role: str = DECODE) -> str | None:
        """The staff id the token belongs to, if that member has ``role``; else None."""
        member = self.by_digest.get(_digest(token)) if token else None
        return member.staff_id if member is not None and role in member.roles else None

    def member(self, staff_id: str) -> StaffMember | None:
        return next((m for m in self.by_digest.values() if m.staff_id == staff_id), None)

    @classmethod
    def from_entries(
        cls, entries: Mapping[str, tuple[str, frozenset[str]]], source: str
    ) -> StaffTokens:
        """``staff-id -> (token, roles)``, checked."""
        by_digest: dict[bytes, StaffMember] = {}
        for staff, (token, roles) in entries.items():
            if not _STAFF_ID.fullmatch(staff):
                raise KeyConfigError(f"{source}: staff id {staff!r} must match {_STAFF_ID.pattern}")
            if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
                raise KeyConfigError(
                    f"{source}: the token of {staff} is shorter than {MIN_TOKEN_CHARS} characters"
                )
            unknown = sorted(roles - set(ROLES))
            if unknown:
                raise KeyConfigError(
                    f"{source}: {staff} has unknown roles {unknown} (known: {', '.join(ROLES)})"
                )
            by_digest[_digest(token)] = StaffMember(staff, roles, assertion_key(token))
        if not by_digest:
            raise KeyConfigError(f"{source}: no tokens")
        return cls(by_digest, source)

    @classmethod
    def from_pairs(cls, pairs: Mapping[str, str], source: str) -> StaffTokens:
        """``staff-id -> token``, each with the ``decode`` role only."""
        return cls.from_entries(
            {staff: (token, frozenset({DECODE})) for staff, token in pairs.items()}, source
        )


def dev_token_file(settings: Settings) -> Path:
    return settings.home / "keys" / "codec-tokens.json"


def _file_entry(staff: str, value: Any, source: str) -> tuple[str, frozenset[str]]:
    if isinstance(value, str):
        return value, frozenset({DECODE})
    if isinstance(value, dict) and isinstance(value.get("roles", []), list):
        return value.get("token"), frozenset(value.get("roles", [DECODE]))
    raise KeyConfigError(f'{source}: {staff} must be "token" or {{"token": ..., "roles": [...]}}')


def load_staff_tokens(settings: Settings) -> StaffTokens:
    inline = os.environ.get("IDFLOW_CODEC_TOKENS")
    if inline:
        entries = {}
        for item in filter(None, (part.strip() for part in inline.split(","))):
            staff, token, *roles = item.split(":")
            if not token or len(roles) > 1:
                raise KeyConfigError(
                    "IDFLOW_CODEC_TOKENS: each entry must be staff-id:token[:role+role]"
                )
            entries[staff] = (token, frozenset(roles[0].split("+") if roles else [DECODE]))
        return StaffTokens.from_entries(entries, "IDFLOW_CODEC_TOKENS")
    configured = os.environ.get("IDFLOW_CODEC_TOKEN_FILE")
    path = Path(configured).expanduser() if configured else dev_token_file(settings)
    if not configured and not path.exists():
        raise KeyConfigError(
            "no staff tokens configured: set IDFLOW_CODEC_TOKENS (staff-id:token[:roles],...) "
            f"or IDFLOW_CODEC_TOKEN_FILE, or run `idflow encryption init` for dev tokens in {path}"
        )
    document = read_private_json(path, "codec token")
    if not isinstance(document, dict):
        raise KeyConfigError(f"{path}: expected JSON {{staff-id: token}}")
    return StaffTokens.from_entries(
        {staff: _file_entry(staff, value, str(path)) for staff, value in document.items()},
        str(path),
    )


def ensure_dev_tokens(settings: Settings) -> dict[str, str]:
    """The dev stack's staff tokens (created on first use): staff id -> token.

    One identity, ``dev-staff``, who may decode and review. A file from an
    earlier version (plain tokens, a separate Web UI token) is rewritten.
    """
    path = dev_token_file(settings)
    fresh = {DEV_CLI: {"token": secrets.token_urlsafe(32), "roles": list(ROLES)}}
    if not path.exists():
        write_private_json(path, fresh, exclusive=True)
    document = read_private_json(path, "codec token")
    if not isinstance(document.get(DEV_CLI), dict):
        token = document.get(DEV_CLI) or fresh[DEV_CLI]["token"]
        write_private_json(path, {DEV_CLI: {"token": token, "roles": list(ROLES)}})
        document = read_private_json(path, "codec token")
    return {staff: entry["token"] for staff, entry in document.items()}


def staff_credentials(settings: Settings, staff_id: str | None = None) -> tuple[str, str]:
    """(staff id, token) of the person at this terminal, for signing a review.

    ``IDFLOW_STAFF_TOKEN`` with ``staff_id`` or ``IDFLOW_STAFF_ID``; else, on a
    dev stack, the ``dev-staff`` token from its token file.
    """
    token = os.environ.get("IDFLOW_STAFF_TOKEN")
    if token:
        staff_id = staff_id or os.environ.get("IDFLOW_STAFF_ID")
        if not staff_id:
            raise KeyConfigError(
                "IDFLOW_STAFF_TOKEN is set: say whose it is (--staff or IDFLOW_STAFF_ID)"
            )
        return staff_id, token
    path = dev_token_file(settings)
    if not path.exists():
        raise KeyConfigError(
            f"no staff token: set IDFLOW_STAFF_TOKEN (and IDFLOW_STAFF_ID), "
            f"or run a dev stack ({path})"
        )
    tokens = ensure_dev_tokens(settings)
    staff_id = staff_id or DEV_CLI
    if staff_id not in tokens:
        raise KeyConfigError(f"{path} holds no token for {staff_id}")
    return staff_id, tokens[staff_id]
