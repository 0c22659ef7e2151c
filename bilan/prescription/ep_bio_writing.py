"""A stored prescription written as an eP-BIO document (CDA R2, BIO-EP-BIO 2022.01): header
(national number, patient, prescriber, the lab it is addressed to), the section of prescribed
acts (each with its LOINC code, priority, sample nature and four flags) and the clinical
context. Read back by ep_bio_reading.py into the same transaction; checked by
`conformance.check(..., EP_BIO)` (tests/test_ep_bio.py)."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from bilan import data
from bilan.fhir.fr_core import PROFESSION, SPECIALTY, birth_given_names
from bilan.fhir.terminology import INS_SYSTEMS, LOINC, LOINC_OID, NATIONAL_ID, ORGANIZATION_ID, RPPS
from bilan.prescription.ep_bio import (
    CISIS_TERMS,
    COMMENT,
    CONTEXT_TITLE,
    DOCUMENT_CODE,
    DOCUMENT_TYPES,
    FLAGS,
    NATIONAL_PRESCRIPTION,
    NATIONAL_PRESCRIPTION_OID,
    PLAN_SECTION,
    PLAN_TITLE,
    PRESCRIBED_ACT,
    SAMPLE,
    SIMPLE_OBSERVATION,
    TITLE,
    TITLES,
    VOLET,
    oid_of,
)
from bilan.prescription.exams import flag, loinc_codes, sample_nature
from bilan.prescription.identity import traits

V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_TYPE = f"{{{XSI}}}type"
E = ElementMaker(namespace=V3, nsmap={None: V3, "xsi": XSI},
                 typemap={type(None): lambda element, item: None})
_SEX = {"female": ("F", "Féminin"), "male": ("M", "Masculin")}
_URGENT = ("urgent", "asap", "stat")
# An author's code is profession and specialty in one (G15_10/SM54), from the XDS author
# specialties (JDV_J01), which the kit ships.
AUTHOR_SPECIALTIES = "1.2.250.1.213.1.1.4.5"
_AUTHOR_SPECIALTY_SET = data.CDA_KIT / "jeuxDeValeurs" / "JDV_J01_XdsAuthorSpecialty_CISIS.xml"


class NotExportable(ValueError):
    """A prescription the volet cannot say (no national number)."""


@dataclass(frozen=True)
class Prescription:
    """A stored prescription, as its resources."""

    requests: list[dict[str, Any]]  # its ServiceRequests, in their order
    patient: dict[str, Any]
    practitioner: dict[str, Any]
    role: dict[str, Any] | None  # the requester, when it is a PractitionerRole
    practice: dict[str, Any] | None  # the role's organization
    lab: dict[str, Any] | None  # the lab it is addressed to
    context: list[dict[str, Any]]  # the clinical context (supportingInfo)


def ep_bio_document(prescription: Prescription) -> bytes:
    """The eP-BIO document of a prescription, UTF-8 XML bytes."""
    first = prescription.requests[0]
    requisition = first.get("requisition") or {}
    if requisition.get("system") != NATIONAL_PRESCRIPTION or not requisition.get("value"):
        raise NotExportable("An eP-BIO document is identified by the national prescription number "
                            f"({NATIONAL_PRESCRIPTION}); this prescription has none")
    root = E.ClinicalDocument(*_header(prescription, requisition["value"]), _body(prescription))
    document: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return document


# Header

def _header(p: Prescription, number: str) -> list[Any]:
    authored = _ts(p.requests[0]["authoredOn"])
    return [
        E.realmCode(code="FR"),
        E.typeId(root="2.16.840.1.113883.1.3", extension="POCD_HD000040"),
        E.templateId(root="2.16.840.1.113883.2.8.2.1"),  # HL7 France
        E.templateId(root="1.2.250.1.213.1.1.1.1"),  # CI-SIS
        E.templateId(root="1.3.6.1.4.1.19376.1.5.3.1.1.1"),  # IHE PCC
        E.templateId(root=VOLET[0], extension=VOLET[1]),
        E.id(root=NATIONAL_PRESCRIPTION_OID, extension=number),
        E.code(code=DOCUMENT_CODE, displayName="Prescription d'actes de biologie médicale",
               codeSystem=DOCUMENT_TYPES),
        E.title(TITLE),
        E.effectiveTime(value=authored),
        E.confidentialityCode(code="N", displayName="Normal", codeSystem="2.16.840.1.113883.5.25"),
        E.languageCode(code="fr-FR"),
        E.setId(root=NATIONAL_PRESCRIPTION_OID, extension=number),
        E.versionNumber(value="1"),
        E.recordTarget(_patient_role(p.patient)),
        E.author(E.time(value=authored), E.assignedAuthor(*_prescriber(p))),
        E.custodian(E.assignedCustodian(E.representedCustodianOrganization(*_organization(p.practice)))),
        _recipient(p.lab),
        E.legalAuthenticator(E.time(value=authored), E.signatureCode(code="S"),
                             E.assignedEntity(*_prescriber(p))),
        E.documentationOf(E.serviceEvent(
            E.code(code=DOCUMENT_CODE, displayName="Prescription d'actes de biologie médicale",
                   codeSystem=DOCUMENT_TYPES),
            E.effectiveTime(E.low(value=authored)),
            E.performer(E.assignedEntity(*_prescriber(p, setting=True)), typeCode="PRF"))),
        E.componentOf(E.encompassingEncounter(
            E.code(code="AMB", displayName="Ambulatoire (hors établissement)", codeSystem="2.16.840.1.113883.5.4"),
            E.effectiveTime(E.low(value=authored)),
            E.location(E.healthCareFacility(
                E.code(code="SA07", displayName="Cabinet individuel", codeSystem="1.2.250.1.71.4.2.4"))))),
    ]


def _patient_role(patient: dict[str, Any]) -> Any:
    found = traits(patient)
    ins = next((i for i in patient.get("identifier", []) if i.get("system") in INS_SYSTEMS), None)
    # The INS travels only with a qualified identity (the INS doctrine).
    ident = (E.id(root=oid_of(ins["system"]), extension=ins["value"])
             if ins and found.status == "QUAL" else E.id(nullFlavor="UNK"))
    sex = _SEX.get(found.sex)
    official: dict[str, Any] = next((n for n in patient.get("name", []) if n.get("use") == "official"), {})
    given = list(birth_given_names(official)) if official else list(found.given)
    return E.patientRole(
        ident, E.addr(nullFlavor="UNK"), E.telecom(nullFlavor="UNK"),
        E.patient(
            E.name(E.family(found.family, qualifier="BR"), E.given(" ".join(given)),
                   E.given(given[0], qualifier="BR") if given else None),
            E.administrativeGenderCode(code=sex[0], displayName=sex[1], codeSystem="2.16.840.1.113883.5.1")
            if sex else E.administrativeGenderCode(code="UN", displayName="Inconnu",
                                                   codeSystem="2.16.840.1.113883.5.1"),
            E.birthTime(value=found.birth_date.replace("-", "")),
            E.birthplace(E.place(E.addr(E.county(found.birth_place)))) if found.birth_place else None,
            classCode="PSN"))


def _prescriber(p: Prescription, setting: bool = False) -> list[Any]:
    """`setting`: with the practice's setting (ambulatory), which the main act's performer needs."""
    who = p.practitioner
    rpps = next((i["value"] for i in who.get("identifier", []) if i.get("system") == RPPS), None)
    national = next((i["value"] for i in who.get("identifier", []) if i.get("system") == NATIONAL_ID), None)
    name = (who.get("name") or [{}])[0]
    mails = [t["value"] for t in who.get("telecom", []) if t.get("system") == "email" and t.get("value")]
    code = _author_code(p.role or {})
    return [
        E.id(root=oid_of(NATIONAL_ID), extension=national or f"8{rpps}"),
        E.code(code=code, displayName=_author_specialties()[code], codeSystem=AUTHOR_SPECIALTIES) if code else None,
        E.addr(nullFlavor="UNK"),
        *([E.telecom(value=f"mailto:{m}", use="WP") for m in mails] or [E.telecom(nullFlavor="UNK")]),
        E.assignedPerson(E.name(*[E.given(g) for g in name.get("given", [])], E.family(name.get("family", "")),
                                *[E.suffix(TITLES[x]) for x in name.get("prefix", []) if x in TITLES])),
        E.representedOrganization(*_organization(p.practice), E.standardIndustryClassCode(
            code="AMBULATOIRE", displayName="Ambulatoire", codeSystem="1.2.250.1.213.1.1.4.9") if setting else None)
        if p.practice else None,
    ]


def _author_code(role: dict[str, Any]) -> str | None:
    """G15_<profession>/<specialty> of a PractitionerRole, when the value set has it."""
    def coded(element: str, system: str) -> str | None:
        return next((c.get("code") for concept in role.get(element, []) for c in concept.get("coding", [])
                     if c.get("system") == system), None)
    profession, specialty = coded("code", PROFESSION), coded("specialty", SPECIALTY)
    code = f"G15_{profession}/{specialty}" if profession and specialty else f"G15_{profession}" if profession else None
    return code if code in _author_specialties() else None


@cache
def _author_specialties() -> dict[str, str]:
    """code: display of the XDS author specialties."""
    concepts = etree.parse(str(_AUTHOR_SPECIALTY_SET)).iter("{urn:ihe:iti:svs:2008}Concept")
    return {c.get("code", ""): c.get("displayName", "") for c in concepts}


def _organization(org: dict[str, Any] | None) -> list[Any]:
    ident = next((i["value"] for i in (org or {}).get("identifier", []) if i.get("system") == ORGANIZATION_ID), None)
    return [E.id(root=oid_of(ORGANIZATION_ID), extension=ident) if ident else E.id(nullFlavor="UNK"),
            E.name((org or {}).get("name") or "Cabinet du prescripteur")]


def _recipient(lab: dict[str, Any] | None) -> Any:
    if lab is None:
        return None
    ident = next((i["value"] for i in lab.get("identifier", []) if i.get("system") == ORGANIZATION_ID), None)
    if ident is None:
        return None
    return E.informationRecipient(E.intendedRecipient(
        E.receivedOrganization(E.id(root=oid_of(ORGANIZATION_ID), extension=ident),
                               E.name(lab.get("name") or "Laboratoire"))))


# Body

def _body(p: Prescription) -> Any:
    sections = [_plan(p)]
    if p.context:
        sections.append(_context(p))
    return E.component(E.structuredBody(*[E.component(s) for s in sections]))


def _plan(p: Prescription) -> Any:
    rows, entries = [], []
    number = p.requests[0]["requisition"]["value"]
    for n, request in enumerate(p.requests, start=1):
        act = f"acte-{n}"
        code = loinc_codes(request)[0]
        label = _label(request)
        sample = sample_nature(request)
        urgent = request.get("priority") in _URGENT
        values = [(f, flag(request, f.extension) is True) for f in FLAGS]
        notes = [n["text"] for n in request.get("note", []) if n.get("text")]
        rows.append(E.tr(
            E.td(E.content(label, ID=act), *[part for k, note in enumerate(notes, start=1)
                                             for part in (E.br(), E.content(note, ID=f"{act}-note-{k}"))]),
            E.td(f"LOINC {code}"),
            E.td(E.content("Urgent", ID=f"{act}-priorite") if urgent else "Normale"),
            E.td(E.content(sample.get("display") or sample["code"], ID=f"{act}-echantillon") if sample
                 else E.content("Non précisée", ID=f"{act}-echantillon")),
            *[E.td(E.content("Oui" if value else "Non", ID=f"{act}-{f.code}")) for f, value in values]))
        entries.append(E.entry(E.observation(
            *[E.templateId(root=r) for r in ("1.3.6.1.4.1.19376.1.5.3.1.1.20.3.1", "2.16.840.1.113883.10.20.1.25",
                                             "1.2.250.1.213.1.1.3.27", PRESCRIBED_ACT)],
            E.id(root=_uuid(number, "act", str(n))),
            E.code(E.originalText(E.reference(value=f"#{act}")), code=code, displayName=label,
                   codeSystem=LOINC_OID, codeSystemName="LOINC"),
            E.text(E.reference(value=f"#{act}")),
            E.statusCode(code="new"),
            E.effectiveTime(nullFlavor="UNK"),
            E.priorityCode(E.originalText(E.reference(value=f"#{act}-priorite")), code="UR",
                           displayName="Urgent", codeSystem="2.16.840.1.113883.5.7") if urgent else None,
            E.entryRelationship(_sample(sample, f"{act}-echantillon"), typeCode="COMP"),
            *[E.entryRelationship(_flag_entry(f, value, f"{act}-{f.code}", _uuid(number, act, f.code),
                                              _ts(request["authoredOn"])), typeCode="COMP") for f, value in values],
            *[E.entryRelationship(_comment(f"{act}-note-{k}"), typeCode="SUBJ", inversionInd="true")
              for k in range(1, len(notes) + 1)],
            classCode="OBS", moodCode="INT")))
    heads = ["Examen", "Code", "Priorité", "Nature de l'échantillon", *[f.display for f in FLAGS]]
    return E.section(
        *[E.templateId(root=r) for r in ("1.3.6.1.4.1.19376.1.5.3.1.3.36", "2.16.840.1.113883.10.20.1.10",
                                         "1.2.250.1.213.1.1.2.158", PLAN_SECTION)],
        E.id(root=_uuid(number, "plan")),
        E.code(code="18776-5", displayName="Plan de soins", codeSystem=LOINC_OID, codeSystemName="LOINC"),
        E.title(PLAN_TITLE),
        E.text(E.table(E.thead(E.tr(*[E.th(h) for h in heads])), E.tbody(*rows), border="1")),
        *entries)


def _sample(sample: dict[str, Any] | None, reference: str) -> Any:
    kind = (E.code(code=sample["code"], displayName=sample.get("display", ""), codeSystem=oid_of(sample["system"]))
            if sample else E.code(nullFlavor="UNK"))
    return E.procedure(
        E.templateId(root="1.3.6.1.4.1.19376.1.3.1.2"), E.templateId(root=SAMPLE),
        E.text(E.reference(value=f"#{reference}")),
        E.effectiveTime(nullFlavor="UNK"),
        # PaLM's specimen collection is an event with a specimen id: not taken yet, both unknown.
        E.participant(E.participantRole(E.id(nullFlavor="UNK"), E.playingEntity(kind), classCode="SPEC"),
                      typeCode="PRD"),
        classCode="PROC", moodCode="EVN")


def _comment(reference: str) -> Any:
    """The prescriber's note on an act (FR-Commentaire-ER), its text in the narrative."""
    return E.act(
        *[E.templateId(root=r) for r in COMMENT],
        E.code(code="48767-8", displayName="Commentaire", codeSystem=LOINC_OID, codeSystemName="LOINC"),
        E.text(E.reference(value=f"#{reference}")),
        E.statusCode(code="completed"),
        classCode="ACT", moodCode="EVN")


