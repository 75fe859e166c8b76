"""store/freshness.py: a stored Status counts only while its observer confirms it."""

from __future__ import annotations

from vpngw.store.freshness import NOT_UP, Observer, effective

NOW = 1_000_000
UP = "ipsec_sa_established"


def observer(**changes: object) -> Observer:
    fields: dict[str, object] = {
        "holder": "n1",
        "expires_ms": NOW + 5000,
        "observed_by": "n1",
        "observed_until_ms": NOW + 3000,
        "pass_error": "",
    }
    fields.update(changes)
    return Observer(**fields)  # type: ignore[arg-type]


def test_a_confirmed_observation_stands() -> None:
    assert effective(UP, "", observer(), now_ms=NOW) == (UP, "")


def test_without_a_lease_row_the_stored_values_stand() -> None:
    assert effective(UP, "", None, now_ms=NOW) == (UP, "")


def test_a_silent_holder_s_observation_expires() -> None:
    status, diagnosis = effective(UP, "", observer(observed_until_ms=NOW - 1), now_ms=NOW)
    assert status == NOT_UP
    assert "n1" in diagnosis and "silent" in diagnosis


def test_an_observation_of_the_previous_holder_does_not_count_for_the_new_one() -> None:
    status, diagnosis = effective(UP, "", observer(holder="n2", observed_by="n1"), now_ms=NOW)
    assert status == NOT_UP and "n2" in diagnosis


def test_a_failing_holder_s_error_is_the_diagnosis() -> None:
    status, diagnosis = effective(UP, "", observer(pass_error="charon is gone"), now_ms=NOW)
    assert status == NOT_UP
    assert diagnosis == "Node n1 fails to run this gateway: charon is gone"


def test_a_gateway_nobody_holds_is_not_up() -> None:
    status, diagnosis = effective(UP, "", observer(holder=None), now_ms=NOW)
    assert status == NOT_UP and "No data-plane node" in diagnosis
    status, diagnosis = effective(UP, "", observer(expires_ms=NOW - 1), now_ms=NOW)
    assert status == NOT_UP and "No data-plane node" in diagnosis
    # A down connection keeps its own diagnosis.
    assert effective(NOT_UP, "peer refused", observer(holder=None), now_ms=NOW) == (NOT_UP, "peer refused")
