"""render_connection / render_shared_key: golden files plus the rules behind them.

Golden files hold ``json.dumps(output, indent=2, sort_keys=True)`` plus a newline and are
compared byte for byte. After an intended change, regenerate them with
``VPNGW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/dataplane/test_render.py`` and
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from vpngw.dataplane.errors import InvalidSpec
from vpngw.dataplane.spec.desired import ConnectionSpec
from vpngw.dataplane.spec.render import (
    child_names,
    child_reqids,
    render_connection,
    render_shared_key,
    shared_key_id,
)

from .specs import TEST_PSK, connection, ike, ipsec

GOLDEN = Path(__file__).parent / "golden"

CASES: dict[str, ConnectionSpec] = {
    "ikev1_main_2x2": connection(
        name="vco-ikev1main2x2",
        local_subnets=("10.2.0.0/16", "10.1.0.0/16"),
        remote_subnets=("192.168.20.0/24", "192.168.3.0/24"),
        ike=ike(version="ikev1", mode="main", local_id="198.18.10.1", remote_id="198.18.20.1"),
    ),
    "ikev1_aggressive_fqdn": connection(
        name="vco-ikev1aggrfqdn",
        ike=ike(
            version="ikev1",
            mode="aggressive",
            enc_alg="3des",
            auth_alg="md5",
            pfs="group1",
            lifetime=28800,
            local_id="gw.vpngw.example",
            remote_id="cpe.customer.example",
        ),
        ipsec=ipsec(enc_alg="3des", auth_alg="md5", pfs="group1", lifetime=3600),
        effect_immediately=False,
    ),
    "ikev2_several_subnets": connection(
        name="vco-ikev2multi",
        local_subnets=("10.10.0.0/16", "10.2.0.0/24", "172.16.0.0/12"),
        remote_subnets=("192.168.100.0/24", "192.168.2.0/24"),
        ike=ike(enc_alg="aes256", auth_alg="sha512", pfs="group14", lifetime=86400),
        ipsec=ipsec(enc_alg="aes192", auth_alg="sha384", pfs="group24", lifetime=3600),
    ),
    "ipsec_pfs_disabled": connection(
        name="vco-pfsdisabled",
        ike=ike(enc_alg="aes", auth_alg="sha256", pfs="group5"),
        ipsec=ipsec(enc_alg="des", auth_alg="sha256", pfs="disabled", lifetime=1800),
    ),
    "dpd_and_natt_off": connection(
        name="vco-dpdnattoff",
        ike=ike(version="ikev1"),
        enable_dpd=False,
        enable_nat_traversal=False,
        effect_immediately=False,
    ),
    "lifetimes_zero": connection(
        name="vco-lifetimezero",
        ike=ike(lifetime=0),
        ipsec=ipsec(lifetime=0),
    ),
}


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, indent=2, sort_keys=True) + "\n"


def _check_golden(path: Path, message: dict[str, Any]) -> None:
    text = _dumps(message)
    if os.environ.get("VPNGW_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path.name} is missing; run with VPNGW_UPDATE_GOLDEN=1"
    assert path.read_text() == text, f"{path.name} differs; if intended, run with VPNGW_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_load_conn_golden(case: str) -> None:
    _check_golden(GOLDEN / f"{case}.json", render_connection(CASES[case]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_load_shared_golden(case: str) -> None:
    _check_golden(GOLDEN / f"{case}.shared.json", render_shared_key(CASES[case]))


def test_no_stale_golden_files() -> None:
    expected = {f"{case}.json" for case in CASES} | {f"{case}.shared.json" for case in CASES}
    assert {p.name for p in GOLDEN.glob("*.json")} == expected


def _wire_values(value: object) -> bool:
    """True if value only holds what VICI carries: str, lists of str, nested dicts."""
    if isinstance(value, str):
        return True
    if isinstance(value, list):
        return all(isinstance(v, str) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _wire_values(v) for k, v in value.items())
    return False


@pytest.mark.parametrize("case", sorted(CASES))
def test_output_is_wire_strings_and_the_conn_holds_no_psk(case: str) -> None:
    spec = CASES[case]
    conn = render_connection(spec)
    assert _wire_values(conn) and _wire_values(render_shared_key(spec))
    assert TEST_PSK not in json.dumps(conn)
    assert list(conn) == [spec.name]


def test_ikev2_has_one_child_named_like_the_connection() -> None:
    spec = CASES["ikev2_several_subnets"]
    children = render_connection(spec)[spec.name]["children"]
    assert list(children) == [spec.name] == list(child_names(spec))
    assert children[spec.name]["local_ts"] == ["10.2.0.0/24", "10.10.0.0/16", "172.16.0.0/12"]
    assert children[spec.name]["remote_ts"] == ["192.168.2.0/24", "192.168.100.0/24"]


def test_ikev1_has_one_child_per_subnet_pair_in_sorted_order() -> None:
    spec = CASES["ikev1_main_2x2"]
    children = render_connection(spec)[spec.name]["children"]
    name = spec.name
    assert list(children) == [f"{name}-1", f"{name}-2", f"{name}-3", f"{name}-4"] == list(child_names(spec))
    pairs = [(c["local_ts"], c["remote_ts"]) for c in children.values()]
    assert pairs == [
        (["10.1.0.0/16"], ["192.168.3.0/24"]),
        (["10.1.0.0/16"], ["192.168.20.0/24"]),
        (["10.2.0.0/16"], ["192.168.3.0/24"]),
        (["10.2.0.0/16"], ["192.168.20.0/24"]),
    ]


def test_input_order_and_duplicates_do_not_change_the_output() -> None:
    a = connection(local_subnets=("10.1.0.0/16", "10.0.0.0/16"), remote_subnets=("192.168.1.0/24",))
    b = connection(
        local_subnets=("10.0.0.0/16", "10.1.0.0/16", "10.0.0.0/16"), remote_subnets=("192.168.1.0/24",)
    )
    assert _dumps(render_connection(a)) == _dumps(render_connection(b))


@pytest.mark.parametrize(
    ("lifetime", "rekey", "margin"),
    [
        (86400, 77760, 8640),
        (3600, 3240, 360),
        (61, 55, 6),
        (60, 54, 6),
        (59, 54, 6),  # raised to MIN_LIFETIME
        (1, 54, 6),
        (0, 0, 0),  # never rekey, never expire from this side
    ],
)
def test_lifetimes(lifetime: int, rekey: int, margin: int) -> None:
    spec = connection(ike=ike(lifetime=lifetime), ipsec=ipsec(lifetime=lifetime))
    conn = render_connection(spec)[spec.name]
    assert (conn["rekey_time"], conn["over_time"], conn["rand_time"]) == (
        f"{rekey}s",
        f"{margin}s",
        f"{margin}s",
    )
    child = conn["children"][spec.name]
    assert (child["rekey_time"], child["life_time"], child["rand_time"]) == (
        f"{rekey}s",
        f"{rekey + margin}s",
        f"{margin}s",
    )


@pytest.mark.parametrize(
    ("version", "mode", "aggressive"),
    [
        ("ikev1", "main", "no"),
        ("ikev1", "aggressive", "yes"),
        ("ikev2", "main", "no"),
        ("ikev2", "aggressive", "no"),
    ],
)
def test_aggressive_only_applies_to_ikev1(version: str, mode: str, aggressive: str) -> None:
    spec = connection(ike=ike(version=version, mode=mode))
    conn = render_connection(spec)[spec.name]
    assert conn["aggressive"] == aggressive
    assert conn["version"] == version[-1]


@pytest.mark.parametrize(
    ("version", "keys"), [("ikev1", {"dpd_delay", "dpd_timeout"}), ("ikev2", {"dpd_delay"})]
)
def test_dpd_keys(version: str, keys: set[str]) -> None:
    on = render_connection(connection(ike=ike(version=version), enable_dpd=True))
    off = render_connection(connection(ike=ike(version=version), enable_dpd=False))
    name = connection().name
    assert set(on[name]) - set(off[name]) == keys


def test_start_actions_follow_effect_immediately() -> None:
    name = connection().name
    now = render_connection(connection(effect_immediately=True))[name]["children"][name]
    later = render_connection(connection(effect_immediately=False))[name]["children"][name]
    assert (now["start_action"], now["dpd_action"], now["close_action"]) == ("start", "restart", "start")
    assert (later["start_action"], later["dpd_action"], later["close_action"]) == ("trap", "clear", "none")


def test_empty_ids_default_to_the_gateway_addresses() -> None:
    spec = connection(ike=ike(local_id="", remote_id=""))
    conn = render_connection(spec)[spec.name]
    assert conn["local"]["id"] == spec.local_addr
    assert conn["remote"]["id"] == spec.remote_addr
    assert render_shared_key(spec)["owners"] == sorted([spec.local_addr, spec.remote_addr])


def test_shared_key_owners_are_deduplicated() -> None:
    spec = connection(ike=ike(local_id="same.example", remote_id="same.example"))
    assert render_shared_key(spec)["owners"] == ["same.example"]


def test_shared_key_id_is_derived_from_the_connection_name() -> None:
    spec = connection(name="vco-abc")
    assert render_shared_key(spec)["id"] == shared_key_id("vco-abc") == "psk-vco-abc"
    assert render_shared_key(spec)["data"] == TEST_PSK


@pytest.mark.parametrize("subnet", ["10.1.1.1/24", "10.0.0.0/33", "not-a-cidr", ""])
def test_bad_subnets_are_invalid_specs(subnet: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        render_connection(connection(remote_subnets=("10.9.0.0/16", subnet)))
    assert caught.value.field == "remote_subnets"
    assert caught.value.value == subnet


def test_static_reqids_number_the_children_from_the_spec_reqid() -> None:
    spec = connection(
        ike=ike(version="ikev1"),
        reqid=256,
        local_subnets=("10.1.0.0/24", "10.3.0.0/24"),
        remote_subnets=("10.2.0.0/24",),
    )
    children = render_connection(spec)[spec.name]["children"]
    assert {name: child["reqid"] for name, child in children.items()} == {
        f"{spec.name}-1": "256",
        f"{spec.name}-2": "257",
    }
    assert child_reqids(spec) == {256: f"{spec.name}-1", 257: f"{spec.name}-2"}


def test_reqid_zero_leaves_it_to_charon() -> None:
    spec = connection(reqid=0)
    assert "reqid" not in render_connection(spec)[spec.name]["children"][spec.name]
    assert child_reqids(spec) == {}
