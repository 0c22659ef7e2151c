"""What bilan sends after a change: Subscriptions of practice and lab software, and the outbox
rows that carry webhooks, mails and the shared record's feed, read from the database."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.fhir.dates import utc_now
from bilan.notifications import outbox
from bilan.notifications.outbox import OutboxItem
from bilan.settings import Settings
from bilan.storage.database import create_engine
from tests.helpers import run

T = TypeVar("T")


def subscribe(api: httpx.Client, criteria: str, endpoint: str, **channel: Any) -> httpx.Response:
    return api.post("Subscription", json={
        "resourceType": "Subscription", "status": "requested", "reason": "Suivi des prescriptions",
        "criteria": criteria, "channel": {"type": "rest-hook", "endpoint": endpoint, **channel}})


def subscribed(api: httpx.Client, criteria: str, endpoint: str, **channel: Any) -> str:
    response = subscribe(api, criteria, endpoint, **channel)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "active"
    return response.json()["id"]


def in_database(settings: Settings, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` on a connection of its own, committed, as another bilan process would."""
    async def work_committed() -> T:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()
    return run(work_committed())


def notifications(settings: Settings, *about: str) -> list[OutboxItem]:
    """The outbox rows about these prescriptions ("Task/id"), oldest first."""
    return in_database(settings, lambda conn: outbox.for_about(conn, about))


def settled(settings: Settings, task_id: str, resource: str) -> list[OutboxItem]:
    """What bilan itself queued with `resource` for an order (its mail, its shared-record feed;
    not what Subscriptions matched), once none is still pending: each delivered or given up.
    Empty until then."""
    rows = [n for n in notifications(settings, f"Task/{task_id}")
            if n.resource == resource and n.subscription is None]
    return rows if rows and all(n.status != "pending" for n in rows) else []


def mail_to_prescriber(settings: Settings, to: str, about: str) -> int:
    return in_database(settings, lambda conn: outbox.enqueue_mail(
        conn, to, "bilan — Demande d'adaptation (prescription n° P-0001)",
        "Le laboratoire vous a écrit au sujet de la prescription n° P-0001 :\n\n"
        "Glycémie à jeun ?\n",
        about=about, now=utc_now()))
