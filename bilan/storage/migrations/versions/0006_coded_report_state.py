"""an issued report's state in coded elements, never in its display text

bilan read whether an issued version was partial from its DocumentReference's description
("…, version 2 (partiel)"), and found an order's issued versions and DiagnosticReport by the
text of the Task.output type ("Compte rendu", "Résultats"). Both are now coded: the version's
docStatus (preliminary for a partial one, final, amended for a correction after a final one)
and a task-output coding (report, results). This codes what was stored before, the current
version of each resource (the row a read and a vread of that version return). A document or
output that already carries its code is left as it is.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 23:00:00.000000
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TASK_OUTPUT = "https://bilan.sante.fr/fhir/CodeSystem/task-output"
OUTPUTS = {"Compte rendu": "report", "Résultats": "results"}
PARTIAL = "(partiel)"


def _table(name: str) -> sa.TableClause:
    return sa.table(name, sa.column("resource_type"), sa.column("id"), sa.column("version_id"),
                    sa.column("content", sa.JSON().with_variant(JSONB(), "postgresql")))


RESOURCES, VERSIONS = _table("resources"), _table("resource_versions")


def upgrade() -> None:
    conn = op.get_bind()
    tasks = conn.execute(sa.select(RESOURCES.c.id, RESOURCES.c.version_id, RESOURCES.c.content)
                         .where(RESOURCES.c.resource_type == "Task")).all()
    for row in tasks:
        task = _json(row.content)
        if not task:
            continue
        if _code_outputs(task):
            _store(conn, "Task", row.id, row.version_id, task)
        # An order's issued versions, first to last, as the Task lists them.
        documents = [o["valueReference"]["reference"].removeprefix("DocumentReference/")
                     for o in task.get("output") or []
                     if _output_code(o) == "report"
                     and str((o.get("valueReference") or {}).get("reference", "")).startswith("DocumentReference/")]
        _code_versions(conn, documents)


def _code_outputs(task: dict[str, Any]) -> bool:
    changed = False
    for output in task.get("output") or []:
        kind = output.get("type") if isinstance(output, dict) else None
        if not isinstance(kind, dict) or kind.get("coding") or kind.get("text") not in OUTPUTS:
            continue
        kind["coding"] = [{"system": TASK_OUTPUT, "code": OUTPUTS[kind["text"]], "display": kind["text"]}]
        changed = True
    return changed


def _output_code(output: dict[str, Any]) -> str | None:
    return next((c.get("code") for c in ((output.get("type") or {}).get("coding") or [])
                 if c.get("system") == TASK_OUTPUT), None)


def _code_versions(conn: sa.Connection, ids: list[str]) -> None:
    """docStatus from the description the old code wrote: partial, else final, else amended
    once a complete version came before (the DiagnosticReport's corrected)."""
    was_final = False
    for document_id in ids:
        row = conn.execute(sa.select(RESOURCES.c.version_id, RESOURCES.c.content).where(
            RESOURCES.c.resource_type == "DocumentReference", RESOURCES.c.id == document_id)).first()
        document = _json(row.content) if row else None
        if row is None or not document:
            continue
        partial = PARTIAL in str(document.get("description", ""))
        if "docStatus" not in document:
            document["docStatus"] = "preliminary" if partial else "amended" if was_final else "final"
            _store(conn, "DocumentReference", document_id, row.version_id, document)
        was_final = was_final or document["docStatus"] != "preliminary"


def _store(conn: sa.Connection, resource_type: str, id_: str, version_id: int, content: dict[str, Any]) -> None:
    conn.execute(sa.update(RESOURCES).where(RESOURCES.c.resource_type == resource_type, RESOURCES.c.id == id_)
                 .values(content=content))
    conn.execute(sa.update(VERSIONS).where(VERSIONS.c.resource_type == resource_type, VERSIONS.c.id == id_,
                                           VERSIONS.c.version_id == version_id).values(content=content))


def _json(content: Any) -> dict[str, Any] | None:
    return content if isinstance(content, dict) else json.loads(content or "null")


def downgrade() -> None:
    # The codes sit beside the texts the older code reads (description, output type text): kept.
    pass
