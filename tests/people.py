"""The people the demo OpenID provider knows (deploy/idp): the two patients who can log in and
the two prescribers. Tests that need a login of theirs use these; every other test makes its
own people with `rng` (bilan.demo.prescriptions.random_person), and a patient of its own who
calls the API gets her token from tests.identity.patient_auth."""

from datetime import date

from bilan.demo.prescriptions import Person, Prescriber
from tests.helpers import DEMO_PRESCRIBER_RPPS

DUPONT = Person("Dupont", ["Marie", "Louise"], "female", date(1979, 3, 12), "279035121518989")  # patient.dupont
LEFEVRE = Person("Lefèvre", ["Jean", "Pierre"], "male", date(1962, 11, 2), "162117512345635")  # patient.lefevre
LAMBERT = Prescriber(DEMO_PRESCRIBER_RPPS, "Lambert", "Claire")  # dr.lambert
NGUYEN = Prescriber("10123456781", "Nguyen", "Paul", org_finess="750000002",
                    org_name="Maison de santé Belleville")  # dr.nguyen
# A second lab, in the directory: what each lab may see of the other's work is tested against it.
OTHER_LAB_FINESS = "750999998"
OTHER_LAB = ("urn:oid:1.2.250.1.71.4.2.2", f"1{OTHER_LAB_FINESS}")
