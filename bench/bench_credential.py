"""Benchmark of credential issuance on this machine (not a test: it prints numbers).

    .venv/bin/python bench/bench_credential.py [--repeat N]

Median milliseconds of each step of ``CredentialIssuer.issue`` with a real
selfie (obama.jpg from the registry sample photos), SQLite and the file blob
store, and the ratio that matters for retries: a retried issuance (returns the
recorded credential) against a first issuance (signs). Also what a relying
party spends: our verifier and pymdoccbor on the same credential.
Numbers on a shared machine are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cryptography.x509  # noqa: F401  pymdoccbor uses it without importing it
from pymdoccbor.mdoc.verifier import MdocCbor

from bench.timing import median_ms
from devstack.samples import DEMO_CLAIMS
from domain.contracts import IssueCredentialInput
from mdoc import claims, holder, proof
from mdoc.issuer import CredentialIssuer
from mdoc.keystore import KeyStore
from mdoc.mso import sign_mdoc
from mdoc.verify import verify_device_response, verify_issuer_signed
from models.lifecycle.samples import fetch_samples
from security.keys import BLOB, new_key, parse_inline
from store import credentials
from store.blobs import EncryptedBlobStore
from store.engine import get_engine
from store.envelope import DataKeys

ISSUER = "https://issuer.idflow.bench"
TRANSCRIPT = [None, None, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    selfie = (fetch_samples() / "obama.jpg").read_bytes()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = KeyStore(root / "keys", b"benchmark passphrase, not secret")
        keys.init(ISSUER)
        engine = get_engine(f"sqlite:///{root / 'idflow.db'}")
        master = parse_inline(BLOB, f"bench:{new_key()}", "a throwaway benchmark key")
        blobs = EncryptedBlobStore(root / "blobs", DataKeys(engine, master, timedelta(days=30)))
        issuer = CredentialIssuer(engine, blobs, keys, ISSUER)
        device = holder.new_device_key()
        signer = keys.current_signer()
        now = datetime.now(UTC)
        counter = iter(range(10**9))

        def request() -> IssueCredentialInput:
            verification_id = f"v{next(counter)}"
            portrait = blobs.put(verification_id, selfie, "image/jpeg")
            nonce = credentials.create_nonce(engine, verification_id)
            return IssueCredentialInput(
                verification_id, holder.device_binding(device, nonce, ISSUER), DEMO_CLAIMS, portrait
            )

        portrait = claims.portrait_jpeg(selfie)
        elements = claims.mdl_claims(DEMO_CLAIMS, portrait, "UT", now.date()).elements
        until = signer.certificate.not_valid_after_utc
        sample = request()
        first = issuer.issue(sample)
        issuer_signed = base64.b64decode(first.issuer_signed_b64)
        response = holder.device_response(issuer_signed, device, TRANSCRIPT)

        def pymdoccbor_verify() -> None:
            parsed = MdocCbor()
            parsed.loads(response)
            assert parsed.verify(trusted_root_certs=[keys.iaca()])

        requests = [request() for _ in range(args.repeat)]
        pending = iter(requests)
        rows = {
            "proof check (JWT, ES256 verify)": median_ms(
                lambda: proof.check_proof(sample.device, ISSUER, now), args.repeat
            ),
            "portrait re-encode (JPEG, EXIF stripped)": median_ms(
                lambda: claims.portrait_jpeg(selfie), args.repeat
            ),
            "sign MSO (items, digests, COSE_Sign1)": median_ms(
                lambda: sign_mdoc(elements, device.public_key(), signer, now, until), args.repeat
            ),
            "first issuance (all steps, SQLite + blobs)": median_ms(
                lambda: issuer.issue(next(pending)), args.repeat
            ),
            "retried issuance (recorded credential)": median_ms(
                lambda: issuer.issue(sample), args.repeat
            ),
            "verify IssuerSigned (ours)": median_ms(
                lambda: verify_issuer_signed(issuer_signed, keys.iaca()), args.repeat
            ),
            "verify DeviceResponse (ours, + device sig)": median_ms(
                lambda: verify_device_response(response, keys.iaca(), TRANSCRIPT), args.repeat
            ),
            "verify DeviceResponse (pymdoccbor)": median_ms(pymdoccbor_verify, args.repeat),
        }

    print(f"credential issuance, median of {args.repeat} (load average {os.getloadavg()[0]:.2f})")
    for name, ms in rows.items():
        print(f"  {name:<46} {ms:8.2f} ms")
    first_ms = rows["first issuance (all steps, SQLite + blobs)"]
    retry_ms = rows["retried issuance (recorded credential)"]
    print(f"  retry / first issuance: {retry_ms / first_ms:.2f}")
    print(f"  IssuerSigned: {len(issuer_signed)} bytes ({len(portrait)} of them the portrait)")


if __name__ == "__main__":
    main()
