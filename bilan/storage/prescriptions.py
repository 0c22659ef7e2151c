"""The prescriptions received, one row each: what makes sending one again idempotent."""

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.tables import prescriptions


async def find(conn: AsyncConnection, key: tuple[str, str, str]) -> Any:
    """(exam_codes, response) of the prescription (requisition system, value, requester)."""
    p = prescriptions.c
    return (await conn.execute(select(p.exam_codes, p.response).where(
        p.requisition_system == key[0], p.requisition_value == key[1], p.requester == key[2]
    ))).first()


async def record(conn: AsyncConnection, key: tuple[str, str, str], patient: str, exam_codes: str,
                 received_at: datetime, response: dict[str, Any]) -> None:
    await conn.execute(insert(prescriptions).values(
        requisition_system=key[0], requisition_value=key[1], requester=key[2], patient=patient,
        exam_codes=exam_codes, received_at=received_at, response=response))
