"""DryRun: every check of the real call runs, nothing is written, the answer is the public
API's 400 DryRunOperation, or the error the real call would give (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses

from tests.support.api import Api, build_world, connection_params
from vpngw.config import Settings


def _count(api: Api, action: str) -> int:
    return int(api.ok(action, PageSize=50)["TotalCount"])


def test_a_dry_run_create_answers_dry_run_operation_and_makes_nothing(api: Api) -> None:
    world = build_world(api)
    body = api.fails("CreateVpnConnection", 400, "DryRunOperation", **connection_params(world, DryRun="true"))
    assert body["Message"] == "Request validation has been passed with DryRun flag set."
    assert _count(api, "DescribeVpnConnections") == 0
    api.fails("CreateVpc", 400, "DryRunOperation", DryRun="True")
    assert _count(api, "DescribeVpcs") == 1
    # DryRun=false is the real call.
    api.ok("CreateVpnConnection", **connection_params(world, DryRun="false"))
    assert _count(api, "DescribeVpnConnections") == 1


def test_a_dry_run_gives_the_real_error(api: Api) -> None:
    world = build_world(api)
    api.fails(
        "CreateVpnConnection",
        404,
        "InvalidCustomerGatewayInstanceId.NotFound",
        **connection_params(world, DryRun="true", CustomerGatewayId="cgw-nothere"),
    )
    api.fails(
        "CreateVpnConnection",
        400,
        "IllegalParam.LocalSubnet",
        **connection_params(world, DryRun="true", LocalSubnet="10.0.0.1/24"),
    )
    api.ok("CreateVpnConnection", **connection_params(world))
    # The conflict check runs too: the same selectors on the same gateway.
    api.fails(
        "CreateVpnConnection", 400, "VpnConnection.SubnetConflict", **connection_params(world, DryRun="true")
    )
    # DeleteVpc: the dependency check runs, and a passing dry run deletes nothing.
    api.fails("DeleteVpc", 400, "DependencyViolation.VpnGateway", VpcId=world.vpc_id, DryRun="true")
    empty = api.ok("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    api.fails("DeleteVpc", 400, "DryRunOperation", VpcId=empty, DryRun="true")
    assert api.ok("DescribeVpcs", VpcId=empty)["TotalCount"] == 1
    api.fails("DescribeVpcs", 400, "DryRunOperation", DryRun="true")
    api.fails("DescribeVpcs", 400, "InvalidParameter.DryRun", DryRun="perhaps")


def test_a_dry_run_runs_the_quota_check(settings: Settings) -> None:
    from starlette.testclient import TestClient

    from tests.conftest import prepared
    from vpngw.api.app import build_app

    limited = dataclasses.replace(settings, max_connections_per_gateway=1)
    db, authenticator = prepared(limited)
    with TestClient(build_app(db, limited, authenticator), raise_server_exceptions=False) as client:
        api = Api(client)
        world = build_world(api)
        api.fails("CreateVpnConnection", 400, "DryRunOperation", **connection_params(world, DryRun="true"))
        api.ok("CreateVpnConnection", **connection_params(world))
        api.fails(
            "CreateVpnConnection",
            400,
            "Resource.QuotaFull",
            **connection_params(world, DryRun="true", LocalSubnet="10.9.0.0/24", RemoteSubnet="10.99.0.0/24"),
        )
    db.dispose()


def test_a_dry_run_records_no_client_token(api: Api) -> None:
    world = build_world(api)
    params = connection_params(world, ClientToken="dry-then-real")
    api.fails("CreateVpnConnection", 400, "DryRunOperation", **params, DryRun="true")
    created = api.ok("CreateVpnConnection", **params)["VpnConnectionId"]
    assert api.ok("CreateVpnConnection", **params)["VpnConnectionId"] == created
    assert _count(api, "DescribeVpnConnections") == 1
