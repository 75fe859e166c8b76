"""The placement rule and the lease keeper's view, pure (no database, no network)."""

from __future__ import annotations

from collections import Counter

import pytest

from vpngw.dataplane.nodes.placement import LeaseTiming, plan
from vpngw.store.leases import LeaseRow, NodeRow, lease_key, lease_unit

NOW = 1_000_000
TIMING = LeaseTiming(lease_s=5, renew_s=1, skew_s=0.5, fence_margin_s=0.5)


def node(name: str, *, age_ms: int = 0, capacity: int = 100, draining: bool = False) -> NodeRow:
    return NodeRow(name, "host", (), capacity, NOW - age_ms, 0, draining)


def lease(
    gateway: str,
    holder: str | None = None,
    *,
    expires_in_ms: int = 4000,
    pinned: str | None = None,
    ip: str | None = None,
    exists: bool = True,
    next_hop: str | None = None,
) -> LeaseRow:
    return LeaseRow(
        gateway,
        holder,
        NOW + expires_in_ms if holder else 0,
        1,
        pinned,
        None,
        ip or f"198.18.0.{int(gateway[1:]) + 2}",
        exists,
        next_hop or f"100.64.0.{int(gateway[1:]) + 2}",
    )


def assignment(rows: list[LeaseRow], nodes: list[NodeRow]) -> dict[str, str]:
    """What every node takes when each runs the rule on the same rows."""
    taken: dict[str, str] = {}
    for n in nodes:
        for gateway in plan(n.name, rows, nodes, now_ms=NOW, timing=TIMING).take:
            assert gateway not in taken, f"{gateway} planned for {taken[gateway]} and {n.name}"
            taken[gateway] = n.name
    return taken


def test_free_gateways_spread_evenly_and_every_node_agrees() -> None:
    nodes = [node("a"), node("b"), node("c")]
    rows = [lease(f"g{i}") for i in range(9)]
    taken = assignment(rows, nodes)
    assert len(taken) == 9
    assert Counter(taken.values()) == {"a": 3, "b": 3, "c": 3}


def test_load_counts_what_is_held_and_capacity_weighs_it() -> None:
    nodes = [node("a"), node("b", capacity=300)]
    rows = [lease("g0", "a"), lease("g1", "a")] + [lease(f"g{i}") for i in range(2, 10)]
    taken = assignment(rows, nodes)
    held = Counter(taken.values()) + Counter({"a": 2})
    assert held["b"] > held["a"] * 2  # three times the capacity takes the lion's share


def test_held_leases_never_move_and_expired_ones_wait_for_the_skew() -> None:
    nodes = [node("a"), node("b")]
    rows = [
        lease("g0", "a"),
        lease("g1", "gone", expires_in_ms=-400),
        lease("g2", "gone", expires_in_ms=-600),
    ]
    taken = assignment(rows, nodes)
    assert taken.keys() == {"g2"}  # g1 ran out only 400 ms ago (< skew): not yet


def test_dead_and_draining_nodes_take_nothing_and_draining_ones_give_away() -> None:
    nodes = [node("a", age_ms=6000), node("b", draining=True), node("c")]
    rows = [lease("g0"), lease("g1", "b")]
    assert assignment(rows, nodes) == {"g0": "c"}
    assert plan("b", rows, nodes, now_ms=NOW, timing=TIMING).give_away == ("g1",)


def test_a_pinned_gateway_goes_to_its_node_only_and_its_holder_gives_it_away() -> None:
    nodes = [node("a"), node("b")]
    rows = [lease("g0", pinned="b"), lease("g1", "a", pinned="b"), lease("g2", pinned="dead")]
    assert assignment(rows, nodes) == {"g0": "b"}
    assert plan("a", rows, nodes, now_ms=NOW, timing=TIMING).give_away == ("g1",)


def test_an_address_still_held_for_a_deleted_gateway_is_not_reused_yet() -> None:
    nodes = [node("a"), node("b")]
    rows = [lease("g0", "a", ip="198.18.0.9", exists=False), lease("g1", ip="198.18.0.9"), lease("g2")]
    assert assignment(rows, nodes) == {"g2": "b"}
    assert plan("a", rows, nodes, now_ms=NOW, timing=TIMING).give_away == ("g0",)
    released = [lease("g0", None, ip="198.18.0.9", exists=False), rows[1], rows[2]]
    assert set(assignment(released, nodes)) == {"g1", "g2"}


def test_a_next_hop_still_held_for_a_deleted_gateway_is_not_reused_yet() -> None:
    """A new gateway with another InternetIp but the deleted one's VPC-side next hop waits
    too: two nodes must never answer for one next hop on the VPC segment."""
    nodes = [node("a"), node("b")]
    rows = [
        lease("g0", "a", next_hop="100.64.0.9", exists=False),
        lease("g1", next_hop="100.64.0.9"),
        lease("g2"),
    ]
    assert assignment(rows, nodes) == {"g2": "b"}
    released = [lease("g0", None, next_hop="100.64.0.9", exists=False), rows[1], rows[2]]
    assert set(assignment(released, nodes)) == {"g1", "g2"}


