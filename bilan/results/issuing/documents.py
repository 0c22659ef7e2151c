"""The FHIR resources of an issued CR-BIO: the CDA and its PDF as Binary, the DocumentReference
with the PDSm (MHD) metadata and the DiagnosticReport over the stored results. The copy the
shared record (DMP) gets is dmp_feed.py's.

PDSm codes (ANS CI-SIS value sets, as the CDA says them): type LOINC 11502-2, class "Compte
rendu" (JDV_J06), format `urn:ihe:lab:xd-lab:2008` (CR-BIO), facility type SA25 "Laboratoire
de biologie médicale" (JDV_J02, the CDA's healthCareFacility), practice setting the lab's own
(JDV_J04: AMBULATOIRE or ETABLISSEMENT, the CDA's standardIndustryClassCode).

The DocumentReference has one content, the CDA (MHD: one document per DocumentReference). The
PDF travels inside the CDA (its "copie PDF" section); bilan's own pages serve it from there
(`embedded_pdf`), and FHIR clients find it as the DiagnosticReport's presentedForm."""

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from bilan.fhir.terminology import LOINC
from bilan.results import masking
from bilan.results.document import Battery, LabReport, fhir_report

CLASS = {"system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "10", "display": "Compte rendu"}
FORMAT = {"system": "urn:oid:1.3.6.1.4.1.19376.1.2.3", "code": "urn:ihe:lab:xd-lab:2008",
          "display": "CR d'examens biologiques"}
FACILITY = {"system": "urn:oid:1.2.250.1.71.4.2.4", "code": "SA25",
            "display": "Laboratoire de biologie médicale"}
PRACTICE_SETTINGS = {"AMBULATOIRE": "Ambulatoire", "ETABLISSEMENT": "Etablissement de santé"}
PRACTICE_SETTING_SYSTEM = "urn:oid:1.2.250.1.213.1.1.4.9"
NORMAL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N",
          "display": "Normal"}
NOT_SHARED = "https://bilan.sante.fr/fhir/StructureDefinition/not-shared-reason"
# A version's DiagnosticReport status, as the DocumentReference's docStatus (composition status).
DOC_STATUS = {"partial": "preliminary", "final": "final", "corrected": "amended"}
CDA_TYPE, PDF_TYPE = "application/xml", "application/pdf"


@dataclass(frozen=True)
class Issued:
    """One version of a report as bilan stores it, with its ids chosen in advance."""
    report: LabReport
    cda: bytes
    document_id: str  # DocumentReference
    cda_id: str  # Binary
    pdf_id: str  # Binary
    patient: str  # Patient reference
    lab: str  # Organization reference
    biologist: str  # Practitioner reference
    requests: tuple[str, ...]  # ServiceRequest references
    task: str  # Task reference
    security: frozenset[str]  # masking codes
    tags: frozenset[str]  # sharing codes
    replaces: str | None  # the previous DocumentReference
    not_shared: str | None  # why the patient's space and the DMP do not get it
    status: str  # the DiagnosticReport's for this version: partial, final or corrected


def binaries(issued: Issued) -> list[tuple[str, dict[str, Any]]]:
    """(id, Binary) for the CDA and for the PDF, each tied to the DocumentReference."""
    context = {"reference": f"DocumentReference/{issued.document_id}"}
    return [(id_, {"resourceType": "Binary", "contentType": kind, "securityContext": context,
                   "data": base64.b64encode(data).decode("ascii")})
            for id_, kind, data in ((issued.cda_id, CDA_TYPE, issued.cda),
                                    (issued.pdf_id, PDF_TYPE, issued.report.pdf))]


