"""Search parameters as data: each row builds both the index rows and the CapabilityStatement.

A row names the parameter, its FHIR type and the element paths it reads. `extract` turns a
resource into index rows at write time, so searches never scan JSON.
"""

from dataclasses import dataclass
from typing import Any, Iterator, Literal

from bilan.fhir.dates import date_range
from bilan.fhir.text import normalise

ParamType = Literal["token", "string", "date", "reference", "uri"]

R4_DEFINITIONS = "http://hl7.org/fhir/SearchParameter/"
OWN_DEFINITIONS = "https://bilan.sante.fr/fhir/SearchParameter/"
# R4 defines some parameters once for many types: (its SearchParameter id, code) -> bilan's
# types among its bases. Any other parameter R4 defines is "<Type>-<code>".
R4_SHARED: dict[tuple[str, str], tuple[str, ...]] = {
    ("Resource-id", "_id"): ("*",),
    ("Resource-lastUpdated", "_lastUpdated"): ("*",),
    ("Resource-security", "_security"): ("*",),
    ("Resource-tag", "_tag"): ("*",),
    ("individual-family", "family"): ("Patient", "Practitioner"),
    ("individual-given", "given"): ("Patient", "Practitioner"),
    ("individual-birthdate", "birthdate"): ("Patient",),
    ("individual-gender", "gender"): ("Patient", "Practitioner"),
    ("clinical-identifier", "identifier"): ("ServiceRequest", "Observation", "DiagnosticReport",
                                            "DocumentReference", "List", "Encounter"),
    ("clinical-patient", "patient"): ("ServiceRequest", "Observation", "Condition", "DiagnosticReport",
                                      "DocumentReference", "List", "Encounter"),
    ("clinical-code", "code"): ("ServiceRequest", "Observation", "Condition", "DiagnosticReport", "List"),
    ("clinical-date", "date"): ("Observation", "DiagnosticReport", "Encounter"),
    ("clinical-type", "type"): ("DocumentReference", "Encounter"),
    ("clinical-encounter", "encounter"): ("ServiceRequest", "Observation", "DiagnosticReport"),
    ("conformance-url", "url"): ("SearchParameter",),
}


@dataclass(frozen=True)
class SearchParam:
    resource: str
    name: str
    type: ParamType
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()
    documentation: str = ""
    own: bool = False  # bilan's own parameter: R4 defines none with this code for this type

    @property
    def definition(self) -> str:
        """The canonical URL of the SearchParameter that defines this one."""
        if self.own:
            return f"{OWN_DEFINITIONS}{self.resource}-{self.name}"
        for (r4_id, code), types in R4_SHARED.items():
            if code == self.name and (self.resource in types or types == ("*",)):
                return R4_DEFINITIONS + r4_id
        return f"{R4_DEFINITIONS}{self.resource}-{self.name.lstrip('_')}"


MAX_INDEXED = 256  # longest value kept in a search row; longer ones are cut, not refused


@dataclass(frozen=True)
class IndexRow:
    """One searchable value. Tokens: system|value; strings: normalised value and the exact one;
    references: system = target type, value = target id; dates: [start, end)."""

    name: str
    system: str | None = None
    value: str | None = None
    exact: str | None = None
    start: Any = None
    end: Any = None


def _p(resource: str, name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] = (),
       doc: str = "", own: bool = False) -> SearchParam:
    return SearchParam(resource, name, type_, paths, targets, doc, own)


_SUBJECT_PATIENT = ("Patient",)

