"""A whole vpngw with its lab data plane, for end-to-end tests.

The API runs in process (Starlette's TestClient, signed requests) on a fresh SQLite
database; its writes wake a real :class:`~vpngw.dataplane.core.reconciler.Reconciler`, which
drives real charons in a lab whose name is unique to the test (``vt-<hex>``), so that
nothing outside it is touched. Peers are real charons too, configured by the tests.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.api import Api
from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.backends.lab.peer import PeerSpec
from vpngw.dataplane.system import netns
from vpngw.store.engine import Database

if TYPE_CHECKING:
    from vpngw.dataplane.core.reconciler import Reconciler


@dataclass
class LabWorld:
    api: Api
    db: Database
    reconciler: Reconciler
    network: LabNetwork
    peers: dict[str, PeerSpec] = field(default_factory=dict)

    # -- API ----------------------------------------------------------------------

    def connection(self, connection_id: str) -> dict[str, Any]:
        return self.api.ok("DescribeVpnConnection", VpnConnectionId=connection_id)

    def wait_for(self, what: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        return netns.wait_until(what, timeout_s=timeout_s, interval_s=0.1)

    def wait_status(self, connection_id: str, status: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Wait until DescribeVpnConnection shows ``status``; return the last description."""
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.connection(connection_id))
            return seen["Status"] == status

        self.wait_for(reached, timeout_s)
        return seen

    # -- peers --------------------------------------------------------------------

    def add_peer(
        self,
        name: str,
        connection_id: str,
        *,
        initiate: bool = False,
        ike: dict[str, Any] | None = None,
        ipsec: dict[str, Any] | None = None,
    ) -> PeerSpec:
        """A lab peer for the connection, from its DownloadVpnConnectionConfig, with
        ``ike``/``ipsec`` keys overriding that config (to build mismatches)."""
        config = self.api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)[
            "VpnConnectionConfig"
        ]
        config["IkeConfig"].update(ike or {})
        config["IpsecConfig"].update(ipsec or {})
        peer = lab_peer.peer_from_download(name, config, initiate=initiate)
        lab_peer.create_peer(self.network, peer)
        self.peers[name] = peer
        return peer

    def remove_peer(self, name: str) -> None:
        lab_peer.remove_peer(self.network, name)
        self.peers.pop(name, None)

    def peer_pid(self, name: str) -> int:
        pid = netns.read_pid(self.network.peer_dir(name) / "charon.pid")
        assert pid is not None
        return pid

    # -- traffic ------------------------------------------------------------------

    def ping_from_vpc(self, vpn_gateway_id: str, source: str, destination: str) -> bool:
        return netns.ping(self.network.names.vpc(vpn_gateway_id), source, destination)

    def ping_from_peer(self, name: str, source: str, destination: str) -> bool:
        return netns.ping(self.network.names.peer(name), source, destination)

    def vpc_routes(self, vpn_gateway_id: str) -> set[str]:
        """Destinations of the unicast routes vpngw installed on the VPC side."""
        return {
            r.dst for r in netns.owned_routes(self.network.names.vpc(vpn_gateway_id)) if r.kind == "unicast"
        }


def lab_namespaces(prefix: str) -> set[str]:
    return {name for name in netns.namespaces() if name.startswith(prefix)}


def short_state_dir() -> Path:
    """A state dir short enough for charon's unix socket paths (< 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="vt", dir="/tmp"))


def charon_processes_under(path: Path) -> list[int]:
    """pids of charons whose configuration lives under ``path`` (leak check)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if str(path).encode() in environ and b"charon" in (entry / "cmdline").read_bytes():
            pids.append(int(entry.name))
    return pids


def wait_gone(pids: list[int], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(netns.pid_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def routes_with_proto(namespace: str) -> str:
    return subprocess.run(
        ["ip", "-n", namespace, "route", "show", "proto", "199"], capture_output=True, text=True, check=False
    ).stdout
