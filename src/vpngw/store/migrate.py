"""Apply the Alembic migrations that ship inside the package.

Every ``vpngw serve``, ``agent`` and admin command upgrades the database first. Importing
Alembic (and Mako, Pygments with it) costs a quarter of a second of CPU, which three
agents starting together on two cores pay in their time to register (docs/benchmarks.md,
"Nodes"): so a database already at the shipped head is recognised first, from the
scripts' text and the ``alembic_version`` table, and Alembic runs only when there is
something to do (or anything about that check is unexpected).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r'^revision\s*=\s*"([^"]+)"\s*$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision\s*=\s*(?:None|"([^"]+)")\s*$', re.MULTILINE)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    if at_head(url):
        return
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def shipped_heads() -> set[str]:
    """The head revisions of the migrations shipped (read from the scripts' ``revision``
    and ``down_revision`` lines); empty if a script does not have that shape."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted((MIGRATIONS / "versions").glob("*.py")):
        source = script.read_text()
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return set()
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    return revisions - parents


def at_head(url: str) -> bool:
    """Whether the database at ``url`` is already at the shipped head (False when in
    doubt: a SQLite file that does not exist yet, no ``alembic_version`` table, ...)."""
    from vpngw.store.engine import make_engine

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (
        not parsed.database or parsed.database == ":memory:" or not Path(parsed.database).exists()
    ):
        return False
    heads = shipped_heads()
    if not heads:
        return False
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            stamped = {
                str(row[0]) for row in connection.execute(text("SELECT version_num FROM alembic_version"))
            }
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()
    return stamped == heads
