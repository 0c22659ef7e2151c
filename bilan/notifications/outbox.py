"""The outbox: notifications to deliver, written in the transaction of the change they announce.

A row is queued with the change, so it exists if and only if the change committed; the
delivery worker (delivery.py) sends it after commit and records the outcome on the row, which
the lab sees (pending, delivered, failed). The rows, their leases among several workers and
the outcomes are bilan/storage/outbox.py's; what is queued and when a failed one is tried
again are this module's.

No job library: the queue must be written by the same SQLAlchemy transaction as the change,
on SQLite and on PostgreSQL. procrastinate and saq's PostgreSQL queue are PostgreSQL only;
arq and dramatiq need Redis (or RabbitMQ); huey has SQLite and PostgreSQL storage, but
through its own synchronous connection, so its enqueue commits apart from our transaction
(a job for a change that rolled back, or no job for one that committed).
"""

import base64
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage import outbox as store

# The queue's rows and how they are queued and found, offered here with the rest.
from bilan.storage.outbox import DELIVERED as DELIVERED
from bilan.storage.outbox import FAILED as FAILED
from bilan.storage.outbox import PENDING as PENDING
from bilan.storage.outbox import OutboxItem as OutboxItem
from bilan.storage.outbox import enqueue as enqueue
from bilan.storage.outbox import for_about as for_about

REST_HOOK = "rest-hook"
EMAIL = "email"


async def enqueue_mail(conn: AsyncConnection, to: str, subject: str, text: str, *,
                       attachments: Iterable[tuple[str, str, bytes]] = (),
                       resource: str | None = None, about: str | None = None,
                       now: datetime) -> int:
    """Queue a plain-text e-mail (e.g. to a prescriber's MSSanté address), with its
    attachments as (file name, media type, content)."""
    payload: dict[str, Any] = {"subject": subject, "text": text}
    if attachments:
        payload["attachments"] = encoded_attachments(attachments)
    return await enqueue(conn, EMAIL, to, payload, resource=resource, about=about, now=now)


def encoded_attachments(attachments: Iterable[tuple[str, str, bytes]]) -> list[dict[str, str]]:
    """Attachments as a mail's outbox row keeps them."""
    return [{"filename": name, "content_type": kind, "data": base64.b64encode(data).decode("ascii")}
            for name, kind, data in attachments]


def backoff(attempts: int, max_backoff: float) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4... up to the cap."""
    return min(2.0 ** (attempts - 1), max_backoff)


def after_failure(item: OutboxItem, now: datetime, *, max_attempts: int,
                  max_backoff: float = 3600) -> tuple[str, datetime]:
    """The status of a row whose attempt just failed (pending again, or failed after
    max_attempts) and when to try it next."""
    attempts = item.attempts + 1
    status = FAILED if attempts >= max_attempts else PENDING
    return status, now + timedelta(seconds=backoff(attempts, max_backoff))


async def retry_later(conn: AsyncConnection, item: OutboxItem, error: str, now: datetime, *,
                      max_attempts: int, max_backoff: float = 3600) -> str:
    """Record a failed try: pending again after a back-off, or failed after max_attempts.
    The row's new status ("" if the lease was lost meanwhile)."""
    status, when = after_failure(item, now, max_attempts=max_attempts, max_backoff=max_backoff)
    recorded = await store.mark_failed(conn, item, error, status=status, next_attempt_at=when)
    return status if recorded else ""
