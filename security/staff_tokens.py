"""Bearer tokens of the staff allowed to decode payloads through the codec server.

Each token maps to a staff identity, which the codec server logs with every
request it serves or refuses (never the token). Sources, first match wins:

1. ``IDFLOW_CODEC_TOKENS``: ``staff-id:token,staff-id:token``.
2. ``IDFLOW_CODEC_TOKEN_FILE``: JSON ``{"staff-id": "token", ...}``, mode 0600.
3. ``<IDFLOW_HOME>/keys/codec-tokens.json`` if it exists: the dev stack's,
   written by ``ensure_dev_tokens`` (identities ``dev-staff`` for the CLI and
   ``dev-web-ui`` for the dev Web UI).

Tokens are kept only as their SHA-256, so a lookup does not compare secrets
byte by byte. A token must have at least 128 bits of entropy's worth of
characters (22); generate one with ``python -c 'import secrets; print(secrets.token_urlsafe())'``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from settings import Settings

from .keys import KeyConfigError, read_private_json, write_private_json

MIN_TOKEN_CHARS = 22
DEV_CLI = "dev-staff"
DEV_WEB_UI = "dev-web-ui"
_STAFF_ID = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class StaffTokens:
    by_digest: Mapping[bytes, str]
    source: str

    def staff_for(self, token: str | None) -> str | None:
        """The staff id the token belongs to, or None."""
        return self.by_digest.get(_digest(token)) if token else None

    @classmethod
    def from_pairs(cls, pairs: Mapping[str, str], source: str) -> StaffTokens:
        by_digest: dict[bytes, str] = {}
        for staff, token in pairs.items():
            if not _STAFF_ID.fullmatch(staff):
                raise KeyConfigError(f"{source}: staff id {staff!r} must match {_STAFF_ID.pattern}")
            if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
                raise KeyConfigError(
                    f"{source}: the token of {staff} is shorter than {MIN_TOKEN_CHARS} characters"
                )
            by_digest[_digest(token)] = staff
        if not by_digest:
            raise KeyConfigError(f"{source}: no tokens")
        return cls(by_digest, source)


def dev_token_file(settings: Settings) -> Path:
    return settings.home / "keys" / "codec-tokens.json"


def load_staff_tokens(settings: Settings) -> StaffTokens:
    inline = os.environ.get("IDFLOW_CODEC_TOKENS")
    if inline:
        pairs = {}
        for item in filter(None, (part.strip() for part in inline.split(","))):
            staff, sep, token = item.partition(":")
            if not sep:
                raise KeyConfigError("IDFLOW_CODEC_TOKENS: each entry must be staff-id:token")
            pairs[staff] = token
        return StaffTokens.from_pairs(pairs, "IDFLOW_CODEC_TOKENS")
    configured = os.environ.get("IDFLOW_CODEC_TOKEN_FILE")
    path = Path(configured).expanduser() if configured else dev_token_file(settings)
    if not configured and not path.exists():
        raise KeyConfigError(
            "no codec server tokens configured: set IDFLOW_CODEC_TOKENS (staff-id:token,...) or "
            f"IDFLOW_CODEC_TOKEN_FILE, or run `idflow encryption init` for dev tokens in {path}"
        )
    document = read_private_json(path, "codec token")
    if not isinstance(document, dict):
        raise KeyConfigError(f"{path}: expected JSON {{staff-id: token}}")
    return StaffTokens.from_pairs(document, str(path))


def ensure_dev_tokens(settings: Settings) -> dict[str, str]:
    """The dev stack's tokens (created on first use): staff id -> token."""
    path = dev_token_file(settings)
    if not path.exists():
        fresh = {DEV_CLI: secrets.token_urlsafe(32), DEV_WEB_UI: secrets.token_urlsafe(32)}
        write_private_json(path, fresh, exclusive=True)
    return dict(read_private_json(path, "codec token"))
