"""The IHE MHD 4 Comprehensive rules an ITI-65 Provide Document Bundle to the shared record
(DMP) must follow, with the ANS's (PDSm) value sets for the document's facility type and
practice setting. bilan checks every bundle before it leaves (bilan/results/issuing/dmp_feed.py)
and refuses to send one that breaks a rule; `problems` says which, element by element.

Rules, by MHD profile (IHE ITI MHD 4.2, StructureDefinitions IHE.MHD.Comprehensive.*):
- ProvideBundle: a transaction, declaring the Comprehensive profile; one SubmissionSet List and
  the DocumentReferences created by POST; every fullUrl a `urn:uuid:` UUID, none twice; each
  document as a Binary of the Bundle that its DocumentReference's attachment url names (by
  fullUrl, or by the Binary's `Type/id` request url); the hash and size of that Binary's data;
  the SubmissionSet and the DocumentReferences about the same patient; the facility type and
  practice setting those the CDA's header says (PDSm); every reference resolved
  inside the Bundle or to a contained resource, and nothing of the sender's own (its tags,
  extensions, identifier systems: `INTERNAL`).
- SubmissionSet: status current, mode working, code submissionset, a uniqueId (`urn:oid:`) and
  an entryUUID (`urn:uuid:`) identifier typed as MHD types them, sourceId (`urn:oid:`),
  designationType, subject, date, a contained source (author), entries naming DocumentReferences.
- DocumentReference: masterIdentifier (uniqueId: the CDA's id, `urn:oid:` or `urn:uuid:`) and entryUUID, status current, no
  docStatus nor modifierExtension, one type, one category, subject, securityLabel, exactly one
  content whose attachment has contentType, language, creation and url but no data, a format,
  a context with facilityType (JDV_J02), practiceSetting (JDV_J04) and sourcePatientInfo, and
  author, authenticator and sourcePatientInfo contained.
- The patient named by INS (the DMP's rule): `subject.identifier` in an INS system."""

import base64
import hashlib
import re
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Any

from lxml import etree

from bilan.data import CDA_KIT
from bilan.fhir.terminology import INS_SYSTEMS

