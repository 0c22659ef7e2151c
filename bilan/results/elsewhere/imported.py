"""Reports from elsewhere: a DocumentReference carrying a CR-BIO or a BIO-TROD (from the DMP,
another lab, a pharmacy, a practice's software) puts the document's results into the patient's
history (docs/imported.md); a level-1 CR-BIO is kept with its PDF beside it, and gives no result.

Two steps, because the Observations must point at the DocumentReference and only a stored one
has an id: `guard` reads the attached document before anything is written, refuses what cannot
be imported and completes the DocumentReference from the document's header; `on_saved`, in the
same transaction, turns the stored document's results into Observations owned by whoever sent
it. A document is imported once per patient: a second copy is a 409 (If-None-Exist gets the
first one back).
"""

import base64
import binascii
import hashlib
from datetime import datetime
from decimal import Decimal
from math import ceil
from typing import Any

from bilan.auth import access, policy
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import FhirError, Invalid, Issue, TooLarge, conflict
from bilan.fhir.query import parse_search
from bilan.fhir.references import literal
from bilan.fhir.terminology import LOINC, UCUM
from bilan.prescription import ins_identifiers
from bilan.records.pipeline import Denied, Work
from bilan.records.service import Records, new_id
from bilan.results import masking
from bilan.results.desk import interpretation, units
from bilan.results.document import Identifier, fhir_report
from bilan.results.elsewhere.cda_reading import (
    INTERPRETATION_OID,
    MAX_BYTES,
    TROD_CODE,
    Biologist,
    Concept,
    Interval,
    Lab,
    Measure,
    ReadReport,
    ReadResult,
    UnreadableReport,
    Unstructured,
    read_cr_bio,
)
from bilan.storage import search as store_search
from bilan.storage.repository import Repository, Stored, Write

IMPORTED = {"system": "https://bilan.sante.fr/fhir/CodeSystem/result-source", "code": "imported",
            "display": "Importé d'un compte rendu reçu"}
DOCUMENT_MEDIA = ("text/xml", "application/xml", "application/hl7-v3+xml")
FOCUS_CODE = "http://hl7.org/fhir/StructureDefinition/observation-focusCode"
DATA = "DocumentReference.content[0].attachment.data"
ATTACHMENT = "DocumentReference.content[0].attachment"
SUBJECT = "DocumentReference.subject"
STATUSES = {"completed": "final", "aborted": "cancelled", "active": "preliminary",
            "cancelled": "cancelled"}  # CDA statusCode -> Observation.status; else final
DOCUMENT_TYPES = {fhir_report.REPORT_CODE[0]: fhir_report.REPORT_CODE[1],
                  TROD_CODE: "Test rapide d'orientation diagnostique"}
UNCODED_BATTERY = "Batterie d'examens sans code"  # Observation.code is required
MOST_RESULTS = 2000  # results of one report bilan will look up again when it is replaced
_MAX_BASE64 = 4 * ceil(MAX_BYTES / 3)


