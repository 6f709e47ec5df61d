"""Envelope encryption for the blob store: per-verification data keys under a master key.

- Each verification gets one random AES-256 data key the first time one of
  its blobs is written. The key is stored only wrapped: AES-256-GCM under the
  current blob master key, with the verification id as associated data (a
  wrapped key copied to another row does not unwrap). See ``store.data_keys``.
- Each blob is AES-256-GCM under its verification's data key, with the
  verification id, blob id and media type as associated data: a blob moved to
  another name, or relabelled, does not decrypt.
- Destroying the wrapped key (``DataKeys.shred``) is crypto-shredding: every
  copy of the verification's blobs becomes unreadable for good, and reads say
  so with ``BlobPurged``.
- Master key rotation: make a new master key current (``security.keys``);
  old data keys stay readable through the old master key, and
  ``DataKeys.rewrap`` moves them to the current one so the old can be dropped.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from domain.errors import BlobIntegrityError, BlobPurged, ImageUnreadable
from security.config import SecurityConfig
from security.keys import BLOB, KeyRing, load_key_ring
from settings import Settings
from store import data_keys
from store.audit import utcnow
from store.data_keys import DataKeyRecord
from store.engine import get_engine

NONCE_BYTES = 12
DATA_KEY_BYTES = 32
BLOB_MAGIC = b"IDFB\x01"  # idflow blob, format 1: magic || nonce || ciphertext+tag


def _wrap_aad(verification_id: str) -> bytes:
    return b"idflow-data-key/v1|" + verification_id.encode()


def blob_aad(verification_id: str, blob_id: str, media_type: str) -> bytes:
    return f"idflow-blob/v1|{verification_id}|{blob_id}|{media_type}".encode()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return BLOB_MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes, what: str) -> bytes:
    """Decrypt a sealed blob; ``BlobIntegrityError`` naming ``what`` if it does not authenticate."""
    header = len(BLOB_MAGIC) + NONCE_BYTES
    if not sealed.startswith(BLOB_MAGIC) or len(sealed) < header + 16:
        raise BlobIntegrityError(f"{what} is not an idflow encrypted blob (format {BLOB_MAGIC!r})")
    try:
        return AESGCM(key).decrypt(sealed[len(BLOB_MAGIC) : header], sealed[header:], aad)
    except InvalidTag:
        raise BlobIntegrityError(
            f"{what} does not authenticate under its verification's data key: "
            f"tampered, truncated or moved"
        ) from None


class DataKeys:
    """Get, create, destroy and re-wrap the per-verification data keys."""

    def __init__(self, engine: Engine, master: KeyRing, retention: timedelta) -> None:
        self.engine = engine
        self.master = master
        self.retention = retention

    def for_writing(self, verification_id: str) -> bytes:
        """The verification's data key, created on first use; ``BlobPurged`` once shredded."""
        row = data_keys.get(self.engine, verification_id)
        if row is None:
            kid, master = self.master.current()
            key = secrets.token_bytes(DATA_KEY_BYTES)
            nonce = os.urandom(NONCE_BYTES)
            wrapped = nonce + AESGCM(master).encrypt(nonce, key, _wrap_aad(verification_id))
            row = data_keys.insert_if_absent(
                self.engine,
                DataKeyRecord(
                    verification_id=verification_id,
                    master_key_id=kid,
                    wrapped_key=wrapped,
                    retain_until=utcnow() + self.retention,
                ),
            )
        return self._unwrap(row)

    def for_reading(self, verification_id: str) -> bytes:
        row = data_keys.get(self.engine, verification_id)
        if row is None:
            raise ImageUnreadable(f"verification {verification_id} has no stored blobs")
        return self._unwrap(row)

    def shred(self, verification_id: str, reason: str) -> bool:
        """Destroy the data key for good; False if it was already destroyed."""
        return data_keys.destroy(self.engine, verification_id, reason, utcnow())

    def rewrap(self) -> int:
        """Re-wrap every live data key under the current master key; returns how many moved."""
        kid, master = self.master.current()
        moved = 0
        for row in data_keys.live_wrapped_by_other_than(self.engine, kid):
            key = self._unwrap(row)
            nonce = os.urandom(NONCE_BYTES)
            wrapped = nonce + AESGCM(master).encrypt(nonce, key, _wrap_aad(row.verification_id))
            assert row.master_key_id is not None
            moved += data_keys.replace_wrapping(
                self.engine, row.verification_id, row.master_key_id, kid, wrapped
            )
        return moved

    def _unwrap(self, row: DataKeyRecord) -> bytes:
        if row.purged_at is not None or row.wrapped_key is None or row.master_key_id is None:
            raise BlobPurged(
                f"the images and documents of verification {row.verification_id} were purged "
                f"on {row.purged_at:%Y-%m-%d %H:%M} UTC ({row.purge_reason}): their data key was "
                f"destroyed and they can never be read again"
                if row.purged_at is not None
                else f"verification {row.verification_id} has no data key"
            )
        master = self.master.get(row.master_key_id)
        wrapped = row.wrapped_key
        try:
            return AESGCM(master).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(row.verification_id)
            )
        except InvalidTag:
            raise BlobIntegrityError(
                f"the data key of verification {row.verification_id} does not unwrap under "
                f"master key {row.master_key_id!r}: tampered or moved"
            ) from None


def open_data_keys(settings: Settings) -> DataKeys:
    """The data keys of the configured database, under the configured blob master keys."""
    return DataKeys(
        get_engine(settings.database_url),
        load_key_ring(settings, BLOB),
        timedelta(days=SecurityConfig.from_env(settings).retention_days),
    )
