"""A patient's results found from her own search rows, never among every result of a code:
the queries behind her trends (bilan/results/views/trends.py) and Observation/$lastn
(bilan/results/views/lastn.py)."""

from typing import Any

from sqlalchemy import and_, func, literal, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.storage.compartments import exists_per_row
from bilan.storage.repository import OWNER, Stored, stored_from_row
from bilan.storage.tables import resources, search_index

Token = tuple[str | None, str | None]  # a token search value: (system, code) as fhir.query reads it


async def custom_plans(conn: AsyncConnection) -> None:
    """Plan this transaction's searches for their values. How selective a search is depends on
    them (one patient's results among millions); the generic plan PostgreSQL switches a prepared
    statement to after five runs cannot know it, and reads every shared result (~1000x slower)."""
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")


async def results_about(conn: AsyncConnection, patients: Any, codes: list[Token] | None,
                        limit: int) -> list[str]:
    """The ids of the results about these Patient ids (a list or a subquery) with one of these
    codes (token values: system None for any, "" for none), at most `limit`.

    Found from the patient's rows only: the records' `patient` rows, then each one's own `code`
    rows. The planner fence (OFFSET 0) keeps the code test per result; flattened, PostgreSQL
    may read every result of the code (a hundred thousand glucose results) to meet her ten.
    """
    mine = search_index.alias("mine")
    stmt = select(mine.c.resource_id).where(
        mine.c.resource_type == "Observation", mine.c.name == "patient", mine.c.system == "Patient",
        mine.c.value.in_(patients))
    if codes is not None:
        coded = search_index.alias("coded")
        stmt = stmt.where(exists_per_row(select(literal_column("1")).where(
            coded.c.resource_type == "Observation", coded.c.resource_id == mine.c.resource_id,
            coded.c.name == "code", or_(*(_token(coded.c, system, code) for system, code in codes)))))
    return list(dict.fromkeys(row[0] for row in await conn.execute(stmt.limit(limit))))


def _token(columns: Any, system: str | None, code: str | None) -> Any:
    clauses = [columns.value == code] if code is not None else []
    if system is not None:
        clauses.append(columns.system.is_(None) if system == "" else columns.system == system)
    return and_(*clauses)


async def observations(conn: AsyncConnection, ids: list[str], allowed: Any) -> list[Stored]:
    """The live Observations among `ids` that are also among `allowed` (an IdSet, tested on
    each; None: all), in no particular order: one query, without the count a FHIR search adds."""
    r = resources.c
    where = [r.resource_type == "Observation", r.deleted.is_(False), r.id.in_(ids)]
    if allowed is not None:
        where.append(allowed.holds(r.id))
    rows = await conn.execute(select(resources).where(*where))
    return [stored_from_row(row) for row in rows]


async def recording_labs(conn: AsyncConnection, result_ids: list[str],
                         identifier_system: str) -> dict[str, dict[str, Any]]:
    """For each result a lab recorded (its owner key "lab:FINESS"), the directory's Organization
    with that FINESS (identifier `identifier_system` | "1" + FINESS), by result id."""
    owner, ident = search_index.alias("owner"), search_index.alias("ident")
    org = resources.c
    rows = await conn.execute(
        select(owner.c.resource_id, org.content)
        .join(ident, and_(ident.c.resource_type == "Organization", ident.c.name == "identifier",
                          ident.c.system == identifier_system,
                          ident.c.value == literal("1").concat(func.substr(owner.c.value, len("lab:") + 1))))
        .join(resources, and_(org.resource_type == "Organization", org.id == ident.c.resource_id))
        .where(owner.c.resource_type == "Observation", owner.c.resource_id.in_(result_ids),
               owner.c.name == OWNER, owner.c.value.like("lab:%"), org.deleted.is_(False)))
    return {row.resource_id: row.content or {} for row in rows}
