"""One lab: its names, its machine-wide directories, its WAN, and who owns it.

The lab toolkit that its gateways (:mod:`.network`, the ``lab`` backend), its peers
(:mod:`.peer`) and its nodes (:mod:`.node`) share. :mod:`.topology` decides names and
addresses; this module makes the kernel match them through :mod:`~vpngw.dataplane.system.netns`,
touching only what carries the lab's name. docs/lab.md draws the layout.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from vpngw.dataplane.backends.base import LOCK_DIR, remove_machine_locks
from vpngw.dataplane.backends.lab import topology
from vpngw.dataplane.backends.lab.topology import LabNames
from vpngw.dataplane.system import netns
from vpngw.dataplane.system.netns import NetnsError, link_exists, namespaces

STATE_ROOT = Path("/var/lib/vpngw")
RUN_ROOT = Path("/run/vpngw")


def default_dirs(
    lab: str, *, environ: Mapping[str, str] | None = None, root: bool | None = None
) -> tuple[Path, Path]:
    """(state dir, run dir) of a lab, machine-wide like its namespaces (docs/operations.md).

    As root: ``/var/lib/vpngw/<lab>`` (configurations, logs, fingerprints) and
    ``/run/vpngw/<lab>`` (VICI sockets and pid files, gone at a reboot with the charons
    and namespaces). Otherwise per user: ``$XDG_STATE_HOME/vpngw/<lab>`` (default
    ``~/.local/state``) and ``$XDG_RUNTIME_DIR/vpngw/<lab>`` (default: the state dir).
    Never under the working directory: two folders on one lab share one charon state.
    """
    env = os.environ if environ is None else environ
    if os.geteuid() == 0 if root is None else root:
        return STATE_ROOT / lab, RUN_ROOT / lab
    state_home = Path(env.get("XDG_STATE_HOME") or Path(env.get("HOME") or Path.home()) / ".local" / "state")
    state = state_home / "vpngw" / lab
    runtime = env.get("XDG_RUNTIME_DIR")
    return state, (Path(runtime) / "vpngw" / lab if runtime else state)


class Lab:
    """One lab on this machine: the namespaces named ``<lab>-...``, their state and run
    directories, and the WAN bridge they share."""

    def __init__(self, name: str, state_dir: Path, *, run_dir: Path | None = None) -> None:
        self.names = LabNames(topology.check_lab_name(name))
        self.state_dir = state_dir
        self.run_dir = run_dir or state_dir

    @property
    def owner_path(self) -> Path:
        return LOCK_DIR / f"{self.names.lab}.owner"

    def recorded_owner(self) -> str | None:
        """The database that owns this lab, or None if none is recorded."""
        try:
            return str(json.loads(self.owner_path.read_text())["database"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- WAN ----------------------------------------------------------------------

    def ensure_wan(self) -> None:
        wan = self.names.wan
        netns.ensure_namespace(wan)
        if not link_exists(wan, topology.WAN_BRIDGE):
            netns.run("ip", "-n", wan, "link", "add", topology.WAN_BRIDGE, "type", "bridge")
            netns.run(
                "ip",
                "-n",
                wan,
                "addr",
                "add",
                f"{topology.WAN_ROUTER}/{topology.WAN_NETWORK.prefixlen}",
                "dev",
                topology.WAN_BRIDGE,
            )
            netns.run("ip", "-n", wan, "link", "set", topology.WAN_BRIDGE, "up")

    def attach_to_wan(self, namespace: str, address: str) -> None:
        """Give ``namespace`` a ``wan0`` on the lab bridge holding ``address``/32.

        Only the lab range (and host routes a caller adds) is reachable through it: a
        default route would let packets for the far subnets leave unencrypted.
        """
        self.ensure_wan()
        port = topology.bridge_port(namespace)
        if not link_exists(namespace, topology.WAN_IF):
            if link_exists(self.names.wan, port):
                netns.run("ip", "-n", self.names.wan, "link", "del", port)
            netns.add_veth_pair(namespace, topology.WAN_IF, self.names.wan, port)
            netns.run("ip", "-n", self.names.wan, "link", "set", port, "master", topology.WAN_BRIDGE)
            netns.run("ip", "-n", namespace, "addr", "add", f"{address}/32", "dev", topology.WAN_IF)
            netns.run(
                "ip", "-n", namespace, "route", "add", str(topology.WAN_NETWORK), "dev", topology.WAN_IF
            )
            # The lab WAN is one flat bridge: a dead gateway's address is on the same link.
            netns.limit_unresolved_queue(namespace, topology.WAN_IF)

    def detach_from_wan(self, namespace: str) -> None:
        """Remove the bridge end of a deleted namespace's WAN veth, if it is still there.

        The kernel frees a deleted namespace (and so both veth ends) asynchronously: the
        port may vanish between looking and deleting, which is fine.
        """
        port = topology.bridge_port(namespace)
        if self.names.wan not in namespaces() or not link_exists(self.names.wan, port):
            return
        try:
            netns.run("ip", "-n", self.names.wan, "link", "del", port)
        except NetnsError:
            if link_exists(self.names.wan, port):
                raise

    # -- the whole lab --------------------------------------------------------------

    def teardown(self) -> None:
        """Remove every gateway, VPC side, peer and the WAN of this lab (``vpngw lab
        down``): every process in them first (found from the namespaces themselves), then
        the namespaces (the WAN's last: its name sorts last), the state and the record of
        its owner."""
        for namespace in sorted(namespaces()):
            if self.names.owns(namespace):
                netns.kill_namespace_processes(namespace)
                netns.delete_namespace(namespace)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.owner_path.unlink(missing_ok=True)  # the lab is free for any database again
        remove_machine_locks(self.names.lab)  # the lab's and its nodes' (none held by then)

    def peer_dir(self, name: str) -> Path:
        return self.state_dir / f"p-{name}"

    def peer_run_dir(self, name: str) -> Path:
        return self.run_dir / f"p-{name}"
