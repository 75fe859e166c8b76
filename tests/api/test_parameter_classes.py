"""Every public parameter of every implemented action is in exactly one class (implemented,
no-op, refused, ignored), docs/api.md's table is the declarations', and a refused parameter
changes nothing, through the real signed API on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Api, build_world, connection_params
from tests.support.sdk_models import request_model, wire_names
from vpngw import error_codes
from vpngw.actions.framework import COMMON, GIVEN, parameter_class
from vpngw.actions.parameter_table import rewritten
from vpngw.actions.registry import ACTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
#: vpngw's own actions, which the public API does not have (docs/api.md, extensions).
EXTENSIONS = {"DescribeVpnConnectionTraffic", "DescribeNodes"}


def test_every_sdk_parameter_of_every_action_is_classified() -> None:
    unclassified: list[str] = []
    walked = 0
    for name, action in ACTIONS.items():
        if request_model(name) is None:
            assert name in EXTENSIONS, f"{name} is neither in the official SDK nor a documented extension"
            continue
        for wire in wire_names(name):
            walked += 1
            if parameter_class(action.params, wire) is None:
                unclassified.append(f"{name}.{wire}")
    assert walked > 200  # the walk really reached the models (nested lists included)
    assert not unclassified, f"public parameters in no class: {unclassified}"


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_the_classes_do_not_overlap(name: str) -> None:
    model = ACTIONS[name].params
    declared = {field.alias or key for key, field in model.model_fields.items()}
    assert set(model.NO_OP) <= declared, "a no-op is validated, so its field is declared"
    assert not set(model.NO_OP) & set(model.REFUSED)
    for wire, refused in model.REFUSED.items():
        # Refused whatever the value: not declared (nothing could read it); refused at one
        # value (a switch at "on"): declared, so its other values are validated.
        assert (wire in declared) == (refused.when is not GIVEN), wire
        assert refused.code in error_codes.DOCUMENTED, refused.code
    assert not declared & (COMMON - {"RegionId"})


def test_docs_api_md_table_is_the_declarations() -> None:
    document = DOCS.read_text()
    assert rewritten(document) == document, (
        "docs/api.md's parameter table is stale: python -m vpngw.actions.parameter_table --write docs/api.md"
    )


def _refused_cases() -> list[tuple[str, str, str, str]]:
    """(action, wire name as sent, value, expected code) for every refusal of the SDK's models."""
    cases = []
    for name, action in ACTIONS.items():
        if request_model(name) is None:
            continue
        for wire in wire_names(name):
            head = wire.split(".", 1)[0]
            refused = action.params.REFUSED.get(wire) or action.params.REFUSED.get(head)
            if refused is None:
                continue
            value = "x" if refused.when is GIVEN else str(refused.when)
            cases.append((name, wire.replace(".N", ".1"), value, refused.code))
    return cases


def _snapshot(api: Api) -> list[dict[str, Any]]:
    shots = []
    for action in (
        "DescribeVpcs",
        "DescribeVpnGateways",
        "DescribeCustomerGateways",
        "DescribeVpnConnections",
    ):
        body = api.ok(action, PageSize=50)
        body.pop("RequestId")
        shots.append(body)
    return shots


def test_each_refused_parameter_is_refused_and_changes_nothing(api: Api) -> None:
    world = build_world(api)
    vco = api.ok("CreateVpnConnection", **connection_params(world))["VpnConnectionId"]
    empty_vpc = api.ok("CreateVpc", CidrBlock="192.168.0.0/16")["VpcId"]
    valid: dict[str, dict[str, Any]] = {
        "CreateVpc": {"CidrBlock": "10.0.0.0/8"},
        "DeleteVpc": {"VpcId": empty_vpc},
        "CreateVpnGateway": {"VpcId": world.vpc_id, "Bandwidth": 10},
        "CreateCustomerGateway": {"IpAddress": "198.19.0.99"},
        "CreateVpnConnection": connection_params(
            world, LocalSubnet="10.2.0.0/24", RemoteSubnet="10.30.0.0/24"
        ),
        "ModifyVpnConnectionAttribute": {"VpnConnectionId": vco, "Name": "changed"},
    }
    before = _snapshot(api)
    cases = _refused_cases()
    assert len(cases) >= 20  # the walk reached the refusals (dual tunnels are no longer among them)
    for action, wire, value, code in cases:
        body = api.fails(action, 400, code, **valid.get(action, {}), **{wire: value})
        assert wire.split(".")[0] in body["Message"]
    assert _snapshot(api) == before
    # The same requests without the refused parameter succeed: the refusal was the only fault.
    for action in valid:
        if action != "DeleteVpc":
            api.ok(action, **valid[action])


