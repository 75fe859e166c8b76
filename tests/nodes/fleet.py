"""Several data-plane nodes on one machine, for the node tests and the failover bench.

A **node** is a namespace ``<lab>-n<i>`` that plays a host: an uplink ``up0`` on the lab
WAN bridge (198.19.250.<i>/15) and a VPC-side veth ``vpcside0`` to a namespace
``<lab>-n<i>v`` that stands for the VPC's network (every address of the local subnets
answers there, its default route points at the node). Its agent runs as a real
``vpngw agent --backend host`` process in the test machine's namespace, driving the
node namespace through ``--host-netns``; nothing of the lab backend is involved on the
node side. The lab (its WAN bridge and peers) only stands for the Internet and the
customer's devices.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import TEST_MASTER_KEY
from vpngw.dataplane import netns, topology
from vpngw.dataplane.lab_network import LabNetwork

UPLINK = "up0"
VPC_SIDE = "vpcside0"
VPC_LINK_NODE = "169.254.50.1"
VPC_LINK_VPC = "169.254.50.2"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class NodeSite:
    """One node's namespaces and (while it runs) its agent process."""

    name: str  # the node's name, also its namespace's
    vpc_namespace: str
    uplink_ip: str
    state_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def gateway_prefix(self) -> str:
        return f"vpngw-{self.name}-g-"

    def gateway_namespaces(self) -> set[str]:
        return {ns for ns in netns.namespaces() if ns.startswith(self.gateway_prefix)}


@dataclass
class Fleet:
    """The lab WAN, the nodes and their agents (started and stopped by the tests)."""

    lab: LabNetwork
    db_url: str
    local_subnets: Sequence[str]
    nodes: list[NodeSite] = field(default_factory=list)
    lease_s: float = 5.0

    # -- building -------------------------------------------------------------------

    def add_node(self, index: int) -> NodeSite:
        name = f"{self.lab.names.lab}-n{index}"
        site = NodeSite(name, f"{name}v", f"198.19.250.{index}", Path(tempfile.mkdtemp(prefix="vn", dir="/tmp")))
        self.nodes.append(site)
        netns.ensure_namespace(site.name)
        self.lab.ensure_wan()
        port = topology.bridge_port(site.name)
        netns.add_veth_pair(site.name, UPLINK, self.lab.names.wan, port)
        netns.run("ip", "-n", self.lab.names.wan, "link", "set", port, "master", topology.WAN_BRIDGE)
        netns.add_address(site.name, UPLINK, f"{site.uplink_ip}/{topology.WAN_NETWORK.prefixlen}")
        netns.ensure_namespace(site.vpc_namespace)
        netns.add_veth_pair(site.name, VPC_SIDE, site.vpc_namespace, "h0")
        netns.add_address(site.name, VPC_SIDE, f"{VPC_LINK_NODE}/30")
        netns.add_address(site.vpc_namespace, "h0", f"{VPC_LINK_VPC}/30")
        for subnet in self.local_subnets:
            # The operator's own routes: the VPC's subnets are behind the VPC side.
            netns.run("ip", "-n", site.name, "route", "add", subnet, "via", VPC_LINK_VPC, "dev", VPC_SIDE)
            netns.run("ip", "-n", site.vpc_namespace, "route", "add", "local", subnet, "dev", "lo")
        netns.run("ip", "-n", site.vpc_namespace, "route", "add", "default", "via", VPC_LINK_NODE, "dev", "h0")
        return site

    # -- agents -----------------------------------------------------------------------

    def start_agent(self, site: NodeSite, *, db_url: str | None = None) -> None:
        assert site.process is None or site.process.poll() is not None
        site.log_path = site.state_dir / "agent.log"
        env = {**os.environ, "VPNGW_MASTER_KEY": TEST_MASTER_KEY, "PYTHONUNBUFFERED": "1"}
        command = [
            sys.executable, "-m", "vpngw.cli.main", "agent", "--node", site.name, "--db", db_url or self.db_url,
            "--backend", "host", "--uplink", UPLINK, "--vpc-side", VPC_SIDE, "--host-netns", site.name,
            "--state-dir", str(site.state_dir), "--lease-s", str(self.lease_s), "--period-s", "0.5",
        ]
        with open(site.log_path, "ab") as log:
            site.process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)

    def kill_agent(self, site: NodeSite) -> None:
        """kill -9: the agent gets no chance to clean anything up."""
        if site.process is not None and site.process.poll() is None:
            site.process.send_signal(signal.SIGKILL)
            site.process.wait(10)

    def stop_agent(self, site: NodeSite) -> None:
        if site.process is not None and site.process.poll() is None:
            site.process.terminate()
            try:
                site.process.wait(20)
            except subprocess.TimeoutExpired:
                site.process.kill()
                site.process.wait(10)

    def log_of(self, site: NodeSite) -> str:
        return site.log_path.read_text(errors="replace") if site.log_path and site.log_path.exists() else ""

    # -- teardown ---------------------------------------------------------------------

    def teardown(self) -> None:
        for site in self.nodes:
            self.stop_agent(site)
        for site in self.nodes:
            for namespace in sorted(site.gateway_namespaces()) + [site.name, site.vpc_namespace]:
                netns.kill_namespace_processes(namespace)
                netns.delete_namespace(namespace)
                self.lab.detach_from_wan(namespace)
        self.lab.teardown()
