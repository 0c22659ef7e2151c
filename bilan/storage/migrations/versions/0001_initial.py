"""resources, versions, search index, prescriptions, catalogue

Revision ID: 0001
Revises:
Create Date: 2026-11-24 21:59:35.605390
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('catalogue',
    sa.Column('local_code', sa.String(length=32), nullable=False),
    sa.Column('label_fr', sa.String(length=256), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('panel', sa.String(length=32), nullable=True),
    sa.Column('loinc', sa.String(length=16), nullable=False),
    sa.Column('loinc_display', sa.String(length=256), nullable=False),
    sa.Column('chapter_loinc', sa.String(length=16), nullable=True),
    sa.Column('specimen', sa.String(length=64), nullable=True),
    sa.Column('ucum', sa.String(length=32), nullable=True),
    sa.Column('ref_low', sa.String(length=16), nullable=True),
    sa.Column('ref_high', sa.String(length=16), nullable=True),
    sa.Column('alt_ucum', sa.String(length=32), nullable=True),
    sa.Column('factor_to_alt', sa.String(length=16), nullable=True),
    sa.Column('sensitive', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('local_code')
    )
    with op.batch_alter_table('catalogue', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalogue_loinc'), ['loinc'], unique=False)

    op.create_table('prescriptions',
    sa.Column('requisition_system', sa.String(length=256), nullable=False),
    sa.Column('requisition_value', sa.String(length=128), nullable=False),
    sa.Column('requester', sa.String(length=140), nullable=False),
    sa.Column('patient', sa.String(length=140), nullable=False),
    sa.Column('exam_codes', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('requisition_system', 'requisition_value', 'requester')
    )
    op.create_table('resource_versions',
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('resource_type', 'id', 'version_id')
    )
    op.create_table('resources',
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('resource_type', 'id')
    )
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.create_index('ix_resources_type_updated', ['resource_type', 'last_updated'], unique=False)

    op.create_table('search_index',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('system', sa.String(length=256), nullable=True),
    sa.Column('value', sa.String(length=256), nullable=True),
    sa.Column('exact', sa.String(length=256), nullable=True),
    sa.Column('date_start', sa.DateTime(), nullable=True),
    sa.Column('date_end', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('pk')
    )
    with op.batch_alter_table('search_index', schema=None) as batch_op:
        batch_op.create_index('ix_search_date', ['resource_type', 'name', 'date_start'], unique=False,
                              postgresql_where=sa.text('date_start IS NOT NULL'),
                              sqlite_where=sa.text('date_start IS NOT NULL'))
        batch_op.create_index('ix_search_resource', ['resource_type', 'resource_id'], unique=False)
        batch_op.create_index('ix_search_value', ['resource_type', 'name', 'value'], unique=False,
                              postgresql_where=sa.text('value IS NOT NULL'),
                              sqlite_where=sa.text('value IS NOT NULL'))



def downgrade() -> None:
    with op.batch_alter_table('search_index', schema=None) as batch_op:
        batch_op.drop_index('ix_search_value')
        batch_op.drop_index('ix_search_resource')
        batch_op.drop_index('ix_search_date')

    op.drop_table('search_index')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_index('ix_resources_type_updated')

    op.drop_table('resources')
    op.drop_table('resource_versions')
    op.drop_table('prescriptions')
    with op.batch_alter_table('catalogue', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalogue_loinc'))

    op.drop_table('catalogue')
