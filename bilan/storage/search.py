"""FHIR search compiled to SQL over the search_index rows."""

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Integer,
    Select,
    and_,
    bindparam,
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
from bilan.storage.compartments import IdSet, exists_per_row
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


class _Slots:
    """The values of one search, each under the name of the bind parameter that takes it.
    Searches of one shape then share one statement, built and keyed once: building it anew
    cost more CPU than PostgreSQL spends running it."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"v{len(self.values)}"
        self.values[name] = value
        return name


# A search's shape: what its statement is made of, its values replaced by the names of
# their slots. Nested tuples, so that it keys the statement caches below.
Shape = tuple[Any, ...]


async def search(conn: AsyncConnection, query: SearchQuery, base_url: str,
                 restrict: Restriction = everything) -> SearchResult:
    """Matches, total and included resources, only among those `restrict` lets through."""
    slots = _Slots()
    key = (query.resource_type, _shape(query.criteria, base_url, slots), restrict(query.resource_type))
    if query.summary_count or query.count == 0:
        return SearchResult(await _count(conn, key, slots), [], [])
    slots.values.update(limit=query.count, offset=query.offset)
    sort = tuple(query.sort) or ((COMMON_PARAMS[1], True),)  # newest first
    page = _page(*key, None if not query.criteria and not query.sort else sort)
    rows = list(await conn.execute(page, slots.values))
    # The page's rows carry the total; an empty page (nothing matches, or paged past the
    # end) asks for it alone.
    total = rows[0].total if rows else await _count(conn, key, slots)
    matches = [stored_from_row(row) for row in rows]
    included = await _includes(conn, query, matches, restrict)
    return SearchResult(total, matches, included)


async def _count(conn: AsyncConnection, key: tuple[str, Shape, Any], slots: _Slots) -> int:
    found: int = (await conn.execute(_count_statement(*key), slots.values)).scalar_one()
    return found


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
    slots = _Slots()
    keys = tuple((q.resource_type, _shape(q.criteria, base_url, slots), restrict(q.resource_type))
                 for q in queries)
    rows = await conn.execute(_first_statement(keys), slots.values)
    if len(queries) == 1:
        return [[stored_from_row(row) for row in rows]]
    found: list[list[Stored]] = [[] for _ in queries]
    for row in rows:
        found[row.query].append(stored_from_row(row))
    return found


# --------------------------------------------------------------------------- shapes

def _shape(criteria: list[Criterion], base_url: str, slots: _Slots) -> Shape:
    return tuple(_criterion_shape(c, base_url, slots) for c in criteria)


def _criterion_shape(c: Criterion, base_url: str, slots: _Slots) -> Shape:
    if c.param.name == "_lastUpdated":
        return ("lastUpdated", tuple(_date_slots(value, slots) for value in c.values))
    return ("ids", _selective(c), _ids_shape(c, base_url, slots))


# Criteria that single out a few resources (a patient's, a prescription's, by id or
# identifier): the caller's rights are then tested on each match (IdSet.holds) instead of
# building the set of all the caller may see.
_SELECTIVE_TOKENS = ("_id", "identifier", "requisition", "group-identifier")


def _selective(c: Criterion) -> bool:
    return c.param.type == "reference" or c.param.name in _SELECTIVE_TOKENS


def _ids_shape(c: Criterion, base_url: str, slots: _Slots) -> Shape:
    """The ids of the resources that a criterion selects."""
    if c.param.name == "_id":
        return ("_id", slots(list(c.values)))
    if c.chain is not None:
        assert c.target_type is not None  # a chained criterion always names its target type
        return ("chain", c.param.name, c.target_type, _ids_shape(c.chain, base_url, slots))
    return ("rows", c.param.name, _values_shape(c, base_url, slots))


def _values_shape(c: Criterion, base_url: str, slots: _Slots) -> Shape:
    """The criterion's values, OR-ed. References and plain codes that share their target types
    (or system) are one IN list: bilan's own searches may list hundreds of values, which as
    as many ORs would exceed SQLite's expression depth, and plan slowly everywhere."""
    kind = c.param.type
    if kind == "reference":
        by_targets: dict[tuple[str, ...], list[str]] = {}
        for value in c.values:
            targets, target_id = parse_reference_value(value, c.param.targets, base_url)
            by_targets.setdefault((c.target_type,) if c.target_type else targets, []).append(target_id)
        return ("references", tuple((slots(ids), slots(list(targets))) if targets else None
                                    for targets, ids in by_targets.items()))
    if kind == "token":
        by_system: dict[str | None, list[str]] = {}
        others = []
        for value in c.values:
            system, code = parse_token_value(value)
            if code is None or system == "":
                others.append((None if code is None else slots(code),
                               "" if system == "" else None if system is None else slots(system)))
            else:
                by_system.setdefault(system, []).append(code)
        return ("tokens", tuple(others), tuple((slots(system) if system else None, slots(codes))
                                               for system, codes in by_system.items()))
    if kind == "string":
        if c.modifier == "exact":
            return ("exact", tuple(slots(value) for value in c.values))
        patterns = (_escape_like(string_search_value(value)) for value in c.values)
        return ("like", tuple(slots(f"%{p}%" if c.modifier == "contains" else f"{p}%") for p in patterns))
    if kind == "date":
        return ("dates", tuple(_date_slots(value, slots) for value in c.values))
    return ("uris", tuple(slots(value) for value in c.values))


