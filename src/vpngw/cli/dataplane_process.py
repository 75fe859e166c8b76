"""``vpngw serve``'s data plane in a process of its own (issue 18: the API does not pay
for the data plane).

The reconciler, its lease keeper, its prober and one event listener per charon are
threads; in the API's interpreter they took the GIL from every request (a DescribeVpn-
Connections page waited behind them: 4.3 x slower with 100 gateways). So serve runs the
same data plane as a child process: ``vpngw agent`` with serve's node, backend and lease
options, started, supervised and stopped by serve. What joins them:

* **Wake-ups.** The API wakes the data plane after every write (no data: it reads the
  store). serve writes one byte into a pipe whose read end the child holds
  (``--wake-fd``); a full pipe means a wake-up is pending already, so a write never blocks
  the API. The pipe's end-of-file tells the child that serve is gone (even after a
  ``kill -9``): it stops as on SIGTERM, and its charons keep running.
* **Readiness.** The child says ``READY=1`` over a private ``$NOTIFY_SOCKET`` of serve's;
  serve sends its own ``READY=1`` to systemd only once the API listens, after the data
  plane is up (or known not to run).
* **A child that exits.** Before it was ever ready (the lab belongs to another database,
  the backend is busy, a missing ``--uplink``): serve says why (the child's own line is
  just above in the log) and runs the API alone, as it always did. After: serve logs an
  error and starts it again after 1 s, doubling up to 30 s while it keeps failing (reset
  once it has run a minute); ``vpngw_dataplane_restarts_total`` counts them. The API
  never stops for it: its tunnels keep running meanwhile (charons outlive their data
  plane), and what the data plane reports ages as for any silent node (store/freshness.py).
* **Stopping.** serve sends SIGTERM to the child and waits for it (the reconciler's own
  stop) before it exits; the child runs in its own session, so a terminal's Ctrl-C reaches
  serve only and serve stops it in order.
* **Metrics.** With ``--metrics``, the child serves its own metrics (reconcile passes,
  charon restarts) on a loopback port of serve's choosing, and serve's operator listener
  adds them to its scrape (:class:`ChildMetrics`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator

from prometheus_client import Counter
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from vpngw.metrics import DATAPLANE_FAMILIES

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 45.0  # the reconciler's own stop waits up to 30 s for a pass
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a child that ran this long restarts after RESTART_FIRST_S again

DATAPLANE_RESTARTS = Counter(
    "vpngw_dataplane_restarts",
    "Times vpngw serve found its data-plane process gone and started it again.",
)


def agent_arguments(args: argparse.Namespace, *, wake_fd: int, metrics_port: int | None) -> list[str]:
    """``vpngw agent``'s command line for serve's data plane (the database comes in
    ``$VPNGW_DB``: a password in the URL would show in ``ps``)."""
    argv = [
        sys.executable,
        "-m",
        "vpngw.cli.main",
        "agent",
        "--node",
        args.node,
        "--capacity",
        str(args.capacity),
        "--lease-s",
        repr(args.lease_s),
        "--renew-s",
        repr(args.renew_s),
        "--backend",
        args.backend,
        "--lab",
        args.lab,
        "--state-dir",
        str(args.state_dir),
        "--log-format",
        args.log_format,
        "--wake-fd",
        str(wake_fd),
    ]
    for option, value in (
        ("--lab-state", args.lab_state),
        ("--uplink", args.uplink),
        ("--vpc-side", args.vpc_side),
        ("--uplink-gateway", args.uplink_gateway),
        ("--host-netns", args.host_netns),
    ):
        if value:
            argv += [option, str(value)]
    if metrics_port is not None:
        argv += ["--metrics", f"127.0.0.1:{metrics_port}"]
    return argv


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DataplaneProcess:
    """Starts ``vpngw agent`` as serve's data plane, wakes it, restarts it, stops it."""

    def __init__(self, args: argparse.Namespace, db_url: str, *, with_metrics: bool) -> None:
        self._args = args
        self._db_url = db_url
        self.metrics_port = _free_port() if with_metrics else None
        self._process: subprocess.Popen[bytes] | None = None
        self._wake_w: int | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._notify: socket.socket | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    # -- serve's side -----------------------------------------------------------

    def start(self) -> int | None:
        """Start the child and wait until it is ready: None when it is, else the exit
        code with which it refused (it printed why)."""
        code = self._spawn_and_wait()
        if code is None:
            self._watcher = threading.Thread(target=self._watch, name="vpngw-dataplane-watch", daemon=True)
            self._watcher.start()
        return code

    def wake(self) -> None:
        """The API wrote something: a pass soon. Never blocks (a full pipe is a pending wake-up)."""
        fd = self._wake_w
        if fd is None:
            return
        try:
            os.write(fd, b"w")
        except (BlockingIOError, BrokenPipeError, OSError):
            pass  # pending already, or the child is gone (the watcher restarts it)

    def stop(self) -> bool:
        """SIGTERM to the child and wait for it (then SIGKILL); charons keep running.
        False when it was stopped already."""
        if self._stopping.is_set():
            return False
        self._stopping.set()
        self._terminate()
        if self._watcher is not None:
            self._watcher.join(timeout=READY_TIMEOUT_S)
            self._terminate()  # one the watcher was starting meanwhile
        self._close_pipe()
        self._close_notify()
        return True

    def _terminate(self) -> None:
        with self._lock:
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("the data-plane process (pid %d) did not stop in time: killed", process.pid)
            process.kill()
            process.wait()

    # -- the child ----------------------------------------------------------------

    def _spawn_and_wait(self) -> int | None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        address = f"@vpngw-dataplane-{uuid.uuid4().hex}"
        notify.bind("\0" + address[1:])
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        env.update(VPNGW_DB=self._db_url, NOTIFY_SOCKET=address)
        try:
            process = subprocess.Popen(
                agent_arguments(self._args, wake_fd=read_fd, metrics_port=self.metrics_port),
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=(read_fd,),
                start_new_session=True,  # a terminal's Ctrl-C is serve's to pass on
            )
        finally:
            os.close(read_fd)
        self._close_pipe()
        with self._lock:
            self._process, self._wake_w = process, write_fd
        self._close_notify()
        self._notify = notify  # kept open while the child runs: it says STOPPING=1 there too
        return self._wait_ready(process, notify)

    def _wait_ready(self, process: subprocess.Popen[bytes], notify: socket.socket) -> int | None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        notify.settimeout(0.2)
        while time.monotonic() < deadline and not self._stopping.is_set():
            try:
                if notify.recv(4096).startswith(b"READY=1"):
                    return None
            except TimeoutError:
                pass
            if process.poll() is not None:
                return process.returncode
        if self._stopping.is_set():
            return None
        log.error(
            "the data-plane process (pid %d) was not ready in %d s: stopped", process.pid, READY_TIMEOUT_S
        )
        process.kill()
        process.wait()
        return process.returncode

    def _watch(self) -> None:
        """Restart the child whenever it exits while serve runs (module docstring)."""
        delay = RESTART_FIRST_S
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                delay = RESTART_FIRST_S
            log.error(
                "the data-plane process (pid %d) exited with code %s; starting it again in %.0f s "
                "(the API goes on; tunnels keep running)",
                process.pid,
                code,
                delay,
            )
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            DATAPLANE_RESTARTS.inc()
            refused = self._spawn_and_wait()
            if self._stopping.is_set():
                return
            if refused is None:
                log.warning("the data-plane process is up again (pid %s)", self.pid)
            else:
                log.error("the data-plane process could not start (code %s)", refused)
            delay = min(delay * 2, RESTART_MAX_S)

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def _close_pipe(self) -> None:
        with self._lock:
            fd, self._wake_w = self._wake_w, None
        if fd is not None:
            os.close(fd)


class ChildMetrics(Collector):
    """The data-plane process's own metric families, read from its loopback listener at
    each scrape (nothing when it does not answer: it may be restarting)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:  # noqa: S310 (loopback, ours)
                text = response.read().decode()
        except OSError as error:
            log.warning("metrics: the data-plane process did not answer: %s", error)
            return
        for family in text_string_to_metric_families(text):
            if family.name in DATAPLANE_FAMILIES:  # its process_* and python_* would repeat serve's
                yield family


def follow_wake_pipe(fd: int, wake: Callable[[], None], gone: Callable[[], None]) -> threading.Thread:
    """The child's side of the wake pipe: ``wake`` for every batch of bytes, ``gone``
    once serve's end is closed (serve stopped or died), on a daemon thread."""

    def follow() -> None:
        while True:
            try:
                data = os.read(fd, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                gone()
                return
            wake()

    thread = threading.Thread(target=follow, name="vpngw-wake-pipe", daemon=True)
    thread.start()
    return thread
