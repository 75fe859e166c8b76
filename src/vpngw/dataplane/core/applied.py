"""What one charon holds, remembered beside it: so that an adopted charon can be judged.

When vpngw restarts it adopts the charons still running (their SAs stay up). It cannot
ask charon which settings a loaded connection was built from, and a connection modified
while vpngw was down must be renegotiated, not merely reloaded (reloading a changed
connection leaves the SAs negotiated with the old settings). So every time the agent
loads or unloads connections it records a fingerprint of each loaded spec in the
gateway's state dir; an adopted charon's connections are compared with it.

The fingerprint covers the pre-shared key, so it is an HMAC under a random key kept in
the same directory, readable by root only: the file alone says nothing about a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from vpngw.dataplane.spec.desired import ConnectionSpec

RECORD_FILE = "applied.json"
KEY_FILE = "applied.key"


class AppliedRecord:
    """The fingerprints of the connections loaded into one charon."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._key: bytes | None = None

    def fingerprint(self, spec: ConnectionSpec) -> str:
        canonical = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=list)
        return hmac.new(self._secret(), canonical.encode(), hashlib.sha256).hexdigest()

    def load(self) -> dict[str, str]:
        """Connection name -> fingerprint, as last saved ({} if nothing readable)."""
        try:
            document = json.loads((self._dir / RECORD_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in document.items()} if isinstance(document, dict) else {}

    def save(self, applied: Mapping[str, ConnectionSpec]) -> None:
        record = {name: self.fingerprint(spec) for name, spec in sorted(applied.items())}
        temporary = self._dir / f".{RECORD_FILE}.tmp"
        temporary.write_text(json.dumps(record, indent=1) + "\n")
        temporary.replace(self._dir / RECORD_FILE)

    def clear(self) -> None:
        (self._dir / RECORD_FILE).unlink(missing_ok=True)

    def _secret(self) -> bytes:
        if self._key is None:
            path = self._dir / KEY_FILE
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self._key = path.read_bytes()
            else:
                self._key = secrets.token_bytes(32)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(self._key)
        return self._key