class ImportedReports:
    def __init__(self, base_url: str):
        self.base_url = base_url

    def attach(self, records: Records) -> None:
        """Guard the DocumentReferences `records` writes and observe what it stores."""
        records.guards.setdefault("DocumentReference", []).append(self.guard)
        records.observers.append(self.on_saved)

    async def guard(self, repo: Repository, caller: Caller | None,
                    resource: dict[str, Any]) -> dict[str, Any]:
        """A records guard: a DocumentReference with a CR-BIO inline is checked and completed
        (and tagged, which is what `on_saved` imports); any other is stored as sent."""
        document = document_of(resource)
        if document is None:
            return _untagged(resource)
        try:
            read = read_cr_bio(document, check=False)
        except UnreadableReport as error:
            raise _unprocessable(f"The attached document cannot be imported: {error.reason}",
                                 DATA) from None
        patient = await _patient(repo, caller, resource)
        if patient is not None:
            _check_identity(read, patient)
        completed = _completed(resource, read, document)
        replaced = await self._imported(repo, read.replaces, completed["subject"]["reference"])
        return _with_replaced(completed, replaced)

    async def on_saved(self, work: Work, stored: list[Stored]) -> None:
        """Import each newly created, tagged DocumentReference (the guard let it through)."""
        for item in stored:
            if (item.resource_type == "DocumentReference" and item.version_id == 1
                    and item.content and _tagged(item.content)):
                await self._import(work, item)

    async def _import(self, work: Work, item: Stored) -> None:
        repo, content = work.repo, item.content
        read = read_cr_bio(document_of(content) or b"", check=False)
        patient = content["subject"]["reference"]
        identifier = document_identifier(read.document_id)
        await repo.lock_many([f"DocumentReference?{_token(identifier)}&patient={patient}"])
        twins = [s for s in await self._imported(repo, read.document_id, patient) if s.id != item.id]
        if twins:
            raise conflict(
                f"This CR-BIO ({identifier['value']}) is already imported for {patient} as "
                f"DocumentReference/{twins[0].id}; send it with If-None-Exist: "
                f"identifier={_token(identifier)}&patient={patient} to get that one back",
                "DocumentReference.masterIdentifier")
        owner = await repo.owner("DocumentReference", item.id)
        document = f"DocumentReference/{item.id}"
        hidden = masking.security_of(content) & {masking.INVISIBLE_PATIENT}
        # Results read from a conformant CR-BIO, kept as the report gives them (a unit that is
        # not UCUM as text): the guards of results arriving from analysers do not apply.
        writes = [Write("Observation", id_, masking.with_labels(obs, hidden, {masking.PATIENT_SPACE}), "POST",
                        labelled=True, guarded=True) for id_, obs in observations(read, patient, document)]
        for target in _replaces(content):
            writes += await self._withdrawn(repo, target, document, owner)
        # The report's results, as the import reads them: the report's owner's.
        await work.write(writes, system=True, owner=owner)

    async def _imported(self, repo: Repository, document_id: Identifier | None,
                        patient: str) -> list[Stored]:
        """The imported DocumentReferences of this document and patient."""
        if document_id is None:
            return []
        query = parse_search("DocumentReference", [
            ("identifier", _token(document_identifier(document_id))), ("patient", patient)],
            default_count=10, max_count=10)
        found = await store_search.search(repo.conn, query, self.base_url)
        return [s for s in found.matches if s.content and _tagged(s.content)]

    async def _withdrawn(self, repo: Repository, target: str, by: str,
                         owner: str | None) -> list[Write]:
        """A replaced import (same owner) is superseded and its results withdrawn: the lab
        replaced the whole document, and a trend must not show both versions."""
        old = await repo.read_reference(target)
        if (old is None or old.deleted or old.resource_type != "DocumentReference"
                or not _tagged(old.content)
                or old.content.get("status") != "current"
                or await repo.owner("DocumentReference", old.id) != owner):
            return []
        writes = [Write("DocumentReference", old.id, {**old.content, "status": "superseded"}, "PUT",
                        old.version_id)]
        query = parse_search("Observation", [("derived-from", target)],
                             default_count=MOST_RESULTS, max_count=MOST_RESULTS)
        for result in (await store_search.search(repo.conn, query, self.base_url)).matches:
            content = result.content
            if content.get("status") == "entered-in-error" or not _tagged(content):
                continue
            note = {"text": f"Retiré : le compte rendu a été remplacé ({by})."}
            writes.append(Write("Observation", result.id, {
                **content, "status": "entered-in-error", "note": [*content.get("note", []), note]},
                "PUT", result.version_id))
        return writes


# The attached document

def document_of(resource: dict[str, Any]) -> bytes | None:
    """The CDA document a DocumentReference carries inline in content[0], None when it carries
    none (a link, another media type). The size is checked before decoding."""
    content = resource.get("content") or [{}]
    attachment = content[0].get("attachment") or {}
    media = str(attachment.get("contentType", "")).split(";")[0].strip().lower()
    data = attachment.get("data")
    if media not in DOCUMENT_MEDIA or not isinstance(data, str):
        return None
    compact = "".join(data.split())
    if len(compact) > _MAX_BASE64:
        raise TooLarge([Issue(
            f"The attached document is about {len(compact) // 4 * 3} bytes, over the {MAX_BYTES} "
            "bytes bilan reads", "too-costly", expression=DATA)])
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _unprocessable("The attachment's data is not base64", DATA) from None


def document_identifier(document_id: Identifier) -> dict[str, str]:
    """A CDA id as a FHIR Identifier (CDA-FHIR mapping: root alone is a URI, root and extension
    a system and a value)."""
    if document_id.extension is None:
        prefix = "urn:oid:" if document_id.root[:1].isdigit() else "urn:uuid:"
        return {"system": "urn:ietf:rfc:3986", "value": prefix + document_id.root.lower()}
    return {"system": f"urn:oid:{document_id.root}", "value": document_id.extension}


