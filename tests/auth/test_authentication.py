"""Signed requests end to end: every forged, replayed or foreign request is refused with
its documented code, and one tenant never sees another."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.conftest import make_sealer, prepared
from tests.support.api import (
    REGION,
    TEST_KEY_ID,
    TEST_KEY_SECRET,
    Api,
    build_world,
    connection_params,
    signed_query,
)
from vpngw import accounts
from vpngw.api.app import build_app
from vpngw.auth.authenticator import Authenticator
from vpngw.auth.signatures import IncomingRequest, format_timestamp, sign_rpc_v1, string_to_sign
from vpngw.config import Settings
from vpngw.store.engine import Database

NOW = datetime.datetime.now


@pytest.fixture
def stack(settings: Settings) -> Iterator[tuple[Database, Authenticator, TestClient]]:
    db, authenticator = prepared(settings)
    with TestClient(build_app(db, settings, authenticator), raise_server_exceptions=False) as client:
        yield db, authenticator, client
    db.dispose()


def _code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["Code"]


def _v1(
    params: dict[str, str],
    *,
    key_id: str = TEST_KEY_ID,
    secret: str = TEST_KEY_SECRET,
    when: datetime.datetime | None = None,
    nonce: str | None = None,
    path: str = "/",
) -> dict[str, str]:
    return sign_rpc_v1(
        "POST",
        params,
        key_id,
        secret,
        nonce=nonce or uuid.uuid4().hex,
        timestamp=when or datetime.datetime.now(datetime.UTC),
        path=path,
    )


DESCRIBE = {"Action": "DescribeVpnConnections", "RegionId": REGION}


def test_refusals(stack: tuple[Database, Authenticator, TestClient]) -> None:
    db, authenticator, client = stack
    assert client.post("/", params=_v1(DESCRIBE)).status_code == 200
    unsigned = client.post("/", params=DESCRIBE)
    assert _code(unsigned) == (400, "MissingParameter.AccessKeyId")
    tampered = _v1(DESCRIBE) | {"RegionId": "cn-hangzhou"}
    assert _code(client.post("/", params=tampered)) == (400, "SignatureDoesNotMatch")
    wrong_secret = client.post("/", params=_v1(DESCRIBE, secret="not-the-secret"))
    assert _code(wrong_secret) == (400, "SignatureDoesNotMatch")
    assert "server string to sign is:POST&%2F&" in wrong_secret.json()["Message"]
    skewed = _v1(DESCRIBE, when=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20))
    assert _code(client.post("/", params=skewed)) == (400, "InvalidTimeStamp.Expired")
    unknown = client.post("/", params=_v1(DESCRIBE, key_id="LTAInobody"))
    assert _code(unknown) == (400, "InvalidAccessKeyId.NotFound")
    partial = {k: v for k, v in _v1(DESCRIBE).items() if k != "SignatureNonce"}
    assert _code(client.post("/", params=partial)) == (400, "MissingParameter.SignatureNonce")
    once = _v1(DESCRIBE)
    assert client.post("/", params=once).status_code == 200
    assert _code(client.post("/", params=once)) == (400, "SignatureNonceUsed")
    accounts.set_key_status(db, TEST_KEY_ID, "disabled")
    assert _code(client.post("/", params=_v1(DESCRIBE))) == (400, "InvalidAccessKeyId.Inactive")
    accounts.set_key_status(db, TEST_KEY_ID, "enabled")
    assert client.post("/", params=_v1(DESCRIBE)).status_code == 200


def test_a_key_changed_after_this_process_checked_it_is_refused_at_once(
    settings: Settings, stack: tuple[Database, Authenticator, TestClient]
) -> None:
    """The server keeps a copy of each AccessKey it checked (no read per request) and reads
    the key again in the transaction that claims the nonce: a key disabled, given another
    secret or deleted since (by the CLI, another process) is refused by the next request,
    write or read, which changes nothing and records no nonce."""
    db, authenticator, client = stack
    create = {"Action": "CreateVpc", "RegionId": REGION, "CidrBlock": "10.0.0.0/8"}
    assert client.post("/", params=_v1(create)).status_code == 200  # the key is kept now
    accounts.set_key_status(db, TEST_KEY_ID, "disabled")  # as `vpngw account` does, elsewhere
    nonce = uuid.uuid4().hex
    assert _code(client.post("/", params=_v1(create, nonce=nonce))) == (400, "InvalidAccessKeyId.Inactive")
    assert _code(client.post("/", params=_v1(DESCRIBE))) == (400, "InvalidAccessKeyId.Inactive")
    accounts.set_key_status(db, TEST_KEY_ID, "enabled")
    assert client.post("/", params=_v1(create, nonce=nonce)).status_code == 200  # the nonce was not burnt
    vpcs = client.post("/", params=_v1({"Action": "DescribeVpcs", "RegionId": REGION})).json()
    assert vpcs["TotalCount"] == 2  # the refused create wrote nothing
    accounts.ensure_key(db, authenticator.sealer, settings.default_account_id, TEST_KEY_ID, "another-secret")
    assert _code(client.post("/", params=_v1(create))) == (400, "SignatureDoesNotMatch")
    assert client.post("/", params=_v1(DESCRIBE, secret="another-secret")).status_code == 200
    accounts.delete_key(db, TEST_KEY_ID)
    assert _code(client.post("/", params=_v1(create, secret="another-secret"))) == (
        400,
        "InvalidAccessKeyId.NotFound",
    )
    assert _code(client.post("/", params=_v1(DESCRIBE, secret="another-secret"))) == (
        400,
        "InvalidAccessKeyId.NotFound",
    )


def test_a_forged_request_does_not_burn_its_nonce(stack: tuple[Database, Authenticator, TestClient]) -> None:
    _db, _auth, client = stack
    nonce = uuid.uuid4().hex
    forged = client.post("/", params=_v1(DESCRIBE, secret="wrong", nonce=nonce))
    assert _code(forged) == (400, "SignatureDoesNotMatch")
    assert client.post("/", params=_v1(DESCRIBE, nonce=nonce)).status_code == 200


def test_json_body_parameters_are_covered_by_the_signature(
    stack: tuple[Database, Authenticator, TestClient],
) -> None:
    _db, _auth, client = stack
    api = Api(client)
    world = build_world(api)
    body = {"RegionId": REGION, **connection_params(world), "IkeConfig": {"IkeVersion": "ikev2"}}
    good = api.apsara("CreateVpnConnection", json=body)
    assert good.status_code == 200, good.text
    # Sign one body, send another: refused.
    path = "/apsara/route/Vpc/CreateVpnConnection"
    signed_body = {"RegionId": REGION, **connection_params(world, LocalSubnet="10.50.0.0/24")}
    signature = {
        k: v
        for k, v in _v1(signed_body, path=path).items()
        if k
        in ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp")
    }
    forged = client.post(
        path,
        params=signature,
        json={"RegionId": REGION, **connection_params(world, LocalSubnet="10.60.0.0/24")},
    )
    assert _code(forged) == (400, "SignatureDoesNotMatch")


def _acs3(
    client: TestClient, query: dict[str, str], body: bytes, *, send_body: bytes | None = None
) -> httpx.Response:
    """An ACS3-HMAC-SHA256 request built by hand, as the current SDK builds it."""
    headers = {
        "host": "testserver",
        "content-type": "application/x-www-form-urlencoded",
        "x-acs-action": "DescribeVpnConnections",
        "x-acs-version": "2016-04-28",
        "x-acs-date": format_timestamp(datetime.datetime.now(datetime.UTC)),
        "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    signed_names = ";".join(sorted(headers))
    unsigned = IncomingRequest(
        "POST",
        "/",
        tuple(query.items()),
        (),
        {
            **headers,
            "authorization": f"ACS3-HMAC-SHA256 Credential={TEST_KEY_ID},SignedHeaders={signed_names},Signature=x",
        },
        body,
    )
    digest = hmac.new(TEST_KEY_SECRET.encode(), string_to_sign(unsigned).encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={TEST_KEY_ID},SignedHeaders={signed_names},Signature={digest}"
    )
    return client.post("/", params=query, headers=headers, content=body if send_body is None else send_body)


def test_acs3_signature_and_a_tampered_body(stack: tuple[Database, Authenticator, TestClient]) -> None:
    _db, _auth, client = stack
    body = b"PageSize=5"
    ok = _acs3(client, {"RegionId": REGION}, body)
    assert ok.status_code == 200 and ok.json()["PageSize"] == 5, ok.text
    tampered = _acs3(client, {"RegionId": REGION}, body, send_body=b"PageSize=7")
    assert _code(tampered) == (400, "SignatureDoesNotMatch")


def test_nonces_are_shared_by_server_processes_of_one_database(settings: Settings) -> None:
    """Two servers (two engines, as two processes would have) on one database."""
    first_db, first_auth = prepared(settings)
    second_db = Database(settings.db_url)
    second_auth = Authenticator(second_db, make_sealer())
    once = _v1(DESCRIBE)
    with (
        TestClient(build_app(first_db, settings, first_auth)) as one,
        TestClient(build_app(second_db, settings, second_auth)) as two,
    ):
        assert one.post("/", params=once).status_code == 200
        assert _code(two.post("/", params=once)) == (400, "SignatureNonceUsed")
    first_db.dispose()
    second_db.dispose()


def test_one_tenant_never_sees_another(stack: tuple[Database, Authenticator, TestClient]) -> None:
    db, authenticator, client = stack
    other = accounts.create_account(db, authenticator.sealer, "tenant-b")
    mine = Api(client)
    world = build_world(mine)
    vco = mine.ok("CreateVpnConnection", **connection_params(world, ClientToken="shared-token"))[
        "VpnConnectionId"
    ]

    def theirs(action: str, **params: Any) -> httpx.Response:
        query = {"Action": action, "RegionId": REGION, **{k: str(v) for k, v in params.items()}}
        return client.post(
            "/",
            params=signed_query("POST", query, key_id=other.access_key_id, secret=other.access_key_secret),
        )

    not_found = {
        "DescribeVpnConnection": ({"VpnConnectionId": vco}, "InvalidVpnConnectionInstanceId.NotFound"),
        "ModifyVpnConnectionAttribute": (
            {"VpnConnectionId": vco, "Name": "stolen"},
            "InvalidVpnConnectionInstanceId.NotFound",
        ),
        "DeleteVpnConnection": ({"VpnConnectionId": vco}, "InvalidVpnConnectionInstanceId.NotFound"),
        "DownloadVpnConnectionConfig": ({"VpnConnectionId": vco}, "InvalidVpnConnectionInstanceId.NotFound"),
        "DescribeVpnConnectionLogs": ({"VpnConnectionId": vco}, "InvalidVpnConnectionInstanceId.NotFound"),
        "DescribeVpnRouteEntries": (
            {"VpnGatewayId": world.vpn_gateway_id},
            "InvalidVpnGatewayInstanceId.NotFound",
        ),
        "DescribeVpnGateway": (
            {"VpnGatewayId": world.vpn_gateway_id},
            "InvalidVpnGatewayInstanceId.NotFound",
        ),
        "ModifyVpnGatewayAttribute": (
            {"VpnGatewayId": world.vpn_gateway_id, "Name": "x1"},
            "InvalidVpnGatewayInstanceId.NotFound",
        ),
        "DeleteVpnGateway": ({"VpnGatewayId": world.vpn_gateway_id}, "InvalidVpnGatewayInstanceId.NotFound"),
        "DescribeCustomerGateway": (
            {"CustomerGatewayId": world.customer_gateway_id},
            "InvalidCustomerGatewayInstanceId.NotFound",
        ),
        "ModifyCustomerGatewayAttribute": (
            {"CustomerGatewayId": world.customer_gateway_id, "Name": "x1"},
            "InvalidCustomerGatewayInstanceId.NotFound",
        ),
        "DeleteCustomerGateway": (
            {"CustomerGatewayId": world.customer_gateway_id},
            "InvalidCustomerGatewayInstanceId.NotFound",
        ),
        "DeleteVpc": ({"VpcId": world.vpc_id}, "InvalidVpcId.NotFound"),
        "CreateVpnGateway": ({"VpcId": world.vpc_id, "Bandwidth": 5}, "InvalidVpcId.NotFound"),
        "CreateVpnConnection": (
            connection_params(world, LocalSubnet="10.70.0.0/24"),
            "InvalidVpnGatewayInstanceId.NotFound",
        ),
    }
    for action, (params, code) in not_found.items():
        foreign = theirs(action, **params)
        never = theirs(
            action,
            **{
                k: (
                    v[:4] + "neverexisted"
                    if k.endswith("Id") and v == params.get(k) and k != "RegionId"
                    else v
                )
                for k, v in params.items()
            },
        )
        assert _code(foreign) == (404, code), (action, foreign.text)
        assert _code(never) == (404, code), (action, never.text)
    for listing, key in (
        ("DescribeVpnConnections", "VpnConnections"),
        ("DescribeVpnGateways", "VpnGateways"),
        ("DescribeCustomerGateways", "CustomerGateways"),
        ("DescribeVpcs", "Vpcs"),
    ):
        body = theirs(listing).json()
        assert body["TotalCount"] == 0 and not next(iter(body[key].values())), (listing, body)
    # ClientTokens are per account: the same token is a fresh request for them.
    their_world_vpc = theirs("CreateVpc", ClientToken="shared-token").json()["VpcId"]
    assert their_world_vpc != world.vpc_id
    assert mine.ok("DescribeVpnConnection", VpnConnectionId=vco)["Name"] == vco


def test_no_secret_in_logs_error_bodies_or_the_database(
    stack: tuple[Database, Authenticator, TestClient], caplog: pytest.LogCaptureFixture, db_url: str
) -> None:
    _db, _auth, client = stack
    caplog.set_level(logging.DEBUG)
    api = Api(client)
    world = build_world(api)
    psk = "Sup3r-Secret-PSK-value"
    bodies = []
    created = api.rpc(
        "CreateVpnConnection", RegionId=REGION, **connection_params(world, IkeConfig=json.dumps({"Psk": psk}))
    )
    bodies.append(created.text)
    vco = created.json()["VpnConnectionId"]
    bodies.append(
        api.rpc(
            "ModifyVpnConnectionAttribute",
            RegionId=REGION,
            VpnConnectionId=vco,
            ClientToken="m1",
            IkeConfig=json.dumps({"Psk": psk + "2"}),
        ).text
    )
    # Errors that involve the secrets: a bad Psk, a wrong signature over a Psk, a wrong AccessKey secret.
    bad = api.rpc(
        "CreateVpnConnection",
        RegionId=REGION,
        **connection_params(world, IkeConfig=json.dumps({"Psk": psk + " x"})),
    )
    assert bad.status_code == 400
    bodies.append(bad.text)
    forged = _v1(
        {
            "Action": "ModifyVpnConnectionAttribute",
            "RegionId": REGION,
            "VpnConnectionId": vco,
            "IkeConfig": json.dumps({"Psk": psk}),
        },
        secret="wrong-secret",
    )
    response = client.post("/", params=forged)
    assert _code(response) == (400, "SignatureDoesNotMatch")
    bodies.append(response.text)
    errors_text = "\n".join(bodies[2:])
    # The server's log lines (the test's own HTTP client logs its URLs, Psk included: that is the caller's log).
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logs = "\n".join(record.getMessage() for record in server_records)
    for secret in (psk, TEST_KEY_SECRET, "wrong-secret"):
        assert secret not in errors_text
        assert secret not in logs
    assert any(
        "CreateVpnConnection" in record.getMessage() for record in server_records
    )  # the access log ran
    if db_url.startswith("sqlite:///"):
        raw = b"".join(
            p.read_bytes() for p in Path(db_url.removeprefix("sqlite:///")).parent.glob("vpngw.db*")
        )
        assert raw, "the database file was read"
        for secret in (psk, psk + "2", TEST_KEY_SECRET):
            assert secret.encode() not in raw
