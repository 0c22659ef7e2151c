"""eP-BIO (CI-SIS volet "Prescription d'examens de biologie médicale", BIO-EP-BIO 2022.01): the
CDA form of a lab prescription, and what its parts are called in both forms.

A prescriber's software may send its prescription as this CDA document instead of the FHIR
transaction: bilan checks it as the ANS does (`conformance.check(..., EP_BIO)`), reads it into
the very transaction the FHIR form sends (ep_bio_reading.py), and from there it is the same
intake: same rules, same refusals, same order. The other way, a stored prescription is written
back as an eP-BIO document (ep_bio_writing.py)."""

from dataclasses import dataclass

from bilan.fhir.terminology import LOINC, LOINC_OID, UCUM
from bilan.prescription.exams import (
    FLAG_NOT_REIMBURSABLE,
    FLAG_OFF_NOMENCLATURE,
    FLAG_PREVENTION,
    FLAG_WORK_ACCIDENT,
    SPECIMEN_TYPES,
)

# The national prescription number: the document's id, the FHIR requisition's system.
NATIONAL_PRESCRIPTION_OID = "1.2.250.1.215.500.1.1"
NATIONAL_PRESCRIPTION = f"urn:oid:{NATIONAL_PRESCRIPTION_OID}"

CDA_MEDIA_TYPES = ("application/hl7-cda+xml", "application/xml", "text/xml")

DOCUMENT_CODE = "PRESC-BIO"  # in the CI-SIS document types (1.2.250.1.213.1.1.4.12)
DOCUMENT_TYPES = "1.2.250.1.213.1.1.4.12"
# The title the volet asks for, with its typographic apostrophe.
TITLE = "Prescription d\u2019actes de biologie médicale"
PLAN_TITLE = "Actes de biologie médicales prescrits"
CONTEXT_TITLE = "Informations cliniques"
CISIS_TERMS = "1.2.250.1.213.1.1.4.322"  # the CI-SIS terminology (TA_ASIP)

# templateIds
VOLET = ("1.2.250.1.213.1.1.1.51", "2022.01")
PLAN_SECTION = "1.2.250.1.213.1.1.2.158.2"
PRESCRIBED_ACT = "1.2.250.1.213.1.1.3.27.2"
SAMPLE = "1.2.250.1.213.1.1.3.77"
SIMPLE_OBSERVATION = ("1.3.6.1.4.1.19376.1.5.3.1.4.13", "1.2.250.1.213.1.1.3.48")
COMMENT = ("2.16.840.1.113883.10.20.1.40", "1.3.6.1.4.1.19376.1.5.3.1.4.2", "1.2.250.1.213.1.1.3.32")


@dataclass(frozen=True)
class Flag:
    """One of the four yes/no entries every prescribed act carries."""

    extension: str  # bilan's ServiceRequest extension
    template: str
    code: str  # in CISIS_TERMS
    display: str


FLAGS = (
    Flag(FLAG_WORK_ACCIDENT, "1.2.250.1.213.1.1.3.48.14", "GEN-180", "En rapport avec un accident du travail"),
    Flag(FLAG_PREVENTION, "1.2.250.1.213.1.1.3.48.34", "GEN-295", "En rapport avec la prévention"),
    Flag(FLAG_NOT_REIMBURSABLE, "1.2.250.1.213.1.1.3.48.15", "GEN-181", "Non remboursable"),
    Flag(FLAG_OFF_NOMENCLATURE, "1.2.250.1.213.1.1.3.48.33", "GEN-298", "Hors nomenclature"),
)

# A professional's title: FHIR's name prefix, the CDA name's suffix (CI-SIS JDV_J246 Titre).
TITLES = {"Dr": "DR", "Pr": "PR"}

SNOMED = "http://snomed.info/sct"
# Code systems both forms name: FHIR system, CDA OID.
OIDS = {
    LOINC: LOINC_OID,
    SNOMED: "2.16.840.1.113883.6.96",
    UCUM: "2.16.840.1.113883.6.8",
    SPECIMEN_TYPES: "2.16.840.1.113883.18.311",
    "http://terminology.hl7.org/CodeSystem/v2-0916": "2.16.840.1.113883.12.916",
}
SYSTEMS = {oid: system for system, oid in OIDS.items()}


def oid_of(system: str) -> str:
    """The OID a CDA document names a FHIR code or identifier system by."""
    return OIDS.get(system) or system.removeprefix("urn:oid:")


def system_of(oid: str) -> str:
    return SYSTEMS.get(oid) or f"urn:oid:{oid}"