def _names(identifier: dict[str, Any], document_id: Identifier) -> bool:
    """Whether a masterIdentifier names this document: as bilan writes it, or as the XDS
    uniqueId (root^extension) that MHD senders copy."""
    if identifier == document_identifier(document_id):
        return True
    xds = document_id.root if document_id.extension is None else \
        f"{document_id.root}^{document_id.extension}"
    return str(identifier.get("value", "")).removeprefix("urn:oid:") == xds


async def _patient(repo: Repository, caller: Caller | None,
                   resource: dict[str, Any]) -> Stored | None:
    """The Patient the report is for, if the caller may see it; None for one created in the
    same transaction (the caller's own, not stored yet)."""
    reference = (resource.get("subject") or {}).get("reference", "")
    key = literal(reference)
    if key is None or key[0] != "Patient":
        raise _unprocessable("An imported report's subject is the Patient it is about "
                             "(Patient/id)", SUBJECT)
    patient = await repo.read_reference(reference)
    if patient is None:
        return None
    if caller is not None and not await repo.can_see("Patient", key[1],
                                                     access.visible(caller, "Patient")):
        raise Denied(caller, "create", policy.forbidden(f"{reference} is not yours to see"),
                     [reference], [reference])
    return patient


def _check_identity(read: ReadReport, patient: Stored) -> None:
    """A document with an INS goes to the Patient with that INS, when the Patient has one."""
    known = {(i.get("system"), i.get("value")) for _, i in ins_identifiers(patient.content)}
    ins = read.patient.ins
    if ins and known and (f"urn:oid:{read.patient.ins_root}", ins) not in known:
        raise _unprocessable(f"The document is about the patient with INS {ins}; "
                             f"Patient/{patient.id} has another INS", SUBJECT, "business-rule")


def _completed(resource: dict[str, Any], read: ReadReport, document: bytes) -> dict[str, Any]:
    """The DocumentReference with what it leaves out taken from the document's header."""
    done = dict(resource)
    canonical = document_identifier(read.document_id)
    master = done.setdefault("masterIdentifier", canonical)
    if not _names(master, read.document_id):
        raise _unprocessable(f"masterIdentifier does not name the attached document, whose id "
                             f"is {canonical['value']}", "DocumentReference.masterIdentifier")
    if master != canonical and canonical not in done.get("identifier", []):
        done["identifier"] = [*done.get("identifier", []), canonical]  # what searches find
    done.setdefault("type", {"coding": [{"system": LOINC, "code": read.code,
                                         "display": DOCUMENT_TYPES[read.code]}]})
    done.setdefault("date", _datetime(read.effective_time))
    if not done.get("author") and read.lab:
        done["author"] = [_lab(read.lab)]
    if not done.get("authenticator") and read.biologist:
        done["authenticator"] = _biologist(read.biologist)
    times = [r.observed_at for r in read.results if r.observed_at]
    context = done.get("context") or {}
    if times and not context.get("period"):
        done["context"] = {**context, "period": {"start": _datetime(min(times)),
                                                 "end": _datetime(max(times))}}
    content = list(done["content"])
    content[0] = {**content[0], "attachment": _attachment(content[0]["attachment"], document,
                                                          read.effective_time)}
    if read.unstructured is not None:
        content = _with_file(content, read.unstructured, read.title)
    done["content"] = content
    meta = done.get("meta") or {}
    if not _tagged(done):
        done["meta"] = {**meta, "tag": [*meta.get("tag", []), IMPORTED]}
    # Part of the patient's history: in their space, unless the sender hid it from them.
    hidden = {c.get("code", "") for label in done.get("securityLabel", []) for c in label.get("coding", [])
              if c.get("code") == masking.INVISIBLE_PATIENT}
    return masking.with_labels(done, hidden, {masking.PATIENT_SPACE})


def _attachment(attachment: dict[str, Any], document: bytes, created: datetime) -> dict[str, Any]:
    digest = base64.b64encode(hashlib.sha1(document).digest()).decode("ascii")
    if attachment.get("size") not in (None, len(document)):
        raise _unprocessable(f"size is {attachment['size']} but the document has {len(document)} "
                             "bytes", f"{ATTACHMENT}.size")
    if attachment.get("hash") not in (None, digest):
        raise _unprocessable("hash is not the SHA-1 of the document", f"{ATTACHMENT}.hash")
    return {**attachment, "size": len(document), "hash": digest,
            "creation": attachment.get("creation") or _datetime(created)}


