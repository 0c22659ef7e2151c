"""The lab's reports to the shared record (DMP), through the outbox: each issued version when
the patient may have it (ITI-65), the history a patient could not have before (their INS
became qualified, their opposition was withdrawn, or `bilan dmp-history`), and the DMP copy's
visibility once a mask is released or the patient opposes later (a metadata update).

Each report is queued at most once (an outbox row of the DMP channel names it); each send is
idempotent: the DMP copy carries bilan's id as its MHD entryUUID and is created only if that
entryUUID is not there yet, so a send repeated after a lost answer writes nothing new. Every
write is checked against the MHD Comprehensive rules before it leaves (notifications/mhd_rules.py).
An update (a conditional update by entryUUID) waits until the document itself was delivered
(else it would reach the DMP before the document)."""

import base64
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from bilan.fhir import fr_core
from bilan.fhir.query import parse_search
from bilan.fhir.terminology import CONFIDENTIALITY, HIDDEN_FROM_PROFESSIONALS, INVISIBLE_PATIENT, NATIONAL_ID, RPPS
from bilan.french import PARIS
from bilan.notifications import mhd_rules, outbox
from bilan.notifications.mhd import DmpError, DmpRefused, DmpUnavailable, MhdClient
from bilan.prescription import LAB_PATIENT, display_name, identity, ins_identifiers, tracking
from bilan.results import masking
from bilan.storage import search as store_search
from bilan.storage.repository import Repository, Stored

if TYPE_CHECKING:
    from bilan.records.pipeline import Work
    from bilan.records.service import Records

DMP = "dmp"  # outbox channel: a write to the shared record (target: its MHD base URL)
PROVIDE, UPDATE = "provide", "update"
IMPORTED_TAG = ("https://bilan.sante.fr/fhir/CodeSystem/result-source", "imported")
MOST_REPORTS = 5000  # reports looked at by one history run
LAB, BIOLOGIST, PATIENT = "lab", "biologist", "patient"  # the contained resources' ids
CONFIDENTIALITY_N = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N",
                     "display": "Normal"}


@dataclass(frozen=True)
class Shared:
    """What the DMP copy of a report needs besides bilan's DocumentReference."""
    ins: dict[str, str]
    lab: dict[str, Any]  # the Organization (custodian)
    biologist: dict[str, Any]  # the Practitioner (author, authenticator)
    patient: dict[str, Any]  # the lab's patient file (source patient info)


def dmp_copy(document: dict[str, Any], document_id: str, shared: Shared, *, hidden_from_all: bool = False) -> dict[str, Any]:
    """The DMP's copy of an issued DocumentReference, an MHD Comprehensive one: the patient by
    INS, the lab, the biologist and the patient's traits as contained resources (bilan's own
    references mean nothing there), the CDA alone, its confidentiality from bilan's labels
    (`hidden_from_all`: the patient opposed after it was sent), nothing of bilan's own (tags,
    extensions, links to its orders)."""
    security = masking.security_of(document)
    if hidden_from_all:
        security |= {INVISIBLE_PATIENT, HIDDEN_FROM_PROFESSIONALS}
    cda = next((c for c in document.get("content", []) if "xml" in (c.get("attachment") or {}).get("contentType", "")),
               (document.get("content") or [{}])[0])
    lab_name, biologist_name = str(shared.lab.get("name", "")), display_name(shared.biologist)
    context = document.get("context") or {}
    copy: dict[str, Any] = {
        "resourceType": "DocumentReference", "meta": {"profile": [mhd_rules.DOCUMENT_PROFILE]},
        "contained": [_organization(shared.lab), _practitioner(shared.biologist), _patient(shared.patient)],
        "masterIdentifier": mhd_rules.mhd_identifier("uniqueId", str((document.get("masterIdentifier") or {})
                                                                       .get("value", ""))),
        "identifier": [entry_uuid(document_id),
                       *(i for i in document.get("identifier", []) if i.get("system") == mhd_rules.URI
                         and (i.get("type") or {}).get("text") == "setId")],
        "status": document.get("status", "current"),
        "type": document.get("type"), "category": document.get("category"),
        "subject": {"type": "Patient", "identifier": shared.ins},
        "date": document.get("date"),
        "author": [{"reference": f"#{LAB}", "display": lab_name}, {"reference": f"#{BIOLOGIST}", "display": biologist_name}],
        "authenticator": {"reference": f"#{BIOLOGIST}", "display": biologist_name},
        "custodian": {"reference": f"#{LAB}", "display": lab_name},
        "description": document.get("description"),
        "securityLabel": [{"coding": [CONFIDENTIALITY_N]}]
        + [{"coding": [masking.coding(CONFIDENTIALITY, c)]} for c in sorted(security)],
        "content": [{**cda, "attachment": {k: v for k, v in (cda.get("attachment") or {}).items() if k != "data"}}],
        "context": {**{k: v for k, v in context.items() if k in ("period", "facilityType", "practiceSetting")},
                    "sourcePatientInfo": {"reference": f"#{PATIENT}"}},
    }
    replaced = [r for r in document.get("relatesTo", []) if r.get("code") == "replaces"]
    if replaced:  # the earlier copy, by its entryUUID: the DMP gave it an id of its own
        target = str((replaced[0].get("target") or {}).get("reference", "")).removeprefix("DocumentReference/")
        copy["relatesTo"] = [{"code": "replaces", "target": {"type": "DocumentReference",
                                                             "identifier": entry_uuid(target)}}]
    return {k: v for k, v in copy.items() if v is not None}


