"""the catalogue's clinical order, and its documentation kept for the export

The catalogue gets `position`, the lab's clinical order (its CSV's row order: the NFS's
leucocytes, hématies, hémoglobine...), which the entry page, the results desk and the report
follow instead of the alphabet; and `source` and `notes` (in `catalogue_ranges` too: `notes`),
the lab's documentation of its entries and ranges, which a load used to drop, so that the
export (`bilan catalogue --export`) gives back the CSV the lab loaded.

`position` is filled for the entries of bilan's own catalogue (bilan/data/catalogue/catalogue.csv,
as it was at this revision) that a database holds unchanged (same local code and LOINC); the
entries a lab changed or added follow them, by label, as they were shown before. `source` and
`notes` stay empty until the CSV is loaded again (`bilan catalogue`), which replaces them all.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-21 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# local_code, loinc of bilan's catalogue, in its order: an entry's position is its row (from 1).
ORDER = [
    ("NFS", "58410-2"),
    ("GB", "6690-2"),
    ("GR", "789-8"),
    ("HB", "718-7"),
    ("HT", "4544-3"),
    ("VGM", "30428-7"),
    ("TCMH", "28539-5"),
    ("CCMH", "28540-3"),
    ("IDR", "30385-9"),
    ("PLAQ", "777-3"),
    ("VMP", "32623-1"),
    ("PNN", "26499-4"),
    ("LYM", "26474-7"),
    ("MONO", "26484-6"),
    ("PNE", "26449-9"),
    ("PNB", "26444-0"),
    ("PNN_PCT", "26511-6"),
    ("LYM_PCT", "26478-8"),
    ("MONO_PCT", "26485-3"),
    ("PNE_PCT", "26450-7"),
    ("PNB_PCT", "30180-4"),
    ("VS", "30341-2"),
    ("IONO", "24326-1"),
    ("NA", "2951-2"),
    ("K", "2823-3"),
    ("CL", "2075-0"),
    ("CO2T", "2028-9"),
    ("FREN", "45066-8"),
    ("CREA", "14682-9"),
    ("DFG", "62238-1"),
    ("UREE", "22664-7"),
    ("GLY", "40193-5"),
    ("HBA1C", "4548-4"),
    ("EAL", "57698-3"),
    ("CT", "2093-3"),
    ("HDL", "2085-9"),
    ("LDL", "13457-7"),
    ("TG", "2571-8"),
    ("BH", "24325-3"),
    ("ASAT", "1920-8"),
    ("ALAT", "1742-6"),
    ("GGT", "2324-2"),
    ("PAL", "6768-6"),
    ("BILT", "14631-6"),
    ("BILC", "29760-6"),
    ("CRP", "1988-5"),
    ("TSH", "3016-3"),
    ("T4L", "14920-3"),
    ("FERRI", "2276-4"),
    ("FER", "14798-3"),
    ("VITD", "62292-8"),
    ("B12", "2132-9"),
    ("FOL", "2284-8"),
    ("PSA", "2857-1"),
    ("HCG", "19080-1"),
    ("TPINR", "34528-0"),
    ("TQ", "5902-2"),
    ("TP", "5894-1"),
    ("INR", "6301-6"),
    ("TCA", "50197-3"),
    ("TCA_P", "14979-9"),
    ("TCA_T", "13488-2"),
    ("TCA_R", "63561-5"),
    ("FIB", "3255-7"),
    ("DDIM", "48065-7"),
    ("TNT", "67151-1"),
    ("NTBNP", "33762-6"),
    ("ALB", "1751-7"),
    ("PROT", "2885-2"),
    ("CA", "2000-8"),
    ("PHOS", "14879-1"),
    ("URIC", "14933-6"),
    ("CK", "2157-6"),
    ("LIPA", "3040-3"),
    ("MALB", "9318-7"),
    ("ECBU", "630-4"),
    ("ECBU_LEU", "30405-5"),
    ("ECBU_HEM", "30391-7"),
    ("ECBU_BACT", "51480-2"),
    ("VIH", "56888-1"),
    ("AGHBS", "5196-1"),
    ("VHC", "13955-0"),
]

CATALOGUE = sa.table("catalogue", sa.column("local_code"), sa.column("loinc"), sa.column("label_fr"),
                     sa.column("position"))


def upgrade() -> None:
    with op.batch_alter_table('catalogue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('position', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('source', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('notes', sa.Text(), nullable=True))
    with op.batch_alter_table('catalogue_ranges', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notes', sa.Text(), nullable=True))
    c = CATALOGUE.c
    for position, (local_code, loinc) in enumerate(ORDER, start=1):
        op.execute(sa.update(CATALOGUE).where(c.local_code == local_code, c.loinc == loinc)
                   .values(position=position))
    # The lab's own entries after bilan's, in the order they were shown until now.
    others = op.get_bind().execute(sa.select(c.local_code).where(c.position == 0)
                                   .order_by(c.label_fr, c.local_code)).scalars().all()
    for position, local_code in enumerate(others, start=len(ORDER) + 1):
        op.execute(sa.update(CATALOGUE).where(c.local_code == local_code).values(position=position))


def downgrade() -> None:
    with op.batch_alter_table('catalogue_ranges', schema=None) as batch_op:
        batch_op.drop_column('notes')
    with op.batch_alter_table('catalogue', schema=None) as batch_op:
        batch_op.drop_column('notes')
        batch_op.drop_column('source')
        batch_op.drop_column('position')
