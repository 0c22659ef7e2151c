"""An eP-BIO document (BIO-EP-BIO 2022.01) read into the transaction Bundle the FHIR form of the
same prescription is: Patient, Practitioner, its practice and PractitionerRole, the clinical
context as Observations, one ServiceRequest per prescribed act (national number as
`requisition`, LOINC code, priority, sample nature, the four flags). Each entry remembers the
element of the document it comes from, so that a refusal can point into the document.

The document has passed the ANS checks (`conformance.check(..., EP_BIO)`) before it is read:
what the volet requires is there."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lxml import etree

from bilan.fhir.fr_core import PROFESSION, SPECIALTY, official_name, organization_identifiers, typed
from bilan.fhir.terminology import INS_SYSTEMS, NATIONAL_ID, ORGANIZATION_ID, RPPS, UCUM
from bilan.prescription.ep_bio import (
    COMMENT,
    FLAGS,
    NATIONAL_PRESCRIPTION,
    NATIONAL_PRESCRIPTION_OID,
    PLAN_SECTION,
    PRESCRIBED_ACT,
    SAMPLE,
    TITLES,
    oid_of,
    system_of,
)
from bilan.prescription.exams import LAB_CATEGORY, with_sample_nature
from bilan.prescription.ins import BIRTH_PLACE, IDENTITY_RELIABILITY, IDENTITY_STATUS_SYSTEM
from bilan.results.document.conformance import path_of

V3 = "urn:hl7-org:v3"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_NS = {"h": V3}
INSEE_CODE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
INSEE_COMMUNES = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
ROLE_IDENTIFIER = "https://bilan.sante.fr/fhir/sid/practitioner-role"  # RPPS-FINESS, as the FHIR form sends it
_SEX = {"F": "female", "M": "male", "UN": "unknown"}
_PREFIXES = {suffix: prefix for prefix, suffix in TITLES.items()}
_INS_OIDS = {oid_of(system): system for system in INS_SYSTEMS}


@dataclass(frozen=True)
class Read:
    bundle: dict[str, Any]  # the transaction
    sources: dict[int, str]  # entry index: path of the document element it was read from


def transaction(document: bytes) -> Read:
    """The transaction Bundle of an eP-BIO document that passed the ANS checks."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    root = etree.fromstring(document, parser)
    return _Reader(root).read()