def entry_uuid(document_id: str) -> dict[str, Any]:
    """The MHD entryUUID of the DMP copy of a bilan DocumentReference: its id as a urn."""
    return mhd_rules.mhd_identifier("entryUUID", f"urn:uuid:{document_id}")


def provide_bundle(copy: dict[str, Any], document_id: str, cda_id: str, cda: bytes, submitted: datetime) -> dict[str, Any]:
    """The MHD Provide Document Bundle (ITI-65), Comprehensive: a SubmissionSet List, the
    DocumentReference and the CDA as a Binary, each at a `urn:uuid:` fullUrl. A repeated send
    writes no second document: the DocumentReference is created only if its entryUUID is not
    there yet (`ifNoneExist`), and the Binary is written at bilan's id, which the attachment url
    names (`Binary/<id>`: a recipient resolves it without rewriting it). The SubmissionSet's
    uniqueId is the same at every send, for a registry to recognise it."""
    submission_id = mhd_rules.new_uuid(f"urn:uuid:{document_id}", "submissionset")
    lab = next(c for c in copy["contained"] if c.get("id") == LAB)
    finess = next((f for f in map(fr_core.finess_of, lab.get("identifier", [])) if f), "")
    document = {**copy, "content": [{**copy["content"][0], "attachment": {
        **copy["content"][0]["attachment"], "url": f"Binary/{cda_id}"}}]}
    submission = {
        "resourceType": "List", "meta": {"profile": [mhd_rules.SUBMISSION_SET_PROFILE]}, "contained": [lab],
        "extension": [{"url": mhd_rules.SOURCE_ID, "valueIdentifier": {"system": mhd_rules.URI, "value": source_id(finess)}},
                      {"url": mhd_rules.DESIGNATION_TYPE, "valueCodeableConcept": copy["type"]}],
        "identifier": [mhd_rules.mhd_identifier("uniqueId", mhd_rules.oid_of(submission_id)),
                       mhd_rules.mhd_identifier("entryUUID", f"urn:uuid:{submission_id}")],
        "status": "current", "mode": "working",
        "code": {"coding": [{"system": mhd_rules.LIST_TYPES, "code": "submissionset"}]},
        "subject": copy["subject"], "date": submitted.isoformat(timespec="seconds"),
        "source": {"reference": f"#{LAB}", "display": lab.get("name", "")},
        "entry": [{"item": {"reference": f"urn:uuid:{document_id}"}}],
    }
    binary = {"resourceType": "Binary", "contentType": copy["content"][0]["attachment"].get("contentType", "application/xml"),
              "data": base64.b64encode(cda).decode("ascii")}
    return {"resourceType": "Bundle", "type": "transaction", "meta": {"profile": [mhd_rules.PROVIDE_PROFILE]},
            "entry": [{"fullUrl": f"urn:uuid:{submission_id}", "resource": submission,
                       "request": {"method": "POST", "url": "List"}},
                      {"fullUrl": f"urn:uuid:{document_id}", "resource": document,
                       "request": {"method": "POST", "url": "DocumentReference",
                                   "ifNoneExist": f"identifier={mhd_rules.URI}|urn:uuid:{document_id}"}},
                      {"fullUrl": f"urn:uuid:{cda_id}", "resource": binary,
                       "request": {"method": "PUT", "url": f"Binary/{cda_id}"}}]}


