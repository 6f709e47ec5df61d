"""Fixtures: an mdoc issuer with real keys, a database, a blob store and a real selfie.

- ``issuer_keys`` (session): an IACA root and document signer in a temporary
  key store (encrypted with a test passphrase). Tests that rotate make their own.
- ``mdl_claims``: a complete, valid set of the mDL claims callers provide.
- ``issuance``: a ``CredentialIssuer`` over a fresh SQLite database and blob
  store, plus ``issuance.request(verification_id)`` which plays the client and
  the holder: stores the selfie, hands out the nonce, signs the proof.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.samples import DEMO_CLAIMS
from domain.contracts import IssueCredentialInput
from mdoc import holder
from mdoc.issuer import CredentialIssuer
from mdoc.keystore import KeyStore
from security.keys import BLOB, parse_inline
from store import credentials
from store.blobs import BlobStore, EncryptedBlobStore
from store.engine import get_engine
from store.envelope import DataKeys

ISSUER_ID = "https://issuer.idflow.test"
TEST_PASSPHRASE = b"correct horse battery staple"


def make_key_store(root: Path) -> KeyStore:
    store = KeyStore(root, TEST_PASSPHRASE)
    store.init(country="UT", issuer_url=ISSUER_ID)
    return store


@pytest.fixture(scope="session")
def issuer_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return make_key_store(tmp_path_factory.mktemp("issuer") / "keys")


@pytest.fixture
def mdl_claims() -> dict[str, Any]:
    # The demo holder plus an optional element, so issuance covers a nested claim too.
    return DEMO_CLAIMS | {
        "driving_privileges": [{"vehicle_category_code": "B", "issue_date": "2024-03-01"}]
    }


@dataclass
class Issuance:
    issuer: CredentialIssuer
    blobs: BlobStore
    selfie: bytes
    claims: dict[str, Any]
    device_keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)

    @property
    def engine(self):
        return self.issuer.engine

    def request(
        self,
        verification_id: str,
        device_key: ec.EllipticCurvePrivateKey | None = None,
        claims: dict[str, Any] | None = None,
        issued_at: datetime | None = None,
    ) -> IssueCredentialInput:
        """A verification's issuance request as the workflow would send it."""
        key = device_key or holder.new_device_key()
        self.device_keys[verification_id] = key
        portrait = self.blobs.put(verification_id, self.selfie, "image/jpeg")
        nonce = credentials.create_nonce(self.engine, verification_id)
        binding = holder.device_binding(key, nonce, ISSUER_ID, issued_at)
        return IssueCredentialInput(verification_id, binding, claims or dict(self.claims), portrait)


@pytest.fixture
def issuance(
    tmp_path: Path, issuer_keys: KeyStore, photo: Callable[[str], bytes], mdl_claims: dict[str, Any]
) -> Issuance:
    engine = get_engine(f"sqlite:///{tmp_path / 'idflow.db'}")
    master = parse_inline(BLOB, os.environ["IDFLOW_BLOB_KEYS"], "IDFLOW_BLOB_KEYS")
    blobs = EncryptedBlobStore(tmp_path / "blobs", DataKeys(engine, master, timedelta(days=30)))
    issuer = CredentialIssuer(engine, blobs, issuer_keys, ISSUER_ID)
    return Issuance(issuer, blobs, photo("obama.jpg"), mdl_claims)
