"""The lab reception's worklist: one row per received prescription, holding what the front
desk searches and shows, and the words it can be found by.

A search is one indexed query: every word typed must start one of the row's words (names
without accents, prescription number, INS, birth date in both spellings, prescriber).
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import Select, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.prescription.identity import fold
from bilan.storage.tables import worklist, worklist_terms

NOT_ADDRESSED = ""  # lab_finess of a prescription addressed to no lab in particular
STATUSES = ("received", "imported", "cancelled")
MAX_WORDS = 6
SHORT_WORD = 2  # letters
MIN_NUMBER = 4  # characters: shorter text is no prescription number
_TERM_MAX = 64


@dataclass(frozen=True)
class WorklistRow:
    id: int
    requisition_system: str
    requisition_value: str
    requester: str
    lab_finess: str
    received_at: datetime
    task_id: str
    patient: str
    patient_name: str
    birth_date: str | None
    sex: str | None
    ins: str | None
    identity_status: str | None
    prescriber_name: str
    exam_count: int
    urgent: bool
    status: str
    order_lab: str | None

    @property
    def birth_date_fr(self) -> str:
        if not self.birth_date:
            return ""
        year, month, day = self.birth_date.split("-")
        return f"{day}/{month}/{year}"


def words(text: str) -> list[str]:
    """What a typed query looks for: folded words, a French date as written."""
    return [fold(word)[:_TERM_MAX] for word in text.split()[:MAX_WORDS] if fold(word)]


def terms(row: dict[str, Any], prescriber_words: Iterable[str]) -> set[str]:
    """The words a row is found by."""
    found = {fold(row["requisition_value"])}
    for text in (row["patient_name"], *prescriber_words):
        for word in fold(text).split():
            found.add(word)
            found.update(part for part in re.split(r"[-'’]", word) if part)
    for value in (row.get("ins"), row.get("birth_date")):
        if value:
            found.add(value)
    if row.get("birth_date"):
        year, month, day = row["birth_date"].split("-")
        found.add(f"{day}/{month}/{year}")
    return {term[:_TERM_MAX] for term in found if term}


async def add(conn: AsyncConnection, row: dict[str, Any], prescriber_words: Iterable[str]) -> int:
    """Store a new worklist row and its search words; its id."""
    row_id = (await conn.execute(insert(worklist).values(**row).returning(worklist.c.id))).scalar_one()
    await conn.execute(insert(worklist_terms), [
        {"worklist_id": row_id, "term": term, "lab_finess": row["lab_finess"],
         "status": row["status"], "received_at": row["received_at"]}
        for term in sorted(terms(row, prescriber_words))])
    return row_id


async def search(conn: AsyncConnection, lab_finess: str, text: str, status: str | None = None,
                 limit: int = 25) -> list[WorklistRow]:
    """The lab's rows matching every typed word, newest first; plus, when the text is a whole
    prescription number, that prescription if it is addressed to no lab and not imported yet
    (the patient brought it on paper)."""
    query = _matching(select(worklist), lab_finess, words(text), status)
    rows = [_row(r) for r in await conn.execute(
        query.order_by(worklist.c.received_at.desc(), worklist.c.id.desc()).limit(limit))]
    number = text.strip()
    if len(number) >= MIN_NUMBER and " " not in number and status in (None, "received"):
        unaddressed = await conn.execute(select(worklist).where(
            worklist.c.requisition_value == number, worklist.c.lab_finess == NOT_ADDRESSED,
            worklist.c.status == "received"))
        rows = [_row(r) for r in unaddressed] + rows
    return rows


async def by_task(conn: AsyncConnection, task_id: str) -> WorklistRow | None:
    row = (await conn.execute(select(worklist).where(worklist.c.task_id == task_id))).first()
    return _row(row) if row else None


async def set_status(conn: AsyncConnection, row_id: int, status: str, order_lab: str | None) -> None:
    """The row's new status; an imported row moves to the importing lab's worklist."""
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


def _row(row: Any) -> WorklistRow:
    return WorklistRow(**{name: getattr(row, name) for name in WorklistRow.__dataclass_fields__})
