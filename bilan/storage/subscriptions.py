"""The Subscriptions that may concern a change, read from their search rows (what a change
triggers: bilan/notifications/matching.py)."""

from functools import lru_cache
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.repository import OWNER
from bilan.storage.tables import resources, search_index


async def active_on(conn: AsyncConnection, resource_types: set[str]) -> list[tuple[str, dict[str, Any], str]]:
    """(id, content, owner key) of the active Subscriptions whose criteria name one of these
    types: one query over the Subscriptions' search rows (status, criteria, owner)."""
    rows = await conn.execute(_active_on(tuple(sorted(resource_types))))
    return [(row.id, row.content or {}, row.owner or "") for row in rows]


@lru_cache(maxsize=256)
def _active_on(resource_types: tuple[str, ...]) -> Select[Any]:
    """Built once per set of types: every write asks, and building the statement cost more than
    running it (a bundle's writes usually find no Subscription at all)."""
    status, criteria, owner = (search_index.alias(name) for name in ("st", "cr", "ow"))
    return (
        select(resources.c.id, resources.c.content, owner.c.value.label("owner"))
        .select_from(status)
        .join(criteria, and_(criteria.c.resource_type == "Subscription",
                             criteria.c.resource_id == status.c.resource_id,
                             criteria.c.name == "criteria"))
        .join(resources, and_(resources.c.resource_type == "Subscription",
                              resources.c.id == status.c.resource_id))
        .join(owner, and_(owner.c.resource_type == "Subscription",
                          owner.c.resource_id == status.c.resource_id, owner.c.name == OWNER))
        .where(status.c.resource_type == "Subscription", status.c.name == "status",
               status.c.value == "active",
               or_(*(criteria.c.exact.startswith(f"{t}?", autoescape=True) for t in resource_types))))
