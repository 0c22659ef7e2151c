"""access rows derived from facts fixed at intake; Task.code as a CodeableConcept

Access no longer follows the directory (a Practitioner's or an Organization's identifiers,
which someone may rewrite): the write pipeline records, beside each prescription, the RPPS of
its requester and the FINESS of the lab it is addressed to, and beside each Task the FINESS of
the lab that took it. This fills those rows in for what was stored before. It also makes
what the lab's own code stored readable and writable back as is: the Tasks' code as the
CodeableConcept FHIR asks for (it was a bare Coding), and the time of the notes the results
desk wrote as an instant with its zone (it was a naive UTC time).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 22:40:00.000000
"""

import json
import re
from typing import Any, Callable

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

RPPS = "https://rpps.esante.gouv.fr"
ORGANIZATION_ID = "urn:oid:1.2.250.1.71.4.2.2"
NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$")

INSERT = ("INSERT INTO search_index (resource_type, resource_id, name, system, value) "
          "SELECT DISTINCT {select} ")
NOT_A_LABS = ("NOT EXISTS (SELECT 1 FROM search_index o WHERE o.resource_type = s.resource_type "
              "AND o.resource_id = s.resource_id AND o.name = '_owner' AND o.value LIKE 'lab:%')")

REQUESTER_DIRECT = INSERT.format(select="s.resource_type, s.resource_id, '_requester', NULL, p.value") + f"""
FROM search_index s JOIN search_index p ON p.resource_type = 'Practitioner'
 AND p.resource_id = s.value AND p.name = 'identifier' AND p.system = '{RPPS}'
WHERE s.resource_type = 'ServiceRequest' AND s.name = 'requester' AND s.system = 'Practitioner'
 AND {NOT_A_LABS}"""

REQUESTER_ROLE = INSERT.format(select="s.resource_type, s.resource_id, '_requester', NULL, p.value") + f"""
FROM search_index s JOIN search_index r ON r.resource_type = 'PractitionerRole'
 AND r.resource_id = s.value AND r.name = 'practitioner' AND r.system = 'Practitioner'
 JOIN search_index p ON p.resource_type = 'Practitioner' AND p.resource_id = r.value
 AND p.name = 'identifier' AND p.system = '{RPPS}'
WHERE s.resource_type = 'ServiceRequest' AND s.name = 'requester' AND s.system = 'PractitionerRole'
 AND {NOT_A_LABS}"""

LAB = INSERT.format(select="s.resource_type, s.resource_id, '_lab', NULL, substr(o.value, 2)") + f"""
FROM search_index s JOIN search_index o ON o.resource_type = 'Organization'
 AND o.resource_id = s.value AND o.name = 'identifier' AND o.system = '{ORGANIZATION_ID}'
 AND o.value LIKE '1%'
WHERE s.system = 'Organization' AND ((s.resource_type = 'ServiceRequest' AND s.name = 'performer')
 OR (s.resource_type = 'Task' AND s.name = 'owner'))"""


def upgrade() -> None:
    for statement in (REQUESTER_DIRECT, REQUESTER_ROLE, LAB):
        op.execute(statement)
    _rewrite("Task", _task_code)
    _rewrite("Observation", _note_times)


def _rewrite(resource_type: str, fix: Callable[[dict[str, Any]], bool]) -> None:
    """Apply `fix` to the current version of every resource of a type; store what it changed,
    in the resource and in its history row of that version (a read by version agrees)."""
    conn = op.get_bind()
    content_type = sa.JSON().with_variant(JSONB(), "postgresql")
    resources, versions = (sa.table(name, sa.column("resource_type"), sa.column("id"),
                                    sa.column("version_id"), sa.column("content", content_type))
                           for name in ("resources", "resource_versions"))
    rows = conn.execute(sa.select(resources.c.id, resources.c.version_id, resources.c.content)
                        .where(resources.c.resource_type == resource_type)).all()
    for row in rows:
        content = row.content if isinstance(row.content, dict) else json.loads(row.content or "null")
        if content and fix(content):
            for table in (resources, versions):
                conn.execute(sa.update(table).where(
                    table.c.resource_type == resource_type, table.c.id == row.id,
                    table.c.version_id == row.version_id).values(content=content))


def _task_code(task: dict[str, Any]) -> bool:
    code = task.get("code")
    if isinstance(code, dict) and "system" in code and "coding" not in code:
        task["code"] = {"coding": [code]}
        return True
    return False


def _note_times(observation: dict[str, Any]) -> bool:
    changed = False
    for note in observation.get("note") or []:
        time = note.get("time") if isinstance(note, dict) else None
        if isinstance(time, str) and NAIVE_TIME.match(time):
            note["time"] = time + "Z"  # stored times are UTC
            changed = True
    return changed


def downgrade() -> None:
    op.execute("DELETE FROM search_index WHERE name IN ('_requester', '_lab')")
