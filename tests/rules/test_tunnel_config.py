"""vpngw.rules.tunnel_config: IkeConfig, IpsecConfig and HealthCheckConfig JSON strings."""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rules.helpers import error_of
from vpngw.errors import ApiError
from vpngw.rules.tunnel_config import (
    AUTH_ALGS,
    DEFAULT_HEALTH_CHECK,
    DEFAULT_IPSEC,
    DH_GROUPS,
    ENC_ALGS,
    HEALTH_CHECK_KEYS,
    HEALTH_CHECK_POLICIES,
    IKE_KEYS,
    IKE_MODES,
    IKE_VERSIONS,
    IPSEC_KEYS,
    HealthCheck,
    Key,
    check_health_check,
    default_ike,
    merge_health_check,
    merge_ike,
    merge_ipsec,
    parse_config,
)


def ike(document: object) -> dict[str, Any]:
    return parse_config("IkeConfig", json.dumps(document), IKE_KEYS)


def ipsec(document: object) -> dict[str, Any]:
    return parse_config("IpsecConfig", json.dumps(document), IPSEC_KEYS)


def health(document: object) -> dict[str, Any]:
    return parse_config("HealthCheckConfig", json.dumps(document), HEALTH_CHECK_KEYS)


def ike_error(document: object) -> ApiError:
    return error_of(parse_config, "IkeConfig", json.dumps(document), IKE_KEYS)


def ipsec_error(document: object) -> ApiError:
    return error_of(parse_config, "IpsecConfig", json.dumps(document), IPSEC_KEYS)


def health_error(document: object) -> ApiError:
    return error_of(parse_config, "HealthCheckConfig", json.dumps(document), HEALTH_CHECK_KEYS)


# defaults (the spec's)


def test_default_ike() -> None:
    assert default_ike("psk", "1.1.1.1", "2.2.2.2") == {
        "Psk": "psk",
        "IkeVersion": "ikev1",
        "IkeMode": "main",
        "IkeEncAlg": "aes",
        "IkeAuthAlg": "md5",
        "IkePfs": "group2",
        "IkeLifetime": 86400,
        "LocalId": "1.1.1.1",
        "RemoteId": "2.2.2.2",
    }


def test_default_ipsec() -> None:
    assert DEFAULT_IPSEC == {
        "IpsecEncAlg": "aes",
        "IpsecAuthAlg": "md5",
        "IpsecPfs": "group2",
        "IpsecLifetime": 86400,
    }


def test_default_health_check() -> None:
    assert DEFAULT_HEALTH_CHECK == {
        "Enable": False,
        "Sip": "",
        "Dip": "",
        "Interval": 3,
        "Retry": 3,
        "Policy": "revoke_route",
    }


# the document itself


@pytest.mark.parametrize("text", ["", "not json", "{", "{'IkeMode': 'main'}", '{"IkeMode": }'])
def test_config_must_be_json(text: str) -> None:
    error = error_of(parse_config, "IkeConfig", text, IKE_KEYS)
    assert error.code == "InvalidParameter.IkeConfig"
    assert "JSON object" in error.message


@pytest.mark.parametrize("text", ["[]", '["IkeMode"]', "null", "1", '"main"', "true"])
def test_config_must_be_a_json_object(text: str) -> None:
    error = error_of(parse_config, "IkeConfig", text, IKE_KEYS)
    assert error.code == "InvalidParameter.IkeConfig"
    assert "JSON object" in error.message


def test_empty_object_gives_nothing() -> None:
    assert ike({}) == {}


