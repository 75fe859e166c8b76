"""The browser's signer against the server's verifier, and the console's pure helpers,
run as the page runs them (the ES modules imported in Chromium); and the console over
``vpngw serve --tls-cert``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from cryptography.hazmat.primitives import serialization

from tests.hardening.test_tls import issue, make_ca
from tests.ops.server_process import ServerProcess
from tests.support.api import REGION
from vpngw.auth.signatures import IncomingRequest, read_credentials, verify
from vpngw.errors import BadRequest

from .harness import DESKTOP, Browser, Server, browser, running_server

PARAMS = {
    "Name": "my conn/中文 *x (1)~!'",
    "LocalSubnet": "10.0.0.0/24, 10.0.1.0/24",
    "IkeConfig": json.dumps({"Psk": "p&s=k+%20", "IkeVersion": "ikev2"}),
    "Empty": "",
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server(lab=False) as running:
        yield running


@pytest.fixture
def page_at(server: Server) -> Iterator[Browser]:
    with browser(DESKTOP) as driven:
        driven.page.goto(f"{server.url}/console/")
        driven.page.get_by_label("AccessKeyId").wait_for()
        yield driven


def _signed_in_page(driven: Browser, secret: str) -> dict[str, Any]:
    signed: dict[str, Any] = driven.page.evaluate(
        """async ([params, secret]) => {
            const m = await import("/console/js/signer.js");
            const key = await m.importSecret(secret);
            const body = m.formBody(params);
            const headers = await m.signedHeaders({
                action: "CreateVpc", body, accessKeyId: "LTAIconsole", key, host: "127.0.0.1:8080",
                now: new Date("2026-12-06T10:00:00.123Z"), nonce: "0f1e2d3c",
            });
            let exported = "refused";
            try { await crypto.subtle.exportKey("raw", key); exported = "exported"; } catch (e) {}
            return { body, headers, exported };
        }""",
        [PARAMS, secret],
    )
    return signed


def _incoming(signed: dict[str, Any]) -> IncomingRequest:
    body: str = signed["body"]
    return IncomingRequest(
        method="POST",
        path="/",
        query=(),
        form=tuple(parse_qsl(body, keep_blank_values=True)),
        headers={**{k.lower(): v for k, v in signed["headers"].items()}, "host": "127.0.0.1:8080"},
        body=body.encode(),
    )


def test_the_browser_signature_is_what_the_server_verifies(page_at: Browser) -> None:
    signed = _signed_in_page(page_at, "s3cret-of-the-test")
    headers = signed["headers"]
    assert "host" not in headers  # the browser sends Host itself
    assert headers["x-acs-date"] == "2026-12-06T10:00:00Z"
    assert headers["authorization"].startswith(
        "ACS3-HMAC-SHA256 Credential=LTAIconsole,SignedHeaders=content-type;host;x-acs-action;"
        "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature="
    )
    request = _incoming(signed)
    assert dict(request.form) == PARAMS  # the body carries every value exactly, the empty one too
    credentials = read_credentials(request)
    assert credentials is not None and credentials.access_key_id == "LTAIconsole"
    verify(request, credentials, "s3cret-of-the-test")  # strict: every x-acs-* header is signed
    with pytest.raises(BadRequest) as wrong:
        verify(request, credentials, "another-secret")
    assert wrong.value.code == "SignatureDoesNotMatch"
    tampered = IncomingRequest(**{**request.__dict__, "body": request.body.replace(b"ikev2", b"ikev1")})
    with pytest.raises(BadRequest):
        verify(tampered, credentials, "s3cret-of-the-test")
    # The key object cannot give the secret back to a script.
    assert signed["exported"] == "refused"


def test_the_helpers_the_pages_use(page_at: Browser) -> None:
    results = page_at.page.evaluate(
        """async () => {
            const plot = await import("/console/js/views/plot.js");
            const form = await import("/console/js/views/connection_form.js");
            const peer = await import("/console/js/views/peer_config.js");
            const page = await import("/console/js/views/connection.js");
            const signer = await import("/console/js/signer.js");
            return {
                chart: (() => {
                    const svg = plot.lineChart({ title: "t", from: 0, to: 100, format: String, testid: "x", series: [
                        { name: "in", cls: "in", points: [[0, 10], [50, 40], [60, 0]] },
                        { name: "out", cls: "out", points: [] },
                    ] });
                    const path = svg.querySelector("path.series.in");
                    return { max: svg.dataset.max, last: path.dataset.last, d: path.getAttribute("d"),
                             paths: svg.querySelectorAll("path").length };
                })(),
                fields: ["IllegalParam.LocalSubnet", "InvalidParameter.IkeConfig.IkeLifetime",
                         "MissingParameter.RemoteSubnet", "InvalidName", "VpnConnection.SubnetConflict",
                         "InvalidVpnGatewayInstanceId.NotFound", "OperationUnsupported.Bgp", "Throttling"]
                        .map(form.fieldOfError),
                ike: peer.ikeProposal({IkeEncAlg: "aes256", IkeAuthAlg: "sha256", IkePfs: "group14"}),
                esp: [peer.espProposal({IpsecEncAlg: "3des", IpsecAuthAlg: "sha1", IpsecPfs: "disabled"}),
                      peer.espProposal({IpsecEncAlg: "aes", IpsecAuthAlg: "md5", IpsecPfs: "group24"})],
                phases: ["ipsec_sa_established", "ike_sa_established", "ipsec_sa_not_established",
                         "ike_sa_not_established"].map((s) => page.phases(s).map((p) => p[0]).join("/")),
                pct: signer.pct("a b*c/~'()!中"),
                conf: peer.swanctlConf("vco-1", {
                    Local: "198.19.0.10", Remote: "198.18.0.2", LocalSubnet: "10.10.1.0/24,10.10.2.0/24",
                    RemoteSubnet: "10.1.1.0/24",
                    IkeConfig: {Psk: 'quo"te', IkeVersion: "ikev1", IkeMode: "aggressive", IkeEncAlg: "aes",
                                IkeAuthAlg: "sha1", IkePfs: "group2", IkeLifetime: 0, LocalId: "198.19.0.10",
                                RemoteId: "198.18.0.2"},
                    IpsecConfig: {IpsecEncAlg: "aes", IpsecAuthAlg: "sha1", IpsecPfs: "group2", IpsecLifetime: 3600},
                }),
            };
        }"""
    )
    # The counters as read (a drop to 0 is a new SA), held level to the window's end; an
    # empty series draws nothing.
    chart = results["chart"]
    assert (chart["max"], chart["last"], chart["paths"]) == ("40", "0", 1)
    assert chart["d"].startswith("M64.0,") and chart["d"].count(" H") == 3
    assert results["fields"] == [
        "LocalSubnet",
        "IkeConfig.IkeLifetime",
        "RemoteSubnet",
        "Name",
        "LocalSubnet",
        "VpnGatewayId",
        "BgpConfig",
        "",
    ]
    assert results["ike"] == "aes256-sha256-prfsha256-modp2048"
    assert results["esp"] == ["3des-sha1", "aes128-md5-modp2048s256"]
    assert results["phases"] == ["up/up", "up/partial", "up/down", "down/down"]
    assert results["pct"] == "a%20b%2Ac%2F~%27%28%29%21%E4%B8%AD"
    conf: str = results["conf"]
    assert "aggressive = yes" in conf and "rekey_time = 0s" not in conf and "rekey_time = 3600s" in conf
    # IKEv1: one CHILD_SA per subnet pair; a Psk with a quote is written as hex.
    assert conf.count("local_ts = ") == 2 and "vco-1-2-1 {" in conf
    assert "secret = 0x71756f227465" in conf
    assert not page_at.errors, page_at.errors


def test_the_console_over_tls(tmp_path: Path) -> None:
    ca = make_ca()
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    issue(ca, cert_file, key_file)
    (tmp_path / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    process = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    process.start("--tls-cert", str(cert_file), "--tls-key", str(key_file))
    try:
        base = f"https://127.0.0.1:{process.port}"
        with browser(DESKTOP, ignore_https_errors=True) as driven:
            driven.sign_in(base)
            driven.page.get_by_test_id("list-DescribeVpnConnections").wait_for()
            driven.page.get_by_text("Nothing here yet.").wait_for()
            assert driven.page.locator("#region").input_value() == REGION
            assert all(request.url.startswith(base) for request in driven.requests)
            assert not driven.errors, driven.errors
    finally:
        process.stop()
