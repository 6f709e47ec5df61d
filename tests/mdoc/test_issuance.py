"""Issued mdocs, checked by the independent pymdoccbor library and by our own verifier.

pymdoccbor verifies the issuerAuth COSE signature, that the document signer
certificate is signed by a trusted root and currently valid, and every
element digest. Our verifier (``mdoc.verify``) adds what it does not check:
validityInfo, docType, deviceKeyInfo = the requested key, the certificate
profiles, issuing_country = the signer's C, and the device signature.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from datetime import UTC, date, datetime, timedelta

import cbor2
import cbor_diag
import cryptography.x509  # noqa: F401  pymdoccbor uses cryptography.x509 without importing it
import pytest
from PIL import Image
from pycose.keys import EC2Key
from pycose.messages import Sign1Message
from pymdoccbor.mdoc.verifier import MdocCbor

from mdoc import cbor, holder, jwk
from mdoc.document import MDL_DOCTYPE, MDL_NAMESPACE, device_authentication_bytes
from mdoc.issuer import CredentialIssuer
from mdoc.verify import CredentialInvalid, verify_device_response, verify_issuer_signed
from tests.support.mdoc import ISSUER_ID, make_key_store

# A verifier's session (18013-7 style: no device engagement, an OpenID4VP handover).
TRANSCRIPT = [
    None,
    None,
    [hashlib.sha256(b"client").digest(), hashlib.sha256(b"uri").digest(), "n-1"],
]


def issue(issuance, verification_id="v-1", **request):
    credential = issuance.issuer.issue(issuance.request(verification_id, **request))
    return credential, base64.b64decode(credential.issuer_signed_b64)


def pymdoccbor_verify(issuer_signed: bytes, device_key, iaca) -> MdocCbor:
    parsed = MdocCbor()
    parsed.loads(holder.device_response(issuer_signed, device_key, TRANSCRIPT))
    parsed.verify(trusted_root_certs=[iaca])
    return parsed


def test_issued_credential_verifies_with_pymdoccbor(issuance, issuer_keys, mdl_claims):
    _, issuer_signed = issue(issuance)

    parsed = pymdoccbor_verify(issuer_signed, issuance.device_keys["v-1"], issuer_keys.iaca())

    assert [repr(doc).endswith("[valid]") for doc in parsed.documents] == [True]
    assert parsed.documents_invalid == []
    document = parsed.documents[0]
    assert document.doctype == MDL_DOCTYPE
    elements = len(mdl_claims) + 3  # + portrait, age_over_18, age_over_21
    assert document.hash_verification == {
        "valid": True,
        "total": elements,
        "verified": elements,
        "failed": [],
    }
    disclosed = parsed.disclosure_map[MDL_NAMESPACE]
    assert disclosed["family_name"] == mdl_claims["family_name"]
    assert disclosed["birth_date"] == date.fromisoformat(mdl_claims["birth_date"])
    assert disclosed["age_over_18"] is True and disclosed["age_over_21"] is True
    assert disclosed["portrait"][:3] == b"\xff\xd8\xff"  # JPEG


def test_issued_credential_passes_our_verifier(issuance, issuer_keys, mdl_claims):
    credential, issuer_signed = issue(issuance)
    device_key = issuance.device_keys["v-1"].public_key()

    verified = verify_issuer_signed(issuer_signed, issuer_keys.iaca(), device_key=device_key)

    assert verified.doc_type == MDL_DOCTYPE == credential.doc_type
    assert verified.elements["given_name"] == mdl_claims["given_name"]
    assert verified.elements["expiry_date"] == date(2034, 2, 28)
    assert verified.elements["driving_privileges"] == [
        {"vehicle_category_code": "B", "issue_date": date(2024, 3, 1)}
    ]
    assert verified.mso_digest == credential.mso_digest
    assert jwk.thumbprint(verified.device_key) == credential.device_key_thumbprint
    assert verified.valid_until.isoformat() == credential.valid_until
    assert format(verified.signer.serial_number, "x") == credential.signer_serial
    assert verified.signed == verified.valid_from
    assert verified.valid_until - verified.valid_from <= timedelta(days=365)


def test_structure_follows_iso_18013_5(issuance):
    _, issuer_signed = issue(issuance)
    document = cbor2.loads(issuer_signed)

    issuer_auth = document["issuerAuth"]
    assert isinstance(issuer_auth, list) and len(issuer_auth) == 4  # untagged COSE_Sign1
    protected, unprotected, payload, signature = issuer_auth
    assert cbor2.loads(protected) == {1: -7}  # ES256
    assert isinstance(unprotected[33], bytes)  # x5chain: the DER signer certificate
    assert len(signature) == 64  # raw r || s

    mso_tagged = cbor2.loads(payload)
    assert mso_tagged.tag == 24
    mso = cbor2.loads(mso_tagged.value)
    assert (mso["version"], mso["digestAlgorithm"], mso["docType"]) == (
        "1.0",
        "SHA-256",
        MDL_DOCTYPE,
    )
    # validityInfo: tag-0 date-times in UTC, whole seconds (checked on the encoded text).
    diagnostic = cbor_diag.cbor2diag(mso_tagged.value)
    tdates = re.findall(r'0\("([^"]*)"\)', diagnostic)
    assert len(tdates) == 3
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value) for value in tdates)
    assert set(mso["deviceKeyInfo"]["deviceKey"]) == {1, -1, -2, -3}  # EC2 COSE_Key

    items = document["nameSpaces"][MDL_NAMESPACE]
    digests = mso["valueDigests"][MDL_NAMESPACE]
    seen_ids = set()
    for tagged in items:
        assert tagged.tag == 24
        item = cbor2.loads(tagged.value)
        assert set(item) == {"digestID", "random", "elementIdentifier", "elementValue"}
        assert len(item["random"]) >= 16
        # The digest covers the exact tag-24 bytes as they appear in the document.
        assert digests[item["digestID"]] == hashlib.sha256(cbor2.dumps(tagged)).digest()
        seen_ids.add(item["digestID"])
    assert seen_ids == set(digests) and len(seen_ids) == len(items)
    dates = re.findall(r'1004\("([^"]*)"\)', " ".join(cbor_diag.cbor2diag(t.value) for t in items))
    assert "1964-08-12" in dates and "2034-02-28" in dates  # full-dates as tag 1004


def test_portrait_is_the_selfie_as_jpeg_without_exif(issuance, issuer_keys, photo):
    # A selfie with EXIF (camera make, orientation "rotate 90") must lose its metadata,
    # not its pose.
    source = Image.open(io.BytesIO(photo("obama.jpg")))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buffer = io.BytesIO()
    source.save(buffer, format="JPEG", exif=exif)
    issuance.selfie = buffer.getvalue()

    _, issuer_signed = issue(issuance)
    portrait = verify_issuer_signed(issuer_signed, issuer_keys.iaca()).elements["portrait"]

    assert b"SecretCam" not in portrait and b"Exif" not in portrait
    image = Image.open(io.BytesIO(portrait))
    assert image.format == "JPEG" and not image.getexif()
    # Upright: width and height swapped relative to the stored pixels.
    assert (
        image.size[0] < image.size[1]
        if source.width > source.height
        else image.size[0] > image.size[1]
    )
    assert max(image.size) <= 640


def test_age_attestations_follow_birth_date(issuance, issuer_keys, mdl_claims):
    today = datetime.now(UTC).date()
    nineteen = (
        today.replace(year=today.year - 19)
        if (today.month, today.day) != (2, 29)
        else today.replace(year=today.year - 19, day=28)
    )
    claims = mdl_claims | {"birth_date": nineteen.isoformat()}

    _, issuer_signed = issue(issuance, claims=claims)
    elements = verify_issuer_signed(issuer_signed, issuer_keys.iaca()).elements

    assert (elements["age_over_18"], elements["age_over_21"]) == (True, False)


def test_device_response_proves_possession_of_the_bound_key(issuance, issuer_keys):
    _, issuer_signed = issue(issuance)
    device_key = issuance.device_keys["v-1"]
    response = holder.device_response(issuer_signed, device_key, TRANSCRIPT)

    [verified] = verify_device_response(response, issuer_keys.iaca(), TRANSCRIPT)
    assert jwk.thumbprint(verified.device_key) == jwk.thumbprint(device_key.public_key())

    # Independently: pycose verifies the detached deviceSignature over DeviceAuthenticationBytes.
    document = cbor2.loads(response)["documents"][0]
    device_signature = document["deviceSigned"]["deviceAuth"]["deviceSignature"]
    message = Sign1Message.from_cose_obj(list(device_signature), True)
    assert message.payload is None  # detached
    message.payload = device_authentication_bytes(
        TRANSCRIPT, MDL_DOCTYPE, document["deviceSigned"]["nameSpaces"]
    )
    numbers = device_key.public_key().public_numbers()
    message.key = EC2Key(
        crv="P_256", x=numbers.x.to_bytes(32, "big"), y=numbers.y.to_bytes(32, "big")
    )
    assert message.verify_signature()


def test_device_response_from_a_copied_credential_is_refused(issuance, issuer_keys):
    _, issuer_signed = issue(issuance)
    thief = holder.new_device_key()  # has the credential bytes, not the device
    response = holder.device_response(issuer_signed, thief, TRANSCRIPT)

    with pytest.raises(
        CredentialInvalid, match="deviceSignature: COSE_Sign1 signature does not verify"
    ):
        verify_device_response(response, issuer_keys.iaca(), TRANSCRIPT)


def test_device_response_replayed_into_another_session_is_refused(issuance, issuer_keys):
    _, issuer_signed = issue(issuance)
    response = holder.device_response(issuer_signed, issuance.device_keys["v-1"], TRANSCRIPT)
    other_session = [None, None, [b"other", b"session", "n-2"]]

    with pytest.raises(CredentialInvalid, match="deviceSignature"):
        verify_device_response(response, issuer_keys.iaca(), other_session)


# --- Negative: what a verifier must refuse ------------------------------------------


def _tamper_family_name(issuer_signed: bytes) -> bytes:
    """Change one element's value but keep its digestID and salt, as a forger would."""
    document = cbor2.loads(issuer_signed)
    items = document["nameSpaces"][MDL_NAMESPACE]
    for index, tagged in enumerate(items):
        item = cbor2.loads(tagged.value)
        if item["elementIdentifier"] == "family_name":
            items[index] = cbor.embed(item | {"elementValue": "Forged"})
    return cbor2.dumps(document)


