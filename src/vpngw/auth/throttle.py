"""Repeated authentication failures from one client address are throttled and summarised.

Per client address, never per AccessKey: a stranger who sends bad signatures for someone's
key throttles only the stranger's own address, never the key's owner. An address that
failed to authenticate more than ``limit`` times within ``interval_s`` seconds (counted
from its first failure) is answered ``Throttling.User`` for every request until that
interval ends, without a database lookup or a signature check.

The log gets one line per address and interval, with the counts, instead of a line per
failure; it is written at the first request after the interval ended. Memory is bounded:
at most ``max_addresses`` addresses are remembered (the oldest interval is forgotten first,
and forgotten addresses are summed up in one line per interval), so a flood from many
addresses costs a fixed amount of memory and at worst lets some of them go unthrottled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from vpngw.errors import BadRequest

log = logging.getLogger(__name__)

LIMIT = 30
INTERVAL_S = 60.0
MAX_ADDRESSES = 10_000


class Throttled(BadRequest):
    """400 ``Throttling.User``: the code the public API answers for too many requests."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "Throttling.User",
            "Request was denied due to user flow control: too many requests from this address failed "
            f"to authenticate. Retry in {retry_after_s} seconds with a correct signature.",
        )


@dataclass
class _Interval:
    started: float
    failures: int = 0
    refused: int = 0


class FailureThrottle:
    """Authentication failures counted per client address, in a bounded table. Thread-safe."""

    def __init__(
        self,
        *,
        limit: int = LIMIT,
        interval_s: float = INTERVAL_S,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.interval_s = interval_s
        self.max_addresses = max_addresses
        self.clock = clock
        # Oldest interval first: an address's entry is re-inserted when its interval starts.
        self._table: OrderedDict[str, _Interval] = OrderedDict()
        self._forgotten = 0  # addresses dropped early (table full) since the last summary
        self._forgotten_since = 0.0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._table)

    def check(self, address: str) -> None:
        """Raise :class:`Throttled` when ``address`` is over its limit in this interval."""
        with self._lock:
            now = self.clock()
            self._summarise_ended(now)
            entry = self._table.get(address)
            if entry is None or entry.failures <= self.limit:
                return
            entry.refused += 1
            remaining = max(1, int(entry.started + self.interval_s - now + 0.999))
        raise Throttled(remaining)

    def failed(self, address: str) -> None:
        """Count one authentication failure of ``address``."""
        with self._lock:
            now = self.clock()
            self._summarise_ended(now)
            entry = self._table.get(address)
            if entry is None:
                if len(self._table) >= self.max_addresses:
                    self._table.popitem(last=False)
                    if not self._forgotten:
                        self._forgotten_since = now
                    self._forgotten += 1
                entry = self._table[address] = _Interval(started=now)
            entry.failures += 1

    def _summarise_ended(self, now: float) -> None:
        """One line for each address whose interval ended, then forget it."""
        while self._table:
            address, entry = next(iter(self._table.items()))
            if now - entry.started < self.interval_s:
                break
            del self._table[address]
            log.warning(
                "authentication failures from %s: %d in %.0f s (%d requests refused as Throttling.User)",
                address,
                entry.failures,
                self.interval_s,
                entry.refused,
            )
        if self._forgotten and now - self._forgotten_since >= self.interval_s:
            log.warning(
                "authentication failures from %d more addresses were not tracked (the table of %d "
                "addresses was full)",
                self._forgotten,
                self.max_addresses,
            )
            self._forgotten = 0
