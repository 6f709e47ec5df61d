"""Names and shared shapes of an ISO/IEC 18013-5 mDL document."""

from __future__ import annotations

from typing import Any

import cbor2

from . import cbor

MDL_DOCTYPE = "org.iso.18013.5.1.mDL"
MDL_NAMESPACE = "org.iso.18013.5.1"
MSO_VERSION = "1.0"
DIGEST_ALGORITHM = "SHA-256"


def device_authentication_bytes(
    session_transcript: Any, doc_type: str, device_namespaces: cbor2.CBORTag
) -> bytes:
    """``DeviceAuthenticationBytes``: what the holder's device key signs in a presentation.

    ``#6.24(bstr .cbor ["DeviceAuthentication", SessionTranscript, DocType,
    DeviceNameSpacesBytes])`` (18013-5 §9.1.3.4).
    """
    return cbor.embedded_bytes(
        ["DeviceAuthentication", session_transcript, doc_type, device_namespaces]
    )