def test_the_taker_of_a_lost_node_s_gateway_reports_it() -> None:
    nodes = [node("a", age_ms=9000), node("b")]
    rows = [lease("g0", "a", expires_in_ms=-2000)]
    decided = plan("b", rows, nodes, now_ms=NOW, timing=TIMING)
    assert decided.take == ("g0",) and decided.lost == (("g0", "a"),)


def test_a_silent_holder_s_gateways_are_reported_lost_before_its_lease_runs_out_by_one_node() -> None:
    nodes = [node("a", age_ms=2500), node("b"), node("c")]
    rows = [lease("g0", "a", expires_in_ms=2500)]
    assert plan("b", rows, nodes, now_ms=NOW, timing=TIMING).lost == (("g0", "a"),)
    assert plan("c", rows, nodes, now_ms=NOW, timing=TIMING).lost == ()
    assert plan("b", rows, nodes, now_ms=NOW, timing=TIMING).take == ()  # not before it runs out
    assert plan("b", rows, [node("a", age_ms=1500), *nodes[1:]], now_ms=NOW, timing=TIMING).lost == ()


def test_timings_that_cannot_fence_in_time_are_refused() -> None:
    with pytest.raises(ValueError):
        LeaseTiming(lease_s=2, renew_s=1, fence_margin_s=0.5)


# -- dual-tunnel gateways: two addresses, two lease units -------------------------------


def address(gateway: str, index: int, holder: str | None = None, **kwargs: object) -> LeaseRow:
    """The lease of one address of a dual-tunnel gateway ``g<N>`` (index 1 or 2)."""
    row = lease(gateway, holder, **kwargs)  # type: ignore[arg-type]
    return LeaseRow(
        lease_key(gateway, index),
        row.holder,
        row.expires_ms,
        row.epoch,
        row.pinned_node,
        row.previous_holder,
        f"198.18.{index}.{int(gateway[1:]) + 2}",
        row.exists,
    )


def test_lease_keys_name_each_address_and_a_single_tunnel_gateway_keeps_its_id() -> None:
    assert lease_key("vpn-abc") == "vpn-abc" == lease_key("vpn-abc", 1)
    assert lease_key("vpn-abc", 2) == "vpn-abc.dr"
    assert lease_unit("vpn-abc.dr") == ("vpn-abc", 2) and lease_unit("vpn-abc") == ("vpn-abc", 1)
    with pytest.raises(ValueError):
        lease_key("vpn-abc", 3)
    row = address("g3", 2)
    assert (row.gateway, row.tunnel_index) == ("g3", 2)


def test_the_two_addresses_of_a_new_dual_gateway_go_to_two_nodes() -> None:
    nodes = [node("a"), node("b"), node("c")]
    rows = [address(f"g{i}", k) for i in range(6) for k in (1, 2)]
    taken = assignment(rows, nodes)
    assert len(taken) == 12
    for i in range(6):
        assert taken[lease_key(f"g{i}", 1)] != taken[lease_key(f"g{i}", 2)], f"g{i} on one node"
    assert Counter(taken.values()) == {"a": 4, "b": 4, "c": 4}  # still even


def test_a_lost_address_goes_to_a_third_node_not_to_the_holder_of_the_other() -> None:
    # a died: its address of g0 ran out; b holds the other one and is the least loaded.
    nodes = [node("a", age_ms=9000), node("b"), node("c")]
    rows = [address("g0", 1, "a", expires_in_ms=-2000), address("g0", 2, "b")]
    rows += [address("g1", 1, "c"), address("g1", 2, "c", pinned="c")]
    assert assignment(rows, nodes) == {lease_key("g0", 1): "c"}


def test_with_one_live_node_both_addresses_go_to_it_and_the_second_moves_when_another_is_back() -> None:
    alone = [node("a", age_ms=9000), node("b")]
    rows = [address("g0", 1, "a", expires_in_ms=-2000), address("g0", 2, "b")]
    assert assignment(rows, alone) == {lease_key("g0", 1): "b"}
    assert plan("b", rows, alone, now_ms=NOW, timing=TIMING).give_away == ()
    together = [address("g0", 1, "b"), address("g0", 2, "b")]
    back = [node("a"), node("b")]
    # b gives the second address away (never the first: its tunnel stays), a takes it.
    assert plan("b", together, back, now_ms=NOW, timing=TIMING).give_away == (lease_key("g0", 2),)
    released = [together[0], address("g0", 2)]
    assert assignment(released, back) == {lease_key("g0", 2): "a"}
    # A pinned second address stays where it is pinned.
    pinned = [together[0], address("g0", 2, "b", pinned="b")]
    assert plan("b", pinned, back, now_ms=NOW, timing=TIMING).give_away == ()
    # A draining node is no place to move to.
    assert (
        plan("b", together, [node("a", draining=True), node("b")], now_ms=NOW, timing=TIMING).give_away == ()
    )


def test_single_tunnel_gateways_are_placed_as_before_beside_dual_ones() -> None:
    nodes = [node("a"), node("b")]
    rows = [lease("g0", "a"), lease("g1", "a"), lease("g2")]
    assert assignment(rows, nodes) == {"g2": "b"}
    assert plan("a", rows, nodes, now_ms=NOW, timing=TIMING).give_away == ()
