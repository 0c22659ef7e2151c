"""An issued report's DMP copy and ITI-65 bundle, built by bilan's own code from the test
report of tests/lab_reports.py, without a server: what the MHD and FR Core rules are tested on."""

from datetime import datetime
from typing import Any

from bilan.demo.prescriptions import Person, patient_resource
from bilan.fhir import fr_core
from bilan.fhir.terminology import INS_NIR_TEST, RPPS
from bilan.french import PARIS
from bilan.prescription.identity import lab_file
from bilan.results.document import cda_document
from bilan.results.issuing import documents
from bilan.results.issuing.dmp_feed import Shared, dmp_copy, provide_bundle
from tests.lab_reports import report

DOCUMENT_ID, CDA_ID, PDF_ID = ("0b7d9f52-3c1e-4a8b-9d2f-5e6a7b8c9d01", "0b7d9f52-3c1e-4a8b-9d2f-5e6a7b8c9d02",
                               "0b7d9f52-3c1e-4a8b-9d2f-5e6a7b8c9d03")
PREVIOUS_ID = "0b7d9f52-3c1e-4a8b-9d2f-5e6a7b8c9d00"
PERSON = Person("Dupont", ["Marie", "Louise", "Jeanne"], "female", datetime(1979, 3, 12).date(), "279035121518989")
SENT_AT = datetime(2026, 5, 12, 10, 0, tzinfo=PARIS)


def issued(**changes: Any) -> documents.Issued:
    lab_report = report()
    fields: dict[str, Any] = {
        "report": lab_report, "cda": cda_document(lab_report), "document_id": DOCUMENT_ID, "cda_id": CDA_ID,
        "pdf_id": PDF_ID, "patient": "Patient/p1", "lab": "Organization/o1", "biologist": "Practitioner/b1",
        "requests": ("ServiceRequest/s1",), "task": "Task/t1", "security": frozenset(),
        "tags": frozenset({"patient-space"}), "replaces": None, "not_shared": None, "status": "final"}
    return documents.Issued(**{**fields, **changes})


def shared() -> Shared:
    lab = {"resourceType": "Organization", "name": "Laboratoire Bilan République",
           "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1750012345"}]}
    biologist = {"resourceType": "Practitioner", "identifier": [{"system": RPPS, "value": "10000000017"}],
                 "name": [{"family": "Durand", "given": ["Luc"], "prefix": ["Dr"]}]}
    prescribed = patient_resource(PERSON)
    prescribed["name"] = [{"use": "official", "family": PERSON.family, "given": PERSON.given}]  # the older form
    patient = lab_file(prescribed, "750012345", "P0000001")
    return Shared({"system": INS_NIR_TEST, "value": PERSON.ins}, lab, biologist, patient)


def copy_and_bundle(**changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """bilan's DocumentReference as issued, and the ITI-65 bundle of its DMP copy."""
    found = issued(**changes)
    document = documents.document_reference(found)
    copy = dmp_copy(document, DOCUMENT_ID, shared())
    return document, provide_bundle(copy, DOCUMENT_ID, CDA_ID, found.cda, SENT_AT)


def contained(resource: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in resource["contained"] if f"#{c['id']}" == reference["reference"])


def types_of(resource: dict[str, Any]) -> dict[str, str]:
    """system → FR Core identifier type code of a resource's identifiers."""
    return {i["system"]: fr_core.system_type(i) or "" for i in resource.get("identifier", [])}