def test_example_from_the_spec() -> None:
    text = '{"IkeVersion":"ikev1","IkeMode":"main","IkeEncAlg":"aes","IkeAuthAlg":"sha1","IkePfs":"group2","IkeLifetime":86400}'
    assert parse_config("IkeConfig", text, IKE_KEYS) == {
        "IkeVersion": "ikev1",
        "IkeMode": "main",
        "IkeEncAlg": "aes",
        "IkeAuthAlg": "sha1",
        "IkePfs": "group2",
        "IkeLifetime": 86400,
    }
    health_text = '{"enable":"true","dip":"192.168.1.2","sip":"10.0.0.2","interval":"3","retry":"3"}'
    assert parse_config("HealthCheckConfig", health_text, HEALTH_CHECK_KEYS) == {
        "Enable": True,
        "Dip": "192.168.1.2",
        "Sip": "10.0.0.2",
        "Interval": 3,
        "Retry": 3,
    }


@pytest.mark.parametrize("name", ["ikemode", "IKEMODE", "IkeMode", "iKeMoDe"])
def test_keys_in_any_case_get_canonical_names(name: str) -> None:
    assert ike({name: "main"}) == {"IkeMode": "main"}


@pytest.mark.parametrize("name", ["enable", "Enable", "ENABLE"])
def test_health_check_enable_key_in_any_case(name: str) -> None:
    assert health({name: "true"}) == {"Enable": True}


@pytest.mark.parametrize("name", ["LocalIdIPsec", "localidipsec", "LOCALIDIPSEC", "LocalId", "localid"])
def test_local_id_alias(name: str) -> None:
    assert ike({name: "vpn.example"}) == {"LocalId": "vpn.example"}


def test_alias_is_only_for_ike_local_id() -> None:
    assert ipsec_error({"LocalIdIPsec": "x"}).code == "InvalidParameter.IpsecConfig"


@pytest.mark.parametrize(
    ("document", "parse"),
    [
        ({"IkeModes": "main"}, ike),
        ({"Mode": "main"}, ike),
        ({"IpsecEncAlg": "aes"}, ike),  # an IpsecConfig key inside IkeConfig
        ({"IkeEncAlg": "aes"}, ipsec),
        ({"Psk": "x"}, health),
        ({"": "x"}, health),
        ({"LocalId ": "x"}, ike),
    ],
)
def test_unknown_keys_refused(document: dict[str, Any], parse: Any) -> None:
    param = {ike: "IkeConfig", ipsec: "IpsecConfig", health: "HealthCheckConfig"}[parse]
    keys = {ike: IKE_KEYS, ipsec: IPSEC_KEYS, health: HEALTH_CHECK_KEYS}[parse]
    error = error_of(parse_config, param, json.dumps(document), keys)
    assert error.code == f"InvalidParameter.{param}"
    assert "unknown key" in error.message
    assert repr(next(iter(document))) in error.message


@pytest.mark.parametrize("empty", ["", None])
def test_empty_string_and_null_mean_not_given(empty: object) -> None:
    document = {key.name: empty for key in IKE_KEYS}
    assert ike(document) == {}
    assert ipsec({key.name: empty for key in IPSEC_KEYS}) == {}
    assert health({key.name: empty for key in HEALTH_CHECK_KEYS}) == {}


def test_unknown_key_refused_even_when_empty() -> None:
    assert "unknown key" in ike_error({"Bogus": None}).message


@pytest.mark.parametrize(
    "text",
    [
        '{"IkeMode": "main", "ikemode": "aggressive"}',
        '{"LocalId": "a", "LocalIdIPsec": "b"}',
        '{"Psk": "a", "PSK": "b"}',
    ],
)
def test_key_given_twice_refused(text: str) -> None:
    error = error_of(parse_config, "IkeConfig", text, IKE_KEYS)
    assert error.code == "InvalidParameter.IkeConfig"
    assert "given twice" in error.message


def test_key_given_twice_ok_when_one_is_empty() -> None:
    assert parse_config("IkeConfig", '{"IkeMode": "", "ikemode": "aggressive"}', IKE_KEYS) == {
        "IkeMode": "aggressive"
    }


# choices

