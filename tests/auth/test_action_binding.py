"""The signature binds the action on every route (issue 15, item 2).

An on-path attacker who captures a signed read cannot deliver its bytes to the Apsara
route of a delete: an RPC v1 signature sent to ``/apsara/route/Vpc/<Action>`` must name
that path, or carry a signed ``Action`` equal to the path's action. The captures come
from the official SDKs (Tea with ``signature_algorithm='v2'``, and the legacy core SDK),
unmodified, pointed at a capturing server; the bytes are then replayed as an attacker
would.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET, Api, signed_query
from tests.support.sdk import Captured, capturing_server
from vpngw.auth.signatures import IncomingRequest, read_credentials, sign_rpc_v1, string_to_sign, verify
from vpngw.errors import BadRequest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"


_CAPTURED: list[Captured] = []


@pytest.fixture(scope="module")
def capture_port() -> Iterator[int]:
    with capturing_server({"RequestId": "captured"}, into=_CAPTURED) as port:
        yield port


def _tea_v2(port: int, read: str, params: dict[str, str]) -> Captured:
    """What Tea (``signature_algorithm='v2'``, RPC v1 signing) sends for ``read``."""
    from alibabacloud_tea_openapi.models import Config
    from alibabacloud_vpc20160428 import models
    from alibabacloud_vpc20160428.client import Client

    config = Config(
        access_key_id=TEST_KEY_ID,
        access_key_secret=TEST_KEY_SECRET,
        region_id=REGION,
        endpoint=f"127.0.0.1:{port}",
        protocol="http",
    )
    config.signature_algorithm = "v2"
    client = Client(config)
    if read == "DescribeCustomerGateway":
        client.describe_customer_gateway(
            models.DescribeCustomerGatewayRequest(region_id=REGION, customer_gateway_id=params["Id"])
        )
    else:
        client.describe_vpcs(models.DescribeVpcsRequest(region_id=REGION, vpc_id=params["Id"]))
    return _CAPTURED[-1]


def _core(port: int, read: str, params: dict[str, str]) -> Captured:
    """What the legacy SDK (aliyun-python-sdk-core, RPC v1) sends for ``read``."""
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkvpc.request.v20160428.DescribeCustomerGatewayRequest import (
        DescribeCustomerGatewayRequest,
    )
    from aliyunsdkvpc.request.v20160428.DescribeVpcsRequest import DescribeVpcsRequest

    request: Any
    if read == "DescribeCustomerGateway":
        request = DescribeCustomerGatewayRequest()
        request.set_CustomerGatewayId(params["Id"])
    else:
        request = DescribeVpcsRequest()
        request.set_VpcId(params["Id"])
    request.set_endpoint(f"127.0.0.1:{port}")
    request.set_protocol_type("http")
    AcsClient(TEST_KEY_ID, TEST_KEY_SECRET, REGION).do_action_with_exception(request)
    return _CAPTURED[-1]


SDKS: dict[str, Callable[[int, str, dict[str, str]], Captured]] = {"tea-v2": _tea_v2, "core": _core}


def _deliver(api: Api, captured: Captured, path: str) -> httpx.Response:
    """The captured bytes, as they were, sent to ``path`` (the query string kept)."""
    query = urlsplit(captured.target).query
    headers = {k: v for k, v in captured.headers.items() if k in ("content-type", "x-acs-action")}
    response: httpx.Response = api.client.request(
        captured.method, f"{path}?{query}" if query else path, content=captured.body, headers=headers
    )
    return response


@pytest.mark.parametrize("sdk", sorted(SDKS))
@pytest.mark.parametrize(
    ("read", "delete", "check"),
    [
        ("DescribeCustomerGateway", "DeleteCustomerGateway", "DescribeCustomerGateways"),
        ("DescribeVpcs", "DeleteVpc", "DescribeVpcs"),
    ],
)
def test_a_captured_read_cannot_be_relayed_to_a_delete(
    api: Api, capture_port: int, sdk: str, read: str, delete: str, check: str
) -> None:
    if read == "DescribeCustomerGateway":
        victim = api.ok("CreateCustomerGateway", IpAddress="198.19.7.7")["CustomerGatewayId"]
    else:
        victim = api.ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"]
    captured = SDKS[sdk](capture_port, read, {"Id": victim})
    assert "Signature=" in captured.target and f"Action={read}" in captured.target  # an RPC v1 request

    relayed = _deliver(api, captured, f"/apsara/route/Vpc/{delete}")
    assert (relayed.status_code, relayed.json()["Code"]) == (400, "SignatureDoesNotMatch"), relayed.text
    listing = api.ok(check)
    assert listing["TotalCount"] == 1 and victim in json.dumps(listing), "the relay deleted it"

    # The capture itself is a valid request: on its own path (and nonce unburned by the relay) it works.
    original = _deliver(api, captured, "/")
    assert original.status_code == 200, original.text
    assert victim in original.text


def _apsara(api: Api, path_action: str, params: dict[str, str], *, signed_path: str) -> httpx.Response:
    response: httpx.Response = api.client.post(
        f"/apsara/route/Vpc/{path_action}", params=signed_query("POST", params, path=signed_path)
    )
    return response


def test_what_the_apsara_route_accepts(api: Api) -> None:
    here = "/apsara/route/Vpc/DescribeVpcs"
    region = {"RegionId": REGION}
    # The rule: the string to sign names the requested path ...
    assert _apsara(api, "DescribeVpcs", region, signed_path=here).status_code == 200
    # ... or "/" with a signed Action equal to the path's action.
    same_action = {**region, "Action": "DescribeVpcs"}
    assert _apsara(api, "DescribeVpcs", same_action, signed_path="/").status_code == 200
    # Anything else is refused.
    refused = [
        _apsara(api, "DescribeVpcs", region, signed_path="/"),  # "/" without Action
        _apsara(api, "DescribeVpcs", {**region, "Action": "DeleteVpc"}, signed_path="/"),
        _apsara(api, "DescribeVpcs", region, signed_path="/apsara/route/Vpc/DescribeVpnGateways"),
        _apsara(api, "DescribeVpcs", region, signed_path="/apsara/route/Vpc/describevpcs"),
    ]
    for response in refused:
        assert (response.status_code, response.json()["Code"]) == (400, "SignatureDoesNotMatch"), (
            response.text
        )
    # The server's string to sign (in the message) names the path.
    assert "server string to sign is:POST&%2Fapsara%2Froute%2FVpc%2FDescribeVpcs&" in refused[0].text
    # The official SDKs' route is unchanged: "/" with the signed Action.
    rpc = api.client.post("/", params=signed_query("POST", {**same_action, "Version": "2016-04-28"}))
    assert rpc.status_code == 200, rpc.text


# --------------------------------------------------------------------------- the documented example

EXAMPLE_SECRET = "testsecret"
EXAMPLE_PATH = "/apsara/route/Vpc/DescribeVpcs"


def _example() -> dict[str, str]:
    return sign_rpc_v1(
        "POST",
        {"RegionId": "cn-qingdao-env66-d01"},
        "testid",
        EXAMPLE_SECRET,
        nonce="4b8fa3ab9c1c4d2e",
        timestamp=datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC),
        path=EXAMPLE_PATH,
    )


def _example_request(path: str, signed: dict[str, str]) -> IncomingRequest:
    return IncomingRequest("POST", path, tuple(signed.items()), (), {}, b"", action=path.rsplit("/", 1)[-1])


def test_the_worked_example_in_docs_security_md_is_what_the_code_computes() -> None:
    signed = _example()
    request = _example_request(EXAMPLE_PATH, signed)
    doc = DOCS.read_text()
    section = doc[doc.index("### Worked example") :]
    string = re.search(r"String to sign:\n\n```\n(.+?)\n```", section, re.S)
    signature = re.search(r"Signature: `([^`]+)`", section)
    assert string is not None and signature is not None, "docs/security.md lost its worked example"
    assert string.group(1) == string_to_sign(request)
    assert signature.group(1) == signed["Signature"]
    for key, value in signed.items():
        if key != "Signature":
            assert f"`{key}={value}`" in section, key
    creds = read_credentials(request)
    assert creds is not None
    verify(request, creds, EXAMPLE_SECRET)
    # The same bytes sent to another action's path do not verify.
    with pytest.raises(BadRequest) as refused:
        verify(_example_request("/apsara/route/Vpc/DeleteVpc", signed), creds, EXAMPLE_SECRET)
    assert refused.value.code == "SignatureDoesNotMatch"
