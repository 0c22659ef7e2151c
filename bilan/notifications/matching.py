"""Which Subscriptions a change concerns, and the rest-hook notification it queues for each.

The Notifier observes every write (bilan/records/pipeline.py), inside its transaction, so a
notification is queued if and only if the change commits. A save touching only types that no
active Subscription watches costs one indexed query; AuditEvents cost none.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.auth import access
from bilan.auth.caller import Caller
from bilan.fhir.dates import date_range, utc_now
from bilan.fhir.outcomes import FhirError
from bilan.fhir.searchparams import reference_target
from bilan.notifications import subscriptions
from bilan.notifications.outbox import REST_HOOK, enqueue
from bilan.records.pipeline import Work
from bilan.storage import subscriptions as stored_subscriptions
from bilan.storage.repository import Stored
from bilan.storage.search import search

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watch:
    """An active Subscription, as matching needs it."""

    id: str
    resource_type: str
    criteria: str
    channel: dict[str, Any]
    owner: Caller


class Notifier:
    def __init__(self, base_url: str):
        self.base_url = base_url

    async def on_saved(self, work: Work, stored: list[Stored]) -> None:
        changed = [s for s in stored if not s.deleted
                   and s.resource_type not in subscriptions.UNNOTIFIED]
        if not changed:
            return
        watches = await active_watches(work.conn, {s.resource_type for s in changed})
        for version in changed:
            for watch in watches:
                if watch.resource_type == version.resource_type and \
                        await self.matches(work.conn, watch, version):
                    await enqueue(work.conn, REST_HOOK, watch.channel["endpoint"],
                                  rest_hook(watch.channel, version), subscription=watch.id,
                                  resource=f"{version.resource_type}/{version.id}",
                                  about=about(version), now=version.last_updated)

    async def matches(self, conn: AsyncConnection, watch: Watch, version: Stored) -> bool:
        """Whether the new version meets the criteria and the Subscription's owner may see it."""
        try:
            query = subscriptions.criteria_query(watch.criteria, [("_id", version.id)])
        except FhirError:  # a criteria bilan no longer reads (a parameter was withdrawn)
            log.warning("Subscription %s: criteria no longer understood, skipped", watch.id)
            return False
        query.summary_count = True
        found = await search(conn, query, self.base_url,
                             restrict=lambda t: access.visible(watch.owner, t))
        return found.total > 0


async def active_watches(conn: AsyncConnection, resource_types: set[str]) -> list[Watch]:
    """The active Subscriptions on these types, with their owners (one indexed query); not
    those that have ended or whose owner bilan no longer knows."""
    now = utc_now()
    watches = []
    for subscription_id, content, owner in await stored_subscriptions.active_on(conn, resource_types):
        caller = access.caller_of_owner(owner)
        if caller is None or _ended(content, now):
            continue
        watches.append(Watch(subscription_id, content["criteria"].partition("?")[0], content["criteria"],
                             content.get("channel") or {}, caller))
    return watches


def rest_hook(channel: dict[str, Any], version: Stored) -> dict[str, Any]:
    """The HTTP request R4 prescribes: without payload, an empty POST to the endpoint; with
    one, a PUT of the resource to [endpoint]/[type]/[id]."""
    headers = subscriptions.headers({"channel": channel})
    endpoint = channel["endpoint"]
    payload = channel.get("payload")
    if payload is None:
        return {"method": "POST", "url": endpoint, "headers": headers, "body": None,
                "content_type": None}
    return {"method": "PUT", "url": f"{endpoint.rstrip('/')}/{version.resource_type}/{version.id}",
            "headers": headers, "body": version.content, "content_type": payload}


def about(version: Stored) -> str | None:
    """The prescription ("Task/id") a change concerns, for the lab's view of notifications."""
    if version.resource_type == "Task":
        return f"Task/{version.id}"
    if version.resource_type == "Communication":
        for part in version.content.get("partOf") or []:
            target = reference_target(part)
            if target and target[0] == "Task":
                return f"Task/{target[1]}"
    return None


def _ended(subscription: dict[str, Any], now: datetime) -> bool:
    end = subscription.get("end")
    if not end:
        return False
    try:
        return date_range(end)[0] <= now
    except ValueError:
        return False
