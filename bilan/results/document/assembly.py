"""A LabReport from what the lab stored about an order: its Task, the prescribed and adapted
requests, the validated results, the tubes, the lab's patient file, the lab, the prescriber and
the validating biologist. Pure functions over FHIR JSON; `issuing` reads the resources.

Results are grouped into the catalogue's chapters; the results of a panel exam (NFS...) form a
battery. A result rejected for a re-run is left out (its re-run replaces it); one the lab
will not do is reported as aborted."""

import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from lxml import etree

from bilan.fhir.dates import date_range
from bilan.fhir.terminology import LOINC, LOINC_OID, NATIONAL_ID, RPPS
from bilan.prescription import LAB_PATIENT, adaptation, ins_identifiers, traits
from bilan.results.document.conformance import CDA_KIT
from bilan.results.document.report import (
    MEDICAL_BIOLOGY,
    Address,
    Battery,
    Chapter,
    Code,
    Earlier,
    Forwarded,
    Identifier,
    Organization,
    Patient,
    Practitioner,
    Quantity,
    ReportError,
    Result,
    Sex,
    Specimen,
)

SPECIMEN_TYPES = "2.16.840.1.113883.18.311"  # HL7 table 0487
CHAPTERS_VALUE_SET = CDA_KIT.parent / "TestContenuCDA-2-41" / "jeuxDeValeurs" / "JDV_BIO_Chapitres-CISIS.xml"
OTHER_CHAPTER = "26436-6"  # Biologie polyvalente: results whose chapter the catalogue does not give
DECIDED = ("final", "amended", "corrected")
_SEX: dict[str, Sex] = {"female": "F", "male": "M"}
_TELECOM = {"phone": "tel:", "email": "mailto:", "fax": "fax:"}
# FHIR code systems a coded result may use, and their OIDs for the CDA.
_OIDS = {LOINC: LOINC_OID, "http://snomed.info/sct": "2.16.840.1.113883.6.96"}


def oid_for(system: str) -> str:
    """The OID of an identifier system: its own for urn:oid:, else one derived from the URI
    (the 2.25 arc: an OID made from a UUID, ITU-T X.667), so bilan's own identifier systems
    need no registration and always map to the same OID."""
    if system.startswith("urn:oid:"):
        return system.removeprefix("urn:oid:")
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, system).int}"


@dataclass(frozen=True)
class StoredResult:
    """A result Observation with the request it answers (the request's catalogue entries), and
    the patient's previous result of the analyte when there is one."""
    content: dict[str, Any]
    request: dict[str, Any]
    earlier: Earlier | None = None


def patient(lab_file: dict[str, Any], lab_finess: str) -> Patient:
    found = traits(lab_file)
    number = next((i.get("value", "") for i in lab_file.get("identifier", [])
                   if i.get("system") == f"{LAB_PATIENT}/{lab_finess}"), "")
    ins = ins_identifiers(lab_file)
    address = (lab_file.get("address") or [None])[0]
    return Patient(
        file_id=Identifier(oid_for(f"{LAB_PATIENT}/{lab_finess}"), number),
        birth_family=found.family, birth_given=found.given, sex=_SEX.get(found.sex, "U"),
        birth_date=date.fromisoformat(found.birth_date),
        identity_status=found.status,  # type: ignore[arg-type]  # a str: check_patient (ins.py) admits only the four codes
        ins=found.ins or None, ins_system=ins[0][1].get("system", "") if ins else "urn:oid:1.2.250.1.213.1.4.8",
        birthplace=found.birth_place or None,
        address=_address(address) if address else None)


def organization(content: dict[str, Any]) -> Organization:
    finess = next((i.get("value", "")[1:] for i in content.get("identifier", [])
                   if i.get("system") == "urn:oid:1.2.250.1.71.4.2.2"), "")
    address = (content.get("address") or [None])[0]
    if address is None:
        raise ReportError(f"l'adresse du laboratoire {content.get('name', '')} manque dans l'annuaire")
    telecom = tuple(f"{_TELECOM[t['system']]}{t['value']}" for t in content.get("telecom", [])
                    if t.get("system") in _TELECOM and t.get("value"))
    return Organization(finess, content.get("name", ""), _address(address), telecom)


