"""``vpngw serve`` as a real process, for tests that kill it, restart it or fill its disk.

Readiness comes the way systemd gets it: a datagram socket passed as ``$NOTIFY_SOCKET``
receives ``READY=1`` once the server listens, so a test never polls the port.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import TEST_MASTER_KEY
from tests.support.api import TEST_KEY_ID, TEST_KEY_SECRET
from tests.support.postgres import free_port

READY_TIMEOUT_S = 90.0  # generous: the suite may share the machine with other runs


class NotifySocket:
    """A fake service manager's notification socket (abstract namespace: no file)."""

    def __init__(self) -> None:
        self.address = f"@vpngw-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])

    def receive(self, timeout_s: float) -> str:
        self.sock.settimeout(timeout_s)
        return self.sock.recv(4096).decode()

    def close(self) -> None:
        self.sock.close()


@dataclass
class ServerProcess:
    """One ``vpngw serve --no-dataplane`` on a loopback port; start it again with :meth:`start`."""

    db_url: str
    workdir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    max_files: int | None = None  # RLIMIT_NOFILE of the server process, when set
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"serve-{self.starts}.log"

    def environment(self, notify_address: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPNGW_")}
        env.update(
            VPNGW_MASTER_KEY=TEST_MASTER_KEY,
            VPNGW_ACCESS_KEY_ID=TEST_KEY_ID,
            VPNGW_ACCESS_KEY_SECRET=TEST_KEY_SECRET,
            NOTIFY_SOCKET=notify_address,
            **self.extra_env,
        )
        return env

    def start(self, *extra_args: str) -> None:
        """Start the server and wait for READY=1 (fails with its log if it dies first)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        notify = NotifySocket()
        try:
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "vpngw.cli.main",
                        "serve",
                        "--no-dataplane",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.port),
                        "--db",
                        self.db_url,
                        "--log-level",
                        "warning",
                        *extra_args,
                    ],
                    cwd=self.workdir,
                    env=self.environment(notify.address),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=self._limit_files if self.max_files else None,
                )
            try:
                message = notify.receive(READY_TIMEOUT_S)
            except TimeoutError:
                self.stop()
                raise AssertionError(f"vpngw serve never got ready:\n{self.log_text()}") from None
            assert message == "READY=1", message
        finally:
            notify.close()

    def _limit_files(self) -> None:
        assert self.max_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_files, self.max_files))

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("serve-*.log")))
