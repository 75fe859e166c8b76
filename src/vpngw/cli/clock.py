"""The node's clock against the database's: the lease protocol needs them close (docs/hosts.md)."""

from __future__ import annotations

import time

from vpngw.dataplane.nodes.placement import LeaseTiming
from vpngw.store import leases as lease_store
from vpngw.store.engine import Database


def clock_offset_s(db: Database) -> tuple[float, float] | None:
    """(this machine's clock minus the database's, the uncertainty of that: half the
    query's round trip) in seconds; None on SQLite."""
    t0 = time.time()
    with db.transaction(write=False) as session:
        remote_ms = lease_store.database_clock_ms(session)
    t1 = time.time()
    if remote_ms is None:
        return None
    return (t0 + t1) / 2 - remote_ms / 1000, (t1 - t0) / 2


def check_clock(db: Database, timing: LeaseTiming) -> None:
    """Refuse (ValueError) a node whose clock disagrees with the database's by more than
    the lease protocol tolerates between two nodes (fencing margin plus skew), halved:
    each of two nodes may be off by that much in opposite directions (docs/hosts.md)."""
    measured = clock_offset_s(db)
    if measured is None:
        return
    offset, uncertainty = measured
    allowed = (timing.fence_margin_s + timing.skew_s) / 2
    if abs(offset) - uncertainty > allowed:
        raise ValueError(
            f"this machine's clock is {offset:+.3f} s off the database's (at most {allowed:.3f} s is safe for "
            "the leases); synchronise it (chrony/NTP, docs/hosts.md) and start again"
        )