CHOICE_KEYS = [
    ("IkeConfig", "IkeVersion", IKE_VERSIONS),
    ("IkeConfig", "IkeMode", IKE_MODES),
    ("IkeConfig", "IkeEncAlg", ENC_ALGS),
    ("IkeConfig", "IkeAuthAlg", AUTH_ALGS),
    ("IkeConfig", "IkePfs", DH_GROUPS),
    ("IpsecConfig", "IpsecEncAlg", ENC_ALGS),
    ("IpsecConfig", "IpsecAuthAlg", AUTH_ALGS),
    ("IpsecConfig", "IpsecPfs", ("disabled", *DH_GROUPS)),
    ("HealthCheckConfig", "Policy", HEALTH_CHECK_POLICIES),
]
KEYS_OF = {"IkeConfig": IKE_KEYS, "IpsecConfig": IPSEC_KEYS, "HealthCheckConfig": HEALTH_CHECK_KEYS}


def test_choice_sets_are_the_documented_ones() -> None:
    assert IKE_VERSIONS == ("ikev1", "ikev2")
    assert IKE_MODES == ("main", "aggressive")
    assert ENC_ALGS == ("aes", "aes192", "aes256", "des", "3des")
    assert AUTH_ALGS == ("md5", "sha1", "sha256", "sha384", "sha512")
    assert DH_GROUPS == ("group1", "group2", "group5", "group14", "group24")
    assert HEALTH_CHECK_POLICIES == ("revoke_route", "reserve_route")


@pytest.mark.parametrize(
    ("param", "name", "value"),
    [(param, name, value) for param, name, choices in CHOICE_KEYS for value in choices],
)
def test_every_choice_accepted(param: str, name: str, value: str) -> None:
    assert parse_config(param, json.dumps({name: value}), KEYS_OF[param]) == {name: value}


@pytest.mark.parametrize(("param", "name", "choices"), CHOICE_KEYS)
def test_choices_are_case_insensitive_and_normalised_lowercase(
    param: str, name: str, choices: tuple[str, ...]
) -> None:
    for value in choices:
        for spelled in (value.upper(), value.title()):
            assert parse_config(param, json.dumps({name: spelled}), KEYS_OF[param]) == {name: value}


@pytest.mark.parametrize(("param", "name", "choices"), CHOICE_KEYS)
@pytest.mark.parametrize("bad", ["bogus", " main", "group3", "sha224", "aes128", "ikev3"])
def test_choices_refuse_other_values(param: str, name: str, choices: tuple[str, ...], bad: str) -> None:
    error = error_of(parse_config, param, json.dumps({name: bad}), KEYS_OF[param])
    assert error.code == f"InvalidParameter.{param}.{name}"
    assert ", ".join(choices) in error.message


@pytest.mark.parametrize(("param", "name", "choices"), CHOICE_KEYS)
@pytest.mark.parametrize("bad", [1, True, ["aes"], {"v": "aes"}])
def test_choices_must_be_strings(param: str, name: str, choices: tuple[str, ...], bad: object) -> None:
    error = error_of(parse_config, param, json.dumps({name: bad}), KEYS_OF[param])
    assert error.code == f"InvalidParameter.{param}.{name}"
    assert "must be a string" in error.message


@pytest.mark.parametrize("value", ["sha256", "sha384", "sha512", "SHA256"])
def test_sha2_auth_algs_accepted(value: str) -> None:
    assert ike({"IkeAuthAlg": value}) == {"IkeAuthAlg": value.lower()}
    assert ipsec({"IpsecAuthAlg": value}) == {"IpsecAuthAlg": value.lower()}


def test_pfs_disabled_accepted_for_ipsec_only() -> None:
    assert ipsec({"IpsecPfs": "disabled"}) == {"IpsecPfs": "disabled"}
    assert ipsec({"IpsecPfs": "DISABLED"}) == {"IpsecPfs": "disabled"}
    assert ike_error({"IkePfs": "disabled"}).code == "InvalidParameter.IkeConfig.IkePfs"


# lifetimes, interval, retry


