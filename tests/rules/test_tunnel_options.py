"""rules.tunnel_options, the pure parsing of TunnelOptionsSpecification: both wire shapes
(flattened members, JSON), the summary Status, and error codes from a closed set."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpngw import error_codes
from vpngw.errors import BadRequest
from vpngw.rules import tunnel_options as rules
from vpngw.store import freshness


def _entry(role: str, cgw: str, **members: Any) -> dict[str, Any]:
    return {"CustomerGatewayId": cgw, "Role": role, **members}


def test_flattened_and_json_entries_read_the_same() -> None:
    flat = [
        _entry("master", "cgw-1", **{"TunnelIkeConfig.Psk": "p1", "TunnelIkeConfig.IkeVersion": "IKEV2"}),
        _entry("slave", "cgw-2", EnableDpd="False", **{"TunnelIpsecConfig.IpsecPfs": "Disabled"}),
    ]
    nested = json.dumps(
        [
            _entry("master", "cgw-1", TunnelIkeConfig={"psk": "p1", "ikeversion": "ikev2"}),
            _entry("slave", "cgw-2", EnableDpd=False, TunnelIpsecConfig={"IpsecPfs": "disabled"}),
        ]
    )
    assert rules.parse_new_tunnels(flat) == rules.parse_new_tunnels(nested)
    first, second = rules.parse_new_tunnels(flat)
    assert first.ike == {"Psk": "p1", "IkeVersion": "ikev2"} and first.enable_dpd is None
    assert second.enable_dpd is False and second.ipsec == {"IpsecPfs": "disabled"}


def test_member_given_twice_or_whole_and_by_keys() -> None:
    with pytest.raises(BadRequest) as raised:
        rules.parse_entry({"TunnelIkeConfig": "{}", "TunnelIkeConfig.Psk": "x"}, "T.1", tunnel_id=False)
    assert raised.value.code == "InvalidParameter.TunnelOptionsSpecification.TunnelIkeConfig"
    with pytest.raises(BadRequest) as raised:
        rules.parse_entry({"Role": "master", "role": "slave"}, "T.1", tunnel_id=False)
    assert raised.value.code == "InvalidParameter.TunnelOptionsSpecification.Role"


def test_summary_status_prefers_traffic_then_the_best_tunnel() -> None:
    assert freshness.summary(["ike_sa_not_established", "ipsec_sa_established"]) == "ipsec_sa_established"
    assert freshness.summary(["ipsec_sa_not_established", "ike_sa_established"]) == "ike_sa_established"
    assert (
        freshness.summary(["ike_sa_not_established", "ipsec_sa_not_established"])
        == "ipsec_sa_not_established"
    )
    assert freshness.summary(["weird", "ike_sa_not_established"]) == "ike_sa_not_established"
    assert freshness.summary([]) == "ike_sa_not_established"


_member = st.sampled_from(
    [
        *rules.MEMBERS,
        "TunnelIkeConfig.Psk",
        "TunnelIkeConfig.IkePfs",
        "tunnelipsecconfig.ipseclifetime",
        "Nope",
        "TunnelIkeConfig.Nope",
    ]
)
_value = st.one_of(
    st.text(max_size=12), st.integers(-3, 90000), st.booleans(), st.none(), st.just("{}"), st.just("[1]")
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_member, _value, max_size=6), max_size=3))
def test_any_input_parses_or_fails_with_a_documented_code(entries: list[dict[str, Any]]) -> None:
    """Whatever arrives, the answer is a parse or a BadRequest whose code is documented or
    in the closed set of tunnel keys (so no metric label can be minted from it)."""
    for parse in (rules.parse_new_tunnels, rules.parse_changed_tunnels):
        try:
            parse(entries)
        except BadRequest as error:
            family, _, rest = error.code.partition(".")
            name, _, key = rest.partition(".")
            assert error.code in error_codes.DOCUMENTED or (
                family in error_codes.PARAMETER_FAMILIES
                and name == rules.PARAM
                and key in error_codes.CONFIG_KEYS[rules.PARAM]
            ), error.code
