"""The lab reception's worklist: one row per received prescription, holding what the front
desk searches and shows, and the words it can be found by.

A search is one indexed query: every word typed must start one of the row's words (names
without accents, prescription number, INS, birth date in both spellings, prescriber).
"""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan import french
from bilan.prescription.identity import fold
from bilan.storage import worklist as store

NOT_ADDRESSED = ""  # lab_finess of a prescription addressed to no lab in particular
STATUSES = ("received", "imported", "cancelled")
MAX_WORDS = 6
MIN_NUMBER = 4  # characters: shorter text is no prescription number
_TERM_MAX = store.TERM_SIZE
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# What the row only shows or is searched by, cut to fit its column: a 300-letter name must not
# refuse the prescription. The keys (number, requester, patient, Task, lab) are never cut.
DISPLAY = ("patient_name", "birth_date", "sex", "ins", "identity_status", "prescriber_name")


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
        return french.date(self.birth_date)


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
    if _FULL_DATE.match(row.get("birth_date") or ""):
        found.add(french.date(row["birth_date"]))
    return {term[:_TERM_MAX] for term in found if term}


def fitted(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its display text cut to the sizes of its columns."""
    return {name: value[:store.SIZES[name]] if name in DISPLAY and isinstance(value, str) else value
            for name, value in row.items()}


async def add(conn: AsyncConnection, row: dict[str, Any], prescriber_words: Iterable[str]) -> int:
    """Store a new worklist row and its search words (from the whole names); its id."""
    return await store.add(conn, fitted(row), sorted(terms(row, prescriber_words)))


async def search(conn: AsyncConnection, lab_finess: str, text: str, status: str | None = None,
                 limit: int = 25) -> list[WorklistRow]:
    """The lab's rows matching every typed word, newest first; plus, when the text is a whole
    prescription number, that prescription if it is addressed to no lab and not imported yet
    (the patient brought it on paper)."""
    rows = [_row(r) for r in await store.matching(conn, lab_finess, words(text), status, limit)]
    number = text.strip()
    if len(number) >= MIN_NUMBER and " " not in number and status in (None, "received"):
        rows = [_row(r) for r in await store.unaddressed(conn, number, NOT_ADDRESSED)] + rows
    return rows


async def by_task(conn: AsyncConnection, task_id: str) -> WorklistRow | None:
    row = await store.by_task(conn, task_id)
    return _row(row) if row else None


async def set_status(conn: AsyncConnection, row_id: int, status: str, order_lab: str | None) -> None:
    """The row's new status; an imported row moves to the importing lab's worklist."""
    await store.set_status(conn, row_id, status, order_lab)


def _row(row: dict[str, Any]) -> WorklistRow:
    return WorklistRow(**{name: row[name] for name in WorklistRow.__dataclass_fields__})