class _Reader:
    def __init__(self, root: etree._Element):
        self.root = root
        self.number = _one(root, "h:id[@root=$oid]/@extension", oid=NATIONAL_PRESCRIPTION_OID) or ""
        self.authored = _fhir_time(_one(root, "h:effectiveTime/@value") or "")
        self.entries: list[dict[str, Any]] = []
        self.sources: dict[int, str] = {}

    def read(self) -> Read:
        patient = self._add("patient", _patient(_first(self.root, "h:recordTarget/h:patientRole")),
                            "h:recordTarget/h:patientRole", self._ins_condition)
        author = _first(self.root, "h:author/h:assignedAuthor")
        practitioner = _practitioner(author)
        rpps = next((i["value"] for i in practitioner["identifier"] if i["system"] == RPPS), None)
        practitioner_url = self._add("practitioner", practitioner, "h:author/h:assignedAuthor",
                                     f"identifier={RPPS}|{rpps}" if rpps else None)
        practice = _first(author, "h:representedOrganization")
        practice_id = _one(practice, "h:id[@root=$oid]/@extension", oid=oid_of(ORGANIZATION_ID)) if practice is not None else None
        requester = practitioner_url
        if practice is not None and practice_id:
            org_url = self._add("practice", {
                "resourceType": "Organization",
                "identifier": organization_identifiers(practice_id[1:]) if practice_id.startswith("1")
                else [typed({"system": ORGANIZATION_ID, "value": practice_id})],
                "name": _one(practice, "h:name/text()") or "",
            }, "h:author/h:assignedAuthor/h:representedOrganization", f"identifier={ORGANIZATION_ID}|{practice_id}")
            requester = self._add("role", _role(author, practitioner_url, org_url, rpps, practice_id),
                                  "h:author/h:assignedAuthor",
                                  f"identifier={ROLE_IDENTIFIER}|{rpps}-{practice_id[1:]}" if rpps else None)
        context = [self._add(f"context-{n}", _observation(element, patient, self.authored), element)
                   for n, element in enumerate(self.root.xpath(
                       "h:component/h:structuredBody/h:component/h:section[h:code/@code='55752-0']/h:entry/h:observation",
                       namespaces=_NS), start=1)]
        lab = _one(self.root, "h:informationRecipient/h:intendedRecipient/h:receivedOrganization/h:id[@root=$oid]/@extension",
                   oid=oid_of(ORGANIZATION_ID))
        acts = self.root.xpath(
            "h:component/h:structuredBody/h:component/h:section[h:templateId/@root=$plan]/h:entry/h:observation"
            "[h:templateId/@root=$act]", namespaces=_NS, plan=PLAN_SECTION, act=PRESCRIBED_ACT)
        for n, act in enumerate(acts, start=1):
            request = self._request(act, patient, requester, context, lab)
            self._add(f"act-{n}", request, act)
        return Read({"resourceType": "Bundle", "type": "transaction", "entry": self.entries}, self.sources)

    @property
    def _ins_condition(self) -> str | None:
        ident = _first(self.root, "h:recordTarget/h:patientRole/h:id")
        root = ident.get("root") if ident is not None else None
        if root in _INS_OIDS and ident is not None:
            return f"identifier={_INS_OIDS[root]}|{ident.get('extension')}"
        return None

    def _add(self, part: str, resource: dict[str, Any], source: etree._Element | str,
             if_none_exist: str | None = None) -> str:
        full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, f'{NATIONAL_PRESCRIPTION_OID}|{self.number}|{part}')}"
        request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        element = source if isinstance(source, etree._Element) else _first(self.root, source)
        self.sources[len(self.entries)] = path_of(element) if element is not None else "/ClinicalDocument"
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        return full_url

    def _request(self, act: etree._Element, patient: str, requester: str, context: list[str],
                 lab: str | None) -> dict[str, Any]:
        code = _first(act, "h:code")
        label = code.get("displayName", "") if code is not None else ""
        urgent = _one(act, "h:priorityCode/@code") == "UR"
        request: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "requisition": {"system": NATIONAL_PRESCRIPTION, "value": self.number},
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": LAB_CATEGORY[0], "code": LAB_CATEGORY[1],
                                      "display": "Laboratory procedure"}]}],
            "priority": "urgent" if urgent else "routine",
            "code": {"coding": [{"system": system_of(code.get("codeSystem", "") if code is not None else ""),
                                 "code": code.get("code", "") if code is not None else "", "display": label}],
                     "text": label},
            "subject": {"reference": patient},
            "authoredOn": self.authored,
            "occurrenceDateTime": self.authored,
            "requester": {"reference": requester},
            "supportingInfo": [{"reference": c} for c in context],
        }
        flags = [(f.extension, _one(act, "h:entryRelationship/h:observation[h:templateId/@root=$t]/h:value/@value",
                                    t=f.template)) for f in FLAGS]
        extensions = [{"url": url, "valueBoolean": value == "true"} for url, value in flags if value in ("true", "false")]
        if extensions:
            request["extension"] = extensions
        notes = [self._narrative(ref) for ref in act.xpath(
            "h:entryRelationship/h:act[h:templateId/@root=$t]/h:text/h:reference/@value", namespaces=_NS, t=COMMENT[1])]
        if any(notes):
            request["note"] = [{"text": note} for note in notes if note]
        if lab:
            request["performer"] = [{"reference": f"Organization?identifier={ORGANIZATION_ID}|{lab}"}]
        sample = _first(act, "h:entryRelationship/h:procedure[h:templateId/@root=$t]/h:participant/h:participantRole"
                             "/h:playingEntity/h:code[@code]", t=SAMPLE)
        if sample is not None:
            coding = {"system": system_of(sample.get("codeSystem", "")), "code": sample.get("code")}
            if sample.get("displayName"):
                coding["display"] = sample.get("displayName")
            request = with_sample_nature(request, coding)
        return request


    def _narrative(self, reference: str) -> str:
        """The narrative text a `#id` reference points at."""
        found = self.root.xpath("//*[@ID=$id]", id=str(reference).removeprefix("#"))
        return "".join(found[0].itertext()).strip() if isinstance(found, list) and found else ""


def _patient(role: etree._Element | None) -> dict[str, Any]:
    if role is None:
        return {"resourceType": "Patient"}
    patient: dict[str, Any] = {"resourceType": "Patient"}
    ident = _first(role, "h:id")
    extensions: list[dict[str, Any]] = []
    if ident is not None and ident.get("root") in _INS_OIDS:
        extensions.append({"url": IDENTITY_RELIABILITY, "extension": [
            {"url": "identityStatus", "valueCoding": {"system": IDENTITY_STATUS_SYSTEM, "code": "QUAL"}}]})
        patient["identifier"] = [typed({"use": "official", "system": _INS_OIDS[ident.get("root", "")],
                                        "value": ident.get("extension", "")})]
    county = _one(role, "h:patient/h:birthplace/h:place/h:addr/h:county/text()")
    if county:
        extensions.append({"url": BIRTH_PLACE, "valueAddress": {"extension": [
            {"url": INSEE_CODE, "valueCoding": {"system": INSEE_COMMUNES, "code": county}}]}})
    if extensions:
        patient["extension"] = extensions
    family = _one(role, "h:patient/h:name/h:family[@qualifier='BR']/text()") or _one(role, "h:patient/h:name/h:family/text()")
    given = (_one(role, "h:patient/h:name/h:given[not(@qualifier)]/text()") or "").split()
    patient["name"] = [official_name(family or "", given)]
    sex = _one(role, "h:patient/h:administrativeGenderCode/@code")
    if sex in _SEX:
        patient["gender"] = _SEX[sex]
    birth = _one(role, "h:patient/h:birthTime/@value")
    if birth:
        patient["birthDate"] = _fhir_time(birth[:8])
    return patient


