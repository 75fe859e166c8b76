"""A thin test client for both wire dialects, with helpers that build a small world."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from vpngw.auth.signatures import json_body_as_params, sign_rpc_v1

REGION = "cn-qingdao-env66-d01"
# The key pair the test servers give to the default account (tests/conftest.py).
TEST_KEY_ID = "LTAItestkey0000000000001"
TEST_KEY_SECRET = "test-secret-0123456789abcdefghij"


def signature_params(
    method: str,
    params: dict[str, str],
    key_id: str = TEST_KEY_ID,
    secret: str = TEST_KEY_SECRET,
    *,
    path: str = "/",
) -> dict[str, str]:
    """The parameters that sign ``params`` with the RPC v1 scheme (to add to the query), for
    a request to ``path`` (the Apsara route's signature names its path: docs/security.md)."""
    signed = sign_rpc_v1(
        method,
        params,
        key_id,
        secret,
        nonce=uuid.uuid4().hex,
        timestamp=datetime.datetime.now(datetime.UTC),
        path=path,
    )
    return {k: v for k, v in signed.items() if k not in params}


def signed_query(method: str, params: dict[str, str], path: str = "/", **key: str) -> dict[str, str]:
    return {**params, **signature_params(method, params, path=path, **key)}


@dataclass
class Api:
    client: Any  # starlette TestClient or httpx.Client

    def rpc(self, action: str, **params: Any) -> httpx.Response:
        """A signed RPC call, parameters in the query, as the SDKs send them."""
        query = {"Action": action, "Version": "2016-04-28", **{k: str(v) for k, v in params.items()}}
        return self.client.post("/", params=signed_query("POST", query))

    def apsara(
        self, action: str, *, json: dict[str, Any] | None = None, form: dict[str, str] | None = None
    ) -> httpx.Response:
        """A signed call on the spec's route; the signature covers the body's parameters."""
        path = f"/apsara/route/Vpc/{action}"
        if json is not None:
            signature = signature_params("POST", dict(json_body_as_params(json)), path=path)
            return self.client.post(path, params=signature, json=json)
        form = form or {}
        return self.client.post(path, params=signature_params("POST", form, path=path), data=form)

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