def source_id(finess: str) -> str:
    """The SubmissionSet's sourceId: an OID for the lab's bilan, the same at every send (an OID
    derived from a UUID, ITU-T X.667, where a deployment has no OID of its own registered)."""
    return mhd_rules.oid_of(mhd_rules.new_uuid("https://bilan.sante.fr/dmp-source", finess))


def update_path(document_id: str) -> str:
    """The DMP copy of a document, by its entryUUID (the DMP gave it its own id)."""
    return f"DocumentReference?identifier={mhd_rules.URI}|urn:uuid:{document_id}"


class DmpFeed:
    """Queues the lab's writes to the DMP and sends them (an outbox job)."""

    def __init__(self, records: "Records", client: MhdClient, history_months: int = 12):
        self.records = records
        self.base_url = records.base_url
        self.client = client
        self.history_months = history_months

    @property
    def dmp_url(self) -> str:
        return self.client.base_url

    async def queue_provide(self, repo: Repository, document: Stored, now: datetime) -> bool:
        """Queue an issued version for the DMP, once; whether it was queued."""
        if not self.dmp_url or await self._queued(repo, document, PROVIDE):
            return False
        task = await _task_of(repo, document.content)
        lab_file = await repo.read_reference(tracking.lab_file_of(task.content)) if task else None
        shared = await self._shared(repo, document.content, lab_file)
        cda = await _cda(repo, document.content)
        if task is None or shared is None or cda is None or _refusal(lab_file, task) is not None:
            return False
        cda_id, data = cda
        copy = dmp_copy(document.content, document.id, shared)
        await outbox.enqueue(repo.conn, DMP, self.dmp_url,
                             {"kind": PROVIDE, "method": "POST", "path": "",
                              "body": provide_bundle(copy, document.id, cda_id, data, now)},
                             resource=f"DocumentReference/{document.id}", about=f"Task/{task.id}", now=now)
        return True

    async def queue_update(self, repo: Repository, document: Stored, now: datetime, *,
                           hidden_from_all: bool = False) -> bool:
        """Queue the DMP copy's new metadata (visibility), when the document was sent there."""
        if not self.dmp_url or not await self._queued(repo, document, PROVIDE):
            return False
        task = await _task_of(repo, document.content)
        lab_file = await repo.read_reference(tracking.lab_file_of(task.content)) if task else None
        shared = await self._shared(repo, document.content, lab_file)
        if task is None or shared is None:
            return False
        copy = dmp_copy(document.content, document.id, shared, hidden_from_all=hidden_from_all)
        cda = await _cda(repo, document.content)
        if cda:
            copy["content"][0]["attachment"]["url"] = f"Binary/{cda[0]}"
        await outbox.enqueue(repo.conn, DMP, self.dmp_url,
                             {"kind": UPDATE, "method": "PUT", "path": update_path(document.id), "body": copy},
                             resource=f"DocumentReference/{document.id}", about=f"Task/{task.id}", now=now)
        return True

    async def queue_history(self, repo: Repository, now: datetime, *, since: date | None = None,
                            patients: tuple[str, ...] = (), task: str | None = None) -> int:
        """Queue the lab's current reports since `since` (default: the lab's period) that the
        DMP does not have yet, of these Patients or this order (none: the whole lab); how many."""
        since = since or (now.astimezone(PARIS) - timedelta(days=round(30.44 * self.history_months))).date()
        params = [("type", "http://loinc.org|11502-2"), ("status", "current"),
                  ("date", f"ge{datetime.combine(since, time(0), PARIS).isoformat()}")]
        if patients:
            params.append(("patient", ",".join(patients)))
        if task:
            params.append(("related", task))
        query = parse_search("DocumentReference", params, default_count=MOST_REPORTS, max_count=MOST_REPORTS)
        found = (await store_search.search(repo.conn, query, self.base_url)).matches
        queued = 0
        for document in found:
            if document.content and not _imported(document.content):
                queued += await self.queue_provide(repo, document, now)
        return queued

    async def on_saved(self, work: "Work", saved: list[Stored]) -> None:
        """An observer of every write: a lab file whose identity became qualified, or an order
        whose patient withdrew (or made) their opposition, changes what the DMP may have."""
        if not self.dmp_url:
            return
        for stored in saved:
            if stored.version_id < 2 or not stored.content or stored.resource_type not in ("Patient", "Task"):
                continue
            before = await work.repo.read_version(stored.resource_type, stored.id, stored.version_id - 1)
            if before is None or not before.content:
                continue
            if stored.resource_type == "Patient" and _lab_file(stored.content) and (
                    _qualified(stored.content) and not _qualified(before.content)):
                await self.queue_history(work.repo, work.now, patients=_person(stored))
            elif stored.resource_type == "Task":
                was, now_opposed = tracking.opposed(before.content), tracking.opposed(stored.content)
                if was and not now_opposed:
                    await self.queue_history(work.repo, work.now, task=f"Task/{stored.id}")
                elif now_opposed and not was:
                    for document in await _documents_of(work.repo, self.base_url, stored.id):
                        await self.queue_update(work.repo, document, work.now, hidden_from_all=True)

    async def send(self, item: outbox.OutboxItem) -> None:
        """The outbox job: the write to the DMP, with the DMP's credentials (only to the DMP
        configured now: a row queued for another address is not sent with them)."""
        if item.target.rstrip("/") != self.dmp_url:
            raise DmpUnavailable("Ce document était destiné à une autre adresse du DMP que celle configurée.")
        payload = item.payload
        refused = _nonconformity(payload)
        if refused:
            raise DmpRefused("Non envoyé au DMP : le lot MHD n'est pas conforme (" + "; ".join(refused[:3]) + ").")
        if payload.get("kind") == UPDATE and item.resource:
            sent = [i for i in await self._rows(item) if i.payload.get("kind") == PROVIDE]
            if not any(i.status == outbox.DELIVERED for i in sent):
                raise DmpUnavailable("Mise à jour en attente : le document n'est pas encore arrivé au DMP.")
        try:
            await self.client.send(payload["method"], payload.get("path", ""), payload["body"])
        except DmpError:
            raise
        except Exception as error:  # a bug: said as such, the row is retried then failed
            raise DmpUnavailable(f"Envoi au DMP impossible ({type(error).__name__}).") from None

    async def _rows(self, item: outbox.OutboxItem) -> list[outbox.OutboxItem]:
        """The DMP rows of the same document (read in a short unit of its own)."""
        async with self.records.unit() as repo:
            rows = await outbox.for_about(repo.conn, [item.about or ""])
        return [r for r in rows if r.channel == DMP and r.resource == item.resource]

    async def _queued(self, repo: Repository, document: Stored, kind: str) -> bool:
        task = await _task_of(repo, document.content)
        if task is None:
            return False
        rows = await outbox.for_about(repo.conn, [f"Task/{task.id}"])
        return any(r.channel == DMP and r.resource == f"DocumentReference/{document.id}"
                   and r.payload.get("kind") == kind and r.status != outbox.FAILED for r in rows)

    async def _shared(self, repo: Repository, document: dict[str, Any], lab_file: Stored | None) -> Shared | None:
        ins = ins_identifiers(lab_file.content) if lab_file and lab_file.content else []
        custodian = await repo.read_reference((document.get("custodian") or {}).get("reference", ""))
        biologist = await repo.read_reference((document.get("authenticator") or {}).get("reference", ""))
        if not ins or custodian is None or biologist is None or lab_file is None:
            return None
        return Shared({"system": ins[0][1]["system"], "value": ins[0][1]["value"]}, custodian.content,
                      biologist.content, lab_file.content)


