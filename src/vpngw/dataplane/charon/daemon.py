"""charon, strongSwan's IKE daemon: one process per network namespace (impure).

The layout follows what was proven on Debian 12 (strongSwan 5.9.8): one charon per
network namespace, each with

* a private tmpfs ``/run`` (``ip netns exec`` already gives a private mount namespace),
  so pid file and control sockets do not clash;
* its own ``strongswan.conf`` (via ``STRONGSWAN_CONF``), VICI socket and log file in a
  state directory the caller owns;
* kernel-libipsec: ESP runs in userspace through the TUN device ``ipsec0``, because
  the kernel here has no ESP.

Every network backend starts its gateways' charons here, each with its own profile
(the strongswan.conf it renders: the lab's test tuning in ``backends/lab``, production
settings in ``backends/host``); tests and lab peers too. Needs root and ``/dev/net/tun``.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vpngw.dataplane.backends.base import CharonProfile, GatewayHost
from vpngw.dataplane.charon.vici_client import CharonUnavailable, ViciClient
from vpngw.dataplane.system.netns import NetnsError, kill_pid, pid_alive, read_pid, wait_until

log = logging.getLogger(__name__)

CHARON = "/usr/lib/ipsec/charon"
PLUGIN_CONF_GLOB = "/etc/strongswan.d/charon/*.conf"

# Plugins Debian enables that a gateway's charon must not load: stroke reads /etc/ipsec.*,
# forecast joins multicast groups, tpm/pkcs11 print warnings, the rest are unused.
_UNWANTED_PLUGINS: tuple[str, ...] = ("stroke", "ha", "farp", "dhcp", "resolve", "eap-radius", "tnc-tnccs")
_UNWANTED_PLUGINS += ("led", "forecast", "tpm", "pkcs11")


_JOURNAL = "/run/systemd/journal"

READY_POLL_S = 0.01  # how often start_charon looks whether the new charon answers on VICI


def launch_script(run_dir: Path) -> str:
    """The ``sh -c`` script that starts charon in its namespace: a private ``/run`` (its
    pid file and control sockets would clash with other charons'), built aside and moved
    over ``/run``, with what charon shares with the machine bound back in: ``run_dir``
    (its VICI socket) when it lies under /run, and journald's socket directory (so that a
    profile logging to syslog reaches the journal). Then ``exec`` keeps charon's pid."""
    keep = [str(run_dir)] if run_dir.is_relative_to("/run") else []
    if os.path.isdir(_JOURNAL):
        keep.append(_JOURNAL)
    steps = ["T=$(mktemp -d /tmp/vpngw-run.XXXXXX)", 'mount -n -t tmpfs tmpfs "$T"']
    for path in keep:
        inside = '"$T"' + shlex.quote(path[len("/run") :])
        steps.append(f"mkdir -p {inside} && mount -n --bind {shlex.quote(path)} {inside}")
    steps += ['mount -n --move "$T" /run', 'rmdir "$T"', 'exec "$0"']
    return " && ".join(steps)


def missing_prerequisites(charon: str = CHARON) -> str | None:
    """Why charons cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tmpfs mounts, TUN devices)"
    if not os.access(charon, os.X_OK):
        return f"{charon} not installed (apt-get install strongswan-charon libcharon-extra-plugins ...)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (kernel-libipsec needs a TUN device)"
    return None


@dataclass
class Charon:
    """A charon running in ``namespace``, started by :func:`start_charon`."""

    namespace: str
    state_dir: Path
    vici_path: str
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, timeout_s: float = 10.0) -> ViciClient:
        return ViciClient.connect(self.vici_path, timeout_s)


def plugins_section(vici_path: str) -> str:
    """The ``plugins`` block every profile shares: Debian's plugin list minus the unwanted
    ones, kernel-libipsec (ESP in userspace: a kernel without ESP runs tunnels too) and
    the VICI socket in the caller's state directory."""
    unwanted = "\n".join(f"    {name} {{ load = no }}" for name in _UNWANTED_PLUGINS)
    return f"""  plugins {{
    include {PLUGIN_CONF_GLOB}
    kernel-libipsec {{ load = yes }}
    vici {{ socket = unix://{vici_path} }}
{unwanted}
  }}
"""


