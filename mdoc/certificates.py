"""The two certificates of an mdoc issuer, as ISO/IEC 18013-5 Annex B profiles them.

- IACA root: self-signed CA, ``pathLen 0``, keyCertSign + cRLSign, SKI,
  IssuerAltName. Verifiers trust it (``idflow keys export-iaca``).
- Document signer (DS): P-256, signed by the IACA, digitalSignature
  (critical), extended key usage 1.0.18013.5.1.2 (critical), AKI = the IACA's
  SKI, its own SKI, the country ``C`` in the subject.

Making and checking live side by side so that what we issue and what we
accept cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from . import es256

MDL_DS_EKU = ObjectIdentifier("1.0.18013.5.1.2")  # id-mdl-kp-mdlDS
MAX_SIGNER_VALIDITY = timedelta(days=457)  # 18013-5 Annex B: DS validity at most 457 days


class CertificateProfileError(ValueError):
    """A certificate does not follow the ISO 18013-5 profile (says which rule)."""


def _name(country_code: str, organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country_code),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_iaca(
    key: ec.EllipticCurvePrivateKey,
    country: str,
    organization: str,
    issuer_url: str,
    not_before: datetime,
    validity: timedelta,
) -> x509.Certificate:
    """A self-signed IACA root certificate."""
    subject = _name(country, organization, f"{organization} IACA")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.IssuerAlternativeName([x509.UniformResourceIdentifier(issuer_url)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


def make_document_signer(
    key: ec.EllipticCurvePrivateKey,
    iaca: x509.Certificate,
    iaca_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    validity: timedelta,
) -> x509.Certificate:
    """A document signer certificate issued by ``iaca``, ending no later than it."""
    if not es256.is_p256(key):
        raise CertificateProfileError("document signer key must be P-256")
    if validity > MAX_SIGNER_VALIDITY:
        raise CertificateProfileError(
            f"document signer validity {validity.days} days exceeds the 457 days ISO 18013-5 allows"
        )
    not_after = min(not_before + validity, iaca.not_valid_after_utc)
    if not_after <= not_before:
        raise CertificateProfileError("the IACA certificate has expired: initialise new keys")
    issuing_country = country(iaca)
    organization = iaca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    stamp = not_before.strftime("%Y-%m-%d")
    iaca_ski = iaca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    issuer_alt_name = iaca.extensions.get_extension_for_class(x509.IssuerAlternativeName).value
    return (
        x509.CertificateBuilder()
        .subject_name(
            _name(issuing_country, str(organization), f"{organization} Document Signer {stamp}")
        )
        .issuer_name(iaca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(iaca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([MDL_DS_EKU]), critical=True)
        .add_extension(issuer_alt_name, critical=False)
        .sign(iaca_key, hashes.SHA256())
    )


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    usages = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(usages | enabled))


# --- Checks ------------------------------------------------------------------


def serial_hex(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


def country(certificate: x509.Certificate) -> str:
    """The subject's country ``C``."""
    values = certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    if len(values) != 1:
        raise CertificateProfileError("certificate subject must hold exactly one country (C)")
    return str(values[0].value)


def _extension(
    certificate: x509.Certificate, kind: type, what: str, critical: bool
) -> x509.Extension:
    try:
        extension = certificate.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        raise CertificateProfileError(f"{what} certificate lacks {kind.__name__}") from None
    if extension.critical != critical:
        state = "critical" if critical else "non-critical"
        raise CertificateProfileError(f"{what} certificate: {kind.__name__} must be {state}")
    return extension


def check_iaca(iaca: x509.Certificate) -> None:
    """Raise ``CertificateProfileError`` unless ``iaca`` is an IACA root as profiled."""
    constraints = _extension(iaca, x509.BasicConstraints, "IACA", critical=True).value
    if not constraints.ca or constraints.path_length != 0:
        raise CertificateProfileError("IACA certificate must be a CA with pathLen 0")
    usage = _extension(iaca, x509.KeyUsage, "IACA", critical=True).value
    if not (usage.key_cert_sign and usage.crl_sign) or usage.digital_signature:
        raise CertificateProfileError("IACA key usage must be keyCertSign and cRLSign only")
    ski = _extension(iaca, x509.SubjectKeyIdentifier, "IACA", critical=False).value
    if ski.digest != x509.SubjectKeyIdentifier.from_public_key(iaca.public_key()).digest:
        raise CertificateProfileError("IACA subject key identifier does not match its key")
    _extension(iaca, x509.IssuerAlternativeName, "IACA", critical=False)
    if iaca.issuer != iaca.subject:
        raise CertificateProfileError("IACA certificate must be self-issued")
    country(iaca)


def check_document_signer(signer: x509.Certificate, iaca: x509.Certificate) -> None:
    """Raise ``CertificateProfileError`` unless ``signer`` is a DS certificate of ``iaca``."""
    if not es256.is_p256(signer.public_key()):  # type: ignore[arg-type]
        raise CertificateProfileError("document signer key must be P-256")
    usage = _extension(signer, x509.KeyUsage, "document signer", critical=True).value
    if not usage.digital_signature or usage.key_cert_sign or usage.crl_sign:
        raise CertificateProfileError("document signer key usage must be digitalSignature only")
    eku = _extension(signer, x509.ExtendedKeyUsage, "document signer", critical=True).value
    if list(eku) != [MDL_DS_EKU]:
        raise CertificateProfileError("document signer extended key usage must be 1.0.18013.5.1.2")
    ski = _extension(signer, x509.SubjectKeyIdentifier, "document signer", critical=False).value
    if ski.digest != x509.SubjectKeyIdentifier.from_public_key(signer.public_key()).digest:
        raise CertificateProfileError(
            "document signer subject key identifier does not match its key"
        )
    aki = _extension(signer, x509.AuthorityKeyIdentifier, "document signer", critical=False).value
    iaca_ski = iaca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    if aki.key_identifier != iaca_ski.digest:
        raise CertificateProfileError("document signer authority key identifier is not the IACA's")
    _extension(signer, x509.IssuerAlternativeName, "document signer", critical=False)
    try:
        constraints = signer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise CertificateProfileError("document signer must not be a CA")
    if country(signer) != country(iaca):
        raise CertificateProfileError("document signer country differs from the IACA's")


def check_chain(signer: x509.Certificate, iaca: x509.Certificate, at: datetime) -> None:
    """Both profiles hold, the IACA signed the DS, and both are valid at ``at``."""
    check_iaca(iaca)
    check_document_signer(signer, iaca)
    try:
        signer.verify_directly_issued_by(iaca)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise CertificateProfileError(
            f"document signer is not issued by this IACA ({type(err).__name__})"
        ) from None
    for what, certificate in (("IACA", iaca), ("document signer", signer)):
        if (
            not certificate.not_valid_before_utc
            <= at.astimezone(UTC)
            <= certificate.not_valid_after_utc
        ):
            raise CertificateProfileError(
                f"{what} certificate is not valid at {at:%Y-%m-%dT%H:%M:%SZ}"
            )
