"""Proof of possession of the device key: every way it can fail, through the issuer.

Each failure must raise DEVICE_PROOF_INVALID naming the check, never the key
or the nonce, and must not issue anything.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import Session

from domain.errors import DeviceProofInvalid
from domain.reasons import ReasonCode
from mdoc import holder, jwk
from mdoc.proof import PROOF_TYP
from store import credentials
from tests.support.mdoc import ISSUER_ID


def _with_proof(request, proof_jwt: str):
    return dataclasses.replace(
        request, device=dataclasses.replace(request.device, proof_jwt=proof_jwt)
    )


def _nonce(issuance, verification_id: str) -> str:
    """The nonce the request fixture handed out (read back as the device received it)."""
    with Session(issuance.engine) as session:
        return session.get(credentials.CredentialNonce, verification_id).nonce


def _refused(issuance, request, message: str) -> DeviceProofInvalid:
    with pytest.raises(DeviceProofInvalid, match=message) as refused:
        issuance.issuer.issue(request)
    error = refused.value
    assert error.reason is ReasonCode.DEVICE_PROOF_INVALID
    text = str(error)
    key = request.device.public_jwk
    assert (
        key["x"] not in text
        and key["y"] not in text
        and _nonce(issuance, request.verification_id) not in text
    )
    assert credentials.find_issued(issuance.engine, request.verification_id) is None
    return error


def _proof(key, nonce, header=None, payload=None):
    """A proof JWT with some header or payload fields changed."""
    base_header = {"typ": PROOF_TYP, "alg": "ES256", "jwk": jwk.to_jwk(key.public_key())}
    base_payload = {"aud": ISSUER_ID, "iat": int(time.time()), "nonce": nonce}
    return holder.compact_jws(key, base_header | (header or {}), base_payload | (payload or {}))


def test_a_valid_proof_issues(issuance):
    credential = issuance.issuer.issue(issuance.request("v-ok"))

    assert credential.device_key_thumbprint == jwk.thumbprint(
        issuance.device_keys["v-ok"].public_key()
    )


def test_wrong_signature(issuance):
    request = issuance.request("v-1")
    other = holder.new_device_key()
    # Signed by another key, but claiming the device key in its header.
    forged = holder.compact_jws(
        other,
        {"typ": PROOF_TYP, "alg": "ES256", "jwk": request.device.public_jwk},
        {"aud": ISSUER_ID, "iat": int(time.time()), "nonce": _nonce(issuance, "v-1")},
    )
    _refused(issuance, _with_proof(request, forged), "signature does not verify")


def test_wrong_nonce(issuance):
    request = issuance.request("v-1")
    proof = _proof(issuance.device_keys["v-1"], "a-nonce-we-never-issued")
    _refused(issuance, _with_proof(request, proof), "nonce was not issued for this verification")


def test_nonce_of_another_verification(issuance):
    request = issuance.request("v-1")
    issuance.request("v-2")
    proof = _proof(issuance.device_keys["v-1"], _nonce(issuance, "v-2"))
    _refused(issuance, _with_proof(request, proof), "nonce was not issued for this verification")


def test_replaced_nonce_is_no_longer_valid(issuance):
    request = issuance.request("v-1")
    credentials.create_nonce(issuance.engine, "v-1")  # the client asked for a fresh one
    _refused(issuance, request, "nonce was not issued for this verification")


def test_reused_nonce(issuance):
    request = issuance.request("v-1")
    issuance.issuer.issue(request)
    # Same verification and nonce, another proof (e.g. a replay with a fresh iat).
    again = _proof(
        issuance.device_keys["v-1"], _nonce(issuance, "v-1"), payload={"iat": int(time.time()) + 1}
    )
    with pytest.raises(DeviceProofInvalid, match="nonce was already used by another proof"):
        issuance.issuer.issue(_with_proof(request, again))
    with pytest.raises(ValueError, match="already used"):
        credentials.create_nonce(issuance.engine, "v-1")


def test_stale_iat(issuance):
    stale = datetime.now(UTC) - timedelta(hours=1)
    request = issuance.request("v-1", issued_at=stale)
    _refused(issuance, request, "iat is stale")


def test_proof_made_long_after_the_nonce(issuance):
    request = issuance.request("v-1")
    late = int((datetime.now(UTC) + timedelta(minutes=11)).timestamp())
    proof = _proof(issuance.device_keys["v-1"], _nonce(issuance, "v-1"), payload={"iat": late})
    # Issued 11 minutes later, when the proof's iat is no longer in the future.
    with pytest.raises(
        DeviceProofInvalid, match="iat is stale: made more than 10 minutes after its nonce"
    ):
        issuance.issuer.issue(
            _with_proof(request, proof), now=datetime.now(UTC) + timedelta(minutes=12)
        )


def test_iat_in_the_future(issuance):
    request = issuance.request("v-1", issued_at=datetime.now(UTC) + timedelta(hours=1))
    _refused(issuance, request, "iat is in the future")


def test_wrong_aud(issuance):
    request = issuance.request("v-1")
    proof = _proof(
        issuance.device_keys["v-1"],
        _nonce(issuance, "v-1"),
        payload={"aud": "https://evil.example"},
    )
    _refused(issuance, _with_proof(request, proof), "aud is not this issuer")


def test_non_p256_key(issuance):
    request = issuance.request("v-1")
    p384 = ec.generate_private_key(ec.SECP384R1())
    numbers = p384.public_key().public_numbers()
    p384_jwk = {
        "kty": "EC",
        "crv": "P-384",
        "x": jwk.b64url_encode(numbers.x.to_bytes(48, "big")),
        "y": jwk.b64url_encode(numbers.y.to_bytes(48, "big")),
    }
    proof = _proof(issuance.device_keys["v-1"], _nonce(issuance, "v-1"), header={"jwk": p384_jwk})
    _refused(issuance, _with_proof(request, proof), "jwk header: the key is not an EC key on P-256")
    # And as the request's device key itself.
    request_p384 = dataclasses.replace(
        request, device=dataclasses.replace(request.device, public_jwk=p384_jwk)
    )
    _refused(issuance, request_p384, "device key: the key is not an EC key on P-256")


def test_private_key_in_jwk_is_refused(issuance):
    request = issuance.request("v-1")
    key = issuance.device_keys["v-1"]
    leaked = jwk.to_jwk(key.public_key()) | {
        "d": jwk.b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))
    }
    proof = _proof(key, _nonce(issuance, "v-1"), header={"jwk": leaked})
    error = _refused(issuance, _with_proof(request, proof), "holds a private key")
    assert leaked["d"] not in str(error)


def test_jwk_other_than_the_request_key(issuance):
    request = issuance.request("v-1")
    other = holder.new_device_key()
    proof = _proof(other, _nonce(issuance, "v-1"))  # valid proof, but for another key
    _refused(issuance, _with_proof(request, proof), "jwk is not the device key of the request")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"typ": "JWT"}, "typ must be openid4vci-proof\\+jwt"),
        ({"typ": None}, "typ must be openid4vci-proof\\+jwt"),
        ({"alg": "ES384"}, "alg must be ES256"),
        ({"alg": "none"}, "alg must be ES256"),
    ],
)
def test_wrong_typ_or_alg(issuance, header, message):
    request = issuance.request("v-1")
    proof = _proof(issuance.device_keys["v-1"], _nonce(issuance, "v-1"), header=header)
    _refused(issuance, _with_proof(request, proof), message)


@pytest.mark.parametrize("token", ["", "a.b", "not.base64!.x", "e30.e30.!!", "W10.e30.AA"])
def test_malformed_jwt(issuance, token):
    request = issuance.request("v-1")
    _refused(issuance, _with_proof(request, token), "proof JWT")


def test_identical_retry_passes_the_consumed_nonce(issuance):
    nonce = credentials.create_nonce(issuance.engine, "v-1")
    digest = "d" * 64

    issued_at = credentials.consume_nonce(issuance.engine, "v-1", nonce, digest)

    # The worker died after consuming: its retry carries the very same proof.
    assert credentials.consume_nonce(issuance.engine, "v-1", nonce, digest) == issued_at
    with pytest.raises(DeviceProofInvalid, match="already used"):
        credentials.consume_nonce(issuance.engine, "v-1", nonce, "e" * 64)


def test_request_without_device_key(issuance):
    request = dataclasses.replace(issuance.request("v-1"), device=None)
    with pytest.raises(DeviceProofInvalid, match="no device key to bind the credential to"):
        issuance.issuer.issue(request)


def test_unknown_critical_header_is_refused(issuance):
    request = issuance.request("v-1")
    nonce = _nonce(issuance, "v-1")
    critical = _proof(issuance.device_keys["v-1"], nonce, header={"crit": ["exp-policy"]})
    _refused(issuance, _with_proof(request, critical), "critical header extensions")
    # Refused before the nonce: the holder's proof without it still issues.
    issuance.issuer.issue(request)


def _malleated(token: str) -> str:
    """The same JWT with the ECDSA signature's other valid s (n - s): it verifies too."""
    signing_input, _, signature_b64 = token.rpartition(".")
    signature = jwk.b64url_decode(signature_b64)
    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    return f"{signing_input}.{jwk.b64url_encode(r + (order - s).to_bytes(32, 'big'))}"


def test_malleated_signature_does_not_lock_out_the_holders_proof(issuance):
    request = issuance.request("v-1")
    stolen = _with_proof(request, _malleated(request.device.proof_jwt))
    assert stolen.device.proof_jwt != request.device.proof_jwt

    # An attacker who saw the proof sends the malleated copy first: it is the same
    # proof (same header and payload, same device key), so it binds nothing else ...
    first = issuance.issuer.issue(stolen)
    # ... and the holder's own proof is not refused as "another proof".
    assert issuance.issuer.issue(request) == first


def test_stale_proof_does_not_burn_the_nonce(issuance):
    request = issuance.request("v-1")
    nonce = _nonce(issuance, "v-1")
    stale = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
    old = _proof(issuance.device_keys["v-1"], nonce, payload={"iat": stale})
    _refused(issuance, _with_proof(request, old), "iat is stale")

    with Session(issuance.engine) as session:
        assert session.get(credentials.CredentialNonce, "v-1").proof_digest is None
    # The holder's fresh proof over the same nonce still issues.
    assert issuance.issuer.issue(request).device_key_thumbprint
