"""The data plane's error vocabulary, in the reconciler's terms (kopf-style).

A :class:`PermanentError` means retrying with the same desired state cannot help: the
spec itself cannot be realised (an algorithm strongSwan has no keyword for, a malformed
subnet). The reconciler records it on the connection and waits for the spec to change.

A :class:`TemporaryError` means the same step may succeed later (charon restarting, a
socket timeout); the reconciler retries after ``delay`` seconds.

A :class:`BackendBusy` means another vpngw process on this machine drives the same
gateways (the same lab, the same node): this process must not start its data plane.

Messages never contain a pre-shared key.
"""

from __future__ import annotations


class DataplaneError(Exception):
    """Base class of every error raised by ``vpngw.dataplane``."""


class PermanentError(DataplaneError):
    """Retrying cannot help until the desired state changes."""


class TemporaryError(DataplaneError):
    """The step may succeed if retried after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


class InvalidSpec(PermanentError):
    """A field of the desired state has a value the data plane cannot realise."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field}={value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


class BackendBusy(DataplaneError):
    """Another vpngw process on this machine drives these gateways already (every
    backend raises this one class)."""
