"""queries.page: every page of a listing, from either end of the index, is the slice of the
creation order it names (deep pages are read backwards on SQLite, docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from vpngw.cli.database import prepare_database
from vpngw.config import Settings
from vpngw.store import queries
from vpngw.store.engine import Database
from vpngw.store.models import Vpc


def test_every_page_is_its_slice_of_the_creation_order(settings: Settings) -> None:
    db = prepare_database(settings)
    account, region = settings.default_account_id, "cn-hangzhou"
    with db.transaction(write=True) as session:
        for n in range(41):
            queries.add_owned(
                session,
                Vpc(
                    id=f"vpc-{n:03d}",
                    account_id=account,
                    region_id=region,
                    name="v",
                    cidr_block="10.0.0.0/8",
                    create_time=n,
                ),
            )
        # Gaps in seq, and rows of another region in between, must not shift a page.
        for n in (3, 17, 18, 30):
            queries.delete_owned(session, session.query(Vpc).filter_by(id=f"vpc-{n:03d}").one())
        queries.add_owned(
            session,
            Vpc(
                id="vpc-other",
                account_id=account,
                region_id="cn-beijing",
                name="o",
                cidr_block="10.0.0.0/8",
                create_time=0,
            ),
        )
    expected = [f"vpc-{n:03d}" for n in range(41) if n not in (3, 17, 18, 30)]
    for size in (1, 2, 5, 10, 36, 37, 50):
        for number in range(1, len(expected) // size + 3):
            with db.transaction(write=False) as session:
                rows, total = queries.page(session, Vpc, account, region, {}, number, size)
                named, _ = queries.page(session, Vpc, account, region, {"name": "v"}, number, size)
            assert total == len(expected)
            want = expected[(number - 1) * size : number * size]
            assert [row.id for row in rows] == want, (size, number)
            assert [row.id for row in named] == want, (size, number)
    db.dispose()


def _vpc(account: str, n: int) -> Vpc:
    return Vpc(
        id=f"vpc-{n:03d}",
        account_id=account,
        region_id="cn-hangzhou",
        name="v",
        cidr_block="10.0.0.0/8",
        create_time=n,
    )


def _all_pages(db: Database, account: str, size: int) -> list[str]:
    out: list[str] = []
    for number in range(1, 60):
        with db.transaction(write=False) as session:
            rows, _total = queries.page(session, Vpc, account, "cn-hangzhou", {}, number, size)
        out += [row.id for row in rows]
    return out


def test_cached_page_boundaries_follow_every_create_and_delete(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deep pages seek from cached boundaries (every 4th row here); a create or a delete
    (the deleted last seq reused by SQLite's next insert included) makes them rebuilt."""
    monkeypatch.setattr(queries, "PAGE_BOUNDARY_EVERY", 4)
    db = prepare_database(settings)
    account = settings.default_account_id
    with db.transaction(write=True) as session:
        for n in range(30):
            queries.add_owned(session, _vpc(account, n))
    live = [f"vpc-{n:03d}" for n in range(30)]
    for size in (1, 3, 4, 5):
        assert _all_pages(db, account, size) == live
    # Each step is one transaction; some keep the count (only `changes` tells them apart).
    steps: list[list[tuple[str, int]]] = [
        [("delete", 29)],
        [("delete", 5), ("add", 30)],
        [("add", 31)],
        [("delete", 31), ("delete", 12), ("add", 32), ("add", 33)],
        [("delete", 30), ("add", 34)],
    ]
    for step in steps:
        with db.transaction(write=True) as session:
            for op, n in step:
                if op == "add":
                    queries.add_owned(session, _vpc(account, n))
                    live.append(f"vpc-{n:03d}")
                else:
                    queries.delete_owned(session, session.query(Vpc).filter_by(id=f"vpc-{n:03d}").one())
                    live.remove(f"vpc-{n:03d}")
        for size in (1, 3, 4):
            assert _all_pages(db, account, size) == live, (step, size)
    db.dispose()
