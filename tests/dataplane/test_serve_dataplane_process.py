"""``vpngw serve`` runs its data plane as a child process (cli/dataplane_process.py):
ready only once the child is, woken by the API's writes, started again when it dies,
stopped with serve, and gone when serve is killed. Real processes, a real lab."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.api import build_world, connection_params
from vpngw.cli.dataplane_process import follow_wake_pipe
from vpngw.dataplane.backends.lab.lab import default_dirs
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.system import netns

from .conftest import claim
from .test_machine_state import serve

pytestmark = pytest.mark.dataplane


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def announced_pid(log: str) -> int:
    """The data-plane process serve announced last ("... (process N)")."""
    return int(re.findall(r"vpngw: data plane: node .* \(process (\d+)\)", log)[-1])


def test_the_data_plane_is_serve_s_child_restarted_and_stopped_with_it(tmp_path: Path) -> None:
    if reason := charon_daemon.missing_prerequisites():
        pytest.skip(reason)
    lab = f"vt-{netns.unique_suffix()}"
    claim(f"{lab}-")
    state_dir, run_dir = default_dirs(lab)
    network = LabNetwork(lab, state_dir, run_dir=run_dir)  # no owner: looks only
    server = None
    try:
        server = serve(tmp_path / "a", lab, f"{lab}-a")
        # READY=1 came after the data plane was up: serve announced its process before it.
        child = announced_pid(server.log())
        assert children_of(server.process.pid) == {child}
        api = server.api
        place = build_world(api)
        api.ok("CreateVpnConnection", **connection_params(place))
        # The API's write wakes the child: the gateway is built on a pass the write asked for.
        assert netns.wait_until(lambda: network.gateway_ids() == {place.vpn_gateway_id}, timeout_s=15), (
            server.log()
        )
        pid_path = network.gateway(place.vpn_gateway_id).pid_path
        assert netns.wait_until(pid_path.exists, timeout_s=15), server.log()
        charon = int(pid_path.read_text())

        # A dying data plane is started again (and the API answers meanwhile).
        os.kill(child, signal.SIGKILL)
        assert netns.wait_until(lambda: "exited with code -9" in server.log(), timeout_s=10), server.log()
        assert api.ok("DescribeRegions")["Regions"]
        assert netns.wait_until(lambda: "the data-plane process is up again" in server.log(), timeout_s=30), (
            server.log()
        )
        child = int(re.findall(r"the data-plane process is up again \(pid (\d+)\)", server.log())[-1])
        assert children_of(server.process.pid) == {child}
        second = api.ok("CreateVpnGateway", VpcId=place.vpc_id, Bandwidth="10")["VpnGatewayId"]
        api.ok("CreateVpnConnection", **connection_params(place, VpnGatewayId=second))
        assert netns.wait_until(lambda: second in network.gateway_ids(), timeout_s=15), server.log()
        assert charon_daemon.alive(charon)  # adopted, not restarted

        # SIGTERM: serve stops its child first; the charons keep running.
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert not Path(f"/proc/{child}").exists()
        assert "vpngw: data plane stopped; charons keep running" in server.log()
        assert charon_daemon.alive(charon)

        # kill -9 of serve: its child sees the wake pipe close and stops on its own.
        server = serve(tmp_path / "a", lab, f"{lab}-a")
        child = announced_pid(server.log())
        server.process.kill()
        server.process.wait(timeout=10)
        assert netns.wait_until(lambda: not Path(f"/proc/{child}").exists(), timeout_s=30)
        assert charon_daemon.alive(charon)
    finally:
        if server is not None:
            server.stop()
        done = subprocess.run(
            [sys.executable, "-m", "vpngw.cli.main", "lab", "down", "--lab", lab],
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not {ns for ns in netns.namespaces() if ns.startswith(f"{lab}-")}


def test_the_wake_pipe_wakes_on_bytes_and_says_when_serve_is_gone() -> None:
    read_fd, write_fd = os.pipe()
    woken, gone = threading.Event(), threading.Event()
    thread = follow_wake_pipe(read_fd, woken.set, gone.set)
    try:
        os.write(write_fd, b"w")
        assert woken.wait(5) and not gone.is_set()
    finally:
        os.close(write_fd)
    assert gone.wait(5)
    thread.join(5)
    assert not thread.is_alive()
    os.close(read_fd)
