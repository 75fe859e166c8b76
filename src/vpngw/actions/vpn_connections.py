"""IPsec connections: CreateVpnConnection (the heart of vpngw) and the actions around it.

A connection joins a VPN gateway and a customer gateway with traffic selectors
(LocalSubnet / RemoteSubnet) and the IKE / IPsec / health-check settings. Stored
configs are always complete: the defaults of the spec are filled in at creation, and a
modification merges what it is given into what is stored before validating the whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from ipaddress import IPv4Network
from typing import Annotated, Any

from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from vpngw import ids
from vpngw.actions import tunnels
from vpngw.actions.customer_gateways import customer_gateway_not_found, get_customer_gateway
from vpngw.actions.framework import (
    NO_RESOURCE_GROUPS,
    Bool,
    ClientToken,
    Context,
    DryRun,
    Name,
    PageParams,
    PageResponse,
    Refused,
    RegionParams,
    Response,
    unsupported,
)
from vpngw.actions.tagging import TagFilters, TagList, TagsToSet, tag_list
from vpngw.actions.tunnels import ChangedTunnels, NewTunnels, TunnelAddresses, TunnelOptionsView
from vpngw.actions.vpn_gateways import EmptyResponse, gateway_not_found, get_gateway
from vpngw.errors import BadRequest, NotFound, invalid_parameter, missing_parameter
from vpngw.ike_config import opened_ike, peer_ike, sealed_ike
from vpngw.rules import subnets
from vpngw.rules.tunnel_config import (
    DEFAULT_HEALTH_CHECK,
    DEFAULT_IPSEC,
    HEALTH_CHECK_KEYS,
    IKE_KEYS,
    IPSEC_KEYS,
    HealthCheck,
    check_health_check,
    default_ike,
    merge_health_check,
    merge_ike,
    merge_ipsec,
    parse_config,
)
from vpngw.rules.values import parse_bool
from vpngw.sealing import Sealer
from vpngw.store import freshness, queries
from vpngw.store.direct import Direct, NeedsSession, Tx, Where
from vpngw.store.engine import WouldBlock, waiting_allowed
from vpngw.store.models import VpnConnection, VpnConnectionTunnel

# Until the data plane reports what strongSwan holds, no IKE SA exists.
INITIAL_STATUS = "ike_sa_not_established"


def connection_not_found(vpn_connection_id: str) -> NotFound:
    return NotFound(
        "InvalidVpnConnectionInstanceId.NotFound",
        f"The specified vpn connection instance id {vpn_connection_id} does not exist.",
    )


def _check_bgp_config(value: Any) -> str:
    """BGP over IPsec is not offered: an enabled BgpConfig is refused, a disabled one is accepted."""
    text = str(value)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise invalid_parameter("BgpConfig", "must be a JSON object") from None
    if not isinstance(document, dict):
        raise invalid_parameter("BgpConfig", "must be a JSON object")
    enabled = next((v for k, v in document.items() if k.lower() == "enablebgp"), False)
    if enabled not in (None, "") and parse_bool("BgpConfig.EnableBgp", enabled):
        raise BadRequest(
            "OperationUnsupported.Bgp", "BGP over IPsec (BgpConfig.EnableBgp=true) is not supported."
        )
    return text


def _config(param: str, keys: Any) -> BeforeValidator:
    return BeforeValidator(lambda value: parse_config(param, str(value), keys))


IkeGiven = Annotated[dict[str, Any], _config("IkeConfig", IKE_KEYS)]
IpsecGiven = Annotated[dict[str, Any], _config("IpsecConfig", IPSEC_KEYS)]
HealthCheckGiven = Annotated[dict[str, Any], _config("HealthCheckConfig", HEALTH_CHECK_KEYS)]
BgpConfig = Annotated[str, BeforeValidator(_check_bgp_config)]


_REFUSED: dict[str, Refused] = {
    "EnableTunnelsBgp": unsupported(
        "EnableTunnelsBgp", "BGP over the tunnels is not offered (EnableTunnelsBgp=false is accepted).", True
    ),
    "RemoteCaCertificate": unsupported(
        "RemoteCaCertificate", "certificates belong to NationalStandard (SM) gateways, which are not offered."
    ),
}


class CreateVpnConnectionParams(RegionParams):
    REFUSED = _REFUSED

    vpn_gateway_id: str
    # Required on a single-tunnel gateway; a dual-tunnel one takes it per tunnel instead.
    customer_gateway_id: str | None = None
    local_subnet: str
    remote_subnet: str
    name: Name | None = None
    effect_immediately: Bool = False
    auto_config_route: Bool = False
    enable_dpd: Bool = True
    enable_nat_traversal: Bool = True
    ike_config: IkeGiven | None = None
    ipsec_config: IpsecGiven | None = None
    health_check_config: HealthCheckGiven | None = None
    bgp_config: BgpConfig | None = None
    enable_tunnels_bgp: Bool = False
    tunnel_options_specification: NewTunnels | None = None
    tags: TagsToSet | None = None
    dry_run: DryRun = False
    client_token: ClientToken | None = None


class CreateVpnConnectionResponse(Response):
    vpn_connection_id: str
    name: str
    create_time: int


def _selectors(
    ctx: Context, local_subnet: str, remote_subnet: str
) -> tuple[tuple[IPv4Network, ...], tuple[IPv4Network, ...]]:
    limit = ctx.settings.max_subnets_per_side
    local = subnets.parse_subnets("LocalSubnet", local_subnet, limit)
    remote = subnets.parse_subnets("RemoteSubnet", remote_subnet, limit)
    subnets.check_sides(local, remote)
    return local, remote


def _check_gateway_room(
    ctx: Context,
    session: Where,
    gateway_id: str,
    local: tuple[IPv4Network, ...],
    remote: tuple[IPv4Network, ...],
    *,
    except_id: str | None = None,
) -> None:
    """The gateway's quota and the traffic selectors of its other connections.
    The caller holds the gateway's row lock, so both checks hold until commit."""
    others = [c for c in queries.selectors_of_gateway(session, gateway_id) if c[0] != except_id]
    if except_id is None and len(others) >= ctx.settings.max_connections_per_gateway:
        raise BadRequest(
            "Resource.QuotaFull",
            f"The quota of resource is full: the VPN gateway {gateway_id} holds "
            f"{ctx.settings.max_connections_per_gateway} IPsec connections already.",
        )
    subnets.check_no_conflict(
        local,
        remote,
        (
            subnets.Selectors(
                other_id, subnets.parse_stored(local_subnet), subnets.parse_stored(remote_subnet)
            )
            for other_id, local_subnet, remote_subnet in others
        ),
    )


