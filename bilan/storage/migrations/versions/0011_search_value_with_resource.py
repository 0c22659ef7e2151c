"""the resource's id in the search rows' value index

An access rule tests one resource by probing its search rows: a ServiceRequest row naming the
Patient, with a `_requester` row of the prescriber's for the same ServiceRequest. The probe's
conditions (type, name, value, resource) matched two indexes equally, and without statistics
(a database freshly loaded, autovacuum off) PostgreSQL took the value index and read every
`_requester` row of the prescriber to find one: 2.5 ms per read at 8,500 requests, growing
with them. With the resource's id as the value index's last column the probe is one exact
lookup, whatever the statistics; lookups by type, name and value use its first columns as
before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 14:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

WITH_VALUE = sa.text("value IS NOT NULL")


def _value_index(columns: list[str]) -> None:
    op.drop_index("ix_search_value", table_name="search_index")
    op.create_index("ix_search_value", "search_index", columns,
                    postgresql_where=WITH_VALUE, sqlite_where=WITH_VALUE)


def upgrade() -> None:
    _value_index(["resource_type", "name", "value", "resource_id"])


def downgrade() -> None:
    _value_index(["resource_type", "name", "value"])
