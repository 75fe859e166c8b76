"""Alembic environment: runs migrations against the URL that vpngw passes in."""

from __future__ import annotations

from alembic import context

from vpngw.store.engine import make_engine
from vpngw.store.models import Base

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None  # set by vpngw.store.migrate.alembic_config
engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
