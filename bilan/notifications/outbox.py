"""The outbox: notifications to deliver, written in the transaction of the change they announce.

A row is queued with the change, so it exists if and only if the change committed; the
delivery worker (delivery.py) sends it after commit and records the outcome on the row, which
the lab sees (pending, delivered, failed).

Several worker processes share one database. A worker claims due rows by setting a lease
(`lease_until`) in one conditional UPDATE that repeats the due conditions: on PostgreSQL, a
worker that lost the race re-reads the row after the winner commits and no longer matches
(and SKIP LOCKED spares it the wait); on SQLite, writers are serial. A worker that dies
mid-send leaves a lease that runs out, and another worker sends the row again: delivery is
at least once, never zero times.

No job library: the queue must be written by the same SQLAlchemy transaction as the change,
on SQLite and on PostgreSQL. procrastinate and saq's PostgreSQL queue are PostgreSQL only;
arq and dramatiq need Redis (or RabbitMQ); huey has SQLite and PostgreSQL storage, but
through its own synchronous connection, so its enqueue commits apart from our transaction
(a job for a change that rolled back, or no job for one that committed).
"""

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.tables import outbox

REST_HOOK = "rest-hook"
EMAIL = "email"
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
    return int(result.inserted_primary_key[0])


async def enqueue_mail(conn: AsyncConnection, to: str, subject: str, text: str, *,
                       attachments: Iterable[tuple[str, str, bytes]] = (),
                       resource: str | None = None, about: str | None = None,
                       now: datetime) -> int:
    """Queue a plain-text e-mail (e.g. to a prescriber's MSSanté address), with its
    attachments as (file name, media type, content)."""
    payload: dict[str, Any] = {"subject": subject, "text": text}
    if attachments:
        payload["attachments"] = [{"filename": name, "content_type": kind,
                                   "data": base64.b64encode(data).decode("ascii")}
                                  for name, kind, data in attachments]
    return await enqueue(conn, EMAIL, to, payload, resource=resource, about=about, now=now)


async def claim_due(conn: AsyncConnection, now: datetime, lease_seconds: float,
                    limit: int) -> list[OutboxItem]:
    """Lease up to `limit` due rows to this worker until now + lease_seconds."""
    due = (o.status == PENDING, o.next_attempt_at <= now,
           or_(o.lease_until.is_(None), o.lease_until < now))
    candidates = select(o.id).where(*due).order_by(o.next_attempt_at, o.id).limit(limit)
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    rows = await conn.execute(
        update(outbox).where(o.id.in_(candidates), *due)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
        .returning(*outbox.c))
    return sorted((_item(row) for row in rows), key=lambda item: (item.next_attempt_at, item.id))


async def mark_delivered(conn: AsyncConnection, item: OutboxItem, now: datetime) -> bool:
    """Record a delivery; False if the lease was lost meanwhile (another worker has the row)."""
    result = await conn.execute(
        update(outbox).where(*_leased(item))
        .values(status=DELIVERED, attempts=item.attempts + 1, lease_until=None,
                last_error=None, delivered_at=now))
    return result.rowcount == 1


def backoff(attempts: int, max_backoff: float) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4... up to the cap."""
    return min(2.0 ** (attempts - 1), max_backoff)


async def retry_later(conn: AsyncConnection, item: OutboxItem, error: str, now: datetime, *,
                      max_attempts: int, max_backoff: float = 3600) -> str:
    """Record a failed try: pending again after a back-off, or failed after max_attempts.
    The row's new status ("" if the lease was lost meanwhile)."""
    attempts = item.attempts + 1
    status = FAILED if attempts >= max_attempts else PENDING
    result = await conn.execute(
        update(outbox).where(*_leased(item))
        .values(status=status, attempts=attempts, lease_until=None, last_error=error[:1000],
                next_attempt_at=now + timedelta(seconds=backoff(attempts, max_backoff))))
    return status if result.rowcount == 1 else ""


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
