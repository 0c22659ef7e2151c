"""The audit trail's own tables (append-only): written with each write in its transaction, and
after each read before it is answered (bilan/storage/read_audit.py); one statement on
PostgreSQL, two on SQLite, however many events; served as FHIR AuditEvents, read and searched."""

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import ColumnElement, exists, false, func, insert, or_, select, text, true
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.fhir.dates import instant
from bilan.fhir.outcomes import bad_request
from bilan.fhir.query import Criterion, SearchQuery, parse_reference_value, parse_token_value
from bilan.fhir.searchparams import reference_target
from bilan.storage.database import json_dumps
from bilan.storage.repository import Stored
from bilan.storage.search import SearchResult, instant_clause
from bilan.storage.tables import audit_log, audit_patients
from bilan.storage.unnested import Unnested

RESTFUL = "http://terminology.hl7.org/CodeSystem/restful-interaction"
log, named = audit_log.c, audit_patients.c
_TOKEN_COLUMNS = {"subtype": log.subtype, "action": log.action, "outcome": log.outcome,
                  "altid": log.altid}


async def append(conn: AsyncConnection, events: Sequence[tuple[dict[str, Any], datetime]]) -> None:
    """Store events (each with its id), each recorded at the time beside it."""
    if not events:
        return
    rows = [_row(event, when) for event, when in events]
    patients = [{"patient_id": patient, "event_id": event["id"], "recorded": when}
                for event, when in events for patient in sorted(patients_named(event))]
    if conn.dialect.name == "postgresql":
        await conn.execute(_IN_ONE_STATEMENT, _as_arrays(rows, patients))
        return
    await conn.execute(insert(audit_log), rows)
    if patients:
        await conn.execute(insert(audit_patients), patients)


def patients_named(event: dict[str, Any]) -> set[str]:
    """The ids of the patients an event names."""
    found = set()
    for entity in event.get("entity", []):
        target = reference_target(entity.get("what"))
        if target and target[0] == "Patient":
            found.add(target[1])
    return found