def create_vpn_connection(
    ctx: Context, session: Tx, p: CreateVpnConnectionParams
) -> CreateVpnConnectionResponse:
    """Runs on the DBAPI cursor (a Direct transaction) unless the request has tags or its
    gateway has two tunnels: those need the ORM session (NeedsSession)."""
    if isinstance(session, Direct) and (p.tags or p.tunnel_options_specification is not None):
        raise NeedsSession()
    local, remote = _selectors(ctx, p.local_subnet, p.remote_subnet)
    health_check = merge_health_check(DEFAULT_HEALTH_CHECK, p.health_check_config or {})
    check_health_check(health_check, local, remote)
    # Core reads of the columns a create needs (this is the API's hot path); the gateway's
    # row is locked (PostgreSQL) so that the quota and selector checks hold until commit.
    gateway = queries.vpn_gateway_endpoint(session, ctx.account_id, p.region_id, p.vpn_gateway_id, lock=True)
    if gateway is None:
        if p.customer_gateway_id is None and p.tunnel_options_specification is None:
            raise missing_parameter("CustomerGatewayId")
        raise gateway_not_found(p.vpn_gateway_id)
    connection_id = ids.new_resource_id("vco")
    new_tunnels: list[VpnConnectionTunnel] = []
    if gateway.second_ip is None:
        settings = _single_tunnel_columns(ctx, session, p, gateway)
    else:
        if isinstance(session, Direct):
            raise NeedsSession()
        new_tunnels = _dual_tunnel_rows(ctx, session, p, gateway, connection_id)
        settings = tunnels.master_columns(new_tunnels)
    _check_gateway_room(ctx, session, gateway.id, local, remote)
    name = p.name or connection_id
    queries.insert_connection(
        session,
        {
            "id": connection_id,
            "account_id": ctx.account_id,
            "region_id": p.region_id,
            "vpn_gateway_id": gateway.id,
            "name": name,
            "local_subnet": subnets.join_subnets(local),
            "remote_subnet": subnets.join_subnets(remote),
            "effect_immediately": p.effect_immediately,
            "auto_config_route": p.auto_config_route,
            **settings,
            "health_check": dict(health_check),
            "status": INITIAL_STATUS,
            "health_check_status": _initial_health_status(health_check),
            "state": "active",
            "create_time": ctx.now_ms,
        },
    )
    if isinstance(session, Direct):
        return CreateVpnConnectionResponse(vpn_connection_id=connection_id, name=name, create_time=ctx.now_ms)
    if new_tunnels:
        queries.add_tunnels(session, new_tunnels)
    queries.set_tags(
        session,
        account_id=ctx.account_id,
        region_id=p.region_id,
        resource_type="VPNCONNECTION",
        resource_id=connection_id,
        tags=p.tags or [],
    )
    return CreateVpnConnectionResponse(vpn_connection_id=connection_id, name=name, create_time=ctx.now_ms)


