"""Where the issuer's keys live: encrypted on disk, never in the database or logs.

Layout of the keys directory (default ``<IDFLOW_HOME>/keys``)::

    keystore.json          KDF salt and parameters, serial of the current signer (no secrets)
    iaca.pem               IACA root certificate (public: ``idflow keys export-iaca``)
    iaca.key               IACA private key, encrypted PKCS#8 — only while it is online
    signers/<serial>.pem   every document signer certificate ever issued
    signers/<serial>.key   the current document signer's private key, encrypted PKCS#8
    passphrase             dev stack only: a generated passphrase, mode 0600

The passphrase comes from ``IDFLOW_KEY_PASSPHRASE`` (production: injected from
a secret manager), else from the file named by ``IDFLOW_KEY_PASSPHRASE_FILE``,
else from ``<keys>/passphrase``, which ``keys init`` generates (mode 0600) when
neither variable is set. That dev default keeps the keys out of database
dumps and logs, not away from someone who can read the whole directory.

Each private key file is standard PKCS#8 (PBES2, AES-256-CBC). Its password is
not the passphrase itself but scrypt(passphrase, salt): cryptography writes
PBKDF2 with only 2048 rounds, too few for a human-chosen passphrase.

Rotation issues a new document signer and retires the old one's private key;
its certificate stays, and credentials it signed keep verifying against the
IACA because each carries its signer certificate (x5chain).

The IACA private key is needed only to sign a new document signer, so in
production it lives offline: ``keys init --iaca-key-out FILE`` never puts it
in the directory, ``keys export-iaca-key FILE`` moves it out of an existing
one, and ``keys rotate --iaca-key FILE`` uses the offline copy for one
signing without storing it. Issuance never reads it. (The dev stack keeps it
online for convenience.) The exported file is the same encrypted PKCS#8: it
opens only with this store's passphrase and salt.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import stat
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from . import certificates

PASSPHRASE_ENV = "IDFLOW_KEY_PASSPHRASE"
PASSPHRASE_FILE_ENV = "IDFLOW_KEY_PASSPHRASE_FILE"
MIN_PASSPHRASE_CHARS = 16

DEFAULT_COUNTRY = "UT"  # "Utopia", the example country of ISO 18013-5
DEFAULT_ORGANIZATION = "idflow"
DEFAULT_IACA_VALIDITY = timedelta(days=3650)
DEFAULT_SIGNER_VALIDITY = timedelta(days=365)

_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
_STATE = "keystore.json"
_COUNTRY = re.compile(r"[A-Z]{2}")


class KeyStoreError(RuntimeError):
    """The key store is missing, locked or inconsistent (message says which file)."""


@dataclass(frozen=True)
class DocumentSigner:
    """The key that signs MSOs, its certificate, and the IACA that issued it."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate
    iaca: x509.Certificate

    @property
    def serial(self) -> str:
        return certificates.serial_hex(self.certificate)

    @property
    def country(self) -> str:
        return certificates.country(self.certificate)


def keys_dir(home: Path) -> Path:
    """The default keys directory under the data directory (``IDFLOW_HOME``)."""
    return home / "keys"


