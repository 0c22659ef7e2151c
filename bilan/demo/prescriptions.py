"""Realistic e-prescription Bundles, as a prescriber's software would send them.

Used by `bilan demo`, the tests and the benchmarks; every identifier is valid (INS key, RPPS
Luhn key) and every exam comes from the demo catalogue unless asked otherwise.
"""

import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from bilan.fhir import fr_core
from bilan.fhir.terminology import NATIONAL_ID, UCUM
from bilan.prescription.checksums import luhn_valid, nir_key
from bilan.prescription.exams import (
    FLAG_NOT_REIMBURSABLE,
    FLAG_OFF_NOMENCLATURE,
    FLAG_PREVENTION,
    FLAG_WORK_ACCIDENT,
    LOINC,
    SPECIMEN_TYPES,
    with_sample_nature,
)
from bilan.prescription.identity import fold
from bilan.prescription.ins import (
    BIRTH_PLACE,
    IDENTITY_RELIABILITY,
    IDENTITY_STATUS_SYSTEM,
    INS_NIR_TEST,
)
from bilan.prescription.practitioners import RPPS

REQUISITION_SYSTEM = "https://bilan.sante.fr/fhir/sid/prescription"
# The national prescription number (eP-BIO), when the prescriber's software has one.
NATIONAL_PRESCRIPTION = "urn:oid:1.2.250.1.215.500.1.1"
INSEE_CODE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
SNOMED = "http://snomed.info/sct"

# (LOINC, display) of common orderable exams, all in the demo catalogue.
EXAMS = [
    ("58410-2", "Numération formule sanguine"),
    ("40193-5", "Glycémie à jeun"),
    ("45066-8", "Fonction rénale (créatinine, DFG)"),
    ("57698-3", "Bilan lipidique (EAL)"),
    ("3016-3", "TSH ultrasensible"),
    ("1988-5", "Protéine C réactive (CRP)"),
    ("4548-4", "Hémoglobine glyquée (HbA1c)"),
    ("24325-3", "Bilan hépatique"),
    ("24326-1", "Ionogramme sanguin"),
    ("2276-4", "Ferritine"),
    ("34528-0", "TP / INR"),
    ("62292-8", "Vitamine D (25-OH)"),
]

FAMILY = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
          "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Éluard"]
GIVEN_F = ["Marie", "Camille", "Léa", "Chloé", "Inès", "Manon", "Jeanne", "Élise"]
GIVEN_M = ["Jean", "Louis", "Hugo", "Lucas", "Gabriel", "Arthur", "Jules", "Raphaël"]


def make_ins(rng: random.Random, sex: str, birth: date) -> str:
    """A NIR with a correct key for the given sex and birth month."""
    department = f"{rng.randint(1, 95):02d}"
    body = (("1" if sex == "male" else "2") + birth.strftime("%y%m") + department
            + f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}")
    return f"{body}{nir_key(body):02d}"


def make_rpps(rng: random.Random) -> str:
    return _with_luhn_key(rng, "1", 11)


def _with_luhn_key(rng: random.Random, prefix: str, length: int) -> str:
    """Random digits after `prefix`, `length` in all, the last one a Luhn key (RPPS, FINESS)."""
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    return next(body + str(key) for key in range(10) if luhn_valid(body + str(key)))


@dataclass
class Person:
    family: str
    given: list[str]
    gender: str
    birth: date
    ins: str
    status: str = "QUAL"
    ins_system: str = INS_NIR_TEST


@dataclass
class Prescriber:
    rpps: str
    family: str
    given: str
    org_finess: str = "750000001"
    org_name: str = "Cabinet médical des Lilas"

    @property
    def mail(self) -> str:
        """Their MSSanté address (the demo's made-up operator domain)."""
        local = ".".join(re.sub(r"[^a-z]", "", fold(part)) for part in (self.given, self.family))
        return f"{local}@medecin.mssante.fr"


