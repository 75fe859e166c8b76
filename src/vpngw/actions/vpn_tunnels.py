"""ModifyTunnelAttribute: change one tunnel of a dual-tunnel connection.

The request names the connection and the tunnel (VpnConnectionId, TunnelId) and gives the
tunnel's new settings as one object, ``TunnelOptionsSpecification.Member`` (CustomerGatewayId,
EnableDpd, EnableNatTraversal, TunnelIkeConfig.*, TunnelIpsecConfig.*), validated as on
CreateVpnConnection; what is not given is kept. Only that tunnel is renegotiated: the other
tunnel's row is not touched. The answer is the tunnel as DescribeVpnConnection shows it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from vpngw.actions import tunnels
from vpngw.actions.framework import ClientToken, Context, RegionParams
from vpngw.actions.tunnels import OneTunnel, TunnelOption
from vpngw.actions.vpn_connections import Views, get_connection
from vpngw.actions.vpn_gateways import get_gateway
from vpngw.errors import missing_parameter
from vpngw.store import queries


class ModifyTunnelAttributeParams(RegionParams):
    OBJECTS = frozenset({"TunnelOptionsSpecification"})

    vpn_connection_id: str
    tunnel_id: str
    tunnel_options_specification: OneTunnel | None = None
    client_token: ClientToken | None = None


def modify_tunnel_attribute(ctx: Context, session: Session, p: ModifyTunnelAttributeParams) -> TunnelOption:
    if p.tunnel_options_specification is None:
        raise missing_parameter("TunnelOptionsSpecification")
    # The gateway's lock first, then the connection's, as every connection write takes them.
    connection = get_connection(ctx, session, p.region_id, p.vpn_connection_id)
    get_gateway(ctx, session, p.region_id, connection.vpn_gateway_id, lock=True)
    connection = get_connection(ctx, session, p.region_id, p.vpn_connection_id, lock=True)
    rows = queries.tunnels_of(session, [connection.id])[connection.id]
    row = tunnels.find_tunnel(rows, p.tunnel_id)
    tunnels.apply_change(ctx, session, p.region_id, row, p.tunnel_options_specification)
    tunnels.mirror_master(connection, rows)
    session.flush()
    views = Views(ctx, session, [connection])
    found = next(r for r in views.readings(connection) if r.row.id == row.id)
    return tunnels.tunnel_view(ctx, found, views.addresses[connection.vpn_gateway_id], views.nodes)
