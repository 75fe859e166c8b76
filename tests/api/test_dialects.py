"""The two wire dialects: the spec's Apsara route and the SDKs' RPC route."""

from __future__ import annotations

from typing import Any

from tests.support.api import REGION, Api, build_world, signature_params, signed_query

ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def _connection_body(api: Api) -> dict[str, Any]:
    world = build_world(api)
    return {
        "VpnGatewayId": world.vpn_gateway_id,
        "CustomerGatewayId": world.customer_gateway_id,
        "LocalSubnet": "10.1.1.0/24,10.1.2.0/24",
        "RemoteSubnet": "10.10.1.0/24,10.10.2.0/24",
    }


def test_apsara_route_with_json_body_and_lowercase_region(api: Api) -> None:
    body = {
        **_connection_body(api),
        "regionId": REGION,
        "version": "2016-01-01",
        "EffectImmediately": True,
        "IkeConfig": {"IkeVersion": "ikev2", "IkeLifetime": 3600},
        "HealthCheckConfig": '{"enable":"true","dip":"10.10.1.2","sip":"10.1.1.2","interval":"3","retry":"3"}',
    }
    response = api.apsara("CreateVpnConnection", json=body)
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["RequestID"] == created["RequestId"] and created["VpnConnectionId"].startswith("vco-")
    got = api.apsara(
        "DescribeVpnConnection", form={"RegionId": REGION, "VpnConnectionId": created["VpnConnectionId"]}
    ).json()
    assert got["EffectImmediately"] is True
    assert (got["IkeConfig"]["IkeVersion"], got["IkeConfig"]["IkeLifetime"]) == ("ikev2", 3600)
    assert got["VcoHealthCheck"]["Enable"] == "true"


def test_apsara_route_with_form_body_and_query(api: Api) -> None:
    body = {**_connection_body(api), "version": "2016-04-28"}
    query = {"RegionId": REGION}
    path = "/apsara/route/Vpc/CreateVpnConnection"
    response = api.client.post(
        path, params={**query, **signature_params("POST", {**query, **body}, path=path)}, data=body
    )
    assert response.status_code == 200, response.text


def test_apsara_errors_carry_the_spec_failure_fields(api: Api) -> None:
    response = api.apsara("CreateVpnConnection", json={"regionId": REGION})
    body = response.json()
    assert response.status_code == 400
    assert ERROR_KEYS <= body.keys()
    assert body["Code"] == "MissingParameter.VpnGatewayId"
    assert body["resultCode"] == 400 and body["resultMsg"] == body["Message"] and body["result"] is None


def test_region_spellings(api: Api) -> None:
    both_same = api.apsara("DescribeVpnConnections", json={"RegionId": REGION, "regionId": REGION})
    assert both_same.status_code == 200
    differ = api.apsara("DescribeVpnConnections", json={"RegionId": REGION, "regionId": "cn-hangzhou"})
    assert (differ.status_code, differ.json()["Code"]) == (400, "InvalidParameter.RegionId")
    missing = api.apsara("DescribeVpnConnections", json={})
    assert (missing.status_code, missing.json()["Code"]) == (400, "MissingParameter.RegionId")


def test_versions(api: Api) -> None:
    bad = api.apsara("DescribeVpnConnections", json={"RegionId": REGION, "version": "2099-01-01"})
    assert (bad.status_code, bad.json()["Code"]) == (400, "InvalidVersion")
    rpc_bad = api.client.get(
        "/", params=signed_query("GET", {"Action": "DescribeRegions", "Version": "2016-01-01"})
    )
    assert (rpc_bad.status_code, rpc_bad.json()["Code"]) == (400, "InvalidVersion")


def test_rpc_merges_query_and_form_and_reads_action_header(api: Api) -> None:
    body = _connection_body(api)
    query = {"Action": "CreateVpnConnection", "Version": "2016-04-28", "RegionId": REGION}
    response = api.client.post(
        "/", params={**query, **signature_params("POST", {**query, **body})}, data=body
    )
    assert response.status_code == 200, response.text
    # The x-acs-action header names the action of an ACS3 request (which signs it; see
    # tests/auth/test_authentication.py). A v1 signature does not cover headers: a v1 request
    # whose action only the header names is refused, or a relay could pick any action.
    headers = {"x-acs-action": "DescribeVpnConnections", "x-acs-version": "2016-04-28"}
    by_header = api.client.post("/", params=signed_query("POST", {"RegionId": REGION}), headers=headers)
    assert (by_header.status_code, by_header.json()["Code"]) == (400, "IncompleteSignature")
    both = api.client.post(
        "/",
        params=signed_query("POST", {"Action": "DescribeVpnConnections", "RegionId": REGION}),
        headers=headers,
    )
    assert both.status_code == 200 and both.json()["TotalCount"] == 1
    get = api.client.get(
        "/", params=signed_query("GET", {"Action": "DescribeVpnConnections", "RegionId": REGION})
    )
    assert get.status_code == 200