def _practitioner(author: etree._Element | None) -> dict[str, Any]:
    practitioner: dict[str, Any] = {"resourceType": "Practitioner", "identifier": []}
    if author is None:
        return practitioner
    national = _one(author, "h:id[@root=$oid]/@extension", oid=oid_of(NATIONAL_ID)) or ""
    # The national id of a professional with an RPPS is "8" + RPPS.
    if len(national) == 12 and national.startswith("8"):
        practitioner["identifier"].append(typed({"system": RPPS, "value": national[1:]}))
    if national:
        practitioner["identifier"].append(typed({"system": NATIONAL_ID, "value": national}))
    given = [str(g) for g in author.xpath("h:assignedPerson/h:name/h:given/text()", namespaces=_NS)]
    name: dict[str, Any] = {"family": _one(author, "h:assignedPerson/h:name/h:family/text()") or "", "given": given}
    prefixes = [_PREFIXES[s] for s in author.xpath("h:assignedPerson/h:name/h:suffix/text()", namespaces=_NS)
                if s in _PREFIXES]
    if prefixes:
        name["prefix"] = prefixes
    practitioner["name"] = [name]
    mails = [t.removeprefix("mailto:") for t in author.xpath("h:telecom/@value", namespaces=_NS)
             if str(t).startswith("mailto:")]
    if mails:
        practitioner["telecom"] = [{"system": "email", "value": m, "use": "work"} for m in mails]
    return practitioner


def _role(author: etree._Element, practitioner: str, organization: str, rpps: str | None,
          practice_id: str) -> dict[str, Any]:
    role: dict[str, Any] = {"resourceType": "PractitionerRole",
                            "practitioner": {"reference": practitioner},
                            "organization": {"reference": organization}}
    if rpps:
        role["identifier"] = [{"system": ROLE_IDENTIFIER, "value": f"{rpps}-{practice_id[1:]}"}]
    # The author's code is profession and specialty in one: G15_10/SM54.
    profession, _, specialty = (_one(author, "h:code/@code") or "").removeprefix("G15_").partition("/")
    if profession:
        role["code"] = [{"coding": [{"system": PROFESSION, "code": profession}]}]
    if specialty:
        role["specialty"] = [{"coding": [{"system": SPECIALTY, "code": specialty}]}]
    return role


def _observation(element: etree._Element, patient: str, authored: str) -> dict[str, Any]:
    code = _first(element, "h:code")
    coding: dict[str, Any] = {"system": system_of(code.get("codeSystem", "") if code is not None else ""),
                              "code": code.get("code", "") if code is not None else ""}
    if code is not None and code.get("displayName"):
        coding["display"] = code.get("displayName")
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "survey"}]}],
        "code": {"coding": [coding]}, "subject": {"reference": patient},
        "effectiveDateTime": _fhir_time(_one(element, "h:effectiveTime/@value") or "") or authored,
    }
    value = _first(element, "h:value")
    if value is None:
        return observation
    kind = value.get(XSI_TYPE, "")
    if kind == "PQ":
        observation["valueQuantity"] = {"value": _number(value.get("value", "")), "unit": value.get("unit", ""),
                                        "system": UCUM, "code": value.get("unit", "")}
    elif kind == "CD":
        answer: dict[str, Any] = {"system": system_of(value.get("codeSystem", "")), "code": value.get("code")}
        if value.get("displayName"):
            answer["display"] = value.get("displayName")
        observation["valueCodeableConcept"] = {"coding": [answer]}
    elif kind == "BL":
        observation["valueBoolean"] = value.get("value") == "true"
    else:
        observation["valueString"] = value.text or ""
    return observation


def _number(text: str) -> int | float:
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() and "." not in text else float(number)


def _fhir_time(ts: str) -> str:
    """An HL7 TS as a FHIR date or dateTime, at its precision and offset."""
    digits = ts[:14]
    if len(ts) == 8:
        return date(int(ts[:4]), int(ts[4:6]), int(ts[6:8])).isoformat()
    if len(digits) < 14 or not digits.isdigit():
        return ""
    moment = datetime.strptime(ts[:14] + (ts[14:] if len(ts) > 14 else ""),
                               "%Y%m%d%H%M%S%z" if len(ts) > 14 else "%Y%m%d%H%M%S")
    return moment.isoformat(timespec="seconds")


def _first(node: etree._Element | None, path: str, **variables: str) -> etree._Element | None:
    if node is None:
        return None
    found = node.xpath(path, namespaces=_NS, **variables)
    return found[0] if isinstance(found, list) and found and isinstance(found[0], etree._Element) else None


def _one(node: etree._Element | None, path: str, **variables: str) -> str | None:
    if node is None:
        return None
    found = node.xpath(path, namespaces=_NS, **variables)
    return str(found[0]) if isinstance(found, list) and found else None
