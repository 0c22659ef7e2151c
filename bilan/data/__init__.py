"""What the service reads at run time and ships inside the package: the demo lab's exam
catalogue and the parts of the ANS CDA test kit that validate, render and illustrate a CR-BIO.
README.md beside this file says where each comes from and under which terms."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
CATALOGUE = HERE / "catalogue" / "catalogue.csv"
# The kit's own layout is kept: its files refer to each other by relative paths.
CDA_KIT = HERE / "ansforge" / "TestContenuCDA-3-0"
# The UCUM table of prefixes and atoms, as published (see ucum/LICENSE.md).
UCUM_ESSENCE = HERE / "ucum" / "ucum-essence.xml"
