"""AES-256-GCM encryption of every Temporal payload, bound to its workflow, with key rotation.

Each payload the client and workers send (workflow and activity inputs and
results, queries, updates, heartbeat details, memo, failure messages and
stack traces) is replaced by one whose data is::

    nonce (12 bytes) || AES-256-GCM(key, serialized original payload [zlib-compressed])

and whose metadata says only how to undo it: ``encoding: binary/encrypted``,
``encryption-key-id``, ``encryption-cipher``, ``idflow-workflow-id`` and, when
it paid, ``idflow-compression: zlib``. The metadata is bound to the ciphertext
as associated data, so it cannot be swapped. New payloads use the ring's
current key; any key in the ring decrypts (rotation without downtime).

Fail closed (``Binding.STRICT``, what clients and workers use):

- a payload that is not encrypted is refused: someone who can write to
  Temporal but holds no key cannot forge a ``{"score": 0.999}`` result;
- the ciphertext is bound to the workflow it belongs to: Temporal tells the
  codec which workflow a payload is for (its serialization context), the
  encoder writes that id into the associated data, and the decoder refuses a
  payload made for another workflow (a result copied from another
  verification's history) or for none.

``Binding.ANY_WORKFLOW`` (the codec server, and replay of saved histories,
which read what is recorded and act on nothing) accepts any payload that
authenticates under our keys, including the unbound format of histories
recorded before binding (associated data ``idflow-payload/v1``).

Search attributes are not payloads of the codec: they stay plaintext and hold
no personal data (``workflows.search_attributes``).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
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
    SerializationContext,
    WithSerializationContext,
)

from settings import Settings

from .keys import PAYLOAD, KeyRing, load_key_ring

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
META_ENCODING = "encoding"
META_KEY_ID = "encryption-key-id"
META_CIPHER = "encryption-cipher"
META_COMPRESSION = "idflow-compression"
META_WORKFLOW_ID = "idflow-workflow-id"
ZLIB = b"zlib"

NONCE_BYTES = 12
# Compress only where it pays: small payloads rarely shrink, and a gain
# under 10% is not worth the CPU on every decode.
COMPRESS_MIN_BYTES = 256
COMPRESS_MIN_GAIN = 0.10
# Temporal refuses payloads over ~2 MB, so nothing legitimate inflates past this.
MAX_DECOMPRESSED_BYTES = 8 * 1024 * 1024


class PayloadDecryptionError(Exception):
    """A refused payload: not encrypted, tampered, truncated, a wrong key, another workflow's."""


class Binding(enum.Enum):
    STRICT = "strict"  # encrypted, and made for the workflow the context names
    ANY_WORKFLOW = "any-workflow"  # encrypted under our keys, for any (or no) workflow


class PayloadEncryptionCodec(PayloadCodec, WithSerializationContext):
    def __init__(
        self, ring: KeyRing, binding: Binding = Binding.STRICT, workflow_id: str | None = None
    ) -> None:
        self.ring = ring
        self.binding = binding
        self.workflow_id = workflow_id  # from the serialization context; None outside one
        self._ciphers = {kid: AESGCM(key) for kid, key in ring.keys.items()}

    def with_context(self, context: SerializationContext) -> PayloadEncryptionCodec:
        bound = copy.copy(self)
        bound.workflow_id = getattr(context, "workflow_id", None)
        return bound

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
        workflow_id = (self.workflow_id or "").encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[kid].encrypt(
            nonce, plaintext, _associated_data(kid, compression, workflow_id)
        )
        metadata = {
            META_ENCODING: ENCODING,
            META_KEY_ID: kid.encode(),
            META_CIPHER: CIPHER,
            META_WORKFLOW_ID: workflow_id,
        }
        if compression:
            metadata[META_COMPRESSION] = compression
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get(META_ENCODING) != ENCODING:
            raise PayloadDecryptionError("payload is not encrypted: refused")
        kid = payload.metadata.get(META_KEY_ID, b"").decode("ascii", "replace")
        if payload.metadata.get(META_CIPHER, CIPHER) != CIPHER:
            raise PayloadDecryptionError(
                f"payload cipher {payload.metadata[META_CIPHER]!r} unsupported"
            )
        self.ring.get(kid)  # raises UnknownKeyId naming the missing id
        compression = payload.metadata.get(META_COMPRESSION, b"")
        if compression not in (b"", ZLIB):
            raise PayloadDecryptionError(f"payload compression {compression!r} unsupported")
        workflow_id = self._check_binding(payload)
        data = payload.data
        try:
            plaintext = self._ciphers[kid].decrypt(
                data[:NONCE_BYTES],
                data[NONCE_BYTES:],
                _associated_data(kid, compression, workflow_id),
            )
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key {kid!r} does not authenticate: tampered or truncated"
            ) from None
        if compression:
            plaintext = _inflate(plaintext)
        return Payload.FromString(plaintext)

    def _check_binding(self, payload: Payload) -> bytes | None:
        """The workflow id the payload is bound to (None: the unbound v1 format), if acceptable."""
        if META_WORKFLOW_ID not in payload.metadata:
            if self.binding is Binding.STRICT:
                raise PayloadDecryptionError("payload is not bound to a workflow: refused")
            return None
        bound = payload.metadata[META_WORKFLOW_ID]
        if self.binding is Binding.STRICT and bound != (self.workflow_id or "").encode():
            raise PayloadDecryptionError(
                "payload was encrypted for another workflow than the one it is used in: refused"
            )
        return bound


def _associated_data(kid: str, compression: bytes, workflow_id: bytes | None) -> bytes:
    if workflow_id is None:  # histories recorded before payloads were bound
        return b"idflow-payload/v1|" + kid.encode() + b"|" + compression
    return b"idflow-payload/v2|" + kid.encode() + b"|" + compression + b"|" + workflow_id


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_DECOMPRESSED_BYTES)
    if inflater.unconsumed_tail:
        raise PayloadDecryptionError(f"payload inflates past {MAX_DECOMPRESSED_BYTES} bytes")
    return out


def data_converter(settings: Settings, binding: Binding = Binding.STRICT) -> DataConverter:
    """Temporal's default conversion plus the encrypting codec and encrypted failures.

    ``DefaultFailureConverterWithEncodedAttributes`` moves failure messages and
    stack traces into an encoded payload, so the codec encrypts them too.
    """
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=PayloadEncryptionCodec(load_key_ring(settings, PAYLOAD), binding),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
