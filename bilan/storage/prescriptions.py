"""The prescriptions received, one row each: what makes sending one again idempotent."""

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.tables import prescriptions

_FIND = select(prescriptions.c.exam_codes, prescriptions.c.response).where(
    prescriptions.c.requisition_system == bindparam("system"), prescriptions.c.requisition_value == bindparam("value"),
    prescriptions.c.requester == bindparam("requester"))


async def find(conn: AsyncConnection, key: tuple[str, str, str]) -> Any:
    """(exam_codes, response) of the prescription (requisition system, value, requester)."""
    system, value, requester = key
    return (await conn.execute(_FIND, {"system": system, "value": value, "requester": requester})).first()


async def record(conn: AsyncConnection, key: tuple[str, str, str], patient: str, exam_codes: str,
                 received_at: datetime, response: dict[str, Any]) -> None:
    await conn.execute(insert(prescriptions), {
        "requisition_system": key[0], "requisition_value": key[1], "requester": key[2], "patient": patient,
        "exam_codes": exam_codes, "received_at": received_at, "response": response})
