"""The worklist tables: one row per received prescription and the words it is found by
(what the rows hold and how a search uses them: bilan/prescription/worklist.py)."""

from typing import Any, Iterable

from sqlalchemy import Column, Select, String, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.tables import worklist, worklist_terms

SHORT_WORD = 2  # letters: a word this short is probed per row (see _matching)


def _size(column: Column[Any]) -> int:
    if not isinstance(column.type, String) or column.type.length is None:
        raise TypeError(f"{column.name} is not a text column of a fixed length")
    return column.type.length


# The longest text each text column holds, in characters.
SIZES: dict[str, int] = {column.name: column.type.length for column in worklist.columns
                         if isinstance(column.type, String) and column.type.length}
TERM_SIZE = _size(worklist_terms.c.term)


_INSERT = insert(worklist).returning(worklist.c.id)


async def add(conn: AsyncConnection, row: dict[str, Any], terms: Iterable[str]) -> int:
    """Store a new worklist row and its search words; its id."""
    row_id = (await conn.execute(_INSERT, row)).scalar_one()
    await conn.execute(insert(worklist_terms), [
        {"worklist_id": row_id, "term": term, "lab_finess": row["lab_finess"],
         "status": row["status"], "received_at": row["received_at"]}
        for term in terms])
    return int(row_id)


async def matching(conn: AsyncConnection, lab_finess: str, typed: list[str], status: str | None,
                   limit: int) -> list[dict[str, Any]]:
    """The lab's rows (in a state) with, for each typed word, a term it starts; newest first."""
    query = _matching(select(worklist), lab_finess, typed, status)
    rows = await conn.execute(
        query.order_by(worklist.c.received_at.desc(), worklist.c.id.desc()).limit(limit))
    return [dict(row._mapping) for row in rows]


async def unaddressed(conn: AsyncConnection, number: str, not_addressed: str) -> list[dict[str, Any]]:
    """The rows of a prescription number addressed to no lab (`not_addressed`) and still received."""
    rows = await conn.execute(select(worklist).where(
        worklist.c.requisition_value == number, worklist.c.lab_finess == not_addressed,
        worklist.c.status == "received"))
    return [dict(row._mapping) for row in rows]


async def by_task(conn: AsyncConnection, task_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(worklist).where(worklist.c.task_id == task_id))).first()
    return dict(row._mapping) if row else None


async def set_status(conn: AsyncConnection, row_id: int, status: str, order_lab: str | None) -> None:
    """The row's new status; with `order_lab`, the row and its words move to that lab."""
    values: dict[str, Any] = {"status": status}
    if order_lab:
        values["lab_finess"] = values["order_lab"] = order_lab
    await conn.execute(update(worklist_terms).where(worklist_terms.c.worklist_id == row_id)
                       .values(status=status, **({"lab_finess": order_lab} if order_lab else {})))
    await conn.execute(update(worklist).where(worklist.c.id == row_id).values(**values))


def _matching(query: Select[Any], lab_finess: str, typed: list[str], status: str | None) -> Select[Any]:
    """Rows of the lab (in a state) with, for each word, a term it starts. A word of one or two
    letters starts thousands of terms: each row is probed for it (EXISTS) rather than the
    matching ids listed (IN), which SQLite would otherwise do (bench/worklist.py)."""
    query = query.where(worklist.c.lab_finess == lab_finess)
    if status:
        query = query.where(worklist.c.status == status)
    t = worklist_terms.c
    for word in typed:
        starts = [t.term >= word, t.term < word + "\uffff"]
        if len(word) <= SHORT_WORD:
            query = query.where(exists().where(t.worklist_id == worklist.c.id, *starts))
        else:
            same = [t.lab_finess == lab_finess] + ([t.status == status] if status else [])
            query = query.where(worklist.c.id.in_(select(t.worklist_id).where(*same, *starts)))
    return query
