"""Envelope-encrypted blob store: confidentiality, integrity, master key rotation, shredding."""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from domain.errors import BlobIntegrityError, BlobPurged, ImageUnreadable
from security.keys import BLOB, KeyRing, UnknownKeyId, new_key, parse_inline
from store import data_keys
from store.audit import utcnow
from store.blobs import EncryptedBlobStore
from store.engine import get_engine
from store.envelope import DataKeys

K1 = f"m1:{new_key()}"
K2 = f"m2:{new_key()}"


def _ring(value: str) -> KeyRing:
    return parse_inline(BLOB, value, "test")


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return get_engine(f"sqlite:///{tmp_path / 'idflow.db'}")


def _store(root: Path, engine: Engine, ring: str = K1) -> EncryptedBlobStore:
    return EncryptedBlobStore(root / "blobs", DataKeys(engine, _ring(ring), timedelta(days=30)))


def test_blobs_are_ciphertext_on_disk_and_round_trip(
    tmp_path: Path, engine: Engine, photo: Callable[[str], bytes]
) -> None:
    store = _store(tmp_path, engine)
    image = photo("obama.jpg")
    ref = store.put("v-1", image, "image/jpeg")
    on_disk = (tmp_path / "blobs" / "v-1" / ref.blob_id).read_bytes()
    assert image[1000:1064] not in on_disk and b"JFIF" not in on_disk
    assert store.get("v-1", ref) == image
    row = data_keys.get(engine, "v-1")
    assert row is not None and row.master_key_id == "m1" and len(row.wrapped_key or b"") == 60


def test_one_data_key_per_verification_even_under_concurrent_first_writes(
    tmp_path: Path, engine: Engine
) -> None:
    keys = DataKeys(engine, _ring(K1), timedelta(days=30))
    with ThreadPoolExecutor(8) as pool:
        created = set(pool.map(lambda _: keys.for_writing("v-race"), range(16)))
    assert len(created) == 1
    assert keys.for_writing("v-other") not in created


def test_tampered_moved_or_mislabelled_blobs_fail_integrity(tmp_path: Path, engine: Engine) -> None:
    store = _store(tmp_path, engine)
    ref = store.put("v-1", b"selfie bytes" * 100, "image/jpeg")
    other = store.put("v-2", b"x", "image/png")
    path = tmp_path / "blobs" / "v-1" / ref.blob_id
    with pytest.raises(BlobIntegrityError, match="sha256"):
        store.get("v-1", replace(ref, sha256="0" * 64))
    with pytest.raises(BlobIntegrityError, match="does not authenticate"):
        store.get("v-1", replace(ref, media_type="image/png"))
    shutil.copy(path, tmp_path / "blobs" / "v-2" / ref.blob_id)  # moved to another verification
    with pytest.raises(BlobIntegrityError, match="does not authenticate"):
        store.get(
            "v-2", replace(other, blob_id=ref.blob_id, sha256=ref.sha256, media_type="image/jpeg")
        )
    sealed = bytearray(path.read_bytes())
    sealed[40] ^= 0x01
    path.write_bytes(bytes(sealed))
    with pytest.raises(BlobIntegrityError, match="does not authenticate"):
        store.get("v-1", ref)
    with pytest.raises(ImageUnreadable, match="does not exist"):
        store.get("v-1", replace(ref, blob_id="0" * 32))


def test_master_key_rotation_keeps_old_data_readable_and_rewrap_retires_the_old_key(
    tmp_path: Path, engine: Engine
) -> None:
    ref = _store(tmp_path, engine, K1).put("v-old", b"written under master key 1", "image/jpeg")
    rotated = _store(tmp_path, engine, f"{K2},{K1}")  # m2 current, m1 still known
    assert rotated.get("v-old", ref) == b"written under master key 1"
    rotated.put("v-new", b"written under master key 2", "image/jpeg")
    assert data_keys.get(engine, "v-new").master_key_id == "m2"  # type: ignore[union-attr]

    with pytest.raises(UnknownKeyId, match="'m1' is not configured"):
        _store(tmp_path, engine, K2).get("v-old", ref)  # m1 dropped before re-wrapping
    assert rotated.keys.rewrap() == 1
    assert rotated.keys.rewrap() == 0
    assert _store(tmp_path, engine, K2).get("v-old", ref) == b"written under master key 1"


