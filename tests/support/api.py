"""A thin test client for both wire dialects, with helpers that build a small world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

REGION = "cn-qingdao-env66-d01"


@dataclass
class Api:
    client: Any  # starlette TestClient or httpx.Client

    def rpc(self, action: str, **params: Any) -> httpx.Response:
        query = {"Action": action, "Version": "2016-04-28", **{k: str(v) for k, v in params.items()}}
        return self.client.post("/", params=query)

    def apsara(self, action: str, *, json: dict[str, Any] | None = None, form: dict[str, str] | None = None) -> httpx.Response:
        if json is not None:
            return self.client.post(f"/apsara/route/Vpc/{action}", json=json)
        return self.client.post(f"/apsara/route/Vpc/{action}", data=form or {})

    def ok(self, action: str, **params: Any) -> dict[str, Any]:
        params.setdefault("RegionId", REGION)
        response = self.rpc(action, **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["RequestId"]
        return body

    def fails(self, action: str, status: int, code: str, **params: Any) -> dict[str, Any]:
        params.setdefault("RegionId", REGION)
        response = self.rpc(action, **params)
        body: dict[str, Any] = response.json()
        assert (response.status_code, body.get("Code")) == (status, code), response.text
        assert body["Message"] and body["RequestId"] and body["HostId"]
        return body


@dataclass(frozen=True)
class World:
    vpc_id: str
    vpn_gateway_id: str
    internet_ip: str
    customer_gateway_id: str
    customer_ip: str


def build_world(api: Api, customer_ip: str = "198.19.0.10") -> World:
    vpc = api.ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    gateway = api.ok("CreateVpnGateway", VpcId=vpc, Bandwidth=10)["VpnGatewayId"]
    internet_ip = api.ok("DescribeVpnGateway", VpnGatewayId=gateway)["InternetIp"]
    customer = api.ok("CreateCustomerGateway", IpAddress=customer_ip)["CustomerGatewayId"]
    return World(vpc, gateway, internet_ip, customer, customer_ip)


def connection_params(world: World, **extra: Any) -> dict[str, Any]:
    return {
        "VpnGatewayId": world.vpn_gateway_id,
        "CustomerGatewayId": world.customer_gateway_id,
        "LocalSubnet": "10.1.1.0/24,10.1.2.0/24",
        "RemoteSubnet": "10.10.1.0/24",
        **extra,
    }
