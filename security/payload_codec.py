"""AES-256-GCM encryption of every Temporal payload, with key rotation.

Each payload the client and workers send (workflow and activity inputs and
results, queries, updates, heartbeat details, memo, failure messages and
stack traces) is replaced by one whose data is::

    nonce (12 bytes) || AES-256-GCM(key, serialized original payload [zlib-compressed])

and whose metadata says only how to undo it: ``encoding: binary/encrypted``,
``encryption-key-id``, ``encryption-cipher`` and, when it paid,
``idflow-compression: zlib``. The metadata is bound to the ciphertext as
associated data, so it cannot be swapped. New payloads use the ring's current
key; any key in the ring decrypts (rotation without downtime).

Search attributes are not payloads of the codec: they stay plaintext and hold
no personal data (``workflows.search_attributes``).
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from settings import Settings

from .keys import PAYLOAD, KeyRing, load_key_ring

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
META_ENCODING = "encoding"
META_KEY_ID = "encryption-key-id"
META_CIPHER = "encryption-cipher"
META_COMPRESSION = "idflow-compression"
ZLIB = b"zlib"

NONCE_BYTES = 12
# Compress only where it pays: small payloads rarely shrink, and a gain
# under 10% is not worth the CPU on every decode.
COMPRESS_MIN_BYTES = 256
COMPRESS_MIN_GAIN = 0.10
# Temporal refuses payloads over ~2 MB, so nothing legitimate inflates past this.
MAX_DECOMPRESSED_BYTES = 8 * 1024 * 1024


class PayloadDecryptionError(Exception):
    """An encrypted payload cannot be decrypted: tampered, truncated or a wrong key."""


class PayloadEncryptionCodec(PayloadCodec):
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._ciphers = {kid: AESGCM(key) for kid, key in ring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        kid, _ = self.ring.current()
        plaintext = payload.SerializeToString()
        compression = b""
        if len(plaintext) >= COMPRESS_MIN_BYTES:
            packed = zlib.compress(plaintext, 6)
            if len(packed) <= len(plaintext) * (1 - COMPRESS_MIN_GAIN):
                plaintext, compression = packed, ZLIB
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(nonce, plaintext, _associated_data(kid, compression))
        metadata = {META_ENCODING: ENCODING, META_KEY_ID: kid.encode(), META_CIPHER: CIPHER}
        if compression:
            metadata[META_COMPRESSION] = compression
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get(META_ENCODING) != ENCODING:
            return payload  # never encrypted (e.g. written before the codec was configured)
        kid = payload.metadata.get(META_KEY_ID, b"").decode("ascii", "replace")
        if payload.metadata.get(META_CIPHER, CIPHER) != CIPHER:
            raise PayloadDecryptionError(
                f"payload cipher {payload.metadata[META_CIPHER]!r} unsupported"
            )
        self.ring.get(kid)  # raises UnknownKeyId naming the missing id
        compression = payload.metadata.get(META_COMPRESSION, b"")
        if compression not in (b"", ZLIB):
            raise PayloadDecryptionError(f"payload compression {compression!r} unsupported")
        data = payload.data
        try:
            plaintext = self._ciphers[kid].decrypt(
                data[:NONCE_BYTES], data[NONCE_BYTES:], _associated_data(kid, compression)
            )
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key {kid!r} does not authenticate: tampered or truncated"
            ) from None
        if compression:
            plaintext = _inflate(plaintext)
        return Payload.FromString(plaintext)


def _associated_data(kid: str, compression: bytes) -> bytes:
    return b"idflow-payload/v1|" + kid.encode() + b"|" + compression


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_DECOMPRESSED_BYTES)
    if inflater.unconsumed_tail:
        raise PayloadDecryptionError(f"payload inflates past {MAX_DECOMPRESSED_BYTES} bytes")
    return out


def data_converter(settings: Settings) -> DataConverter:
    """Temporal's default conversion plus the encrypting codec and encrypted failures.

    ``DefaultFailureConverterWithEncodedAttributes`` moves failure messages and
    stack traces into an encoded payload, so the codec encrypts them too.
    """
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=PayloadEncryptionCodec(load_key_ring(settings, PAYLOAD)),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
