"""ECDSA P-256 with SHA-256, signatures as raw ``r || s`` (COSE and JWS both use it).

cryptography speaks DER signatures; these two functions are the only place
that converts, so no caller handles signature encodings.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

COORDINATE_BYTES = 32
SIGNATURE_BYTES = 2 * COORDINATE_BYTES


def is_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bool:
    return isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(
        key.curve, ec.SECP256R1
    )


def coordinates(key: ec.EllipticCurvePublicKey) -> tuple[bytes, bytes]:
    """The 32-byte big-endian x and y of a P-256 public key (as COSE_Key and JWK carry them)."""
    if not is_p256(key):
        raise ValueError("only P-256 keys are supported")
    numbers = key.public_numbers()
    return numbers.x.to_bytes(COORDINATE_BYTES, "big"), numbers.y.to_bytes(COORDINATE_BYTES, "big")


def public_key(x: bytes, y: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key at (x, y); ValueError unless both are 32 bytes and on the curve."""
    if len(x) != COORDINATE_BYTES or len(y) != COORDINATE_BYTES:
        raise ValueError("coordinates must be 32 bytes each")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    return numbers.public_key()  # raises ValueError for a point off the curve


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """The 64-byte ``r || s`` ES256 signature of ``data``."""
    if not is_p256(key):
        raise ValueError("ES256 needs a P-256 private key")
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(COORDINATE_BYTES, "big") + s.to_bytes(COORDINATE_BYTES, "big")


def verify(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (raw ``r || s``) is a valid ES256 signature of ``data``."""
    if not is_p256(key) or len(signature) != SIGNATURE_BYTES:
        return False
    r = int.from_bytes(signature[:COORDINATE_BYTES], "big")
    s = int.from_bytes(signature[COORDINATE_BYTES:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
