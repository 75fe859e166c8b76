"""The console's whole story against a real ``vpngw serve`` with its lab data plane, in
a real Chromium: a bad subnet refused at its field, a good connection created, a lab
peer brought up (Status established, the topology green), a ping that makes the traffic
plot rise, a changed Psk diagnosed, charon's log filtered, the configuration downloaded,
the operator's nodes page, and delete. Screenshots go to .artifacts/console/ (docs/console/ under make screenshots)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.api import REGION, build_world

from .harness import DESKTOP, PHONE, Browser, Server, browser, running_server

pytestmark = pytest.mark.dataplane

VPC_HOST = "10.1.1.5"
PEER_HOST = "10.10.1.7"
NEW_PSK = "console-changed-psk-1"
WAIT_MS = 60_000  # negotiation plus a live refresh (5 s) on a shared, loaded machine


def _data_plane_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "the lab data plane needs root"
    if not Path("/usr/lib/ipsec/charon").exists():
        return "strongSwan's charon is not installed"
    if not Path("/dev/net/tun").exists():
        return "no TUN device"
    return None


@pytest.fixture
def lab_server() -> Iterator[Server]:
    if reason := _data_plane_prerequisites():
        pytest.skip(reason)
    with running_server(lab=True) as server:
        if "no data plane" in server.log():
            pytest.skip(server.log())
        yield server


def _plot_value(driven: Browser, direction: str = "in") -> int:
    series = driven.page.get_by_test_id("plot-bytes").locator(f"path.series.{direction}")
    if series.count() == 0:
        return 0
    return int(series.get_attribute("data-last") or 0)


def test_a_tunnel_from_create_to_delete_in_the_console(lab_server: Server) -> None:
    server = lab_server
    api = server.api()
    world = build_world(api)  # the VPC, the VPN gateway and the customer gateway (198.19.0.10)
    lab = server.lab_args()
    with browser(DESKTOP) as driven:
        page = driven.page
        driven.sign_in(server.url)
        page.get_by_test_id("list-DescribeVpnConnections").wait_for()

        # A bad subnet: the API's own error at the LocalSubnet box, with its hint.
        page.get_by_test_id("new-connection").click()
        form = page.get_by_test_id("create-connection")
        form.get_by_label("Name", exact=True).fill("branch-office")
        form.get_by_label("LocalSubnet").fill("10.1.1.1/24")
        form.get_by_label("RemoteSubnet").fill("10.10.1.0/24")
        form.get_by_label("EffectImmediately").check()
        form.get_by_label("AutoConfigRoute").check()
        page.get_by_test_id("submit-connection").click()
        at_field = form.locator('[data-field="LocalSubnet"] .field-error')
        at_field.wait_for(state="visible")
        assert "IllegalParam.LocalSubnet" in at_field.inner_text()
        assert "did you mean 10.1.1.0/24" in at_field.inner_text()
        assert form.get_by_label("LocalSubnet").get_attribute("class") == "invalid"
        assert form.locator('[data-field="RemoteSubnet"] .field-error').is_hidden()
        assert api.ok("DescribeVpnConnections")["TotalCount"] == 0
        driven.shot("create-error")

        # The good one.
        form.get_by_label("LocalSubnet").fill("10.1.1.0/24")
        page.get_by_test_id("submit-connection").click()
        page.get_by_test_id("connection-page").wait_for()
        connections = api.ok("DescribeVpnConnections")["VpnConnections"]["VpnConnection"]
        assert len(connections) == 1
        connection_id = connections[0]["VpnConnectionId"]
        assert page.url.endswith(f"#/connection/{connection_id}")
        assert connections[0]["EffectImmediately"] and connections[0]["AutoConfigRoute"]

        # A lab peer from the connection's own configuration: established, green.
        server.vpngw(
            "lab", "peer", "create", "cpe", "--connection", connection_id, "--endpoint", server.url,
            "--credentials", str(server.credentials_file), "--region", REGION, *lab,
        )  # fmt: skip
        head = page.get_by_test_id("connection-page")
        head.locator('.pill[data-status="ipsec_sa_established"]').first.wait_for(timeout=WAIT_MS)
        page.locator('[data-testid="phase-ike"][data-state="up"]').wait_for()
        page.locator('[data-testid="phase-ipsec"][data-state="up"]').wait_for()
        tunnel = page.locator(
            f'[data-testid="connection-topology"] g.tunnel[data-connection="{connection_id}"]'
        )
        tunnel.locator("xpath=self::*[@data-state='up']").wait_for(timeout=WAIT_MS)
        assert tunnel.locator("path").first.get_attribute("stroke") == "#1f8a3b"  # green
        assert "ipsec_sa_established" in tunnel.locator("title").first.text_content()
        assert page.get_by_test_id("diagnosis").inner_text() == "Nothing fails."

        # A ping through the tunnel: the traffic plot rises (the page refreshes itself).
        before = _plot_value(driven)
        server.vpngw(
            "lab", "exec", "--vpc", world.vpn_gateway_id, *lab,
            "--", "ping", "-n", "-q", "-c", "5", "-i", "0.2", "-W", "2", "-I", VPC_HOST, PEER_HOST,
        )  # fmt: skip
        try:
            page.wait_for_function(
                """([before]) => {
                    const path = document.querySelector('[data-testid="plot-bytes"] path.series.in');
                    return path && Number(path.dataset.last) > before;
                }""",
                arg=[before],
                timeout=WAIT_MS,
            )
        except Exception as error:
            described = api.ok("DescribeVpnConnection", VpnConnectionId=connection_id)
            history = api.ok("DescribeVpnConnectionTraffic", VpnConnectionId=connection_id)
            driven.page.screenshot(path=str(server.workdir.parent / f"{server.workdir.name}-plot.png"))
            raise AssertionError(
                f"the plot did not rise from {before}: {described['Status']} {described['TrafficStatistics']}, "
                f"history {history['TrafficPoints']}, page errors {driven.errors}"
            ) from error
        assert _plot_value(driven, "out") > 0
        # The history holds the five echoes once the data plane wrote its last counters
        # (at most every 2 s while traffic flows, so the last echo may come a pass later).
        deadline = time.monotonic() + 30
        while True:
            history = api.ok("DescribeVpnConnectionTraffic", VpnConnectionId=connection_id)
            points = history["TrafficPoints"]["TrafficPoint"]
            if (points and points[-1]["PacketsIn"] >= 5) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert points and points[-1]["PacketsIn"] >= 5, history
        driven.shot("connection-established")

        # charon's log, filtered.
        log = page.get_by_test_id("log")
        page.wait_for_function(
            "() => !document.querySelector('[data-testid=\"log\"]').textContent.startsWith('(no line')"
        )
        everything = log.inner_text().splitlines()
        page.get_by_label("Filter").fill("CHILD_SA")
        filtered = log.inner_text().splitlines()
        assert filtered and all("child_sa" in line.lower() for line in filtered)
        assert len(filtered) < len(everything)
        assert page.get_by_test_id("log-count").inner_text() == f"{len(filtered)} of {len(everything)} lines"

        # The gateway's page draws all its connections; the operator sees the node run it.
        page.get_by_role("link", name="All connections of this gateway").click()
        page.locator(
            f'[data-testid="topology"] g.tunnel[data-state="up"][data-connection="{connection_id}"]'
        ).wait_for()
        node = api.ok("DescribeVpnGateway", VpnGatewayId=world.vpn_gateway_id)["NodeName"]
        assert node == f"{server.lab}-n"
        assert f"node {node}" in page.get_by_test_id("topology").text_content()
        driven.shot("gateway-topology")
        # The same page opened on a phone: the picture scrolls (its tunnels in view), the page does not.
        page.set_viewport_size(PHONE)
        page.locator('#nav a[data-view="gateways"]').click()
        page.get_by_test_id("list-DescribeVpnGateways").wait_for()
        page.go_back()
        page.locator('[data-testid="topology"] g.tunnel[data-state="up"]').wait_for()
        assert page.locator(".topo-wrap").evaluate("(wrap) => wrap.scrollLeft") > 0
        assert driven.fits_width()
        driven.shot("phone-gateway")
        page.set_viewport_size(DESKTOP)
        page.locator('#nav a[data-view="nodes"]').click()
        row = page.locator(f'[data-testid="nodes-page"] tr[data-id="{node}"]')
        row.wait_for()
        assert "live" in row.inner_text() and world.vpn_gateway_id in row.inner_text()
        driven.shot("nodes", full_page=False)

        # A new Psk the peer does not have: the Diagnosis says so, in full, and the tunnel turns red.
        page.goto(f"{server.url}/console/#/connection/{connection_id}/edit")
        modify = page.get_by_test_id("modify-connection")
        modify.get_by_label("Psk").wait_for()
        assert modify.get_by_label("LocalSubnet").input_value() == "10.1.1.0/24"  # the stored values
        modify.get_by_label("Psk").fill(NEW_PSK)
        page.get_by_test_id("submit-connection").click()
        page.get_by_test_id("connection-page").wait_for()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"diagnosis\"]').textContent.toLowerCase().includes('authentication')",
            timeout=WAIT_MS,
        )
        diagnosis = page.get_by_test_id("diagnosis").inner_text()
        assert diagnosis == api.ok("DescribeVpnConnection", VpnConnectionId=connection_id)["Diagnosis"]
        assert "pre-shared key" in diagnosis and NEW_PSK not in diagnosis
        page.locator('[data-testid="connection-topology"] g.tunnel[data-state="down"]').wait_for(
            timeout=WAIT_MS
        )
        driven.shot("connection-diagnosis")

        # The configuration as files for a strongSwan peer.
        with page.expect_download() as fetched:
            page.get_by_test_id("download-swanctl").click()
        conf = Path(fetched.value.path()).read_text()
        assert fetched.value.suggested_filename == f"{connection_id}.swanctl.conf"
        gateway_ip = world.internet_ip
        for expected in (
            "local_addrs = 198.19.0.10",
            f"remote_addrs = {gateway_ip}",
            "proposals = aes128-md5-prfmd5-modp1024",
            "esp_proposals = aes128-md5-modp1024",
            "local_ts = 10.10.1.0/24",
            "remote_ts = 10.1.1.0/24",
            f'secret = "{NEW_PSK}"',
            "version = 1",
        ):
            assert expected in conf, (expected, conf)
        with page.expect_download() as fetched:
            page.get_by_test_id("download-json").click()
        downloaded = json.loads(Path(fetched.value.path()).read_text())
        assert (
            downloaded
            == api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)["VpnConnectionConfig"]
        )

        assert not driven.errors, driven.errors

        # Delete asks once.
        page.get_by_test_id("delete").click()
        confirm = page.get_by_test_id("confirm-delete")
        confirm.wait_for(state="visible")
        assert api.ok("DescribeVpnConnections")["TotalCount"] == 1  # not yet
        confirm.get_by_role("button", name="Yes, delete").click()
        page.get_by_test_id("list-DescribeVpnConnections").wait_for()
        page.get_by_text("Nothing here yet.").wait_for()
        api.fails(
            "DescribeVpnConnection",
            404,
            "InvalidVpnConnectionInstanceId.NotFound",
            VpnConnectionId=connection_id,
        )
        assert not driven.errors, driven.errors