def _with_file(content: list[dict[str, Any]], file: Unstructured, title: str | None) -> list[dict[str, Any]]:
    """A level-1 document's file (its PDF) as a content of its own, so that wherever the
    document is listed its PDF can be opened; once, however often the sender sends it."""
    data = base64.b64encode(file.data).decode("ascii")
    if any((c.get("attachment") or {}).get("data") == data for c in content[1:]):
        return content
    return [*content, {"attachment": _pruned({"contentType": file.media_type, "data": data,
                                              "size": len(file.data), "title": title})}]


def _with_replaced(resource: dict[str, Any], replaced: list[Stored]) -> dict[str, Any]:
    targets = set(_replaces(resource))
    added = [{"code": "replaces", "target": {"reference": f"DocumentReference/{s.id}"}}
             for s in replaced if f"DocumentReference/{s.id}" not in targets]
    return {**resource, "relatesTo": [*resource.get("relatesTo", []), *added]} if added else resource


def _replaces(resource: dict[str, Any]) -> list[str]:
    return [r["target"]["reference"] for r in resource.get("relatesTo", [])
            if r.get("code") == "replaces" and (r.get("target") or {}).get("reference")]


def _tagged(resource: dict[str, Any]) -> bool:
    return any(t.get("system") == IMPORTED["system"] and t.get("code") == IMPORTED["code"]
               for t in (resource.get("meta") or {}).get("tag", []))


def _untagged(resource: dict[str, Any]) -> dict[str, Any]:
    """Only bilan says a DocumentReference was imported."""
    if not _tagged(resource):
        return resource
    meta = dict(resource["meta"])
    meta["tag"] = [t for t in meta["tag"] if not _tagged({"meta": {"tag": [t]}})]
    return {**resource, "meta": _pruned(meta)}


# The results as Observations