PARAMS: tuple[SearchParam, ...] = (
    _p("Patient", "identifier", "token", "identifier", doc="INS (system|value) or another identifier"),
    _p("Patient", "family", "string", "name.family", doc="Family name (birth or used), prefix, accent-insensitive"),
    _p("Patient", "given", "string", "name.given", doc="Given name, prefix, accent-insensitive"),
    _p("Patient", "name", "string", "name.family", "name.given", "name.text", doc="Any part of a name"),
    _p("Patient", "birthdate", "date", "birthDate"),
    _p("Patient", "gender", "token", "gender"),
    _p("Patient", "link", "reference", "link.other", targets=("Patient", "RelatedPerson"),
       doc="The patient records this one says are the same person"),
    _p("Practitioner", "identifier", "token", "identifier", doc="RPPS or national id"),
    _p("Practitioner", "family", "string", "name.family"),
    _p("Practitioner", "name", "string", "name.family", "name.given", "name.text"),
    _p("PractitionerRole", "identifier", "token", "identifier"),
    _p("PractitionerRole", "practitioner", "reference", "practitioner", targets=("Practitioner",)),
    _p("PractitionerRole", "organization", "reference", "organization", targets=("Organization",)),
    _p("Organization", "identifier", "token", "identifier", doc="FINESS, SIRET..."),
    _p("Organization", "name", "string", "name", "alias"),
    _p("ServiceRequest", "requisition", "token", "requisition", doc="Prescription number"),
    _p("ServiceRequest", "identifier", "token", "identifier"),
    _p("ServiceRequest", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("ServiceRequest", "subject", "reference", "subject", targets=("Patient", "Group", "Location", "Device")),
    _p("ServiceRequest", "status", "token", "status"),
    _p("ServiceRequest", "intent", "token", "intent"),
    _p("ServiceRequest", "priority", "token", "priority"),
    _p("ServiceRequest", "authored", "date", "authoredOn"),
    _p("ServiceRequest", "requester", "reference", "requester",
       targets=("Practitioner", "PractitionerRole", "Organization", "Patient", "Device")),
    _p("ServiceRequest", "performer", "reference", "performer",
       targets=("Organization", "Practitioner", "PractitionerRole")),
    _p("ServiceRequest", "code", "token", "code"),
    _p("ServiceRequest", "category", "token", "category"),
    _p("ServiceRequest", "based-on", "reference", "basedOn", targets=("ServiceRequest", "CarePlan")),
    _p("ServiceRequest", "replaces", "reference", "replaces", targets=("ServiceRequest",)),
    _p("ServiceRequest", "specimen", "reference", "specimen", targets=("Specimen",)),
    _p("ServiceRequest", "supporting-info", "reference", "supportingInfo",
       targets=("Observation", "Condition", "MedicationStatement", "DocumentReference"), own=True,
       doc="The clinical context of the exam (bilan's parameter: R4 has none)"),
    _p("ServiceRequest", "encounter", "reference", "encounter", targets=("Encounter",),
       doc="The hospital stay or visit the order was made in"),
    _p("Observation", "identifier", "token", "identifier"),
    _p("Observation", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("Observation", "subject", "reference", "subject", targets=("Patient", "Group", "Device", "Location")),
    _p("Observation", "code", "token", "code"),
    _p("Observation", "category", "token", "category"),
    _p("Observation", "status", "token", "status"),
    _p("Observation", "date", "date", "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    _p("Observation", "based-on", "reference", "basedOn", targets=("ServiceRequest", "CarePlan")),
    _p("Observation", "specimen", "reference", "specimen", targets=("Specimen",)),
    _p("Observation", "performer", "reference", "performer",
       targets=("Practitioner", "PractitionerRole", "Organization")),
    _p("Observation", "derived-from", "reference", "derivedFrom",
       targets=("DocumentReference", "Observation"), doc="The document a result was read from"),
    _p("Condition", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("Condition", "subject", "reference", "subject", targets=("Patient", "Group")),
    _p("Condition", "code", "token", "code"),
    _p("Condition", "clinical-status", "token", "clinicalStatus"),
    _p("Specimen", "identifier", "token", "identifier", "accessionIdentifier"),
    _p("Specimen", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("Specimen", "subject", "reference", "subject", targets=("Patient", "Group", "Device", "Location")),
    _p("Specimen", "type", "token", "type"),
    _p("Specimen", "status", "token", "status"),
    _p("Specimen", "request", "reference", "request", targets=("ServiceRequest",), own=True,
       doc="The exam the sample was taken for (bilan's parameter: R4 has none)"),
    _p("Task", "identifier", "token", "identifier"),
    _p("Task", "requisition", "token", "groupIdentifier", own=True,
       doc="The prescription number (bilan's parameter; R4's group-identifier reads the same element)"),
    _p("Task", "based-on", "reference", "basedOn", targets=("ServiceRequest",)),
    _p("Task", "focus", "reference", "focus", targets=("ServiceRequest",)),
    _p("Task", "patient", "reference", "for", targets=_SUBJECT_PATIENT),
    _p("Task", "status", "token", "status"),
    _p("Task", "owner", "reference", "owner", targets=("Organization", "Practitioner", "PractitionerRole")),
    _p("Task", "requester", "reference", "requester",
       targets=("Practitioner", "PractitionerRole", "Organization")),
    _p("Task", "modified", "date", "lastModified"),
    _p("DiagnosticReport", "identifier", "token", "identifier"),
    _p("DiagnosticReport", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("DiagnosticReport", "subject", "reference", "subject", targets=("Patient", "Group", "Device", "Location")),
    _p("DiagnosticReport", "based-on", "reference", "basedOn", targets=("ServiceRequest",)),
    _p("DiagnosticReport", "code", "token", "code"),
    _p("DiagnosticReport", "category", "token", "category"),
    _p("DiagnosticReport", "status", "token", "status"),
    _p("DiagnosticReport", "date", "date", "effectiveDateTime", "effectivePeriod"),
    _p("DiagnosticReport", "result", "reference", "result", targets=("Observation",)),
    _p("DiagnosticReport", "performer", "reference", "performer",
       targets=("Practitioner", "PractitionerRole", "Organization")),
    _p("DocumentReference", "identifier", "token", "masterIdentifier", "identifier"),
    _p("DocumentReference", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("DocumentReference", "subject", "reference", "subject", targets=("Patient", "Group", "Device", "Practitioner")),
    _p("DocumentReference", "type", "token", "type"),
    _p("DocumentReference", "category", "token", "category"),
    _p("DocumentReference", "status", "token", "status"),
    _p("DocumentReference", "date", "date", "date"),
    _p("DocumentReference", "relatesto", "reference", "relatesTo.target", targets=("DocumentReference",)),
    _p("DocumentReference", "related", "reference", "context.related", targets=("ServiceRequest", "Task")),
    _p("DocumentReference", "security-label", "token", "securityLabel"),
    _p("Binary", "security-context", "reference", "securityContext", targets=("DocumentReference",),
       doc="The document this content belongs to (bilan's parameter: R4 has none)", own=True),
    _p("List", "identifier", "token", "identifier", doc="MHD SubmissionSet uniqueId, entryUUID"),
    _p("List", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("List", "subject", "reference", "subject", targets=("Patient", "Group", "Device", "Location")),
    _p("List", "code", "token", "code"),
    _p("List", "status", "token", "status"),
    _p("Communication", "identifier", "token", "identifier"),
    _p("Communication", "status", "token", "status"),
    _p("Communication", "category", "token", "category"),
    _p("Communication", "part-of", "reference", "partOf", targets=("Task", "Communication"),
       doc="The thread: the Task of the prescription"),
    _p("Communication", "about", "reference", "about", targets=("Task", "ServiceRequest", "DiagnosticReport"),
       doc="What the message is about (bilan's parameter: R4 has none for Communication.about)", own=True),
    _p("Communication", "in-response-to", "reference", "inResponseTo", targets=("Communication",),
       doc="The message answered (bilan's parameter)", own=True),
    _p("Communication", "based-on", "reference", "basedOn", targets=("ServiceRequest", "Task")),
    _p("Communication", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("Communication", "subject", "reference", "subject", targets=("Patient", "Group")),
    _p("Communication", "recipient", "reference", "recipient",
       targets=("Practitioner", "PractitionerRole", "Organization", "Patient")),
    _p("Communication", "sender", "reference", "sender",
       targets=("Practitioner", "PractitionerRole", "Organization", "Patient")),
    _p("Communication", "sent", "date", "sent"),
    _p("Communication", "received", "date", "received"),
    _p("Subscription", "status", "token", "status"),
    _p("Subscription", "type", "token", "channel.type"),
    _p("Subscription", "url", "uri", "channel.endpoint"),
    _p("Subscription", "criteria", "string", "criteria"),
    _p("AuditEvent", "patient", "reference", "entity.what", targets=("Patient",),
       doc="The patient whose data was accessed"),
    _p("AuditEvent", "date", "date", "recorded"),
    _p("AuditEvent", "subtype", "token", "subtype"),
    _p("AuditEvent", "action", "token", "action"),
    _p("AuditEvent", "outcome", "token", "outcome"),
    _p("AuditEvent", "altid", "token", "agent.altId"),
    _p("Encounter", "identifier", "token", "identifier", doc="The stay or visit number of the hospital"),
    _p("Encounter", "patient", "reference", "subject", targets=_SUBJECT_PATIENT),
    _p("Encounter", "subject", "reference", "subject", targets=("Patient", "Group")),
    _p("Encounter", "status", "token", "status"),
    _p("Encounter", "class", "token", "class", doc="Inpatient, outpatient, emergency... (v3 ActCode)"),
    _p("Encounter", "type", "token", "type"),
    _p("Encounter", "date", "date", "period"),
    _p("Encounter", "location", "reference", "location.location", targets=("Location",)),
    _p("Encounter", "service-provider", "reference", "serviceProvider", targets=("Organization",)),
    _p("Encounter", "part-of", "reference", "partOf", targets=("Encounter",)),
    _p("Location", "identifier", "token", "identifier"),
    _p("Location", "name", "string", "name", "alias"),
    _p("Location", "type", "token", "type"),
    _p("Location", "status", "token", "status"),
    _p("Location", "organization", "reference", "managingOrganization", targets=("Organization",)),
    _p("Location", "partof", "reference", "partOf", targets=("Location",)),
    _p("Location", "address-city", "string", "address.city"),
    _p("Location", "address-postalcode", "string", "address.postalCode"),
)

RESOURCE_TYPES: tuple[str, ...] = (
    "Patient", "Practitioner", "PractitionerRole", "Organization", "ServiceRequest",
    "Observation", "Condition", "Specimen", "Task", "DiagnosticReport", "DocumentReference",
    "Binary", "List", "Communication", "Subscription", "AuditEvent", "Encounter", "Location",
)
# Labels on the results and reports that decide what a patient sees (bilan/results/masking.py).
for _type in ("Observation", "DiagnosticReport", "DocumentReference"):
    PARAMS += (_p(_type, "_security", "token", "meta.security"), _p(_type, "_tag", "token", "meta.tag"))

# Parameters every resource type has, served from the resource table itself.
COMMON_PARAMS = (
    SearchParam("Resource", "_id", "token", ("id",), documentation="Logical id"),
    SearchParam("Resource", "_lastUpdated", "date", ("meta.lastUpdated",),
                documentation="When the resource last changed"),
)

_BY_TYPE: dict[str, dict[str, SearchParam]] = {}
for _param in PARAMS:
    _BY_TYPE.setdefault(_param.resource, {})[_param.name] = _param


def params_for(resource_type: str) -> dict[str, SearchParam]:
    return _BY_TYPE.get(resource_type, {})


def extract(resource: dict[str, Any]) -> list[IndexRow]:
    """The index rows of a resource, one per searchable value."""
    rows: list[IndexRow] = []
    for param in _BY_TYPE.get(resource["resourceType"], {}).values():
        for path in param.paths:
            for value in _walk(resource, path.split(".")):
                rows.extend(_rows(param, value))
    return rows


def _walk(node: Any, parts: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, parts)
        return
    if not parts:
        if node is not None:
            yield node
        return
    if isinstance(node, dict) and parts[0] in node:
        yield from _walk(node[parts[0]], parts[1:])


def _rows(param: SearchParam, value: Any) -> Iterator[IndexRow]:
    if param.type in ("token", "uri"):
        for row in _token_rows(param.name, value):
            yield IndexRow(row.name, _cut(row.system), _cut(row.value))
    elif param.type == "string":
        if isinstance(value, str) and value.strip():
            yield IndexRow(param.name, value=_cut(normalise(value)), exact=_cut(value))
    elif param.type == "date":
        bounds = _date_bounds(value)
        if bounds:
            yield IndexRow(param.name, start=bounds[0], end=bounds[1])
    elif param.type == "reference":
        target = reference_target(value)
        if target and (not param.targets or target[0] in param.targets):
            yield IndexRow(param.name, system=target[0], value=target[1])


def _cut(text: str | None) -> str | None:
    return text[:MAX_INDEXED] if text is not None else None


def _token_rows(name: str, value: Any) -> Iterator[IndexRow]:
    if isinstance(value, bool):
        yield IndexRow(name, value="true" if value else "false")
    elif isinstance(value, str):
        yield IndexRow(name, value=value)
    elif isinstance(value, dict):
        if "coding" in value:  # CodeableConcept
            for coding in value["coding"]:
                if coding.get("code"):
                    yield IndexRow(name, system=coding.get("system"), value=coding["code"])
        elif "code" in value:  # Coding
            yield IndexRow(name, system=value.get("system"), value=value["code"])
        elif "value" in value:  # Identifier
            yield IndexRow(name, system=value.get("system"), value=value["value"])


def _date_bounds(value: Any) -> tuple[Any, Any] | None:
    if isinstance(value, str):
        return date_range(value)
    if isinstance(value, dict) and ("start" in value or "end" in value):  # Period
        start = date_range(value["start"])[0] if "start" in value else None
        end = date_range(value["end"])[1] if "end" in value else None
        return start, end
    return None


def reference_target(reference: Any) -> tuple[str, str] | None:
    """(type, id) of a literal relative reference such as {"reference": "Patient/12"}."""
    if isinstance(reference, dict):
        reference = reference.get("reference")
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if len(parts) >= 2 and "?" not in reference and not reference.startswith("urn:"):
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        return parts[-2], parts[-1]
    return None
