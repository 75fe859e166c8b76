"""DescribeVpnConnections renders its items without a pydantic model per row
(vpn_connections.listed_item): over any row, the bytes on the wire are the models' bytes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_sealer
from vpngw.actions import vpn_connections as vco
from vpngw.actions.framework import Context
from vpngw.actions.tagging import tag_list
from vpngw.config import Settings
from vpngw.ike_config import PSK_PURPOSE
from vpngw.store import freshness, queries

SEALER = make_sealer()
NOW_MS = 1_800_000_000_000
CTX = Context("1000000000000000", "r", Settings(), NOW_MS, "h", SEALER)

text = st.text(max_size=12)
odd = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    text,
    st.lists(st.integers(), max_size=2),
)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)


plain_config = st.dictionaries(text, st.one_of(text, ints, st.booleans()), max_size=5)
ROW_FIELDS = [name for name in queries.ConnectionRow._fields if name not in ("observer", "dual")]


@st.composite
def rows(draw: st.DrawFn) -> queries.ConnectionRow:
    """A row as the API stores it; half of them with one value of another type (pydantic
    would convert or refuse it)."""
    ike = draw(plain_config)
    ike["Psk"] = SEALER.seal(draw(text), PSK_PURPOSE)
    check: dict[str, Any] = {
        "Enable": draw(st.booleans()),
        "Sip": draw(text),
        "Dip": draw(text),
        "Interval": draw(ints),
        "Retry": draw(ints),
        "Policy": draw(text),
    }
    traffic = draw(
        st.one_of(
            st.none(),
            st.just({}),
            st.dictionaries(st.sampled_from(["BytesIn", "BytesOut", "PacketsIn", "PacketsOut"]), ints),
        )
    )
    observer = draw(
        st.one_of(
            st.none(),
            st.builds(
                freshness.Observer,
                st.one_of(st.none(), st.sampled_from(["node-a", "node-b"])),
                st.sampled_from([NOW_MS - 1, NOW_MS, NOW_MS + 1000]),
                st.one_of(st.none(), st.sampled_from(["node-a", "node-b"])),
                st.sampled_from([0, NOW_MS - 1, NOW_MS + 1000]),
                st.sampled_from(["", "charon is gone"]),
            ),
        )
    )
    row = queries.ConnectionRow(
        id=draw(text),
        vpn_gateway_id=draw(text),
        customer_gateway_id=draw(text),
        name=draw(text),
        local_subnet=draw(text),
        remote_subnet=draw(text),
        create_time=draw(ints),
        effect_immediately=draw(st.booleans()),
        auto_config_route=draw(st.booleans()),
        enable_dpd=draw(st.booleans()),
        enable_nat_traversal=draw(st.booleans()),
        ike_config=ike,
        ipsec_config=draw(plain_config),
        health_check=check,
        status=draw(st.sampled_from(freshness.STATUS_ORDER)),
        health_check_status=draw(st.sampled_from(["success", "failed"])),
        diagnosis=draw(text),
        traffic=traffic,
        state=draw(st.sampled_from(["active", "updating"])),
        observer=observer,
        dual=False,
    )
    where = draw(st.sampled_from(["none", "none", "field", "ike", "ipsec", "check", "traffic"]))
    if where == "field":
        row = row._replace(**{draw(st.sampled_from(ROW_FIELDS)): draw(odd)})
    elif where == "ike":
        ike[draw(st.sampled_from(["IkeVersion", "IkeLifetime", "x"]))] = draw(odd)
    elif where == "ipsec":
        row.ipsec_config[draw(text)] = draw(odd)
    elif where == "check":
        check[draw(st.sampled_from([*check, "Extra"]))] = draw(odd)
    elif where == "traffic":
        row = row._replace(
            traffic={
                **(traffic or {}),
                draw(st.sampled_from(["BytesIn", "PacketsOut", "bytes_in", "Other"])): draw(odd),
            }
        )
    return row


def wire(document: Any) -> str:
    """As the response is sent (starlette's JSONResponse): bools and ints told apart."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@settings(max_examples=400, deadline=None)
@given(rows(), st.lists(st.tuples(text, text), max_size=3))
def test_a_listed_item_is_the_models_rendering(
    row: queries.ConnectionRow, tags: list[tuple[str, str]]
) -> None:
    try:
        expected = vco.VpnConnectionListItem(**vco._fields(CTX, row, row.observer), tag=tag_list(tags))
    except Exception as error:  # noqa: BLE001 - the models refuse the row: so must the fast path
        try:
            vco.listed_item(CTX, row, tags)
        except Exception as raised:  # noqa: BLE001
            assert type(raised) is type(error)
        else:
            raise AssertionError(f"listed_item rendered a row the models refuse: {error}") from None
        return
    assert wire(vco.listed_item(CTX, row, tags)) == wire(expected.model_dump(by_alias=True, mode="json"))


def test_rows_as_the_api_stores_them_take_the_fast_path(monkeypatch: Any) -> None:
    """The comparison above covers the fast path, not only the fallback: a stored row renders
    without VpnConnectionListItem."""
    row = queries.ConnectionRow(
        "vco-1", "vpn-1", "cgw-1", "n", "10.0.0.0/24", "10.1.0.0/24", 1, False, False, True, True,
        {"Psk": SEALER.seal("k", PSK_PURPOSE), "IkeVersion": "ikev2", "IkeLifetime": 86400},
        {"IpsecPfs": "group2", "IpsecLifetime": 86400},
        {"Enable": True, "Sip": "", "Dip": "", "Interval": 3, "Retry": 3, "Policy": "revoke_route"},
        "ike_sa_not_established", "failed", "", {"BytesIn": 5}, "active", None, False,
    )  # fmt: skip
    expected = vco.VpnConnectionListItem(**vco._fields(CTX, row, None), tag=tag_list([("k", "v")]))

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the models were used")

    monkeypatch.setattr(vco, "VpnConnectionListItem", refuse)
    got = vco.listed_item(CTX, row, [("k", "v")])
    assert wire(got) == wire(expected.model_dump(by_alias=True, mode="json"))
    assert got["IkeConfig"]["Psk"] == "k" and got["TrafficStatistics"]["BytesIn"] == 5
