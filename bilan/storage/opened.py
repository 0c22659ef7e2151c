"""When someone last opened what: read from the audit trail (bilan/storage/audit_log.py), which
already records each read with the reader's subject and the resources read, so a "nouveau"
mark needs no table of its own."""

from datetime import datetime
from typing import Iterable

from sqlalchemy import String, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.tables import audit_log

log = audit_log.c


async def last_read(conn: AsyncConnection, subject: str, references: Iterable[str],
                    since: datetime) -> dict[str, datetime]:
    """For each of these "Type/id" that `subject` read since `since`, when they last read it."""
    wanted = sorted(set(references))
    if not wanted:
        return {}
    text = cast(log.content, String)
    found: dict[str, datetime] = {}
    targets = set(wanted)
    for start in range(0, len(wanted), _AT_ONCE):
        # The text match only narrows the rows; the entities are checked below.
        stmt = (select(log.recorded, log.content)
                .where(log.altid == subject, log.subtype == "read", log.outcome == "0", log.recorded >= since,
                       or_(*(text.contains(f'"{reference}"') for reference in wanted[start:start + _AT_ONCE]))))
        for recorded, content in await conn.execute(stmt):
            for entity in content.get("entity", []):
                reference = (entity.get("what") or {}).get("reference")
                if reference in targets and (reference not in found or found[reference] < recorded):
                    found[reference] = recorded
    return found


_AT_ONCE = 100  # references matched by one statement (each is a LIKE of an OR)
