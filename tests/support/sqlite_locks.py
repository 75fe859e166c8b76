"""Another process's hold on a SQLite database's write lock, for tests of who waits for it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


def hold_write_lock(
    path: str | Path, seconds: float | None = None, *, release: threading.Event | None = None
) -> threading.Thread:
    """A write transaction on a plain connection of its own (as another process's would be),
    held for ``seconds``, or until ``release`` is set (30 s at most); returns once the lock
    is taken (join the thread to wait it out)."""
    assert (seconds is None) != (release is None), "seconds or release, one of them"
    holding = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        if release is not None:
            release.wait(30)
        else:
            time.sleep(seconds or 0.0)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait()
    return thread
