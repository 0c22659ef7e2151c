"""`bilan demo`: a lab, its catalogue, two prescribers, patients and their prescriptions.

Loading twice changes nothing: every resource is created conditionally and the prescriptions
are re-sent with the same numbers, which bilan recognises.
"""

import random
from datetime import date, datetime, timezone

from bilan.app import build_services
from bilan.demo.prescriptions import EXAMS, Person, Prescriber, PrescriptionSpec, bundle, patient_resource
from bilan.prescription import catalogue
from bilan.prescription.ins import IDENTITY_RELIABILITY, IDENTITY_STATUS_SYSTEM
from bilan.settings import Settings
from bilan.storage.database import create_engine

LAB_FINESS = "750100001"
LAB_IDENTIFIER = ("urn:oid:1.2.250.1.71.4.2.2", f"1{LAB_FINESS}")
LAB_CRITERIA = f"identifier={LAB_IDENTIFIER[0]}|{LAB_IDENTIFIER[1]}"

PRESCRIBERS = [
    Prescriber("10003456786", "Lambert", "Claire"),
    Prescriber("10123456781", "Nguyen", "Paul", org_finess="750000002", org_name="Maison de santé Belleville"),
]

QUALIFIED = [
    Person("Dupont", ["Marie", "Louise"], "female", date(1979, 3, 12), "279035121518989"),
    Person("Lefèvre", ["Jean", "Pierre"], "male", date(1962, 11, 2), "162117512345635"),
    Person("Benali", ["Inès"], "female", date(1990, 6, 24), "290069312345684"),
]


async def load_demo(settings: Settings) -> None:
    engine = create_engine(settings)
    records, transactions = build_services(engine, settings)
    try:
        async with engine.begin() as conn:
            count = await catalogue.replace(conn, catalogue.read_csv(settings.catalogue_path))
        await records.create(None, lab_organization(), if_none_exist=LAB_CRITERIA)
        await records.create(None, _provisional(), if_none_exist="identifier=https://bilan.sante.fr/fhir/sid/lab-patient|DEMO-PROV-1")
        rng = random.Random(2026)
        for number, person in enumerate(QUALIFIED, start=1):
            spec = PrescriptionSpec(
                patient=person, prescriber=PRESCRIBERS[number % 2],
                requisition=f"DEMO-2026-{number:04d}", exams=rng.sample(EXAMS, 3 + number),
                urgent={EXAMS[0][0]} if number == 1 else set(),
                pregnant=number == 3, anticoagulant="Warfarine" if number == 2 else None,
                clinical_question="Asthénie depuis 3 semaines, bilan de débrouillage",
                flags={"prevention": number == 3}, lab=LAB_IDENTIFIER,
                authored=datetime(2026, 11, 20 + number, 9, 30, tzinfo=timezone.utc),
            )
            await transactions.process(None, bundle(spec))
    finally:
        await engine.dispose()
    print(f"demo data loaded: {count} catalogue entries, 1 lab, {len(PRESCRIBERS)} prescribers, "
          f"{len(QUALIFIED) + 1} patients, {len(QUALIFIED)} prescriptions")


def lab_organization() -> dict:
    """The demo lab; its FINESS is the one the demo lab accounts and middleware act for."""
    return {
        "resourceType": "Organization",
        "identifier": [{"system": LAB_IDENTIFIER[0], "value": LAB_IDENTIFIER[1]}],
        "type": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement",
                              "code": "611", "display": "Laboratoire de biologie médicale"}]}],
        "name": "Laboratoire Bilan Paris Est",
        "telecom": [{"system": "email", "value": "biologie@labo-paris-est.mssante.fr"}],
    }


def _provisional() -> dict:
    """A patient known by traits only: provisional identity, no INS."""
    patient = patient_resource(Person("Martin", ["Lucas"], "male", date(2001, 1, 15), "", status="PROV"))
    patient["identifier"] = [{"system": "https://bilan.sante.fr/fhir/sid/lab-patient", "value": "DEMO-PROV-1"}]
    patient["extension"] = [{"url": IDENTITY_RELIABILITY, "extension": [
        {"url": "identityStatus", "valueCoding": {"system": IDENTITY_STATUS_SYSTEM, "code": "PROV"}}]}]
    return patient
