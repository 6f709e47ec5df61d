"""Key rings: the symmetric keys idflow encrypts with, loaded from configuration.

Two rings, each for one purpose and never shared:

- ``payload``: AES-256 keys of the Temporal payload codec (``security.payload_codec``);
- ``blob``: AES-256 master keys that wrap the per-verification data keys of the
  blob store (``store.envelope``).

A ring has several keys, each with a key id (kid); new data is encrypted with
the *current* key, and any key in the ring decrypts. Rotating is: add a new
key and make it current everywhere, wait until nothing needs the old one,
then drop it (see ``rotate_key_file``).

Where a ring comes from, first match wins (``PURPOSE`` is ``PAYLOAD`` or ``BLOB``):

1. ``IDFLOW_<PURPOSE>_KEYS``: ``kid:base64key,kid:base64key``; the first is current.
2. ``IDFLOW_<PURPOSE>_KEY_FILE``: a JSON key file (below); it must exist.
3. ``<IDFLOW_HOME>/keys/<purpose>-keys.json`` if it exists: the dev stack's
   key file, written by ``ensure_dev_keys`` on first start.

Key file (mode 0600; refused when group or others may read it)::

    {"current": "k2", "keys": {"k2": "<base64 of 32 bytes>", "k1": "<base64>"}}

Keys never come from code: with none configured, loading fails and says how
to configure one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from settings import Settings

PAYLOAD = "payload"
BLOB = "blob"
PURPOSES = (PAYLOAD, BLOB)
KEY_BYTES = 32  # AES-256

_KID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class KeyConfigError(Exception):
    """Keys are missing, malformed or stored unsafely. Messages never quote key material."""


class UnknownKeyId(KeyConfigError):
    """Data names a key id the ring does not hold (dropped too early, or another deployment's)."""


@dataclass(frozen=True)
class KeyRing:
    purpose: str
    current_id: str
    keys: Mapping[str, bytes]
    source: str  # where it was loaded from, for messages

    def __post_init__(self) -> None:
        if self.current_id not in self.keys:
            raise KeyConfigError(
                f"{self.source}: current key id {self.current_id!r} is not in the ring"
            )

    def current(self) -> tuple[str, bytes]:
        return self.current_id, self.keys[self.current_id]

    def get(self, kid: str) -> bytes:
        try:
            return self.keys[kid]
        except KeyError:
            raise UnknownKeyId(
                f"{self.purpose} key id {kid!r} is not configured ({self.source}); "
                f"known ids: {', '.join(sorted(self.keys))}"
            ) from None


def _env_name(purpose: str, suffix: str) -> str:
    return f"IDFLOW_{purpose.upper()}_{suffix}"


def dev_key_file(settings: Settings, purpose: str) -> Path:
    return settings.home / "keys" / f"{purpose}-keys.json"


def load_key_ring(settings: Settings, purpose: str) -> KeyRing:
    """The ``purpose`` ring from configuration (see the module docstring for the order)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}")
    inline = os.environ.get(_env_name(purpose, "KEYS"))
    if inline:
        return parse_inline(purpose, inline, source=_env_name(purpose, "KEYS"))
    configured = os.environ.get(_env_name(purpose, "KEY_FILE"))
    if configured:
        return read_key_file(purpose, Path(configured).expanduser())
    default = dev_key_file(settings, purpose)
    if default.exists():
        return read_key_file(purpose, default)
    raise KeyConfigError(
        f"no {purpose} keys configured: set {_env_name(purpose, 'KEYS')} (kid:base64key,...) or "
        f"{_env_name(purpose, 'KEY_FILE')}, or create dev keys in {default.parent} with "
        f"`idflow encryption init` (`idflow dev` does it on first start)"
    )


def _decode_key(purpose: str, kid: str, text: str, source: str) -> bytes:
    if not _KID.fullmatch(kid):
        raise KeyConfigError(f"{source}: key id {kid!r} must match {_KID.pattern}")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"{source}: {purpose} key {kid!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise KeyConfigError(
            f"{source}: {purpose} key {kid!r} is {len(key)} bytes, must be {KEY_BYTES} (AES-256)"
        )
    return key


def parse_inline(purpose: str, value: str, source: str) -> KeyRing:
    """``kid:base64key,kid:base64key`` (newest first) -> ring whose current key is the first."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        kid, sep, text = item.partition(":")
        if not sep:
            raise KeyConfigError(f"{source}: each entry must be kid:base64key")
        if kid in keys:
            raise KeyConfigError(f"{source}: key id {kid!r} appears twice")
        keys[kid] = _decode_key(purpose, kid, text, source)
        order.append(kid)
    if not keys:
        raise KeyConfigError(f"{source}: no keys")
    return KeyRing(purpose, order[0], keys, source)


def read_private_json(path: Path, what: str) -> Any:
    """JSON from a secrets file that only its owner may read (refused otherwise)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyConfigError(f"{what} file {path} does not exist") from None
    if mode & 0o077:
        raise KeyConfigError(
            f"{what} file {path} has mode {mode & 0o777:o}; group and others must have "
            f"no access (chmod 600 {path})"
        )
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise KeyConfigError(f"{what} file {path} is not valid JSON") from None


def read_key_file(purpose: str, path: Path) -> KeyRing:
    source = str(path)
    document = read_private_json(path, f"{purpose} key")
    try:
        current = document["current"]
        entries = document["keys"]
        if not isinstance(current, str) or not isinstance(entries, dict):
            raise TypeError
    except (KeyError, TypeError):
        raise KeyConfigError(
            f'{path}: expected JSON {{"current": kid, "keys": {{kid: base64key}}}}'
        ) from None
    keys = {kid: _decode_key(purpose, kid, str(text), source) for kid, text in entries.items()}
    return KeyRing(purpose, current, keys, source)


def new_key_id() -> str:
    return datetime.now(UTC).strftime("k%Y%m%d%H%M%S-") + secrets.token_hex(2)


def new_key() -> str:
    """A fresh random AES-256 key, base64."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def write_private_json(path: Path, document: dict, exclusive: bool = False) -> bool:
    """Write ``document`` readable by the owner only; with ``exclusive``, only if ``path`` is new.

    The file appears whole (written aside, then renamed or linked in), so a
    process starting at the same time never reads half a key file. Returns
    False when ``exclusive`` and another process created it first.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # fails if it exists: first writer wins
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def ensure_dev_keys(settings: Settings) -> dict[str, Path]:
    """Create the dev key files under ``IDFLOW_HOME/keys`` unless they exist; returns their paths.

    Only for the dev stack and tests: production configures keys explicitly.
    Safe when several processes start at once: one file wins, all use it.
    """
    paths = {}
    for purpose in PURPOSES:
        path = dev_key_file(settings, purpose)
        if not path.exists():
            kid = f"dev-{purpose}-1"
            write_private_json(path, {"current": kid, "keys": {kid: new_key()}}, exclusive=True)
        paths[purpose] = path
    return paths


def rotate_key_file(path: Path, purpose: str) -> str:
    """Add a fresh key to the key file at ``path`` and make it current; returns its id.

    Older keys stay so that existing data stays readable.
    """
    ring = read_key_file(purpose, path)
    kid = new_key_id()
    entries = {k: base64.b64encode(v).decode() for k, v in ring.keys.items()}
    write_private_json(path, {"current": kid, "keys": {kid: new_key(), **entries}})
    return kid
