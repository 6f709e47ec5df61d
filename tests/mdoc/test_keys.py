"""Issuer keys: the certificate profiles, encryption at rest, and rotation."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime, timedelta

import cryptography.x509  # noqa: F401  (pymdoccbor needs it imported)
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from pymdoccbor.mdoc.verifier import MdocCbor

from mdoc import certificates, holder
from mdoc.certificates import CertificateProfileError
from mdoc.issuer import CredentialIssuer
from mdoc.keystore import PASSPHRASE_ENV, KeyStore, KeyStoreError, ensure_keys
from mdoc.verify import verify_issuer_signed
from tests.support.mdoc import ISSUER_ID, TEST_PASSPHRASE, make_key_store

MDL_DS = ObjectIdentifier("1.0.18013.5.1.2")


def _ext(certificate: x509.Certificate, kind: type) -> x509.Extension:
    return certificate.extensions.get_extension_for_class(kind)


def test_iaca_follows_the_profile(issuer_keys):
    iaca = issuer_keys.iaca()

    constraints = _ext(iaca, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = _ext(iaca, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = _ext(iaca, x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value.digest == x509.SubjectKeyIdentifier.from_public_key(iaca.public_key()).digest
    alt_name = _ext(iaca, x509.IssuerAlternativeName)
    assert alt_name.value.get_values_for_type(x509.UniformResourceIdentifier) == [ISSUER_ID]
    assert iaca.subject == iaca.issuer
    assert iaca.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "UT"
    iaca.verify_directly_issued_by(iaca)  # self-signed


def test_document_signer_follows_the_profile(issuer_keys):
    iaca = issuer_keys.iaca()
    signer = issuer_keys.current_signer().certificate

    assert isinstance(signer.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(signer.public_key().curve, ec.SECP256R1)
    usage = _ext(signer, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = _ext(signer, x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [MDL_DS]
    aki = _ext(signer, x509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier == _ext(iaca, x509.SubjectKeyIdentifier).value.digest
    assert _ext(signer, x509.SubjectKeyIdentifier).value.digest == (
        x509.SubjectKeyIdentifier.from_public_key(signer.public_key()).digest
    )
    assert signer.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "UT"
    assert signer.issuer == iaca.subject
    signer.verify_directly_issued_by(iaca)
    assert signer.not_valid_after_utc - signer.not_valid_before_utc <= timedelta(days=457)


def _off_profile_signer(iaca_store: KeyStore, **changes: bool) -> x509.Certificate:
    """A DS certificate from the real IACA key with one rule broken."""
    iaca = iaca_store.iaca()
    iaca_key = iaca_store._load_key(iaca_store.root / "iaca.key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "UT"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "off-profile"),
                ]
            )
        )
        .issuer_name(iaca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                _ext(iaca, x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_ext(iaca, x509.IssuerAlternativeName).value, critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
    )
    eku = [ExtendedKeyUsageOID.SERVER_AUTH] if changes.get("wrong_eku") else [MDL_DS]
    builder = builder.add_extension(
        x509.ExtendedKeyUsage(eku), critical=not changes.get("eku_not_critical")
    )
    return builder.sign(iaca_key, hashes.SHA256())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("wrong_eku", "extended key usage must be 1.0.18013.5.1.2"),
        ("eku_not_critical", "ExtendedKeyUsage must be critical"),
    ],
)
def test_off_profile_document_signer_is_refused(issuer_keys, change, message):
    signer = _off_profile_signer(issuer_keys, **{change: True})

    with pytest.raises(CertificateProfileError, match=message):
        certificates.check_chain(signer, issuer_keys.iaca(), datetime.now(UTC))


def test_stored_private_keys_are_encrypted(issuer_keys):
    serial = issuer_keys.current_signer().serial
    for path in (issuer_keys.root / "iaca.key", issuer_keys.root / "signers" / f"{serial}.key"):
        pem = path.read_bytes()
        assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(TypeError, match="encrypted"):
            serialization.load_pem_private_key(pem, password=None)
        # Not even the passphrase itself opens it: the password is scrypt(passphrase, salt).
        with pytest.raises(ValueError):
            serialization.load_pem_private_key(pem, password=TEST_PASSPHRASE)


def test_wrong_passphrase_cannot_unlock_the_signer(issuer_keys):
    locked = KeyStore(issuer_keys.root, b"not the passphrase at all")

    with pytest.raises(
        KeyStoreError, match=r"cannot decrypt signers/|cannot decrypt [0-9a-f]+\.key"
    ):
        locked.current_signer()


def test_dev_stack_generates_a_private_passphrase_file(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    root = tmp_path / "keys"

    store = ensure_keys(root, ISSUER_ID)

    passphrase = root / "passphrase"
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert len(passphrase.read_text()) >= 32
    assert KeyStore.open(root).current_signer().serial == store.current_signer().serial
    assert ensure_keys(root, ISSUER_ID).iaca() == store.iaca()  # second start: the same keys

    os.chmod(passphrase, 0o644)
    with pytest.raises(KeyStoreError, match="accessible to others"):
        KeyStore.open(root)


def test_passphrase_from_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "an operator chosen passphrase")
    store = ensure_keys(tmp_path / "keys", ISSUER_ID)

    assert not (tmp_path / "keys" / "passphrase").exists()
    assert KeyStore.open(tmp_path / "keys").current_signer().serial == store.current_signer().serial
    monkeypatch.setenv(PASSPHRASE_ENV, "short")
    with pytest.raises(KeyStoreError, match="at least 16 characters"):
        KeyStore.open(tmp_path / "keys")


def test_no_passphrase_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)

    with pytest.raises(KeyStoreError, match=f"set {PASSPHRASE_ENV}"):
        KeyStore.open(tmp_path / "keys")


def test_rotation_keeps_old_credentials_verifiable(issuance, tmp_path):
    keys = make_key_store(tmp_path / "keys")
    issuance.issuer = CredentialIssuer(issuance.engine, issuance.blobs, keys, ISSUER_ID)
    old = issuance.issuer.issue(issuance.request("before-rotation"))
    old_serial = keys.current_signer().serial

    new_signer = KeyStore(
        keys.root, TEST_PASSPHRASE
    ).rotate()  # e.g. `idflow keys rotate` elsewhere

    # The running issuer picks up the new signer without a restart.
    new = issuance.issuer.issue(issuance.request("after-rotation"))
    assert (old.signer_serial, new.signer_serial) == (old_serial, new_signer.serial)
    assert old_serial != new_signer.serial
    assert not (keys.root / "signers" / f"{old_serial}.key").exists()  # retired key destroyed
    assert len(keys.signer_certificates()) == 2

    iaca = keys.iaca()
    for credential, verification_id in ((old, "before-rotation"), (new, "after-rotation")):
        issuer_signed = base64.b64decode(credential.issuer_signed_b64)
        verified = verify_issuer_signed(issuer_signed, iaca)
        assert format(verified.signer.serial_number, "x") == credential.signer_serial
        parsed = MdocCbor()
        parsed.loads(
            holder.device_response(
                issuer_signed, issuance.device_keys[verification_id], [None, None, None]
            )
        )
        assert parsed.verify(trusted_root_certs=[iaca])


def test_keys_init_refuses_to_overwrite(issuer_keys):
    with pytest.raises(KeyStoreError, match="keys already exist"):
        KeyStore(issuer_keys.root, TEST_PASSPHRASE).init(ISSUER_ID)


def test_signer_validity_is_limited_to_457_days(tmp_path):
    with pytest.raises(CertificateProfileError, match="457 days"):
        KeyStore(tmp_path / "keys", TEST_PASSPHRASE).init(
            ISSUER_ID, signer_validity=timedelta(days=500)
        )
    assert not (tmp_path / "keys").exists()  # nothing half-written


def test_the_iaca_key_can_live_offline_and_sign_new_signers_from_there(issuance, tmp_path):
    keys = make_key_store(tmp_path / "keys")
    offline = tmp_path / "usb-stick" / "iaca.key"
    offline.parent.mkdir()
    keys.export_iaca_key(offline)
    assert not keys.iaca_key_online() and not (keys.root / "iaca.key").exists()
    assert stat.S_IMODE(offline.stat().st_mode) == 0o600
    # The only private key left online is the document signer's.
    assert [p.name for p in keys.root.rglob("*.key")] == [f"{keys.current_signer().serial}.key"]

    # Issuance never needs it ...
    issuance.issuer = CredentialIssuer(issuance.engine, issuance.blobs, keys, ISSUER_ID)
    issuance.issuer.issue(issuance.request("while-offline"))
    # ... a new document signer does, and says how to bring it.
    with pytest.raises(KeyStoreError, match=r"offline: bring it back .* --iaca-key FILE"):
        keys.rotate()
    other = tmp_path / "other-iaca.key"
    make_key_store(tmp_path / "other").export_iaca_key(other)
    with pytest.raises(KeyStoreError, match=r"cannot decrypt other-iaca\.key"):  # another IACA
        keys.rotate(iaca_key_file=other)
    signer = keys.rotate(iaca_key_file=offline)  # the signing ceremony
    assert not keys.iaca_key_online()  # used, not stored
    certificates.check_chain(signer.certificate, keys.iaca(), datetime.now(UTC))
    with pytest.raises(KeyStoreError, match="offline already"):
        keys.export_iaca_key(tmp_path / "again.key")


def test_keys_init_can_write_the_iaca_key_straight_to_offline_storage(tmp_path):
    offline = tmp_path / "offline-iaca.key"
    keys = KeyStore(tmp_path / "keys", TEST_PASSPHRASE)
    keys.init(country="UT", issuer_url=ISSUER_ID, iaca_key_out=offline)
    assert offline.exists() and not keys.iaca_key_online()
    assert keys.rotate(iaca_key_file=offline).serial != ""
