"""The resource store: current versions, every past version, and their search rows.

All methods run on the connection of one database transaction, so a caller that writes
several resources gets all of them or none.
"""

import zlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Iterable, Literal

from sqlalchemy import Select, and_, bindparam, delete, func, insert, or_, select, text, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.fhir.dates import instant
from bilan.fhir.references import literal
from bilan.fhir.searchparams import extract
from bilan.storage.database import json_dumps
from bilan.storage.tables import resource_versions, resources, search_index
from bilan.storage.unnested import Unnested

Method = Literal["POST", "PUT", "DELETE"]
OWNER = "_owner"  # search row naming who created a resource
# Rows that stay with the resource across its versions: who created it, and the facts fixed
# at intake that access derives from (bilan/auth/access.py, bilan/records/pipeline.py).
KEPT_ROWS = (OWNER, "_requester", "_lab")


@dataclass(frozen=True)
class Stored:
    """A stored version. A deletion's content is empty: `deleted` says it is one."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    content: dict[str, Any]
    method: str = ""


@dataclass(frozen=True)
class Write:
    """A new version to store. `expected_version` is the version it replaces (None: a create).

    What the write pipeline (bilan/records/pipeline.py) needs to know of it:
    `labelled` when the domain itself set the patient-visibility labels (issuing a report),
    else they are inherited from the stored version; `unmask` when the write is the explicit
    lifting of a mask; `validated` when the caller's resource was already checked at the
    door; `path` where the resource sits in the request, for error messages."""

    resource_type: str
    id: str
    content: dict[str, Any] | None
    method: Method
    expected_version: int | None = None
    labelled: bool = False
    unmask: bool = False
    validated: bool = False
    guarded: bool = False
    path: str | None = None


class StaleVersion(Exception):
    """The resource changed since the caller read it."""

    def __init__(self, resource_type: str, resource_id: str):
        super().__init__(f"{resource_type}/{resource_id}")
        self.resource_type = resource_type
        self.resource_id = resource_id


def stored_from_row(row: Any, method: str = "") -> Stored:
    return Stored(row.resource_type, row.id, row.version_id, row.last_updated, row.deleted,
                  row.content or {}, method)


class Repository:
    def __init__(self, conn: AsyncConnection):
        self.conn = conn

    async def lock_many(self, keys: list[str]) -> None:
        """Serialise writers on each key until commit (PostgreSQL; SQLite writers are serial).

        Locks are taken in one order, so two transactions wanting overlapping keys queue
        instead of deadlocking.
        """
        if self.conn.dialect.name != "postgresql" or not keys:
            return
        numbers = sorted({zlib.crc32(key.encode()) for key in keys})
        await self.conn.execute(
            text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
            {"keys": numbers})

    async def read(self, resource_type: str, resource_id: str) -> Stored | None:
        stored, _ = await self.read_seen(resource_type, resource_id, None)
        return stored

    async def read_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        keys = list(set(keys))
        if not keys:
            return {}
        found: dict[tuple[str, str], Stored] = {}
        for chunk in _chunks(keys, 500):
            rows = await self.conn.execute(
                select(resources).where(
                    tuple_(resources.c.resource_type, resources.c.id).in_(chunk),
                    resources.c.deleted.is_(False),
                )
            )
            for row in rows:
                found[(row.resource_type, row.id)] = stored_from_row(row)
        return found

    async def read_reference(self, reference: str) -> Stored | None:
        """The live resource a "Type/id" reference names; None for another form, a missing or a
        deleted resource."""
        key = literal(reference)
        found = await self.read(*key) if key else None
        return found if found is not None and not found.deleted else None

    async def read_references(self, references: Iterable[str]) -> list[Stored]:
        """read_reference for several, in one query; those found, in the order asked."""
        keys = [k for k in (literal(r) for r in references) if k]
        found = await self.read_many(keys)
        return [found[k] for k in dict.fromkeys(keys) if k in found and not found[k].deleted]

    async def read_version(self, resource_type: str, resource_id: str, version_id: int) -> Stored | None:
        v = resource_versions.c
        row = (await self.conn.execute(
            select(resource_versions).where(v.resource_type == resource_type, v.id == resource_id,
                                            v.version_id == version_id)
        )).first()
        return stored_from_row(row, row.method) if row else None

    async def read_seen(self, resource_type: str, resource_id: str,
                        allowed: Any) -> tuple[Stored | None, bool]:
        """read() and can_see() in one statement: the resource, and whether it is among
        `allowed` (an IdSet; None: all)."""
        row = (await self.conn.execute(_read_seen(allowed), {"resource_type": resource_type,
                                                             "resource_id": resource_id})).first()
        return (stored_from_row(row), bool(row.seen)) if row else (None, False)

    async def can_see(self, resource_type: str, resource_id: str, allowed: Any) -> bool:
        """Whether the resource is among `allowed` (an IdSet of bilan/storage/compartments.py;
        None: all)."""
        if allowed is None:
            return True
        found = await self.conn.execute(_seen_only(allowed), {"resource_type": resource_type,
                                                              "resource_id": resource_id})
        return found.first() is not None

    async def history(self, resource_type: str, resource_id: str | None, count: int,
                      offset: int, allowed: Any = None) -> tuple[int, list[Stored]]:
        v = resource_versions.c
        where = [v.resource_type == resource_type]
        if resource_id is not None:
            where.append(v.id == resource_id)
        if allowed is not None:
            where.append(v.id.in_(allowed))
        total = (await self.conn.execute(select(func.count()).where(*where))).scalar_one()
        rows = await self.conn.execute(
            select(resource_versions).where(*where)
            .order_by(v.last_updated.desc(), v.id, v.version_id.desc())
            .limit(count).offset(offset)
        )
        return total, [stored_from_row(row, row.method) for row in rows]

    async def save(self, writes: list[Write], now: datetime, owner: str | None = None) -> list[Stored]:
        """Store new versions in a few statements; raises StaleVersion on a lost update.

        `owner` (e.g. "rpps:10003456786", "lab:750100001") is recorded for the resources this
        creates: who created a resource may see it (see bilan/auth/access.py).
        """
        stored: list[Stored] = []
        if not writes:
            return stored
        for write in writes:
            version = (write.expected_version or 0) + 1
            content: dict[str, Any] = {}
            if write.content is not None:
                content = dict(write.content, id=write.id)
                content["meta"] = dict(content.get("meta") or {}, versionId=str(version),
                                       lastUpdated=instant(now))
            stored.append(Stored(write.resource_type, write.id, version, now,
                                 write.method == "DELETE", content, write.method))
        created = [w.expected_version is None for w in writes]
        for s, w in zip(stored, writes):
            if w.expected_version is not None:
                await self._update(s, w.expected_version)
        if not all(created):
            await self._drop_index([(s.resource_type, s.id) for s, new in zip(stored, created) if not new])
        index_rows = [
            (s.resource_type, s.id, r.name, r.system, r.value, r.exact, r.start, r.end)
            for s in stored if not s.deleted
            for r in extract(s.content)
        ]
        if owner:
            index_rows += [(s.resource_type, s.id, OWNER, None, owner, None, None, None)
                           for s, new in zip(stored, created) if new]
        if self.conn.dialect.name == "postgresql":
            versions = [(s.resource_type, s.id, s.version_id, s.last_updated, s.deleted, s.method, new,
                         _content_text(s)) for s, new in zip(stored, created)]
            await self.conn.execute(_SAVED_IN_ONE_STATEMENT, {**_VERSIONS.values(versions), **_INDEX.values(index_rows)})
            return stored
        creates = [s for s, new in zip(stored, created) if new]
        if creates:
            await self.conn.execute(insert(resources), [_resource_row(s) for s in creates])
        await self.conn.execute(insert(resource_versions), [dict(_resource_row(s), method=s.method) for s in stored])
        await self._insert_index(index_rows)
        return stored

    async def _update(self, s: Stored, expected_version: int) -> None:
        result = await self.conn.execute(
            update(resources)
            .where(resources.c.resource_type == s.resource_type, resources.c.id == s.id,
                   resources.c.version_id == expected_version)
            .values(version_id=s.version_id, last_updated=s.last_updated, deleted=s.deleted,
                    content=_content_column(s))
        )
        if result.rowcount != 1:
            raise StaleVersion(s.resource_type, s.id)

    async def _insert_index(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.conn.dialect.name == "postgresql":
            await self.conn.execute(_INDEX_IN_ONE_STATEMENT, _INDEX.values(rows))
            return
        await self.conn.execute(insert(search_index), [dict(zip(_INDEX.names, row, strict=True)) for row in rows])

    async def add_rows(self, rows: list[tuple[str, str, str, str]]) -> None:
        """Search rows the pipeline derives (resource type, id, name, value), such as who a
        prescription's requester is; dropped with the version's other rows."""
        await self._insert_index([(t, i, n, None, v, None, None, None) for t, i, n, v in rows])

    async def replace_row(self, resource_type: str, resource_id: str, name: str,
                          value: str | None) -> None:
        """Set a derived row of a resource (None: drop it)."""
        i = search_index.c
        await self.conn.execute(delete(search_index).where(
            i.resource_type == resource_type, i.resource_id == resource_id, i.name == name))
        if value is not None:
            await self.add_rows([(resource_type, resource_id, name, value)])

    async def derived_value(self, resource_type: str, resource_id: str, name: str) -> str | None:
        i = search_index.c
        row = (await self.conn.execute(select(i.value).where(
            i.resource_type == resource_type, i.resource_id == resource_id, i.name == name))).first()
        return row.value if row else None

    async def owner(self, resource_type: str, resource_id: str) -> str | None:
        """Who created the resource ("rpps:...", "lab:..."); None for bilan's own."""
        return await self.derived_value(resource_type, resource_id, OWNER)

    async def referrers(self, resource_type: str, resource_id: str, limit: int = 5) -> list[str]:
        """'Type/id' of live resources other than itself whose references point at it (the
        audit trail, which names everything it saw, aside)."""
        i, r = search_index.c, resources.c
        rows = await self.conn.execute(
            select(i.resource_type, i.resource_id).distinct()
            .join(resources, and_(r.resource_type == i.resource_type, r.id == i.resource_id))
            .where(i.system == resource_type, i.value == resource_id, i.name != OWNER,
                   r.deleted.is_(False), i.resource_type != "AuditEvent",
                   or_(i.resource_type != resource_type, i.resource_id != resource_id))
            .limit(limit))
        return [f"{row.resource_type}/{row.resource_id}" for row in rows]

    async def carrying(self, resource_type: str, system: str, value: str) -> set[str]:
        """Ids of the live resources of a type with this identifier."""
        rows = await self.conn.execute(_CARRYING, {"resource_type": resource_type, "system": system,
                                                   "value": value})
        return {row.resource_id for row in rows}

    async def visible_ids(self, resource_type: str, ids: Iterable[str], allowed: Any) -> set[str]:
        """The ids among `ids` that are in `allowed` (an IdSet; None: all)."""
        ids = set(ids)
        if allowed is None or not ids:
            return ids
        rows = await self.conn.execute(select(resources.c.id).where(
            resources.c.resource_type == resource_type, resources.c.id.in_(ids),
            allowed.holds(resources.c.id)))
        return {row.id for row in rows}

    async def _drop_index(self, keys: list[tuple[str, str]]) -> None:
        """Drop the search rows of replaced versions (KEPT_ROWS stay with the resource)."""
        i = search_index.c
        for chunk in _chunks(keys, 500):
            await self.conn.execute(delete(search_index).where(i.name.not_in(KEPT_ROWS), or_(*(
                and_(i.resource_type == rtype, i.resource_id == rid) for rtype, rid in chunk
            ))))


