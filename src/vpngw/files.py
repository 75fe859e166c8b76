"""Files vpngw creates are its owner's alone: files 0600, directories 0700, whatever the
umask (docs/security.md).

``vpngw`` sets the process umask to 077 at start (``cli.main``), which covers every file it
and its children (charon) create; the helpers here make the files that hold secrets or the
database private even when vpngw is used as a library under a looser umask. The modes are
set with ``chmod`` after creation, so a stricter umask does not leave them unreadable to
their owner either.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
UMASK = 0o077


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each 0700; existing ones are left alone."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(path, DIR_MODE)


def create_private_file(path: Path) -> int:
    """Create ``path`` (it must not exist) with mode 0600, its missing parents 0700; returns
    a descriptor open for writing."""
    make_private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def tighten(path: Path) -> None:
    """Make an existing file of ours 0600 if others could read it (a database made by an
    older release, or under a loose umask). Files of another owner are left as they are."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid != os.geteuid() or not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o077:
        return
    os.chmod(path, FILE_MODE)
    log.warning("%s was readable by others: now mode 0600", path)
