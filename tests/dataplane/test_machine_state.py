"""Machine-wide lab state: charon state lives where the lab's namespaces live, not in the
folder a server was started from, and a lab belongs to one database.

Two real ``vpngw serve`` processes, started from two folders (each with its own
``./vpngw.db``) on one lab: the second refuses the lab, naming both databases, and
deletes nothing of it; deleting the first folder under its running charon leaves the
charon whole; ``vpngw lab down`` then removes everything, and no charon outlives its
namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.ops.server_process import NotifySocket
from tests.support.api import Api, build_world, connection_params
from vpngw.cli.database import database_identity
from vpngw.dataplane.backends.lab import peer as lab_peer
from vpngw.dataplane.backends.lab.lab import default_dirs
from vpngw.dataplane.backends.lab.network import LabNetwork
from vpngw.dataplane.charon import daemon as charon_daemon
from vpngw.dataplane.system import netns

from .conftest import claim

pytestmark = pytest.mark.dataplane


@dataclass
class Server:
    folder: Path
    process: subprocess.Popen[bytes]
    port: int

    @property
    def api(self) -> Api:
        return Api(httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10))

    def log(self) -> str:
        return (self.folder / "serve.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def serve(folder: Path, lab: str, node: str) -> Server:
    """``vpngw serve`` started in ``folder`` (default database ``./vpngw.db``) on ``lab``."""
    from tests.conftest import TEST_MASTER_KEY
    from tests.support.api import TEST_KEY_ID, TEST_KEY_SECRET
    from tests.support.postgres import free_port

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    notify = NotifySocket()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPNGW_")}
    env.update(
        VPNGW_MASTER_KEY=TEST_MASTER_KEY,
        VPNGW_ACCESS_KEY_ID=TEST_KEY_ID,
        VPNGW_ACCESS_KEY_SECRET=TEST_KEY_SECRET,
        NOTIFY_SOCKET=notify.address,
        PYTHONUNBUFFERED="1",
    )
    command = [
        sys.executable,
        "-m",
        "vpngw.cli.main",
        "serve",
        "--port",
        str(port),
        "--lab",
        lab,
        "--node",
        node,
    ]
    try:
        with open(folder / "serve.log", "wb") as log:
            process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(folder, process, port)
        try:
            assert notify.receive(60) == "READY=1"
        except TimeoutError:
            server.stop()
            raise AssertionError(f"vpngw serve never got ready:\n{server.log()}") from None
    finally:
        notify.close()
    return server


def charon_alive(pid: int) -> bool:
    return charon_daemon.alive(pid)


def test_two_servers_from_two_folders_on_one_lab(tmp_path: Path) -> None:
    if reason := charon_daemon.missing_prerequisites():
        pytest.skip(reason)
    lab = f"vt-{netns.unique_suffix()}"
    claim(f"{lab}-")
    state_dir, run_dir = default_dirs(lab)
    network = LabNetwork(lab, state_dir, run_dir=run_dir)  # no owner: looks and adds peers only
    first = second = None
    charons: list[int] = []
    try:
        first = serve(tmp_path / "a", lab, f"{lab}-a")
        api = first.api
        place = build_world(api)
        connection_id = api.ok(
            "CreateVpnConnection",
            **connection_params(place, LocalSubnet="10.1.1.0/24", EffectImmediately="true"),
        )["VpnConnectionId"]
        config = api.ok("DownloadVpnConnectionConfig", VpnConnectionId=connection_id)["VpnConnectionConfig"]
        charons.append(lab_peer.create_peer(network, lab_peer.peer_from_download("cpe", config)))

        def status() -> str:
            return str(api.ok("DescribeVpnConnection", VpnConnectionId=connection_id)["Status"])

        assert netns.wait_until(lambda: status() == "ipsec_sa_established", timeout_s=30), first.log()
        gateway = network.gateway(place.vpn_gateway_id)
        # Charon's state is machine-wide: configuration under /var/lib/vpngw/<lab>, socket
        # and pid under /run/vpngw/<lab>; the folder holds only the database and the key.
        assert os.geteuid() == 0
        assert gateway.state_dir == Path("/var/lib/vpngw") / lab / f"g-{place.vpn_gateway_id}"
        assert (gateway.state_dir / "strongswan.conf").exists()
        assert gateway.pid_path == Path("/run/vpngw") / lab / f"g-{place.vpn_gateway_id}" / "charon.pid"
        pid = int(gateway.pid_path.read_text())
        charons.append(pid)
        assert not list((tmp_path / "a").glob("**/charon*"))
        assert network.recorded_owner() == database_identity(f"sqlite:///{tmp_path / 'a' / 'vpngw.db'}")

        # A second server from another folder (another ./vpngw.db) refuses the lab, naming
        # both databases, runs its API alone, and deletes nothing of the lab.
        second = serve(tmp_path / "b", lab, f"{lab}-b")
        assert netns.wait_until(lambda: "no data plane" in second.log(), timeout_s=10), second.log()
        refusal = second.log()
        assert str(tmp_path / "a" / "vpngw.db") in refusal and str(tmp_path / "b" / "vpngw.db") in refusal
        assert second.api.ok("DescribeRegions")["Regions"]
        time.sleep(2.0)  # a data plane would have removed gateway the second database lacks by now
        assert gateway.namespace in netns.namespaces() and charon_alive(pid)
        assert status() == "ipsec_sa_established"
        second.stop()

        # The first folder deleted under its running charon: the charon and its tunnel stay whole.
        shutil.rmtree(tmp_path / "a")
        time.sleep(2.0)
        assert charon_alive(pid) and gateway.namespace in netns.namespaces()
        assert gateway.pid_path.exists() and Path(gateway.vici_path).exists()
        first.stop()  # charons keep running (the next start on that database adopts them)
        assert charon_alive(pid)

        # Its database is gone: the lab still refuses the other database, and keeps its namespaces.
        second = serve(tmp_path / "b", lab, f"{lab}-b")
        assert netns.wait_until(lambda: "belongs to the database" in second.log(), timeout_s=10), second.log()
        assert gateway.namespace in netns.namespaces() and charon_alive(pid)
        second.stop()
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()
        done = subprocess.run(
            [sys.executable, "-m", "vpngw.cli.main", "lab", "down", "--lab", lab],
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    # No charon outlives its namespace, and nothing of the lab stays behind.
    assert not {ns for ns in netns.namespaces() if ns.startswith(f"{lab}-")}
    assert netns.wait_until(lambda: not any(charon_alive(p) for p in charons), timeout_s=5), charons
    assert not state_dir.exists() and not run_dir.exists() and network.recorded_owner() is None


def test_lab_directories_are_machine_wide_for_root_and_per_user_otherwise(tmp_path: Path) -> None:
    assert default_dirs("vpngw", root=True) == (Path("/var/lib/vpngw/vpngw"), Path("/run/vpngw/vpngw"))
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert default_dirs("lab1", environ=env, root=False) == (
        tmp_path / ".local/state/vpngw/lab1",
        Path("/run/user/1000/vpngw/lab1"),
    )
    env = {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "st")}
    state, run = default_dirs("lab1", environ=env, root=False)
    assert state == run == tmp_path / "st/vpngw/lab1"  # no runtime dir: the state dir holds the sockets


def test_a_database_is_named_by_its_absolute_file_or_its_url_without_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert database_identity("sqlite:///./vpngw.db") == f"sqlite:///{tmp_path / 'vpngw.db'}"
    assert database_identity("postgresql+psycopg://vpngw:s3cret@db.internal/vpngw") == (
        "postgresql+psycopg://vpngw:***@db.internal/vpngw"
    )


def test_a_lab_refuses_another_database_and_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vpngw.dataplane.backends import base
    from vpngw.dataplane.backends.lab import lab as lab_module
    from vpngw.dataplane.errors import BackendBusy

    monkeypatch.setattr(base, "LOCK_DIR", tmp_path / "run")
    monkeypatch.setattr(lab_module, "LOCK_DIR", tmp_path / "run")
    mine = LabNetwork("vt-own", tmp_path / "s", owner="sqlite:////a/vpngw.db")
    mine.lock().close()
    assert mine.recorded_owner() == "sqlite:////a/vpngw.db"
    mine.lock().close()  # the owner comes back: fine
    other = LabNetwork("vt-own", tmp_path / "s", owner="sqlite:////b/vpngw.db")
    with pytest.raises(BackendBusy) as refused:
        other.lock()
    assert "sqlite:////a/vpngw.db" in str(refused.value) and "sqlite:////b/vpngw.db" in str(refused.value)
    assert mine.recorded_owner() == "sqlite:////a/vpngw.db"  # unchanged
    LabNetwork("vt-own", tmp_path / "s").lock().close()  # no owner given: no check, no record
    assert mine.recorded_owner() == "sqlite:////a/vpngw.db"
