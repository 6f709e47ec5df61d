"""A secured Temporal connection, for real: mutual TLS through Debian's nginx.

nginx terminates TLS in front of the session's dev server (``grpc_pass``) and
demands a client certificate signed by the test's CA (``ssl_verify_client on``).
Its certificate names ``temporal.idflow.test``, not the address dialled, so the
server-name setting is exercised too. Without nginx (``.ci/run`` installs it
when it can) the module skips and says so.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from devstack.processes import worker_command
from devstack.samples import sample_pairs
from devstack.stack import free_port
from domain.reasons import Decision
from settings import Settings
from starter.connection import ConnectionSettingsError, ServerUnreachable, connect

from ..support.temporal import (
    TemporalServer,
    stack_settings,
    start_stack,
)

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
SERVER_NAME = "temporal.idflow.test"

pytestmark = [
    pytest.mark.temporal,
    pytest.mark.skipif(NGINX is None, reason="needs Debian's nginx (apt-get install nginx-light)"),
]


@dataclasses.dataclass
class Pki:
    ca: str
    client_cert: str
    client_key: str
    stranger_cert: str  # a client certificate from a CA the proxy does not trust
    stranger_key: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    folder: Path,
    stem: str,
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server_name: str | None = None,
) -> tuple[x509.Name, ec.EllipticCurvePrivateKey]:
    """Write ``stem.pem`` and ``stem.key``: a certificate signed by ``issuer`` (or self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(subject)
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_name else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server_name:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False
        )
    certificate = builder.sign(issuer_key, hashes.SHA256())
    (folder / f"{stem}.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return name, key


def make_pki(folder: Path) -> Pki:
    ca = _certificate(folder, "ca", "idflow test CA", None, ca=True)
    _certificate(folder, "server", SERVER_NAME, ca, server_name=SERVER_NAME)
    _certificate(folder, "client", "idflow worker", ca)
    stranger_ca = _certificate(folder, "stranger-ca", "someone else's CA", None, ca=True)
    _certificate(folder, "stranger", "idflow worker", stranger_ca)
    return Pki(
        *(
            str(folder / name)
            for name in ("ca.pem", "client.pem", "client.key", "stranger.pem", "stranger.key")
        )
    )


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        ssl_client_certificate {dir}/ca.pem;
        ssl_verify_client on;
        client_max_body_size 0;
        location / {{
            grpc_pass grpc://{upstream};
            grpc_read_timeout 300s;   # Temporal's long polls last about a minute
            grpc_send_timeout 300s;
        }}
    }}
    # The API-key door: TLS without client certificates, the key as a bearer token.
    map $http_authorization $api_key_ok {{
        "Bearer {api_key}" 1;
        default 0;
    }}
    server {{
        listen 127.0.0.1:{api_key_port} ssl http2;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        location / {{
            if ($api_key_ok = 0) {{ return 401; }}
            grpc_pass grpc://{upstream};
        }}
    }}
}}
"""
API_KEY = "idflow-test-api-key-0123456789"


@dataclasses.dataclass
class Proxy:
    address: str
    api_key_address: str  # wants IDFLOW_TEMPORAL_API_KEY instead of a client certificate
    pki: Pki
    access_log: Path


@pytest.fixture(scope="module")
def mtls_proxy(
    temporal_server: TemporalServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    folder = tmp_path_factory.mktemp("nginx")
    pki = make_pki(folder)
    port, api_key_port = free_port(), free_port()
    conf = folder / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=folder,
            port=port,
            api_key_port=api_key_port,
            api_key=API_KEY,
            upstream=temporal_server.target,
        )
    )
    assert NGINX is not None
    command = [NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "error.log").read_text(errors="replace")
                    pytest.fail(f"nginx did not start:\n{log}")
                time.sleep(0.05)
        yield Proxy(f"127.0.0.1:{port}", f"127.0.0.1:{api_key_port}", pki, folder / "access.log")
    finally:
        process.terminate()
        process.wait(10)


def proxied_settings(proxy: Proxy, base: Settings, **tls: object) -> Settings:
    values: dict[str, object] = {
        "temporal_address": proxy.address,
        "temporal_tls_ca": proxy.pki.ca,
        "temporal_tls_server_name": SERVER_NAME,
    }
    return dataclasses.replace(base, **(values | tls))


@pytest.fixture(scope="module")
def base_settings(
    mtls_proxy: Proxy, model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return stack_settings(tmp_path_factory.mktemp("idflow-tls"), mtls_proxy.address, model_cache)


def test_a_client_without_the_client_certificate_is_refused(
    mtls_proxy: Proxy, temporal_server: TemporalServer, base_settings: Settings, test_keys: object
) -> None:
    no_certificate = proxied_settings(mtls_proxy, base_settings)
    with pytest.raises(ServerUnreachable, match=mtls_proxy.address):
        temporal_server.run(connect(no_certificate))

    # A certificate from a CA the proxy does not trust is refused as well.
    stranger = proxied_settings(
        mtls_proxy,
        base_settings,
        temporal_tls_cert=mtls_proxy.pki.stranger_cert,
        temporal_tls_key=mtls_proxy.pki.stranger_key,
    )
    with pytest.raises(ServerUnreachable):
        temporal_server.run(connect(stranger))

    # Nor does the proxy's certificate pass without our CA (system roots only).
    untrusted_server = dataclasses.replace(
        proxied_settings(
            mtls_proxy,
            base_settings,
            temporal_tls_cert=mtls_proxy.pki.client_cert,
            temporal_tls_key=mtls_proxy.pki.client_key,
        ),
        temporal_tls_ca="",
    )
    with pytest.raises(ServerUnreachable):
        temporal_server.run(connect(untrusted_server))

    # Half a key pair is a settings mistake, named before any connection is tried.
    with pytest.raises(ConnectionSettingsError, match="IDFLOW_TEMPORAL_TLS_KEY"):
        temporal_server.run(
            connect(proxied_settings(mtls_proxy, base_settings, temporal_tls_cert="x.pem"))
        )


def test_an_api_key_is_sent_as_a_bearer_token_over_tls(
    mtls_proxy: Proxy, temporal_server: TemporalServer, base_settings: Settings, test_keys: object
) -> None:
    door = dataclasses.replace(
        proxied_settings(mtls_proxy, base_settings), temporal_address=mtls_proxy.api_key_address
    )

    async def describe(settings: Settings) -> str:
        client = await connect(settings)
        return (
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
        ).server_version

    assert temporal_server.run(describe(dataclasses.replace(door, temporal_api_key=API_KEY)))
    with pytest.raises(ServerUnreachable):
        temporal_server.run(describe(dataclasses.replace(door, temporal_api_key="wrong-key")))
    with pytest.raises(ServerUnreachable):
        temporal_server.run(describe(door))


def test_a_worker_without_the_client_certificate_exits_with_one_line(
    mtls_proxy: Proxy, base_settings: Settings, test_keys: object
) -> None:
    settings = proxied_settings(mtls_proxy, base_settings)
    done = subprocess.run(
        worker_command("gpu"),
        env=os.environ | settings.to_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"idflow worker: no Temporal server answers at {mtls_proxy.address}"
    )
    assert "Traceback" not in done.stderr
    assert "ready:" not in done.stdout


def test_workers_and_client_with_the_certificate_run_a_verification(
    mtls_proxy: Proxy,
    temporal_server: TemporalServer,
    base_settings: Settings,
    photo_dir: Path,
    test_keys: object,
) -> None:
    settings = proxied_settings(
        mtls_proxy,
        base_settings,
        temporal_tls_cert=mtls_proxy.pki.client_cert,
        temporal_tls_key=mtls_proxy.pki.client_key,
    )
    stack = start_stack(temporal_server, settings)
    try:
        pair = sample_pairs(photo_dir)["same person"]
        result = stack.verify(pair.selfie, pair.document)
        assert result.decision is Decision.APPROVED
    finally:
        stack.stop()
    # Every role's traffic went through the proxy: the pools polled their queues there.
    log = mtls_proxy.access_log.read_text()
    assert "/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue" in log
    assert "/temporal.api.workflowservice.v1.WorkflowService/PollActivityTaskQueue" in log
