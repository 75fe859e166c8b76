"""The pure parts of the reconciler: lab layout, Status from SAs, log routing, acquires."""

from __future__ import annotations

import pytest

from vpngw.dataplane.backends.base import gateway_anchor
from vpngw.dataplane.backends.lab import topology
from vpngw.dataplane.backends.lab.network import network_plan
from vpngw.dataplane.charon.acquire import acquired_reqid
from vpngw.dataplane.charon.vici_client import ChildSa, IkeSa
from vpngw.dataplane.observe.connection_logs import ConnectionLogs
from vpngw.dataplane.observe.status import observe
from vpngw.dataplane.spec.from_store import GatewayState, HealthCheckSpec
from vpngw.dataplane.system.netns import Route

from .specs import connection, ike


def child(name: str, state: str = "INSTALLED", packets: int = 0) -> ChildSa:
    return ChildSa(name, 1, 1, state, 1, 2, packets * 84, packets * 84, packets, packets, (), ())


def ike_sa(name: str, state: str = "ESTABLISHED", *children: ChildSa) -> IkeSa:
    return IkeSa(name, 1, state, "198.18.0.2", "198.19.0.2", children)


# -- topology -----------------------------------------------------------------------


def test_names_are_prefixed_by_the_lab_and_recognised_back() -> None:
    names = topology.LabNames("vt-abc")
    assert names.gateway("vpn-1") == "vt-abc-g-vpn-1" and names.vpc("vpn-1") == "vt-abc-v-vpn-1"
    assert names.gateway_id_of("vt-abc-g-vpn-1") == "vpn-1"
    assert names.gateway_id_of("vt-abcd-g-vpn-1") is None
    assert names.owns("vt-abc-wan") and names.owns("vt-abc-p-cpe") and not names.owns("vt-abcd-wan")


@pytest.mark.parametrize("bad", ["", "Vpngw", "1lab", "a" * 25, "lab_x"])
def test_bad_lab_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        topology.check_lab_name(bad)


def test_bridge_ports_fit_an_interface_name_and_differ() -> None:
    ports = {topology.bridge_port(f"vpngw-g-vpn-{n}") for n in range(100)}
    assert len(ports) == 100 and all(len(p) <= 15 for p in ports)


@pytest.mark.parametrize(
    ("subnet", "anchor"),
    [
        ("10.1.1.0/24", "10.1.1.1"),
        ("10.0.0.0/8", "10.0.0.1"),
        ("10.1.1.7/32", "10.1.1.7"),
        ("0.0.0.0/0", None),
    ],
)
def test_the_gateway_anchor_is_the_first_host(subnet: str, anchor: str | None) -> None:
    assert gateway_anchor(subnet) == anchor


def test_network_plan_routes_local_subnets_to_the_vpc_and_remote_ones_from_it() -> None:
    spec = connection(
        local_addr="198.18.0.2",
        remote_addr="47.1.2.3",
        local_subnets=("10.1.1.0/24",),
        remote_subnets=("10.10.1.0/24",),
    )
    state = GatewayState(
        "vpn-1",
        "198.18.0.2",
        (spec,),
        ("10.10.1.0/24",),
        (HealthCheckSpec(spec.name, "10.1.1.20", "10.10.1.7", 3, 3),),
    )
    gateway_lo, gateway_routes, vpc_routes = network_plan(state)
    assert gateway_lo == {"10.1.1.1", "10.1.1.20"}
    assert gateway_routes == {Route("10.1.1.0/24", "vpc0", "169.254.100.2"), Route("47.1.2.3/32", "wan0")}
    assert vpc_routes == {
        Route("10.1.1.0/24", "lo", kind="local"),
        Route("10.10.1.0/24", "gw0", "169.254.100.1"),
    }


def test_without_auto_config_route_the_vpc_side_gets_no_route_to_the_peer() -> None:
    spec = connection(remote_addr="198.19.0.2")
    _lo, gateway_routes, vpc_routes = network_plan(GatewayState("vpn-1", "198.18.0.2", (spec,)))
    assert all(r.kind == "local" for r in vpc_routes)
    assert not any(r.dev == "wan0" for r in gateway_routes)  # the peer is inside the lab WAN


# -- Status -------------------------------------------------------------------------


def test_status_follows_the_sas() -> None:
    names = ("vco-1-1", "vco-1-2")
    assert observe([], "vco-1", names, child_failed=False).status == "ike_sa_not_established"
    assert observe([ike_sa("vco-1", "CONNECTING")], "vco-1", names, child_failed=False).in_progress
    assert observe([ike_sa("vco-1")], "vco-1", names, child_failed=False).status == "ike_sa_established"
    assert observe([ike_sa("vco-1")], "vco-1", names, child_failed=True).status == "ipsec_sa_not_established"
    half = ike_sa("vco-1", "ESTABLISHED", child("vco-1-1"))
    assert observe([half], "vco-1", names, child_failed=False).status == "ike_sa_established"
    full = ike_sa("vco-1", "ESTABLISHED", child("vco-1-1", packets=2), child("vco-1-2", "REKEYED", packets=3))
    seen = observe(
        [full, ike_sa("vco-2", "ESTABLISHED", child("vco-2", packets=50))], "vco-1", names, child_failed=False
    )
    assert seen.status == "ipsec_sa_established"
    assert seen.traffic.as_api() == {"BytesIn": 420, "BytesOut": 420, "PacketsIn": 5, "PacketsOut": 5}


# -- logs and acquires --------------------------------------------------------------


def test_log_lines_go_to_their_connection_by_name_uniqueid_or_peer_address() -> None:
    logs = ConnectionLogs()
    logs.set_connections({"vco-a": "198.19.0.2", "vco-b": "198.19.0.3"})
    assert logs.add(
        {
            "group": "NET",
            "ikesa-uniqueid": "7",
            "ikesa-name": "",
            "msg": "received packet: from 198.19.0.3[500] to 198.18.0.2[500] (464 bytes)",
        }
    ) == ("vco-b",)
    assert logs.add(
        {"group": "CFG", "ikesa-uniqueid": "7", "msg": "received proposals: IKE:AES_CBC_256"}
    ) == ("vco-b",)
    assert logs.add(
        {"group": "IKE", "ikesa-uniqueid": "8", "ikesa-name": "vco-a", "msg": "IKE_SA vco-a[8] established"}
    ) == ("vco-a",)
    assert logs.add({"group": "ESP", "msg": "could not find an outbound IPsec SA for reqid {5}"}) == ()
    assert logs.recent("vco-b") == [
        "[NET] received packet: from 198.19.0.3[500] to 198.18.0.2[500] (464 bytes)",
        "[CFG] received proposals: IKE:AES_CBC_256",
    ]
    assert [line.connection for line in logs.drain()] == ["vco-b", "vco-b", "vco-a"]
    assert logs.drain() == []
    logs.set_connections({"vco-a": "198.19.0.2"})
    assert logs.recent("vco-b") == []


def test_acquire_lines_name_their_reqid() -> None:
    assert acquired_reqid("could not find an outbound IPsec SA for reqid {384}, dropping packet") == 384
    assert acquired_reqid("CHILD_SA vco-1{384} established") is None


def test_specs_keep_their_reqid_through_the_store_mapping() -> None:
    assert connection(reqid=256, ike=ike(version="ikev2")).reqid == 256
