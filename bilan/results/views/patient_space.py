"""What the patient's space shows besides trends: their reports, newest first (a "new" mark
until opened), their orders still at the lab, whether a result awaits their consultation (when
the lab chose to say so). Who accessed their data is bilan/results/views/access_trail.py.
Everything is read as the patient, through the access rules, and audited."""

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bilan.auth import access
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import OLDEST
from bilan.fhir.query import parse_search
from bilan.prescription import directory, display_name, tracking
from bilan.records.service import Records
from bilan.results import masking
from bilan.results.document import assembly
from bilan.storage import audit_log
from bilan.storage import search as store_search
from bilan.storage.compartments import narrowed, referring, with_token
from bilan.storage.repository import Repository, Stored

# An order at the lab as its patient reads it, by its Task's status, until a report of it is
# hers to read (then its results are partial).
IN_PROGRESS = {status: tracking.LABELS[status] for status in ("accepted", "in-progress")}
PARTIAL_RESULTS = "Résultats partiels"


@dataclass(frozen=True)
class ReportLine:
    document_id: str
    when: datetime | None
    lab: str
    prescriber: str
    status: str  # French: "Définitif", "Partiel", "Corrigé", "Remplacé"
    elsewhere: bool  # a report from another lab or the DMP
    has_pdf: bool
    new: bool = False  # she has not opened it yet


@dataclass(frozen=True)
class OrderLine:
    """An order of hers at the lab, before its report: what the space says of it."""
    task_id: str
    when: datetime | None  # prescribed on
    lab: str
    prescriber: str
    state: str  # French: "Reçue au laboratoire", "Prélèvements effectués", "Résultats partiels"


