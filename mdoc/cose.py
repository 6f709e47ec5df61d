"""COSE_Sign1 with ES256 and EC2 COSE_Keys (RFC 9052/9053), as ISO 18013-5 uses them.

Only what mdoc needs: one algorithm (ES256 on P-256), untagged COSE_Sign1
messages, attached or detached payloads, signatures as raw ``r || s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from . import cbor, es256

ALG_ES256 = -7
HEADER_ALG = 1
HEADER_X5CHAIN = 33

# COSE_Key labels (RFC 9053 §7.1) for an EC2 key on P-256.
KTY, KTY_EC2 = 1, 2
CRV, CRV_P256 = -1, 1
X, Y = -2, -3


class CoseError(ValueError):
    """A COSE structure is malformed or its signature does not verify."""


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1: ``[protected bstr, unprotected map, payload, signature]``."""

    protected: bytes
    unprotected: dict[Any, Any]
    payload: bytes | None  # None when detached
    signature: bytes

    def to_cbor(self) -> list[Any]:
        return [self.protected, self.unprotected, self.payload, self.signature]

    @property
    def protected_headers(self) -> dict[Any, Any]:
        headers = cbor.loads(self.protected) if self.protected else {}
        if not isinstance(headers, dict):
            raise CoseError("COSE_Sign1 protected header is not a map")
        return headers

    @classmethod
    def from_cbor(cls, value: Any) -> Sign1:
        """Parse an untagged COSE_Sign1 (ISO 18013-5 forbids the #6.18 tag)."""
        if not isinstance(value, (list, tuple)) or len(value) != 4:
            raise CoseError("COSE_Sign1 must be an untagged array of four items")
        protected, unprotected, payload, signature = value
        if not isinstance(protected, bytes) or not isinstance(unprotected, dict):
            raise CoseError("COSE_Sign1 headers have the wrong types")
        if payload is not None and not isinstance(payload, bytes):
            raise CoseError("COSE_Sign1 payload must be a byte string or nil")
        if not isinstance(signature, bytes):
            raise CoseError("COSE_Sign1 signature must be a byte string")
        return cls(protected, unprotected, payload, signature)


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    # Sig_structure for COSE_Sign1, with empty external_aad.
    return cbor.dumps(["Signature1", protected, b"", payload])


def sign_es256(
    key: ec.EllipticCurvePrivateKey,
    payload: bytes,
    unprotected: dict[Any, Any] | None = None,
    detached: bool = False,
) -> Sign1:
    """Sign ``payload``; with ``detached`` the message carries nil instead of it."""
    protected = cbor.dumps({HEADER_ALG: ALG_ES256})
    signature = es256.sign(key, _to_be_signed(protected, payload))
    return Sign1(protected, dict(unprotected or {}), None if detached else payload, signature)


def verify_es256(
    message: Sign1, key: ec.EllipticCurvePublicKey, detached_payload: bytes | None = None
) -> bytes:
    """Check an ES256 COSE_Sign1 and return the payload it covers."""
    if message.protected_headers.get(HEADER_ALG) != ALG_ES256:
        raise CoseError("COSE_Sign1 algorithm is not ES256 in the protected header")
    payload = message.payload if detached_payload is None else detached_payload
    if payload is None:
        raise CoseError("COSE_Sign1 payload is detached and none was given")
    if message.payload is not None and detached_payload is not None:
        raise CoseError("COSE_Sign1 carries a payload where a detached one was expected")
    if not es256.verify(key, _to_be_signed(message.protected, payload), message.signature):
        raise CoseError("COSE_Sign1 signature does not verify")
    return payload


def cose_key(key: ec.EllipticCurvePublicKey) -> dict[int, Any]:
    """The EC2 COSE_Key of a P-256 public key."""
    try:
        x, y = es256.coordinates(key)
    except ValueError as err:
        raise CoseError(f"device key: {err}") from None
    return {KTY: KTY_EC2, CRV: CRV_P256, X: x, Y: y}


def public_key_from_cose(value: Any) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of an EC2 COSE_Key; refuses anything else."""
    if not isinstance(value, dict) or value.get(KTY) != KTY_EC2 or value.get(CRV) != CRV_P256:
        raise CoseError("COSE_Key is not an EC2 key on P-256")
    x, y = value.get(X), value.get(Y)
    if not isinstance(x, bytes) or not isinstance(y, bytes):
        raise CoseError("COSE_Key coordinates must be byte strings")
    try:
        return es256.public_key(x, y)
    except ValueError as err:
        raise CoseError(f"COSE_Key: {err}") from None