def test_delete_shreds_the_key_so_even_saved_copies_stay_unreadable(
    tmp_path: Path, engine: Engine
) -> None:
    store = _store(tmp_path, engine)
    ref = store.put("v-1", b"portrait", "image/jpeg")
    store.put("v-1", b"document", "image/jpeg")
    backup = (tmp_path / "blobs" / "v-1" / ref.blob_id).read_bytes()

    assert store.delete_verification("v-1", reason="retention period ended") == 2
    assert not (tmp_path / "blobs" / "v-1").exists()
    row = data_keys.get(engine, "v-1")
    assert (
        row is not None and row.wrapped_key is None and row.purge_reason == "retention period ended"
    )

    (tmp_path / "blobs" / "v-1").mkdir()
    (tmp_path / "blobs" / "v-1" / ref.blob_id).write_bytes(backup)  # a restored backup copy
    with pytest.raises(BlobPurged, match=r"purged on .* can never be read again") as purged:
        store.get("v-1", ref)
    assert purged.value.reason.value == "INPUT_PURGED"
    with pytest.raises(BlobPurged):
        store.put("v-1", b"new personal data after purge", "image/jpeg")
    assert store.delete_verification("v-1") == 1  # idempotent: removes the restored copy
    assert data_keys.get(engine, "v-1").purge_reason == "retention period ended"  # type: ignore[union-attr]


def test_a_shredded_key_leaves_no_copy_in_the_database_files(
    tmp_path: Path, engine: Engine
) -> None:
    store = _store(tmp_path, engine)
    store.put("v-1", b"portrait", "image/jpeg")
    store.put("v-2", b"someone else's portrait", "image/jpeg")
    wrapped = data_keys.get(engine, "v-1").wrapped_key  # type: ignore[union-attr]
    assert wrapped is not None
    idle_reader = sqlite3.connect(tmp_path / "idflow.db")  # another process's idle connection
    files = [tmp_path / "idflow.db", tmp_path / "idflow.db-wal"]
    assert any(wrapped in path.read_bytes() for path in files if path.exists())

    store.delete_verification("v-1", reason="purged on request")

    for path in files:
        if path.exists():
            assert wrapped not in path.read_bytes(), f"{path.name} still holds the shredded key"
    assert data_keys.get(engine, "v-2").wrapped_key is not None  # type: ignore[union-attr]
    idle_reader.close()


def test_purging_an_unknown_verification_leaves_a_tombstone(tmp_path: Path, engine: Engine) -> None:
    store = _store(tmp_path, engine)
    assert store.delete_verification("v-never-written") == 0
    with pytest.raises(BlobPurged):
        store.put("v-never-written", b"late upload", "image/jpeg")


def test_path_escaping_ids_and_bad_media_types_are_refused(tmp_path: Path, engine: Engine) -> None:
    store = _store(tmp_path, engine)
    for bad_id in ("..", "a/b", ""):
        with pytest.raises(ValueError, match="invalid id"):
            store.put(bad_id, b"x", "image/jpeg")
    with pytest.raises(ValueError, match="invalid media type"):
        store.put("v-1", b"x", "image/jpeg\n../x")


@pytest.mark.postgres
def test_keys_retention_and_shredding_on_postgresql(tmp_path: Path) -> None:
    url = os.environ.get("IDFLOW_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("IDFLOW_TEST_POSTGRES_URL is not set (e.g. .ci/run sets it)")
    engine = get_engine(url)
    store = _store(tmp_path, engine)
    expired, kept = f"v-pg-{uuid.uuid4().hex}", f"v-pg-{uuid.uuid4().hex}"
    ref = store.put(expired, b"portrait", "image/jpeg")
    store.put(kept, b"portrait", "image/jpeg")
    assert data_keys.set_retain_until(engine, expired, utcnow() - timedelta(seconds=1))
    due = data_keys.expired(engine, utcnow(), limit=10_000)
    assert expired in due and kept not in due
    assert store.delete_verification(expired, reason="retention period ended") == 1
    with pytest.raises(BlobPurged, match="retention period ended"):
        store.get(expired, ref)
    assert expired not in data_keys.expired(engine, utcnow(), limit=10_000)
