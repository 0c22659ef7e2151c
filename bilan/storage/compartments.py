"""SQL building blocks for "which resources may this caller see": sets of ids over the search
rows, that the access rules (bilan/auth/access.py) combine.

Each set is SQL in two forms, for two directions of work:
- the whole set, a subquery (`query()`; an IdSet is accepted wherever SQLAlchemy takes one,
  as in `column.in_(ids)`): for a search that starts from what the caller may see, such as
  "all my prescriptions, newest first";
- a test of one id (`holds(column)`): EXISTS probes on the search rows of that id, for work
  that starts from a few candidates (a read, a search with criteria, included resources). Its
  cost follows the candidates, not the caller's whole history, whatever the planner's
  statistics say: a prescriber with a hundred thousand prescriptions reads one as fast as
  one with ten.
"""

from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    false,
    literal_column,
    not_,
    or_,
    select,
    union,
)

from bilan.storage.repository import OWNER
from bilan.storage.tables import resources, search_index


class IdSet(ABC):
    """A set of resource ids (see the module's docstring)."""

    @abstractmethod
    def query(self) -> Select[Any] | CompoundSelect[Any]:
        """The ids, as a subquery."""

    def holds(self, column: Any) -> ColumnElement[bool]:
        """Whether the id in `column` is in the set, tested on that id alone. Built once per
        set and column: the sets are kept per caller (bilan/auth/access.py), and building a
        test costs more than running it."""
        held: dict[Any, ColumnElement[bool]] = self.__dict__.setdefault("_held", {})
        if column not in held:
            held[column] = self._holds(column)
        return held[column]

    @abstractmethod
    def _holds(self, column: Any) -> ColumnElement[bool]:
        """holds(), built."""

    def __clause_element__(self) -> Any:
        return self.query()


class _Rows(IdSet):
    """Resources of a type with a search row name = value (and system, when given)."""

    def __init__(self, resource_type: str, name: str, value: str, system: str | None = None,
                 check_system: bool = False):
        self.resource_type, self.name, self.value = resource_type, name, value
        self.system, self.check_system = system, check_system

    def _where(self, i: Any) -> list[ColumnElement[bool]]:
        where = [i.c.resource_type == self.resource_type, i.c.name == self.name, i.c.value == self.value]
        if self.check_system:
            where.append(i.c.system == self.system)
        return where

    def query(self) -> Select[Any]:
        i = search_index.alias()
        return select(i.c.resource_id).where(*self._where(i))

    def _holds(self, column: Any) -> ColumnElement[bool]:
        i = search_index.alias()
        return exists_per_row(select(i.c.pk).where(i.c.resource_id == column, *self._where(i)))


class _Referring(IdSet):
    """Resources of a type whose reference `param` points into `targets`."""

    def __init__(self, resource_type: str, param: str, target_type: str, targets: "IdSet | Any"):
        self.resource_type, self.param, self.target_type, self.targets = (
            resource_type, param, target_type, targets)

    def _where(self, i: Any) -> list[ColumnElement[bool]]:
        return [i.c.resource_type == self.resource_type, i.c.name == self.param,
                i.c.system == self.target_type]

    def query(self) -> Select[Any]:
        i = search_index.alias()
        return select(i.c.resource_id).where(*self._where(i), i.c.value.in_(_query(self.targets)))

    def _holds(self, column: Any) -> ColumnElement[bool]:
        i = search_index.alias()
        return exists_per_row(select(i.c.pk).where(i.c.resource_id == column, *self._where(i),
                                           _contains(self.targets, i.c.value)))


class _Referred(IdSet):
    """The `target_type` resources that the reference `param` of `sources` points to."""

    def __init__(self, resource_type: str, param: str, sources: IdSet, target_type: str):
        self.resource_type, self.param, self.sources, self.target_type = (
            resource_type, param, sources, target_type)

    def _where(self, i: Any) -> list[ColumnElement[bool]]:
        return [i.c.resource_type == self.resource_type, i.c.name == self.param,
                i.c.system == self.target_type]

    def query(self) -> Select[Any]:
        i = search_index.alias()
        return select(i.c.value).where(*self._where(i), i.c.resource_id.in_(self.sources.query()))

    def _holds(self, column: Any) -> ColumnElement[bool]:
        i = search_index.alias()
        return exists_per_row(select(i.c.pk).where(i.c.value == column, *self._where(i),
                                           self.sources.holds(i.c.resource_id)))


class _NotOwnedByLabs(IdSet):
    def __init__(self, resource_type: str):
        self.resource_type = resource_type

    def _labs(self, i: Any) -> Select[Any]:
        return select(i.c.resource_id).where(i.c.resource_type == self.resource_type,
                                             i.c.name == OWNER, i.c.value.like("lab:%"))

    def query(self) -> Select[Any]:
        return select(resources.c.id).where(resources.c.resource_type == self.resource_type,
                                            resources.c.id.not_in(self._labs(search_index.alias())))

    def _holds(self, column: Any) -> ColumnElement[bool]:
        i = search_index.alias()
        return not_(exists_per_row(self._labs(i).where(i.c.resource_id == column)))


