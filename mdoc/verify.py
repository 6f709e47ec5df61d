"""The verifier's side: every check a relying party makes on our mdoc.

``verify_issuer_signed`` checks an IssuerSigned against a trusted IACA:

- issuerAuth is an untagged ES256 COSE_Sign1 with the signer certificate in x5chain;
- certificate profiles (IACA and document signer), the chain to the IACA,
  and both certificates valid at the time of checking;
- the MSO signature, version, digest algorithm and docType;
- validityInfo: tdates in UTC without fractions, signed <= validFrom <= now < validUntil;
- every element's SHA-256 over its exact tag-24 bytes equals its valueDigest;
- issuing_country equals the signer certificate's C;
- optionally, deviceKeyInfo equals the device key the credential was requested for.

``verify_device_response`` additionally checks each document's deviceSignature
over DeviceAuthentication with the MSO's device key: the presentation came
from the device the credential is bound to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from . import cbor, certificates, cose, jwk
from .document import (
    DIGEST_ALGORITHM,
    MDL_DOCTYPE,
    MDL_NAMESPACE,
    MSO_VERSION,
    device_authentication_bytes,
)


class CredentialInvalid(ValueError):
    """The credential or presentation fails a check (the message says which)."""


@dataclass(frozen=True)
class VerifiedDocument:
    doc_type: str
    elements: dict[str, Any]  # the mDL namespace; cbor2 decodes full-dates to datetime.date
    device_key: ec.EllipticCurvePublicKey
    signer: x509.Certificate
    signed: datetime
    valid_from: datetime
    valid_until: datetime
    mso_digest: str


def verify_issuer_signed(
    issuer_signed: bytes | dict[str, Any],
    iaca: x509.Certificate,
    now: datetime | None = None,
    doc_type: str = MDL_DOCTYPE,
    device_key: ec.EllipticCurvePublicKey | None = None,
) -> VerifiedDocument:
    """Check an IssuerSigned (bytes, or decoded as inside a DeviceResponse)."""
    now = now or datetime.now(UTC)
    try:
        document = cbor.loads(issuer_signed) if isinstance(issuer_signed, bytes) else issuer_signed
        return _verify(document, iaca, now, doc_type, device_key)
    except (cbor.CborShapeError, cose.CoseError, certificates.CertificateProfileError) as err:
        raise CredentialInvalid(str(err)) from None
    except (KeyError, TypeError, AttributeError) as err:
        raise CredentialInvalid(f"IssuerSigned is malformed ({type(err).__name__})") from None


def _verify(
    document: dict[str, Any],
    iaca: x509.Certificate,
    now: datetime,
    doc_type: str,
    device_key: ec.EllipticCurvePublicKey | None,
) -> VerifiedDocument:
    issuer_auth = cose.Sign1.from_cbor(document["issuerAuth"])
    signer = _signer_certificate(issuer_auth)
    certificates.check_chain(signer, iaca, now)
    mso_bytes = cose.verify_es256(issuer_auth, signer.public_key())  # type: ignore[arg-type]
    mso = cbor.unembed(mso_bytes, "MobileSecurityObjectBytes")

    if mso["version"] != MSO_VERSION or mso["digestAlgorithm"] != DIGEST_ALGORITHM:
        raise CredentialInvalid("MSO must be version 1.0 with SHA-256 digests")
    if mso["docType"] != doc_type:
        raise CredentialInvalid(f"MSO docType is not {doc_type}")
    signed, valid_from, valid_until = (
        _tdate(mso["validityInfo"][name], name) for name in ("signed", "validFrom", "validUntil")
    )
    if not signed <= valid_from < valid_until:
        raise CredentialInvalid("MSO validityInfo is out of order")
    if not signer.not_valid_before_utc <= signed <= signer.not_valid_after_utc:
        raise CredentialInvalid("MSO was signed outside the signer certificate's validity")
    if now < valid_from:
        raise CredentialInvalid("MSO is not yet valid")
    if now >= valid_until:
        raise CredentialInvalid("MSO has expired (validUntil has passed)")

    bound_key = cose.public_key_from_cose(mso["deviceKeyInfo"]["deviceKey"])
    if device_key is not None and jwk.thumbprint(bound_key) != jwk.thumbprint(device_key):
        raise CredentialInvalid("MSO deviceKeyInfo is not the requested device key")

    elements = _checked_elements(document["nameSpaces"], mso["valueDigests"])
    if elements.get("issuing_country") != certificates.country(signer):
        raise CredentialInvalid("issuing_country differs from the signer certificate's country")
    return VerifiedDocument(
        doc_type=mso["docType"],
        elements=elements,
        device_key=bound_key,
        signer=signer,
        signed=signed,
        valid_from=valid_from,
        valid_until=valid_until,
        mso_digest=hashlib.sha256(mso_bytes).hexdigest(),
    )


def _signer_certificate(issuer_auth: cose.Sign1) -> x509.Certificate:
    if cose.HEADER_X5CHAIN in issuer_auth.protected_headers:
        chain = issuer_auth.protected_headers[cose.HEADER_X5CHAIN]
    else:
        chain = issuer_auth.unprotected.get(cose.HEADER_X5CHAIN)
    if isinstance(chain, (list, tuple)) and chain:
        chain = chain[0]  # the signer comes first; the IACA is never trusted from the message
    if not isinstance(chain, bytes):
        raise CredentialInvalid("issuerAuth has no x5chain (header 33) with the signer certificate")
    try:
        return x509.load_der_x509_certificate(chain)
    except ValueError:
        raise CredentialInvalid("x5chain does not hold a DER certificate") from None


def _tdate(value: Any, name: str) -> datetime:
    # cbor2 decodes #6.0 to an aware datetime; a fraction of a second shows as microseconds.
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise CredentialInvalid(f"MSO validityInfo.{name} is not a tdate (#6.0)")
    if value.microsecond or value.utcoffset() != UTC.utcoffset(None):
        raise CredentialInvalid(
            f"MSO validityInfo.{name} must be UTC without fractions of a second"
        )
    return value


def _checked_elements(namespaces: dict[str, Any], value_digests: dict[str, Any]) -> dict[str, Any]:
    if set(namespaces) != {MDL_NAMESPACE}:
        raise CredentialInvalid(f"IssuerSigned must hold exactly the {MDL_NAMESPACE} namespace")
    digests = value_digests.get(MDL_NAMESPACE)
    if not isinstance(digests, dict):
        raise CredentialInvalid(f"MSO has no valueDigests for {MDL_NAMESPACE}")
    elements: dict[str, Any] = {}
    seen: set[int] = set()
    for tagged in namespaces[MDL_NAMESPACE]:
        if not isinstance(tagged, cbor2.CBORTag):
            raise CredentialInvalid("IssuerSignedItem is not tagged as embedded CBOR (#6.24)")
        item = cbor.unembed(tagged, "IssuerSignedItem")
        digest_id, identifier = item["digestID"], item["elementIdentifier"]
        if digest_id in seen or identifier in elements:
            raise CredentialInvalid("IssuerSignedItems repeat a digestID or element")
        seen.add(digest_id)
        if not isinstance(item["random"], bytes) or len(item["random"]) < 16:
            raise CredentialInvalid("IssuerSignedItem salt is shorter than 16 bytes")
        if digests.get(digest_id) != hashlib.sha256(cbor.dumps(tagged)).digest():
            raise CredentialInvalid(f"element {identifier} does not match its digest in the MSO")
        elements[identifier] = item["elementValue"]
    return elements


def verify_device_response(
    response: bytes,
    iaca: x509.Certificate,
    session_transcript: Any,
    now: datetime | None = None,
    doc_type: str = MDL_DOCTYPE,
) -> list[VerifiedDocument]:
    """Check every document of a DeviceResponse, including its device signature."""
    try:
        decoded = cbor.loads(response)
        if decoded.get("version") != "1.0" or decoded.get("status") != 0:
            raise CredentialInvalid("DeviceResponse must be version 1.0 with status 0")
        documents = decoded["documents"]
        if not documents or any(doc["docType"] != doc_type for doc in documents):
            raise CredentialInvalid(f"DeviceResponse must present {doc_type} documents")
        return [_verify_presented(doc, iaca, session_transcript, now) for doc in documents]
    except (cbor.CborShapeError, cose.CoseError) as err:
        raise CredentialInvalid(str(err)) from None
    except (KeyError, TypeError, AttributeError) as err:
        raise CredentialInvalid(f"DeviceResponse is malformed ({type(err).__name__})") from None


def _verify_presented(
    document: dict[str, Any],
    iaca: x509.Certificate,
    session_transcript: Any,
    now: datetime | None,
) -> VerifiedDocument:
    verified = verify_issuer_signed(document["issuerSigned"], iaca, now, document["docType"])
    device_signed = document["deviceSigned"]
    signature = cose.Sign1.from_cbor(device_signed["deviceAuth"]["deviceSignature"])
    signed_bytes = device_authentication_bytes(
        session_transcript, verified.doc_type, device_signed["nameSpaces"]
    )
    try:
        cose.verify_es256(signature, verified.device_key, detached_payload=signed_bytes)
    except cose.CoseError as err:
        raise CredentialInvalid(f"deviceSignature: {err}") from None
    return verified