@pytest.mark.parametrize(
    ("param", "name", "low", "high"),
    [
        ("IkeConfig", "IkeLifetime", 0, 86400),
        ("IpsecConfig", "IpsecLifetime", 0, 86400),
        ("HealthCheckConfig", "Interval", 1, 60),
        ("HealthCheckConfig", "Retry", 1, 10),
    ],
)
def test_int_keys_bounds(param: str, name: str, low: int, high: int) -> None:
    keys = KEYS_OF[param]
    for value in (low, high, str(low), str(high), f" {high} ", float(high)):
        assert parse_config(param, json.dumps({name: value}), keys) == {
            name: int(str(value).strip().split(".")[0])
        }
    for value in (low - 1, high + 1, str(low - 1), str(high + 1)):
        error = error_of(parse_config, param, json.dumps({name: value}), keys)
        assert error.code == f"InvalidParameter.{param}.{name}"
        assert f"between {low} and {high}" in error.message
    for value in ("abc", "1.5", 1.5, True, [1], {"n": 1}):
        error = error_of(parse_config, param, json.dumps({name: value}), keys)
        assert error.code == f"InvalidParameter.{param}.{name}"
        assert "whole number" in error.message


@pytest.mark.parametrize(
    "text", ['{"IkeLifetime": NaN}', '{"IkeLifetime": Infinity}', '{"IkeLifetime": 1e400}']
)
def test_lifetime_non_finite_refused(text: str) -> None:
    assert (
        error_of(parse_config, "IkeConfig", text, IKE_KEYS).code == "InvalidParameter.IkeConfig.IkeLifetime"
    )


# Psk (a secret)


@pytest.mark.parametrize("psk", ["x", "p" * 100, "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "Abc123"])
def test_psk_accepted(psk: str) -> None:
    assert ike({"Psk": psk}) == {"Psk": psk}


@pytest.mark.parametrize(
    "psk",
    ["p" * 101, "with space", " leading", "tab\tin", "clé", "预共享密钥", "nl\nin", "\x7f"],
)
def test_psk_refused(psk: str) -> None:
    error = ike_error({"Psk": psk})
    assert error.code == "InvalidParameter.IkeConfig.Psk"
    assert "1-100 printable ASCII characters without spaces" in error.message


@pytest.mark.parametrize("psk", [123456, True, ["Sup3rS3cret"]])
def test_psk_must_be_a_string(psk: object) -> None:
    error = ike_error({"Psk": psk})
    assert error.code == "InvalidParameter.IkeConfig.Psk"
    assert "must be a string" in error.message


@pytest.mark.parametrize("psk", ["Sup3rS3cret" * 10, "Sup3r S3cret", "Sup3rSécret", "Sup3rS3cret\n"])
def test_psk_error_never_contains_the_key(psk: str) -> None:
    error = ike_error({"Psk": psk, "IkeMode": "main"})
    assert error.code == "InvalidParameter.IkeConfig.Psk"
    for text in (error.message, str(error), repr(error)):
        assert psk not in text
        assert "Sup3r" not in text


def test_psk_given_twice_error_never_contains_the_key() -> None:
    error = error_of(parse_config, "IkeConfig", '{"Psk": "Sup3rS3cret", "psk": "Sup3rS3cret2"}', IKE_KEYS)
    assert "Sup3r" not in error.message


# LocalId / RemoteId


@pytest.mark.parametrize("name", ["LocalId", "RemoteId"])
def test_identity_bounds(name: str) -> None:
    assert ike({name: "i" * 100}) == {name: "i" * 100}
    assert ike({name: "1.2.3.4"}) == {name: "1.2.3.4"}
    assert ike({name: "vpn@example.com"}) == {name: "vpn@example.com"}
    for bad in ("i" * 101, "has space", "标识", "tab\t"):
        error = ike_error({name: bad})
        assert error.code == f"InvalidParameter.IkeConfig.{name}"
        assert "at most 100 printable ASCII characters without spaces" in error.message


def test_identity_must_be_a_string() -> None:
    assert "must be a string" in ike_error({"RemoteId": 12}).message


# Health check values


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("FALSE", False),
        (True, True),
        (False, False),
    ],
)
def test_health_enable_strings_and_booleans(value: object, expected: bool) -> None:
    assert health({"Enable": value}) == {"Enable": expected}


