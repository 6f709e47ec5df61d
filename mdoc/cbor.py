"""The CBOR shapes ISO/IEC 18013-5 uses, on top of cbor2.

Everything we sign or hash is encoded deterministically (RFC 8949 core
deterministic encoding: sorted map keys, shortest lengths), so the bytes a
digest or signature covers are reproducible from the value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import cbor2

TAG_TDATE = 0  # RFC 3339 date-time text
TAG_ENCODED_CBOR = 24  # bstr .cbor: embedded CBOR whose exact bytes are hashed/signed
TAG_FULL_DATE = 1004  # RFC 8943 full-date text


class CborShapeError(ValueError):
    """Decoded CBOR is not the structure ISO 18013-5 prescribes."""


def dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def loads(data: bytes) -> Any:
    """Decode untrusted CBOR: no duplicate map keys, no indefinite lengths."""
    try:
        return cbor2.loads(data, allow_duplicate_keys=False, allow_indefinite=False)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as err:
        raise CborShapeError(f"not well-formed CBOR ({type(err).__name__})") from None


def embed(value: Any) -> cbor2.CBORTag:
    """``#6.24(bstr .cbor value)``: the value's bytes, tagged."""
    return cbor2.CBORTag(TAG_ENCODED_CBOR, dumps(value))


def embedded_bytes(value: Any) -> bytes:
    """The full encoding of ``#6.24(bstr .cbor value)``, as digests and signatures cover it."""
    return dumps(embed(value))


def unembed(tagged: Any, what: str) -> Any:
    """The value inside a ``#6.24`` tag (decoded or raw)."""
    if isinstance(tagged, bytes):
        tagged = loads(tagged)
    if not isinstance(tagged, cbor2.CBORTag) or tagged.tag != TAG_ENCODED_CBOR:
        raise CborShapeError(f"{what} is not tagged as embedded CBOR (#6.24)")
    if not isinstance(tagged.value, bytes):
        raise CborShapeError(f"{what}: #6.24 must wrap a byte string")
    return loads(tagged.value)


def tdate(moment: datetime) -> cbor2.CBORTag:
    """``#6.0`` date-time in UTC, whole seconds: ``2025-01-31T12:00:00Z``."""
    if moment.tzinfo is None:
        raise ValueError("tdate needs a timezone-aware datetime")
    utc = moment.astimezone(UTC).replace(microsecond=0)
    return cbor2.CBORTag(TAG_TDATE, utc.strftime("%Y-%m-%dT%H:%M:%SZ"))


def full_date(day: date) -> cbor2.CBORTag:
    """``#6.1004`` full-date: ``1990-12-31``."""
    return cbor2.CBORTag(TAG_FULL_DATE, day.isoformat())
