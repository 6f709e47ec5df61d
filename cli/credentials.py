"""``idflow keys ...`` (issuer keys) and ``idflow credential verify`` (check an issued mdoc).

    idflow keys init [--country UT] [--validity-days 365] ...   IACA root + first document signer
    idflow keys rotate [--validity-days 365]                    new document signer
    idflow keys show                                            certificates, no secrets
    idflow keys export-iaca > iaca.pem                          the trust anchor for verifiers
    idflow credential verify FILE --iaca iaca.pem [--device-key dev.pem]

Keys live in ``<IDFLOW_HOME>/keys`` unless ``--keys-dir`` says otherwise; the
passphrase comes from ``IDFLOW_KEY_PASSPHRASE`` (see ``mdoc.keystore``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from cli.main import clear_errors
from mdoc import certificates, holder, jwk
from mdoc.keystore import DEFAULT_COUNTRY, DEFAULT_ORGANIZATION, KeyStore, KeyStoreError, keys_dir
from mdoc.verify import CredentialInvalid, verify_issuer_signed
from settings import Settings

# The typed errors name the file or the failed check; ValueError includes CredentialInvalid.
_clear_errors = clear_errors(KeyStoreError, ValueError, OSError)


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="issuer keys: IACA root and document signers")
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    def with_dir(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--keys-dir", type=Path, help="default: <IDFLOW_HOME>/keys")
        return parser

    init = with_dir(
        commands.add_parser("init", help="create the IACA root and the first document signer")
    )
    init.add_argument(
        "--country", default=DEFAULT_COUNTRY, help="ISO 3166-1 alpha-2 (default: %(default)s)"
    )
    init.add_argument("--organization", default=DEFAULT_ORGANIZATION)
    init.add_argument("--issuer-url", help="IssuerAltName URI (default: IDFLOW_ISSUER_ID)")
    init.add_argument("--iaca-validity-days", type=int, default=3650)
    init.add_argument("--validity-days", type=int, default=365, help="document signer validity")
    init.add_argument(
        "--iaca-key-out",
        type=Path,
        help="write the IACA private key here (offline storage), never into the key directory",
    )
    init.set_defaults(run=run_init)

    rotate = with_dir(commands.add_parser("rotate", help="issue a new document signer"))
    rotate.add_argument("--validity-days", type=int, default=365)
    rotate.add_argument(
        "--iaca-key", type=Path, help="the offline IACA private key, used for this signing only"
    )
    rotate.set_defaults(run=run_rotate)

    offline = with_dir(
        commands.add_parser(
            "export-iaca-key", help="move the IACA private key out of the key directory"
        )
    )
    offline.add_argument("dest", type=Path, help="file on offline storage (written 0600)")
    offline.set_defaults(run=run_export_iaca_key)

    show = with_dir(commands.add_parser("show", help="the IACA and document signer certificates"))
    show.set_defaults(run=run_show)

    export = with_dir(commands.add_parser("export-iaca", help="print the IACA certificate (PEM)"))
    export.set_defaults(run=run_export_iaca)

    credential = subparsers.add_parser("credential", help="check an issued mdoc credential")
    credential_commands = credential.add_subparsers(
        dest="credential_command", required=True, metavar="ACTION"
    )
    check = credential_commands.add_parser(
        "verify", help="verify an IssuerSigned against the IACA, as a relying party would"
    )
    check.add_argument(
        "source",
        help=(
            "file (or - for stdin): base64 IssuerSigned, raw CBOR, or `idflow verify --json` output"
        ),
    )
    check.add_argument("--iaca", type=Path, required=True, help="trusted IACA certificate (PEM)")
    check.add_argument("--device-key", type=Path, help="require binding to this device key (PEM)")
    check.set_defaults(run=run_verify_credential)


def _store(args: argparse.Namespace, create_passphrase: bool = False) -> KeyStore:
    root = args.keys_dir or keys_dir(Settings.from_env().home)
    return KeyStore.open(root, create_passphrase=create_passphrase)


@_clear_errors
def run_init(args: argparse.Namespace) -> int:
    store = _store(args, create_passphrase=True)
    signer = store.init(
        country=args.country,
        organization=args.organization,
        issuer_url=args.issuer_url or Settings.from_env().issuer_id,
        iaca_validity=timedelta(days=args.iaca_validity_days),
        signer_validity=timedelta(days=args.validity_days),
        iaca_key_out=args.iaca_key_out,
    )
    print(f"created keys in {store.root}")
    if args.iaca_key_out:
        print(f"IACA private key written to {args.iaca_key_out}: keep it offline")
    _describe("IACA", signer.iaca)
    _describe("document signer", signer.certificate)
    return 0


@_clear_errors
def run_rotate(args: argparse.Namespace) -> int:
    store = _store(args)
    signer = store.rotate(timedelta(days=args.validity_days), iaca_key_file=args.iaca_key)
    print("new document signer; credentials signed before keep verifying against the IACA")
    _describe("document signer", signer.certificate)
    return 0


@_clear_errors
def run_export_iaca_key(args: argparse.Namespace) -> int:
    store = _store(args)
    store.export_iaca_key(args.dest)
    print(
        f"IACA private key moved to {args.dest}; {store.root} no longer holds it. "
        f"Keep the file offline; `idflow keys rotate --iaca-key FILE` uses it to sign"
    )
    return 0


@_clear_errors
def run_show(args: argparse.Namespace) -> int:
    store = _store(args)
    current = store.current_signer().serial
    _describe("IACA", store.iaca())
    for certificate in store.signer_certificates():
        state = "current" if certificates.serial_hex(certificate) == current else "retired"
        _describe(f"document signer ({state})", certificate)
    return 0


@_clear_errors
def run_export_iaca(args: argparse.Namespace) -> int:
    sys.stdout.write(_store(args).iaca().public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return 0


@_clear_errors
def run_verify_credential(args: argparse.Namespace) -> int:
    iaca = x509.load_pem_x509_certificate(args.iaca.read_bytes())
    device_key = None
    if args.device_key:
        device_key = holder.load_device_key(args.device_key.read_bytes()).public_key()
    raw = sys.stdin.buffer.read() if args.source == "-" else Path(args.source).read_bytes()
    verified = verify_issuer_signed(_issuer_signed(raw), iaca, device_key=device_key)
    # Only non-personal facts: the element names, never their values.
    print(f"valid {verified.doc_type}")
    print(
        f"  signed by      {verified.signer.subject.rfc4514_string()} "
        f"(serial {certificates.serial_hex(verified.signer)})"
    )
    print(
        f"  valid          {verified.valid_from:%Y-%m-%dT%H:%M:%SZ} .. "
        f"{verified.valid_until:%Y-%m-%dT%H:%M:%SZ}"
    )
    print(f"  device key     {jwk.thumbprint(verified.device_key)} (RFC 7638 thumbprint)")
    print(f"  elements       {', '.join(verified.elements)}")
    return 0


def _issuer_signed(raw: bytes) -> bytes:
    """IssuerSigned bytes from raw CBOR, base64 text, or the JSON result of ``idflow verify``."""
    try:
        text: str | None = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return raw  # binary: CBOR as is
    try:
        document: Any = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        credential = document.get("credential") or document
        text = credential.get("issuer_signed_b64") if isinstance(credential, dict) else None
        if not isinstance(text, str):
            raise CredentialInvalid("the JSON holds no credential.issuer_signed_b64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialInvalid("the input is neither CBOR, base64 nor idflow JSON") from None


def _describe(role: str, certificate: x509.Certificate) -> None:
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
    print(f"{role}: {certificate.subject.rfc4514_string()}")
    print(f"  serial       {certificates.serial_hex(certificate)}")
    print(
        f"  valid        {certificate.not_valid_before_utc:%Y-%m-%d} .. "
        f"{certificate.not_valid_after_utc:%Y-%m-%d}"
    )
    print(f"  sha256       {fingerprint}")
