"""``vpngw serve`` as systemd runs it: readiness over $NOTIFY_SOCKET, JSON log lines."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.ops.server_process import ServerProcess
from tests.support.api import REGION, TEST_KEY_SECRET, signed_query
from tests.support.postgres import free_port
from vpngw.logs import ACCESS_FIELDS


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_is_sent_once_the_api_listens_and_stopping_on_sigterm(tmp_path: Path, kind: str) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        address = str(tmp_path / "notify")
        notify.bind(address)
    else:
        address = f"@vpngw-test-{uuid.uuid4().hex}"
        notify.bind("\0" + address[1:])
    notify.settimeout(90)
    server = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vpngw.cli.main",
            "serve",
            "--no-dataplane",
            "--port",
            str(server.port),
            "--db",
            server.db_url,
        ],
        cwd=tmp_path,
        env=server.environment(address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert notify.recv(4096) == b"READY=1"
        # Ready means listening: the very first attempt is answered, no retry.
        assert httpx.post(f"{server.url}/", timeout=5).json()["Code"] == "MissingParameter.Action"
        process.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        # uvicorn re-raises the signal once it has shut down; systemd counts SIGTERM as a clean exit.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        notify.close()


def test_no_ready_when_the_port_is_taken(tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = f"@vpngw-test-{uuid.uuid4().hex}"
    notify.bind("\0" + address[1:])
    notify.settimeout(0.5)
    with socket.create_server(("127.0.0.1", free_port())) as taken:
        port = taken.getsockname()[1]
        server = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path, port=port)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "vpngw.cli.main",
                "serve",
                "--no-dataplane",
                "--port",
                str(port),
                "--db",
                server.db_url,
            ],
            cwd=tmp_path,
            env=server.environment(address),
            capture_output=True,
            timeout=60,
        )
    assert result.returncode != 0
    with pytest.raises(TimeoutError):
        notify.recv(4096)
    notify.close()


def test_json_log_lines_carry_the_documented_fields(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'vpngw.db'}", tmp_path)
    try:
        server.start("--log-format", "json", "--log-level", "info")
        with httpx.Client(base_url=server.url, timeout=10) as client:
            ok = client.post("/", params=signed_query("POST", {"Action": "DescribeRegions"}))
            assert ok.status_code == 200
            psk = "json-log-psk-91c3"
            bad = client.post(
                "/",
                params=signed_query(
                    "POST",
                    {
                        "Action": "CreateVpnConnection",
                        "RegionId": REGION,
                        "VpnGatewayId": "vpn-none",
                        "CustomerGatewayId": "cgw-none",
                        "LocalSubnet": "10.0.0.0/24",
                        "RemoteSubnet": "10.9.0.0/24",
                        "IkeConfig": json.dumps({"Psk": psk}),
                    },
                ),
            )
            assert bad.status_code == 404
    finally:
        server.stop()
    # stdout (the startup notes) and stderr (the log) share the file; the log's lines are JSON.
    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "vpngw.access"]
    assert [(a["action"], a["status"], a["code"]) for a in access] == [
        ("DescribeRegions", 200, "-"),
        ("CreateVpnConnection", 404, "InvalidVpnGatewayInstanceId.NotFound"),
    ]
    assert all(set(ACCESS_FIELDS) <= set(a) and a["path"] == "/" and a["method"] == "POST" for a in access)
    assert isinstance(access[0]["duration_ms"], float) and access[0]["time"].endswith("+00:00")
    text = server.log_text()
    assert psk not in text and TEST_KEY_SECRET not in text and "Signature=" not in text
    assert not [line for line in text.splitlines() if line and not line.startswith(("{", "vpngw: "))]
