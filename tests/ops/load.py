"""Concurrent clients that create connections with ClientTokens and retry what is not
answered, with the same token and parameters, as an SDK retry loop would."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.api import REGION, World, connection_params, signed_query

# Ways a request can go unanswered: the server died with the request in flight, or was
# not there to take it.
IN_FLIGHT_LOSSES = (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadTimeout)


def create_params(world: World, index: int) -> dict[str, str]:
    """Connection ``index``: its own remote /32 (no subnet conflict), name and token."""
    remote = f"172.16.{index // 256}.{index % 256}/32"
    params = connection_params(
        world,
        LocalSubnet="10.1.0.0/24",
        RemoteSubnet=remote,
        Name=f"c{index}",
        ClientToken=f"crash-token-{index}",
    )
    return {"Action": "CreateVpnConnection", "RegionId": REGION, **{k: str(v) for k, v in params.items()}}


@dataclass
class CreatingClients:
    url: str
    world: World
    threads: int = 16
    acked: dict[int, str] = field(default_factory=dict)  # index -> VpnConnectionId
    lost_in_flight: int = 0  # requests the server took and died with
    refused: int = 0  # requests sent while no server listened
    unexpected: list[str] = field(default_factory=list)
    _indices: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _new_work: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._new_work.set()
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def finish(self, timeout_s: float) -> None:
        """Stop taking new indices; every worker retries its unanswered one until answered."""
        self._new_work.clear()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        assert not any(w.is_alive() for w in self._workers), "clients still retrying"

    def wait_for_acks(self, count: int, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} creates acknowledged"
            time.sleep(0.01)

    def _work(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            pending: int | None = None
            while True:
                if pending is None:
                    if not self._new_work.is_set():
                        return
                    with self._lock:
                        pending = next(self._indices)
                answer = self._send(client, pending)
                if answer is None:
                    time.sleep(0.02)  # unanswered: retry the same index, same token
                    continue
                pending = None

    def _send(self, client: httpx.Client, index: int) -> dict[str, Any] | None:
        query = create_params(self.world, index)
        try:
            response = client.post("/", params=signed_query("POST", query))
        except IN_FLIGHT_LOSSES:
            with self._lock:
                self.lost_in_flight += 1
            return None
        except httpx.TransportError:
            with self._lock:
                self.refused += 1
            return None
        if response.status_code == 503:
            return None  # the documented "retry later"
        if response.status_code != 200:
            with self._lock:
                self.unexpected.append(f"{index}: {response.status_code} {response.text}")
            return {}
        body: dict[str, Any] = response.json()
        with self._lock:
            self.acked[index] = body["VpnConnectionId"]
        return body
