"""A node reads the desired state of the gateways it holds, not of the whole store
(issue 18, item 4: on a cold spread each of three agents read every gateway's specs and
keys, a third of which it would run)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest

from tests.conftest import make_sealer, prepared
from tests.support.api import Api, build_world, connection_params
from vpngw.config import Settings
from vpngw.dataplane.core import reconciler as reconciler_module
from vpngw.dataplane.core.reconciler import Reconciler
from vpngw.dataplane.spec.from_store import GatewayState


class Held:
    """The part of a LeaseKeeper the desired state's refresh asks: what this node holds."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def held(self) -> set[str]:
        return set(self.keys)


def test_only_held_gateways_are_read_and_a_gateway_taken_later_is_read_then(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = build_world(api), build_world(api, customer_ip="198.19.0.11")
    for place in (first, second):
        api.ok("CreateVpnConnection", **connection_params(place, EffectImmediately="false"))
    db, _authenticator = prepared(settings)
    asked: list[set[str] | None] = []
    real_load = reconciler_module.load_desired

    def load_desired(
        db_: Any, sealer: Any, gateway_ids: Collection[str] | None = None
    ) -> dict[str, GatewayState]:
        asked.append(None if gateway_ids is None else set(gateway_ids))
        return real_load(db_, sealer, gateway_ids)

    monkeypatch.setattr(reconciler_module, "load_desired", load_desired)
    held = Held()
    node = Reconciler(db, make_sealer(), network=None, leases=held)  # type: ignore[arg-type]  # no pass runs
    try:
        held.keys = {first.vpn_gateway_id}
        assert node._refresh_desired(full=True, also=set()) == {first.vpn_gateway_id}
        assert asked == [{first.vpn_gateway_id}]
        assert set(node._desired) == {first.vpn_gateway_id}

        # Nothing moved: nothing read.
        assert node._refresh_desired(full=False, also=set()) == set()
        assert len(asked) == 1

        # The node takes the second gateway: it is read then, and only it.
        held.keys = {first.vpn_gateway_id, second.vpn_gateway_id}
        assert node._refresh_desired(full=False, also=set()) == {second.vpn_gateway_id}
        assert asked[-1] == {second.vpn_gateway_id}
        assert set(node._desired) == {first.vpn_gateway_id, second.vpn_gateway_id}

        # It gives the first away: its state is dropped without a read.
        held.keys = {second.vpn_gateway_id}
        assert node._refresh_desired(full=False, also=set()) == {first.vpn_gateway_id}
        assert len(asked) == 2
        assert set(node._desired) == {second.vpn_gateway_id}
    finally:
        node._pool.shutdown()
        db.dispose()


def test_without_leases_every_gateway_is_read(api: Api, settings: Settings) -> None:
    places = [build_world(api), build_world(api, customer_ip="198.19.0.11")]
    for place in places:
        api.ok("CreateVpnConnection", **connection_params(place, EffectImmediately="false"))
    db, _authenticator = prepared(settings)
    node = Reconciler(db, make_sealer(), network=None)  # type: ignore[arg-type]  # no pass runs
    try:
        assert node._refresh_desired(full=True, also=set()) == {place.vpn_gateway_id for place in places}
    finally:
        node._pool.shutdown()
        db.dispose()