def test_unknown_things_are_json_errors(api: Api) -> None:
    cases = [
        (
            api.client.post("/", params=signed_query("POST", {"Action": "CreateNothing"})),
            404,
            "InvalidAction.NotFound",
        ),
        (api.client.post("/"), 400, "MissingParameter.Action"),
        (
            api.client.post(
                "/apsara/route/Vpc/CreateNothing",
                params=signed_query("POST", {}, path="/apsara/route/Vpc/CreateNothing"),
            ),
            404,
            "InvalidAction.NotFound",
        ),
        (api.client.post("/", params={"Action": "DescribeRegions"}), 400, "MissingParameter.AccessKeyId"),
        (api.client.post("/apsara/route/Ecs/DescribeRegions"), 404, "InvalidProduct.NotFound"),
        (api.client.get("/elsewhere"), 404, "InvalidAction.NotFound"),
        (api.client.get("/apsara/route/Vpc/DescribeRegions"), 405, "UnsupportedHTTPMethod"),
        (
            api.client.post(
                "/apsara/route/Vpc/DescribeRegions",
                content=b"{nope",
                headers={"content-type": "application/json"},
            ),
            400,
            "InvalidBody",
        ),
        (
            api.client.post(
                "/apsara/route/Vpc/DescribeRegions",
                content=b"[1]",
                headers={"content-type": "application/json"},
            ),
            400,
            "InvalidBody",
        ),
        (
            api.client.post("/apsara/route/Vpc/DescribeRegions", content=b"x" * (1024 * 1024 + 1)),
            413,
            "InvalidBody.TooLarge",
        ),
    ]
    for response, status, code in cases:
        body = response.json()
        assert (response.status_code, body["Code"]) == (status, code), response.text
        assert ERROR_KEYS <= body.keys() and body["Message"]
        assert response.headers["content-type"].startswith("application/json")


def test_empty_values_count_as_not_given(api: Api) -> None:
    # The legacy SDK signs and sends empty parameters (SignatureType=).
    response = api.rpc(
        "DescribeVpnConnections", RegionId=REGION, SignatureType="", PageSize="", VpnGatewayId=""
    )
    assert response.status_code == 200 and response.json()["PageSize"] == 10


def test_the_api_routes_edges_answer_as_the_starlette_routes_did(api: Api) -> None:
    """The API routes are served ahead of Starlette's router (api.app.ApiFront): the same
    paths and methods reach them, the rest gets the router's JSON 404/405 as before."""
    client = api.client
    head = client.head("/", params=signed_query("HEAD", {"Action": "DescribeRegions"}))
    assert head.status_code == 200 and head.content == b""  # GET's route serves HEAD too
    cases = [
        (client.put("/"), 405, "UnsupportedHTTPMethod"),
        (client.delete("/apsara/route/Vpc/DescribeRegions"), 405, "UnsupportedHTTPMethod"),
        (client.head("/apsara/route/Vpc/DescribeRegions"), 405, None),
        (client.post("/apsara/route/Vpc/DescribeRegions/"), 404, "InvalidAction.NotFound"),
        (client.post("/apsara/route/Vpc/DescribeRegions/more"), 404, "InvalidAction.NotFound"),
        (client.post("/apsara/route/Vpc"), 404, "InvalidAction.NotFound"),
        (client.post("/apsara/route//DescribeRegions"), 404, "InvalidAction.NotFound"),
        (client.get("/index.html/"), 404, "InvalidAction.NotFound"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (response.request.url, response.text)
        if code is not None:
            assert response.json()["Code"] == code and ERROR_KEYS <= response.json().keys()
    apsara = client.post(
        "/apsara/route/vpc/DescribeRegions",  # the product's case does not matter
        params=signed_query("POST", {"RegionId": REGION}, path="/apsara/route/vpc/DescribeRegions"),
    )
    assert apsara.status_code == 200, apsara.text
