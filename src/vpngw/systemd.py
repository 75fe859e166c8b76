"""systemd's readiness protocol (sd_notify), for ``Type=notify`` units.

The protocol is one datagram on the unix socket named by ``$NOTIFY_SOCKET`` (a path,
or ``@name`` for the abstract namespace). It is a dozen lines, so it is written here
rather than pulled in: the python bindings (``systemd-python``) need libsystemd's headers
to build, and the small pure-Python packages have not been maintained for years.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to the service manager; False when not run by one."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as error:
        # The manager is gone or the socket is wrong: the service itself must not fail for it.
        log.warning("sd_notify %s to %s failed: %s", state, address.replace("\0", "@"), error)
        return False
    return True