@pytest.mark.parametrize("value", ["yes", "1", 1, 0, "on", ["true"]])
def test_health_enable_garbage_refused(value: object) -> None:
    error = health_error({"Enable": value})
    assert error.code == "InvalidParameter.HealthCheckConfig.Enable"
    assert "true or false" in error.message


@pytest.mark.parametrize("name", ["Sip", "Dip"])
def test_health_addresses(name: str) -> None:
    assert health({name: "10.0.0.1"}) == {name: "10.0.0.1"}
    assert health({name.lower(): " 10.0.0.1 "}) == {name: "10.0.0.1"}
    for bad in ("10.0.0", "10.0.0.256", "::1", "host", "10.0.0.0/24"):
        error = health_error({name: bad})
        assert error.code == f"InvalidParameter.HealthCheckConfig.{name}"
        assert "not an IPv4 address" in error.message
    error = health_error({name: 167772161})
    assert error.code == f"InvalidParameter.HealthCheckConfig.{name}"
    assert "must be a string" in error.message


# merging


def test_merge_ike_overrides_only_given_keys() -> None:
    base = default_ike("old", "1.1.1.1", "2.2.2.2")
    merged = merge_ike(base, ike({"psk": "new", "ikeversion": "IKEV2"}))
    assert merged == {**base, "Psk": "new", "IkeVersion": "ikev2"}
    assert base["Psk"] == "old"


def test_merge_ipsec_overrides_only_given_keys() -> None:
    merged = merge_ipsec(DEFAULT_IPSEC, ipsec({"IpsecPfs": "disabled", "IpsecLifetime": "0"}))
    assert merged == {"IpsecEncAlg": "aes", "IpsecAuthAlg": "md5", "IpsecPfs": "disabled", "IpsecLifetime": 0}
    assert DEFAULT_IPSEC["IpsecPfs"] == "group2"


def test_merge_over_stored_config_keeps_stored_values() -> None:
    stored = {**DEFAULT_IPSEC, "IpsecEncAlg": "aes256"}
    assert merge_ipsec(stored, ipsec({"IpsecAuthAlg": "sha1"}))["IpsecEncAlg"] == "aes256"
    assert merge_ipsec(stored, ipsec({"IpsecEncAlg": ""}))["IpsecEncAlg"] == "aes256"


def test_merge_health_check_overrides_only_given_keys() -> None:
    merged = merge_health_check(
        DEFAULT_HEALTH_CHECK, health({"enable": "true", "sip": "10.0.0.1", "dip": "192.168.0.1"})
    )
    assert merged == {
        "Enable": True,
        "Sip": "10.0.0.1",
        "Dip": "192.168.0.1",
        "Interval": 3,
        "Retry": 3,
        "Policy": "revoke_route",
    }
    assert DEFAULT_HEALTH_CHECK["Enable"] is False


# check_health_check

LOCAL = (IPv4Network("10.0.0.0/24"), IPv4Network("10.0.1.0/24"))
REMOTE = (IPv4Network("192.168.0.0/16"),)


def check(**given: Any) -> HealthCheck:
    return merge_health_check(DEFAULT_HEALTH_CHECK, given)


@pytest.mark.parametrize(("sip", "dip"), [("10.0.0.1", "192.168.3.4"), ("10.0.1.255", "192.168.0.0")])
def test_enabled_health_check_inside_subnets_accepted(sip: str, dip: str) -> None:
    check_health_check(check(Enable=True, Sip=sip, Dip=dip), LOCAL, REMOTE)


