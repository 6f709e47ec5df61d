"""Sign an mdoc: IssuerSignedItems, the Mobile Security Object, and IssuerSigned.

    IssuerSignedItemBytes = #6.24(bstr .cbor {digestID, random, elementIdentifier, elementValue})
    valueDigests[digestID] = SHA-256(IssuerSignedItemBytes)   -- the exact tagged bytes
    MobileSecurityObjectBytes = #6.24(bstr .cbor MSO)
    issuerAuth = COSE_Sign1 (untagged, ES256) over MobileSecurityObjectBytes,
                 the document signer certificate in x5chain (header 33)
    IssuerSigned = {"nameSpaces": {ns: [IssuerSignedItemBytes...]}, "issuerAuth": issuerAuth}

Digest ids are random and each item has a fresh 32-byte salt, so nothing in
the MSO reveals which elements exist or their values.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import cbor, cose, jwk
from .document import DIGEST_ALGORITHM, MDL_DOCTYPE, MDL_NAMESPACE, MSO_VERSION
from .keystore import DocumentSigner

SALT_BYTES = 32
_DIGEST_ID_LIMIT = 2**31  # digest ids are uints; random ones stay small in CBOR


class SignerUnavailable(RuntimeError):
    """The document signer cannot sign now (its certificate is not valid)."""


@dataclass(frozen=True)
class SignedMdoc:
    """The signed IssuerSigned bytes and the non-personal facts about them."""

    issuer_signed: bytes
    doc_type: str
    mso_digest: str  # sha256 hex of MobileSecurityObjectBytes
    device_key_thumbprint: str  # RFC 7638
    signed: datetime
    valid_from: datetime
    valid_until: datetime
    signer_serial: str


def sign_mdoc(
    elements: Mapping[str, Any],
    device_key: ec.EllipticCurvePublicKey,
    signer: DocumentSigner,
    signed: datetime,
    valid_until: datetime,
    doc_type: str = MDL_DOCTYPE,
    namespace: str = MDL_NAMESPACE,
) -> SignedMdoc:
    """Sign ``elements`` (identifier -> CBOR-ready value) bound to ``device_key``."""
    signed = signed.replace(microsecond=0)
    valid_until = valid_until.replace(microsecond=0)
    certificate = signer.certificate
    if not certificate.not_valid_before_utc <= signed <= certificate.not_valid_after_utc:
        raise SignerUnavailable(
            f"document signer {signer.serial} is not valid now: run `idflow keys rotate`"
        )
    if not signed < valid_until <= certificate.not_valid_after_utc:
        raise ValueError(
            "validUntil must follow the signing time and end within the signer certificate"
        )

    digest_ids = secrets.SystemRandom().sample(range(_DIGEST_ID_LIMIT), len(elements))
    items, digests = [], {}
    for digest_id, (identifier, value) in zip(digest_ids, elements.items(), strict=True):
        item = cbor.embed(
            {
                "digestID": digest_id,
                "random": secrets.token_bytes(SALT_BYTES),
                "elementIdentifier": identifier,
                "elementValue": value,
            }
        )
        digests[digest_id] = hashlib.sha256(cbor.dumps(item)).digest()
        items.append(item)

    mso = {
        "version": MSO_VERSION,
        "digestAlgorithm": DIGEST_ALGORITHM,
        "valueDigests": {namespace: digests},
        "deviceKeyInfo": {"deviceKey": cose.cose_key(device_key)},
        "docType": doc_type,
        "validityInfo": {
            "signed": cbor.tdate(signed),
            "validFrom": cbor.tdate(signed),
            "validUntil": cbor.tdate(valid_until),
        },
    }
    mso_bytes = cbor.embedded_bytes(mso)
    x5chain = certificate.public_bytes(serialization.Encoding.DER)
    issuer_auth = cose.sign_es256(signer.private_key, mso_bytes, {cose.HEADER_X5CHAIN: x5chain})
    issuer_signed = cbor.dumps(
        {"nameSpaces": {namespace: items}, "issuerAuth": issuer_auth.to_cbor()}
    )
    return SignedMdoc(
        issuer_signed=issuer_signed,
        doc_type=doc_type,
        mso_digest=hashlib.sha256(mso_bytes).hexdigest(),
        device_key_thumbprint=jwk.thumbprint(device_key),
        signed=signed,
        valid_from=signed,
        valid_until=valid_until,
        signer_serial=signer.serial,
    )