# PostgreSQL: a unit's new versions, their history rows and their search rows in one
# statement, instead of one execution per row.
_VERSIONS = Unnested("version", (("resource_type", "text"), ("id", "text"), ("version_id", "integer"),
                                  ("last_updated", "timestamp"), ("deleted", "boolean"), ("method", "text"),
                                  ("created", "boolean"), ("content", "text")))
_INDEX = Unnested("index", (("resource_type", "text"), ("resource_id", "text"), ("name", "text"),
                             ("system", "text"), ("value", "text"), ("exact", "text"),
                             ("date_start", "timestamp"), ("date_end", "timestamp")))
_INSERT_INDEX = f"INSERT INTO search_index ({', '.join(_INDEX.names)}) SELECT * FROM {_INDEX.source()}"
_INDEX_IN_ONE_STATEMENT = text(_INSERT_INDEX).bindparams(*_INDEX.parameters())
_SAVED_IN_ONE_STATEMENT = text(
    f"WITH saved AS (SELECT * FROM {_VERSIONS.source()}), "
    "current_versions AS (INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, content) "
    "SELECT resource_type, id, version_id, last_updated, deleted, CAST(content AS jsonb) FROM saved WHERE created), "
    "all_versions AS (INSERT INTO resource_versions (resource_type, id, version_id, last_updated, method, deleted, "
    "content) SELECT resource_type, id, version_id, last_updated, method, deleted, CAST(content AS jsonb) FROM saved) "
    + _INSERT_INDEX
).bindparams(*_VERSIONS.parameters(), *_INDEX.parameters())


