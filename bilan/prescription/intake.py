"""Intake of an e-prescription Bundle: one patient, one requisition, one requester; exams the
lab does not know are flagged; the same prescription sent again returns what was stored."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan import french
from bilan.auth.caller import Caller
from bilan.fhir import fr_core
from bilan.fhir.outcomes import Forbidden, Issue, conflict
from bilan.prescription import directory, tracking, worklist
from bilan.prescription.exams import LAB_CATEGORY, flagged_unknown, loinc_codes
from bilan.prescription.identity import traits
from bilan.prescription.practitioners import RPPS, display_name
from bilan.records.pipeline import Denied, Work
from bilan.records.service import new_id
from bilan.records.transaction import Entry
from bilan.storage import catalogue, prescriptions
from bilan.storage.repository import Repository, Write

ORDER_INTENTS = ("order", "original-order")
URGENT = ("urgent", "asap", "stat")


def _requests(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries
            if e.method == "POST" and e.resource_type == "ServiceRequest" and e.resource]


def _sent(request: Entry) -> dict[str, Any]:
    """The resource of an entry `_requests` kept (it keeps only those that carry one)."""
    assert request.resource is not None
    return request.resource


class PrescriptionIntake:
    """The BundleRule for transactions that carry ServiceRequests."""

    def check(self, entries: list[Entry]) -> list[Issue]:
        requests = _requests(entries)
        if not requests:
            return []
        issues: list[Issue] = []
        patients = [e for e in entries if e.resource_type == "Patient" and e.method != "DELETE"]
        if len(patients) > 1:
            issues.append(Issue("A prescription is for one patient: this Bundle holds "
                                f"{len(patients)} Patient entries", "business-rule",
                                expression=f"{patients[1].path}.resource"))
        first = _sent(requests[0])
        for entry in requests:
            issues.extend(self._check_request(entry, first))
        for entry in entries:  # a hospital's order comes with the stay it was made in
            if entry.resource_type == "Encounter" and entry.resource and \
                    _key(entry.resource.get("subject")) != _key(first.get("subject")):
                issues.append(Issue("The Encounter of a prescription is the prescription's patient's",
                                    "business-rule", expression=f"{entry.path}.resource.subject"))
        return issues

    def _check_request(self, entry: Entry, first: dict[str, Any]) -> list[Issue]:
        sr, path = _sent(entry), f"{entry.path}.resource"
        issues = []
        if sr.get("status") != "active":
            issues.append(Issue(f"A prescribed exam must be 'active', not {sr.get('status')!r}",
                                "business-rule", expression=f"{path}.status"))
        if sr.get("intent") not in ORDER_INTENTS:
            issues.append(Issue(f"A prescribed exam is an order (intent 'order'), not "
                                f"{sr.get('intent')!r}", "business-rule", expression=f"{path}.intent"))
        for element, what in (("requisition", "the prescription number"),
                              ("subject", "the patient"), ("requester", "the prescriber"),
                              ("authoredOn", "the prescription date")):
            if not sr.get(element):
                issues.append(Issue(f"{element} ({what}) is required on every prescribed exam",
                                    "required", expression=f"{path}.{element}"))
        for element, what in (("requisition", "prescription number"), ("subject", "patient"),
                              ("requester", "prescriber")):
            if sr.get(element) and first.get(element) and _key(sr[element]) != _key(first[element]):
                issues.append(Issue(f"Every exam of a prescription has the same {what}",
                                    "business-rule", expression=f"{path}.{element}"))
        if not _has_lab_category(sr):
            entry.warnings.append(Issue(
                "category should be laboratory (SNOMED CT 108252007); read as laboratory",
                "business-rule", severity="warning", expression=f"{path}.category"))
        return issues

    async def before_write(self, repo: Repository, caller: Caller | None,
                           entries: list[Entry]) -> dict[str, Any] | None:
        requests = _requests(entries)
        if not requests:
            return None
        if caller is not None and caller.for_prescriber:
            await _check_own_prescription(repo, caller, entries, requests[0])
        key = prescription_key(_sent(requests[0]))
        codes = _codes(requests)
        previous = await prescriptions.find(repo.conn, key)
        if previous is not None:
            if previous.exam_codes != codes:
                raise conflict(f"Prescription {key[1]} from {key[2]} was already received with "
                               "other exams; to change it, update or cancel its ServiceRequests",
                               f"{requests[0].path}.resource.requisition")
            return _replayed(previous.response)
        await self._flag_unknown(repo.conn, requests)
        return None

    async def _flag_unknown(self, conn: AsyncConnection, requests: list[Entry]) -> None:
        known = await catalogue.known_loinc(conn, (c for e in requests for c in loinc_codes(_sent(e))))
        for entry in requests:
            codes = loinc_codes(_sent(entry))
            if not any(code in known for code in codes):
                entry.resource = flagged_unknown(_sent(entry))
                entry.warnings.append(Issue(
                    f"Exam {', '.join(codes)} is not in the lab's catalogue: accepted and flagged "
                    "for the lab", "not-found", severity="warning",
                    expression=f"{entry.path}.resource.code"))

    async def after_write(self, work: Work, entries: list[Entry],
                          response: dict[str, Any]) -> None:
        """Record the prescription, open its Task and put it on the lab's worklist."""
        requests = _requests(entries)
        if not requests:
            return
        repo, first = work.repo, _sent(requests[0])
        key = prescription_key(first)
        system, value, requester = key
        now = work.now
        await prescriptions.record(repo.conn, key, first["subject"].get("reference", ""),
                                   _codes(requests), now, response)
        view = BundleView(repo, entries)
        lab = await _addressed_lab(view, first, work.records.base_url)
        task = tracking.new_task([e.reference for e in requests], first["requisition"],
                                 first["subject"]["reference"], requester, lab[0] if lab else None, now)
        task_id = new_id()
        # bilan's own tracking of the prescription, not the prescriber's to write
        await work.write([Write("Task", task_id, task, "POST")], system=True, owner=None)
        patient = traits(await view.resource(first["subject"]["reference"]) or {})
        prescriber = await _prescriber(view, requester)
        await worklist.add(repo.conn, {
            "requisition_system": system, "requisition_value": value, "requester": requester,
            "lab_finess": lab[1] if lab else worklist.NOT_ADDRESSED, "received_at": now,
            "task_id": task_id, "patient": first["subject"]["reference"],
            "patient_name": french.person_name(patient.family, patient.given),
            "birth_date": patient.birth_date or None, "sex": patient.sex or None,
            "ins": patient.ins or None, "identity_status": patient.status,
            "prescriber_name": prescriber[0], "exam_count": len(requests),
            "urgent": any(_sent(e).get("priority") in URGENT for e in requests),
            "status": "received", "order_lab": None,
        }, prescriber)