def test_switches_at_off_and_billing_fields_are_accepted_and_checked(api: Api) -> None:
    world = build_world(api)
    gateway = api.ok(
        "CreateVpnGateway",
        VpcId=world.vpc_id,
        Bandwidth=10,
        EnableSsl="false",
        AutoPay="true",
        SslConnections=5,
        InstanceChargeType="POSTPAY",
        Period=1,
    )["VpnGatewayId"]
    assert (
        api.ok("DescribeVpnGateway", VpnGatewayId=gateway, IncludeReservationData="true")["SslVpn"]
        == "disable"
    )
    api.fails(
        "CreateVpnGateway", 400, "InvalidParameter.AutoPay", VpcId=world.vpc_id, Bandwidth=10, AutoPay="maybe"
    )
    api.fails(
        "CreateVpnGateway", 400, "InvalidParameter.EnableSsl", VpcId=world.vpc_id, Bandwidth=10, EnableSsl="2"
    )
    vco = api.ok("CreateVpnConnection", **connection_params(world, EnableTunnelsBgp="False"))[
        "VpnConnectionId"
    ]
    api.ok("ModifyVpnConnectionAttribute", VpnConnectionId=vco, EnableTunnelsBgp="false")
    api.fails("DescribeRegions", 400, "InvalidParameter.ProductType", ProductType="ECS")
    assert api.ok("DescribeVpcs", IsDefault="true")["TotalCount"] == 0
    assert api.ok("DescribeVpcs", IsDefault="false")["TotalCount"] == 1
    assert api.ok("DescribeVpnGateways", BusinessStatus="FinancialLocked")["TotalCount"] == 0
    assert api.ok("DescribeVpnGateways", BusinessStatus="Normal")["TotalCount"] == 2


def test_dry_run_is_implemented_wherever_the_public_request_has_it() -> None:
    with_dry_run = [name for name in ACTIONS if request_model(name) and "DryRun" in wire_names(name)]
    assert sorted(with_dry_run) == ["CreateVpc", "CreateVpnConnection", "DeleteVpc", "DescribeVpcs"]
    for name in with_dry_run:
        model = ACTIONS[name].params
        assert "dry_run" in model.model_fields and parameter_class(model, "DryRun") == ("implemented", "")


def test_the_legacy_sdks_parameters_are_classified_too() -> None:
    """aliyun-python-sdk-vpc's request classes name their parameters in add_*_param calls
    (lists as ``'Tags.' + str(n) + '.Key'``): every one is in a class as well."""
    import importlib
    import inspect
    import re

    unclassified: list[str] = []
    walked = 0
    for name, action in ACTIONS.items():
        if name in EXTENSIONS:
            continue
        module = importlib.import_module(f"aliyunsdkvpc.request.v20160428.{name}Request")
        source = inspect.getsource(getattr(module, f"{name}Request"))
        names = set(re.findall(r"add_(?:query|body)_params?\('([A-Za-z0-9]+)'", source))
        names |= set(re.findall(r"add_(?:query|body)_params?\('([A-Za-z0-9]+)\.' \+ str", source))
        walked += len(names)
        unclassified += [f"{name}.{n}" for n in sorted(names) if parameter_class(action.params, n) is None]
    assert walked > 150
    assert not unclassified, unclassified