def _single_tunnel_columns(
    ctx: Context, session: Where, p: CreateVpnConnectionParams, gateway: queries.Endpoint
) -> dict[str, Any]:
    """The tunnel columns of a connection on a single-tunnel gateway (top-level settings)."""
    if p.tunnel_options_specification is not None:
        raise tunnels.single_tunnel_gateway(gateway.id)
    if p.customer_gateway_id is None:
        raise missing_parameter("CustomerGatewayId")
    customer_gateway = queries.customer_gateway_endpoint(
        session, ctx.account_id, p.region_id, p.customer_gateway_id
    )
    if customer_gateway is None:
        raise customer_gateway_not_found(p.customer_gateway_id)
    ike = merge_ike(
        default_ike(ids.new_psk(), gateway.ip_address, customer_gateway.ip_address), p.ike_config or {}
    )
    return {
        "customer_gateway_id": customer_gateway.id,
        "enable_dpd": p.enable_dpd,
        "enable_nat_traversal": p.enable_nat_traversal,
        "ike_config": sealed_ike(ctx.sealer, ike),
        "ipsec_config": dict(merge_ipsec(DEFAULT_IPSEC, p.ipsec_config or {})),
    }


def _dual_tunnel_rows(
    ctx: Context,
    session: Session,
    p: CreateVpnConnectionParams,
    gateway: queries.Endpoint,
    connection_id: str,
) -> list[VpnConnectionTunnel]:
    """The two tunnel rows of a connection on a dual-tunnel gateway (TunnelOptionsSpecification)."""
    if p.tunnel_options_specification is None:
        raise missing_parameter("TunnelOptionsSpecification")
    tunnels.check_no_single_tunnel_settings(
        gateway.id,
        {
            "CustomerGatewayId": p.customer_gateway_id is not None,
            "IkeConfig": bool(p.ike_config),
            "IpsecConfig": bool(p.ipsec_config),
        },
    )
    addresses = TunnelAddresses(gateway.id, gateway.ip_address, gateway.second_ip or "")
    rows = tunnels.new_tunnel_rows(
        ctx, session, p.region_id, connection_id, addresses, p.tunnel_options_specification
    )
    tunnels.check_echoed_flags(
        gateway.id,
        {
            "EnableDpd": p.enable_dpd if "enable_dpd" in p.model_fields_set else None,
            "EnableNatTraversal": p.enable_nat_traversal
            if "enable_nat_traversal" in p.model_fields_set
            else None,
        },
        rows,
    )
    return rows


def _initial_health_status(check: HealthCheck) -> str:
    """A disabled check reads ``success`` (as the real service shows it); an enabled one
    reads ``failed`` until the data plane's prober has seen a reply."""
    return "failed" if check["Enable"] else "success"


class VcoHealthCheck(Response):
    enable: str
    sip: str
    dip: str
    interval: int
    retry: int
    status: str
    policy: str


class VpnBgpConfig(Response):
    enable_bgp: str = "false"
    local_asn: int = 45104
    peer_asn: int = 0
    tunnel_cidr: str = ""
    local_bgp_ip: str = ""
    peer_bgp_ip: str = ""
    status: str = ""
    auth_key: str = ""


class TrafficStatistics(Response):
    """vpngw extension: the counters of the connection's current CHILD_SAs."""

    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0


class VpnConnectionItem(Response):
    vpn_connection_id: str
    vpn_gateway_id: str
    customer_gateway_id: str
    name: str
    local_subnet: str
    remote_subnet: str
    create_time: int
    effect_immediately: bool
    auto_config_route: bool
    enable_dpd: bool
    enable_nat_traversal: bool
    status: str
    state: str
    # Stored configs already carry the wire's key names (IkeVersion, ...).
    ike_config: dict[str, Any]
    ipsec_config: dict[str, Any]
    vco_health_check: VcoHealthCheck
    vpn_bgp_config: VpnBgpConfig
    enable_tunnels_bgp: bool
    spec: str
    network_type: str
    attach_type: str
    resource_group_id: str
    # The tunnels of a dual-tunnel connection ({"TunnelOptions": []} for a single-tunnel one).
    tunnel_options_specification: TunnelOptionsView
    # vpngw extensions (docs/api.md): why negotiation fails, and the live counters.
    diagnosis: str
    traffic_statistics: TrafficStatistics


