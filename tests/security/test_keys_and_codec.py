"""Key rings from configuration and the AES-256-GCM payload codec (no server needed)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    WorkflowSerializationContext,
)

from security import keys
from security.keys import KeyConfigError, UnknownKeyId
from security.payload_codec import (
    ENCODING,
    META_COMPRESSION,
    META_KEY_ID,
    META_WORKFLOW_ID,
    Binding,
    PayloadDecryptionError,
    PayloadEncryptionCodec,
    data_converter,
)
from settings import Settings


def _settings(home: Path) -> Settings:
    return Settings(
        home=home,
        model_cache=home / "models",
        blob_dir=home / "blobs",
        database_url=f"sqlite:///{home / 'idflow.db'}",
    )


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for purpose in keys.PURPOSES:
        monkeypatch.delenv(f"IDFLOW_{purpose.upper()}_KEYS", raising=False)
        monkeypatch.delenv(f"IDFLOW_{purpose.upper()}_KEY_FILE", raising=False)


def test_no_configured_key_is_an_error_that_says_how_to_configure(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match=r"IDFLOW_PAYLOAD_KEYS.*idflow encryption init"):
        keys.load_key_ring(_settings(tmp_path), keys.PAYLOAD)


def test_inline_keys_newest_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IDFLOW_PAYLOAD_KEYS", f"k2:{_key()}, k1:{_key()}")
    ring = keys.load_key_ring(_settings(tmp_path), keys.PAYLOAD)
    assert ring.current_id == "k2" and set(ring.keys) == {"k1", "k2"}


@pytest.mark.parametrize(
    "value, message",
    [
        ("k1", "kid:base64key"),
        ("k1:not-base64!", "not valid base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "5 bytes, must be 32"),
        ("bad id:" + base64.b64encode(bytes(32)).decode(), "must match"),
    ],
)
def test_malformed_inline_keys_are_refused(
    value: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDFLOW_PAYLOAD_KEYS", value)
    with pytest.raises(KeyConfigError, match=message):
        keys.load_key_ring(_settings(tmp_path), keys.PAYLOAD)


def test_key_file_readable_by_others_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"current": "k1", "keys": {"k1": _key()}}))
    path.chmod(0o644)
    monkeypatch.setenv("IDFLOW_PAYLOAD_KEY_FILE", str(path))
    with pytest.raises(KeyConfigError, match="mode 644"):
        keys.load_key_ring(_settings(tmp_path), keys.PAYLOAD)
    path.chmod(0o600)
    assert keys.load_key_ring(_settings(tmp_path), keys.PAYLOAD).current_id == "k1"


def test_dev_keys_are_created_once_private_and_separate(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = keys.ensure_dev_keys(settings)
    payload = keys.load_key_ring(settings, keys.PAYLOAD)
    assert keys.ensure_dev_keys(settings) == first
    assert keys.load_key_ring(settings, keys.PAYLOAD) == payload  # not regenerated
    assert first[keys.PAYLOAD].stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    blob = keys.load_key_ring(settings, keys.BLOB)
    assert set(blob.keys.values()).isdisjoint(payload.keys.values())


def _payload(data: bytes) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def test_codec_round_trip_hides_data_and_marks_key_and_compression(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    keys.ensure_dev_keys(settings)
    codec = PayloadEncryptionCodec(keys.load_key_ring(settings, keys.PAYLOAD))
    small = _payload(b'{"given_name":"Erika"}')
    big = _payload(json.dumps({"family_name": "Mustermann" * 200}).encode())
    encoded = asyncio.run(codec.encode([small, big]))
    assert len(encoded) == 2
    for sealed in encoded:
        assert sealed.metadata["encoding"] == ENCODING
        assert sealed.metadata[META_KEY_ID] == b"dev-payload-1"
        assert b"Erika" not in sealed.SerializeToString()
        assert b"Mustermann" not in sealed.SerializeToString()
    assert META_COMPRESSION not in encoded[0].metadata  # too small to pay
    assert encoded[1].metadata[META_COMPRESSION] == b"zlib"
    assert len(encoded[1].data) < len(big.data) / 10
    assert asyncio.run(codec.decode(encoded)) == [small, big]


def test_rotation_old_payloads_stay_readable_after_a_new_current_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    k1 = _key()
    monkeypatch.setenv("IDFLOW_PAYLOAD_KEYS", f"k1:{k1}")
    written_with_k1 = asyncio.run(
        PayloadEncryptionCodec(keys.load_key_ring(settings, keys.PAYLOAD)).encode([_payload(b"1")])
    )
    monkeypatch.setenv("IDFLOW_PAYLOAD_KEYS", f"k2:{_key()},k1:{k1}")
    rotated = PayloadEncryptionCodec(keys.load_key_ring(settings, keys.PAYLOAD))
    assert asyncio.run(rotated.decode(written_with_k1)) == [_payload(b"1")]
    assert asyncio.run(rotated.encode([_payload(b"2")]))[0].metadata[META_KEY_ID] == b"k2"
    monkeypatch.setenv("IDFLOW_PAYLOAD_KEYS", f"k2:{_key()}")  # k1 dropped too early
    dropped = PayloadEncryptionCodec(keys.load_key_ring(settings, keys.PAYLOAD))
    with pytest.raises(UnknownKeyId, match="'k1' is not configured"):
        asyncio.run(dropped.decode(written_with_k1))


def test_key_file_rotation_keeps_old_keys(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = keys.ensure_dev_keys(settings)[keys.PAYLOAD]
    old = PayloadEncryptionCodec(keys.load_key_ring(settings, keys.PAYLOAD))
    sealed = asyncio.run(old.encode([_payload(b"before rotation")]))
    new_id = keys.rotate_key_file(path, keys.PAYLOAD)
    ring = keys.load_key_ring(settings, keys.PAYLOAD)
    assert ring.current_id == new_id and "dev-payload-1" in ring.keys
    assert path.stat().st_mode & 0o777 == 0o600
    assert asyncio.run(PayloadEncryptionCodec(ring).decode(sealed)) == [
        _payload(b"before rotation")
    ]


def test_tampered_or_relabelled_payloads_do_not_decrypt(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    keys.ensure_dev_keys(settings)
    codec = PayloadEncryptionCodec(keys.load_key_ring(settings, keys.PAYLOAD))
    sealed = asyncio.run(codec.encode([_payload(b"x" * 1000)]))[0]
    flipped = Payload(
        metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    )
    relabelled = Payload(
        metadata={k: v for k, v in sealed.metadata.items() if k != META_COMPRESSION},
        data=sealed.data,
    )
    for bad in (flipped, relabelled):
        with pytest.raises(PayloadDecryptionError, match="does not authenticate"):
            codec.decrypt(bad)


def _codec(settings: Settings, workflow_id: str | None, binding: Binding = Binding.STRICT):
    codec = PayloadEncryptionCodec(keys.load_key_ring(settings, keys.PAYLOAD), binding)
    return codec.with_context(WorkflowSerializationContext("default", workflow_id or ""))


def test_a_forged_plaintext_payload_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    keys.ensure_dev_keys(settings)
    forged = _payload(b'{"score":0.999}')  # written to history by someone without the key
    with pytest.raises(PayloadDecryptionError, match="not encrypted: refused"):
        _codec(settings, "idv-1").decrypt(forged)
    with pytest.raises(PayloadDecryptionError, match="not encrypted: refused"):
        _codec(settings, "idv-1", Binding.ANY_WORKFLOW).decrypt(forged)


def test_ciphertext_is_bound_to_its_workflow(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    keys.ensure_dev_keys(settings)
    result = _payload(b'{"score":0.999}')
    sealed = _codec(settings, "idv-other").encrypt(result)  # another verification's result
    assert sealed.metadata[META_WORKFLOW_ID] == b"idv-other"

    assert _codec(settings, "idv-other").decrypt(sealed) == result
    with pytest.raises(PayloadDecryptionError, match="another workflow"):
        _codec(settings, "idv-victim").decrypt(sealed)  # copied into another history
    relabelled = Payload(metadata={**sealed.metadata, META_WORKFLOW_ID: b"idv-victim"})
    relabelled.data = sealed.data
    with pytest.raises(PayloadDecryptionError, match="does not authenticate"):
        _codec(settings, "idv-victim").decrypt(relabelled)
    unbound = Payload(
        metadata={k: v for k, v in sealed.metadata.items() if k != META_WORKFLOW_ID},
        data=sealed.data,
    )
    with pytest.raises(PayloadDecryptionError, match="not bound to a workflow"):
        _codec(settings, "idv-other").decrypt(unbound)
    # The codec server and replay read any workflow's payloads (they act on none).
    assert _codec(settings, None, Binding.ANY_WORKFLOW).decrypt(sealed) == result


def test_data_converter_encrypts_failures_too(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    keys.ensure_dev_keys(settings)
    converter = data_converter(settings)
    assert isinstance(converter.payload_codec, PayloadEncryptionCodec)
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
    assert converter.payload_converter_class is DataConverter.default.payload_converter_class
