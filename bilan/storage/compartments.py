"""SQL building blocks for "which resources may this caller see": sets of ids, as subqueries
over the search rows, that the access rules (bilan/auth/access.py) combine."""

from typing import Any

from sqlalchemy import CompoundSelect, Select, literal_column, select, union

from bilan.storage.repository import OWNER
from bilan.storage.tables import resources, search_index

IdSet = Select[Any] | CompoundSelect[Any]  # a query of ids, or a union of such


def with_token(resource_type: str, param: str, system: str | None, value: str) -> IdSet:
    """Ids of the resources of a type whose `param` is system|value (system None: a row without one)."""
    i = search_index.alias()
    return select(i.c.resource_id).where(i.c.resource_type == resource_type, i.c.name == param,
                                         i.c.value == value, i.c.system == system)


def derived(resource_type: str, name: str, value: str) -> IdSet:
    """Ids of the resources of a type with the derived search row name = value."""
    i = search_index.alias()
    return select(i.c.resource_id).where(i.c.resource_type == resource_type, i.c.name == name,
                                         i.c.value == value)


def referring(resource_type: str, param: str, target_type: str, targets: Any) -> IdSet:
    """Ids of the resources of a type whose reference `param` points into `targets`."""
    i = search_index.alias()
    return select(i.c.resource_id).where(i.c.resource_type == resource_type, i.c.name == param,
                                         i.c.system == target_type, i.c.value.in_(targets))


def referred(resource_type: str, param: str, sources: Any, target_type: str) -> IdSet:
    """Ids of the `target_type` resources that the reference `param` of `sources` points to."""
    i = search_index.alias()
    return select(i.c.value).where(i.c.resource_type == resource_type, i.c.name == param,
                                   i.c.resource_id.in_(sources), i.c.system == target_type)


def owned_by(resource_type: str, owner: str) -> IdSet:
    """Ids of the resources of a type created by `owner`."""
    i = search_index.alias()
    return select(i.c.resource_id).where(i.c.resource_type == resource_type, i.c.name == OWNER,
                                         i.c.value == owner)


def not_owned_by_labs(resource_type: str) -> IdSet:
    """Ids of the resources of a type that no lab created (the files a lab keeps are its own)."""
    i = search_index.alias()
    labs = select(i.c.resource_id).where(i.c.resource_type == resource_type, i.c.name == OWNER,
                                         i.c.value.like("lab:%"))
    return select(resources.c.id).where(resources.c.resource_type == resource_type,
                                        resources.c.id.not_in(labs))


def narrowed(ids: Any, *, within: tuple[Any, ...] = (), without: tuple[Any, ...] = ()) -> IdSet:
    """The ids of `ids` that are in every set of `within` and in no set of `without`.

    A simple set is tested row by row (EXISTS on the resource's own search rows), not built
    whole: "tagged patient-space" holds every shared result of every patient, a patient has a
    hundred."""
    column = ids.subquery().c[0]
    query = select(column)
    for other in within:
        query = query.where(_holds(other, column))
    for other in without:
        query = query.where(~_holds(other, column))
    return query


def _holds(ids: Any, column: Any) -> Any:
    if isinstance(ids, Select):
        # OFFSET 0 fences the test off: PostgreSQL would otherwise flatten it into a join and,
        # misled by its estimates, read every labelled result of every patient for each row.
        return ids.where(ids.selected_columns[0] == column).offset(literal_column("0")).exists()
    return column.in_(ids)


def either(*sets: IdSet) -> CompoundSelect[Any]:
    """The union of id sets, flat (SQLite refuses a UNION nested in parentheses)."""
    flat: list[Any] = []
    for member in sets:
        flat.extend(member.selects if isinstance(member, CompoundSelect) else [member])
    return union(*flat)
