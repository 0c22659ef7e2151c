"""The lab's reports to the shared record (DMP), through the outbox: each issued version when
the patient may have it (ITI-65), the history a patient could not have before (their INS
became qualified, their opposition was withdrawn, or `bilan dmp-history`), and the DMP copy's
visibility once a mask is released or the patient opposes later (a metadata update).

Each report is queued at most once (an outbox row of the DMP channel names it); each send is
idempotent: the DMP copy's resources carry bilan's ids (`PUT DocumentReference/<id>`), so a
send repeated after a lost answer writes the same copy again. An update waits until the
document itself was delivered (else it would reach the DMP before the document)."""

import base64
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from bilan.fhir.query import parse_search
from bilan.fhir.terminology import CONFIDENTIALITY, HIDDEN_FROM_PROFESSIONALS, INVISIBLE_PATIENT, RPPS
from bilan.french import PARIS
from bilan.notifications import outbox
from bilan.notifications.mhd import DmpError, DmpUnavailable, MhdClient
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
MHD_LIST = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
PROVIDE_PROFILE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle"
FINESS_ID = "urn:oid:1.2.250.1.71.4.2.2"  # FINESS-based organisation ids: "1" + FINESS


@dataclass(frozen=True)
class Shared:
    """What the DMP copy of a report needs besides bilan's DocumentReference."""
    ins: dict[str, str]
    lab: dict[str, Any]  # the Organization (custodian)
    biologist: dict[str, Any]  # the Practitioner (author, authenticator)


def dmp_copy(document: dict[str, Any], document_id: str, shared: Shared, *, hidden_from_all: bool = False) -> dict[str, Any]:
    """The DMP's copy of an issued DocumentReference: the patient by INS, the lab and the
    biologist by their national identifiers and names (bilan's own references mean nothing
    there), the CDA alone, its confidentiality from bilan's labels (`hidden_from_all`: the
    patient opposed after it was sent)."""
    security = masking.security_of(document)
    if hidden_from_all:
        security |= {INVISIBLE_PATIENT, HIDDEN_FROM_PROFESSIONALS}
    cda = next((c for c in document.get("content", []) if "xml" in (c.get("attachment") or {}).get("contentType", "")),
               (document.get("content") or [{}])[0])
    attachment = {k: v for k, v in (cda.get("attachment") or {}).items() if k != "data"}
    lab, biologist = _organization(shared.lab), _practitioner(shared.biologist)
    copy = {k: v for k, v in document.items() if k not in ("meta", "extension", "context", "relatesTo", "id",
                                                          "author", "authenticator", "custodian")}
    copy.update({
        "resourceType": "DocumentReference", "id": document_id,
        "identifier": [*document.get("identifier", []),
                       {"use": "official", "system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{document_id}"}],
        "subject": {"identifier": shared.ins},
        "author": [lab, biologist], "authenticator": biologist, "custodian": lab,
        "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                       "code": "N", "display": "Normal"}]}]
        + [{"coding": [masking.coding(CONFIDENTIALITY, c)]} for c in sorted(security)],
        "content": [{**cda, "attachment": attachment}],
        "context": {k: v for k, v in (document.get("context") or {}).items() if k != "related"},
    })
    replaced = [r for r in document.get("relatesTo", []) if r.get("code") == "replaces"]
    if replaced:
        copy["relatesTo"] = replaced  # DocumentReference/<id>: the same id in the DMP
    return copy


def provide_bundle(copy: dict[str, Any], cda_id: str, cda: bytes, lab: dict[str, Any]) -> dict[str, Any]:
    """The MHD Provide Document Bundle (ITI-65): a SubmissionSet List, the DocumentReference
    and the CDA, each at bilan's id (a repeated send writes the same resources again)."""
    document_id = copy["id"]
    copy = {**copy, "content": [{**copy["content"][0], "attachment": {
        **copy["content"][0]["attachment"], "url": f"Binary/{cda_id}"}}]}
    submission = {
        "resourceType": "List", "id": f"{document_id}-ss", "status": "current", "mode": "working",
        "code": {"coding": [{"system": MHD_LIST, "code": "submissionset"}]},
        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{document_id}-ss"}],
        "subject": copy["subject"], "date": copy.get("date"), "source": _organization(lab),
        "entry": [{"item": {"reference": f"DocumentReference/{document_id}"}}],
    }
    binary = {"resourceType": "Binary", "id": cda_id, "contentType": "application/xml",
              "data": base64.b64encode(cda).decode("ascii")}
    return {"resourceType": "Bundle", "type": "transaction", "meta": {"profile": [PROVIDE_PROFILE]},
            "entry": [{"fullUrl": f"urn:uuid:{document_id}-ss", "resource": submission,
                       "request": {"method": "PUT", "url": f"List/{document_id}-ss"}},
                      {"fullUrl": f"urn:uuid:{document_id}", "resource": copy,
                       "request": {"method": "PUT", "url": f"DocumentReference/{document_id}"}},
                      {"fullUrl": f"urn:uuid:{cda_id}", "resource": binary,
                       "request": {"method": "PUT", "url": f"Binary/{cda_id}"}}]}


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
                              "body": provide_bundle(copy, cda_id, data, shared.lab)},
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
                             {"kind": UPDATE, "method": "PUT", "path": f"DocumentReference/{document.id}",
                              "body": copy},
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
        if not ins or custodian is None or biologist is None:
            return None
        return Shared({"system": ins[0][1]["system"], "value": ins[0][1]["value"]}, custodian.content,
                      biologist.content)


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


def _organization(organization: dict[str, Any]) -> dict[str, Any]:
    ident = next((i for i in organization.get("identifier", []) if i.get("system") == FINESS_ID), None)
    found: dict[str, Any] = {"display": str(organization.get("name", ""))}
    if ident:
        found["identifier"] = {"system": ident["system"], "value": ident.get("value", "")}
    return found


def _practitioner(practitioner: dict[str, Any]) -> dict[str, Any]:
    ident = next((i for i in practitioner.get("identifier", []) if i.get("system") == RPPS), None)
    found: dict[str, Any] = {"display": display_name(practitioner)}
    if ident:
        found["identifier"] = {"system": ident["system"], "value": ident.get("value", "")}
    return found
