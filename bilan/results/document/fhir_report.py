"""A validated lab report as FHIR R4: one DiagnosticReport and its Observations, shaped after the
ANS document-core profiles FRDiagnosticReportBIOChapterDocument and
FRObservationLaboratoryReportResultsDocument, and a transaction Bundle that stores them at once.

The resources reference each other by `urn:uuid:` fullUrls derived from the report's document
id, so the same report always gives the same resources. Everything outside the report (patient,
lab, biologist, requests, specimens) is referenced as the caller says in `References`."""

import base64
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bilan.fhir.references import literal
from bilan.fhir.terminology import LOINC, LOINC_OID, UCUM
from bilan.results.desk import interpretation
from bilan.results.document.report import (
    Battery,
    Chapter,
    Code,
    Identifier,
    LabReport,
    Quantity,
    ReportError,
    Result,
)

REPORT_CODE = ("11502-2", "Compte rendu d'examens biologiques")
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# Code systems a Code may name by OID, and their FHIR URIs; any other OID stays urn:oid:.
SYSTEM_URIS = {
    LOINC_OID: LOINC,
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "2.16.840.1.113883.5.83": interpretation.CODE_SYSTEM_URI,
    "2.16.840.1.113883.18.311": "http://terminology.hl7.org/CodeSystem/v2-0487",
}
_FULL_URLS = uuid.UUID("0b7d4c1e-3f5a-5e8b-9c2d-6a1f0e4b7d31")  # namespace of the uuid5 below


@dataclass(frozen=True)
class References:
    """Where the report's actors live: 'Type/id', a conditional 'Type?param=value', or a
    urn:uuid of the same Bundle."""

    patient: str
    lab: str  # Organization: the executing lab
    biologist: str  # Practitioner or PractitionerRole who validated the results
    requests: tuple[str, ...] = ()  # ServiceRequests the report answers
    specimens: Mapping[Identifier, str] = field(default_factory=dict)  # Specimen.id -> Specimen

    def __post_init__(self) -> None:
        _expect(self.patient, ("Patient",), "patient")
        _expect(self.lab, ("Organization",), "lab")
        _expect(self.biologist, ("Practitioner", "PractitionerRole"), "biologist")
        for request in self.requests:
            _expect(request, ("ServiceRequest",), "request")
        for reference in self.specimens.values():
            _expect(reference, ("Specimen",), "specimen")


