"""Activity: issue the mdoc of an approved verification, bound to the holder's device key.

The workflow calls it only after an approved decision. All the work is
``mdoc.issuer.CredentialIssuer``, idempotent by verification id: a retry, or
the attempt after a worker died mid-way, returns the credential issued before
instead of signing again. A bad proof of possession or bad claims end the
verification (non-retryable ``DEVICE_PROOF_INVALID`` / ``CLAIMS_INVALID``).

The CPU pool builds it once::

    keys = KeyStore.open(keys_dir(settings.home))
    credential = CredentialActivities(engine, blobs, keys, settings.issuer_id)
    Worker(..., activities=[..., credential.issue_credential])
"""

from __future__ import annotations

import dataclasses

from sqlalchemy.engine import Engine
from temporalio import activity

from domain.contracts import IssueCredentialInput, IssuedCredential
from mdoc.issuer import CredentialIssuer
from mdoc.keystore import KeyStore
from store.blobs import BlobStore

from . import names
from .errors import non_retryable_rejections


class CredentialActivities:
    def __init__(self, engine: Engine, blobs: BlobStore, keys: KeyStore, issuer_id: str) -> None:
        self.issuer = CredentialIssuer(engine, blobs, keys, issuer_id)

    @activity.defn(name=names.ISSUE_CREDENTIAL)
    @non_retryable_rejections
    def issue_credential(self, request: IssueCredentialInput) -> IssuedCredential:
        # The bytes hold the claims and the portrait: they stay in the encrypted
        # store (where a purge reaches them); the history gets their reference.
        return dataclasses.replace(self.issuer.issue(request), issuer_signed_b64=None)
