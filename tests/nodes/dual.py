"""A dual-tunnel connection for the node tests and the dual failover bench, made as a user
would: CreateVpnGateway with DisasterRecoveryVSwitchId (two addresses), CreateVpnConnection
with TunnelOptionsSpecification (tunnel 1 master, tunnel 2 slave, IKEv2), and the peer's
configuration from DownloadVpnConnectionConfig (``TunnelsConfig.TunnelConfig[]``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tests.support.api import Api
from vpngw.store import leases as lease_store
from vpngw.store.engine import Database
from vpngw.store.models import VpnConnectionTunnel

TOS = "TunnelOptionsSpecification"
IKEV2 = {"IkeVersion": "ikev2", "IkeEncAlg": "aes", "IkeAuthAlg": "sha256", "IkePfs": "group14"}


@dataclass(frozen=True)
class DualConnection:
    vpn_gateway_id: str
    connection_id: str
    addresses: tuple[str, str]  # InternetIp, DisasterRecoveryInternetIp
    tunnel_ids: tuple[str, str]  # tunnel 1 (master), tunnel 2 (slave)
    peer_config: dict[str, Any]


def tunnel_options(customer_gateway_id: str, **extra: str) -> dict[str, str]:
    """TunnelOptionsSpecification for two IKEv2 tunnels to one customer gateway."""
    params: dict[str, str] = {}
    for index, role in ((1, "master"), (2, "slave")):
        params[f"{TOS}.{index}.CustomerGatewayId"] = customer_gateway_id
        params[f"{TOS}.{index}.Role"] = role
        for key, value in IKEV2.items():
            params[f"{TOS}.{index}.TunnelIkeConfig.{key}"] = value
    return {**params, **extra}


def make_dual_connection(
    api: Api,
    db_url: str,
    *,
    local_subnet: str = "10.1.1.0/24",
    remote_subnet: str = "10.10.1.0/24",
    customer_ip: str = "198.19.0.10",
) -> DualConnection:
    vpc = api.ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    gateway_id = api.ok(
        "CreateVpnGateway", VpcId=vpc, Bandwidth=10, VSwitchId="vsw-a", DisasterRecoveryVSwitchId="vsw-b"
    )["VpnGatewayId"]
    gateway = api.ok("DescribeVpnGateway", VpnGatewayId=gateway_id)
    customer = api.ok("CreateCustomerGateway", IpAddress=customer_ip)["CustomerGatewayId"]
    connection_id = api.ok(
        "CreateVpnConnection",
        VpnGatewayId=gateway_id,
        LocalSubnet=local_subnet,
        RemoteSubnet=remote_subnet,
        AutoConfigRoute="true",
        **tunnel_options(customer),
    )["VpnConnectionId"]
    described = api.ok("DescribeVpnConnection", VpnConnectionId=connection_id)
    tunnels = sorted(described[TOS]["TunnelOptions"], key=lambda t: int(t["TunnelIndex"]))
    config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)["VpnConnectionConfig"]
    return DualConnection(
        gateway_id,
        connection_id,
        (str(gateway["InternetIp"]), str(gateway["DisasterRecoveryInternetIp"])),
        (str(tunnels[0]["TunnelId"]), str(tunnels[1]["TunnelId"])),
        config,
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
