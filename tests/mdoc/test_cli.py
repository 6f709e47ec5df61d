"""``idflow keys ...`` and ``idflow credential verify``."""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cli import credentials as cli
from mdoc import holder
from mdoc.keystore import PASSPHRASE_ENV, KeyStore
from settings import PROJECT_ROOT


def idflow(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="idflow")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("IDFLOW_HOME", str(tmp_path))
    monkeypatch.setenv(PASSPHRASE_ENV, "cli test passphrase, long enough")
    return tmp_path


def test_init_rotate_show_export(home, capsys):
    assert idflow("keys", "init", "--country", "DE", "--validity-days", "90") == 0
    init_out = capsys.readouterr().out
    assert "created keys in" in init_out and "C=DE" in init_out

    assert idflow("keys", "rotate") == 0
    assert "new document signer" in capsys.readouterr().out

    assert idflow("keys", "show") == 0
    shown = capsys.readouterr().out
    assert (
        shown.count("document signer (current)") == 1
        and shown.count("document signer (retired)") == 1
    )

    assert idflow("keys", "export-iaca") == 0
    exported = x509.load_pem_x509_certificate(capsys.readouterr().out.encode())
    assert exported == KeyStore.open(home / "keys").iaca()
    signer = KeyStore.open(home / "keys").current_signer().certificate
    assert (
        signer.not_valid_after_utc - signer.not_valid_before_utc
    ).days == 365  # rotate's default


def test_errors_are_one_clear_line(home, capsys):
    assert idflow("keys", "rotate") == 1
    assert (
        capsys.readouterr().err.strip()
        == f"idflow keys: no keys in {home / 'keys'}: run `idflow keys init`"
    )

    assert idflow("keys", "init", "--country", "Utopia") == 1
    assert "ISO 3166-1 alpha-2" in capsys.readouterr().err


def test_credential_verify_reads_the_json_of_idflow_verify(issuance, issuer_keys, tmp_path, capsys):
    credential = issuance.issuer.issue(issuance.request("v-1"))
    result = tmp_path / "result.json"
    output = {
        "decision": "approved",
        "credential": {"issuer_signed_b64": credential.issuer_signed_b64},
    }
    result.write_text(json.dumps(output))
    iaca = tmp_path / "iaca.pem"
    iaca.write_bytes(issuer_keys.iaca().public_bytes(Encoding.PEM))
    device = tmp_path / "dev.pem"
    device.write_bytes(holder.device_key_pem(issuance.device_keys["v-1"]))

    assert (
        idflow(
            "credential", "verify", str(result), "--iaca", str(iaca), "--device-key", str(device)
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("valid org.iso.18013.5.1.mDL")
    assert credential.device_key_thumbprint in out and "family_name" in out
    assert issuance.claims["family_name"] not in out  # names of elements, never values

    raw = tmp_path / "issuer_signed.cbor"
    raw.write_bytes(base64.b64decode(credential.issuer_signed_b64))
    other_device = tmp_path / "other.pem"
    other_device.write_bytes(holder.device_key_pem(holder.new_device_key()))
    assert (
        idflow(
            "credential", "verify", str(raw), "--iaca", str(iaca), "--device-key", str(other_device)
        )
        == 1
    )
    assert "deviceKeyInfo is not the requested device key" in capsys.readouterr().err


def test_the_idflow_entry_point_exports_the_iaca(home):
    run = lambda *argv: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "cli", *argv],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run("keys", "init").returncode == 0
    exported = run("keys", "export-iaca")

    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("-----BEGIN CERTIFICATE-----\n")
    assert (
        x509.load_pem_x509_certificate(exported.stdout.encode())
        == KeyStore.open(home / "keys").iaca()
    )