@dataclass
class PrescriptionSpec:
    patient: Person
    prescriber: Prescriber
    requisition: str
    exams: list[tuple[str, str]]
    urgent: set[str] = field(default_factory=set)
    fasting: bool = True
    pregnant: bool = False
    anticoagulant: str | None = None
    weight_kg: float | None = 70.0
    clinical_question: str | None = None
    flags: dict[str, bool] = field(default_factory=dict)
    lab: tuple[str, str] | None = None  # (system, value) of the lab it is addressed to
    authored: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    requisition_system: str = REQUISITION_SYSTEM
    samples: dict[str, tuple[str, str]] = field(default_factory=dict)  # LOINC: (HL7 0487 code, display)


def random_person(rng: random.Random) -> Person:
    gender = rng.choice(["male", "female"])
    birth = date(1940, 1, 1) + timedelta(days=rng.randint(0, 365 * 80))
    given = rng.sample(GIVEN_M if gender == "male" else GIVEN_F, 2)
    return Person(rng.choice(FAMILY), given, gender, birth, make_ins(rng, gender, birth))


def random_prescriber(rng: random.Random) -> Prescriber:
    finess = _with_luhn_key(rng, "75", 9)
    return Prescriber(make_rpps(rng), rng.choice(FAMILY), rng.choice(GIVEN_F + GIVEN_M),
                      org_finess=finess, org_name=f"Cabinet médical {rng.choice(FAMILY)}")


def random_spec(rng: random.Random, exams: int = 5) -> PrescriptionSpec:
    person = random_person(rng)
    return PrescriptionSpec(
        patient=person, prescriber=random_prescriber(rng),
        requisition=f"PRE-{uuid.UUID(int=rng.getrandbits(128)).hex[:12].upper()}",
        exams=rng.sample(EXAMS, exams), fasting=True, pregnant=person.gender == "female" and rng.random() < 0.2,
        anticoagulant="Apixaban" if rng.random() < 0.3 else None, weight_kg=round(rng.uniform(45, 110), 1),
    )


def patient_resource(p: Person) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "extension": [
            {"url": IDENTITY_RELIABILITY, "extension": [
                {"url": "identityStatus", "valueCoding": {"system": IDENTITY_STATUS_SYSTEM, "code": p.status}},
            ]},
            {"url": BIRTH_PLACE, "valueAddress": {"extension": [
                {"url": INSEE_CODE, "valueCoding": {"system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM", "code": "75056"}},
            ]}},
        ],
        "identifier": [fr_core.typed({"use": "official", "system": p.ins_system, "value": p.ins})],
        "name": [fr_core.official_name(p.family, p.given)],
        "gender": p.gender,
        "birthDate": p.birth.isoformat(),
    }