def document_reference(issued: Issued) -> dict[str, Any]:
    report = issued.report
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": _urn(report.document_id.root),
        "identifier": [{**_urn(report.set_id.root), "type": {"text": "setId"}}],
        "status": "current",
        "docStatus": DOC_STATUS[issued.status],
        "type": {"coding": [{"system": LOINC, "code": fhir_report.REPORT_CODE[0], "display": fhir_report.REPORT_CODE[1]}]},
        "category": [{"coding": [CLASS]}],
        "subject": {"reference": issued.patient},
        "date": _instant(report.effective_time),
        "author": [{"reference": issued.lab}, {"reference": issued.biologist}],
        "authenticator": {"reference": issued.biologist},
        "custodian": {"reference": issued.lab},
        "description": f"{fhir_report.REPORT_CODE[1]}, version {report.version}" + ("" if report.complete else " (partiel)"),
        "securityLabel": [{"coding": [NORMAL]}]
        + [{"coding": [masking.coding(masking.CONFIDENTIALITY, c)]} for c in sorted(issued.security)],
        "content": [_content(issued.cda_id, CDA_TYPE, issued.cda, fhir_report.REPORT_CODE[1], report.effective_time, FORMAT)],
        "context": {
            "period": {"start": _instant(_effective(report)),
                       "end": _instant(report.validated_at)},
            "facilityType": {"coding": [FACILITY]},
            "practiceSetting": {"coding": [practice_setting(report.lab.practice_setting)]},
            "related": [{"reference": r} for r in (*issued.requests, issued.task)],
        },
    }
    if issued.replaces:
        resource["relatesTo"] = [{"code": "replaces", "target": {"reference": issued.replaces}}]
    if issued.not_shared:
        resource["extension"] = [{"url": NOT_SHARED, "valueString": issued.not_shared}]
    return masking.with_labels(resource, set(issued.security), set(issued.tags))


def practice_setting(code: str) -> dict[str, str]:
    """The lab's practice setting (CI-SIS JDV_J04 XdsPracticeSettingCode), as its CDA says it."""
    return {"system": PRACTICE_SETTING_SYSTEM, "code": code, "display": PRACTICE_SETTINGS[code]}


def embedded_pdf(cda: bytes) -> bytes | None:
    """The PDF copy a CR-BIO carries (its observationMedia in application/pdf); None if none.
    Parsed without DTD, entities or network, as any document that left bilan's hands."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, load_dtd=False)
    try:
        root = etree.fromstring(cda, parser)
    except etree.XMLSyntaxError:
        return None
    found = root.xpath("//h:observationMedia/h:value[@mediaType='application/pdf']", namespaces={"h": "urn:hl7-org:v3"})
    text = "".join(found[0].itertext()) if found else ""
    return base64.b64decode(text) if text.strip() else None


def partial(document: dict[str, Any]) -> bool:
    """Whether an issued version still had results to validate."""
    return document.get("docStatus") == DOC_STATUS["partial"]


def diagnostic_report(issued: Issued, results: list[str]) -> dict[str, Any]:
    """The report over the stored results (`results`: Observation references)."""
    report = issued.report
    resource = {
        "resourceType": "DiagnosticReport",
        "identifier": [_urn(report.set_id.root)],
        "basedOn": [{"reference": r} for r in issued.requests],
        "status": issued.status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB",
                                  "display": "Laboratory"}]}]
        + [{"coding": [{"system": LOINC, "code": c.code, "display": c.display}]} for c in report.chapters],
        "code": {"coding": [{"system": LOINC, "code": fhir_report.REPORT_CODE[0], "display": fhir_report.REPORT_CODE[1]}]},
        "subject": {"reference": issued.patient},
        "effectiveDateTime": _instant(_effective(report)),
        "issued": _instant(report.effective_time),
        "performer": [{"reference": issued.lab}],
        "resultsInterpreter": [{"reference": issued.biologist}],
        "result": [{"reference": r} for r in results],
        "presentedForm": [{"contentType": PDF_TYPE, "url": f"Binary/{issued.pdf_id}",
                           "title": fhir_report.REPORT_CODE[1]}],
    }
    comments = [c.comment for c in report.chapters if c.comment]
    if report.conclusion or comments:
        resource["conclusion"] = report.conclusion or " ".join(comments)
    return masking.with_labels(resource, set(issued.security), set(issued.tags))


def _effective(report: LabReport) -> datetime:
    """When the samples were taken: the tubes' collection, else the results' own times."""
    observed = [r.observed_at for c in report.chapters for i in c.items
                for r in (i.results if isinstance(i, Battery) else (i,)) if r.observed_at]
    return min([s.collected_at for s in report.specimens] or observed or [report.validated_at])


def _content(binary_id: str, kind: str, data: bytes, title: str, when: datetime,
             format_: dict[str, str] | None) -> dict[str, Any]:
    content: dict[str, Any] = {"attachment": {
        "contentType": kind, "language": "fr-FR", "url": f"Binary/{binary_id}", "size": len(data),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"), "title": title,
        "creation": _instant(when)}}
    if format_:
        content["format"] = format_
    return content


def _urn(uuid_text: str) -> dict[str, str]:
    return {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid_text.lower()}"}


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
