"""plausible limits in the catalogue

Each quantitative entry of the catalogue gets the limits of what a living patient's result can
be (plausible_low, plausible_high, in the entry's unit): bilan refuses a result beyond them
where it is typed or received. The columns are added, then filled for the entries of bilan's
own catalogue (bilan/data/catalogue/catalogue.csv, as it was at this revision) that a database
holds unchanged: same local code, LOINC and unit. An entry the lab changed or added keeps no
limits until its CSV gives them (`bilan catalogue`); a reload of the catalogue replaces them all.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# local_code, loinc, ucum, plausible_low, plausible_high (see the catalogue's README).
LIMITS = [
    ("GB", "6690-2", "10*9/L", "0", "2000"),
    ("GR", "789-8", "10*12/L", "0.05", "15"),
    ("HB", "718-7", "g/dL", "0.5", "30"),
    ("HT", "4544-3", "%", "0.5", "90"),
    ("VGM", "30428-7", "fL", "30", "200"),
    ("TCMH", "28539-5", "pg", "5", "80"),
    ("CCMH", "28540-3", "g/dL", "10", "60"),
    ("IDR", "30385-9", "%", "5", "60"),
    ("PLAQ", "777-3", "10*9/L", "0", "10000"),
    ("VMP", "32623-1", "fL", "2", "40"),
    ("PNN", "26499-4", "10*9/L", "0", "1000"),
    ("LYM", "26474-7", "10*9/L", "0", "2000"),
    ("MONO", "26484-6", "10*9/L", "0", "500"),
    ("PNE", "26449-9", "10*9/L", "0", "500"),
    ("PNB", "26444-0", "10*9/L", "0", "500"),
    ("PNN_PCT", "26511-6", "%", "0", "100"),
    ("LYM_PCT", "26478-8", "%", "0", "100"),
    ("MONO_PCT", "26485-3", "%", "0", "100"),
    ("PNE_PCT", "26450-7", "%", "0", "100"),
    ("PNB_PCT", "30180-4", "%", "0", "100"),
    ("VS", "30341-2", "mm/h", "0", "200"),
    ("NA", "2951-2", "mmol/L", "70", "260"),
    ("K", "2823-3", "mmol/L", "0.5", "20"),
    ("CL", "2075-0", "mmol/L", "30", "250"),
    ("CO2T", "2028-9", "mmol/L", "1", "80"),
    ("CREA", "14682-9", "umol/L", "5", "5000"),
    ("DFG", "62238-1", "mL/min/{1.73_m2}", "0", "300"),
    ("UREE", "22664-7", "mmol/L", "0.1", "250"),
    ("GLY", "40193-5", "mmol/L", "0.1", "160"),
    ("HBA1C", "4548-4", "%", "1", "25"),
    ("CT", "2093-3", "g/L", "0.1", "30"),
    ("HDL", "2085-9", "g/L", "0", "5"),
    ("LDL", "13457-7", "g/L", "0", "25"),
    ("TG", "2571-8", "g/L", "0", "250"),
    ("ASAT", "1920-8", "U/L", "0", "100000"),
    ("ALAT", "1742-6", "U/L", "0", "100000"),
    ("GGT", "2324-2", "U/L", "0", "30000"),
    ("PAL", "6768-6", "U/L", "0", "30000"),
    ("BILT", "14631-6", "umol/L", "0", "1500"),
    ("BILC", "29760-6", "umol/L", "0", "1200"),
    ("CRP", "1988-5", "mg/L", "0", "1000"),
    ("TSH", "3016-3", "m[IU]/L", "0", "2000"),
    ("T4L", "14920-3", "pmol/L", "0", "300"),
    ("FERRI", "2276-4", "ug/L", "0", "1000000"),
    ("FER", "14798-3", "umol/L", "0", "500"),
    ("VITD", "62292-8", "ng/mL", "0", "1000"),
    ("B12", "2132-9", "ng/L", "0", "200000"),
    ("FOL", "2284-8", "ug/L", "0", "1000"),
    ("PSA", "2857-1", "ug/L", "0", "100000"),
    ("HCG", "19080-1", "[IU]/L", "0", "10000000"),
    ("TQ", "5902-2", "s", "5", "300"),
    ("TP", "5894-1", "%", "0", "200"),
    ("INR", "6301-6", "{INR}", "0.5", "50"),
    ("TCA_P", "14979-9", "s", "5", "500"),
    ("TCA_T", "13488-2", "s", "10", "100"),
    ("TCA_R", "63561-5", "{ratio}", "0.2", "20"),
    ("FIB", "3255-7", "g/L", "0", "20"),
    ("DDIM", "48065-7", "ng/mL", "0", "1000000"),
    ("TNT", "67151-1", "ng/L", "0", "500000"),
    ("NTBNP", "33762-6", "ng/L", "0", "1000000"),
    ("ALB", "1751-7", "g/L", "0", "80"),
    ("PROT", "2885-2", "g/L", "10", "250"),
    ("CA", "2000-8", "mmol/L", "0.2", "7"),
    ("PHOS", "14879-1", "mmol/L", "0", "20"),
    ("URIC", "14933-6", "umol/L", "0", "3000"),
    ("CK", "2157-6", "U/L", "0", "5000000"),
    ("LIPA", "3040-3", "U/L", "0", "100000"),
    ("MALB", "9318-7", "mg/g", "0", "100000"),
    ("ECBU_LEU", "30405-5", "/mL", "0", "500000000"),
    ("ECBU_HEM", "30391-7", "/mL", "0", "500000000"),
    ("ECBU_BACT", "51480-2", "/mL", "0", "500000000"),
]

CATALOGUE = sa.table("catalogue", sa.column("local_code"), sa.column("loinc"), sa.column("ucum"),
                     sa.column("plausible_low"), sa.column("plausible_high"))


def upgrade() -> None:
    with op.batch_alter_table('catalogue', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plausible_low', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('plausible_high', sa.String(length=16), nullable=True))
    c = CATALOGUE.c
    for local_code, loinc, ucum, low, high in LIMITS:
        op.execute(sa.update(CATALOGUE)
                   .where(c.local_code == local_code, c.loinc == loinc, c.ucum == ucum)
                   .values(plausible_low=low, plausible_high=high))


def downgrade() -> None:
    with op.batch_alter_table('catalogue', schema=None) as batch_op:
        batch_op.drop_column('plausible_high')
        batch_op.drop_column('plausible_low')