class VpnConnectionDetail(VpnConnectionItem):
    tags: TagList


class VpnConnectionListItem(VpnConnectionItem):
    tag: TagList


class Views:
    """What the views of some connections need beyond their rows, read in a few queries:
    the observers of their gateways' addresses, and for dual-tunnel connections their
    tunnels, their gateways' two addresses and the nodes that hold them."""

    def __init__(self, ctx: Context, session: Session, rows: Sequence[VpnConnection]) -> None:
        self.ctx = ctx
        self.tunnels = queries.tunnels_of(session, [c.id for c in rows])
        gateway_ids = sorted({c.vpn_gateway_id for c in rows})
        dual_gateways = sorted({c.vpn_gateway_id for c in rows if self.tunnels[c.id]})
        self.seen_by = freshness.observers(session, gateway_ids)
        if dual_gateways:
            self.seen_by.update(tunnels.observers_of(session, dual_gateways))
        self.nodes = tunnels.holders_of(ctx, session, dual_gateways)
        self.addresses = {
            gateway_id: TunnelAddresses(gateway_id, first, second or "")
            for gateway_id, (first, second) in queries.gateway_addresses(session, dual_gateways).items()
        }

    def readings(self, c: VpnConnection) -> list[tunnels.TunnelReading]:
        return [
            tunnels.reading(row, c.vpn_gateway_id, self.seen_by, self.ctx.now_ms)
            for row in self.tunnels[c.id]
        ]

    def fields(self, c: VpnConnection) -> dict[str, Any]:
        found = self.readings(c)
        if not found:
            return _fields(self.ctx, c, self.seen_by.get(c.vpn_gateway_id))
        addresses = self.addresses[c.vpn_gateway_id]
        traffic: dict[str, int] = {}
        for r in found:
            for key, value in (r.row.traffic or {}).items():
                traffic[key] = traffic.get(key, 0) + value
        return _fields(
            self.ctx,
            c,
            None,
            status=tunnels.summary_status(found),
            diagnosis=" ".join(f"Tunnel {r.row.id}: {r.diagnosis}" for r in found if r.diagnosis),
            traffic=traffic,
            options=[tunnels.tunnel_view(self.ctx, r, addresses, self.nodes) for r in found],
        )


def _fields(
    ctx: Context,
    c: VpnConnection | queries.ConnectionRow,
    observer: freshness.Observer | None = None,
    *,
    status: str | None = None,
    diagnosis: str | None = None,
    traffic: dict[str, int] | None = None,
    options: list[tunnels.TunnelOption] | None = None,
) -> dict[str, Any]:
    """A connection's fields; a dual-tunnel connection's Status, Diagnosis and traffic are
    its tunnels' (given), a single-tunnel one's come from its row."""
    check = c.health_check
    if status is None or diagnosis is None:
        # An observation counts only while its observer confirms it (store/freshness.py).
        status, diagnosis = freshness.effective(c.status, c.diagnosis, observer, now_ms=ctx.now_ms)
        traffic = c.traffic
    return {
        "vpn_connection_id": c.id,
        "vpn_gateway_id": c.vpn_gateway_id,
        "customer_gateway_id": c.customer_gateway_id,
        "name": c.name,
        "local_subnet": c.local_subnet,
        "remote_subnet": c.remote_subnet,
        "create_time": c.create_time,
        "effect_immediately": c.effect_immediately,
        "auto_config_route": c.auto_config_route,
        "enable_dpd": c.enable_dpd,
        "enable_nat_traversal": c.enable_nat_traversal,
        "status": status,
        "state": c.state,
        "ike_config": opened_ike(ctx.sealer, c.ike_config),
        "ipsec_config": c.ipsec_config,
        "vco_health_check": VcoHealthCheck(
            enable="true" if check["Enable"] else "false",
            sip=check["Sip"],
            dip=check["Dip"],
            interval=check["Interval"],
            retry=check["Retry"],
            status=c.health_check_status,
            policy=check["Policy"],
        ),
        "vpn_bgp_config": VpnBgpConfig(),
        "enable_tunnels_bgp": False,
        "spec": "",
        "network_type": "public",
        "attach_type": "VPNGW",
        "resource_group_id": "",
        "tunnel_options_specification": TunnelOptionsView(tunnel_options=options or []),
        "diagnosis": diagnosis,
        "traffic_statistics": TrafficStatistics.model_validate(traffic or {}),
    }


