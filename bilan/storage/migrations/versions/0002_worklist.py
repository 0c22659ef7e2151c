"""worklist, worklist terms, counters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 23:33:15.165507
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('counters',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('worklist',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('requisition_system', sa.String(length=256), nullable=False),
    sa.Column('requisition_value', sa.String(length=128), nullable=False),
    sa.Column('requester', sa.String(length=140), nullable=False),
    sa.Column('lab_finess', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('task_id', sa.String(length=64), nullable=False),
    sa.Column('patient', sa.String(length=140), nullable=False),
    sa.Column('patient_name', sa.String(length=256), nullable=False),
    sa.Column('birth_date', sa.String(length=10), nullable=True),
    sa.Column('sex', sa.String(length=16), nullable=True),
    sa.Column('ins', sa.String(length=32), nullable=True),
    sa.Column('identity_status', sa.String(length=8), nullable=True),
    sa.Column('prescriber_name', sa.String(length=256), nullable=False),
    sa.Column('exam_count', sa.Integer(), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('order_lab', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('worklist', schema=None) as batch_op:
        batch_op.create_index('ix_worklist_number', ['requisition_value', 'lab_finess', 'status'], unique=False)
        batch_op.create_index('ux_worklist_task', ['task_id'], unique=True)
        batch_op.create_index('ix_worklist_lab_received', ['lab_finess', 'received_at'], unique=False)
        batch_op.create_index('ix_worklist_lab_status_received', ['lab_finess', 'status', 'received_at'], unique=False)
        batch_op.create_index('ux_worklist_prescription', ['requisition_system', 'requisition_value', 'requester'], unique=True)

    op.create_table('worklist_terms',
    sa.Column('worklist_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('term', sa.String(length=64).with_variant(sa.String(length=64, collation='C'), 'postgresql'), nullable=False),
    sa.Column('lab_finess', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('worklist_id', 'term')
    )
    with op.batch_alter_table('worklist_terms', schema=None) as batch_op:
        batch_op.create_index('ix_worklist_terms_lab_term', ['lab_finess', 'term', 'received_at'], unique=False)
        batch_op.create_index('ix_worklist_terms_lab_status_term', ['lab_finess', 'status', 'term'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('worklist_terms', schema=None) as batch_op:
        batch_op.drop_index('ix_worklist_terms_lab_status_term')
        batch_op.drop_index('ix_worklist_terms_lab_term')

    op.drop_table('worklist_terms')
    with op.batch_alter_table('worklist', schema=None) as batch_op:
        batch_op.drop_index('ux_worklist_prescription')
        batch_op.drop_index('ix_worklist_lab_status_received')
        batch_op.drop_index('ix_worklist_lab_received')
        batch_op.drop_index('ix_worklist_number')
        batch_op.drop_index('ux_worklist_task')

    op.drop_table('worklist')
    op.drop_table('counters')
