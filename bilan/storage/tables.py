"""The tables. Every schema change also gets an Alembic revision in migrations/versions."""

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

metadata = MetaData()


class Instant(TypeDecorator[datetime]):
    """An instant: aware UTC in code, stored as UTC in a column without a time zone (the same
    on SQLite, which has none, and PostgreSQL). A naive datetime is refused, not guessed."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime cannot be stored as an instant: {value!r}")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


Json = JSON().with_variant(JSONB(), "postgresql")

# The current version of each resource; deleted ones stay, flagged, so reads can answer 410.
resources = Table(
    "resources",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", Instant, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Json, nullable=True),
    Index("ix_resources_type_updated", "resource_type", "last_updated"),
)

# Every version ever written, the current one included.
resource_versions = Table(
    "resource_versions",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("version_id", Integer, primary_key=True),
    Column("last_updated", Instant, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", Json, nullable=True),
)

# Search rows extracted at write time from the current version (see fhir/searchparams.py).
search_index = Table(
    "search_index",
    metadata,
    Column("pk", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("system", String(256), nullable=True),
    Column("value", String(256), nullable=True),
    Column("exact", String(256), nullable=True),
    Column("date_start", Instant, nullable=True),
    Column("date_end", Instant, nullable=True),
    # Partial, so that a lookup by value can never be planned on the date index (and back),
    # even before PostgreSQL has statistics on a new table. The resource's id last: an access
    # rule's probe of one resource's row (name = value for that id) is then one exact index
    # lookup, which no estimate can make the planner trade for the scan of every row of a value.
    Index("ix_search_value", "resource_type", "name", "value", "resource_id",
          postgresql_where=text("value IS NOT NULL"), sqlite_where=text("value IS NOT NULL")),
    Index("ix_search_date", "resource_type", "name", "date_start",
          postgresql_where=text("date_start IS NOT NULL"), sqlite_where=text("date_start IS NOT NULL")),
    Index("ix_search_resource", "resource_type", "resource_id"),
)

# One row per received prescription: makes re-sending the same one idempotent.
prescriptions = Table(
    "prescriptions",
    metadata,
    Column("requisition_system", String(256), primary_key=True),
    Column("requisition_value", String(128), primary_key=True),
    Column("requester", String(140), primary_key=True),
    Column("patient", String(140), nullable=False),
    Column("exam_codes", Text, nullable=False),
    Column("received_at", Instant, nullable=False),
    Column("response", JSON, nullable=False),
)

# The lab's exam catalogue (LOINC-coded, UCUM units), loaded from a CSV.
catalogue = Table(
    "catalogue",
    metadata,
    Column("local_code", String(32), primary_key=True),
    Column("label_fr", String(256), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("panel", String(32), nullable=True),
    Column("loinc", String(16), nullable=False, index=True),
    Column("loinc_display", String(256), nullable=False),
    Column("chapter_loinc", String(16), nullable=True),
    Column("specimen", String(64), nullable=True),
    Column("ucum", String(32), nullable=True),
    Column("ref_low", String(16), nullable=True),
    Column("ref_high", String(16), nullable=True),
    # What a living patient's result can be, in `ucum` (results beyond are refused); for all
    # patients: limits per sex or age, should they ever differ, would be rows of their own.
    Column("plausible_low", String(16), nullable=True),
    Column("plausible_high", String(16), nullable=True),
    # Beyond these (in `ucum`) a result is critical (HH/LL): the biologist calls the prescriber.
    Column("critical_low", String(16), nullable=True),
    Column("critical_high", String(16), nullable=True),
    Column("alt_ucum", String(32), nullable=True),
    Column("factor_to_alt", String(16), nullable=True),
    Column("sensitive", Boolean, nullable=False, default=False),
    # The lab's clinical order: the entry's row in its CSV (NFS: leucocytes, hématies...), which
    # the entry page, the results desk, the report and the export follow.
    Column("position", Integer, nullable=False, server_default=text("0")),
    # Where the code and display were confirmed, where the ranges come from: the lab's own
    # documentation, kept so that the export gives back the CSV it loaded.
    Column("source", Text, nullable=True),
    Column("notes", Text, nullable=True),
)

# The catalogue's reference ranges by sex and age band (loaded with it from ranges.csv): the
# range a result is judged by is the patient's, the entry's ref_low/ref_high when no row fits.
catalogue_ranges = Table(
    "catalogue_ranges",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("local_code", String(32), nullable=False, index=True),
    Column("sex", String(8), nullable=False),  # female, male or any
    Column("age_min_years", String(8), nullable=True),  # inclusive; none: from birth
    Column("age_max_years", String(8), nullable=True),  # exclusive; none: no upper bound
    Column("ref_low", String(16), nullable=True),
    Column("ref_high", String(16), nullable=True),
    Column("notes", Text, nullable=True),  # the row's source, given back by the export
)

# The lab reception's worklist: one row per received prescription, with what the front desk
# searches and shows, so that searching never reads resources (see prescription/worklist.py).
worklist = Table(
    "worklist",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("requisition_system", String(256), nullable=False),
    Column("requisition_value", String(128), nullable=False),
    Column("requester", String(140), nullable=False),
    Column("lab_finess", String(16), nullable=False),  # the lab it is addressed to; "" for none
    Column("received_at", Instant, nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("patient", String(140), nullable=False),
    Column("patient_name", String(256), nullable=False),
    Column("birth_date", String(10), nullable=True),
    Column("sex", String(16), nullable=True),
    Column("ins", String(32), nullable=True),
    Column("identity_status", String(8), nullable=True),
    Column("prescriber_name", String(256), nullable=False),
    Column("exam_count", Integer, nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("status", String(16), nullable=False),  # received, imported, cancelled
    Column("order_lab", String(16), nullable=True),  # the lab that imported it
    Index("ux_worklist_prescription", "requisition_system", "requisition_value", "requester",
          unique=True),
    Index("ix_worklist_number", "requisition_value", "lab_finess", "status"),
    Index("ux_worklist_task", "task_id", unique=True),
    Index("ix_worklist_lab_received", "lab_finess", "received_at"),
    Index("ix_worklist_lab_status_received", "lab_finess", "status", "received_at"),
)

# Words a receptionist may type to find a worklist row: normalised names, numbers, dates.
worklist_terms = Table(
    "worklist_terms",
    metadata,
    Column("worklist_id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    # Byte order on PostgreSQL too, so that a prefix is a range of the index.
    Column("term", String(64).with_variant(String(64, collation="C"), "postgresql"), primary_key=True),
    Column("lab_finess", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # the row's, so that a search by state
    Column("received_at", Instant, nullable=False),  # never reads the lab's whole history
    Index("ix_worklist_terms_lab_term", "lab_finess", "term", "received_at"),
    Index("ix_worklist_terms_lab_status_term", "lab_finess", "status", "term"),
)

# Notifications to deliver after commit (rest-hook calls, e-mails): written in the same
# transaction as the change they announce, delivered and retried by bilan/notifications.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("channel", String(16), nullable=False),  # rest-hook, email
    Column("target", String(512), nullable=False),  # the endpoint URL or the mail address
    Column("subscription", String(64), nullable=True),  # Subscription id (rest-hook)
    Column("resource", String(140), nullable=True),  # "Type/id" of what changed
    Column("about", String(140), nullable=True),  # "Task/id": the prescription it concerns
    Column("payload", JSON, nullable=False),  # what to send (method, headers, body / subject, text)
    Column("status", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Instant, nullable=False),
    Column("lease_until", Instant, nullable=True),  # a worker is sending it until then
    Column("last_error", Text, nullable=True),
    Column("created_at", Instant, nullable=False),
    Column("delivered_at", Instant, nullable=True),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_about", "about"),
)

# Named sequences (accession numbers per lab and day, lab patient numbers).
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Web logins kept by the server (bilan/storage/sessions.py). The browser holds a random
# token; the table holds only its SHA-256, so reading it gives no usable cookie.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the cookie's token, in hex
    Column("data", JSON, nullable=False),  # who is logged in, or a login under way
    Column("created_at", Instant, nullable=False),
    Column("last_seen_at", Instant, nullable=False),  # idle timeout counts from here
    Column("expires_at", Instant, nullable=False),  # absolute end, whatever the activity
    Column("revoked", Boolean, nullable=False),  # logged out: refused from then on
    Index("ix_web_sessions_expires", "expires_at"),
)

# The audit trail (bilan/auth/audit.py), append-only: one row per AuditEvent, written in the
# transaction of the access it records, never updated or deleted (triggers refuse it).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("recorded", Instant, nullable=False),
    Column("subtype", String(32), nullable=False),  # the interaction: read, search-type, login...
    Column("action", String(1), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("altid", String(140), nullable=True),  # the caller's subject
    Column("content", Json, nullable=False),  # the AuditEvent, as served
    Index("ix_audit_log_recorded", "recorded"),
    Index("ix_audit_log_altid_recorded", "altid", "recorded"),
)

# The patients an AuditEvent names (Patient ids): a patient's "who accessed my data".
audit_patients = Table(
    "audit_patients",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("recorded", Instant, nullable=False),
    Index("ix_audit_patients_patient_recorded", "patient_id", "recorded"),
)