async def reads_only(conn: AsyncConnection) -> None:
    """This transaction records reads and nothing else: its commit need not wait for the disk
    (PostgreSQL's synchronous_commit off for it alone; docs/storage.md says what a crash of the
    database can lose). A write's transaction keeps waiting."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL synchronous_commit = off"))


async def read(conn: AsyncConnection, event_id: str, patients: Any | None) -> Stored | None:
    """The event, if it names one of `patients` (a subquery of Patient ids; None: any event)."""
    where = [log.id == event_id]
    if patients is not None:
        where.append(_names_one_of(patients))
    row = (await conn.execute(select(audit_log).where(*where))).first()
    return None if row is None else _stored(row)


async def search(conn: AsyncConnection, query: SearchQuery, base_url: str,
                 patients: Any | None) -> SearchResult:
    """The events matching a search, among those naming one of `patients` (None: all), newest
    first unless the search sorts otherwise."""
    if query.includes or query.revincludes:
        raise bad_request("AuditEvent searches take no _include or _revinclude", "_include")
    where = [_criterion(c, base_url) for c in query.criteria]
    if patients is not None:
        where.append(_names_one_of(patients))
    total = (await conn.execute(select(func.count()).select_from(audit_log).where(*where))).scalar_one()
    if query.summary_count or query.count == 0:
        return SearchResult(total, [], [])
    stmt = select(audit_log).where(*where).order_by(*_order(query)).limit(query.count).offset(query.offset)
    return SearchResult(total, [_stored(row) for row in await conn.execute(stmt)], [])


async def trail(conn: AsyncConnection, patients: Any, *, professionals_only: bool = False,
                refused_only: bool = False, count: int, offset: int = 0) -> tuple[int, list[Stored]]:
    """A patient's trail, newest first: the events naming one of `patients` (a subquery of
    Patient ids), only those of professionals and their software (no patient's: in her trail,
    a patient's access is hers, whatever account she used), or only refusals; the total and
    one page."""
    where = [_names_one_of(patients)]
    if professionals_only:
        where.append(_AGENT.not_like("patient:%"))
    if refused_only:
        where.append(log.outcome != "0")
    total = (await conn.execute(select(func.count()).select_from(audit_log).where(*where))).scalar_one()
    rows = await conn.execute(select(audit_log).where(*where).order_by(log.recorded.desc(), log.id)
                              .limit(count).offset(offset))
    return total, [_stored(row) for row in rows]


async def read_by(conn: AsyncConnection, subject: str, references: set[str]) -> set[str]:
    """Which of `references` ("Type/id") the person whose subject is `subject` read (and was
    let read): a patient's "opened" reports."""
    rows = await conn.execute(select(log.content).where(
        log.altid == subject, log.subtype.in_(("read", "vread")), log.outcome == "0"))
    read = {str((e.get("what") or {}).get("reference", "")) for (event,) in rows for e in event.get("entity", [])}
    return references & read


_AGENT = log.content[("agent", 0, "who", "identifier", "value")].as_string()  # "prescriber:1000…"


# PostgreSQL: the events and the patients they name in one statement of one shape whatever
# their number.
_EVENTS = Unnested("event", (("id", "text"), ("recorded", "timestamp"), ("subtype", "text"), ("action", "text"),
                             ("outcome", "text"), ("altid", "text"), ("content", "text")))
_NAMED = Unnested("named", (("patient_id", "text"), ("event_id", "text"), ("recorded", "timestamp")))
_IN_ONE_STATEMENT = text(
    f"WITH logged AS (INSERT INTO audit_log ({', '.join(_EVENTS.names)}) "
    f"SELECT id, recorded, subtype, action, outcome, altid, CAST(content AS jsonb) FROM {_EVENTS.source()}) "
    f"INSERT INTO audit_patients ({', '.join(_NAMED.names)}) SELECT * FROM {_NAMED.source()}"
).bindparams(*_EVENTS.parameters(), *_NAMED.parameters())


def _as_arrays(rows: list[dict[str, Any]], patients: list[dict[str, Any]]) -> dict[str, list[Any]]:
    events = [(*(row[name] for name in _EVENTS.names[:-1]), json_dumps(row["content"])) for row in rows]
    return {**_EVENTS.values(events), **_NAMED.values([tuple(p[name] for name in _NAMED.names) for p in patients])}


def _row(event: dict[str, Any], when: datetime) -> dict[str, Any]:
    agents = event.get("agent") or [{}]
    return {"id": event["id"], "recorded": when, "subtype": event["subtype"][0]["code"],
            "action": event["action"], "outcome": event["outcome"],
            "altid": agents[0].get("altId"), "content": event}


def _stored(row: Any) -> Stored:
    content = dict(row.content, meta={"versionId": "1", "lastUpdated": instant(row.recorded)})
    return Stored("AuditEvent", row.id, 1, row.recorded, False, content)


def _names_one_of(patients: Any) -> ColumnElement[bool]:
    return exists().where(named.event_id == log.id, named.patient_id.in_(patients))


def _order(query: SearchQuery) -> list[Any]:
    if not query.sort:
        return [log.recorded.desc(), log.id]
    keys = []
    for param, descending in query.sort:
        column = log.id if param.name == "_id" else log.recorded
        keys.append(column.desc() if descending else column.asc())
    return [*keys, log.id]


def _criterion(c: Criterion, base_url: str) -> ColumnElement[bool]:
    if c.chain is not None:
        raise bad_request(f"AuditEvent searches take no chained parameter ({c.param.name})",
                          c.param.name)
    name = c.param.name
    if name == "_id":
        return log.id.in_(c.values)
    if name in ("date", "_lastUpdated"):
        return or_(*(instant_clause(value, log.recorded) for value in c.values))
    if name == "patient":
        ids = [parse_reference_value(value, ("Patient",), base_url) for value in c.values]
        wanted = [ident for targets, ident in ids if "Patient" in targets]
        return exists().where(named.event_id == log.id, named.patient_id.in_(wanted))
    return or_(*(_token(name, value) for value in c.values))


def _token(name: str, value: str) -> ColumnElement[bool]:
    system, code = parse_token_value(value)
    column = _TOKEN_COLUMNS[name]
    # Only the subtype is coded in a system; the other three are plain codes or strings.
    system_matches = system is None or system == (RESTFUL if name == "subtype" else "")
    if not system_matches:
        return false()
    return column == code if code is not None else true()