class PatientSpace:
    def __init__(self, records: Records):
        self.records = records

    async def reports(self, caller: Caller) -> list[ReportLine]:
        """The patient's reports (current versions), newest first."""
        async with self.records.work(caller) as work:
            repo = work.repo
            found = await self._search(repo, caller, "DocumentReference", [("status", "current")])
            lines = [await self._line(repo, s) for s in found]
            lines = await self._marked_new(repo, caller, found, lines)
            work.note("search-type", touched=[f"DocumentReference/{s.id}" for s in found],
                      patients={p for s in found for p in patients_of(s.content)},
                      query="DocumentReference?status=current")
        return sorted(lines, key=lambda line: line.when or OLDEST, reverse=True)

    async def in_progress(self, caller: Caller) -> list[OrderLine]:
        """Her orders the lab imported and has not finished reporting, newest first, each with
        its state: received, samples taken, or partial results (a partial report she may read)."""
        async with self.records.work(caller) as work:
            repo = work.repo
            found = await self._search(repo, caller, "Task", [("status", ",".join(IN_PROGRESS))])
            lines = [await self._order_line(repo, caller, s) for s in found]
            work.note("search-type", touched=[f"Task/{s.id}" for s in found],
                      patients={p for s in found for p in patients_of(s.content)},
                      query=f"Task?status={','.join(IN_PROGRESS)}")
        return sorted(lines, key=lambda line: line.when or OLDEST, reverse=True)

    async def _order_line(self, repo: Repository, caller: Caller, task: Stored) -> OrderLine:
        content = task.content
        reports = await self._search(repo, caller, "DocumentReference",
                                     [("related", f"Task/{task.id}"), ("status", "current")], count=10)
        state = PARTIAL_RESULTS if reports else IN_PROGRESS.get(content.get("status", ""), "")
        return OrderLine(task.id, assembly.moment(content.get("authoredOn")),
                         await self._organization(repo, content.get("owner")), display_name(
                             await directory.practitioner_of(repo, (content.get("requester") or {})
                                                             .get("reference", ""))), state)

    async def _marked_new(self, repo: Repository, caller: Caller, found: list[Stored],
                          lines: list[ReportLine]) -> list[ReportLine]:
        """The reports she has not opened yet (read, as a page, a PDF or through her software:
        her own successful reads in the audit trail) marked new."""
        if caller.kind != "patient" or not found:
            return lines
        opened = await audit_log.read_by(repo.conn, caller.subject, {f"DocumentReference/{s.id}" for s in found})
        return [replace(line, new=f"DocumentReference/{line.document_id}" not in opened) for line in lines]

    async def awaiting(self, caller: Caller) -> list[str]:
        """The labs that said a report of theirs awaits the patient's consultation with their
        doctor (hidden until then): only the lab's name, never what or when."""
        if caller.kind != "patient":
            return []
        async with self.records.work(caller) as work:
            repo = work.repo
            mine = referring("DocumentReference", "patient", "Patient", access.visible(caller, "Patient"))
            announced = narrowed(mine, within=(
                with_token("DocumentReference", "_tag", masking.SHARING, masking.ANNOUNCED),
                with_token("DocumentReference", "_security", masking.CONFIDENTIALITY, masking.INVISIBLE_PATIENT),
                with_token("DocumentReference", "status", None, "current")))
            query = parse_search("DocumentReference", [], default_count=50, max_count=50)
            found = await store_search.search(repo.conn, query, self.records.base_url, lambda _t: announced)
            labs = {await self._organization(repo, s.content.get("custodian")) for s in found.matches}
        return sorted(lab or "Votre laboratoire" for lab in labs)

    async def _search(self, repo: Repository, caller: Caller, resource_type: str,
                      params: list[tuple[str, str]], count: int = 200) -> list[Stored]:
        query = parse_search(resource_type, params, default_count=count, max_count=count)
        result = await store_search.search(repo.conn, query, self.records.base_url,
                                           lambda t: access.readable(caller, t))
        return result.matches

    async def _line(self, repo: Repository, stored: Stored) -> ReportLine:
        content = stored.content
        imported = any(t.get("code") == "imported" for t in (content.get("meta") or {}).get("tag", []))
        report = await self._report(repo, stored.id, content)
        status = {"partial": "Partiel", "corrected": "Corrigé", "amended": "Corrigé"}.get(
            (report or {}).get("status", ""), "Définitif")
        period = (content.get("context") or {}).get("period") or {}
        authors = content.get("author", [])
        lab = await self._organization(repo, content.get("custodian")) or next(
            (a.get("display", "") for a in authors if a.get("display")), "")
        return ReportLine(stored.id, assembly.moment(period.get("start") or content.get("date")), lab,
                          await self._prescriber(repo, report), status, imported,
                          # Its PDF, or its CDA: the lab's embeds one, bilan makes one for another's.
                          any((c.get("attachment") or {}).get("contentType") == "application/pdf"
                              or "xml" in str((c.get("attachment") or {}).get("contentType"))
                              for c in content.get("content", [])))

    async def _report(self, repo: Repository, document_id: str, content: dict[str, Any]) -> dict[str, Any] | None:
        """The DiagnosticReport the lab issued with this document (none for one from elsewhere)."""
        task = next((r["reference"] for r in (content.get("context") or {}).get("related", [])
                     if r.get("reference", "").startswith("Task/")), None)
        stored = await repo.read_reference(task) if task else None
        for output in stored.content.get("output", []) if stored else []:
            ref = (output.get("valueReference") or {}).get("reference", "")
            if ref.startswith("DiagnosticReport/"):
                found = await repo.read_reference(ref)
                return found.content if found else None
        return None

    async def _prescriber(self, repo: Repository, report: dict[str, Any] | None) -> str:
        for based_on in (report or {}).get("basedOn", [])[:1]:
            request = await repo.read_reference(based_on.get("reference", ""))
            requester = (request.content.get("requester") or {}).get("reference", "") if request else ""
            return display_name(await directory.practitioner_of(repo, requester))
        return ""

    async def _organization(self, repo: Repository, reference: dict[str, Any] | None) -> str:
        if not reference:
            return ""
        if reference.get("display"):
            return str(reference["display"])
        found = await repo.read_reference(reference.get("reference", ""))
        return str(found.content.get("name", "")) if found else ""