def sharing_refusal(lab_file: dict[str, Any], task: dict[str, Any]) -> str | None:
    """Why the patient's space and the DMP may not get this order's reports; None when they may."""
    if tracking.opposed(task):
        return "Le patient s'est opposé au partage de ses résultats (recueilli à l'accueil)."
    found = identity.traits(lab_file)
    if found.status != "QUAL" or not found.ins:
        return (f"Identité non qualifiée ({found.status_label.lower()}) : ni l'espace du patient "
                "ni le DMP ne reçoivent un document sans INS qualifié.")
    return None


def _refusal(lab_file: Stored | None, task: Stored) -> str | None:
    if lab_file is None or not lab_file.content:
        return "Le dossier patient du laboratoire est introuvable."
    return sharing_refusal(lab_file.content, task.content)


async def _task_of(repo: Repository, document: dict[str, Any]) -> Stored | None:
    refs = [r.get("reference", "") for r in (document.get("context") or {}).get("related", [])]
    task = next((r for r in refs if r.startswith("Task/")), None)
    found = await repo.read_reference(task) if task else None
    return found if found is not None and found.content else None


async def _cda(repo: Repository, document: dict[str, Any]) -> tuple[str, bytes] | None:
    for content in document.get("content", []):
        attachment = content.get("attachment") or {}
        if "xml" in attachment.get("contentType", "") and str(attachment.get("url", "")).startswith("Binary/"):
            binary = await repo.read_reference(attachment["url"])
            if binary is not None and binary.content and binary.content.get("data"):
                return binary.id, base64.b64decode(binary.content["data"])
    return None


