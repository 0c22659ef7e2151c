"""The audit trail as stored: what the tests read to prove an access was recorded."""

from typing import Any

from sqlalchemy import select

from bilan.settings import Settings
from bilan.storage.database import create_engine
from bilan.storage.tables import audit_log
from tests.helpers import run


def stored_events(settings: Settings, altid: str | None = None) -> list[dict[str, Any]]:
    """Every AuditEvent stored, or those of one caller (its subject)."""
    async def found() -> list[dict[str, Any]]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                stmt = select(audit_log.c.content)
                if altid is not None:
                    stmt = stmt.where(audit_log.c.altid == altid)
                return [row.content for row in await conn.execute(stmt)]
        finally:
            await engine.dispose()
    return run(found())
