"""The lab's exam catalogue: loaded from the LOINC-coded CSV, looked up at intake."""

import csv
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.tables import catalogue

_COLUMNS = ("local_code", "label_fr", "kind", "panel", "loinc", "loinc_display", "chapter_loinc",
            "specimen", "ucum", "ref_low", "ref_high", "alt_ucum", "factor_to_alt")


def read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = []
        for line in csv.DictReader(handle):
            row: dict[str, Any] = {c: (line.get(c) or None) for c in _COLUMNS}
            row["sensitive"] = (line.get("sensitive") or "").strip().lower() == "yes"
            rows.append(row)
    return rows


async def replace(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    await conn.execute(delete(catalogue))
    if rows:
        await conn.execute(insert(catalogue), rows)
    return len(rows)


async def known_loinc(conn: AsyncConnection, codes: Iterable[str]) -> set[str]:
    codes = set(codes)
    if not codes:
        return set()
    result = await conn.execute(select(catalogue.c.loinc).where(catalogue.c.loinc.in_(codes)))
    return {row.loinc for row in result}


async def orderable(conn: AsyncConnection, codes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The catalogue entries (panels and single tests) of LOINC codes, by code."""
    codes = set(codes)
    if not codes:
        return {}
    result = await conn.execute(select(catalogue).where(catalogue.c.loinc.in_(codes),
                                                        catalogue.c.kind != "result"))
    return {row.loinc: dict(row._mapping) for row in result}


async def entry(conn: AsyncConnection, local_code: str) -> dict[str, Any] | None:
    """An orderable catalogue entry (panel or single test) by its local code."""
    row = (await conn.execute(select(catalogue).where(catalogue.c.local_code == local_code,
                                                      catalogue.c.kind != "result"))).first()
    return dict(row._mapping) if row else None


async def orderables(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Every orderable entry, by label: what a biologist may add."""
    rows = await conn.execute(select(catalogue).where(catalogue.c.kind != "result")
                              .order_by(catalogue.c.label_fr))
    return [dict(row._mapping) for row in rows]


async def results_by_loinc(conn: AsyncConnection, codes: Iterable[str]) -> list[dict[str, Any]]:
    """Every catalogue entry (orderable or reported inside a panel) with one of these codes."""
    codes = set(codes)
    if not codes:
        return []
    rows = await conn.execute(select(catalogue).where(catalogue.c.loinc.in_(codes)))
    return [dict(row._mapping) for row in rows]