def test_tampered_element_value_is_refused(issuance, issuer_keys):
    _, issuer_signed = issue(issuance)
    tampered = _tamper_family_name(issuer_signed)
    device_key = issuance.device_keys["v-1"]

    parsed = pymdoccbor_verify(tampered, device_key, issuer_keys.iaca())
    assert parsed.documents == [] and len(parsed.documents_invalid) == 1
    assert parsed.documents_invalid[0].hash_verification["failed"][0]["reason"] == "hash mismatch"

    with pytest.raises(CredentialInvalid, match="element family_name does not match its digest"):
        verify_issuer_signed(tampered, issuer_keys.iaca())


def test_wrong_trust_anchor_is_refused(issuance, tmp_path):
    _, issuer_signed = issue(issuance)
    other_iaca = make_key_store(tmp_path / "other").iaca()

    parsed = pymdoccbor_verify(issuer_signed, issuance.device_keys["v-1"], other_iaca)
    assert parsed.documents == [] and len(parsed.documents_invalid) == 1

    with pytest.raises(CredentialInvalid, match="authority key identifier is not the IACA's"):
        verify_issuer_signed(issuer_signed, other_iaca)


def test_expired_mso_is_refused(issuance, issuer_keys):
    issuance.issuer = CredentialIssuer(
        issuance.engine, issuance.blobs, issuer_keys, ISSUER_ID, validity=timedelta(hours=1)
    )
    credential, issuer_signed = issue(issuance)
    after_expiry = datetime.fromisoformat(credential.valid_until) + timedelta(seconds=1)

    with pytest.raises(CredentialInvalid, match="MSO has expired"):
        verify_issuer_signed(issuer_signed, issuer_keys.iaca(), now=after_expiry)
    # pymdoccbor checks the signer certificate's dates, not validityInfo: ours is what refuses.
    parsed = MdocCbor()
    parsed.loads(holder.device_response(issuer_signed, issuance.device_keys["v-1"], TRANSCRIPT))
    assert parsed.verify(trusted_root_certs=[issuer_keys.iaca()])