def _resource_row(s: Stored) -> dict[str, Any]:
    return {"resource_type": s.resource_type, "id": s.id, "version_id": s.version_id,
            "last_updated": s.last_updated, "deleted": s.deleted, "content": _content_column(s)}


def _content_column(s: Stored) -> dict[str, Any] | None:
    return None if s.deleted else s.content


def _content_text(s: Stored) -> str | None:
    """_content_column as JSON text, for the arrays of _SAVED_IN_ONE_STATEMENT."""
    content = _content_column(s)
    return None if content is None else json_dumps(content)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# One statement per access rule set (kept per caller, bilan/auth/access.py), the resource named
# by bound parameters: building the statement and its cache key for each read cost a read more
# CPU than running it.
_THIS = (resources.c.resource_type == bindparam("resource_type"), resources.c.id == bindparam("resource_id"))


_CARRYING = (
    select(search_index.c.resource_id)
    .join(resources, and_(resources.c.resource_type == search_index.c.resource_type,
                          resources.c.id == search_index.c.resource_id))
    .where(search_index.c.resource_type == bindparam("resource_type"), search_index.c.name == "identifier",
           search_index.c.system == bindparam("system"), search_index.c.value == bindparam("value"),
           resources.c.deleted.is_(False))
)


@lru_cache(maxsize=4096)
def _read_seen(allowed: Any) -> Select[Any]:
    seen = true() if allowed is None else allowed.holds(resources.c.id)
    return select(resources, seen.label("seen")).where(*_THIS)


@lru_cache(maxsize=4096)
def _seen_only(allowed: Any) -> Select[Any]:
    return select(resources.c.id).where(*_THIS, allowed.holds(resources.c.id))