class BundleView:
    """What the references of a stored transaction point to: the resource as sent (or as
    found by ifNoneExist), else the stored one."""

    def __init__(self, repo: Repository, entries: list[Entry]):
        self.repo = repo
        self.sent = {e.reference: (e.existing.content if e.method == "POST" and e.existing else e.resource)
                     for e in entries if e.id and e.resource}

    async def resource(self, reference: str) -> dict[str, Any] | None:
        if reference in self.sent:
            return self.sent[reference]
        stored = await self.repo.read_reference(reference)
        return stored.content if stored else None

    async def practitioner(self, reference: str) -> dict[str, Any] | None:
        """The Practitioner a requester reference names, through its PractitionerRole."""
        found = await self.resource(reference)
        if found and found["resourceType"] == "PractitionerRole":
            found = await self.resource((found.get("practitioner") or {}).get("reference", ""))
        return found


async def _check_own_prescription(repo: Repository, caller: Caller, entries: list[Entry],
                                  request: Entry) -> None:
    """A prescriber, or software acting for one, sends only prescriptions they sign."""
    requester = await BundleView(repo, entries).practitioner(_sent(request)["requester"].get("reference", ""))
    rpps = {i.get("value") for i in (requester or {}).get("identifier", []) if i.get("system") == RPPS}
    if caller.rpps not in rpps:
        raise Denied(caller, "transaction", Forbidden([Issue(
            "The prescription's requester is not the prescriber this token acts for", "forbidden",
            expression=f"{request.path}.resource.requester")]), [])


async def _addressed_lab(view: BundleView, request: dict[str, Any], base_url: str) -> tuple[str, str] | None:
    """(reference, FINESS) of the lab the prescription is addressed to, if it names one: by a
    reference to its Organization, or by one of its official identifiers alone (FINESS, or
    national structure id "1" + FINESS), which the directory then resolves."""
    for performer in request.get("performer", []):
        reference = performer.get("reference", "")
        found = await view.resource(reference) if reference.startswith("Organization/") else None
        for ident in (found or {}).get("identifier", []):
            finess = fr_core.finess_of(ident)
            if finess:
                return reference, finess
        finess = fr_core.finess_of(performer.get("identifier") or {}) if not reference else None
        lab = await directory.organization_by_finess(view.repo, base_url, finess) if finess else None
        if finess and lab is not None:
            return f"Organization/{lab.id}", finess
    return None


async def _prescriber(view: BundleView, requester: str) -> list[str]:
    """Title, given and family names, then RPPS: how the worklist shows and finds a prescriber."""
    found = await view.practitioner(requester) or {}
    rpps = [i.get("value", "") for i in found.get("identifier", []) if i.get("system") == RPPS]
    return [display_name(found) or "Prescripteur", *rpps[:1]]


def prescription_key(request: dict[str, Any]) -> tuple[str, str, str]:
    """(requisition system, requisition value, requester reference) of a stored-form request."""
    requisition = request["requisition"]
    return (requisition.get("system") or "", requisition.get("value") or "",
            request["requester"].get("reference", ""))


def _key(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("reference") or (value.get("system"), value.get("value"))
    return value


def _codes(requests: list[Entry]) -> str:
    return " ".join(sorted(c for e in requests for c in loinc_codes(_sent(e)) or ["?"]))


def _has_lab_category(request: dict[str, Any]) -> bool:
    return any((c.get("system"), c.get("code")) == LAB_CATEGORY
               for cat in request.get("category", []) for c in cat.get("coding", []))


def _replayed(response: dict[str, Any]) -> dict[str, Any]:
    """The stored answer, each created entry now reported as already there."""
    entries = []
    for entry in response.get("entry", []):
        reply = dict(entry["response"])
        if reply.get("status", "").startswith("201"):
            reply["status"] = "200 OK"
        entries.append(dict(entry, response=reply))
    return dict(response, entry=entries)
