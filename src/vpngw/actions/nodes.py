"""DescribeNodes (vpngw extension): the data-plane nodes, for the operator.

What ``vpngw node list --json`` shows, through the signed API: every node with its
heartbeat and the gateways it runs now. Nodes serve every account, so only the
operator's account may read them: the default account, whose key pair ``vpngw serve``
makes on its first start (``--credentials-file`` or ``VPNGW_ACCESS_KEY_ID``). Any other
account gets 403 ``Forbidden.Operator``. Read-only: draining and moving stay with
``vpngw node`` on the operator's machine.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from vpngw.actions.framework import Context, Params, Response
from vpngw.errors import Forbidden
from vpngw.store import leases

#: A node is live while its heartbeat is younger than this: the default lease time
#: (docs/nodes.md), as ``vpngw node list`` shows it without ``--lease-s``.
LIVE_WITHIN_MS = 5000


class DescribeNodesParams(Params):
    # Nodes belong to no region; a RegionId the SDKs add is accepted and ignored.
    region_id: str | None = None

    NO_OP = {"RegionId": "Nodes belong to no region: the SDKs add one, it is accepted and ignored."}


class NodeGateway(Response):
    vpn_gateway_id: str
    internet_ip: str
    lease_left_ms: int
    pinned_node: str
    epoch: int


class NodeGatewayList(Response):
    vpn_gateway: list[NodeGateway]


class NodeItem(Response):
    node_name: str
    backend: str
    addresses: list[str]
    capacity: int
    live: bool
    heartbeat_time: int
    heartbeat_age_ms: int
    started_time: int
    draining: bool
    vpn_gateways: NodeGatewayList


class NodeList(Response):
    node: list[NodeItem]


class DescribeNodesResponse(Response):
    total_count: int
    nodes: NodeList


def check_operator(ctx: Context) -> None:
    if ctx.account_id != ctx.settings.default_account_id:
        raise Forbidden(
            "Forbidden.Operator",
            "Only the operator's account (the default account of vpngw serve) may describe data-plane nodes.",
        )


def describe_nodes(ctx: Context, session: Session, _p: DescribeNodesParams) -> DescribeNodesResponse:
    check_operator(ctx)
    now = ctx.now_ms
    held: dict[str, list[NodeGateway]] = {}
    for lease in leases.leases(session):
        if lease.exists and lease.holder and lease.expires_ms >= now:
            held.setdefault(lease.holder, []).append(
                NodeGateway(
                    vpn_gateway_id=lease.gateway,  # a dual-tunnel gateway: twice, one per address
                    internet_ip=lease.internet_ip,
                    lease_left_ms=lease.expires_ms - now,
                    pinned_node=lease.pinned_node or "",
                    epoch=lease.epoch,
                )
            )
    items = [
        NodeItem(
            node_name=node.name,
            backend=node.backend,
            addresses=list(node.addresses),
            capacity=node.capacity,
            live=node.heartbeat_ms >= now - LIVE_WITHIN_MS,
            heartbeat_time=node.heartbeat_ms,
            heartbeat_age_ms=max(now - node.heartbeat_ms, 0),
            started_time=node.started_ms,
            draining=node.draining,
            vpn_gateways=NodeGatewayList(vpn_gateway=held.get(node.name, [])),
        )
        for node in leases.nodes(session)
    ]
    return DescribeNodesResponse(total_count=len(items), nodes=NodeList(node=items))