class _Union(IdSet):
    def __init__(self, members: list[IdSet]):
        self.members = members

    def query(self) -> CompoundSelect[Any]:
        # Flat: SQLite refuses a UNION nested in parentheses.
        flat: list[Any] = []
        for member in self.members:
            part = member.query()
            flat.extend(part.selects if isinstance(part, CompoundSelect) else [part])
        return union(*flat)

    def _holds(self, column: Any) -> ColumnElement[bool]:
        return or_(*(member.holds(column) for member in self.members))


class _Narrowed(IdSet):
    def __init__(self, ids: IdSet, within: tuple[IdSet, ...], without: tuple[IdSet, ...]):
        self.ids, self.within, self.without = ids, within, without

    def query(self) -> Select[Any]:
        column = self.ids.query().subquery().c[0]
        query = select(column)
        for other in self.within:
            query = query.where(_fenced(other, column))
        for other in self.without:
            query = query.where(~_fenced(other, column))
        return query

    def _holds(self, column: Any) -> ColumnElement[bool]:
        return and_(self.ids.holds(column), *(other.holds(column) for other in self.within),
                    *(not_(other.holds(column)) for other in self.without))


class _Nothing(IdSet):
    def query(self) -> Select[Any]:
        return select(resources.c.id).where(false())

    def _holds(self, column: Any) -> ColumnElement[bool]:
        return false()


def with_token(resource_type: str, param: str, system: str | None, value: str) -> IdSet:
    """Ids of the resources of a type whose `param` is system|value (system None: a row without one)."""
    return _Rows(resource_type, param, value, system, check_system=True)


def derived(resource_type: str, name: str, value: str) -> IdSet:
    """Ids of the resources of a type with the derived search row name = value."""
    return _Rows(resource_type, name, value)


def referring(resource_type: str, param: str, target_type: str, targets: IdSet | Any) -> IdSet:
    """Ids of the resources of a type whose reference `param` points into `targets` (an IdSet,
    or ids as a list or a subquery)."""
    return _Referring(resource_type, param, target_type, targets)


def referred(resource_type: str, param: str, sources: IdSet, target_type: str) -> IdSet:
    """Ids of the `target_type` resources that the reference `param` of `sources` points to."""
    return _Referred(resource_type, param, sources, target_type)


@lru_cache(maxsize=4096)
def owned_by(resource_type: str, owner: str) -> IdSet:
    """Ids of the resources of a type created by `owner`. The same set for the same arguments,
    as the sets of bilan/auth/access.py: statements are cached per set (bilan/storage/search.py)."""
    return _Rows(resource_type, OWNER, owner)


@lru_cache(maxsize=4096)
def not_owned_by_labs(resource_type: str) -> IdSet:
    """Ids of the resources of a type that no lab created (the files a lab keeps are its own)."""
    return _NotOwnedByLabs(resource_type)


def narrowed(ids: IdSet, *, within: tuple[IdSet, ...] = (), without: tuple[IdSet, ...] = ()) -> IdSet:
    """The ids of `ids` that are in every set of `within` and in no set of `without`."""
    return _Narrowed(ids, within, without)


def either(*sets: IdSet) -> IdSet:
    """The union of id sets."""
    return _Union(list(sets))


@lru_cache(maxsize=4096)
def nothing() -> IdSet:
    """No id at all."""
    return _Nothing()


def contains(ids: IdSet | None, column: Any) -> ColumnElement[bool] | None:
    """Whether the id in `column` is among `ids` (None: all ids, no condition), tested on that
    id alone: for work that starts from a few candidates."""
    return None if ids is None else ids.holds(column)


def _contains(ids: IdSet | Any, column: Any) -> ColumnElement[bool]:
    if isinstance(ids, IdSet):
        return ids.holds(column)
    found: ColumnElement[bool] = column.in_(ids)
    return found


def _query(ids: IdSet | Any) -> Any:
    return ids.query() if isinstance(ids, IdSet) else ids


def exists_per_row(rows: Select[Any]) -> ColumnElement[bool]:
    """EXISTS, tested on the row at hand with the index (a planner fence, OFFSET 0). Without
    it PostgreSQL may pull the test up into a join built whole: without statistics (a database
    freshly loaded, autovacuum off) it gathered every `_requester` row of a prescriber's 8,500
    requests to read one Patient, 75 ms instead of 0.2 (tests/test_plans.py)."""
    return rows.offset(literal_column("0")).exists()


def _fenced(ids: IdSet, column: Any) -> ColumnElement[bool]:
    """A test row by row (EXISTS on the resource's own search rows), not the set built whole:
    "tagged patient-space" holds every shared result of every patient, a patient has a
    hundred. OFFSET 0 fences the test off: PostgreSQL would otherwise flatten it into a join
    and, misled by its estimates, read every labelled result of every patient for each row."""
    part = ids.query()
    if isinstance(part, Select):
        return exists_per_row(part.where(part.selected_columns[0] == column))
    return _contains(part, column)
