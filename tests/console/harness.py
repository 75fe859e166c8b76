"""A real ``vpngw serve`` and a real Chromium for the console tests.

The server is the ``vpngw`` command in a subprocess (with the lab data plane when asked);
the browser is Debian's Chromium driven by Playwright (its own browser download is not
reachable here), with a fresh profile per test. Every request the page makes is
recorded, so a test can check that nothing of the secret went into a URL.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_MASTER_KEY
from tests.ops.server_process import NotifySocket
from tests.support.api import TEST_KEY_ID, TEST_KEY_SECRET, Api
from tests.support.postgres import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
READY_TIMEOUT_S = 90.0
_ROOT = Path(__file__).resolve().parents[2]
# Where the run's screenshots go: a scratch folder by default (ids and times differ from run to
# run, so writing docs/console/ on every `make test` would dirty the tree); `make screenshots`
# points this at docs/console/ to refresh the documentation's pictures.
SHOTS = Path(os.environ.get("VPNGW_CONSOLE_SHOTS") or _ROOT / ".artifacts" / "console").resolve()


def need_browser() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Debian's chromium is not installed (scripts/install-system-packages.sh installs it as root)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")


@dataclass
class Server:
    """``vpngw serve`` on a loopback port, its database in ``workdir``."""

    workdir: Path
    lab: str | None = None  # the lab data plane's name; None: --no-dataplane
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def lab_state(self) -> Path:
        return self.workdir / "lab"

    @property
    def credentials_file(self) -> Path:
        return self.workdir / "credentials.json"

    def lab_args(self) -> list[str]:
        assert self.lab is not None
        return ["--lab", self.lab, "--lab-state", str(self.lab_state)]

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPNGW_")}
        notify = NotifySocket()
        env.update(
            VPNGW_MASTER_KEY=TEST_MASTER_KEY,
            VPNGW_ACCESS_KEY_ID=TEST_KEY_ID,
            VPNGW_ACCESS_KEY_SECRET=TEST_KEY_SECRET,
            NOTIFY_SOCKET=notify.address,
        )
        self.credentials_file.write_text(
            json.dumps({"AccessKeyId": TEST_KEY_ID, "AccessKeySecret": TEST_KEY_SECRET})
        )
        self.credentials_file.chmod(0o600)
        plane = ["--no-dataplane"] if self.lab is None else [*self.lab_args(), "--node", f"{self.lab}-n"]
        command = [
            sys.executable,
            "-m",
            "vpngw.cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            f"sqlite:///{self.workdir / 'vpngw.db'}",
            "--log-level",
            "warning",
            *plane,
        ]
        try:
            with open(self.workdir / "serve.log", "wb") as log:
                self.process = subprocess.Popen(
                    command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            try:
                assert notify.receive(READY_TIMEOUT_S) == "READY=1"
            except TimeoutError:
                self.stop()
                raise AssertionError(f"vpngw serve never got ready:\n{self.log()}") from None
        finally:
            notify.close()

    def api(self) -> Api:
        return Api(httpx.Client(base_url=self.url, timeout=30))

    def vpngw(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a ``vpngw`` command (``lab peer create``, ``lab exec``) against this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VPNGW_")}
        env["VPNGW_MASTER_KEY"] = TEST_MASTER_KEY  # the server's, for commands that seal secrets
        done = subprocess.run(
            [sys.executable, "-m", "vpngw.cli.main", *args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"vpngw {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log(self) -> str:
        path = self.workdir / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def running_server(*, lab: bool) -> Iterator[Server]:
    # Short: charon's unix socket paths live under it (< 108 bytes).
    workdir = Path(tempfile.mkdtemp(prefix="vc", dir="/tmp"))
    server = Server(workdir, lab=f"vc-{secrets.token_hex(3)}" if lab else None)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if server.lab is not None:
            server.vpngw("lab", "down", *server.lab_args(), check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Browser:
    """One Chromium profile and page, with what the page did recorded."""

    context: Any
    page: Any
    requests: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    downloads_dir: Path = Path(".")

    def console_error(self, kind: str, text: str) -> None:
        # A refused call (400, 403) is logged by Chromium as a failed resource load: that
        # is the API answering, not the page failing.
        if kind == "error" and not text.startswith("Failed to load resource"):
            self.errors.append(text)

    def sign_in(self, base: str, key_id: str = TEST_KEY_ID, secret: str = TEST_KEY_SECRET) -> None:
        self.page.goto(f"{base}/console/")
        self.page.get_by_label("AccessKeyId").fill(key_id)
        self.page.get_by_label("AccessKeySecret").fill(secret)
        self.page.get_by_role("button", name="Sign in").click()

    def shot(self, name: str, *, full_page: bool = True) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)

    def fits_width(self) -> bool:
        """No horizontal scrolling of the page itself (wide tables scroll in their box)."""
        return bool(self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


@contextmanager
def browser(viewport: dict[str, int] = DESKTOP, *, ignore_https_errors: bool = False) -> Iterator[Browser]:
    need_browser()
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="vc-chromium-"))
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(profile / "user-data"),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=viewport,
                accept_downloads=True,
                ignore_https_errors=ignore_https_errors,  # a test CA's certificate
            )
            try:
                context.set_default_timeout(30_000)  # generous: a shared, loaded machine
                page = context.pages[0] if context.pages else context.new_page()
                driven = Browser(context, page, downloads_dir=profile / "downloads")
                context.on("request", lambda request: driven.requests.append(request))
                page.on("pageerror", lambda error: driven.errors.append(str(error)))
                page.on("console", lambda message: driven.console_error(message.type, message.text))
                yield driven
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
