"""Proof of possession of the holder's device key (OpenID4VCI proof JWT).

The device signs a JWT with the key the credential will be bound to::

    header  {"typ": "openid4vci-proof+jwt", "alg": "ES256", "jwk": <device public key>}
    payload {"aud": <our issuer id>, "iat": <seconds>, "nonce": <our one-time nonce>}

``check_proof`` does every check that needs no state; ``check_freshness``
then compares ``iat`` with the moment the nonce was handed out, and only a
fresh proof consumes the nonce (``store.credentials.consume_nonce``): a stale
proof must not burn the nonce the holder's real proof needs. Freshness is
measured against the nonce, not the clock at issuance: issuance may follow
a review days after the proof was made, and a retried activity must reach the
same verdict as its first attempt.

Every failure raises ``DeviceProofInvalid`` naming the check that failed,
never the key or any claim.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from domain.contracts import DeviceBinding
from domain.errors import DeviceProofInvalid

from . import es256, jwk

PROOF_TYP = "openid4vci-proof+jwt"
PROOF_ALG = "ES256"
CLOCK_SKEW = timedelta(seconds=60)  # device clocks run a little fast or slow
PROOF_WINDOW = timedelta(minutes=10)  # the device signs within this after receiving the nonce


@dataclass(frozen=True)
class Proof:
    """What a structurally valid, correctly signed proof asserts."""

    device_key: ec.EllipticCurvePublicKey
    nonce: str
    issued_at: datetime
    # sha256 of the signed header and payload, not of the signature: ECDSA
    # signatures are malleable ((r, s) and (r, n - s) both verify), so a copy with
    # the other s is the same proof, and must not lock the holder's own out.
    digest: str


def check_proof(binding: DeviceBinding | None, issuer_id: str, now: datetime) -> Proof:
    """Check the proof JWT against the request's device key and our issuer id."""
    if binding is None:
        raise DeviceProofInvalid("the request has no device key to bind the credential to")
    try:
        request_key = jwk.from_jwk(binding.public_jwk)
    except jwk.JwkError as err:
        raise DeviceProofInvalid(f"device key: {err}") from None
    header, payload, signing_input, signature = _decode(binding.proof_jwt)
    if header.get("typ") != PROOF_TYP:
        raise DeviceProofInvalid(f"proof JWT typ must be {PROOF_TYP}")
    if header.get("alg") != PROOF_ALG:
        raise DeviceProofInvalid(f"proof JWT alg must be {PROOF_ALG}")
    if "crit" in header:  # RFC 7515 4.1.11: we understand no extension, so none may be critical
        raise DeviceProofInvalid("proof JWT names critical header extensions this issuer lacks")
    try:
        proof_key = jwk.from_jwk(header.get("jwk"))
    except jwk.JwkError as err:
        raise DeviceProofInvalid(f"proof JWT jwk header: {err}") from None
    if jwk.thumbprint(proof_key) != jwk.thumbprint(request_key):
        raise DeviceProofInvalid("proof JWT jwk is not the device key of the request")
    if not es256.verify(proof_key, signing_input, signature):
        raise DeviceProofInvalid("proof JWT signature does not verify with the device key")
    if payload.get("aud") != issuer_id:
        raise DeviceProofInvalid("proof JWT aud is not this issuer")
    nonce = payload.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise DeviceProofInvalid("proof JWT has no nonce")
    iat = payload.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise DeviceProofInvalid("proof JWT iat is missing or not a number")
    try:
        issued_at = datetime.fromtimestamp(iat, UTC)
    except (OverflowError, OSError, ValueError):
        raise DeviceProofInvalid("proof JWT iat is out of range") from None
    if issued_at > now + CLOCK_SKEW:
        raise DeviceProofInvalid("proof JWT iat is in the future")
    digest = hashlib.sha256(signing_input).hexdigest()
    return Proof(proof_key, nonce, issued_at, digest)


def check_freshness(proof: Proof, nonce_issued_at: datetime) -> None:
    """The proof was made after its nonce was handed out and within ``PROOF_WINDOW``."""
    if proof.issued_at < nonce_issued_at - CLOCK_SKEW:
        raise DeviceProofInvalid("proof JWT iat is stale: older than its nonce")
    if proof.issued_at > nonce_issued_at + PROOF_WINDOW:
        raise DeviceProofInvalid(
            "proof JWT iat is stale: made more than "
            f"{PROOF_WINDOW.seconds // 60} minutes after its nonce"
        )


def _decode(token: Any) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise DeviceProofInvalid("proof JWT is not a compact JWS")
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        header = json.loads(jwk.b64url_decode(header_b64))
        payload = json.loads(jwk.b64url_decode(payload_b64))
        signature = jwk.b64url_decode(signature_b64)
    except ValueError:  # json and base64 errors both derive from ValueError
        raise DeviceProofInvalid("proof JWT is not base64url-encoded JSON") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise DeviceProofInvalid("proof JWT header and payload must be JSON objects")
    return header, payload, f"{header_b64}.{payload_b64}".encode("ascii"), signature
