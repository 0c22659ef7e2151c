"""`bilan demo`: a lab, its catalogue, two prescribers, patients and their prescriptions.

Loading twice changes nothing: every resource is created conditionally and the prescriptions
are re-sent with the same numbers, which bilan recognises.
"""

import random
from datetime import date, datetime, timezone
from typing import Any

from bilan.app import build_services
from bilan.auth.caller import Caller
from bilan.demo.prescriptions import (
    EXAMS,
    Person,
    Prescriber,
    PrescriptionSpec,
    bundle,
    patient_resource,
)
from bilan.demo.results import (
    IN_PROGRESS,
    load_past_reports,
    load_reports_from_elsewhere,
    load_work_in_progress,
)
from bilan.fhir import fr_core
from bilan.fhir.terminology import NATIONAL_ID
from bilan.prescription.catalogue import read_csv
from bilan.prescription.identity import LAB_PATIENT
from bilan.prescription.practitioners import RPPS
from bilan.records.service import Records, new_id
from bilan.settings import Settings, web_root
from bilan.storage import catalogue
from bilan.storage.database import create_engine
from bilan.storage.repository import Write

LAB_FINESS = "750100001"
LAB_IDENTIFIER = ("urn:oid:1.2.250.1.71.4.2.2", f"1{LAB_FINESS}")
LAB_CRITERIA = f"identifier={LAB_IDENTIFIER[0]}|{LAB_IDENTIFIER[1]}"
PARTNER_FINESS = "690100235"  # the partner lab (Settings.partner_lab_finess)
BIOLOGIST_RPPS = "10000000017"  # bio.durand at the demo OpenID provider

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
    records, transactions = build_services(engine, settings)[:2]
    try:
        count = await catalogue.load(engine, read_csv(settings.catalogue_path))
        for resource, criteria in lab_directory():
            await records.create(None, resource, if_none_exist=criteria)
        await _lab_files(records)
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
        # Addressed to no lab: the patient brings it on paper; the lab finds it by its number.
        await transactions.process(None, bundle(PrescriptionSpec(
            patient=QUALIFIED[2], prescriber=PRESCRIBERS[0], requisition="DEMO-2026-0100",
            exams=[*EXAMS[:2], ("2458-8", "Immunoglobulines A")],  # IgA: not in the catalogue
            authored=datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc))))
        lab_file = await load_past_reports(records, transactions, QUALIFIED[0], PRESCRIBERS[0], LAB_IDENTIFIER,
                                           LAB_FINESS, BIOLOGIST_RPPS, web_root(settings))
        await load_reports_from_elsewhere(records, lab_file, LAB_FINESS, BIOLOGIST_RPPS)
        await load_work_in_progress(records, transactions, QUALIFIED[0], PRESCRIBERS[0], LAB_IDENTIFIER,
                                    LAB_FINESS, BIOLOGIST_RPPS)
    finally:
        await engine.dispose()
    print(f"demo data loaded: {count} catalogue entries, 1 lab with {len(LAB_FILES)} patient files, "
          f"{len(PRESCRIBERS)} prescribers, {len(QUALIFIED)} patients, {len(QUALIFIED) + 1} prescriptions, "
          f"{QUALIFIED[0].given[0]} {QUALIFIED[0].family}'s past reports (3 from this lab, 3 from others) "
          f"and {len(IN_PROGRESS)} orders in the lab's queues")


def lab_directory() -> list[tuple[dict[str, Any], str]]:
    """The demo lab, its biologist and its partner lab, with the criteria that find them again:
    the lab's FINESS is the one the demo lab accounts and middleware act for, the biologist is
    bio.durand, the partner lab performs the exams the demo catalogue lacks."""
    lab = {
        "resourceType": "Organization",
        "identifier": fr_core.organization_identifiers(LAB_FINESS),
        "type": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement",
                              "code": "611", "display": "Laboratoire de biologie médicale"}]}],
        "name": "Laboratoire Bilan Paris Est",
        "telecom": [{"system": "phone", "value": "0143000000"},
                    {"system": "email", "value": "biologie@labo-paris-est.mssante.fr"}],
        "address": [{"line": ["12 rue des Analyses"], "postalCode": "75011", "city": "PARIS"}],
    }
    biologist = {
        "resourceType": "Practitioner",
        "identifier": [fr_core.typed({"system": RPPS, "value": BIOLOGIST_RPPS}),
                       fr_core.typed({"system": NATIONAL_ID, "value": f"8{BIOLOGIST_RPPS}"})],
        "name": [{"family": "Durand", "given": ["Luc"], "prefix": ["Dr"]}],
        # FR Core: the profession (TRE_G15) and the specialty (TRE_R38), each in its own system.
        "qualification": [{"code": {"coding": [fr_core.PHYSICIAN]}},
                          {"code": {"coding": [fr_core.MEDICAL_BIOLOGY]}}],
    }
    partner = {  # the lab the demo lab sends what its catalogue lacks to (settings.partner_lab_finess)
        "resourceType": "Organization",
        "identifier": fr_core.organization_identifiers(PARTNER_FINESS),
        "type": lab["type"],
        "name": "Laboratoire de biologie spécialisée Lyon Gerland",
        "telecom": [{"system": "phone", "value": "0472000000"},
                    {"system": "email", "value": "transmissions@labo-lyon-gerland.mssante.fr"}],
        "address": [{"line": ["40 avenue Tony Garnier"], "postalCode": "69007", "city": "LYON"}],
    }
    return [(lab, LAB_CRITERIA), (biologist, f"identifier={RPPS}|{BIOLOGIST_RPPS}"),
            (partner, f"identifier={LAB_IDENTIFIER[0]}|1{PARTNER_FINESS}")]


# The lab's own patient files, as its software holds them: one with a traits mismatch against
# a prescription (for the identity check), one provisional identity.
LAB_FILES = [
    (Person("Lefèvre", ["Jean"], "male", date(1962, 11, 2), "", status="VALI"), "P0900001"),
    (Person("Martin", ["Lucas"], "male", date(2001, 1, 15), "", status="PROV"), "P0900002"),
]


async def _lab_files(records: Records) -> None:
    lab = Caller("reception", "demo-loader", frozenset(), lab_finess=LAB_FINESS)
    async with records.work(lab) as work:
        for person, number in LAB_FILES:
            system = f"{LAB_PATIENT}/{LAB_FINESS}"
            if await records.find_existing(work.repo, lab, "Patient", f"identifier={system}|{number}"):
                continue
            patient = patient_resource(person)
            patient["identifier"] = [{"use": "usual", "system": system, "value": number}]
            await work.write([Write("Patient", new_id(), patient, "POST")])
