"""The outbox table: notifications queued in the transaction of the change they announce, then
leased by the delivery workers, which record each attempt's outcome on the row (what is queued
and when it is tried again: bilan/notifications/outbox.py).

Several worker processes share one database. A worker claims due rows by setting a lease
(`lease_until`) in one conditional UPDATE that repeats the due conditions: on PostgreSQL, a
worker that lost the race re-reads the row after the winner commits and no longer matches
(and SKIP LOCKED spares it the wait); on SQLite, writers are serial. A worker that dies
mid-send leaves a lease that runs out, and another worker sends the row again: delivery is
at least once, never zero times.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bilan.storage.tables import outbox

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

o = outbox.c


@dataclass(frozen=True)
class OutboxItem:
    id: int
    channel: str
    target: str
    subscription: str | None
    resource: str | None
    about: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _item(row: Any) -> OutboxItem:
    return OutboxItem(**{name: getattr(row, name) for name in OutboxItem.__dataclass_fields__})


async def enqueue(conn: AsyncConnection, channel: str, target: str, payload: dict[str, Any], *,
                  subscription: str | None = None, resource: str | None = None,
                  about: str | None = None, now: datetime, due: datetime | None = None) -> int:
    """Queue a notification in the caller's transaction, to send from `due` (now by default);
    its id."""
    result = await conn.execute(insert(outbox).values(
        channel=channel, target=target, subscription=subscription, resource=resource,
        about=about, payload=payload, status=PENDING, attempts=0, next_attempt_at=due or now,
        lease_until=None, last_error=None, created_at=now, delivered_at=None))
    key = result.inserted_primary_key
    assert key is not None  # a single-row insert always has its key
    return int(key[0])


async def waiting(conn: AsyncConnection, channel: str, target: str, about: str,
                  now: datetime) -> list[OutboxItem]:
    """The rows of this channel to `target` about `about` not yet due, never tried and not
    leased, oldest first; locked until the caller's transaction ends (PostgreSQL; SQLite's
    writers are serial), so that a worker cannot claim one while the caller changes it."""
    query = (select(outbox).where(o.channel == channel, o.target == target, o.about == about,
                                  o.status == PENDING, o.attempts == 0, o.lease_until.is_(None),
                                  o.next_attempt_at > now)
             .order_by(o.created_at, o.id))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return [_item(row) for row in await conn.execute(query)]


async def rewrite_waiting(conn: AsyncConnection, item: OutboxItem, payload: dict[str, Any], *,
                          resource: str | None, due: datetime) -> bool:
    """Give a row still waiting (as `waiting` found it) a new payload, resource and due time;
    False if it is no longer waiting (a worker claimed it meanwhile)."""
    result = await conn.execute(
        update(outbox).where(o.id == item.id, o.status == PENDING, o.attempts == 0,
                             o.lease_until.is_(None))
        .values(payload=payload, resource=resource, next_attempt_at=due))
    return result.rowcount == 1


async def claim_due(conn: AsyncConnection, now: datetime, lease_seconds: float, limit: int, *,
                    per_target: int | None = None,
                    held: Mapping[str, int] | None = None) -> list[OutboxItem]:
    """Lease up to `limit` due rows to this worker until now + lease_seconds.

    With `per_target`, no more rows of one target than that, counting those the worker already
    `held` (by target): a target at its limit is not claimed from, and rows beyond it are given
    back in the same transaction, due as before.
    """
    held = held or {}
    due = [o.status == PENDING, o.next_attempt_at <= now,
           or_(o.lease_until.is_(None), o.lease_until < now)]
    full = sorted(target for target, count in held.items()
                  if per_target is not None and count >= per_target)
    if full:
        due.append(o.target.not_in(full))
    candidates = select(o.id).where(*due).order_by(o.next_attempt_at, o.id).limit(limit)
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    rows = await conn.execute(
        update(outbox).where(o.id.in_(candidates), *due)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
        .returning(*outbox.c))
    items = sorted((_item(row) for row in rows), key=lambda item: (item.next_attempt_at, item.id))
    if per_target is None:
        return items
    kept: list[OutboxItem] = []
    extra: list[int] = []
    counts = Counter(held)
    for item in items:
        if counts[item.target] < per_target:
            kept.append(item)
            counts[item.target] += 1
        else:
            extra.append(item.id)
    if extra:
        await conn.execute(update(outbox).where(o.id.in_(extra)).values(lease_until=None))
    return kept


async def mark_delivered(conn: AsyncConnection, item: OutboxItem, now: datetime) -> bool:
    """Record a delivery; False if the lease was lost meanwhile (another worker has the row)."""
    result = await conn.execute(
        update(outbox).where(*_leased(item))
        .values(status=DELIVERED, attempts=item.attempts + 1, lease_until=None,
                last_error=None, delivered_at=now))
    return result.rowcount == 1


async def mark_failed(conn: AsyncConnection, item: OutboxItem, error: str, *, status: str,
                      next_attempt_at: datetime) -> bool:
    """Record a failed attempt, the row's new status (pending again or failed) and when to try
    next; False if the lease was lost meanwhile."""
    result = await conn.execute(
        update(outbox).where(*_leased(item))
        .values(status=status, attempts=item.attempts + 1, lease_until=None,
                last_error=error[:1000], next_attempt_at=next_attempt_at))
    return result.rowcount == 1


async def for_about(conn: AsyncConnection, about_refs: Iterable[str]) -> list[OutboxItem]:
    """The notifications about these prescriptions ("Task/id"), oldest first."""
    refs = list(set(about_refs))
    if not refs:
        return []
    rows = await conn.execute(select(outbox).where(o.about.in_(refs)).order_by(o.created_at, o.id))
    return [_item(row) for row in rows]


def _leased(item: OutboxItem) -> tuple[Any, ...]:
    # The lease's end is the claim's token: a worker whose lease ran out and was taken over
    # must not overwrite what the new holder records.
    return (o.id == item.id, o.status == PENDING, o.lease_until == item.lease_until)


class Deliveries:
    """The delivery worker's side of the outbox, each call a short transaction of its own:
    none stays open over a send (a hanging endpoint must hold no connection, nor, on SQLite,
    the write lock)."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def claim_due(self, now: datetime, lease_seconds: float, limit: int, *,
                        per_target: int | None = None,
                        held: Mapping[str, int] | None = None) -> list[OutboxItem]:
        async with self.engine.begin() as conn:
            return await claim_due(conn, now, lease_seconds, limit, per_target=per_target, held=held)

    async def mark_delivered(self, item: OutboxItem, now: datetime) -> bool:
        async with self.engine.begin() as conn:
            return await mark_delivered(conn, item, now)

    async def mark_failed(self, item: OutboxItem, error: str, *, status: str,
                          next_attempt_at: datetime) -> bool:
        async with self.engine.begin() as conn:
            return await mark_failed(conn, item, error, status=status, next_attempt_at=next_attempt_at)
