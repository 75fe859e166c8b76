"""The change stamp of a gateway's desired state (``vpn_gateways.desired_generation``).

The data plane reloads a gateway only when its stamp moved, so a write that changes what
``load_desired`` returns for a gateway without moving its stamp would never reach charon
(but on the heal pass, a minute later). The walk below calls every write action of the
registry (the table must name each one: a new write action fails the test until it is
added) and checks, after each call, that every gateway whose desired state changed has a
new stamp. The data plane's own writes (observations, logs, health verdicts, leases)
must not move any stamp: they would make every pass reload what it just wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from starlette.testclient import TestClient

from tests.conftest import make_sealer, prepared
from tests.support.api import Api
from vpngw.actions.registry import ACTIONS
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.dataplane.spec.from_store import GatewayState, load_desired
from vpngw.store import desired_generation, freshness, queries
from vpngw.store.engine import Database
from vpngw.store.leases import lease_unit

TOS = "TunnelOptionsSpecification"


@dataclass
class Walk:
    api: Api
    db: Database
    ids: dict[str, str] = field(default_factory=dict)
    stamps: dict[str, int] = field(default_factory=dict)
    desired: dict[str, dict[str, GatewayState]] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)  # action -> calls that changed a desired state

    def snapshot(self) -> tuple[dict[str, int], dict[str, dict[str, GatewayState]]]:
        with self.db.transaction(write=False) as session:
            stamps = desired_generation.of_gateways(session)
        by_gateway: dict[str, dict[str, GatewayState]] = {}
        for key, state in load_desired(self.db, make_sealer()).items():
            by_gateway.setdefault(lease_unit(key)[0], {})[key] = state
        return stamps, by_gateway

    def call(self, action: str, **params: Any) -> dict[str, Any]:
        self.stamps, self.desired = self.snapshot()
        body = self.api.ok(action, **params)
        stamps, desired = self.snapshot()
        for gateway_id in set(desired) & set(self.desired):
            if desired[gateway_id] != self.desired[gateway_id]:
                self.moved[action] = self.moved.get(action, 0) + 1
                assert stamps[gateway_id] != self.stamps[gateway_id], (
                    f"{action} {params} changed the desired state of {gateway_id} without moving its stamp"
                )
        for gateway_id in set(desired) ^ set(self.desired):  # created or deleted: the set of ids says so
            assert (gateway_id in stamps) == (gateway_id in desired)
        return body


def _world(walk: Walk) -> None:
    ids = walk.ids
    ids["vpc"] = walk.call("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    ids["vpc2"] = walk.call("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    ids["gw"] = walk.call("CreateVpnGateway", VpcId=ids["vpc"], Bandwidth=10)["VpnGatewayId"]
    ids["gw2"] = walk.call("CreateVpnGateway", VpcId=ids["vpc"], Bandwidth=10)["VpnGatewayId"]
    ids["dual"] = walk.call(
        "CreateVpnGateway",
        VpcId=ids["vpc"],
        Bandwidth=10,
        VSwitchId="vsw-a",
        DisasterRecoveryVSwitchId="vsw-b",
    )["VpnGatewayId"]
    for name, ip in (("cgw1", "198.19.0.10"), ("cgw2", "198.19.0.11"), ("cgw3", "198.19.0.12")):
        ids[name] = walk.call("CreateCustomerGateway", IpAddress=ip)["CustomerGatewayId"]


# Every write action of the registry, and calls of it that change (or may change) what the
# data plane realises. Each entry runs in order on one world.
CALLS: list[tuple[str, Callable[[dict[str, str]], dict[str, Any]]]] = [
    (
        "CreateVpnConnection",
        lambda ids: {
            "VpnGatewayId": ids["gw"],
            "CustomerGatewayId": ids["cgw1"],
            "LocalSubnet": "10.1.1.0/24",
            "RemoteSubnet": "10.10.1.0/24",
            "ClientToken": "vco",
        },
    ),
    (
        "CreateVpnConnection",
        lambda ids: {
            "VpnGatewayId": ids["dual"],
            "LocalSubnet": "10.1.1.0/24",
            "RemoteSubnet": "10.10.1.0/24",
            f"{TOS}.1.CustomerGatewayId": ids["cgw1"],
            f"{TOS}.1.Role": "master",
            f"{TOS}.2.CustomerGatewayId": ids["cgw2"],
            f"{TOS}.2.Role": "slave",
            "ClientToken": "dual",
        },
    ),
    ("ModifyVpnConnectionAttribute", lambda ids: {"VpnConnectionId": ids["vco"], "Name": "renamed"}),
    (
        "ModifyVpnConnectionAttribute",
        lambda ids: {"VpnConnectionId": ids["vco"], "IkeConfig": json.dumps({"Psk": "another-psk"})},
    ),
    (
        "ModifyVpnConnectionAttribute",
        lambda ids: {"VpnConnectionId": ids["vco"], "IpsecConfig": json.dumps({"IpsecLifetime": 3600})},
    ),
    (
        "ModifyVpnConnectionAttribute",
        lambda ids: {
            "VpnConnectionId": ids["vco"],
            "LocalSubnet": "10.1.2.0/24",
            "AutoConfigRoute": "false",
            "EffectImmediately": "true",
            "EnableDpd": "false",
            "EnableNatTraversal": "false",
        },
    ),
    (
        "ModifyVpnConnectionAttribute",
        lambda ids: {
            "VpnConnectionId": ids["vco"],
            "HealthCheckConfig": json.dumps({"enable": "true", "sip": "10.1.2.20", "dip": "10.10.1.7"}),
        },
    ),
    (
        "ModifyVpnConnectionAttribute",
        lambda ids: {"VpnConnectionId": ids["dual_vco"], "RemoteSubnet": "10.10.2.0/24"},
    ),
    (
        "ModifyVpnConnectionAttribute",
        lambda ids: {
            "VpnConnectionId": ids["dual_vco"],
            f"{TOS}.1.TunnelId": ids["tunnel1"],
            f"{TOS}.1.Role": "slave",
            f"{TOS}.2.TunnelId": ids["tunnel"],
            f"{TOS}.2.Role": "master",
            f"{TOS}.2.CustomerGatewayId": ids["cgw3"],
        },
    ),
    (
        "ModifyTunnelAttribute",
        lambda ids: {
            "VpnConnectionId": ids["dual_vco"],
            "TunnelId": ids["tunnel"],
            f"{TOS}.TunnelIkeConfig.Psk": "tunnel-psk",
        },
    ),
    (
        "ModifyTunnelAttribute",
        lambda ids: {
            "VpnConnectionId": ids["dual_vco"],
            "TunnelId": ids["tunnel"],
            f"{TOS}.EnableDpd": "false",
        },
    ),
    (
        "ModifyVpnGatewayAttribute",
        lambda ids: {"VpnGatewayId": ids["gw"], "Name": "gw-renamed", "Description": "described"},
    ),
    ("ModifyCustomerGatewayAttribute", lambda ids: {"CustomerGatewayId": ids["cgw1"], "Name": "cgw-renamed"}),
    (
        "TagResources",
        lambda ids: {"ResourceType": "VPNCONNECTION", "ResourceId.1": ids["vco"], "Tag.1.Key": "k"},
    ),
    (
        "UnTagResources",
        lambda ids: {"ResourceType": "VPNCONNECTION", "ResourceId.1": ids["vco"], "TagKey.1": "k"},
    ),
    ("DeleteVpnConnection", lambda ids: {"VpnConnectionId": ids["vco"]}),
    ("DeleteVpnConnection", lambda ids: {"VpnConnectionId": ids["dual_vco"]}),
    ("DeleteVpnGateway", lambda ids: {"VpnGatewayId": ids["gw2"]}),
    ("DeleteCustomerGateway", lambda ids: {"CustomerGatewayId": ids["cgw3"]}),
    ("DeleteVpc", lambda ids: {"VpcId": ids["vpc2"]}),
    ("CreateVpc", lambda ids: {"CidrBlock": "192.168.0.0/16"}),
    ("CreateVpnGateway", lambda ids: {"VpcId": ids["vpc"], "Bandwidth": 5}),
    ("CreateCustomerGateway", lambda ids: {"IpAddress": "198.19.0.99"}),
]


def test_every_write_action_that_changes_a_desired_state_moves_its_stamp(settings: Settings) -> None:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        walk = Walk(Api(client), db)
        _world(walk)
        for action, params in CALLS:
            body = walk.call(action, **params(walk.ids))
            if action == "CreateVpnConnection":
                walk.ids["vco" if "CustomerGatewayId" in params(walk.ids) else "dual_vco"] = body[
                    "VpnConnectionId"
                ]
                if "dual_vco" in walk.ids and "tunnel" not in walk.ids:
                    described = walk.api.ok("DescribeVpnConnection", VpnConnectionId=walk.ids["dual_vco"])
                    first, second = described[TOS]["TunnelOptions"]
                    walk.ids["tunnel1"], walk.ids["tunnel"] = first["TunnelId"], second["TunnelId"]
        # A reload of some gateways reads what a full load reads of them.
        full = load_desired(db, make_sealer())
        some = {walk.ids["gw"], walk.ids["dual"]}
        assert load_desired(db, make_sealer(), some) == {
            k: v for k, v in full.items() if lease_unit(k)[0] in some
        }
        assert len(full) > len(load_desired(db, make_sealer(), some)) == 3
    writes = {name for name, action in ACTIONS.items() if action.writes}
    walked = {action for action, _params in CALLS}
    assert writes <= walked, (
        f"write actions the walk does not call (add them to CALLS): {sorted(writes - walked)}"
    )
    # The walk is not vacuous: the calls that change a desired state did.
    for action in (
        "CreateVpnConnection",
        "ModifyVpnConnectionAttribute",
        "ModifyTunnelAttribute",
        "DeleteVpnConnection",
    ):
        assert walk.moved.get(action, 0) >= 1, action
    db.dispose()


def test_the_data_planes_own_writes_move_no_stamp(settings: Settings) -> None:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        walk = Walk(Api(client), db)
        _world(walk)
        vco = walk.call(
            "CreateVpnConnection",
            VpnGatewayId=walk.ids["gw"],
            CustomerGatewayId=walk.ids["cgw1"],
            LocalSubnet="10.1.1.0/24",
            RemoteSubnet="10.10.1.0/24",
            HealthCheckConfig=json.dumps({"enable": "true", "sip": "10.1.1.20", "dip": "10.10.1.7"}),
        )["VpnConnectionId"]
        dual = walk.call(
            "CreateVpnConnection",
            VpnGatewayId=walk.ids["dual"],
            LocalSubnet="10.1.1.0/24",
            RemoteSubnet="10.10.1.0/24",
            **{
                f"{TOS}.1.CustomerGatewayId": walk.ids["cgw1"],
                f"{TOS}.1.Role": "master",
                f"{TOS}.2.CustomerGatewayId": walk.ids["cgw2"],
                f"{TOS}.2.Role": "slave",
            },
        )["VpnConnectionId"]
    before, desired = walk.snapshot()
    tunnel = next(iter(desired[walk.ids["dual"]][walk.ids["dual"]].tunnels))
    traffic = {"BytesIn": 1, "BytesOut": 2, "PacketsIn": 3, "PacketsOut": 4}
    with db.transaction(write=True) as session:
        assert queries.write_observation(
            session,
            vco,
            status="ipsec_sa_established",
            diagnosis="",
            traffic=traffic,
            now_ms=1,
            observed_by="n1",
        )
        queries.record_tunnel_observations(
            session,
            [queries.TunnelObservation(tunnel, "ipsec_sa_established", "", traffic)],
            now_ms=1,
            observed_by="n1",
        )
        assert queries.write_health_status(session, vco, "success")
        queries.add_connection_logs(session, [(vco, 1, "a line"), (tunnel, 1, "another")])
        freshness.confirm(session, "n1", {walk.ids["gw"]: ""}, until_ms=10)
    with db.engine.connect() as connection:
        assert connection.execute(
            text("SELECT status FROM vpn_connections WHERE id = :i"), {"i": vco}
        ).scalar_one() == ("ipsec_sa_established")
    after, _desired = walk.snapshot()
    assert after == before
    assert dual  # created above
    db.dispose()