def connection_view(ctx: Context, session: Session, c: VpnConnection) -> VpnConnectionDetail:
    return VpnConnectionDetail(
        **Views(ctx, session, [c]).fields(c), tags=tag_list(queries.tags_of(session, [c.id])[c.id])
    )


def get_connection(
    ctx: Context, session: Session, region_id: str, vpn_connection_id: str, *, lock: bool = False
) -> VpnConnection:
    connection = queries.get_owned(
        session, VpnConnection, ctx.account_id, region_id, vpn_connection_id, lock=lock
    )
    if connection is None:
        raise connection_not_found(vpn_connection_id)
    return connection


class DescribeVpnConnectionParams(RegionParams):
    vpn_connection_id: str


def describe_vpn_connection(
    ctx: Context, session: Session, p: DescribeVpnConnectionParams
) -> VpnConnectionDetail:
    return connection_view(ctx, session, get_connection(ctx, session, p.region_id, p.vpn_connection_id))


class DescribeVpnConnectionsParams(PageParams):
    REFUSED = NO_RESOURCE_GROUPS

    vpn_connection_id: str | None = None
    vpn_gateway_id: str | None = None
    customer_gateway_id: str | None = None
    tag: TagFilters | None = None


class VpnConnectionList(Response):
    vpn_connection: list[VpnConnectionListItem]


class DescribeVpnConnectionsResponse(PageResponse):
    vpn_connections: VpnConnectionList


def describe_vpn_connections(
    ctx: Context, session: Session, p: DescribeVpnConnectionsParams
) -> DescribeVpnConnectionsResponse:
    filters = {
        "id": p.vpn_connection_id,
        "vpn_gateway_id": p.vpn_gateway_id,
    }
    # A dual-tunnel connection is found by either tunnel's customer gateway.
    where = () if p.customer_gateway_id is None else (queries.uses_customer_gateway(p.customer_gateway_id),)
    rows, total = queries.page(
        session,
        VpnConnection,
        ctx.account_id,
        p.region_id,
        filters,
        p.page_number,
        p.page_size,
        p.tag or (),
        where,
    )
    tags = queries.tags_of(session, [c.id for c in rows])
    views = Views(ctx, session, rows)
    return DescribeVpnConnectionsResponse(
        total_count=total,
        page_number=p.page_number,
        page_size=p.page_size,
        vpn_connections=VpnConnectionList(
            vpn_connection=[VpnConnectionListItem(**views.fields(c), tag=tag_list(tags[c.id])) for c in rows]
        ),
    )


def describe_vpn_connections_listed(ctx: Context, tx: Tx, p: DescribeVpnConnectionsParams) -> Response:
    """DescribeVpnConnections on the DBAPI cursor (a Direct transaction): the page, its
    observers and its tags in three statements, no ORM object (queries.connection_page). A
    tag filter, or a dual-tunnel connection on the page, needs the ORM path (NeedsSession).

    On the API's event loop (SQLite, under ``without_waiting``) only what is bounded runs:
    an unfiltered page seeks from cached boundaries, a gateway's or a connection's filter
    walks that gateway's few index entries. What may walk far (a deep page whose boundaries
    a change made stale, a customer gateway's filter, the ORM path) raises WouldBlock and
    runs in a worker thread, as every listing did before."""
    if isinstance(tx, Session):
        return describe_vpn_connections(ctx, tx, p)
    waiting = waiting_allowed()
    if p.tag or (p.customer_gateway_id is not None and not waiting):
        raise NeedsSession() if waiting else WouldBlock()
    try:
        rows, total = queries.connection_page(
            tx,
            ctx.account_id,
            p.region_id,
            {
                "id": p.vpn_connection_id,
                "vpn_gateway_id": p.vpn_gateway_id,
                "customer_gateway_id": p.customer_gateway_id,
            },
            p.page_number,
            p.page_size,
            walk=waiting,
        )
    except queries.PageNeedsWalk:
        raise WouldBlock() from None
    if any(row.dual for row in rows):
        raise NeedsSession() if waiting else WouldBlock()
    tags = queries.tags_of_page(tx, [row.id for row in rows])
    return Rendered.model_construct(
        wire={
            "TotalCount": total,
            "PageNumber": p.page_number,
            "PageSize": p.page_size,
            "VpnConnections": {"VpnConnection": [listed_item(ctx, row, tags[row.id]) for row in rows]},
        }
    )


