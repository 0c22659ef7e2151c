"""The lab's exam catalogue table (read from its CSV by bilan/prescription/catalogue.py): the
entries a prescription, a result or a trend looks up, as dicts of the table's columns.

An entry is a panel, a single test (both orderable) or a result reported inside a panel. Its
reference ranges by sex and age band are rows of their own (`catalogue_ranges`), replaced with
it.
"""

from typing import Any, Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bilan.storage.tables import catalogue, catalogue_ranges

c = catalogue.c


async def replace(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """The whole catalogue, its range rows (each entry's "ranges") included."""
    await conn.execute(delete(catalogue_ranges))
    await conn.execute(delete(catalogue))
    if rows:
        await conn.execute(insert(catalogue), [{k: v for k, v in row.items() if k != "ranges"} for row in rows])
    bands = [band for row in rows for band in row.get("ranges") or []]
    if bands:
        await conn.execute(insert(catalogue_ranges), bands)
    return len(rows)


async def ranges(conn: AsyncConnection, local_codes: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The range rows of these entries (sex, age band, limits), by local code."""
    codes = set(local_codes)
    if not codes:
        return {}
    r = catalogue_ranges.c
    found: dict[str, list[dict[str, Any]]] = {}
    for row in await conn.execute(select(catalogue_ranges).where(r.local_code.in_(codes)).order_by(r.id)):
        found.setdefault(row.local_code, []).append(dict(row._mapping))
    return found


async def known_loinc(conn: AsyncConnection, codes: Iterable[str]) -> set[str]:
    codes = set(codes)
    if not codes:
        return set()
    result = await conn.execute(select(c.loinc).where(c.loinc.in_(codes)))
    return {row.loinc for row in result}


async def orderable(conn: AsyncConnection, codes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The catalogue entries (panels and single tests) of LOINC codes, by code."""
    codes = set(codes)
    if not codes:
        return {}
    result = await conn.execute(select(catalogue).where(c.loinc.in_(codes), c.kind != "result"))
    return {row.loinc: dict(row._mapping) for row in result}


async def entry(conn: AsyncConnection, local_code: str) -> dict[str, Any] | None:
    """An orderable catalogue entry (panel or single test) by its local code."""
    row = (await conn.execute(select(catalogue).where(c.local_code == local_code,
                                                      c.kind != "result"))).first()
    return dict(row._mapping) if row else None


async def orderables(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every orderable entry, by label: what a biologist may add."""
    rows = await conn.execute(select(catalogue).where(c.kind != "result").order_by(c.label_fr))
    return [dict(row._mapping) for row in rows]


async def results_by_loinc(conn: AsyncConnection, codes: Iterable[str]) -> list[dict[str, Any]]:
    """Every catalogue entry (orderable or reported inside a panel) with one of these codes."""
    codes = set(codes)
    if not codes:
        return []
    rows = await conn.execute(select(catalogue).where(c.loinc.in_(codes)))
    return [dict(row._mapping) for row in rows]


async def entries_by_loinc(conn: AsyncConnection, codes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Catalogue entries by LOINC code (for a code listed twice, the first by local code)."""
    codes = set(codes)
    if not codes:
        return {}
    rows = await conn.execute(select(catalogue).where(c.loinc.in_(codes)).order_by(c.local_code))
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        found.setdefault(row.loinc, dict(row._mapping))
    return found


async def unpanelled(conn: AsyncConnection, local_codes: Iterable[str]) -> dict[str, Any] | None:
    """An entry other than a panel (a single test or a result) with one of these local codes."""
    row = (await conn.execute(select(catalogue).where(
        c.local_code.in_(set(local_codes)), c.kind != "panel"))).first()
    return dict(row._mapping) if row else None


async def panel_results(conn: AsyncConnection, panels: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The catalogue's results of each panel (by local code), by label."""
    if not panels:
        return {}
    c = catalogue.c
    rows = await conn.execute(select(catalogue).where(c.panel.in_(panels), c.kind == "result")
                              .order_by(c.label_fr))
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row.panel, []).append(dict(row._mapping))
    return found


async def load(engine: AsyncEngine, rows: list[dict[str, Any]]) -> int:
    """Replace the catalogue in its own transaction; how many entries."""
    async with engine.begin() as conn:
        return await replace(conn, rows)
