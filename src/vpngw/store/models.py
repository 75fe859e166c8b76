"""The schema. Every resource row belongs to an account and a region.

Each resource table has an integer ``seq`` primary key that orders listings stably
(pages are served from ``(account_id, region_id, seq)`` indexes) and the public ``id``
(``vpn-...``) as a unique key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    create_time: Mapped[int] = mapped_column(BigInteger)


class Vpc(Base):
    __tablename__ = "vpcs"
    __table_args__ = (Index("ix_vpcs_owner", "account_id", "region_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    region_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(256), default="")
    cidr_block: Mapped[str] = mapped_column(String(32))
    create_time: Mapped[int] = mapped_column(BigInteger)


class VpnGateway(Base):
    __tablename__ = "vpn_gateways"
    __table_args__ = (
        Index("ix_vpn_gateways_owner", "account_id", "region_id", "seq"),
        Index("ix_vpn_gateways_vpc", "vpc_id", "seq"),
        Index("ix_vpn_gateways_vpc_next_hop", "vpc_next_hop", unique=True),
        Index("ix_vpn_gateways_disaster_recovery_internet_ip", "disaster_recovery_internet_ip", unique=True),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    region_id: Mapped[str] = mapped_column(String(64))
    vpc_id: Mapped[str] = mapped_column(ForeignKey("vpcs.id"))
    v_switch_id: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(256), default="")
    bandwidth: Mapped[int] = mapped_column(Integer)
    internet_ip: Mapped[str] = mapped_column(String(15), unique=True)
    # The VPC-side next hop (docs/hosts.md, section 5): an address of the VPC segment that
    # follows the gateway's lease. None only for a gateway created before it existed,
    # until an API server starts and gives it one.
    vpc_next_hop: Mapped[str | None] = mapped_column(String(15), nullable=True)
    # A dual-tunnel gateway (DisasterRecoveryVSwitchId) has a second address from the same
    # pool: tunnel 2 of each of its connections runs on it. A gateway is dual-tunnel iff
    # this is set (docs/api.md, "Dual-tunnel gateways").
    disaster_recovery_internet_ip: Mapped[str | None] = mapped_column(String(15), nullable=True)
    disaster_recovery_v_switch_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    status: Mapped[str] = mapped_column(String(16))
    # The change stamp of what the data plane realises for this gateway: bumped by
    # database triggers (migration 0015) in every transaction that changes it.
    desired_generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    charge_type: Mapped[str] = mapped_column(String(16))
    ipsec_vpn: Mapped[bool] = mapped_column(Boolean)
    ssl_vpn: Mapped[bool] = mapped_column(Boolean)
    ssl_max_connections: Mapped[int] = mapped_column(Integer)
    network_type: Mapped[str] = mapped_column(String(16))
    vpn_type: Mapped[str] = mapped_column(String(32))
    auto_propagate: Mapped[bool] = mapped_column(Boolean, default=False)
    create_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int] = mapped_column(BigInteger)


class CustomerGateway(Base):
    __tablename__ = "customer_gateways"
    __table_args__ = (
        Index("ix_customer_gateways_owner", "account_id", "region_id", "seq"),
        UniqueConstraint("account_id", "region_id", "ip_address", name="uq_customer_gateways_ip"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    region_id: Mapped[str] = mapped_column(String(64))
    ip_address: Mapped[str] = mapped_column(String(15))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(256), default="")
    asn: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    auth_key: Mapped[str] = mapped_column(Text, default="")  # sealed
    create_time: Mapped[int] = mapped_column(BigInteger)


class VpnConnection(Base):
    __tablename__ = "vpn_connections"
    __table_args__ = (
        Index("ix_vpn_connections_owner", "account_id", "region_id", "seq"),
        Index("ix_vpn_connections_gateway", "vpn_gateway_id", "seq"),
        Index("ix_vpn_connections_customer_gateway", "customer_gateway_id", "seq"),
        # Listings filtered by gateway: the owner columns first, so that the planner
        # needs no statistics to prefer them over the owner index.
        Index("ix_vpn_connections_owner_gateway", "account_id", "region_id", "vpn_gateway_id", "seq"),
        Index(
            "ix_vpn_connections_owner_customer_gateway",
            "account_id",
            "region_id",
            "customer_gateway_id",
            "seq",
        ),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    region_id: Mapped[str] = mapped_column(String(64))
    vpn_gateway_id: Mapped[str] = mapped_column(ForeignKey("vpn_gateways.id"))
    customer_gateway_id: Mapped[str] = mapped_column(ForeignKey("customer_gateways.id"))
    name: Mapped[str] = mapped_column(String(128))
    local_subnet: Mapped[str] = mapped_column(Text)
    remote_subnet: Mapped[str] = mapped_column(Text)
    effect_immediately: Mapped[bool] = mapped_column(Boolean)
    auto_config_route: Mapped[bool] = mapped_column(Boolean)
    enable_dpd: Mapped[bool] = mapped_column(Boolean)
    enable_nat_traversal: Mapped[bool] = mapped_column(Boolean)
    ike_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    ipsec_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    health_check: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Written by the data plane: the SAs it observes and the health-check result.
    status: Mapped[str] = mapped_column(String(32))
    health_check_status: Mapped[str] = mapped_column(String(16))
    # Why negotiation fails, in plain language ('' when nothing fails), and the traffic
    # counters of the current CHILD_SAs ({BytesIn, BytesOut, PacketsIn, PacketsOut}).
    diagnosis: Mapped[str] = mapped_column(Text, default="", server_default="")
    # None is stored as SQL NULL (never observed), not as the JSON value null.
    traffic: Mapped[dict[str, int] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    observed_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The node that wrote the observation (None: never observed).
    observed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    create_time: Mapped[int] = mapped_column(BigInteger)


class VpnConnectionTunnel(Base):
    """One tunnel of a dual-tunnel connection (TunnelOptionsSpecification): tunnel 1 runs
    on the gateway's InternetIp, tunnel 2 on its DisasterRecoveryInternetIp. A
    single-tunnel connection has no rows here.

    The settings columns are the API's (``ike_config`` holds the wire's keys, its Psk
    sealed as a connection's is); the observation columns (``status`` to ``observed_by``)
    are written only by the data plane, as on ``vpn_connections``.
    """

    __tablename__ = "vpn_connection_tunnels"
    __table_args__ = (
        UniqueConstraint("vpn_connection_id", "tunnel_index", name="uq_vpn_connection_tunnels_index"),
        Index("ix_vpn_connection_tunnels_customer_gateway", "customer_gateway_id"),
    )

    # The public TunnelId ("tun-...").
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vpn_connection_id: Mapped[str] = mapped_column(ForeignKey("vpn_connections.id", ondelete="CASCADE"))
    tunnel_index: Mapped[int] = mapped_column(Integer)  # 1 or 2
    role: Mapped[str] = mapped_column(String(8))  # "master" or "slave"
    customer_gateway_id: Mapped[str] = mapped_column(ForeignKey("customer_gateways.id"))
    enable_dpd: Mapped[bool] = mapped_column(Boolean)
    enable_nat_traversal: Mapped[bool] = mapped_column(Boolean)
    ike_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    ipsec_config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Written by the data plane (same vocabulary as VpnConnection.status).
    status: Mapped[str] = mapped_column(String(32))
    diagnosis: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The counters of the tunnel's current CHILD_SAs, None until observed.
    traffic: Mapped[dict[str, int] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    observed_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    observed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class VpnConnectionLog(Base):
    """One line of a connection's negotiation log, as charon wrote it. A tunnel of a
    dual-tunnel connection keeps its own lines: ``vpn_connection_id`` is then its TunnelId.

    No foreign key: the data plane writes lines asynchronously, possibly just after the
    connection was deleted (those are dropped by ``add_connection_logs``);
    DeleteVpnConnection deletes the rest in its transaction.
    """

    __tablename__ = "vpn_connection_logs"
    __table_args__ = (Index("ix_vpn_connection_logs_connection_time", "vpn_connection_id", "time_ms", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vpn_connection_id: Mapped[str] = mapped_column(String(32))
    time_ms: Mapped[int] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text)


class VpnConnectionTrafficPoint(Base):
    """One point of a connection's traffic history: the counters the data plane last
    stored within a 10-second bucket (``store.traffic_history``). Kept 24 hours.

    No foreign key, as for log lines: DeleteVpnConnection deletes a connection's points
    in its transaction, and the data plane writes points only under the connection's
    row lock (``write_observation``), so none outlive their connection.
    """

    __tablename__ = "vpn_connection_traffic"
    __table_args__ = (Index("ix_vpn_connection_traffic_time", "time_ms"),)

    vpn_connection_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The bucket's start (a multiple of the bucket length), and when its counters were read.
    bucket_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    time_ms: Mapped[int] = mapped_column(BigInteger)
    bytes_in: Mapped[int] = mapped_column(BigInteger)
    bytes_out: Mapped[int] = mapped_column(BigInteger)
    packets_in: Mapped[int] = mapped_column(BigInteger)
    packets_out: Mapped[int] = mapped_column(BigInteger)


class IdempotencyRecord(Base):
    """The first successful result of a request that carried a ClientToken."""

    __tablename__ = "idempotency_records"
    __table_args__ = (Index("ix_idempotency_records_expiry", "create_time"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    action: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_token: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    create_time: Mapped[int] = mapped_column(BigInteger)


class AccessKey(Base):
    """An AccessKey pair of an account. The secret is stored sealed (vpngw.sealing)."""

    __tablename__ = "access_keys"
    __table_args__ = (Index("ix_access_keys_account", "account_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    secret_sealed: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    create_time: Mapped[int] = mapped_column(BigInteger)


class SignatureNonce(Base):
    """A SignatureNonce seen within the timestamp window. The primary key makes a
    replay fail even when it reaches another server process of the same database."""

    __tablename__ = "signature_nonces"
    __table_args__ = (Index("ix_signature_nonces_expiry", "expire_time"),)

    access_key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expire_time: Mapped[int] = mapped_column(BigInteger)


class ResourceCount(Base):
    """How many resources of a kind an account holds in a region, kept in step by
    ``queries.add_owned``/``queries.delete_owned``: an unfiltered listing's TotalCount
    is read here instead of counting 100,000 index entries on every page."""

    __tablename__ = "resource_counts"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    region_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    # How many times ``count`` was changed (every create and delete of the kind): with
    # ``count``, it tells whether the listing's keys moved since a page cache was built
    # (``queries.page``'s page boundaries).
    changes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class AccountQuota(Base):
    """A quota the operator set for an account (``vpngw account quota``): at most ``quota``
    resources of ``kind`` (a table name, as in ``resource_counts``) per region. A kind
    without a row has the default of the settings."""

    __tablename__ = "account_quotas"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    quota: Mapped[int] = mapped_column(BigInteger)


class ResourceTag(Base):
    """A tag (key and value) on a resource of an account (``Tags.N`` on a create,
    TagResources): at most 20 per resource, one value per key. A resource's tags go with
    it (``queries.delete_owned``)."""

    __tablename__ = "resource_tags"
    __table_args__ = (
        Index("ix_resource_tags_owner", "account_id", "region_id", "resource_type", "resource_id"),
        Index("ix_resource_tags_key", "account_id", "tag_key", "tag_value"),
    )

    resource_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tag_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    tag_value: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    region_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))


class Node(Base):
    """A data-plane node (``vpngw agent --node NAME``, or ``vpngw serve``'s own data
    plane): it heartbeats here while it runs (docs/nodes.md)."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    backend: Mapped[str] = mapped_column(String(16))
    addresses: Mapped[list[str]] = mapped_column(JSON)
    capacity: Mapped[int] = mapped_column(Integer)
    heartbeat_ms: Mapped[int] = mapped_column(BigInteger)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    # A draining node gives its gateways away and takes no new ones (vpngw node drain).
    draining: Mapped[bool] = mapped_column(Boolean, default=False)