def bundle(spec: PrescriptionSpec) -> dict[str, Any]:
    """The transaction Bundle of one prescription."""
    ids = {name: f"urn:uuid:{uuid.uuid4()}" for name in ("patient", "practitioner", "role", "org")}
    entries = [
        _entry(ids["patient"], patient_resource(spec.patient),
               if_none_exist=f"identifier={spec.patient.ins_system}|{spec.patient.ins}"),
        _entry(ids["practitioner"], {
            "resourceType": "Practitioner",
            "identifier": [fr_core.typed({"system": RPPS, "value": spec.prescriber.rpps}),
                           fr_core.typed({"system": NATIONAL_ID, "value": f"8{spec.prescriber.rpps}"})],
            "name": [{"family": spec.prescriber.family, "given": [spec.prescriber.given], "prefix": ["Dr"]}],
            "telecom": [{"system": "email", "value": spec.prescriber.mail, "use": "work"}],
        }, if_none_exist=f"identifier={RPPS}|{spec.prescriber.rpps}"),
        _entry(ids["org"], {
            "resourceType": "Organization",
            "identifier": fr_core.organization_identifiers(spec.prescriber.org_finess),
            "name": spec.prescriber.org_name,
        }, if_none_exist=f"identifier=urn:oid:1.2.250.1.71.4.2.2|1{spec.prescriber.org_finess}"),
        _entry(ids["role"], {
            "resourceType": "PractitionerRole",
            "identifier": [{"system": "https://bilan.sante.fr/fhir/sid/practitioner-role",
                            "value": f"{spec.prescriber.rpps}-{spec.prescriber.org_finess}"}],
            "practitioner": {"reference": ids["practitioner"]},
            "organization": {"reference": ids["org"]},
            "code": [{"coding": [fr_core.PHYSICIAN]}],  # the profession (TRE_G15)
            "specialty": [{"coding": [fr_core.GENERAL_PRACTICE]}],  # the specialty (TRE_R38)
        }, if_none_exist=f"identifier=https://bilan.sante.fr/fhir/sid/practitioner-role|"
                         f"{spec.prescriber.rpps}-{spec.prescriber.org_finess}"),
    ]
    context = _context(spec, ids["patient"])
    entries += [_entry(full_url, resource) for full_url, resource in context]
    authored = spec.authored.isoformat(timespec="seconds")
    for code, display in spec.exams:
        request: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "requisition": {"system": spec.requisition_system, "value": spec.requisition},
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}]}],
            "priority": "urgent" if code in spec.urgent else "routine",
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": {"reference": ids["patient"]},
            "authoredOn": authored,
            "occurrenceDateTime": authored,
            "requester": {"reference": ids["role"]},
            "supportingInfo": [{"reference": full_url} for full_url, _ in context],
        }
        flags = [(FLAG_WORK_ACCIDENT, "work_accident"), (FLAG_PREVENTION, "prevention"),
                 (FLAG_NOT_REIMBURSABLE, "not_reimbursable"), (FLAG_OFF_NOMENCLATURE, "off_nomenclature")]
        extensions = [{"url": url, "valueBoolean": spec.flags[key]} for url, key in flags if key in spec.flags]
        if extensions:
            request["extension"] = extensions
        if spec.clinical_question:
            request["note"] = [{"text": spec.clinical_question}]
        if spec.lab:
            request["performer"] = [{"reference": f"Organization?identifier={spec.lab[0]}|{spec.lab[1]}"}]
        if code in spec.samples:
            sample, label = spec.samples[code]
            request = with_sample_nature(request, {"system": SPECIMEN_TYPES, "code": sample, "display": label})
        entries.append(_entry(f"urn:uuid:{uuid.uuid4()}", request))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _context(spec: PrescriptionSpec, patient: str) -> list[tuple[str, dict[str, Any]]]:
    """Clinical context observations: fasting, pregnancy, treatment, weight."""
    items = []

    def observation(code: dict[str, Any], **value: Any) -> None:
        items.append((f"urn:uuid:{uuid.uuid4()}", {
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "survey"}]}],
            "code": code, "subject": {"reference": patient},
            "effectiveDateTime": spec.authored.isoformat(timespec="seconds"), **value,
        }))

    observation({"coding": [{"system": LOINC, "code": "49541-6", "display": "Fasting status - Reported"}]},
                valueCodeableConcept={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0916",
                                                  "code": "F" if spec.fasting else "NF"}]})
    if spec.patient.gender == "female":
        observation({"coding": [{"system": LOINC, "code": "82810-3", "display": "Pregnancy status"}]},
                    valueCodeableConcept={"coding": [{"system": SNOMED,
                                                      "code": "77386006" if spec.pregnant else "60001007"}]})
    if spec.anticoagulant:
        observation({"coding": [{"system": LOINC, "code": "10160-0", "display": "History of Medication use"}]},
                    valueString=f"Anticoagulant : {spec.anticoagulant}")
    if spec.weight_kg is not None:
        observation({"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
                    valueQuantity={"value": spec.weight_kg, "unit": "kg", "system": UCUM, "code": "kg"})
    return items


def _entry(full_url: str, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}