def _date_slots(value: str, slots: _Slots) -> tuple[str, str, str]:
    prefix, lo, hi = parse_date_value(value)
    return prefix, slots(lo), slots(hi)


# --------------------------------------------------------------------------- statements

@lru_cache(maxsize=1024)
def _page(resource_type: str, shape: Shape, allowed: Any,
          sort: tuple[tuple[SearchParam, bool], ...] | None) -> Select[Any]:
    """One page of matches in the asked order; None: everything, newest first.

    The matching ids are computed first (a materialised CTE), then sorted and cut: otherwise
    PostgreSQL may walk an ordered index hoping to meet the LIMIT early, and read the whole
    table when little or nothing matches.
    """
    where = _where(resource_type, shape, allowed)
    limit, offset = bindparam("limit", type_=Integer), bindparam("offset", type_=Integer)
    if sort is None:  # the ordered index
        # Not correlated: the inner resources are the subquery's own, counted whole.
        total = select(func.count()).select_from(resources).where(*where).correlate(None).scalar_subquery()
        return (select(resources, total.label("total")).where(*where)
                .order_by(r.last_updated.desc(), r.id).limit(limit).offset(offset))
    keys = [_sort_key(resource_type, param).label(f"k{n}") for n, (param, _) in enumerate(sort)]
    matched = select(r.id, *keys).where(*where).cte("matched").prefix_with("MATERIALIZED")

    def order(columns: Any) -> list[Any]:
        by = [columns[f"k{n}"].desc() if descending else columns[f"k{n}"].asc()
              for n, (_, descending) in enumerate(sort)]
        return [*by, columns.id]

    page = (select(matched.c.id, *(matched.c[f"k{n}"] for n in range(len(sort))))
            .order_by(*order(matched.c)).limit(limit).offset(offset).subquery("page"))
    total = select(func.count()).select_from(matched).scalar_subquery()
    return (select(resources, total.label("total"))
            .join(page, and_(r.resource_type == resource_type, r.id == page.c.id))
            .order_by(*order(page.c)))


@lru_cache(maxsize=1024)
def _count_statement(resource_type: str, shape: Shape, allowed: Any) -> Select[Any]:
    return select(func.count()).select_from(resources).where(*_where(resource_type, shape, allowed))


@lru_cache(maxsize=1024)
def _first_statement(keys: tuple[tuple[str, Shape, Any], ...]) -> Select[Any] | CompoundSelect[Any]:
    if len(keys) == 1:
        return select(resources).where(*_where(*keys[0])).limit(2)
    # Plain branches (no per-branch LIMIT: SQLite takes no parenthesised UNION members, and
    # subqueries cost more to build than the query costs to run); a bound on the whole.
    return union_all(*(select(literal(n).label("query"), resources).where(*_where(*key))
                       for n, key in enumerate(keys))).limit(MANY_MATCHES)


def _where(resource_type: str, shape: Shape, allowed: Any) -> list[ColumnElement[bool]]:
    """The conditions of a search. When a criterion singles out a few resources (a patient's,
    an id), it drives: the others are tested on each of its matches, so that a search by
    patient and code costs the patient's results, never the code's across all patients,
    whatever the planner's statistics say."""
    where: list[ColumnElement[bool]] = [r.resource_type == resource_type, r.deleted.is_(False)]
    driven = any(node[0] == "ids" and node[1] for node in shape)
    for node in shape:
        if node[0] == "lastUpdated":
            where.append(or_(*(_instant_clause(prefix, bindparam(lo), bindparam(hi), r.last_updated)
                               for prefix, lo, hi in node[1])))
            continue
        _, selective, ids_shape = node
        ids = _ids(resource_type, ids_shape)
        if driven and not selective:
            # OFFSET 0 keeps it a test of the row: flattened into a join, PostgreSQL might read
            # every row of the code (or date) to meet the few candidates.
            where.append(exists_per_row(ids.where(ids.selected_columns[0] == r.id)))
        else:
            where.append(r.id.in_(ids))
    if allowed is not None:
        where.append(_restricted(allowed, from_candidates=driven))
    return where


def _restricted(allowed: Any, from_candidates: bool) -> ColumnElement[bool]:
    """The rows `allowed` lets through (an IdSet, or a subquery of ids): hashable, as the
    statements are cached per rule set."""
    if from_candidates and isinstance(allowed, IdSet):
        return allowed.holds(r.id)
    return r.id.in_(allowed)