def practitioner(content: dict[str, Any], specialty: Code | None = None) -> Practitioner:
    rpps = next((i.get("value", "") for i in content.get("identifier", []) if i.get("system") == RPPS), "")
    rpps = rpps or next((i.get("value", "")[1:] for i in content.get("identifier", [])
                         if i.get("system") == NATIONAL_ID and i.get("value", "").startswith("8")), "")
    name = (content.get("name") or [{}])[0]
    return Practitioner(rpps, name.get("family", ""), " ".join(name.get("given", [])), specialty)


def biologist(content: dict[str, Any]) -> Practitioner:
    return practitioner(content, MEDICAL_BIOLOGY)


def chapters(results: Iterable[StoredResult], catalogue: Mapping[str, Mapping[str, Any]],
             specimens: Iterable[dict[str, Any]], order: Mapping[str, int] | None = None,
             exams: Sequence[str] = ()) -> tuple[Chapter, ...]:
    """The report's chapters, each with its results (a panel's results as one battery) and the
    tubes they were measured on, in the clinical order: chapters in the catalogue's order
    (`order`: each chapter's rank, storage catalogue.chapter_order; without it, by code), exams
    in the prescription's order (`exams`: the requests' references, the prescribed ones then
    the lab's adaptations; without it, as the results come), a battery's results in the
    catalogue's (`catalogue`'s entries by LOINC code, their `position`)."""
    by_chapter: dict[str, dict[str, list[Result]]] = {}
    requests: dict[str, dict[str, Any]] = {}
    for item in results:
        result = result_of(item.content, catalogue)
        if result is None:
            continue
        result = replace(result, earlier=item.earlier)
        entry = catalogue.get(result.code) or catalogue.get(_code(item.request)) or {}
        chapter = entry.get("chapter_loinc") or OTHER_CHAPTER
        key = _code(item.request)
        requests[key] = item.request
        by_chapter.setdefault(chapter, {}).setdefault(key, []).append(result)
    tubes = list(specimens)
    ranks = order or {}
    placed = {exam: n for n, exam in reversed(list(enumerate(exams)))}  # an exam listed twice: its first place

    def exam_rank(request_code: str) -> int:
        return placed.get(f"ServiceRequest/{requests[request_code].get('id')}", len(exams))

    def position(result: Result) -> int:
        return int((catalogue.get(result.code) or {}).get("position") or sys.maxsize)

    made = []
    for code, groups in sorted(by_chapter.items(), key=lambda chapter: (ranks.get(chapter[0], sys.maxsize),
                                                                          chapter[0])):
        items: list[Result | Battery] = []
        for request_code, found in sorted(groups.items(), key=lambda group: exam_rank(group[0])):
            entry = catalogue.get(request_code) or {}
            if entry.get("kind") == "panel":
                items.append(Battery(request_code, entry.get("label_fr") or request_code,
                                     tuple(sorted(found, key=position))))
            else:
                items.extend(found)
        wanted = {r for key in groups for r in _request_refs(requests[key])}
        made.append(Chapter(code, chapter_label(code), tuple(items),
                            specimens=tuple(s for s in (_specimen(t) for t in tubes
                                                        if wanted & _tube_requests(t)) if s)))
    return tuple(made)


def result_of(content: dict[str, Any], catalogue: Mapping[str, Mapping[str, Any]]) -> Result | None:
    """The report's line for a stored result; None for one rejected for a re-run."""
    code = next((c["code"] for c in (content.get("code") or {}).get("coding", [])
                 if c.get("system") == LOINC and c.get("code")), None)
    if code is None:
        raise ReportError(f"le résultat {content.get('id', '')} n'a pas de code LOINC")
    concept = content.get("code") or {}
    display = ((catalogue.get(code) or {}).get("label_fr") or concept.get("text")
               or next((c["display"] for c in concept.get("coding", []) if c.get("display")), code))
    notes = " ".join(n.get("text", "") for n in content.get("note", []) if n.get("text"))
    observed = moment(content.get("effectiveDateTime"))
    if content.get("status") == "cancelled":
        if not content.get("dataAbsentReason"):
            return None
        return Result(code, display, None, status="aborted", comment=notes or None, observed_at=observed)
    value: Quantity | Code | str
    low = high = None
    if "valueQuantity" in content:
        quantity = content["valueQuantity"]
        value = Quantity(Decimal(str(quantity["value"])), quantity.get("code", ""), quantity.get("comparator"))
        low, high = _range(content, value.unit)
    elif "valueCodeableConcept" in content:
        coding = (content["valueCodeableConcept"].get("coding") or [{}])[0]
        value = Code(coding.get("code", ""), coding.get("display") or content["valueCodeableConcept"].get("text", ""),
                     _OIDS.get(coding.get("system", ""), oid_for(coding.get("system", ""))))
    else:
        value = str(content.get("valueString") or "")
    flag = next((c.get("code") for i in content.get("interpretation", []) for c in i.get("coding", [])), None)
    return Result(code, display, value, flag, low, high, comment=notes or None, observed_at=observed)


