"""the audit trail in a table of its own, append-only

Until this revision every AuditEvent was a FHIR resource like any other: a row in `resources`,
one in `resource_versions` and five to ten search rows, written on every read. The trail now
has its own tables: `audit_log`, one row per event with the columns its searches need, and
`audit_patients`, the patients each event names. Triggers refuse any UPDATE or DELETE on them
(and TRUNCATE on PostgreSQL): the trail only grows.

The events stored before move there unchanged (their ids, times and content), and leave the
resource tables. Going back moves them back, with the search rows they had.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 04:00:00.000000
"""

import json
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

RESTFUL = "http://terminology.hl7.org/CodeSystem/restful-interaction"
BATCH = 1000
TABLES = ("audit_log", "audit_patients")


def _json(bind: Any) -> Any:
    return JSONB() if bind.dialect.name == "postgresql" else sa.JSON()


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        'audit_log',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('recorded', sa.DateTime(), nullable=False),
        sa.Column('subtype', sa.String(length=32), nullable=False),
        sa.Column('action', sa.String(length=1), nullable=False),
        sa.Column('outcome', sa.String(length=2), nullable=False),
        sa.Column('altid', sa.String(length=140), nullable=True),
        sa.Column('content', _json(bind), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_log_recorded', 'audit_log', ['recorded'])
    op.create_index('ix_audit_log_altid_recorded', 'audit_log', ['altid', 'recorded'])
    op.create_table(
        'audit_patients',
        sa.Column('patient_id', sa.String(length=64), nullable=False),
        sa.Column('event_id', sa.String(length=64), nullable=False),
        sa.Column('recorded', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('patient_id', 'event_id'),
    )
    op.create_index('ix_audit_patients_patient_recorded', 'audit_patients', ['patient_id', 'recorded'])
    _move_events_to_the_log(bind)
    _refuse_changes(bind)


def downgrade() -> None:
    bind = op.get_bind()
    _allow_changes(bind)
    _move_events_back(bind)
    op.drop_table('audit_patients')
    op.drop_table('audit_log')


def _content(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value)


def _patients(event: dict[str, Any]) -> set[str]:
    found = set()
    for entity in event.get("entity", []):
        reference = (entity.get("what") or {}).get("reference", "")
        kind, _, ident = reference.partition("/")
        if kind == "Patient" and ident:
            found.add(ident)
    return found


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=None) if value.tzinfo is None else \
        value.astimezone(timezone.utc).replace(tzinfo=None)


def _chunks(rows: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start:start + BATCH]


def _move_events_to_the_log(bind: Any) -> None:
    resources = sa.table('resources', sa.column('resource_type'), sa.column('id'),
                         sa.column('last_updated', sa.DateTime()), sa.column('deleted'),
                         sa.column('content'))
    log = sa.table('audit_log', sa.column('id'), sa.column('recorded'), sa.column('subtype'),
                   sa.column('action'), sa.column('outcome'), sa.column('altid'),
                   sa.column('content', _json(bind)))
    named = sa.table('audit_patients', sa.column('patient_id'), sa.column('event_id'),
                     sa.column('recorded'))
    rows = list(bind.execute(sa.select(resources.c.id, resources.c.last_updated, resources.c.content)
                             .where(resources.c.resource_type == 'AuditEvent',
                                    resources.c.deleted.is_(False))))
    for chunk in _chunks(rows):
        events, patients = [], []
        for row in chunk:
            event = _content(row.content)
            event.pop("meta", None)
            subtypes = [s.get("code", "") for s in event.get("subtype", [])]
            agents = event.get("agent") or [{}]
            events.append({"id": row.id, "recorded": _utc(row.last_updated),
                           "subtype": (subtypes or [""])[0], "action": event.get("action", "E"),
                           "outcome": event.get("outcome", "0"), "altid": agents[0].get("altId"),
                           "content": event})
            patients += [{"patient_id": p, "event_id": row.id, "recorded": _utc(row.last_updated)}
                         for p in sorted(_patients(event))]
        bind.execute(sa.insert(log), events)
        if patients:
            bind.execute(sa.insert(named), patients)
    for table, column in (("search_index", "resource_type"), ("resource_versions", "resource_type"),
                          ("resources", "resource_type")):
        bind.execute(sa.text(f"DELETE FROM {table} WHERE {column} = 'AuditEvent'"))


def _move_events_back(bind: Any) -> None:
    json_type = _json(bind)
    resources = sa.table('resources', sa.column('resource_type'), sa.column('id'),
                         sa.column('version_id'), sa.column('last_updated'), sa.column('deleted'),
                         sa.column('content', json_type))
    versions = sa.table('resource_versions', sa.column('resource_type'), sa.column('id'),
                        sa.column('version_id'), sa.column('last_updated'), sa.column('method'),
                        sa.column('deleted'), sa.column('content', json_type))
    index = sa.table('search_index', sa.column('resource_type'), sa.column('resource_id'),
                     sa.column('name'), sa.column('system'), sa.column('value'),
                     sa.column('exact'), sa.column('date_start'), sa.column('date_end'))
    rows = list(bind.execute(sa.text("SELECT id, recorded, content FROM audit_log")))
    for chunk in _chunks(rows):
        current, history, search = [], [], []
        for row in chunk:
            recorded = row.recorded if isinstance(row.recorded, datetime) \
                else datetime.fromisoformat(str(row.recorded))
            event = _content(row.content)
            event["meta"] = {"versionId": "1",
                             "lastUpdated": recorded.replace(tzinfo=timezone.utc).isoformat()}
            stored = {"resource_type": "AuditEvent", "id": row.id, "version_id": 1,
                      "last_updated": recorded, "deleted": False, "content": event}
            current.append(stored)
            history.append(dict(stored, method="POST"))
            search += [_row(row.id, name, system, value)
                       for name, system, value in _search_values(event)]
            search.append(dict(_row(row.id, "date", None, None), date_start=recorded,
                               date_end=recorded))
        bind.execute(sa.insert(resources), current)
        bind.execute(sa.insert(versions), history)
        if search:
            bind.execute(sa.insert(index), search)


def _row(event_id: str, name: str, system: str | None, value: str | None) -> dict[str, Any]:
    return {"resource_type": "AuditEvent", "resource_id": event_id, "name": name,
            "system": system, "value": value, "exact": None, "date_start": None, "date_end": None}


def _search_values(event: dict[str, Any]) -> Iterator[tuple[str, str | None, str]]:
    for patient in sorted(_patients(event)):
        yield "patient", "Patient", patient
    for subtype in event.get("subtype", []):
        yield "subtype", subtype.get("system"), subtype.get("code", "")
    yield "action", None, event.get("action", "E")
    yield "outcome", None, event.get("outcome", "0")
    for agent in event.get("agent", []):
        if agent.get("altId"):
            yield "altid", None, agent["altId"]


def _refuse_changes(bind: Any) -> None:
    if bind.dialect.name == "postgresql":
        op.execute("CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
                   "BEGIN RAISE EXCEPTION 'the audit trail is append-only (%)', TG_TABLE_NAME; END $$")
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()")
        return
    for table in TABLES:
        for change in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{change.lower()} BEFORE {change} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only ({table})'); END")


def _allow_changes(bind: Any) -> None:
    if bind.dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION audit_append_only()")
        return
    for table in TABLES:
        for change in ("update", "delete"):
            op.execute(f"DROP TRIGGER {table}_no_{change}")