def test_not_yet_valid_mso_is_refused(issuance, issuer_keys):
    _, issuer_signed = issue(issuance)
    before = datetime.now(UTC) - timedelta(minutes=5)

    with pytest.raises(CredentialInvalid, match=r"not yet valid|not valid at"):
        verify_issuer_signed(issuer_signed, issuer_keys.iaca(), now=before)


def test_wrong_device_key_is_refused(issuance, issuer_keys):
    _, issuer_signed = issue(issuance)
    other = holder.new_device_key().public_key()

    with pytest.raises(CredentialInvalid, match="deviceKeyInfo is not the requested device key"):
        verify_issuer_signed(issuer_signed, issuer_keys.iaca(), device_key=other)


def test_wrong_doc_type_is_refused(issuance, issuer_keys):
    _, issuer_signed = issue(issuance)

    with pytest.raises(
        CredentialInvalid, match=re.escape("docType is not eu.europa.ec.eudi.pid.1")
    ):
        verify_issuer_signed(issuer_signed, issuer_keys.iaca(), doc_type="eu.europa.ec.eudi.pid.1")


def test_tagged_cose_sign1_is_refused(issuance, issuer_keys):
    _, issuer_signed = issue(issuance)
    document = cbor2.loads(issuer_signed)
    document["issuerAuth"] = cbor2.CBORTag(18, document["issuerAuth"])

    with pytest.raises(CredentialInvalid, match="untagged"):
        verify_issuer_signed(cbor2.dumps(document), issuer_keys.iaca())
