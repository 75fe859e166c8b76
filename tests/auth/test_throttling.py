"""Repeated authentication failures from one client address are throttled and summarised
(issue 15, item 9): per address, so a stranger's bad signatures never lock the key's owner
out; bounded memory; one log line per address and interval, not one per failure."""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.conftest import prepared
from tests.support.api import REGION, TEST_KEY_ID, TEST_KEY_SECRET
from vpngw.api.app import build_app
from vpngw.auth import throttle
from vpngw.auth.signatures import sign_rpc_v1
from vpngw.auth.throttle import FailureThrottle, Throttled
from vpngw.config import Settings

STRANGER = "203.0.113.7"
OWNER = "198.51.100.20"
DESCRIBE = {"Action": "DescribeVpcs", "RegionId": REGION}


def _signed(secret: str = TEST_KEY_SECRET) -> dict[str, str]:
    return sign_rpc_v1(
        "POST",
        DESCRIBE,
        TEST_KEY_ID,
        secret,
        nonce=uuid.uuid4().hex,
        timestamp=datetime.datetime.now(datetime.UTC),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[TestClient, TestClient, Clock]]:
    """One server; a stranger's client and the key owner's, from two addresses."""
    db, authenticator = prepared(settings)
    clock = Clock()
    authenticator.throttle = FailureThrottle(clock=clock)
    app = build_app(db, settings, authenticator)
    with (
        TestClient(app, client=(STRANGER, 40000), raise_server_exceptions=False) as stranger,
        TestClient(app, client=(OWNER, 40001), raise_server_exceptions=False) as owner,
    ):
        yield stranger, owner, clock
    db.dispose()


def test_a_strangers_bad_signatures_throttle_the_stranger_not_the_owner(
    served: tuple[TestClient, TestClient, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    stranger, owner, clock = served
    caplog.set_level(logging.INFO)
    codes = [stranger.post("/", params=_signed("guessed-secret")).json()["Code"] for _ in range(1000)]
    assert codes[: throttle.LIMIT] == ["SignatureDoesNotMatch"] * throttle.LIMIT
    assert set(codes[throttle.LIMIT + 1 :]) == {"Throttling.User"}
    refused = stranger.post("/", params=_signed())  # even a good signature, from that address
    assert (refused.status_code, refused.json()["Code"]) == (400, "Throttling.User")
    assert "Retry in" in refused.json()["Message"]
    # The owner of the key, from its own address, is not locked out.
    assert owner.post("/", params=_signed()).status_code == 200
    # The interval ends: the stranger's address gets a fresh budget, and one summary line.
    clock.now += throttle.INTERVAL_S
    assert stranger.post("/", params=_signed()).status_code == 200
    summaries = [r.getMessage() for r in caplog.records if r.name == "vpngw.auth.throttle"]
    assert len(summaries) == 1, summaries
    # 31 failures (one more than the limit), then 969 bad and 1 good request refused unchecked.
    assert f"from {STRANGER}: 31 in 60 s (970 requests refused as Throttling.User)" in summaries[0]
    for secret in ("guessed-secret", TEST_KEY_SECRET):
        assert secret not in "\n".join(r.getMessage() for r in caplog.records)


def test_throttle_counts_per_address_in_intervals() -> None:
    clock = Clock()
    table = FailureThrottle(limit=3, interval_s=10, clock=clock)
    for _ in range(3):
        table.check("a")
        table.failed("a")
    table.check("a")  # 3 failures: still within the limit
    table.failed("a")
    with pytest.raises(Throttled) as refused:
        table.check("a")
    assert refused.value.code == "Throttling.User" and refused.value.status == 400
    table.check("b")  # another address is not concerned
    clock.now += 9.9
    with pytest.raises(Throttled):
        table.check("a")
    clock.now += 0.1
    table.check("a")  # the interval ended
    assert len(table) == 0


def test_memory_is_bounded_and_forgotten_addresses_summarised_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    table = FailureThrottle(limit=3, interval_s=10, max_addresses=1000, clock=clock)
    for n in range(100_000):
        table.failed(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    assert len(table) == 1000
    assert not caplog.records  # nothing logged per failure
    clock.now += 10
    table.check("x")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1001  # one per remembered address, one for all the forgotten ones
    assert "99000 more addresses were not tracked" in lines[-1]
