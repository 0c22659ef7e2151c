"""critical limits and reference ranges by sex and age in the catalogue

Each quantitative entry of the catalogue may give critical limits (critical_low,
critical_high, in the entry's unit): a result beyond them is flagged LL/HH and the biologist
calls the prescriber before validating it. And an entry may have reference ranges per sex and
age band, rows of a new table `catalogue_ranges`: a result is judged by the patient's range.

The columns and the table are added, then filled for the entries of bilan's own catalogue
(bilan/data/catalogue/catalogue.csv and ranges.csv, as they were at this revision) that a
database holds unchanged: same local code, LOINC and unit. An entry the lab changed or added
gets neither until its CSV gives them (`bilan catalogue`); a reload of the catalogue replaces
them all.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# local_code, loinc, ucum, critical_low, critical_high (see the catalogue's README).
CRITICAL = [
    ("GB", "6690-2", "10*9/L", "1", "50"),
    ("HB", "718-7", "g/dL", "7", None),
    ("PLAQ", "777-3", "10*9/L", "20", "1000"),
    ("PNN", "26499-4", "10*9/L", "0.5", None),
    ("NA", "2951-2", "mmol/L", "120", "160"),
    ("K", "2823-3", "mmol/L", "2.8", "6.2"),
    ("CO2T", "2028-9", "mmol/L", "10", None),
    ("CREA", "14682-9", "umol/L", None, "650"),
    ("GLY", "40193-5", "mmol/L", "2.2", "25"),
    ("INR", "6301-6", "{INR}", None, "5"),
    ("FIB", "3255-7", "g/L", "1", None),
    ("CA", "2000-8", "mmol/L", "1.6", "3.5"),
    ("PHOS", "14879-1", "mmol/L", "0.3", None),
]

# local_code, loinc, ucum of the entry; sex, age_min_years, age_max_years, ref_low, ref_high.
RANGES = [
    ("HB", "718-7", "g/dL", "any", "0", "0.5", None, None),
    ("HB", "718-7", "g/dL", "any", "0.5", "5", "11", "14"),
    ("HB", "718-7", "g/dL", "any", "5", "12", "11.5", "14.5"),
    ("HB", "718-7", "g/dL", "female", "12", None, "12", "16"),
    ("HB", "718-7", "g/dL", "male", "12", "15", "12", "16"),
    ("HB", "718-7", "g/dL", "male", "15", None, "13", "17"),
    ("GR", "789-8", "10*12/L", "any", "0", "0.5", None, None),
    ("GR", "789-8", "10*12/L", "any", "0.5", "5", "3.7", "5.2"),
    ("GR", "789-8", "10*12/L", "any", "5", "12", "4.0", "5.4"),
    ("GR", "789-8", "10*12/L", "female", "12", None, "3.8", "5.2"),
    ("GR", "789-8", "10*12/L", "male", "12", "15", "4.0", "5.4"),
    ("GR", "789-8", "10*12/L", "male", "15", None, "4.50", "6.00"),
    ("HT", "4544-3", "%", "any", "0", "0.5", None, None),
    ("HT", "4544-3", "%", "any", "0.5", "5", "33", "44"),
    ("HT", "4544-3", "%", "any", "5", "12", "36", "45"),
    ("HT", "4544-3", "%", "female", "12", None, "36", "46"),
    ("HT", "4544-3", "%", "male", "12", "15", "36", "46"),
    ("HT", "4544-3", "%", "male", "15", None, "40", "54"),
    ("FERRI", "2276-4", "ug/L", "female", "15", None, "15", "150"),
    ("FERRI", "2276-4", "ug/L", "male", "15", None, "30", "400"),
    ("CREA", "14682-9", "umol/L", "any", "0", "1", None, None),
    ("CREA", "14682-9", "umol/L", "any", "1", "3", "15", "31"),
    ("CREA", "14682-9", "umol/L", "any", "3", "5", "23", "37"),
    ("CREA", "14682-9", "umol/L", "any", "5", "7", "25", "42"),
    ("CREA", "14682-9", "umol/L", "any", "7", "9", "30", "48"),
    ("CREA", "14682-9", "umol/L", "any", "9", "11", "28", "57"),
    ("CREA", "14682-9", "umol/L", "any", "11", "13", "37", "63"),
    ("CREA", "14682-9", "umol/L", "any", "13", "15", "40", "72"),
    ("CREA", "14682-9", "umol/L", "female", "15", None, "45", "90"),
    ("CREA", "14682-9", "umol/L", "male", "15", None, "59", "104"),
    ("URIC", "14933-6", "umol/L", "female", "15", None, "140", "340"),
    ("URIC", "14933-6", "umol/L", "male", "15", None, "200", "420"),
    ("CK", "2157-6", "U/L", "female", "18", None, "34", "145"),
    ("CK", "2157-6", "U/L", "male", "18", None, "46", "171"),
    ("GGT", "2324-2", "U/L", "female", "18", None, "4", "38"),
    ("GGT", "2324-2", "U/L", "male", "18", None, "4", "55"),
    ("ALAT", "1742-6", "U/L", "female", "18", None, "10", "35"),
    ("ALAT", "1742-6", "U/L", "male", "18", None, "10", "50"),
    ("ASAT", "1920-8", "U/L", "female", "18", None, "10", "35"),
    ("ASAT", "1920-8", "U/L", "male", "18", None, "10", "50"),
    ("VS", "30341-2", "mm/h", "female", "18", "50", None, "20"),
    ("VS", "30341-2", "mm/h", "male", "18", "50", None, "15"),
    ("VS", "30341-2", "mm/h", "female", "50", None, None, "30"),
    ("VS", "30341-2", "mm/h", "male", "50", None, None, "20"),
    ("NTBNP", "33762-6", "ng/L", "any", "75", None, None, "450"),
]

CATALOGUE = sa.table("catalogue", sa.column("local_code"), sa.column("loinc"), sa.column("ucum"),
                     sa.column("critical_low"), sa.column("critical_high"))
BANDS = sa.table("catalogue_ranges", sa.column("local_code"), sa.column("sex"), sa.column("age_min_years"),
                 sa.column("age_max_years"), sa.column("ref_low"), sa.column("ref_high"))


def upgrade() -> None:
    with op.batch_alter_table('catalogue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('critical_low', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('critical_high', sa.String(length=16), nullable=True))
    op.create_table('catalogue_ranges',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('local_code', sa.String(length=32), nullable=False),
    sa.Column('sex', sa.String(length=8), nullable=False),
    sa.Column('age_min_years', sa.String(length=8), nullable=True),
    sa.Column('age_max_years', sa.String(length=8), nullable=True),
    sa.Column('ref_low', sa.String(length=16), nullable=True),
    sa.Column('ref_high', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('catalogue_ranges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_catalogue_ranges_local_code'), ['local_code'], unique=False)
    c = CATALOGUE.c
    for local_code, loinc, ucum, low, high in CRITICAL:
        op.execute(sa.update(CATALOGUE)
                   .where(c.local_code == local_code, c.loinc == loinc, c.ucum == ucum)
                   .values(critical_low=low, critical_high=high))
    for local_code, loinc, ucum, sex, age_min, age_max, low, high in RANGES:
        values = [sa.literal(v, sa.String()) if v is not None else sa.null()
                  for v in (local_code, sex, age_min, age_max, low, high)]
        unchanged = sa.select(*values).where(c.local_code == local_code, c.loinc == loinc, c.ucum == ucum)
        op.execute(sa.insert(BANDS).from_select(list(BANDS.c.keys()), unchanged))


def downgrade() -> None:
    with op.batch_alter_table('catalogue_ranges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_catalogue_ranges_local_code'))
    op.drop_table('catalogue_ranges')
    with op.batch_alter_table('catalogue', schema=None) as batch_op:
        batch_op.drop_column('critical_high')
        batch_op.drop_column('critical_low')
