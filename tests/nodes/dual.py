"""A dual-tunnel connection for the node tests and the dual failover bench.

The store rows are what CreateVpnGateway with DisasterRecoveryVSwitchId and
CreateVpnConnection with TunnelOptionsSpecification write (docs/api.md): a second
address on the gateway and one ``vpn_connection_tunnels`` row per tunnel. While those
actions are not on main yet, :func:`make_dual_connection` writes the rows itself over an
ordinary connection made through the API, and :func:`dual_peer_config` builds the
DownloadVpnConnectionConfig document of the public API's shape
(``TunnelsConfig.TunnelConfig[]``) from the connection's own download.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tests.support.api import Api, build_world, connection_params
from vpngw.store import leases as lease_store
from vpngw.store.engine import Database
from vpngw.store.models import VpnConnection, VpnConnectionTunnel, VpnGateway

IKEV2 = {"IkeVersion": "ikev2", "IkeEncAlg": "aes", "IkeAuthAlg": "sha256", "IkePfs": "group14"}


@dataclass(frozen=True)
class DualConnection:
    vpn_gateway_id: str
    connection_id: str
    addresses: tuple[str, str]  # InternetIp, DisasterRecoveryInternetIp
    tunnel_ids: tuple[str, str]  # tunnel 1 (master), tunnel 2 (slave)
    peer_config: dict[str, Any]


def _tunnel_id() -> str:
    return "tun-" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(21))


def make_dual_connection(
    api: Api,
    db_url: str,
    *,
    local_subnet: str = "10.1.1.0/24",
    remote_subnet: str = "10.10.1.0/24",
    customer_ip: str = "198.19.0.10",
) -> DualConnection:
    place = build_world(api, customer_ip=customer_ip)
    connection_id = api.ok(
        "CreateVpnConnection",
        **connection_params(
            place,
            LocalSubnet=local_subnet,
            RemoteSubnet=remote_subnet,
            EffectImmediately="true",
            AutoConfigRoute="true",
            IkeConfig=json.dumps(IKEV2),
        ),
    )["VpnConnectionId"]
    config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)["VpnConnectionConfig"]
    second = str(ipaddress.ip_address(place.internet_ip) + 4096)
    tunnel_ids = (_tunnel_id(), _tunnel_id())
    db = Database(db_url)
    try:
        with db.transaction(write=True) as session:
            gateway = session.scalars(select(VpnGateway).where(VpnGateway.id == place.vpn_gateway_id)).one()
            gateway.disaster_recovery_internet_ip = second
            gateway.disaster_recovery_v_switch_id = "vsw-dr"
            connection = session.scalars(select(VpnConnection).where(VpnConnection.id == connection_id)).one()
            for index, (tunnel_id, address) in enumerate(
                zip(tunnel_ids, (place.internet_ip, second), strict=True), start=1
            ):
                session.add(
                    VpnConnectionTunnel(
                        id=tunnel_id,
                        vpn_connection_id=connection_id,
                        tunnel_index=index,
                        role="master" if index == 1 else "slave",
                        customer_gateway_id=place.customer_gateway_id,
                        enable_dpd=True,
                        enable_nat_traversal=True,
                        ike_config={
                            **connection.ike_config,
                            "LocalId": address,
                            "RemoteId": place.customer_ip,
                        },
                        ipsec_config=dict(connection.ipsec_config),
                        status="ike_sa_not_established",
                        diagnosis="",
                    )
                )
    finally:
        db.dispose()
    tunnels = [
        {
            "TunnelId": tunnel_id,
            "Local": place.customer_ip,
            "Remote": address,
            "IkeConfig": {**config["IkeConfig"], "LocalId": place.customer_ip, "RemoteId": address},
            "IpsecConfig": config["IpsecConfig"],
        }
        for tunnel_id, address in zip(tunnel_ids, (place.internet_ip, second), strict=True)
    ]
    peer_config = {**config, "TunnelsConfig": {"TunnelConfig": tunnels}}
    return DualConnection(
        place.vpn_gateway_id, connection_id, (place.internet_ip, second), tunnel_ids, peer_config
    )


@dataclass(frozen=True)
class TunnelSeen:
    status: str
    diagnosis: str
    observed_by: str | None
    holder: str | None


def tunnels_seen(db_url: str, dual: DualConnection) -> dict[int, TunnelSeen]:
    """Each tunnel's stored observation and the node holding its address now."""
    db = Database(db_url)
    try:
        with db.transaction(write=False) as session:
            rows = session.scalars(
                select(VpnConnectionTunnel).where(VpnConnectionTunnel.vpn_connection_id == dual.connection_id)
            ).all()
            holders = lease_store.address_holders(
                session, [dual.vpn_gateway_id], now_ms=int(time.time() * 1000)
            )
            return {
                row.tunnel_index: TunnelSeen(
                    row.status,
                    row.diagnosis,
                    row.observed_by,
                    holders.get((dual.vpn_gateway_id, row.tunnel_index)),
                )
                for row in rows
            }
    finally:
        db.dispose()


def both_up_apart(db_url: str, dual: DualConnection) -> bool:
    """Both tunnels established, each reported by the node holding its address, two nodes."""
    seen = tunnels_seen(db_url, dual)
    return (
        len(seen) == 2
        and all(
            t.status == "ipsec_sa_established" and t.holder and t.observed_by == t.holder
            for t in seen.values()
        )
        and seen[1].holder != seen[2].holder
    )
