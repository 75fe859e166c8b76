"""Network namespaces and per-namespace charons, for tests and experiments.

The layout follows what was proven on Debian 12 (strongSwan 5.9.8): one charon per
network namespace, each with

* a private tmpfs ``/run`` (``ip netns exec`` already gives a private mount namespace),
  so pid file and control sockets do not clash;
* its own ``strongswan.conf`` (via ``STRONGSWAN_CONF``), VICI socket and log file in a
  state directory the caller owns;
* kernel-libipsec: ESP runs in userspace through the TUN device ``ipsec0``, because
  the kernel here has no ESP.

Everything here touches only what its caller names: namespaces are created and deleted
by name, charon is stopped through the ``Popen`` that started it (never by a pid file
or a process name). Callers pick unique names (see :func:`unique_suffix`) and register
cleanup as soon as each resource exists. Needs root and ``/dev/net/tun``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from vpngw.dataplane.desired import ConnectionSpec
from vpngw.dataplane.vici_client import CharonUnavailable, ViciClient

CHARON = "/usr/lib/ipsec/charon"
PLUGIN_CONF_GLOB = "/etc/strongswan.d/charon/*.conf"

# Plugins Debian enables that a lab charon must not load: stroke reads /etc/ipsec.*,
# forecast joins multicast groups, tpm/pkcs11 print warnings, the rest are unused.
_UNWANTED_PLUGINS: tuple[str, ...] = ("stroke", "ha", "farp", "dhcp", "resolve", "eap-radius", "tnc-tnccs")
_UNWANTED_PLUGINS += ("led", "forecast", "tpm", "pkcs11")


class LabError(Exception):
    """A lab step failed (command error, charon did not come up)."""


def missing_prerequisites(charon: str = CHARON) -> str | None:
    """Why a lab cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tmpfs mounts, TUN devices)"
    if not os.access(charon, os.X_OK):
        return f"{charon} not installed (apt-get install strongswan-charon libcharon-extra-plugins ...)"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (kernel-libipsec needs a TUN device)"
    return None


def unique_suffix() -> str:
    """Six random hex digits, for names no one else uses (``vpngw-t-3fa9c1``)."""
    return secrets.token_hex(3)


def run(*argv: str) -> None:
    """Run a command; raise LabError with its stderr if it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")


# -- namespaces and links ---------------------------------------------------------


def create_namespace(name: str) -> None:
    """Create network namespace ``name`` with its loopback up. Fails if it exists."""
    run("ip", "netns", "add", name)
    run("ip", "-n", name, "link", "set", "lo", "up")


def delete_namespace(name: str) -> None:
    """Delete namespace ``name``; its interfaces (veth ends too) go with it."""
    run("ip", "netns", "del", name)


def add_veth_pair(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair whose ends are born inside ``ns_a`` and ``ns_b`` and set up.

    Interface names are at most 15 characters.
    """
    run("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
    run("ip", "-n", ns_a, "link", "set", if_a, "up")
    run("ip", "-n", ns_b, "link", "set", if_b, "up")


def add_address(namespace: str, ifname: str, cidr: str) -> None:
    """Add ``cidr`` (e.g. ``10.1.1.1/24``) to ``ifname`` inside ``namespace``.

    Add LAN addresses before starting charon: charon's netlink socket overflows when
    about a hundred addresses appear at once while it runs.
    """
    run("ip", "-n", namespace, "addr", "add", cidr, "dev", ifname)


def ping(namespace: str, source: str, destination: str, *, timeout_s: int = 1) -> bool:
    """One ICMP echo from ``source`` (a local address) inside ``namespace``."""
    command = ["ip", "netns", "exec", namespace, "ping", "-n", "-q", "-c", "1", "-W", str(timeout_s)]
    done = subprocess.run([*command, "-I", source, destination], capture_output=True, check=False)
    return done.returncode == 0


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; return the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


# -- charon -----------------------------------------------------------------------


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


def strongswan_conf(vici_path: str, log_path: Path) -> str:
    """The strongswan.conf of a lab charon.

    Test-friendly settings: no DoS cookies or half-open limits (parallel initiations
    between the same two IPs otherwise stall for seconds), fast retransmits (IKEv2 DPD
    and the IKEv1 aggressive-mode race both wait on them), and aggressive mode with PSK
    allowed on the responder.
    """
    unwanted = "\n".join(f"    {name} {{ load = no }}" for name in _UNWANTED_PLUGINS)
    return f"""charon {{
  load_modular = yes
  i_dont_care_about_security_and_use_aggressive_mode_psk = yes
  dos_protection = no
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  retransmit_tries = 3
  plugins {{
    include {PLUGIN_CONF_GLOB}
    kernel-libipsec {{ load = yes }}
    vici {{ socket = unix://{vici_path} }}
{unwanted}
  }}
  filelog {{
    lab {{
      path = {log_path}
      time_format = %H:%M:%S
      default = 1
      flush_line = yes
    }}
  }}
  syslog {{
    daemon {{ default = -1 }}
    auth {{ default = -1 }}
  }}
}}
"""


def start_charon(namespace: str, state_dir: Path, *, charon: str = CHARON, timeout_s: float = 10.0) -> Charon:
    """Start charon inside ``namespace``; return once its VICI socket answers.

    ``state_dir`` (created if needed) receives strongswan.conf, charon.vici,
    charon.log and charon.out. A unix socket path is limited to 107 bytes, so keep
    ``state_dir`` short.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    vici_path = str(state_dir / "charon.vici")
    log_path = state_dir / "charon.log"
    conf_path = state_dir / "strongswan.conf"
    for stale in (Path(vici_path), log_path):
        stale.unlink(missing_ok=True)
    conf_path.write_text(strongswan_conf(vici_path, log_path))

    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "STRONGSWAN_CONF": str(conf_path)}
    with open(state_dir / "charon.out", "wb") as out:
        # ip -> sh -> exec charon keep one pid, so process.pid is charon's own pid.
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "sh", "-c", 'mount -t tmpfs tmpfs /run && exec "$0"', charon],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Charon(namespace, state_dir, vici_path, log_path, process)
    try:
        if not wait_until(lambda: _answers(handle), timeout_s=timeout_s, interval_s=0.05):
            raise LabError(f"charon in {namespace} did not come up: {_tail(state_dir / 'charon.out')}")
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
        raise LabError(
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


# -- the customer's side ----------------------------------------------------------


def mirror_spec(spec: ConnectionSpec) -> ConnectionSpec:
    """The same connection seen from the peer: local and remote swapped.

    The mirror only responds (``effect_immediately=False``), so a test decides which
    side initiates.
    """
    ike = replace(spec.ike, local_id=spec.ike.remote_id, remote_id=spec.ike.local_id)
    return replace(
        spec,
        local_addr=spec.remote_addr,
        remote_addr=spec.local_addr,
        local_subnets=spec.remote_subnets,
        remote_subnets=spec.local_subnets,
        ike=ike,
        effect_immediately=False,
    )
