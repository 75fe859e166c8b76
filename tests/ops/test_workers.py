"""``vpngw serve --workers N``: N processes on one port and one database."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, Api, signed_query


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _wait_for_children(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while len(children := _children(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return children


def test_workers_share_the_port_and_the_database_and_stop_together(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    server.start("--workers", "2")
    assert server.process is not None
    try:
        workers = _wait_for_children(server.process.pid, 2)
        assert len(workers) == 2, server.log_text()
        # A fresh connection per request: the kernel hands them to either worker.
        created = []
        for _ in range(8):
            with httpx.Client(base_url=server.url, timeout=10) as client:
                created.append(Api(client).ok("CreateVpc", CidrBlock="10.0.0.0/8")["VpcId"])
        with httpx.Client(base_url=server.url, timeout=10) as client:
            listing = Api(client).ok("DescribeVpcs", PageSize="50")
        assert listing["TotalCount"] == 8 and sorted(v["VpcId"] for v in listing["Vpcs"]["Vpc"]) == sorted(
            created
        )
        # One signed request, replayed on new connections: only the first is served,
        # whichever worker each copy reaches (the nonces live in the database).
        once = signed_query("POST", {"Action": "DescribeVpcs", "Version": "2016-04-28", "RegionId": REGION})
        codes = []
        for _ in range(8):
            with httpx.Client(base_url=server.url, timeout=10) as client:
                response = client.post("/", params=once)
                codes.append(response.status_code if response.status_code == 200 else response.json()["Code"])
        assert codes == [200] + ["SignatureNonceUsed"] * 7
        server.process.terminate()
        assert server.process.wait(timeout=20) == 0, server.log_text()
        for worker in workers:
            assert (
                not Path(f"/proc/{worker}").exists() or "zombie" in Path(f"/proc/{worker}/status").read_text()
            )
    finally:
        server.stop()


def test_more_workers_than_one_need_the_data_plane_elsewhere(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vpngw.cli.main",
            "serve",
            "--workers",
            "2",
            "--db",
            f"sqlite:///{tmp_path}/v.db",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--no-dataplane" in result.stderr
    assert not (tmp_path / "v.db").exists()  # refused before anything was touched
