"""Settings of one vpngw process, read from the command line and the environment."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

DEFAULT_DB_URL = "sqlite:///./vpngw.db"
DEFAULT_VPC_NEXT_HOP_POOL = "100.64.0.0/16"


@dataclass(frozen=True)
class Region:
    region_id: str
    local_name: str


# The spec's sample region plus the public regions most examples use.
DEFAULT_REGIONS = (
    Region("cn-qingdao-env66-d01", "Apsara Stack env66"),
    Region("cn-hangzhou", "华东1（杭州）"),
    Region("cn-shanghai", "华东2（上海）"),
    Region("cn-qingdao", "华北1（青岛）"),
    Region("cn-beijing", "华北2（北京）"),
    Region("cn-shenzhen", "华南1（深圳）"),
)


@dataclass(frozen=True)
class Settings:
    db_url: str = DEFAULT_DB_URL
    regions: tuple[Region, ...] = DEFAULT_REGIONS
    # VPN gateways take their InternetIp from this pool (the lab WAN range of docs/lab.md).
    internet_ip_pool: str = "198.18.0.0/16"
    # Each VPN gateway takes its VPC-side next hop from this pool: a range of the VPC
    # segment that no VPC host uses (docs/hosts.md, section 5). The default is the lab's
    # shared VPC segment (docs/lab.md), a range no real VPC segment should hold as is.
    vpc_next_hop_pool: str = DEFAULT_VPC_NEXT_HOP_POOL
    max_subnets_per_side: int = 10
    max_connections_per_gateway: int = 10
    # Per-account quotas, counted per account and region, for an account the operator gave
    # none of its own (`vpngw account quota`; docs/security.md).
    quota_vpcs: int = 10
    quota_vpn_gateways: int = 500
    quota_customer_gateways: int = 100
    # A ClientToken replays its first result for this long, then counts as new.
    client_token_ttl_s: int = 24 * 3600
    host_id: str = "vpc.aliyuncs.com"
    default_account_id: str = "1000000000000000"
    region_ids: frozenset[str] = field(init=False)

    def default_quota(self, kind: str) -> int:
        """The quota of ``kind`` (a table name: ``vpcs``, ``vpn_gateways``,
        ``customer_gateways``) for an account without one of its own."""
        return {
            "vpcs": self.quota_vpcs,
            "vpn_gateways": self.quota_vpn_gateways,
            "customer_gateways": self.quota_customer_gateways,
        }[kind]

    def __post_init__(self) -> None:
        object.__setattr__(self, "region_ids", frozenset(r.region_id for r in self.regions))
        for variable, pool in (
            ("VPNGW_INTERNET_IP_POOL", self.internet_ip_pool),
            ("VPNGW_VPC_NEXT_HOP_POOL", self.vpc_next_hop_pool),
        ):
            try:
                ipaddress.IPv4Network(pool)
            except ValueError as error:
                raise ValueError(f"{variable}={pool!r} is not an IPv4 network: {error}") from None


def resolve_db_url(cli_value: str | None) -> str:
    """``--db`` wins, then ``VPNGW_DB``, then the embedded SQLite file."""
    return cli_value or os.environ.get("VPNGW_DB") or DEFAULT_DB_URL


def _parse_regions(value: str) -> tuple[Region, ...]:
    """``id[=local name],id[=local name],...``"""
    regions = []
    for item in value.split(","):
        region_id, _, name = item.strip().partition("=")
        if region_id:
            regions.append(Region(region_id, name or region_id))
    return tuple(regions)


def settings_from_env(db_url: str | None = None) -> Settings:
    env = os.environ
    return Settings(
        db_url=resolve_db_url(db_url),
        regions=_parse_regions(env["VPNGW_REGIONS"]) if env.get("VPNGW_REGIONS") else DEFAULT_REGIONS,
        internet_ip_pool=env.get("VPNGW_INTERNET_IP_POOL", "198.18.0.0/16"),
        vpc_next_hop_pool=env.get("VPNGW_VPC_NEXT_HOP_POOL", DEFAULT_VPC_NEXT_HOP_POOL),
        max_subnets_per_side=int(env.get("VPNGW_MAX_SUBNETS_PER_SIDE", "10")),
        max_connections_per_gateway=int(env.get("VPNGW_MAX_CONNECTIONS_PER_GATEWAY", "10")),
        client_token_ttl_s=int(env.get("VPNGW_CLIENT_TOKEN_TTL_S", str(24 * 3600))),
        quota_vpcs=int(env.get("VPNGW_QUOTA_VPCS", "10")),
        quota_vpn_gateways=int(env.get("VPNGW_QUOTA_VPN_GATEWAYS", "500")),
        quota_customer_gateways=int(env.get("VPNGW_QUOTA_CUSTOMER_GATEWAYS", "100")),
    )
