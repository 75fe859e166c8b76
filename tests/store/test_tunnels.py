"""The store's tunnel rows (dual-tunnel connections): tunnels_of, record_tunnel_observations
(the data plane's write), cascade on delete, and what counts as in use; on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import Api, build_world, connection_params
from vpngw.api.app import build_app
from vpngw.config import Settings
from vpngw.store import queries
from vpngw.store.engine import Database
from vpngw.store.models import VpnConnection, VpnConnectionTunnel, VpnGateway

TRAFFIC = {"BytesIn": 840, "BytesOut": 420, "PacketsIn": 10, "PacketsOut": 5}


@dataclass
class Store:
    db: Database
    connection_id: str
    customer_gateway_id: str

    def write(self, work: Any, *args: Any, **kwargs: Any) -> Any:
        with self.db.transaction(write=True) as session:
            return work(session, *args, **kwargs)

    def tunnels(self) -> list[tuple[Any, ...]]:
        with self.db.transaction(write=False) as session:
            rows = queries.tunnels_of(session, [self.connection_id])[self.connection_id]
            return [(r.id, r.tunnel_index, r.status, r.diagnosis, r.traffic, r.observed_time) for r in rows]


def _tunnel(connection_id: str, customer_gateway_id: str, index: int) -> VpnConnectionTunnel:
    return VpnConnectionTunnel(
        id=f"tun-{index}{connection_id[4:]}",
        vpn_connection_id=connection_id,
        tunnel_index=index,
        role="master" if index == 1 else "slave",
        customer_gateway_id=customer_gateway_id,
        enable_dpd=True,
        enable_nat_traversal=True,
        ike_config={"IkeVersion": "ikev2"},
        ipsec_config={"IpsecPfs": "group2"},
        status="ike_sa_not_established",
        diagnosis="",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        api = Api(client)
        world = build_world(api)
        other = api.ok("CreateCustomerGateway", IpAddress="198.19.0.11")["CustomerGatewayId"]
        connection_id = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
        with db.transaction(write=True) as session:
            queries.add_tunnels(
                session,
                [_tunnel(connection_id, world.customer_gateway_id, 1), _tunnel(connection_id, other, 2)],
            )
        yield Store(db, connection_id, other)
    db.dispose()


def test_tunnels_of_lists_a_connections_tunnels_by_index(store: Store) -> None:
    rows = store.tunnels()
    assert [row[1] for row in rows] == [1, 2]
    with store.db.transaction(write=False) as session:
        assert queries.tunnels_of(session, ["vco-none"]) == {"vco-none": []}
        assert queries.dual_tunnel_connection_ids(session) == {store.connection_id}


def test_record_tunnel_observations_writes_only_differences(store: Store) -> None:
    first, second = (row[0] for row in store.tunnels())
    same = queries.TunnelObservation(first, "ike_sa_not_established", "", None)
    assert store.write(queries.record_tunnel_observations, [same], now_ms=1000, observed_by="n1") == 0
    up = queries.TunnelObservation(second, "ipsec_sa_established", "", TRAFFIC)
    gone = queries.TunnelObservation("tun-deleted", "ipsec_sa_established", "", None)
    assert (
        store.write(queries.record_tunnel_observations, [same, up, gone], now_ms=2000, observed_by="n2") == 1
    )
    rows = store.tunnels()
    assert rows[0][2:] == ("ike_sa_not_established", "", None, None)
    assert rows[1][2:] == ("ipsec_sa_established", "", TRAFFIC, 2000)
    assert store.write(queries.record_tunnel_observations, [up], now_ms=3000, observed_by="n2") == 0
    assert store.tunnels()[1][5] == 2000
    with store.db.transaction(write=False) as session:
        observer = session.scalars(
            select(VpnConnectionTunnel.observed_by).where(VpnConnectionTunnel.id == second)
        ).one()
    assert observer == "n2"


def test_tunnels_go_with_their_connection_and_hold_their_customer_gateway(store: Store) -> None:
    with store.db.transaction(write=False) as session:
        # Only tunnel 2 names the second customer gateway: it is in use all the same.
        assert queries.any_connection_uses(session, customer_gateway_id=store.customer_gateway_id) == (
            store.connection_id
        )
    with store.db.transaction(write=True) as session:
        connection = session.scalars(
            select(VpnConnection).where(VpnConnection.id == store.connection_id)
        ).one()
        queries.delete_owned(session, connection)
    assert store.tunnels() == []
    with store.db.transaction(write=False) as session:
        assert queries.all_tunnels(session) == []
        assert queries.any_connection_uses(session, customer_gateway_id=store.customer_gateway_id) is None


def test_a_disaster_recovery_address_is_in_use_and_unique(store: Store) -> None:
    with store.db.transaction(write=True) as session:
        gateway = session.scalars(select(VpnGateway)).one()
        gateway.disaster_recovery_internet_ip = "198.18.0.77"
    with store.db.transaction(write=False) as session:
        assert "198.18.0.77" in queries.internet_ips_in_use(session)
    with pytest.raises(Exception, match="(?i)unique"):
        with store.db.transaction(write=True) as session:
            session.add(
                VpnGateway(
                    **{
                        column: getattr(gateway, column)
                        for column in ("account_id", "region_id", "vpc_id", "name", "bandwidth", "status")
                    },
                    id="vpn-second",
                    internet_ip="198.18.0.78",
                    disaster_recovery_internet_ip="198.18.0.77",
                    charge_type="PostpayByFlow",
                    ipsec_vpn=True,
                    ssl_vpn=False,
                    ssl_max_connections=0,
                    network_type="public",
                    vpn_type="Normal",
                    create_time=0,
                    end_time=0,
                )
            )
            session.flush()