def adaptation_text(requests: Iterable[dict[str, Any]], labels: dict[str, str]) -> str | None:
    """What the biologist changed in the prescription and why, in one paragraph."""
    lines = []
    for request in requests:
        if not adaptation.is_adaptation(request):
            continue
        change = adaptation.CHANGES.get(adaptation.change_of(request), "Adaptation")
        exam = (request.get("code") or {}).get("text") or _code(request)
        reason = next((c.get("display") for r in request.get("reasonCode", []) for c in r.get("coding", [])), "")
        answer = adaptation.ANSWERS.get(adaptation.answer_of(request), "")
        lines.append(f"{change} : {labels.get(_code(request), exam)}"
                     + (f" ({reason})" if reason else "") + (f" - {answer}" if answer else ""))
    return ". ".join(lines) + "." if lines else None


def forwarded(exam: str, partner: dict[str, Any], pending: bool) -> Forwarded:
    """An exam sent to the partner lab (its directory Organization, {} when unknown)."""
    finess = next((str(i.get("value", ""))[1:] for i in partner.get("identifier", [])
                   if i.get("system") == "urn:oid:1.2.250.1.71.4.2.2"), "")
    return Forwarded(exam, partner.get("name", ""), finess, pending)


@cache
def _chapter_labels() -> dict[str, str]:
    root = etree.parse(str(CHAPTERS_VALUE_SET), etree.XMLParser(resolve_entities=False, no_network=True))
    return {e.get("code"): e.get("displayName") for e in root.iter() if e.get("code") and e.get("displayName")}


def chapter_label(code: str) -> str:
    return _chapter_labels().get(code, code)


def _address(address: dict[str, Any]) -> Address:
    return Address(tuple(address.get("line", [])), address.get("postalCode", ""), address.get("city", ""))


def _code(request: dict[str, Any]) -> str:
    return next((c["code"] for c in (request.get("code") or {}).get("coding", [])
                 if c.get("system") == LOINC and c.get("code")), "")


def _request_refs(request: dict[str, Any]) -> set[str]:
    """The prescribed requests a (possibly adapted) request stands for."""
    refs = {f"ServiceRequest/{request['id']}"} if request.get("id") else set()
    return refs | {r.get("reference", "") for r in request.get("replaces", []) + request.get("basedOn", [])}


def _tube_requests(specimen: dict[str, Any]) -> set[str]:
    return {r.get("reference", "") for r in specimen.get("request", [])}


def _specimen(content: dict[str, Any]) -> Specimen | None:
    collected = moment((content.get("collection") or {}).get("collectedDateTime"))
    if collected is None:
        return None
    coding = ((content.get("type") or {}).get("coding") or [{}])[0]
    accession = (content.get("accessionIdentifier") or {})
    return Specimen(Code(coding.get("code", ""), coding.get("display", ""), SPECIMEN_TYPES), collected,
                    moment(content.get("receivedTime")),
                    Identifier(oid_for(accession["system"]), accession["value"]) if accession.get("value") else None)


def _range(content: dict[str, Any], unit: str) -> tuple[Decimal | None, Decimal | None]:
    for element in content.get("referenceRange", []):
        low, high = element.get("low") or {}, element.get("high") or {}
        if low.get("code", unit) == unit and high.get("code", unit) == unit:
            return (Decimal(str(low["value"])) if "value" in low else None,
                    Decimal(str(high["value"])) if "value" in high else None)
    return None, None


def moment(text: str | None) -> datetime | None:
    """The instant a FHIR date or dateTime starts at."""
    return date_range(text)[0] if text else None