class KeyStore:
    """The IACA and document signer keys of one issuer, in one directory."""

    def __init__(self, root: Path, passphrase: bytes) -> None:
        self.root = root
        self._passphrase = passphrase
        self._password: bytes | None = None  # scrypt(passphrase), derived once
        self._salt: bytes | None = None
        self._signers: dict[str, DocumentSigner] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, root: Path, create_passphrase: bool = False) -> KeyStore:
        """The key store at ``root``, unlocked with the configured passphrase.

        With ``create_passphrase`` and no passphrase configured, a random one
        is written to ``<root>/passphrase`` (mode 0600) for the dev stack.
        """
        return cls(root, _passphrase(root, create_passphrase))

    def exists(self) -> bool:
        return (self.root / _STATE).is_file()

    # --- Creating keys ---------------------------------------------------------

    def init(
        self,
        issuer_url: str,
        country: str = DEFAULT_COUNTRY,
        organization: str = DEFAULT_ORGANIZATION,
        iaca_validity: timedelta = DEFAULT_IACA_VALIDITY,
        signer_validity: timedelta = DEFAULT_SIGNER_VALIDITY,
        now: datetime | None = None,
        iaca_key_out: Path | None = None,
    ) -> DocumentSigner:
        """Create the IACA root (IssuerAltName ``issuer_url``) and the first document signer.

        With ``iaca_key_out`` the IACA private key is written there (offline
        storage) and never into the key directory.
        """
        if self.exists():
            raise KeyStoreError(
                f"keys already exist in {self.root}; "
                "`idflow keys rotate` issues a new document signer"
            )
        if not _COUNTRY.fullmatch(country):
            raise KeyStoreError("country must be an ISO 3166-1 alpha-2 code such as UT or DE")
        now = _now(now)
        iaca_key = ec.generate_private_key(ec.SECP256R1())
        iaca = certificates.make_iaca(
            iaca_key, country, organization, issuer_url, now, iaca_validity
        )
        signer = _new_signer(iaca, iaca_key, signer_validity, now)  # nothing written if it fails
        (self.root / "signers").mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        _write(self.root / "iaca.pem", iaca.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(iaca_key_out or self.root / "iaca.key", self._encrypt(iaca_key), 0o600)
        kdf = {"scrypt": _SCRYPT, "salt": base64.b64encode(self._kdf_salt()).decode()}
        self._save_signer(signer, {"kdf": kdf})
        return signer

    def rotate(
        self,
        signer_validity: timedelta = DEFAULT_SIGNER_VALIDITY,
        now: datetime | None = None,
        iaca_key_file: Path | None = None,
    ) -> DocumentSigner:
        """Issue a new document signer and retire the current one's private key.

        The IACA key comes from ``iaca_key_file`` (brought from offline storage,
        used, not stored) or else from the key directory, if it is online.
        """
        state = self._state()
        retired = state["current_signer"]
        iaca_key = self._iaca_key(iaca_key_file)
        signer = _new_signer(self.iaca(), iaca_key, signer_validity, _now(now))
        self._save_signer(signer, state)
        (self.root / "signers" / f"{retired}.key").unlink(missing_ok=True)
        return signer

    def iaca_key_online(self) -> bool:
        return (self.root / "iaca.key").exists()

    def export_iaca_key(self, dest: Path) -> None:
        """Move the IACA private key out of the key directory to ``dest`` (offline storage)."""
        online = self.root / "iaca.key"
        if not online.exists():
            raise KeyStoreError(
                f"the IACA private key is not in {self.root}: it is offline already"
            )
        if dest.exists():
            raise KeyStoreError(f"{dest} exists; refusing to overwrite it")
        self._iaca_key(online)  # decrypts and belongs to iaca.pem, or raises
        _write(dest, online.read_bytes(), 0o600)
        if dest.read_bytes() != online.read_bytes():
            raise KeyStoreError(f"{dest} does not hold what was written; the key stays online")
        online.unlink()

    def _iaca_key(self, path: Path | None) -> ec.EllipticCurvePrivateKey:
        path = path or self.root / "iaca.key"
        if not path.exists():
            raise KeyStoreError(
                f"the IACA private key is offline: bring it back for this signing with "
                f"--iaca-key FILE (it is not stored in {self.root})"
            )
        key = self._load_key(path)
        if key.public_key() != self.iaca().public_key():
            raise KeyStoreError(f"{path.name} is not the private key of {self.root / 'iaca.pem'}")
        return key

    def _save_signer(self, signer: DocumentSigner, state: dict[str, Any]) -> None:
        pem = signer.certificate.public_bytes(serialization.Encoding.PEM)
        _write(self._signer_path(signer.serial, "pem"), pem, 0o644)
        _write(self._signer_path(signer.serial, "key"), self._encrypt(signer.private_key), 0o600)
        # The pointer moves last: a crash before it leaves the previous signer current.
        state = state | {"current_signer": signer.serial}
        _write(self.root / _STATE, json.dumps(state, indent=2).encode(), 0o644)

    # --- Reading keys ----------------------------------------------------------

    def iaca(self) -> x509.Certificate:
        return _load_certificate(self.root / "iaca.pem")

    def current_signer(self) -> DocumentSigner:
        """The signer named in ``keystore.json``; re-read on every call so that a
        rotation reaches running workers without a restart."""
        serial = self._state()["current_signer"]
        with self._lock:
            signer = self._signers.get(serial)
            if signer is None:
                signer = self._load_signer(serial)
                self._signers[serial] = signer
        return signer

    def signer_certificates(self) -> list[x509.Certificate]:
        """Every document signer certificate issued here, current and retired."""
        return [_load_certificate(path) for path in sorted((self.root / "signers").glob("*.pem"))]

    def _load_signer(self, serial: str) -> DocumentSigner:
        certificate = _load_certificate(self._signer_path(serial, "pem"))
        key = self._load_key(self._signer_path(serial, "key"))
        if key.public_key() != certificate.public_key():
            raise KeyStoreError(f"signers/{serial}.key does not belong to signers/{serial}.pem")
        iaca = self.iaca()
        try:
            certificates.check_chain(certificate, iaca, datetime.now(UTC))
        except certificates.CertificateProfileError as err:
            raise KeyStoreError(f"signers/{serial}.pem: {err}") from None
        return DocumentSigner(key, certificate, iaca)

    def _signer_path(self, serial: str, kind: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]+", serial):
            raise KeyStoreError(f"{_STATE} names an invalid signer serial")
        return self.root / "signers" / f"{serial}.{kind}"

    def _state(self) -> dict[str, Any]:
        path = self.root / _STATE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyStoreError(f"no keys in {self.root}: run `idflow keys init`") from None

    # --- Encryption ------------------------------------------------------------

    def _kdf_salt(self) -> bytes:
        if self._salt is None:
            if self.exists():
                self._salt = base64.b64decode(self._state()["kdf"]["salt"])
            else:
                self._salt = secrets.token_bytes(16)  # a new key store
        return self._salt

    def _key_password(self) -> bytes:
        if self._password is None:
            derived = Scrypt(salt=self._kdf_salt(), length=32, **_SCRYPT).derive(self._passphrase)
            self._password = base64.urlsafe_b64encode(derived)
        return self._password

    def _encrypt(self, key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._key_password()),
        )

    def _load_key(self, path: Path) -> ec.EllipticCurvePrivateKey:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyStoreError(f"{path.name} is missing from {path.parent}") from None
        try:
            key = serialization.load_pem_private_key(data, password=self._key_password())
        except (ValueError, TypeError):
            raise KeyStoreError(
                f"cannot decrypt {path.name}: wrong passphrase or not an encrypted key"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyStoreError(f"{path.name} is not an EC private key")
        return key


def _new_signer(
    iaca: x509.Certificate, iaca_key: ec.EllipticCurvePrivateKey, validity: timedelta, now: datetime
) -> DocumentSigner:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = certificates.make_document_signer(key, iaca, iaca_key, now, validity)
    return DocumentSigner(key, certificate, iaca)


def ensure_keys(root: Path, issuer_url: str, country: str = DEFAULT_COUNTRY) -> KeyStore:
    """The key store at ``root``, created with defaults on first start (dev stack, demo)."""
    store = KeyStore.open(root, create_passphrase=True)
    if not store.exists():
        store.init(country=country, issuer_url=issuer_url)
    return store


def issuing_country(root: Path) -> str:
    """The country the key store's certificates name (public: no passphrase needed)."""
    return certificates.country(_load_certificate(root / "iaca.pem"))


def _passphrase(root: Path, create: bool) -> bytes:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        if len(value) < MIN_PASSPHRASE_CHARS:
            raise KeyStoreError(
                f"{PASSPHRASE_ENV} must have at least {MIN_PASSPHRASE_CHARS} characters"
            )
        return value.encode()
    named = os.environ.get(PASSPHRASE_FILE_ENV)
    path = Path(named).expanduser() if named else root / "passphrase"
    if not path.exists() and create and not named:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(path, secrets.token_urlsafe(32).encode(), 0o600)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyStoreError(
            f"no key passphrase: set {PASSPHRASE_ENV}, or {PASSPHRASE_FILE_ENV}, or create {path}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(f"passphrase file {path} is accessible to others: chmod 600 it")
    value = path.read_text().strip()
    if len(value) < MIN_PASSPHRASE_CHARS:
        raise KeyStoreError(
            f"passphrase in {path} must have at least {MIN_PASSPHRASE_CHARS} characters"
        )
    return value.encode()


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically; the file has ``mode`` from its first byte."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise KeyStoreError(f"{path.name} is missing from {path.parent}") from None


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).replace(microsecond=0)