@pytest.mark.parametrize(
    "health_check",
    [check(), check(Enable=False, Sip="8.8.8.8", Dip="1.1.1.1"), check(Enable=False, Sip="10.0.0.1")],
)
def test_disabled_health_check_needs_neither_address(health_check: HealthCheck) -> None:
    check_health_check(health_check, LOCAL, REMOTE)


@pytest.mark.parametrize(
    ("given", "code", "reason"),
    [
        ({"Dip": "192.168.0.1"}, "InvalidParameter.HealthCheckConfig.Sip", "is required"),
        ({"Sip": "10.0.0.1"}, "InvalidParameter.HealthCheckConfig.Dip", "is required"),
        ({}, "InvalidParameter.HealthCheckConfig.Sip", "is required"),
        (
            {"Sip": "10.0.2.1", "Dip": "192.168.0.1"},
            "InvalidParameter.HealthCheckConfig.Sip",
            "not inside LocalSubnet",
        ),
        (
            {"Sip": "10.0.0.1", "Dip": "172.16.0.1"},
            "InvalidParameter.HealthCheckConfig.Dip",
            "not inside RemoteSubnet",
        ),
        # swapped: sip on the remote side, dip on the local side
        (
            {"Sip": "192.168.0.1", "Dip": "10.0.0.1"},
            "InvalidParameter.HealthCheckConfig.Sip",
            "not inside LocalSubnet",
        ),
        (
            {"Sip": "10.0.0.1", "Dip": "10.0.0.2"},
            "InvalidParameter.HealthCheckConfig.Dip",
            "not inside RemoteSubnet",
        ),
    ],
)
def test_enabled_health_check_refused(given: dict[str, str], code: str, reason: str) -> None:
    error = error_of(check_health_check, check(Enable=True, **given), LOCAL, REMOTE)
    assert error.code == code
    assert reason in error.message


# robustness


@pytest.mark.parametrize("text", ["[" * 100_000, '{"Psk": ' + "[" * 100_000])
def test_deeply_nested_json_is_an_api_error(text: str) -> None:
    assert error_of(parse_config, "IkeConfig", text, IKE_KEYS).code == "InvalidParameter.IkeConfig"


ALL_NAMES = [key.name for keys in KEYS_OF.values() for key in keys] + ["LocalIdIPsec"]


def _cased(name: str, flips: list[bool]) -> str:
    return "".join(
        ch.upper() if flip else ch.lower()
        for ch, flip in zip(name, flips + [False] * len(name), strict=False)
    )


key_names = st.one_of(
    st.builds(_cased, st.sampled_from(ALL_NAMES), st.lists(st.booleans(), max_size=16)),
    st.text(max_size=8),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(
        [*ENC_ALGS, *AUTH_ALGS, *DH_GROUPS, "disabled", "TRUE", "false", "10.0.0.1", "86400", "0", "-1", ""]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
documents = st.dictionaries(key_names, json_values, max_size=6)
texts = st.one_of(
    documents.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=40),
    st.text(alphabet='{}[]":,0123456789.-+eEtrufalsnNI ', max_size=40),
)


@settings(max_examples=300, database=None, deadline=None)
@given(texts, st.sampled_from(sorted(KEYS_OF)))
def test_parse_config_never_raises_anything_but_api_error(text: str, param: str) -> None:
    keys: tuple[Key, ...] = KEYS_OF[param]
    try:
        given = parse_config(param, text, keys)
    except ApiError as error:
        assert error.code == f"InvalidParameter.{param}" or error.code.startswith(
            f"InvalidParameter.{param}."
        )
        return
    by_name = {key.name: key for key in keys}
    for name, value in given.items():
        key = by_name[name]
        if key.kind == "choice":
            assert value in key.choices
        elif key.kind == "int":
            assert type(value) is int and key.low <= value <= key.high
        elif key.kind == "bool":
            assert type(value) is bool
        else:
            assert isinstance(value, str) and value