def _flag_entry(f: Any, value: bool, reference: str, ident: str, authored: str) -> Any:
    return E.observation(
        *[E.templateId(root=r) for r in (*SIMPLE_OBSERVATION, f.template)],
        E.id(root=ident),
        E.code(code=f.code, displayName=f.display, codeSystem=CISIS_TERMS, codeSystemName="TA_ASIP"),
        E.text(E.reference(value=f"#{reference}")),
        E.statusCode(code="completed"),
        E.effectiveTime(value=authored),
        E.value({_TYPE: "BL"}, value="true" if value else "false"),
        classCode="OBS", moodCode="EVN")


def _context(p: Prescription) -> Any:
    number = p.requests[0]["requisition"]["value"]
    items, entries = [], []
    for n, resource in enumerate(p.context, start=1):
        ref = f"contexte-{n}"
        coding = next((c for c in (resource.get("code") or {}).get("coding", []) if c.get("code")), None)
        if coding is None:
            continue
        what = coding.get("display") or coding["code"]
        items.append(E.item(E.content(f"{what} : {_value_text(resource)}", ID=ref)))
        entries.append(E.entry(E.observation(
            *[E.templateId(root=r) for r in SIMPLE_OBSERVATION],
            E.id(root=_uuid(number, ref)),
            E.code(code=coding["code"], displayName=what, codeSystem=oid_of(coding["system"])),
            E.text(E.reference(value=f"#{ref}")),
            E.statusCode(code="completed"),
            E.effectiveTime(value=_ts(resource["effectiveDateTime"])) if resource.get("effectiveDateTime")
            else E.effectiveTime(nullFlavor="UNK"),
            _value(resource),
            classCode="OBS", moodCode="EVN")))
    return E.section(
        E.id(root=_uuid(number, "contexte")),
        E.code(code="55752-0", displayName="Informations cliniques", codeSystem=LOINC_OID, codeSystemName="LOINC"),
        E.title(CONTEXT_TITLE), E.text(E.list(*items)), *entries)


