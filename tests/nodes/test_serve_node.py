"""``vpngw serve``'s own data plane is a node too: on the lab backend it leases every
gateway it runs, and a second node on the same database never runs them twice."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.conftest import TEST_MASTER_KEY, prepared
from tests.support.api import Api, build_world, connection_params
from vpngw.api.app import build_app
from vpngw.cli import nodes as nodes_cli
from vpngw.config import Settings
from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.system import netns

from .conftest import _claim
from .fleet import REPO, Fleet
from .test_host_backend import wait_status

pytestmark = pytest.mark.dataplane


def test_serve_s_lab_data_plane_leases_what_it_runs(tmp_path: Path) -> None:
    if reason := charon_daemon.missing_prerequisites():
        pytest.skip(reason)
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'vpngw.db'}")
    db, authenticator = prepared(settings)
    lab = f"vt-{netns.unique_suffix()}"
    _claim(lab)
    state = Path(f"/tmp/vs{netns.unique_suffix()}")
    network = LabNetwork(lab, state / lab)
    args = argparse.Namespace(node=f"{lab}-serve", capacity=100, lease_s=5.0, renew_s=1.0)
    reconciler = nodes_cli.node_reconciler(args, db, network, authenticator.sealer, period_s=0.5)
    try:
        reconciler.start()
        with TestClient(
            build_app(db, settings, authenticator, on_change=reconciler.wake), raise_server_exceptions=False
        ) as client:
            api = Api(client)
            place = build_world(api)
            connection_id = api.ok(
                "CreateVpnConnection",
                **connection_params(place, LocalSubnet="10.1.1.0/24", EffectImmediately="true"),
            )["VpnConnectionId"]
            config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)[
                "VpnConnectionConfig"
            ]
            lab_peer.create_peer(network, lab_peer.peer_from_download("cpe", config))
            assert wait_status(api, connection_id, "ipsec_sa_established")["Status"] == "ipsec_sa_established"
            assert api.ok("DescribeVpnGateway", VpnGatewayId=place.vpn_gateway_id)["NodeName"] == args.node
            assert network.gateway_ids() == {place.vpn_gateway_id}
            # Pinned to a node that does not run: serve gives the gateway away and tears it down.
            from vpngw.store import leases

            with db.transaction(write=True) as session:
                assert leases.pin(session, place.vpn_gateway_id, "elsewhere")
            assert netns.wait_until(lambda: not network.gateway_ids(), timeout_s=10)
            assert netns.wait_until(  # released once torn down
                lambda: api.ok("DescribeVpnGateway", VpnGatewayId=place.vpn_gateway_id)["NodeName"] == "",
                timeout_s=5,
            )
    finally:
        reconciler.stop()
        network.teardown()
        db.dispose()
        shutil.rmtree(state, ignore_errors=True)
    assert not {ns for ns in netns.namespaces() if ns.startswith(f"{lab}-")}


def test_serve_runs_the_host_backend_with_the_agent_s_host_options(sqlite_fleet: tuple[Fleet, Api]) -> None:
    """``vpngw serve --backend host`` takes the agent's host options and runs its gateways
    on the host's uplink, with the production charon profile."""
    fleet, api = sqlite_fleet
    site = fleet.add_node(1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site.log_path = site.state_dir / "serve.log"
    command = [
        sys.executable,
        "-m",
        "vpngw.cli.main",
        "serve",
        "--port",
        str(port),
        "--insecure-no-auth",
        *site.node.agent_arguments(),
        "--db",
        fleet.db_url,
        "--state-dir",
        str(site.state_dir),
        "--lease-s",
        str(fleet.lease_s),
    ]
    environ = {**os.environ, "VPNGW_MASTER_KEY": TEST_MASTER_KEY, "PYTHONUNBUFFERED": "1"}
    with open(site.log_path, "ab") as log:
        site.process = subprocess.Popen(  # fleet.teardown stops it
            command, cwd=REPO, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    assert netns.wait_until(lambda: "host backend: uplink" in fleet.log_of(site), timeout_s=20), fleet.log_of(
        site
    )

    place = build_world(api)
    connection_id = api.ok(
        "CreateVpnConnection",
        **connection_params(place, LocalSubnet="10.1.1.0/24", EffectImmediately="true"),
    )["VpnConnectionId"]
    config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)["VpnConnectionConfig"]
    lab_peer.create_peer(fleet.lab, lab_peer.peer_from_download("cpe", config))
    described = wait_status(api, connection_id, "ipsec_sa_established")
    assert described["Status"] == "ipsec_sa_established", fleet.log_of(site)
    assert api.ok("DescribeVpnGateway", VpnGatewayId=place.vpn_gateway_id)["NodeName"] == site.name
    assert site.gateway_namespaces() == {f"{site.gateway_prefix}{place.vpn_gateway_id}"}
    conf = site.state_dir / site.name / f"g-{place.vpn_gateway_id}" / "strongswan.conf"
    assert "dos_protection = yes" in conf.read_text()
    # The API answers on the port too (one process: API and host data plane).
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