def start_charon(
    namespace: str,
    state_dir: Path,
    profile: CharonProfile,
    *,
    run_dir: Path | None = None,
    charon: str = CHARON,
    timeout_s: float = 10.0,
) -> Charon:
    """Start charon inside ``namespace`` with the strongswan.conf ``profile`` renders;
    return once its VICI socket answers.

    ``state_dir`` (created if needed) receives strongswan.conf, charon.log and
    charon.out; ``run_dir`` (default: ``state_dir``) the VICI socket, charon.vici. A unix
    socket path is limited to 107 bytes, so keep ``run_dir`` short.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    run_dir = run_dir or state_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    vici_path = str(run_dir / "charon.vici")
    log_path = state_dir / "charon.log"
    conf_path = state_dir / "strongswan.conf"
    for stale in (Path(vici_path), log_path):
        stale.unlink(missing_ok=True)
    conf_path.write_text(profile(vici_path, log_path))

    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "STRONGSWAN_CONF": str(conf_path)}
    with open(state_dir / "charon.out", "wb") as out:
        # ip -> sh -> exec charon keep one pid, so process.pid is charon's own pid.
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "sh", "-c", launch_script(run_dir), charon],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Charon(namespace, state_dir, vici_path, log_path, process)
    try:
        # charon answers 20-35 ms after its start here: a 50 ms poll found it at 52 ms
        # every time, a 10 ms one at 22-35 ms (docs/benchmarks.md, "Spread: the agent's
        # start-up"); a look before it answers is a stat() or a refused connect.
        if not wait_until(lambda: _answers(handle), timeout_s=timeout_s, interval_s=READY_POLL_S):
            raise NetnsError(f"charon in {namespace} did not come up: {_tail(state_dir / 'charon.out')}")
    except BaseException:
        stop_charon(handle)
        raise
    return handle


def stop_charon(handle: Charon, *, timeout_s: float = 5.0) -> None:
    """SIGTERM charon (SIGKILL after ``timeout_s``) and reap it. Idempotent.

    Its TUN device and the routes it installed vanish with the process.
    """
    process = handle.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(handle: Charon) -> bool:
    if handle.process.poll() is not None:
        raise NetnsError(
            f"charon in {handle.namespace} exited with {handle.process.returncode}: "
            f"{_tail(handle.state_dir / 'charon.out')}"
        )
    if not os.path.exists(handle.vici_path):
        return False
    try:
        with handle.client(timeout_s=1.0) as client:
            client.version()
    except CharonUnavailable:
        return False
    return True


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def start_gateway_charon(host: GatewayHost) -> int:
    """Start charon in the gateway's namespace with the profile its backend brings; return
    its pid (also in ``charon.pid``).

    A charon that is still running there (after a restart of vpngw) is adopted instead.
    """
    pid = running_pid(host)
    if pid is not None:
        return pid
    started = time.monotonic()
    charon = start_charon(host.namespace, host.state_dir, host.profile, run_dir=host.run_dir)
    host.pid_path.write_text(f"{charon.pid}\n")
    log.info(
        "charon for %s started (pid %d) in %.0f ms",
        host.vpn_gateway_id,
        charon.pid,
        (time.monotonic() - started) * 1000,
    )
    return charon.pid


def running_pid(host: GatewayHost) -> int | None:
    """The pid of the gateway's charon if it is running (its pid file names a live charon)."""
    pid = read_pid(host.pid_path)
    return pid if pid is not None and pid_alive(pid) else None


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) charon."""
    return pid_alive(pid)


def stop_pid(pid: int) -> None:
    """Stop the charon ``pid`` (ours or adopted) and reap it if it was our child."""
    kill_pid(pid)