def observations(read: ReadReport, patient: str, document: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, Observation) for every result, in document order; a battery (one organizer of the
    document, coded or not) comes before its results and lists them in hasMember."""
    made: list[tuple[str, dict[str, Any]]] = []
    batteries: dict[int, dict[str, Any]] = {}
    for result in read.results:
        id_ = new_id()
        if result.battery is not None and result.battery_number is not None:
            key = result.battery_number
            if key not in batteries:
                batteries[key] = _common(read, result, patient, document, result.battery)
                batteries[key]["code"] = batteries[key]["code"] or {"text": UNCODED_BATTERY}
                batteries[key]["hasMember"] = []
                made.append((new_id(), batteries[key]))
            batteries[key]["hasMember"].append({"reference": f"Observation/{id_}"})
        made.append((id_, _result(read, result, patient, document)))
    members = {id_: obs for id_, obs in made}
    for battery in batteries.values():
        statuses = {members[m["reference"].split("/")[1]]["status"] for m in battery["hasMember"]}
        battery["status"] = "cancelled" if statuses == {"cancelled"} else "final"
    return [(id_, _pruned(obs)) for id_, obs in made]


def _result(read: ReadReport, result: ReadResult, patient: str, document: str) -> dict[str, Any]:
    code = Concept(result.code, result.system, result.display, result.label)
    obs = _common(read, result, patient, document, code)
    obs["code"] = obs["code"] or {"text": "Résultat sans code ni libellé"}  # code is required
    obs["status"] = STATUSES.get(result.status or "", "final")
    obs.update(_value(result.value))
    if result.value is None and obs["status"] == "cancelled":
        obs["dataAbsentReason"] = {"coding": [{"system": fhir_report.DATA_ABSENT, "code": "not-performed",
                                               "display": "Not Performed"}]}
    if result.interpretation:
        obs["interpretation"] = [_interpretation(result)]
    if result.low is not None or result.high is not None:
        obs["referenceRange"] = [_pruned({
            "low": _quantity(result.low, result.range_unit) if result.low is not None else None,
            "high": _quantity(result.high, result.range_unit) if result.high is not None else None})]
    if result.comment:
        obs["note"] = [{"text": result.comment}]
    return obs


def _common(read: ReadReport, result: ReadResult, patient: str, document: str,
            code: Concept) -> dict[str, Any]:
    """What a result and its battery share: patient, lab, times, source, chapter, isolate."""
    category = [{"coding": [{"system": fhir_report.OBSERVATION_CATEGORY, "code": "laboratory",
                             "display": "Laboratory"}]}]
    if result.chapter:
        category.append({"coding": [{"system": LOINC, "code": result.chapter}]})
    validated = read.biologist.validated_at if read.biologist else None
    return {
        "resourceType": "Observation",
        "meta": {"tag": [IMPORTED]},
        "extension": [{"url": FOCUS_CODE, "valueCodeableConcept": _concept(result.isolate)}]
        if result.isolate else None,
        "status": "final",
        "category": category,
        "code": _concept(code),
        "subject": {"reference": patient},
        "effectiveDateTime": result.observed_on or (_datetime(result.observed_at) if result.observed_at else None),
        "issued": _datetime(validated or read.effective_time),
        "performer": [p for p in (_lab(read.lab), _biologist(read.biologist)) if p] or None,
        "derivedFrom": [{"reference": document}],
    }


def _interpretation(result: ReadResult) -> dict[str, Any]:
    """HL7's interpretation codes by their URI with bilan's labels; another system (a TROD's
    SNOMED CT "hyperglycémie") as the document codes it."""
    coded = result.interpreted
    if coded is None or coded.system in (None, INTERPRETATION_OID):
        return {"coding": [_pruned({"system": interpretation.CODE_SYSTEM_URI, "code": result.interpretation,
                                    "display": interpretation.LABELS.get(result.interpretation or "")})]}
    return _concept(coded) or {}


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, Measure):
        return {"valueQuantity": _quantity(value.value, value.unit)}
    if isinstance(value, Interval):
        return _interval(value)
    if isinstance(value, Concept):
        return {"valueCodeableConcept": _concept(value)}
    if isinstance(value, str):
        return {"valueString": value}
    return {}


def _interval(value: Interval) -> dict[str, Any]:
    """"< 1.0 mg/L" is a Quantity with a comparator; a closed range a Range; else text."""
    low, high = value.low, value.high
    if low is not None and high is not None:
        if value.low_inclusive and value.high_inclusive:
            return {"valueRange": {"low": _quantity(low, value.unit),
                                   "high": _quantity(high, value.unit)}}
        opening, closing = "[" if value.low_inclusive else "]", "]" if value.high_inclusive else "["
        return {"valueString": f"{opening}{low} ; {high}{closing} {value.unit or ''}".strip()}
    if high is not None:
        return {"valueQuantity": _quantity(high, value.unit, "<=" if value.high_inclusive else "<")}
    if low is not None:
        return {"valueQuantity": _quantity(low, value.unit, ">=" if value.low_inclusive else ">")}
    return {}


def _quantity(number: Decimal, unit: str | None, comparator: str | None = None) -> dict[str, Any]:
    """UCUM system and code only for a unit bilan reads as UCUM; else the unit as written."""
    quantity: dict[str, Any] = {"value": number}  # the digits the lab printed: 1.950 stays 1.950
    if comparator:
        quantity["comparator"] = comparator
    if unit:
        quantity["unit"] = unit
        if units.check_unit(unit) is None:
            quantity.update(system=UCUM, code=unit)
    return quantity


def _concept(concept: Concept | None) -> dict[str, Any] | None:
    """A LOINC or SNOMED code by its URI, any other (a lab's local code) by urn:oid:; the
    text the lab printed."""
    if concept is None:
        return None
    coding = [_pruned({"system": _system(concept.system), "code": concept.code,
                       "display": concept.display})] if concept.code else []
    return _pruned({"coding": coding or None, "text": concept.text or concept.display}) or None


def _system(oid: str | None) -> str | None:
    return None if oid is None else fhir_report.SYSTEM_URIS.get(oid, f"urn:oid:{oid}")


def _lab(lab: Lab | None) -> dict[str, Any] | None:
    """The lab by its identifier (FINESS-based) and name: bilan keeps no Organization for it."""
    if lab is None:
        return None
    return _pruned({"type": "Organization", "identifier": _id(lab.id), "display": lab.name})


def _biologist(biologist: Biologist | None) -> dict[str, Any] | None:
    if biologist is None:
        return None
    name = " ".join(n for n in (biologist.given, biologist.family) if n) or None
    return _pruned({"type": "Practitioner", "identifier": _id(biologist.id), "display": name})


def _id(identifier: Identifier | None) -> dict[str, str] | None:
    if identifier is None or identifier.extension is None:
        return None
    return {"system": f"urn:oid:{identifier.root}", "value": identifier.extension}


def _token(identifier: dict[str, str]) -> str:
    return f"{identifier['system']}|{identifier['value']}"




def _datetime(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _pruned(element: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in element.items() if v is not None and v != []}


def _unprocessable(diagnostics: str, expression: str, code: str = "invalid") -> FhirError:
    return Invalid([Issue(diagnostics, code, expression=expression)])
