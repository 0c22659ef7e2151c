"""FHIR search compiled to SQL over the search_index rows."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import KeyedColumnElement

from bilan.fhir.query import (
    Criterion,
    Include,
    SearchQuery,
    parse_date_value,
    parse_reference_value,
    parse_token_value,
    string_search_value,
)
from bilan.fhir.searchparams import COMMON_PARAMS, SearchParam
from bilan.storage.repository import Stored, stored_from_row
from bilan.storage.tables import resources, search_index

r = resources.c
i = search_index.c


# For a resource type, the ids the caller may see (a subquery), or None for all of them.
Restriction = Callable[[str], Any]


def everything(_resource_type: str) -> None:
    return None


@dataclass
class SearchResult:
    total: int
    matches: list[Stored]
    included: list[Stored]


async def search(conn: AsyncConnection, query: SearchQuery, base_url: str,
                 restrict: Restriction = everything) -> SearchResult:
    """Matches, total and included resources, only among those `restrict` lets through."""
    where = _where(query.resource_type, query.criteria, base_url)
    allowed = restrict(query.resource_type)
    if allowed is not None:
        where.append(r.id.in_(allowed))
    total = (await conn.execute(
        select(func.count()).select_from(resources).where(*where)
    )).scalar_one()
    if query.summary_count or query.count == 0:
        return SearchResult(total, [], [])
    matches = [stored_from_row(row) for row in await conn.execute(_page(query, where))]
    included = await _includes(conn, query, matches, restrict)
    return SearchResult(total, matches, included)


async def first_matches(conn: AsyncConnection, query: SearchQuery, base_url: str,
                        restrict: Restriction = everything) -> list[Stored]:
    """Up to two matches in no particular order: enough to tell none, one or several."""
    [found] = await first_matches_many(conn, [query], base_url, restrict)
    return found


MANY_MATCHES = 100  # enough rows to tell, for each of several conditional criteria, 0, 1 or more


async def first_matches_many(conn: AsyncConnection, queries: list[SearchQuery], base_url: str,
                             restrict: Restriction = everything) -> list[list[Stored]]:
    """first_matches for several queries in one statement, only among what `restrict`
    lets through (ids, as a subquery, per type; None: everything)."""

    def where(q: SearchQuery) -> list[ColumnElement[bool]]:
        clauses = _where(q.resource_type, q.criteria, base_url)
        allowed = restrict(q.resource_type)
        if allowed is not None:
            clauses.append(r.id.in_(allowed))
        return clauses

    if len(queries) == 1:
        stmt = select(resources).where(*where(queries[0])).limit(2)
        return [[stored_from_row(row) for row in await conn.execute(stmt)]]
    # Plain branches (no per-branch LIMIT: SQLite takes no parenthesised UNION members, and
    # subqueries cost more to build than the query costs to run); a bound on the whole.
    union = union_all(*(
        select(literal(n).label("query"), resources).where(*where(q))
        for n, q in enumerate(queries)
    )).limit(MANY_MATCHES)
    found: list[list[Stored]] = [[] for _ in queries]
    for row in await conn.execute(union):
        found[row.query].append(stored_from_row(row))
    return found


def _where(resource_type: str, criteria: list[Criterion], base_url: str) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [r.resource_type == resource_type, r.deleted.is_(False)]
    for criterion in criteria:
        where.append(_match(resource_type, criterion, base_url))
    return where


def _match(resource_type: str, c: Criterion, base_url: str) -> ColumnElement[bool]:
    if c.param.name == "_lastUpdated":
        return or_(*(_instant_clause(v, r.last_updated) for v in c.values))
    return r.id.in_(_ids_matching(resource_type, c, base_url))


def _ids_matching(resource_type: str, c: Criterion, base_url: str, depth: int = 0) -> Any:
    """The ids of the resources of a type that a criterion selects, as a subquery."""
    if c.param.name == "_id":
        return list(c.values)
    # A chained criterion nests a subquery on search_index in another: only that one needs
    # an alias (building aliases costs, on the hot path of every conditional create).
    rows = search_index.alias() if depth else search_index
    stmt = select(rows.c.resource_id).where(rows.c.resource_type == resource_type,
                                            rows.c.name == c.param.name)
    if c.chain is not None:
        assert c.target_type is not None  # a chained criterion always names its target type
        targets = _ids_matching(c.target_type, c.chain, base_url, depth + 1)
        return stmt.where(rows.c.system == c.target_type, rows.c.value.in_(targets))
    return stmt.where(or_(*(_value_clause(rows.c, c, v, base_url) for v in c.values)))


def _value_clause(cols: ReadOnlyColumnCollection[str, KeyedColumnElement[Any]], c: Criterion, value: str, base_url: str) -> ColumnElement[bool]:
    kind = c.param.type
    if kind == "token":
        system, code = parse_token_value(value)
        clauses = []
        if code is not None:
            clauses.append(cols.value == code)
        if system == "":
            clauses.append(cols.system.is_(None))
        elif system is not None:
            clauses.append(cols.system == system)
        return and_(*clauses) if clauses else true()
    if kind == "string":
        if c.modifier == "exact":
            return cols.exact == value
        needle = _escape_like(string_search_value(value))
        pattern = f"%{needle}%" if c.modifier == "contains" else f"{needle}%"
        return cols.value.like(pattern, escape="\\")
    if kind == "date":
        return _date_clause(value, cols.date_start, cols.date_end)
    targets, target_id = parse_reference_value(value, c.param.targets, base_url)
    if c.target_type:
        targets = (c.target_type,)
    return and_(cols.value == target_id, cols.system.in_(targets)) if targets else false()


def _date_clause(value: str, start: Any, end: Any) -> ColumnElement[bool]:
    """FHIR date comparison between the searched range [lo, hi) and a stored range [start, end).

    An open end (a Period without end) counts as reaching forever, an open start as always.
    """
    prefix, lo, hi = parse_date_value(value)
    return {
        "eq": and_(start >= lo, end <= hi),
        "ne": not_(and_(start >= lo, end <= hi)),
        "gt": or_(end > hi, end.is_(None)),
        "lt": or_(start < lo, start.is_(None)),
        "ge": or_(end > lo, end.is_(None)),
        "le": or_(start < hi, start.is_(None)),
        "sa": and_(start.is_not(None), start >= hi),
        "eb": and_(end.is_not(None), end <= lo),
    }[prefix]


def _instant_clause(value: str, moment: ColumnElement[datetime]) -> ColumnElement[bool]:
    """The same comparison for a single instant such as meta.lastUpdated."""
    prefix, lo, hi = parse_date_value(value)
    return {
        "eq": and_(moment >= lo, moment < hi),
        "ne": or_(moment < lo, moment >= hi),
        "gt": moment >= hi,
        "sa": moment >= hi,
        "lt": moment < lo,
        "eb": moment < lo,
        "ge": moment >= lo,
        "le": moment < hi,
    }[prefix]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _page(query: SearchQuery, where: list[ColumnElement[bool]]) -> Select[Any]:
    """One page of matches in the asked order.

    The matching ids are computed first (a materialised CTE), then sorted and cut: otherwise
    PostgreSQL may walk an ordered index hoping to meet the LIMIT early, and read the whole
    table when little or nothing matches.
    """
    if not query.criteria and not query.sort:  # everything, newest first: the ordered index
        return (select(resources).where(*where).order_by(r.last_updated.desc(), r.id)
                .limit(query.count).offset(query.offset))
    sort = query.sort or [(COMMON_PARAMS[1], True)]  # newest first
    keys = [_sort_key(query.resource_type, param).label(f"k{n}") for n, (param, _) in enumerate(sort)]
    matched = select(r.id, *keys).where(*where).cte("matched").prefix_with("MATERIALIZED")

    def order(columns: Any) -> list[Any]:
        by = [columns[f"k{n}"].desc() if descending else columns[f"k{n}"].asc()
              for n, (_, descending) in enumerate(sort)]
        return [*by, columns.id]

    page = (select(matched.c.id, *(matched.c[f"k{n}"] for n in range(len(sort))))
            .order_by(*order(matched.c)).limit(query.count).offset(query.offset).subquery("page"))
    return (select(resources)
            .join(page, and_(r.resource_type == query.resource_type, r.id == page.c.id))
            .order_by(*order(page.c)))


def _sort_key(resource_type: str, param: SearchParam) -> Any:
    if param.name == "_id":
        return r.id
    if param.name == "_lastUpdated":
        return r.last_updated
    return (
        select(func.min(i.date_start))
        .where(i.resource_type == resource_type, i.resource_id == r.id, i.name == param.name)
        .scalar_subquery()
    )


async def _includes(conn: AsyncConnection, query: SearchQuery, matches: list[Stored],
                    restrict: Restriction) -> list[Stored]:
    if not matches or not (query.includes or query.revincludes):
        return []
    ids = [m.id for m in matches]
    seen = {(m.resource_type, m.id) for m in matches}
    included: list[Stored] = []
    for include in query.includes:
        await _collect(conn, _forward(include, query.resource_type, ids), seen, included)
    for include in query.revincludes:
        await _collect(conn, _reverse(include, query.resource_type, ids), seen, included)
    return await _allowed(conn, included, restrict)


async def _allowed(conn: AsyncConnection, found: list[Stored], restrict: Restriction) -> list[Stored]:
    """The resources of `found` that `restrict` lets through."""
    kept: list[Stored] = []
    for resource_type in sorted({s.resource_type for s in found}):
        of_type = [s for s in found if s.resource_type == resource_type]
        allowed = restrict(resource_type)
        if allowed is None:
            kept += of_type
            continue
        ids = {row.id for row in await conn.execute(select(r.id).where(
            r.resource_type == resource_type, r.id.in_([s.id for s in of_type]), r.id.in_(allowed)))}
        kept += [s for s in of_type if s.id in ids]
    return kept


def _forward(include: Include, resource_type: str, ids: list[str]) -> Select[Any]:
    refs = select(i.system, i.value).where(
        i.resource_type == resource_type, i.name == include.param.name, i.resource_id.in_(ids)
    )
    if include.target_type:
        refs = refs.where(i.system == include.target_type)
    refs_sq = refs.subquery()
    return select(resources).join(
        refs_sq, and_(r.resource_type == refs_sq.c.system, r.id == refs_sq.c.value)
    ).where(r.deleted.is_(False))


def _reverse(include: Include, resource_type: str, ids: list[str]) -> Select[Any]:
    sources = select(i.resource_id).where(
        i.resource_type == include.source_type, i.name == include.param.name,
        i.system == resource_type, i.value.in_(ids),
    )
    return select(resources).where(
        r.resource_type == include.source_type, r.id.in_(sources), r.deleted.is_(False)
    )


async def _collect(conn: AsyncConnection, stmt: Select[Any], seen: set[tuple[str, str]],
                   into: list[Stored]) -> None:
    for row in await conn.execute(stmt):
        key = (row.resource_type, row.id)
        if key not in seen:
            seen.add(key)
            into.append(stored_from_row(row))
