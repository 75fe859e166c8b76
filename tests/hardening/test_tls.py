"""``vpngw serve --tls-cert FILE --tls-key FILE``: the API over HTTPS (TLS 1.2 at least),
driven by the official Tea SDK with ``protocol="https"`` trusting a CA this test makes;
the certificate is reloaded on SIGHUP (a pair that does not load is refused, the old one
stays)."""

from __future__ import annotations

import datetime
import ipaddress
import signal
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alibabacloud_tea_openapi import models as openapi_models
from alibabacloud_vpc20160428 import models as tea
from alibabacloud_vpc20160428.client import Client as TeaClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET


@dataclass
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca() -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("vpngw test CA"))
        .issuer_name(_name("vpngw test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return Ca(key, cert)


def issue(ca: Ca, cert_path: Path, key_path: Path) -> x509.Certificate:
    """A server certificate for 127.0.0.1 and localhost, signed by ``ca``, written as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


@dataclass
class TlsServer:
    process: ServerProcess
    ca: Ca
    ca_file: Path
    cert_file: Path
    key_file: Path
    cert: x509.Certificate


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    ca = make_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert = issue(ca, cert_file, key_file)
    process = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    process.start("--tls-cert", str(cert_file), "--tls-key", str(key_file), "--log-level", "info")
    try:
        yield TlsServer(process, ca, ca_file, cert_file, key_file, cert)
    finally:
        process.stop()


def served_certificate(
    port: int, ca_file: Path, ciphers: str | None = None, **versions: ssl.TLSVersion
) -> x509.Certificate:
    context = ssl.create_default_context(cafile=str(ca_file))
    if ciphers:
        context.set_ciphers(ciphers)
    for name, version in versions.items():
        setattr(context, name, version)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_the_official_sdk_over_https(tls_server: TlsServer) -> None:
    config = openapi_models.Config(
        access_key_id=TEST_KEY_ID,
        access_key_secret=TEST_KEY_SECRET,
        region_id=REGION,
        endpoint=f"127.0.0.1:{tls_server.process.port}",
        protocol="https",
        ca=str(tls_server.ca_file),
    )
    client = TeaClient(config)
    vpc = client.create_vpc(tea.CreateVpcRequest(region_id=REGION, cidr_block="10.0.0.0/8")).body.vpc_id
    described = client.describe_vpcs(tea.DescribeVpcsRequest(region_id=REGION, vpc_id=vpc)).body
    assert [v.vpc_id for v in described.vpcs.vpc] == [vpc]
    config.signature_algorithm = "v2"  # RPC signature v1 over HTTPS too
    regions = TeaClient(config).describe_regions(tea.DescribeRegionsRequest()).body
    assert regions.regions.region


def test_tls_1_2_at_least_and_no_plain_http(tls_server: TlsServer) -> None:
    port = tls_server.process.port
    assert served_certificate(port, tls_server.ca_file, maximum_version=ssl.TLSVersion.TLSv1_2)
    with warnings.catch_warnings(), pytest.raises((ssl.SSLError, ConnectionError)):
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are, rightly
        served_certificate(
            port,
            tls_server.ca_file,
            ciphers="DEFAULT:@SECLEVEL=0",  # a client as willing as OpenSSL lets it be
            minimum_version=ssl.TLSVersion.TLSv1,
            maximum_version=ssl.TLSVersion.TLSv1_1,
        )
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert not sock.recv(65536).startswith(b"HTTP/")
        except ConnectionResetError:
            pass


def test_the_certificate_is_reloaded_on_sighup(tls_server: TlsServer) -> None:
    port, process = tls_server.process.port, tls_server.process.process
    assert process is not None
    assert served_certificate(port, tls_server.ca_file).serial_number == tls_server.cert.serial_number
    renewed = issue(tls_server.ca, tls_server.cert_file, tls_server.key_file)
    # Until the signal, new connections still get the old certificate.
    assert served_certificate(port, tls_server.ca_file).serial_number == tls_server.cert.serial_number
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while served_certificate(port, tls_server.ca_file).serial_number != renewed.serial_number:
        assert time.monotonic() < deadline, "the renewed certificate was never served"
        time.sleep(0.1)
    # A broken pair (a key that is not the certificate's) is refused; the renewed one stays.
    issue(tls_server.ca, tls_server.cert_file, tls_server.process.workdir / "other.key")
    process.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert process.poll() is None
    assert served_certificate(port, tls_server.ca_file).serial_number == renewed.serial_number
    tls_server.process.stop()
    log = tls_server.process.log_text()
    assert "TLS certificate reloaded" in log and "TLS certificate not reloaded" in log
    assert "https://127.0.0.1" in log


def test_sighup_without_tls_changes_nothing(tmp_path: Path) -> None:
    process = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    process.start("--log-level", "info")
    try:
        assert process.process is not None
        process.process.send_signal(signal.SIGHUP)  # systemctl reload on a plain-HTTP unit
        time.sleep(1)
        assert process.process.poll() is None
        assert httpx.post(f"{process.url}/", timeout=10).json()["Code"] == "MissingParameter.Action"
    finally:
        process.stop()
    assert "SIGHUP: nothing to reload" in process.log_text()