async def _documents_of(repo: Repository, base_url: str, task_id: str) -> list[Stored]:
    query = parse_search("DocumentReference", [("related", f"Task/{task_id}"), ("status", "current")],
                         default_count=100, max_count=100)
    return [s for s in (await store_search.search(repo.conn, query, base_url)).matches if s.content]


def _imported(document: dict[str, Any]) -> bool:
    return any((t.get("system"), t.get("code")) == IMPORTED_TAG for t in (document.get("meta") or {}).get("tag", []))


def _lab_file(patient: dict[str, Any]) -> bool:
    return any(str(i.get("system", "")).startswith(LAB_PATIENT) for i in patient.get("identifier", []))


def _qualified(patient: dict[str, Any]) -> bool:
    found = identity.traits(patient)
    return found.status == "QUAL" and bool(found.ins)


def _person(lab_file: Stored) -> tuple[str, ...]:
    """The lab file and the Patients it links to (the prescribers' records of its orders)."""
    links = [str((link.get("other") or {}).get("reference", "")) for link in lab_file.content.get("link", [])]
    return (f"Patient/{lab_file.id}", *sorted(r for r in links if r.startswith("Patient/")))


def _nonconformity(payload: dict[str, Any]) -> list[str]:
    """What a DMP write breaks of MHD: an ITI-65 as a whole, a metadata update as its DocumentReference."""
    if payload.get("kind") == PROVIDE:
        return mhd_rules.problems(payload.get("body") or {})
    if payload.get("kind") == UPDATE:
        return mhd_rules.document_problems(payload.get("body") or {}, "DocumentReference")
    return []


def _organization(organization: dict[str, Any]) -> dict[str, Any]:
    """The lab, contained: its name and its official identifiers (FR Core, typed)."""
    finess = next((f for f in map(fr_core.finess_of, organization.get("identifier", [])) if f), None)
    found: dict[str, Any] = {"resourceType": "Organization", "id": LAB, "name": str(organization.get("name", ""))}
    if finess:
        found["identifier"] = fr_core.organization_identifiers(finess)
    return found


def _practitioner(practitioner: dict[str, Any]) -> dict[str, Any]:
    """The biologist, contained: RPPS and national id (IDNPS, "8" + RPPS), typed, and the name."""
    rpps = next((str(i.get("value")) for i in practitioner.get("identifier", []) if i.get("system") == RPPS), "")
    identifiers = [fr_core.typed({"system": RPPS, "value": rpps}),
                   fr_core.typed({"system": NATIONAL_ID, "value": f"8{rpps}"})] if rpps else []
    found: dict[str, Any] = {"resourceType": "Practitioner", "id": BIOLOGIST, "identifier": identifiers,
                             "name": [{k: v for k, v in name.items() if k in ("family", "given", "prefix", "suffix")}
                                      for name in practitioner.get("name", [])[:1]]}
    return {k: v for k, v in found.items() if v}


def _patient(lab_file: dict[str, Any]) -> dict[str, Any]:
    """The patient's traits as the lab's file holds them (MHD sourcePatientInfo): the INS typed,
    the official name in the FR Core form, sex and birth date; not the lab's file number."""
    found = identity.traits(lab_file)
    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": PATIENT,
        "identifier": [fr_core.typed({"use": "official", "system": i["system"], "value": i["value"]})
                       for _, i in ins_identifiers(lab_file)],
        "name": [fr_core.official_name(found.family, found.given)], "gender": found.sex or None,
        "birthDate": found.birth_date or None,
    }
    return {k: v for k, v in patient.items() if v}
