"""The audit rows of reads, committed together (a group commit): the events of the reads that
end while a commit is under way wait for it to return, then go to the database in one statement
and one commit. Each read is answered once the commit holding its rows has returned, so no read
is answered without its audit row; at concurrency 16, a read costs a fraction of a commit
instead of one."""

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.storage import audit_log

BATCH = 500  # events in one statement at most

Waiting = tuple[list[tuple[dict[str, Any], datetime]], asyncio.Future[None]]


class ReadAudit:
    """One per engine. `engine`: PostgreSQL's reads engine (autocommit, synchronous_commit off
    on its connections), or the engine of writes (`transactions`: each batch's transaction is
    told not to wait for the disk, audit_log.reads_only)."""

    def __init__(self, engine: AsyncEngine, *, transactions: bool):
        self._engine = engine
        self._transactions = transactions
        self._waiting: list[Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, events: list[dict[str, Any]], when: datetime) -> None:
        """Store events (each with its id) recorded at `when`; returns once they are committed,
        raises what their commit raised."""
        if not events:
            return
        loop = asyncio.get_running_loop()
        if self._writer is not None and self._writer.get_loop() is not loop:  # an ended loop's
            self._writer, self._waiting = None, []
        committed: asyncio.Future[None] = loop.create_future()
        self._waiting.append(([(event, when) for event in events], committed))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting())
        await committed

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                try:
                    async with self._engine.begin() as conn:
                        if self._transactions:
                            await audit_log.reads_only(conn)
                        await audit_log.append(conn, [entry for entries, _ in batch for entry in entries])
                except Exception as exc:
                    _settle(batch, exc)
                except BaseException:  # cancelled (the server stops): so are the reads waiting
                    for _, committed in batch + self._waiting:
                        committed.cancel()
                    self._waiting = []
                    raise
                else:
                    _settle(batch, None)
        finally:
            self._writer = None

    def _take(self) -> list[Waiting]:
        taken, size = 0, 0
        while taken < len(self._waiting) and (taken == 0 or size + len(self._waiting[taken][0]) <= BATCH):
            size += len(self._waiting[taken][0])
            taken += 1
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch


def _settle(batch: list[Waiting], error: Exception | None) -> None:
    for _, committed in batch:
        if committed.done():  # its request was cancelled (the client left)
            continue
        if error is None:
            committed.set_result(None)
        else:
            committed.set_exception(error)