class Rendered(Response):
    """A response already in its wire form (the listing's, built without a pydantic model
    per item: :func:`listed_item`): ``model_dump`` (dispatch's ``by_alias=True, mode="json"``)
    returns it as it is, without walking it again (a fifth of a 50-item page's CPU)."""

    wire: dict[str, Any]

    def model_dump(self, **_options: Any) -> dict[str, Any]:
        return self.wire


_TRAFFIC_KEYS = ("BytesIn", "BytesOut", "PacketsIn", "PacketsOut")
_NO_TRAFFIC = dict.fromkeys(_TRAFFIC_KEYS, 0)
_NO_BGP = VpnBgpConfig().model_dump(by_alias=True, mode="json")


def _plain(config: Any) -> bool:
    """A stored config as the API writes them: str keys, str / int / bool values."""
    return type(config) is dict and all(
        type(key) is str and type(value) in (str, int, bool) for key, value in config.items()
    )


def listed_item(ctx: Context, row: queries.ConnectionRow, tags: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A single-tunnel connection as DescribeVpnConnections lists it, on the wire: exactly
    ``VpnConnectionListItem(**_fields(...), tag=...).model_dump(by_alias=True, mode="json")``
    (tests/api/test_listing_render.py holds the two together), without the models' cost
    (about a fifth of a page's CPU). A row whose values are not of the types the API stores
    (anything pydantic would convert) is rendered by the models themselves."""
    status, diagnosis = freshness.effective(row.status, row.diagnosis, row.observer, now_ms=ctx.now_ms)
    check = row.health_check
    traffic = row.traffic
    if (
        type(row.id) is str
        and type(row.vpn_gateway_id) is str
        and type(row.customer_gateway_id) is str
        and type(row.name) is str
        and type(row.local_subnet) is str
        and type(row.remote_subnet) is str
        and type(row.create_time) is int
        and type(row.effect_immediately) is bool
        and type(row.auto_config_route) is bool
        and type(row.enable_dpd) is bool
        and type(row.enable_nat_traversal) is bool
        and type(status) is str
        and type(row.state) is str
        and type(diagnosis) is str
        and type(row.health_check_status) is str
        and _plain(row.ike_config)
        and _plain(row.ipsec_config)
        and _plain(check)
        and type(check.get("Sip")) is str
        and type(check.get("Dip")) is str
        and type(check.get("Interval")) is int
        and type(check.get("Retry")) is int
        and type(check.get("Policy")) is str
        and "Enable" in check
        and (
            not traffic
            or (
                type(traffic) is dict
                and set(traffic) <= set(_TRAFFIC_KEYS)
                and all(type(value) is int for value in traffic.values())
            )
        )
        and all(type(key) is str and type(value) is str for key, value in tags)
    ):
        ike = opened_ike(ctx.sealer, row.ike_config)
        if type(ike["Psk"]) is str:
            return {
                "VpnConnectionId": row.id,
                "VpnGatewayId": row.vpn_gateway_id,
                "CustomerGatewayId": row.customer_gateway_id,
                "Name": row.name,
                "LocalSubnet": row.local_subnet,
                "RemoteSubnet": row.remote_subnet,
                "CreateTime": row.create_time,
                "EffectImmediately": row.effect_immediately,
                "AutoConfigRoute": row.auto_config_route,
                "EnableDpd": row.enable_dpd,
                "EnableNatTraversal": row.enable_nat_traversal,
                "Status": status,
                "State": row.state,
                "IkeConfig": dict(ike),
                "IpsecConfig": dict(row.ipsec_config),
                "VcoHealthCheck": {
                    "Enable": "true" if check["Enable"] else "false",
                    "Sip": check["Sip"],
                    "Dip": check["Dip"],
                    "Interval": check["Interval"],
                    "Retry": check["Retry"],
                    "Status": row.health_check_status,
                    "Policy": check["Policy"],
                },
                "VpnBgpConfig": dict(_NO_BGP),
                "EnableTunnelsBgp": False,
                "Spec": "",
                "NetworkType": "public",
                "AttachType": "VPNGW",
                "ResourceGroupId": "",
                "TunnelOptionsSpecification": {"TunnelOptions": []},
                "Diagnosis": diagnosis,
                "TrafficStatistics": {**_NO_TRAFFIC, **traffic} if traffic else dict(_NO_TRAFFIC),
                "Tag": {"Tag": [{"Key": key, "Value": value} for key, value in tags]},
            }
    item = VpnConnectionListItem(**_fields(ctx, row, row.observer), tag=tag_list(tags))
    return item.model_dump(by_alias=True, mode="json")


class ModifyVpnConnectionAttributeParams(RegionParams):
    REFUSED = _REFUSED

    vpn_connection_id: str
    name: Name | None = None
    local_subnet: str | None = None
    remote_subnet: str | None = None
    effect_immediately: Bool | None = None
    auto_config_route: Bool | None = None
    enable_dpd: Bool | None = None
    enable_nat_traversal: Bool | None = None
    ike_config: IkeGiven | None = None
    ipsec_config: IpsecGiven | None = None
    health_check_config: HealthCheckGiven | None = None
    bgp_config: BgpConfig | None = None
    enable_tunnels_bgp: Bool | None = None
    tunnel_options_specification: ChangedTunnels | None = None
    client_token: ClientToken | None = None


def _tunnel_settings(sealer: Sealer, c: VpnConnection) -> tuple[Any, ...]:
    """What the tunnel is negotiated from: a change of any of these renegotiates it (and
    so clears an old diagnosis); a new Name, AutoConfigRoute or health check does not."""
    return (
        c.local_subnet,
        c.remote_subnet,
        opened_ike(sealer, c.ike_config),
        dict(c.ipsec_config),
        c.enable_dpd,
        c.enable_nat_traversal,
    )


def modify_vpn_connection_attribute(
    ctx: Context, session: Session, p: ModifyVpnConnectionAttributeParams
) -> VpnConnectionDetail:
    # Lock the gateway first (as create does), then the connection, so that concurrent
    # creates and modifies on one gateway take their locks in the same order.
    connection = get_connection(ctx, session, p.region_id, p.vpn_connection_id)
    gateway = get_gateway(ctx, session, p.region_id, connection.vpn_gateway_id, lock=True)
    connection = get_connection(ctx, session, p.region_id, p.vpn_connection_id, lock=True)
    local, remote = _selectors(
        ctx, p.local_subnet or connection.local_subnet, p.remote_subnet or connection.remote_subnet
    )
    health_check = merge_health_check(connection.health_check, p.health_check_config or {})
    check_health_check(health_check, local, remote)
    _check_gateway_room(ctx, session, gateway.id, local, remote, except_id=connection.id)
    rows = queries.tunnels_of(session, [connection.id])[connection.id]
    if rows:
        tunnels.check_no_single_tunnel_settings(
            gateway.id,
            {
                "IkeConfig": bool(p.ike_config),
                "IpsecConfig": bool(p.ipsec_config),
            },
        )
        for change in p.tunnel_options_specification or []:
            if change.tunnel_id is not None:
                row = tunnels.find_tunnel(rows, change.tunnel_id)
            else:
                row = next(r for r in rows if r.tunnel_index == change.tunnel_index)
            tunnels.apply_change(ctx, session, p.region_id, row, change)
        tunnels.check_roles(rows)
        tunnels.check_echoed_flags(
            gateway.id, {"EnableDpd": p.enable_dpd, "EnableNatTraversal": p.enable_nat_traversal}, rows
        )
        tunnels.mirror_master(connection, rows)
    elif p.tunnel_options_specification is not None:
        raise tunnels.single_tunnel_gateway(gateway.id)
    tunnel_before = _tunnel_settings(ctx.sealer, connection)
    if p.name is not None:
        connection.name = p.name
    connection.local_subnet = subnets.join_subnets(local)
    connection.remote_subnet = subnets.join_subnets(remote)
    for field in ("effect_immediately", "auto_config_route", "enable_dpd", "enable_nat_traversal"):
        given = getattr(p, field)
        if given is not None:
            setattr(connection, field, given)
    if not rows:
        connection.ike_config = sealed_ike(
            ctx.sealer, merge_ike(opened_ike(ctx.sealer, connection.ike_config), p.ike_config or {})
        )
        connection.ipsec_config = dict(merge_ipsec(connection.ipsec_config, p.ipsec_config or {}))
    if p.health_check_config:
        connection.health_check = dict(health_check)
        connection.health_check_status = _initial_health_status(health_check)
    if _tunnel_settings(ctx.sealer, connection) != tunnel_before:
        connection.diagnosis = ""  # the data plane diagnoses the new settings afresh
    session.flush()
    return connection_view(ctx, session, connection)


class DeleteVpnConnectionParams(RegionParams):
    vpn_connection_id: str
    client_token: ClientToken | None = None


def delete_vpn_connection(ctx: Context, session: Tx, p: DeleteVpnConnectionParams) -> EmptyResponse:
    """Runs on the DBAPI cursor (a Direct transaction) as well as in a session: a handful of
    statements by key, no ORM object (queries.delete_connection)."""
    key = queries.connection_key(session, ctx.account_id, p.region_id, p.vpn_connection_id)
    if key is None:
        raise connection_not_found(p.vpn_connection_id)
    # The gateway's lock first (as create and modify take it).
    if (
        queries.vpn_gateway_endpoint(session, ctx.account_id, p.region_id, key.vpn_gateway_id, lock=True)
        is None
    ):
        raise gateway_not_found(key.vpn_gateway_id)
    tunnel_ids = queries.tunnel_ids_of(session, key.id)
    queries.delete_connection(session, ctx.account_id, p.region_id, key, tunnel_ids)
    return EmptyResponse()


class DownloadVpnConnectionConfigParams(RegionParams):
    vpn_connection_id: str


class PeerConfig(Response):
    local: str
    remote: str
    local_subnet: str
    remote_subnet: str
    # An IkeConfig (vpngw.ike_config) as the peer sees it; a plain dict keeps its keys as
    # they are (pydantic would re-case a TypedDict's keys with the alias generator).
    ike_config: dict[str, Any]
    ipsec_config: dict[str, Any]


class TunnelPeerConfig(Response):
    """One tunnel of a dual-tunnel connection as the customer's device sees it."""

    tunnel_id: str
    # Extensions: which tunnel (1 on the InternetIp, 2 on the DisasterRecoveryInternetIp) and its role.
    tunnel_index: int
    role: str
    local: str
    remote: str
    ike_config: dict[str, Any]
    ipsec_config: dict[str, Any]


class TunnelsConfig(Response):
    tunnel_config: list[TunnelPeerConfig]


class PeerConfigWithTunnels(PeerConfig):
    # The tunnels of a dual-tunnel connection ({"TunnelConfig": []} for a single-tunnel one);
    # the top level is then the master tunnel's.
    tunnels_config: TunnelsConfig


class DownloadVpnConnectionConfigResponse(Response):
    vpn_connection_config: PeerConfigWithTunnels


def download_vpn_connection_config(
    ctx: Context, session: Session, p: DownloadVpnConnectionConfigParams
) -> DownloadVpnConnectionConfigResponse:
    """The configuration for the customer's device: every side is swapped, so that
    ``Local`` is the customer gateway and ``Remote`` the VPN gateway."""
    connection = get_connection(ctx, session, p.region_id, p.vpn_connection_id)
    gateway = get_gateway(ctx, session, p.region_id, connection.vpn_gateway_id)
    customer_gateway = get_customer_gateway(ctx, session, p.region_id, connection.customer_gateway_id)
    ike = opened_ike(ctx.sealer, connection.ike_config)
    rows = queries.tunnels_of(session, [connection.id])[connection.id]
    addresses = TunnelAddresses(gateway.id, gateway.internet_ip, gateway.disaster_recovery_internet_ip or "")
    customer_ips = {
        row.customer_gateway_id: get_customer_gateway(
            ctx, session, p.region_id, row.customer_gateway_id
        ).ip_address
        for row in rows
    }
    master = next((row for row in rows if row.role == "master"), None)
    return DownloadVpnConnectionConfigResponse(
        vpn_connection_config=PeerConfigWithTunnels(
            local=customer_gateway.ip_address,
            remote=addresses.of(master.tunnel_index) if master else gateway.internet_ip,
            local_subnet=connection.remote_subnet,
            remote_subnet=connection.local_subnet,
            ike_config=dict(peer_ike(ike)),
            ipsec_config=connection.ipsec_config,
            tunnels_config=TunnelsConfig(
                tunnel_config=[
                    TunnelPeerConfig(
                        tunnel_id=row.id,
                        tunnel_index=row.tunnel_index,
                        role=row.role,
                        local=customer_ips[row.customer_gateway_id],
                        remote=addresses.of(row.tunnel_index),
                        ike_config=dict(peer_ike(opened_ike(ctx.sealer, row.ike_config))),
                        ipsec_config=dict(row.ipsec_config),
                    )
                    for row in rows
                ]
            ),
        )
    )
