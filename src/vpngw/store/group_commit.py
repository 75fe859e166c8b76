"""Group commit on SQLite: the write transactions of the requests the event loop runs in one
iteration share one transaction and one commit.

The API runs short SQLite requests on its event loop (``Api._run``), each write in its own
transaction: under 16 clients the creates queued on SQLite's one writer, one WAL commit each
(docs/benchmarks.md). Here the first write of an iteration opens a transaction (this
process's write lock and SQLite's ``BEGIN IMMEDIATE``, neither waited for) and schedules its
commit for the loop's next turn; the writes of the requests that run before that join it,
each inside a ``SAVEPOINT`` of its own. A request whose write fails rolls back to its
savepoint: the others' writes stay, and it gets its own error, exactly as alone.

Durability is unchanged: a request that joined a group answers only after the ``COMMIT``
that holds its writes (:meth:`Joined.committed`). If that commit fails, nothing of the group
was written: every member gets :class:`~vpngw.errors.StorageFull` when the disk is full, and
otherwise :class:`GroupLost`, on which the API runs the request again (in a worker thread,
alone), as after any write that could not run on the loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from vpngw.store.direct import Direct


class GroupLost(Exception):  # noqa: N818 - a condition, as WouldBlock
    """The group's transaction was rolled back as a whole (its commit failed, or SQLite
    abandoned it after a member's error): none of its members' writes is stored."""


@dataclass(eq=False)
class CommitGroup:
    """One open write transaction on the event loop and the requests that joined it."""

    raw: Any  # the pooled DBAPI connection
    tx: Direct
    loop: asyncio.AbstractEventLoop
    members: int = 0  # requests whose writes the transaction holds
    savepoints: int = 0
    finished: bool = False
    failure: type[Exception] | None = None  # what each member raises, when it ended badly

    def savepoint(self) -> str:
        self.savepoints += 1
        return f"vpngw_member_{self.savepoints}"

    def finish(self, failure: type[Exception] | None) -> None:
        """The group's outcome (once): its writes are committed, or ``failure``."""
        if not self.finished:
            self.finished = True
            self.failure = failure


@dataclass(eq=False)
class Joined:
    """The groups one request's writes joined (the API sets one per request it runs on the
    loop: ``vpngw.store.engine.grouping``)."""

    groups: list[CommitGroup] = field(default_factory=list)

    async def committed(self) -> None:
        """Return once every group this request joined is committed; raise what the commit
        raised otherwise. A group's commit runs at the loop's next turn (scheduled when it
        opened, ahead of the members' own wake-ups), so this normally yields once; no
        future is shared, so one member's cancellation is not the others'."""
        for group in self.groups:
            while not group.finished:
                await asyncio.sleep(0)
            if group.failure is not None:
                raise group.failure()
