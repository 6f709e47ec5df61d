"""P-256 public keys as JWK (RFC 7517/7518) and their RFC 7638 thumbprints."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from . import es256

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class JwkError(ValueError):
    """Not a P-256 public JWK (the message never quotes the key)."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url, as JOSE uses it."""
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def to_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    try:
        x, y = es256.coordinates(key)
    except ValueError as err:
        raise JwkError(str(err)) from None
    return {"kty": "EC", "crv": "P-256", "x": b64url_encode(x), "y": b64url_encode(y)}


def from_jwk(jwk: Any) -> ec.EllipticCurvePublicKey:
    """The public key of a P-256 JWK; refuses other curves, key types and private keys."""
    if not isinstance(jwk, Mapping):
        raise JwkError("the key is not a JWK object")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise JwkError("the key is not an EC key on P-256")
    if "d" in jwk:
        raise JwkError("the JWK holds a private key")
    try:
        x, y = b64url_decode(jwk.get("x")), b64url_decode(jwk.get("y"))  # type: ignore[arg-type]
        return es256.public_key(x, y)
    except ValueError as err:
        raise JwkError(f"the JWK coordinates are not a P-256 point ({err})") from None


def thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK SHA-256 thumbprint, base64url: a non-personal id of the device key."""
    jwk = to_jwk(key)
    canonical = json.dumps(
        {name: jwk[name] for name in ("crv", "kty", "x", "y")}, separators=(",", ":")
    )
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())