def _value(resource: dict[str, Any]) -> Any:
    if "valueQuantity" in resource:
        quantity = resource["valueQuantity"]
        return E.value({_TYPE: "PQ"}, value=str(quantity["value"]), unit=quantity.get("code") or quantity.get("unit", "1"))
    if "valueCodeableConcept" in resource:
        coding = resource["valueCodeableConcept"]["coding"][0]
        return E.value({_TYPE: "CD"}, code=coding["code"], codeSystem=oid_of(coding["system"]),
                       **({"displayName": coding["display"]} if coding.get("display") else {}))
    if "valueBoolean" in resource:
        return E.value({_TYPE: "BL"}, value="true" if resource["valueBoolean"] else "false")
    return E.value({_TYPE: "ST"}, str(resource.get("valueString", "")))


def _value_text(resource: dict[str, Any]) -> str:
    if "valueQuantity" in resource:
        quantity = resource["valueQuantity"]
        return f"{quantity['value']} {quantity.get('unit') or quantity.get('code', '')}".strip()
    if "valueCodeableConcept" in resource:
        coding = resource["valueCodeableConcept"]["coding"][0]
        return str(coding.get("display") or coding["code"])
    if "valueBoolean" in resource:
        return "Oui" if resource["valueBoolean"] else "Non"
    return str(resource.get("valueString", ""))


def _label(request: dict[str, Any]) -> str:
    concept = request.get("code") or {}
    return str(concept.get("text") or next((c.get("display") for c in concept.get("coding", [])
                                            if c.get("system") == LOINC and c.get("display")), "Examen"))


def _ts(value: str) -> str:
    """A FHIR date or dateTime as HL7 TS, at its own precision and offset."""
    if "T" not in value:
        return date.fromisoformat(value).strftime("%Y%m%d")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y%m%d%H%M%S%z")


def _uuid(*parts: str) -> str:
    """The same id for the same part of the same prescription, each time it is written."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "|".join((NATIONAL_PRESCRIPTION_OID, *parts)))).upper()
