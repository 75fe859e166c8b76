"""queries.page: every page of a listing, from either end of the index, is the slice of the
creation order it names (deep pages are read backwards on SQLite, docs/benchmarks.md)."""

from __future__ import annotations

from vpngw.cli.database import prepare_database
from vpngw.config import Settings
from vpngw.store import queries
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