def report_resources(report: LabReport, refs: References,
                     presented_form: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The DiagnosticReport first, then every Observation (a battery before its members).

    `presented_form` are Attachments of the whole report (`pdf_attachment`, a CDA copy); the
    ANS profile wants one, but a copy in every stored report is heavy, so the caller decides."""
    observations: list[dict[str, Any]] = []
    top: list[str] = []
    for c, chapter in enumerate(report.chapters):
        for i, item in enumerate(chapter.items):
            made = _item(report, refs, chapter, item, f"{c}/{i}")
            top.append(made[0]["id"])
            observations.extend(made)
    diagnostic = _diagnostic_report(report, refs, top, presented_form)
    return [diagnostic, *observations]


def pdf_attachment(report: LabReport) -> dict[str, Any]:
    """The report's printable copy, as DiagnosticReport.presentedForm."""
    return {
        "contentType": "application/pdf",
        "language": "fr-FR",
        "data": base64.b64encode(report.pdf).decode("ascii"),
        "size": len(report.pdf),
        "hash": base64.b64encode(hashlib.sha1(report.pdf).digest()).decode("ascii"),
        "title": REPORT_CODE[1],
        "creation": _datetime(report.effective_time),
    }


def transaction_bundle(resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A transaction creating every resource; each id becomes the entry's urn:uuid fullUrl,
    which the server replaces with the id it assigns (references included)."""
    entries = []
    for resource in resources:
        body = {key: value for key, value in resource.items() if key != "id"}
        entries.append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": body,
                        "request": {"method": "POST", "url": resource["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def report_status(report: LabReport) -> str:
    """partial while results are still to come; corrected for a later version; else final."""
    if not report.complete:
        return "partial"
    return "corrected" if report.version > 1 else "final"


def _diagnostic_report(report: LabReport, refs: References, results: list[str],
                       presented_form: Sequence[dict[str, Any]]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": _uuid(report, "report"),
        "identifier": [_identifier(report.document_id)],
        "basedOn": [{"reference": r} for r in refs.requests],
        "status": report_status(report),
        "category": [_concept(DIAGNOSTIC_SERVICE, "LAB", "Laboratory")]
        + [_concept(LOINC, c.code, c.display) for c in report.chapters],
        "code": _concept(LOINC, *REPORT_CODE),
        "subject": {"reference": refs.patient},
        "effectiveDateTime": _datetime(_collected(report.specimens) or report.effective_time),
        "issued": _datetime(report.effective_time),
        "performer": [{"reference": refs.lab}],
        "resultsInterpreter": [{"reference": refs.biologist}],
        "specimen": [{"reference": r} for r in _specimen_refs(report.specimens, refs)],
        "result": [{"reference": f"urn:uuid:{id_}"} for id_ in results],
        "conclusion": _conclusion(report.chapters),
        "presentedForm": list(presented_form),
    }
    return _pruned(resource)


def _item(report: LabReport, refs: References, chapter: Chapter, item: Result | Battery,
          path: str) -> list[dict[str, Any]]:
    if isinstance(item, Result):
        return [_observation(report, refs, chapter, item, path)]
    members = [_observation(report, refs, chapter, r, f"{path}/{m}")
               for m, r in enumerate(item.results)]
    statuses = {m["status"] for m in members}
    battery = _common(report, refs, chapter, _uuid(report, path),
                      "cancelled" if statuses == {"cancelled"} else "final",
                      item.code, item.display, None)
    battery["hasMember"] = [{"reference": f"urn:uuid:{m['id']}"} for m in members]
    return [_pruned(battery), *members]


def _observation(report: LabReport, refs: References, chapter: Chapter, result: Result,
                 path: str) -> dict[str, Any]:
    status = "cancelled" if result.status == "aborted" else "final"
    resource = _common(report, refs, chapter, _uuid(report, path), status, result.code,
                       result.display, result.observed_at)
    resource.update(_value(result.value))
    if result.status == "aborted":
        resource["dataAbsentReason"] = _concept(DATA_ABSENT, "not-performed", "Not Performed")
    if result.interpretation:
        resource["interpretation"] = [_concept(interpretation.CODE_SYSTEM_URI, result.interpretation,
                                               interpretation.LABELS[result.interpretation])]
    if result.comment:
        resource["note"] = [{"text": result.comment}]
    if isinstance(result.value, Quantity) and (result.low is not None or result.high is not None):
        limits = {"low": result.low, "high": result.high}
        resource["referenceRange"] = [{
            name: _quantity(Quantity(value, result.value.unit))
            for name, value in limits.items() if value is not None}]
    return _pruned(resource)


def _common(report: LabReport, refs: References, chapter: Chapter, id_: str, status: str,
            code: str, display: str, observed_at: datetime | None) -> dict[str, Any]:
    """What a result and a battery share: who, when, on what, for which request."""
    specimens = _specimen_refs(chapter.specimens, refs)
    effective = observed_at or _collected(chapter.specimens)
    return {
        "resourceType": "Observation",
        "id": id_,
        "basedOn": [{"reference": r} for r in refs.requests],
        "status": status,
        "category": [_concept(OBSERVATION_CATEGORY, "laboratory", "Laboratory"),
                     _concept(LOINC, chapter.code, chapter.display)],
        "code": _concept(LOINC, code, display),
        "subject": {"reference": refs.patient},
        "effectiveDateTime": _datetime(effective) if effective else None,
        "issued": _datetime(report.validated_at),
        "performer": [{"reference": refs.lab}, {"reference": refs.biologist}],
        # Observation.specimen holds one: with several, the model does not say which was used.
        "specimen": {"reference": specimens[0]} if len(specimens) == 1 else None,
    }


def _value(value: Quantity | Code | str | None) -> dict[str, Any]:
    if isinstance(value, Quantity):
        return {"valueQuantity": _quantity(value)}
    if isinstance(value, Code):
        return {"valueCodeableConcept": _concept(_system(value.system), value.code, value.display)}
    if isinstance(value, str):
        return {"valueString": value}
    return {}


def _quantity(quantity: Quantity) -> dict[str, Any]:
    # The Decimal as reported: bilan's JSON writes it with its digits (1.950 stays 1.950).
    comparator = {"comparator": quantity.comparator} if quantity.comparator else {}
    return {"value": quantity.value, **comparator, "unit": quantity.unit, "system": UCUM,
            "code": quantity.unit}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _system(oid: str) -> str:
    return SYSTEM_URIS.get(oid, f"urn:oid:{oid}")


def _identifier(identifier: Identifier) -> dict[str, str]:
    if identifier.extension is None:  # a UUID, or an OID naming the document by itself
        prefix = "urn:oid:" if identifier.root[:1].isdigit() and "." in identifier.root else "urn:uuid:"
        return {"system": "urn:ietf:rfc:3986", "value": prefix + identifier.root.lower()}
    return {"system": f"urn:oid:{identifier.root}", "value": identifier.extension}


def _conclusion(chapters: Sequence[Chapter]) -> str | None:
    commented = [c for c in chapters if c.comment]
    if len(commented) == 1 and len(chapters) == 1:
        return commented[0].comment
    return "\n".join(f"{c.display} : {c.comment}" for c in commented) or None


def _collected(specimens: Sequence[Any]) -> datetime | None:
    return min((s.collected_at for s in specimens), default=None)


def _specimen_refs(specimens: Sequence[Any], refs: References) -> list[str]:
    found = (refs.specimens.get(s.id) for s in specimens if s.id is not None)
    return list(dict.fromkeys(r for r in found if r))


def _datetime(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _uuid(report: LabReport, path: str) -> str:
    document = report.document_id
    return str(uuid.uuid5(_FULL_URLS, f"{document.root}|{document.extension or ''}|{path}"))


def _pruned(resource: dict[str, Any]) -> dict[str, Any]:
    """Without the empty elements (FHIR forbids empty arrays and nulls)."""
    return {key: value for key, value in resource.items() if value not in (None, [], "")}


def _expect(reference: str, types: tuple[str, ...], role: str) -> None:
    if reference.startswith("urn:uuid:"):
        return
    named = reference.partition("?")[0] if "?" in reference else (literal(reference) or ("",))[0]
    if named not in types:
        raise ReportError(f"the {role} reference {reference!r} must name a {' or '.join(types)}")
