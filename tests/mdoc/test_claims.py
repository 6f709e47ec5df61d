"""Claims are checked before anything is signed; errors name the rule, never the value."""

from __future__ import annotations

import io
from datetime import date

import pytest
from PIL import Image

from domain.errors import ClaimsInvalid
from domain.reasons import ReasonCode
from mdoc.claims import mdl_claims, portrait_jpeg
from store import credentials

TODAY = date(2025, 6, 15)
PORTRAIT = b"\xff\xd8\xff portrait"


def _check(claims, message):
    with pytest.raises(ClaimsInvalid, match=message) as refused:
        mdl_claims(claims, PORTRAIT, "UT", TODAY)
    assert refused.value.reason is ReasonCode.CLAIMS_INVALID
    return str(refused.value)


def test_valid_claims_gain_portrait_and_ages(mdl_claims):
    result = mdl_claims_for(mdl_claims)

    assert result.elements["portrait"] == PORTRAIT
    assert result.elements["age_over_18"] is True and result.elements["age_over_21"] is True
    assert (
        result.elements["birth_date"].tag == 1004
        and result.elements["birth_date"].value == "1964-08-12"
    )
    assert result.expiry_date == date(2034, 2, 28)


def mdl_claims_for(claims, today=TODAY):
    return mdl_claims(claims, PORTRAIT, "UT", today)


@pytest.mark.parametrize(
    ("birth", "over_18", "over_21"),
    [
        ("2007-06-15", True, False),  # 18th birthday today
        ("2007-06-16", False, False),  # 18 tomorrow
        ("2004-06-15", True, True),  # 21st birthday today
        ("2004-06-16", True, False),
    ],
)
def test_age_attestations_on_the_birthday_boundary(mdl_claims, birth, over_18, over_21):
    elements = mdl_claims_for(
        mdl_claims | {"birth_date": birth, "issue_date": "2025-01-01"}
    ).elements

    assert (elements["age_over_18"], elements["age_over_21"]) == (over_18, over_21)


def test_unknown_claim(mdl_claims):
    _check(
        mdl_claims | {"favourite_colour": "blue"},
        "claim favourite_colour is not an mDL data element",
    )


def test_unknown_claim_name_that_may_be_personal_is_not_echoed(mdl_claims):
    text = _check(mdl_claims | {"Erika Mustermann": "x"}, "unprintable name")
    assert "Erika" not in text


@pytest.mark.parametrize("name", ["portrait", "age_over_18", "age_over_21"])
def test_issuer_computed_claims_cannot_be_supplied(mdl_claims, name):
    _check(mdl_claims | {name: True}, f"claim {name} is set by the issuer")


def test_missing_claims_are_listed(mdl_claims):
    claims = {k: v for k, v in mdl_claims.items() if k not in ("birth_date", "document_number")}
    _check(claims, "missing claims: birth_date, document_number")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("birth_date", "12.08.1964", "birth_date must be a full-date"),
        ("birth_date", "1964-02-30", "birth_date must be a full-date"),
        ("birth_date", 19640812, "birth_date must be a full-date"),
        ("birth_date", "2030-01-01", "birth_date must be a past date"),
        ("issue_date", "2026-01-01", "issue_date must lie between birth_date and today"),
        ("expiry_date", "2025-06-15", "expiry_date has passed"),
        ("family_name", "", "family_name must be text"),
        ("family_name", "x" * 151, "family_name must be text of 1 to 150"),
        ("family_name", "Muster\u0000mann", "without control characters"),
        ("given_name", 42, "given_name must be text"),
        ("issuing_country", "Utopia", "issuing_country must be an ISO 3166-1 alpha-2"),
        (
            "issuing_country",
            "DE",
            "issuing_country differs from the document signer's country \\(UT\\)",
        ),
        ("driving_privileges", [{"codes": []}], "driving_privileges must be a list of objects"),
        (
            "driving_privileges",
            [{"vehicle_category_code": "B", "colour": "red"}],
            "driving_privileges",
        ),
    ],
)
def test_malformed_claims_are_refused_without_echoing_values(mdl_claims, name, value, message):
    text = _check(mdl_claims | {name: value}, message)

    if isinstance(value, str) and len(value) > 2:
        assert value not in text


def test_claims_must_be_an_object():
    _check(["family_name"], "claims must be an object")


def _jpeg_with_exif(size=(300, 200)) -> bytes:
    exif = Image.Exif()
    exif[0x8825] = {2: (52.0, 31.0, 0.0)}  # GPS latitude: where the selfie was taken
    exif[0x0110] = "PhoneModel-X"
    buffer = io.BytesIO()
    Image.new("RGB", size, (180, 120, 90)).save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def test_portrait_strips_exif_and_limits_size():
    source = _jpeg_with_exif((1600, 1200))
    assert b"PhoneModel-X" in source

    portrait = portrait_jpeg(source)

    image = Image.open(io.BytesIO(portrait))
    assert image.format == "JPEG" and image.size == (640, 480)
    assert not image.getexif() and b"PhoneModel-X" not in portrait and b"Exif" not in portrait


def test_png_selfie_becomes_jpeg():
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(buffer, format="PNG")

    assert Image.open(io.BytesIO(portrait_jpeg(buffer.getvalue()))).format == "JPEG"


@pytest.mark.parametrize("data", [b"", b"not an image", _jpeg_with_exif()[:200]])
def test_undecodable_selfie_is_a_typed_error(data):
    with pytest.raises(ClaimsInvalid, match="cannot be decoded"):
        portrait_jpeg(data)


def test_portrait_refuses_what_ingest_refuses(malformed_image_corpus):
    """One decoder, one set of limits: every hostile image ingest refuses is refused here too."""
    for name, (data, reason) in malformed_image_corpus.items():
        message = "too large" if reason is ReasonCode.INPUT_TOO_LARGE else "cannot be decoded"
        with pytest.raises(ClaimsInvalid, match=message) as refused:
            portrait_jpeg(data)
        assert refused.value.reason is ReasonCode.CLAIMS_INVALID, name


def test_claims_error_through_the_issuer_issues_nothing(issuance):
    request = issuance.request("v-1", claims=issuance.claims | {"issuing_country": "DE"})

    with pytest.raises(ClaimsInvalid, match="issuing_country differs"):
        issuance.issuer.issue(request)
    assert credentials.find_issued(issuance.engine, "v-1") is None