class GatewayLease(Base):
    """Which node runs a VPN gateway, until when (docs/nodes.md, the lease protocol).

    ``holder`` is None while nobody holds it; ``epoch`` grows at every takeover (a
    fencing token: what a node did under an older epoch is stale). ``pinned_node``
    restricts who may take it (vpngw node move). No foreign key: a lease may outlive
    its gateway by one pass, until its holder has torn the gateway down.
    """

    __tablename__ = "gateway_leases"
    __table_args__ = (Index("ix_gateway_leases_holder", "holder"),)

    vpn_gateway_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The gateway's address, kept here so that a deleted gateway's lease still guards
    # it: a new gateway that reuses the address waits until the old one is torn down.
    internet_ip: Mapped[str] = mapped_column(String(15))
    # Likewise the gateway's VPC-side next hop (None: the gateway has none).
    vpc_next_hop: Mapped[str | None] = mapped_column(String(15), nullable=True)
    holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[int] = mapped_column(Integer)
    pinned_node: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The node that held it before the current holder (or before it was lost).
    previous_holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # What the holder last confirmed (store/freshness.py): the node whose pass last ran
    # this gateway, until when that confirmation stands, and the error of that pass ("" if
    # it went through). A connection's stored Status counts only while it stands.
    observed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    observed_until_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    pass_error: Mapped[str] = mapped_column(Text, default="", server_default="")
