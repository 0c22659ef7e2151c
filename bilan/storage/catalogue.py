"""The lab's exam catalogue table (read from its CSV by bilan/prescription/catalogue.py): the
entries a prescription, a result or a trend looks up, typed as the table's columns (`Entry`,
`Band`).

An entry is a panel, a single test (both orderable) or a result reported inside a panel. Its
reference ranges by sex and age band are rows of their own (`catalogue_ranges`), replaced with
it.

Entries keep the lab's clinical order (`position`, their CSV's row order): a panel's results,
the chapters and the export follow it.
"""

from typing import Any, Iterable, TypedDict, cast

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bilan.storage.tables import catalogue, catalogue_ranges

c = catalogue.c


class Entry(TypedDict):
    """A catalogue entry: a panel, a single test, or a result reported inside a panel. Limits
    and ranges are decimal strings in `ucum`, as the lab wrote them ("4.50")."""

    local_code: str
    label_fr: str
    kind: str  # panel, test or result
    panel: str | None  # a result's panel (local code)
    loinc: str
    loinc_display: str
    chapter_loinc: str | None
    specimen: str | None
    ucum: str | None
    ref_low: str | None
    ref_high: str | None
    plausible_low: str | None
    plausible_high: str | None
    critical_low: str | None
    critical_high: str | None
    alt_ucum: str | None
    factor_to_alt: str | None
    sensitive: bool
    position: int
    source: str | None
    notes: str | None


class Band(TypedDict):
    """A reference range of an entry for a sex ("female", "male", "any") and an age band."""

    local_code: str
    sex: str
    age_min_years: str | None  # inclusive; None: from birth
    age_max_years: str | None  # exclusive; None: no upper bound
    ref_low: str | None
    ref_high: str | None
    notes: str | None


class LoadedEntry(Entry):
    """An entry as read from the lab's CSV, with its range rows."""

    ranges: list[Band]


def _entry(row: Any) -> Entry:
    return cast(Entry, dict(row._mapping))


def _band(row: Any) -> Band:
    return cast(Band, {k: v for k, v in row._mapping.items() if k != "id"})


async def replace(conn: AsyncConnection, rows: list[LoadedEntry]) -> int:
    """The whole catalogue, its range rows (each entry's "ranges") included."""
    await conn.execute(delete(catalogue_ranges))
    await conn.execute(delete(catalogue))
    if rows:
        await conn.execute(insert(catalogue), [{k: v for k, v in row.items() if k != "ranges"} for row in rows])
    bands = [band for row in rows for band in row["ranges"]]
    if bands:
        await conn.execute(insert(catalogue_ranges), bands)
    return len(rows)


async def ranges(conn: AsyncConnection, local_codes: Iterable[str]) -> dict[str, list[Band]]:
    """The range rows of these entries (sex, age band, limits), by local code."""
    codes = set(local_codes)
    if not codes:
        return {}
    r = catalogue_ranges.c
    found: dict[str, list[Band]] = {}
    for row in await conn.execute(select(catalogue_ranges).where(r.local_code.in_(codes)).order_by(r.id)):
        found.setdefault(row.local_code, []).append(_band(row))
    return found


async def known_loinc(conn: AsyncConnection, codes: Iterable[str]) -> set[str]:
    codes = set(codes)
    if not codes:
        return set()
    result = await conn.execute(select(c.loinc).where(c.loinc.in_(codes)))
    return {row.loinc for row in result}


async def orderable(conn: AsyncConnection, codes: Iterable[str]) -> dict[str, Entry]:
    """The catalogue entries (panels and single tests) of LOINC codes, by code."""
    codes = set(codes)
    if not codes:
        return {}
    result = await conn.execute(select(catalogue).where(c.loinc.in_(codes), c.kind != "result"))
    return {row.loinc: _entry(row) for row in result}


async def entry(conn: AsyncConnection, local_code: str) -> Entry | None:
    """An orderable catalogue entry (panel or single test) by its local code."""
    row = (await conn.execute(select(catalogue).where(c.local_code == local_code,
                                                      c.kind != "result"))).first()
    return _entry(row) if row else None


async def orderables(conn: AsyncConnection) -> list[Entry]:
    """Every orderable entry, by label: what a biologist may add."""
    rows = await conn.execute(select(catalogue).where(c.kind != "result").order_by(c.label_fr))
    return [_entry(row) for row in rows]


async def results_by_loinc(conn: AsyncConnection, codes: Iterable[str]) -> list[Entry]:
    """Every catalogue entry (orderable or reported inside a panel) with one of these codes."""
    codes = set(codes)
    if not codes:
        return []
    rows = await conn.execute(select(catalogue).where(c.loinc.in_(codes)))
    return [_entry(row) for row in rows]


async def entries_by_loinc(conn: AsyncConnection, codes: Iterable[str]) -> dict[str, Entry]:
    """Catalogue entries by LOINC code (for a code listed twice, the first by local code)."""
    codes = set(codes)
    if not codes:
        return {}
    rows = await conn.execute(select(catalogue).where(c.loinc.in_(codes)).order_by(c.local_code))
    found: dict[str, Entry] = {}
    for row in rows:
        found.setdefault(row.loinc, _entry(row))
    return found


async def unpanelled(conn: AsyncConnection, local_codes: Iterable[str]) -> Entry | None:
    """An entry other than a panel (a single test or a result) with one of these local codes."""
    row = (await conn.execute(select(catalogue).where(
        c.local_code.in_(set(local_codes)), c.kind != "panel"))).first()
    return _entry(row) if row else None


async def panel_results(conn: AsyncConnection, panels: list[str]) -> dict[str, list[Entry]]:
    """The catalogue's results of each panel (by local code), in the lab's clinical order."""
    if not panels:
        return {}
    c = catalogue.c
    rows = await conn.execute(select(catalogue).where(c.panel.in_(panels), c.kind == "result")
                              .order_by(c.position, c.local_code))
    found: dict[str, list[Entry]] = {}
    for row in rows:
        found.setdefault(row.panel, []).append(_entry(row))
    return found


async def chapter_order(conn: AsyncConnection) -> dict[str, int]:
    """Each chapter's rank in the catalogue: where its first entry stands (Hématologie first
    when the lab lists its NFS first)."""
    rows = await conn.execute(select(c.chapter_loinc, func.min(c.position)).where(c.chapter_loinc.is_not(None))
                              .group_by(c.chapter_loinc))
    return {chapter: first for chapter, first in rows}


async def everything(conn: AsyncConnection) -> tuple[list[Entry], list[Band]]:
    """The whole catalogue in its order, and its range rows entry by entry in that order (an
    entry's as loaded): what the export writes."""
    r = catalogue_ranges.c
    entries = await conn.execute(select(catalogue).order_by(c.position, c.local_code))
    bands = await conn.execute(select(catalogue_ranges).join(catalogue, c.local_code == r.local_code, isouter=True)
                               .order_by(c.position, r.local_code, r.id))
    return [_entry(row) for row in entries], [_band(row) for row in bands]


async def load(engine: AsyncEngine, rows: list[LoadedEntry]) -> int:
    """Replace the catalogue in its own transaction; how many entries."""
    async with engine.begin() as conn:
        return await replace(conn, rows)
