"""The mDL data elements we issue, checked before anything is signed.

The caller provides the document's data as JSON-like values; the issuer adds
what it knows better: the portrait (the verified selfie, re-encoded) and the
age attestations (computed from ``birth_date`` on the day of issuance).

Every error raises ``ClaimsInvalid`` naming the element and the rule, never
the value: claims are personal.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from PIL import Image

from domain import claims as mdl
from domain.errors import (
    ClaimsInvalid,
    ImageTooLarge,
    ImageUnreadable,
    UnsupportedImageFormat,
)
from imaging.decode import decode_image

from . import cbor

MAX_TEXT = 150  # 18013-5: names, authority and document number are at most 150 characters
PORTRAIT_MAX_SIDE = 640  # pixels; a wallet portrait, not an archive of the selfie
EARLIEST_BIRTH = date(1900, 1, 1)

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,63}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class MdlClaims:
    """CBOR-ready element values (identifier -> value) and the document's expiry."""

    elements: dict[str, Any]
    expiry_date: date


def _text(name: str, value: Any, max_length: int = MAX_TEXT) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= max_length
        or value != value.strip()
        or any(unicodedata.category(char) in ("Cc", "Cf") for char in value)
    ):
        raise ClaimsInvalid(
            f"claim {name} must be text of 1 to {max_length} characters without control characters"
        )
    return value


def _date(name: str, value: Any) -> date:
    if type(value) is date:  # a datetime is not a full-date
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ClaimsInvalid(f"claim {name} must be a full-date YYYY-MM-DD")


def _country(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _COUNTRY.fullmatch(value):
        raise ClaimsInvalid(
            f"claim {name} must be an ISO 3166-1 alpha-2 code (two capital letters)"
        )
    return value


def _driving_privileges(name: str, value: Any) -> list[dict[str, Any]]:
    rule = (
        f"claim {name} must be a list of objects with vehicle_category_code and optional "
        "issue_date, expiry_date and codes (objects with code, sign, value)"
    )
    if not isinstance(value, list) or not value or len(value) > 64:
        raise ClaimsInvalid(rule)
    privileges = []
    for entry in value:
        if not isinstance(entry, dict) or "vehicle_category_code" not in entry:
            raise ClaimsInvalid(rule)
        if set(entry) - {"vehicle_category_code", "issue_date", "expiry_date", "codes"}:
            raise ClaimsInvalid(rule)
        privilege: dict[str, Any] = {
            "vehicle_category_code": _text(
                f"{name}.vehicle_category_code", entry["vehicle_category_code"], 8
            )
        }
        for key in ("issue_date", "expiry_date"):
            if key in entry:
                privilege[key] = cbor.full_date(_date(f"{name}.{key}", entry[key]))
        if "codes" in entry:
            codes = entry["codes"]
            if not isinstance(codes, list) or not all(
                isinstance(code, dict)
                and "code" in code
                and not set(code) - {"code", "sign", "value"}
                for code in codes
            ):
                raise ClaimsInvalid(rule)
            privilege["codes"] = [
                {key: _text(f"{name}.codes.{key}", text, 16) for key, text in code.items()}
                for code in codes
            ]
        privileges.append(privilege)
    return privileges


_Check = Callable[[str, Any], Any]

_CHECK_BY_KIND: dict[str, _Check] = {
    "text": _text,
    "code": lambda name, value: _text(name, value, 8),
    "date": _date,
    "country": _country,
    "driving privileges": _driving_privileges,
}
REQUIRED: dict[str, _Check] = {name: _CHECK_BY_KIND[kind] for name, kind in mdl.REQUIRED.items()}
OPTIONAL: dict[str, _Check] = {name: _CHECK_BY_KIND[kind] for name, kind in mdl.OPTIONAL.items()}
SET_BY_ISSUER = mdl.SET_BY_ISSUER


def mdl_claims(
    claims: Mapping[str, Any], portrait_jpeg: bytes, signer_country: str, today: date
) -> MdlClaims:
    """Check the caller's claims and add portrait and age attestations."""
    if not isinstance(claims, Mapping):
        raise ClaimsInvalid("claims must be an object of mDL data elements")
    for name in claims:
        if name in SET_BY_ISSUER:
            raise ClaimsInvalid(f"claim {name} is set by the issuer ({SET_BY_ISSUER[name]})")
        if name not in REQUIRED and name not in OPTIONAL:
            shown = (
                name
                if isinstance(name, str) and _IDENTIFIER.fullmatch(name)
                else "(unprintable name)"
            )
            raise ClaimsInvalid(f"claim {shown} is not an mDL data element idflow issues")
    missing = sorted(set(REQUIRED) - set(claims))
    if missing:
        raise ClaimsInvalid(f"missing claims: {', '.join(missing)}")
    checks = REQUIRED | OPTIONAL
    values = {name: checks[name](name, value) for name, value in claims.items()}

    birth, issued, expiry = values["birth_date"], values["issue_date"], values["expiry_date"]
    if not EARLIEST_BIRTH <= birth <= today:
        raise ClaimsInvalid("claim birth_date must be a past date after 1900-01-01")
    if not birth <= issued <= today:
        raise ClaimsInvalid("claim issue_date must lie between birth_date and today")
    if not expiry > today:
        raise ClaimsInvalid("claim expiry_date has passed: the document is expired")
    if values["issuing_country"] != signer_country:
        raise ClaimsInvalid(
            f"claim issuing_country differs from the document signer's country ({signer_country})"
        )

    elements = {
        name: cbor.full_date(value) if isinstance(value, date) else value
        for name, value in values.items()
    }
    elements["portrait"] = portrait_jpeg
    age = _age(birth, today)
    elements |= {f"age_over_{limit}": age >= limit for limit in mdl.AGE_ATTESTATIONS}
    return MdlClaims(elements, expiry)


def check_claims(claims: Mapping[str, Any], signer_country: str, today: date) -> None:
    """Refuse claims the issuer would refuse (``ClaimsInvalid``), before any biometrics run."""
    mdl_claims(claims, b"", signer_country, today)


def _age(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def portrait_jpeg(image: bytes) -> bytes:
    """The selfie as a JPEG portrait: upright, RGB, at most 640 px, no EXIF or other metadata.

    Decoded by the one image decoder, with the limits every upload already met at ingest.
    """
    try:
        pixels = decode_image(image)
    except ImageTooLarge:
        raise ClaimsInvalid("the verified selfie is too large for a portrait") from None
    except (ImageUnreadable, UnsupportedImageFormat):
        raise ClaimsInvalid("the verified selfie cannot be decoded for the portrait") from None
    upright = Image.fromarray(pixels)
    upright.thumbnail((PORTRAIT_MAX_SIDE, PORTRAIT_MAX_SIDE))
    out = io.BytesIO()
    upright.save(out, format="JPEG", quality=90)  # no exif= or icc_profile=: metadata stays behind
    return out.getvalue()
