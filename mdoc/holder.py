"""The holder's side, for tests, demos and the CLI: a device key, its proof of
possession, and a presentation (DeviceResponse) signed with it.

A real wallet keeps the device key in secure hardware; here it is a P-256 key
in a PEM file (``idflow verify --device-key dev.pem``)::

    key = load_device_key(Path("dev.pem").read_bytes())
    binding = device_binding(key, draft.nonce, settings.issuer_id)  # -> DeviceBinding
    ...
    response = device_response(issuer_signed, key, session_transcript)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from domain.contracts import DeviceBinding

from . import cbor, cose, es256, jwk
from .document import device_authentication_bytes
from .proof import PROOF_ALG, PROOF_TYP


def new_device_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def device_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM of a (test or demo) device key, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_device_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM (PKCS#8 or SEC1); refuses other keys."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not es256.is_p256(key):
        raise ValueError("the device key must be a P-256 EC private key")
    return key


def compact_jws(
    key: ec.EllipticCurvePrivateKey, header: dict[str, Any], payload: dict[str, Any]
) -> str:
    """An ES256 JWS in compact serialisation."""
    signing_input = ".".join(
        jwk.b64url_encode(json.dumps(part, separators=(",", ":")).encode())
        for part in (header, payload)
    )
    return f"{signing_input}.{jwk.b64url_encode(es256.sign(key, signing_input.encode('ascii')))}"


def proof_jwt(
    key: ec.EllipticCurvePrivateKey, nonce: str, audience: str, issued_at: datetime | None = None
) -> str:
    """The OpenID4VCI proof JWT over ``nonce`` for the issuer ``audience``."""
    moment = issued_at or datetime.now(UTC)
    header = {"typ": PROOF_TYP, "alg": PROOF_ALG, "jwk": jwk.to_jwk(key.public_key())}
    return compact_jws(
        key, header, {"aud": audience, "iat": int(moment.timestamp()), "nonce": nonce}
    )


def device_binding(
    key: ec.EllipticCurvePrivateKey, nonce: str, audience: str, issued_at: datetime | None = None
) -> DeviceBinding:
    """What the caller passes to the verification: the device's public JWK and its proof."""
    return DeviceBinding(jwk.to_jwk(key.public_key()), proof_jwt(key, nonce, audience, issued_at))


def device_binding_from_pem(pem: bytes, nonce: str, audience: str) -> DeviceBinding:
    """``device_binding`` for a device key PEM file (``idflow verify --device-key``)."""
    return device_binding(load_device_key(pem), nonce, audience)


def device_response(
    issuer_signed: bytes, key: ec.EllipticCurvePrivateKey, session_transcript: Any
) -> bytes:
    """A DeviceResponse presenting the whole credential, with the device's signature.

    ``deviceSignature`` is a COSE_Sign1 with detached payload over
    DeviceAuthenticationBytes for ``session_transcript`` (which the verifier
    builds from its session, e.g. an OpenID4VP handover).
    """
    document = cbor.loads(issuer_signed)
    mso = cbor.unembed(cbor.loads(document["issuerAuth"][2]), "MobileSecurityObjectBytes")
    doc_type = mso["docType"]
    device_namespaces = cbor.embed({})  # no device-signed elements
    signature = cose.sign_es256(
        key,
        device_authentication_bytes(session_transcript, doc_type, device_namespaces),
        detached=True,
    )
    return cbor.dumps(
        {
            "version": "1.0",
            "documents": [
                {
                    "docType": doc_type,
                    "issuerSigned": document,
                    "deviceSigned": {
                        "nameSpaces": device_namespaces,
                        "deviceAuth": {"deviceSignature": signature.to_cbor()},
                    },
                }
            ],
            "status": 0,
        }
    )
