"""Several data-plane nodes on one machine, for the node tests and the failover bench.

Each node is a lab node (:mod:`vpngw.dataplane.backends.lab.node`: a namespace with an uplink on
the lab WAN and a VPC-side veth to a namespace standing for the VPC's network). Its
agent is a real ``vpngw agent --backend host`` process driving that namespace through
``--host-netns``; nothing of the lab backend is involved on the node side. The lab (its
WAN bridge and peers) only stands for the Internet and the customer's devices.
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
from vpngw.dataplane.backends.base import VPC_NEXT_HOP_IF
from vpngw.dataplane.backends.lab import node as lab_node
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.backends.lab.node import LabNode
from vpngw.dataplane.system import netns

REPO = Path(__file__).resolve().parents[2]


@dataclass
class NodeSite:
    """One lab node and (while it runs) its agent process."""

    node: LabNode
    state_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def vpc_namespace(self) -> str:
        return self.node.vpc_namespace

    @property
    def gateway_prefix(self) -> str:
        return f"vpngw-{self.name}-g-"

    def gateway_namespaces(self) -> set[str]:
        return lab_node.gateway_namespaces(self.name)


@dataclass
class Fleet:
    """The lab WAN, the nodes and their agents (started and stopped by the tests)."""

    lab: LabNetwork
    db_url: str
    local_subnets: Sequence[str]
    nodes: list[NodeSite] = field(default_factory=list)
    lease_s: float = 5.0
    # The benches' A/B and profiles: the agents run the vpngw source under this ``src``
    # folder (ahead of the installed one on their path) and/or under cProfile, one
    # ``<node>.prof`` each in this folder, written when the agent stops.
    agent_src: Path | None = None
    agent_cprofile: Path | None = None

    def add_node(self, index: int, *, shared_vpc: bool = False) -> NodeSite:
        """A lab node; ``shared_vpc``: on the lab's shared VPC segment (every such node
        on one segment) instead of a VPC network of its own."""
        node = lab_node.create_node(
            self.lab, f"{self.lab.names.lab}-n{index}", vpc_subnets=self.local_subnets, shared_vpc=shared_vpc
        )
        site = NodeSite(node, Path(tempfile.mkdtemp(prefix="vn", dir="/tmp")))
        self.nodes.append(site)
        return site

    # -- agents -----------------------------------------------------------------------

    def start_agent(
        self,
        site: NodeSite,
        *,
        db_url: str | None = None,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        assert site.process is None or site.process.poll() is not None
        site.log_path = site.state_dir / "agent.log"
        environ = {**os.environ, "VPNGW_MASTER_KEY": TEST_MASTER_KEY, "PYTHONUNBUFFERED": "1", **(env or {})}
        if self.agent_src is not None:
            environ["PYTHONPATH"] = os.pathsep.join(
                filter(None, (str(self.agent_src), environ.get("PYTHONPATH")))
            )
        profiler: list[str] = []
        if self.agent_cprofile is not None:
            profiler = ["-m", "cProfile", "-o", str(self.agent_cprofile / f"{site.name}.prof")]
        command = [
            sys.executable,
            *profiler,
            "-m",
            "vpngw.cli.main",
            "agent",
            *site.node.agent_arguments(),
            "--db",
            db_url or self.db_url,
            "--state-dir",
            str(site.state_dir),
            "--lease-s",
            str(self.lease_s),
            "--period-s",
            "0.5",
            *extra,
        ]
        with open(site.log_path, "ab") as log:
            site.process = subprocess.Popen(
                command, cwd=REPO, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def kill_agent(self, site: NodeSite) -> None:
        """kill -9: the agent gets no chance to clean anything up."""
        if site.process is not None and site.process.poll() is None:
            site.process.send_signal(signal.SIGKILL)
            site.process.wait(10)

    def die(self, site: NodeSite) -> None:
        """The node goes as a machine would: its agent and every process of its gateways'
        namespaces ``kill -9`` at once, its uplink down, and its gateways' VPC-side next
        hops silent (a dead machine answers nothing on the VPC segment either; the node's
        VPC-side interface itself stays up, or the kernel would drop the node's own routes
        through it and a revived node could not reach the VPC)."""
        self.kill_agent(site)
        for namespace in site.gateway_namespaces():
            for pid in netns.namespace_pids(namespace):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        netns.run("ip", "-n", site.node.namespace, "link", "set", lab_node.UPLINK, "down")
        for namespace in site.gateway_namespaces():
            if netns.link_exists(namespace, VPC_NEXT_HOP_IF):
                netns.run("ip", "-n", namespace, "link", "set", VPC_NEXT_HOP_IF, "down")

    def revive(self, site: NodeSite) -> None:
        """A dead node's uplink comes back and its agent starts again (it removes the
        gateways it no longer holds)."""
        netns.run("ip", "-n", site.node.namespace, "link", "set", lab_node.UPLINK, "up")
        self.start_agent(site)

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
            lab_node.remove_node(self.lab, site.name)
        self.lab.teardown()