MHD = "https://profiles.ihe.net/ITI/MHD"
PROVIDE_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle"
SUBMISSION_SET_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.SubmissionSet"
DOCUMENT_PROFILE = f"{MHD}/StructureDefinition/IHE.MHD.Comprehensive.DocumentReference"
LIST_TYPES = f"{MHD}/CodeSystem/MHDlistTypes"
IDENTIFIER_TYPES = f"{MHD}/CodeSystem/IHE.MHD.MHDIdentifierType"
SOURCE_ID = f"{MHD}/StructureDefinition/ihe-sourceId"
DESIGNATION_TYPE = f"{MHD}/StructureDefinition/ihe-designationType"
URI = "urn:ietf:rfc:3986"
INTERNAL = "bilan.sante.fr"  # what only means something inside bilan
FACILITY_TYPES = CDA_KIT / "jeuxDeValeurs" / "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS.xml"
PRACTICE_SETTINGS = CDA_KIT / "jeuxDeValeurs" / "JDV_J04_XdsPracticeSettingCode_CISIS.xml"
_UUID = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_OID = re.compile(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")


def uuid_urn(value: str) -> bool:
    return bool(_UUID.match(value))


def oid_urn(value: str) -> bool:
    return bool(_OID.match(value))


def mhd_identifier(kind: str, value: str) -> dict[str, Any]:
    """An MHD uniqueId or entryUUID identifier."""
    return {"use": "official" if kind == "uniqueId" else "secondary",
            "type": {"coding": [{"system": IDENTIFIER_TYPES, "code": kind}]}, "system": URI, "value": value}


def problems(bundle: dict[str, Any]) -> list[str]:
    """Every MHD Comprehensive rule the Provide Document Bundle breaks, as "path: why"."""
    found: list[str] = []
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        found.append("Bundle.type: an ITI-65 Provide Document Bundle is a transaction")
    if PROVIDE_PROFILE not in (bundle.get("meta") or {}).get("profile", []):
        found.append(f"Bundle.meta.profile: declares {PROVIDE_PROFILE}")
    entries = [e if isinstance(e, dict) else {} for e in bundle.get("entry", [])]
    found += _full_urls(entries)
    by_url = {str(e.get("fullUrl")): e.get("resource") or {} for e in entries}
    by_request = {str((e.get("request") or {}).get("url")): e.get("resource") or {} for e in entries}
    lists = [(i, e) for i, e in enumerate(entries) if (e.get("resource") or {}).get("resourceType") == "List"]
    documents = [(i, e) for i, e in enumerate(entries)
                 if (e.get("resource") or {}).get("resourceType") == "DocumentReference"]
    if len(lists) != 1:
        found.append(f"Bundle.entry: one SubmissionSet List, not {len(lists)}")
    for index, entry in lists:
        path = f"Bundle.entry[{index}]"
        found += _posted(entry, path)
        found += submission_set_problems(entry["resource"], f"{path}.resource", by_url)
    if not documents:
        found.append("Bundle.entry: at least one DocumentReference")
    subjects = {_subject_key(e["resource"]) for _, e in [*lists, *documents]}
    if len(subjects) > 1:
        found.append("Bundle.entry: the SubmissionSet and its DocumentReferences are about one patient")
    for index, entry in documents:
        path = f"Bundle.entry[{index}]"
        found += _posted(entry, path)
        found += document_problems(entry["resource"], f"{path}.resource")
        found += _document_content(entry["resource"], f"{path}.resource", by_url, by_request)
    for index, entry in enumerate(entries):
        found += _references(entry.get("resource") or {}, f"Bundle.entry[{index}].resource", by_url)
    found += [f"{path}: {INTERNAL} is bilan's own and means nothing to the DMP"
              for path in _internal(bundle, "Bundle")]
    return found


def submission_set_problems(resource: dict[str, Any], path: str, by_url: dict[str, Any]) -> list[str]:
    found = []
    if resource.get("status") != "current" or resource.get("mode") != "working":
        found.append(f"{path}.status: a SubmissionSet is current and working")
    if (LIST_TYPES, "submissionset") not in _codings(resource.get("code")):
        found.append(f"{path}.code: {LIST_TYPES}#submissionset")
    found += _identifier(resource, path, "uniqueId", oid_urn, "urn:oid:")
    found += _identifier(resource, path, "entryUUID", uuid_urn, "urn:uuid:")
    source_ids = [e.get("valueIdentifier") or {} for e in resource.get("extension", []) if e.get("url") == SOURCE_ID]
    if len(source_ids) != 1 or not oid_urn(str(source_ids[0].get("value", ""))):
        found.append(f"{path}.extension: one sourceId ({SOURCE_ID}) whose value is a urn:oid:")
    designations = [e for e in resource.get("extension", []) if e.get("url") == DESIGNATION_TYPE]
    if len(designations) != 1 or not _codings(designations[0].get("valueCodeableConcept")):
        found.append(f"{path}.extension: one designationType ({DESIGNATION_TYPE}) with a coding")
    found += _patient(resource, path)
    if not resource.get("date"):
        found.append(f"{path}.date: the submission time is required")
    found += _contained(resource, resource.get("source"), f"{path}.source",
                        ("Practitioner", "PractitionerRole", "Organization", "Device", "Patient", "RelatedPerson"))
    items = [str((e.get("item") or {}).get("reference", "")) for e in resource.get("entry", [])]
    if not items or any((by_url.get(i) or {}).get("resourceType") not in ("DocumentReference", "List") for i in items):
        found.append(f"{path}.entry: names the DocumentReferences of the Bundle, by their fullUrl")
    return found


def document_problems(resource: dict[str, Any], path: str) -> list[str]:
    """The MHD Comprehensive DocumentReference rules (also checked on a metadata update)."""
    found = []
    master = resource.get("masterIdentifier") or {}
    value = str(master.get("value", ""))
    if ((IDENTIFIER_TYPES, "uniqueId") not in _codings(master.get("type")) or master.get("system") != URI
            or not (oid_urn(value) or uuid_urn(value))):
        found.append(f"{path}.masterIdentifier: the document's uniqueId (type {IDENTIFIER_TYPES}#uniqueId, "
                     f"system {URI}, its id as the CDA says it: urn:oid: or urn:uuid:)")
    found += _identifier(resource, path, "entryUUID", uuid_urn, "urn:uuid:")
    if resource.get("status") != "current":
        found.append(f"{path}.status: current")
    for element in ("docStatus", "modifierExtension"):
        if element in resource:
            found.append(f"{path}.{element}: not allowed by MHD")
    for element in ("type", "category"):
        given = resource.get(element)
        if not given or (isinstance(given, list) and len(given) != 1):
            found.append(f"{path}.{element}: exactly one")
    if not resource.get("securityLabel"):
        found.append(f"{path}.securityLabel: at least one (the confidentiality)")
    found += _patient(resource, path)
    contents = resource.get("content", [])
    if len(contents) != 1:
        found.append(f"{path}.content: exactly one (one document per DocumentReference), not {len(contents)}")
    for index, content in enumerate(contents):
        attachment, where = content.get("attachment") or {}, f"{path}.content[{index}]"
        for element in ("contentType", "language", "creation", "url"):
            if not attachment.get(element):
                found.append(f"{where}.attachment.{element}: required")
        if "data" in attachment:
            found.append(f"{where}.attachment.data: the document travels as a Binary, not inline")
        if not content.get("format"):
            found.append(f"{where}.format: required")
    found += _context(resource, f"{path}.context")
    authors = resource.get("author", [])
    if not authors:
        found.append(f"{path}.author: at least one")
    for index, author in enumerate(authors):
        found += _contained(resource, author, f"{path}.author[{index}]",
                            ("Practitioner", "PractitionerRole", "Organization", "Device", "Patient", "RelatedPerson"))
    if resource.get("authenticator"):
        found += _contained(resource, resource["authenticator"], f"{path}.authenticator",
                            ("Practitioner", "PractitionerRole", "Organization"))
    return found


def _context(resource: dict[str, Any], path: str) -> list[str]:
    context = resource.get("context") or {}
    found = []
    facility = _codings(context.get("facilityType"))
    if not facility or not facility <= value_set(FACILITY_TYPES):
        found.append(f"{path}.facilityType: one code of JDV_J02 XdsHealthcareFacilityTypeCode")
    setting = _codings(context.get("practiceSetting"))
    if not setting or not setting <= value_set(PRACTICE_SETTINGS):
        found.append(f"{path}.practiceSetting: one code of JDV_J04 XdsPracticeSettingCode")
    found += _contained(resource, context.get("sourcePatientInfo"), f"{path}.sourcePatientInfo", ("Patient",))
    return found


@cache
def value_set(path: Any) -> frozenset[tuple[str, str]]:
    """(system, code) of a CI-SIS value set in the IHE SVS layout of the ANS kit."""
    root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    return frozenset((f"urn:oid:{c.get('codeSystem')}", str(c.get("code")))
                     for c in root.iter("{urn:ihe:iti:svs:2008}Concept"))


def _document_content(resource: dict[str, Any], path: str, by_url: dict[str, Any],
                      by_request: dict[str, Any]) -> list[str]:
    found = []
    for index, content in enumerate(resource.get("content", [])):
        attachment, where = content.get("attachment") or {}, f"{path}.content[{index}].attachment"
        url = str(attachment.get("url", ""))
        binary = by_url.get(url) or by_request.get(url) or {}
        if binary.get("resourceType") != "Binary":
            found.append(f"{where}.url: names a Binary of the Bundle (its fullUrl or its Type/id)")
            continue
        data = base64.b64decode(str(binary.get("data", "")))
        if attachment.get("size") != len(data):
            found.append(f"{where}.size: the Binary's {len(data)} bytes")
        if attachment.get("hash") != base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"):
            found.append(f"{where}.hash: the SHA-1 of the Binary's data, base64")
        if binary.get("contentType") != attachment.get("contentType"):
            found.append(f"{where}.contentType: the Binary's")
        if "xml" in str(binary.get("contentType")):
            found += _as_the_cda_says(resource, data, f"{path}.context")
    return found


def _as_the_cda_says(resource: dict[str, Any], cda: bytes, path: str) -> list[str]:
    """PDSm takes the facility type and the practice setting from the CDA's header."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, load_dtd=False)
    try:
        root = etree.fromstring(cda, parser)
    except etree.XMLSyntaxError:
        return [f"{path}: the CDA of the Binary cannot be read"]
    said = {"facilityType": "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code",
            "practiceSetting": "h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity"
                               "/h:representedOrganization/h:standardIndustryClassCode"}
    found = []
    for element, xpath in said.items():
        codes = {(f"urn:oid:{c.get('codeSystem')}", str(c.get("code")))
                 for c in root.xpath(xpath, namespaces={"h": "urn:hl7-org:v3"})}
        if codes and not _codings((resource.get("context") or {}).get(element)) & codes:
            found.append(f"{path}.{element}: the CDA says {', '.join(sorted(c for _, c in codes))}")
    return found


def _full_urls(entries: list[dict[str, Any]]) -> list[str]:
    found, seen = [], set()
    for index, entry in enumerate(entries):
        url = str(entry.get("fullUrl", ""))
        if not uuid_urn(url):
            found.append(f"Bundle.entry[{index}].fullUrl: a urn:uuid: with a UUID (RFC 4122, lower case), not {url!r}")
        if url in seen:
            found.append(f"Bundle.entry[{index}].fullUrl: {url} twice")
        seen.add(url)
    return found


def _posted(entry: dict[str, Any], path: str) -> list[str]:
    request = entry.get("request") or {}
    resource_type = (entry.get("resource") or {}).get("resourceType")
    if request.get("method") != "POST" or str(request.get("url", "")).split("?")[0] != resource_type:
        return [f"{path}.request: a {resource_type} of an ITI-65 is created (POST {resource_type})"]
    return []


def _identifier(resource: dict[str, Any], path: str, kind: str, valid: Any, form: str) -> list[str]:
    typed = [i for i in resource.get("identifier", []) if (IDENTIFIER_TYPES, kind) in _codings(i.get("type"))]
    if len(typed) != 1 or typed[0].get("system") != URI or not valid(str(typed[0].get("value", ""))):
        return [f"{path}.identifier: one {kind} (type {IDENTIFIER_TYPES}#{kind}, system {URI}, value {form})"]
    return []


def _patient(resource: dict[str, Any], path: str) -> list[str]:
    subject = resource.get("subject") or {}
    ident = subject.get("identifier") or {}
    if subject.get("type", "Patient") != "Patient" or ident.get("system") not in INS_SYSTEMS or not ident.get("value"):
        return [f"{path}.subject: the patient, by INS (subject.identifier in an INS system)"]
    return []


def _subject_key(resource: dict[str, Any]) -> tuple[str, str]:
    ident = (resource.get("subject") or {}).get("identifier") or {}
    return str(ident.get("system", "")), str(ident.get("value", ""))


def _contained(resource: dict[str, Any], reference: Any, path: str, types: tuple[str, ...]) -> list[str]:
    target = str((reference or {}).get("reference", "")) if isinstance(reference, dict) else ""
    contained = {f"#{c.get('id')}": c for c in resource.get("contained", []) if isinstance(c, dict)}
    if not target.startswith("#") or contained.get(target, {}).get("resourceType") not in types:
        return [f"{path}: a contained {' or '.join(types)} (reference #id)"]
    return []


def _references(resource: dict[str, Any], path: str, by_url: dict[str, Any]) -> list[str]:
    """References resolve in the Bundle or to a contained resource; logical ones name an identifier."""
    contained = {f"#{c.get('id')}" for c in resource.get("contained", []) if isinstance(c, dict)}
    found = []
    for where, value in _walk(resource, path):
        if where.endswith(".reference") and isinstance(value, str):
            if value not in contained and value not in by_url:
                found.append(f"{where}: {value!r} resolves neither in the Bundle nor to a contained resource")
    return found


def _internal(value: Any, path: str) -> Iterator[str]:
    for where, item in _walk(value, path):
        if isinstance(item, str) and INTERNAL in item:
            yield where


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    else:
        yield path, value


def _codings(concept: Any) -> set[tuple[str, str]]:
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return {(str(c.get("system")), str(c.get("code"))) for c in codings if isinstance(c, dict)}


def new_uuid(*parts: str) -> str:
    """A UUID that the same parts always give (a re-send names the same SubmissionSet)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def oid_of(uuid_text: str) -> str:
    """The OID of a UUID (ITU-T X.667: 2.25.<the UUID as an integer>), as a urn."""
    return f"urn:oid:2.25.{uuid.UUID(uuid_text).int}"