def _ids(resource_type: str, shape: Shape, depth: int = 0) -> Any:
    """The ids of the resources of a type that a criterion selects, as a subquery."""
    if shape[0] == "_id":
        return bindparam(shape[1], expanding=True)
    # A chained criterion nests a subquery on search_index in another: only that one needs
    # an alias.
    rows = search_index.alias() if depth else search_index
    stmt = select(rows.c.resource_id).where(rows.c.resource_type == resource_type, rows.c.name == shape[1])
    if shape[0] == "chain":
        _, _, target_type, inner = shape
        return stmt.where(rows.c.system == target_type, rows.c.value.in_(_ids(target_type, inner, depth + 1)))
    return stmt.where(_values_clause(rows.c, shape[2]))


def _values_clause(cols: ReadOnlyColumnCollection[str, KeyedColumnElement[Any]], shape: Shape) -> ColumnElement[bool]:
    kind = shape[0]
    if kind == "references":
        return or_(*(_references_clause(cols, group) for group in shape[1]))
    if kind == "tokens":
        _, others, by_system = shape
        return or_(*(_token_clause(cols, code, system) for code, system in others),
                   *(and_(cols.value.in_(bindparam(codes, expanding=True)),
                          *([cols.system == bindparam(system)] if system else []))
                     for system, codes in by_system))
    if kind == "exact":
        return or_(*(cols.exact == bindparam(value) for value in shape[1]))
    if kind == "like":
        return or_(*(cols.value.like(bindparam(pattern), escape="\\") for pattern in shape[1]))
    if kind == "dates":
        return or_(*(_date_clause(prefix, bindparam(lo), bindparam(hi), cols.date_start, cols.date_end)
                     for prefix, lo, hi in shape[1]))
    return or_(*(cols.value == bindparam(value) for value in shape[1]))


def _references_clause(cols: ReadOnlyColumnCollection[str, KeyedColumnElement[Any]],
                       group: tuple[str, str] | None) -> ColumnElement[bool]:
    """Ids among target types; None: a value that names no possible target."""
    if group is None:
        return false()
    ids, targets = group
    return and_(cols.value.in_(bindparam(ids, expanding=True)), cols.system.in_(bindparam(targets, expanding=True)))


def _token_clause(cols: ReadOnlyColumnCollection[str, KeyedColumnElement[Any]], code: str | None,
                  system: str | None) -> ColumnElement[bool]:
    """A code with no system (`|code`), or a system with any code (`system|`)."""
    clauses = [] if code is None else [cols.value == bindparam(code)]
    if system == "":
        clauses.append(cols.system.is_(None))
    elif system is not None:
        clauses.append(cols.system == bindparam(system))
    return and_(*clauses) if clauses else true()


def _date_clause(prefix: str, lo: Any, hi: Any, start: Any, end: Any) -> ColumnElement[bool]:
    """FHIR date comparison between the searched range [lo, hi) and a stored range [start, end).

    An open end (a Period without end) counts as reaching forever, an open start as always.
    """
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


def instant_clause(value: str, moment: ColumnElement[datetime]) -> ColumnElement[bool]:
    """The same comparison for a single instant such as meta.lastUpdated."""
    prefix, lo, hi = parse_date_value(value)
    return _instant_clause(prefix, lo, hi, moment)


def _instant_clause(prefix: str, lo: Any, hi: Any, moment: ColumnElement[datetime]) -> ColumnElement[bool]:
    clauses: dict[str, ColumnElement[bool]] = {
        "eq": and_(moment >= lo, moment < hi),
        "ne": or_(moment < lo, moment >= hi),
        "gt": moment >= hi,
        "sa": moment >= hi,
        "lt": moment < lo,
        "eb": moment < lo,
        "ge": moment >= lo,
        "le": moment < hi,
    }
    return clauses[prefix]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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


MAX_ITERATIONS = 3  # rounds of _include:iterate / _revinclude:iterate after the first


async def _includes(conn: AsyncConnection, query: SearchQuery, matches: list[Stored],
                    restrict: Restriction) -> list[Stored]:
    """What _include and _revinclude add to a page: from its matches, then (:iterate) from
    what was included, round after round. Each round keeps only what `restrict` lets through
    before the next follows it, so nothing hidden ever leads anywhere."""
    if not matches or not (query.includes or query.revincludes):
        return []
    seen = {(m.resource_type, m.id) for m in matches}
    included: list[Stored] = []
    frontier = matches
    for step in range(1 + MAX_ITERATIONS):
        includes = [i for i in query.includes if step == 0 or i.iterate]
        revincludes = [i for i in query.revincludes if step == 0 or i.iterate]
        if not (includes or revincludes):
            break
        found: list[Stored] = []
        for include in includes:
            ids = [s.id for s in frontier if s.resource_type == include.source_type]
            if ids:
                await _collect(conn, _forward(include, include.source_type, ids), seen, found)
        for include in revincludes:
            targets = (include.target_type,) if include.target_type else include.param.targets
            for target_type in sorted({s.resource_type for s in frontier} & set(targets)):
                ids = [s.id for s in frontier if s.resource_type == target_type]
                await _collect(conn, _reverse(include, target_type, ids), seen, found)
        frontier = await _allowed(conn, found, restrict)
        included += frontier
        if not frontier:
            break
    return included


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
            r.resource_type == resource_type, r.id.in_([s.id for s in of_type]),
            _restricted(allowed, from_candidates=True)))}
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
