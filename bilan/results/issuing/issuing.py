"""Issuing the report of an order, by its biologist: the CR-BIO (CDA with its PDF) built from
the validated results, checked as the ANS checks it (the CDA schema and the six schematrons
of its kit: `conformance.check`), stored (Binary,
DocumentReference, DiagnosticReport) and delivered, all in one transaction. The document is
made before that transaction opens, in a worker thread, from a short read of the order; the
write refuses it when the order changed in between (`Issuing.issue`).

- A version with results still to validate is partial; the one with none left is final and
  completes the order. A version after a final one is a correction (same setId, version + 1,
  RPLC): every recipient gets it again. That state is coded, never read from text: the
  DiagnosticReport's status and each DocumentReference's docStatus (preliminary, final,
  amended); the order's Task lists its versions and report by a task-output code.
- Delivery is queued in the outbox with the change: the prescriber's software is notified by
  its Subscriptions, the prescriber gets an MSSanté mail with the CDA attached, and the shared
  record (DMP) the MHD Provide Document Bundle, when the patient's identity is qualified and
  they did not oppose. Otherwise the report says why it was not shared.
- Masking: results (or the whole report) hidden from the patient until the prescriber
  releases them, or until the date the lab chose (a queued "release" job).
A document with a conformance error is not issued: the refusal lists every error. A warning
does not hold a report back (it is logged); the tests hold bilan's documents at none."""

import asyncio
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any, Iterable

from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Conflict, FhirError, Invalid, Issue
from bilan.french import PARIS
from bilan.notifications import outbox
from bilan.notifications.mhd import MhdClient
from bilan.notifications.prescriber_notices import Notice, PrescriberNotices
from bilan.prescription import (
    adapted_requests,
    directory,
    mail_address,
    order_specimens,
    order_state,
    tracking,
)
from bilan.records.service import Records, new_id
from bilan.results import masking
from bilan.results.desk import OPEN, critical, interpretation, order_results, person_history, previous_result
from bilan.results.document import (
    Earlier,
    Forwarded,
    Identifier,
    LabReport,
    Quantity,
    ReportError,
    assembly,
    cda_document,
    conformance,
    report_pdf,
)
from bilan.results.issuing import documents
from bilan.results.issuing.dmp_feed import DmpFeed, sharing_refusal
from bilan.storage import catalogue
from bilan.storage.catalogue import Entry
from bilan.storage.repository import Repository, Stored, Write

log = logging.getLogger(__name__)

TASK_OUTPUT = "https://bilan.sante.fr/fhir/CodeSystem/task-output"
# What an order's Task.output holds, by code: each issued version, and the one DiagnosticReport.
REPORT_OUTPUT, RESULTS_OUTPUT = "report", "results"
OUTPUT_LABELS = {REPORT_OUTPUT: "Compte rendu", RESULTS_OUTPUT: "Résultats"}
RELEASE = "release"  # outbox channel: release the masked results of an order (target: Task/id)
_PLACEHOLDER_PDF = b"%PDF-"
# Interpretation flags that put a result beyond its reference range (the mail counts them).
OUT_OF_RANGE = frozenset({interpretation.LOW, interpretation.HIGH, interpretation.CRITICAL_LOW,
                          interpretation.CRITICAL_HIGH, interpretation.ABNORMAL, "AA", "LU", "HU", "LX", "HX"})


@dataclass(frozen=True)
class Choices:
    """What the biologist decides when issuing: who may see what, and when."""
    hidden: frozenset[str] = frozenset()  # Observation ids hidden from the patient until released
    hide_report: bool = False
    release_on: date | None = None  # released automatically that day (Paris), else by the prescriber
    announce: bool = False  # tell the patient a result awaits their consultation
    hidden_from_professionals: bool = False
    secret_connection: bool = False
    conclusion: str = ""  # the biologist's conclusion, in the report (CDA, PDF, DiagnosticReport)


@dataclass(frozen=True)
class Version:
    document_id: str
    number: int
    issued: str
    status: str  # DocumentReference status: current or superseded
    partial: bool
    hidden: bool
    not_shared: str | None


@dataclass(frozen=True)
class Overview:
    versions: list[Version]
    sensitive: frozenset[str] = field(default_factory=frozenset)  # result ids to suggest hiding
    opposed: bool = False
    masked: frozenset[str] = field(default_factory=frozenset)  # result ids hidden until released

    @property
    def releasable(self) -> bool:
        """Something of the order is still hidden from the patient."""
        return bool(self.masked) or any(v.hidden for v in self.versions)


@dataclass(frozen=True)
class _Draft:
    """The next version of a report as its read unit found the order: what the writes need,
    the report still without its PDF, and the version of everything it was made from."""
    task: Stored
    decided: list[Stored]  # the results it reports (validated, or said not done)
    requests: list[Stored]
    previous: list[Stored]  # the versions issued before
    diagnostic: Stored | None  # the order's DiagnosticReport, once a version was issued
    choices: Choices
    report: LabReport
    refs: dict[str, Any]
    status: str  # partial, final or corrected
    refusal: str | None  # why the patient's space and the DMP do not get it
    relied: dict[str, int]  # "Type/id": version_id

    @property
    def hidden(self) -> set[str] | frozenset[str]:
        """The results hidden from the patient in this version."""
        return {r.id for r in self.decided} if self.choices.hide_report else self.choices.hidden


class Issuing:
    def __init__(self, records: Records, dmp_url: str, mail_link: str, feed: DmpFeed | None = None,
                 notice_window: float = 60):
        self.records = records
        self.dmp_url = dmp_url
        self.mail_link = mail_link
        self.notices = PrescriberNotices(mail_link, records.base_url, notice_window)
        self.feed = feed or DmpFeed(records, MhdClient(dmp_url))  # the DMP's writes (dmp_feed.py)

    async def overview(self, caller: Caller, task_id: str) -> Overview:
        async with self.records.work(caller) as work:
            repo = work.repo
            task = await tracking.order_task(work, task_id, "read", "follow-order")
            versions = [_version(n, s) for n, s in enumerate(await issued_documents(repo, task.content), 1)]
            results = await order_results(repo, self.records.base_url, caller, task)
            codes = {c["code"]: r.id for r in results for c in r.content.get("code", {}).get("coding", [])}
            rows = await catalogue.results_by_loinc(repo.conn, codes)
            sensitive = frozenset(codes[row["loinc"]] for row in rows if row.get("sensitive") is True)
            masked = frozenset(r.id for r in results if masking.hidden_from_patient(r.content))
            work.note("read", patients=patients_of(task.content), touched=[f"Task/{task_id}"])
        return Overview(versions, sensitive, tracking.opposed(task.content), masked)

    async def issue(self, caller: Caller, task_id: str, choices: Choices) -> str:
        """Issue the next version of the order's report; the DocumentReference id.

        No transaction is open while the document is made (seconds; the first check of a
        process compiles the ANS pipeline): a short read of what it says, then the PDF, the
        CDA and their check in a worker thread, then one write unit, refused when the order
        changed meanwhile (the biologist looks again rather than signing what they did not see)."""
        draft = await self._draft(caller, task_id, choices)
        report, cda = await asyncio.to_thread(_rendered, draft.report)
        async with self.records.work(caller) as work:
            await self._check_unchanged(work.repo, caller, draft)
            now = work.now
            issued = _issued(report, cda, draft)
            writes = self._writes(draft.task, issued, draft.decided, draft.hidden, draft.previous,
                                  draft.diagnostic, now)
            # The CDA and PDF are bilan's own documents (nobody writes Binary through the API).
            await work.write([w for w in writes if w.resource_type == "Binary"], system=True)
            saved = await work.write([w for w in writes if w.resource_type != "Binary"])
            await self._deliver(work.repo, issued, draft, now)
            for document in saved:  # the new version, to the DMP when the patient may have it
                if document.resource_type == "DocumentReference" and document.id == issued.document_id:
                    await self.feed.queue_provide(work.repo, document, now)
        return issued.document_id

    async def _draft(self, caller: Caller, task_id: str, choices: Choices) -> _Draft:
        """The next version as the order stands (one short read unit), every refusal said before
        anything is made; the report still without its PDF."""
        async with self.records.work(caller) as work:
            repo = work.repo
            work.allow("issue", [f"Task/{task_id}"], "create")
            task = await tracking.order_task(work, task_id, "update", "follow-order")
            content = task.content
            _check_issuable(content)
            results = await order_results(repo, self.records.base_url, caller, task)
            decided = [r for r in results if r.content.get("status") in (*assembly.DECIDED, "cancelled")]
            if not any(r.content.get("status") in assembly.DECIDED for r in decided):
                raise Invalid([Issue("Aucun résultat validé biologiquement : rien à émettre.",
                                            "business-rule", expression="compte-rendu")])
            # Complete once no result waits for validation, nor any exam for its partner lab.
            forwarded = await self._forwarded(repo, caller, content, results)
            complete = not any(r.content.get("status") in OPEN for r in results) and not any(
                f.pending for f in forwarded)
            previous = await issued_documents(repo, content)
            # A mask stays on every new version until explicitly lifted (release).
            choices = replace(choices, hidden=choices.hidden | {
                r.id for r in decided if masking.hidden_from_patient(r.content)})
            reports = await self._reports(repo, content)
            _check_changed(previous, results, choices, reports[-1].content.get("conclusion", "") if reports else "")
            await self._check_called(repo, task, results)
            lab_file = await _lab_file(repo, content)
            requests = await self._requests(repo, content)
            report, refs = await self._report(repo, caller, task, lab_file, requests, decided, previous,
                                              complete, work.now, choices.conclusion, forwarded)
        return _Draft(task, decided, requests, previous, reports[0] if reports else None, choices, report, refs,
                      report_status(previous, complete), sharing_refusal(lab_file.content, content),
                      _versions([task, lab_file], results, previous, reports))

    async def _check_called(self, repo: Repository, task: Stored, results: list[Stored]) -> None:
        """The prescriber hears of a critical value by a call, before any report."""
        uncalled = critical.uncalled(results, await critical.order_calls(repo, self.records.base_url, task))
        if uncalled:
            raise Conflict([replace(critical.refusal(uncalled, "l'émission du compte rendu",
                                                     await critical.names(repo, uncalled)),
                                    expression="compte-rendu")])

    async def _check_unchanged(self, repo: Repository, caller: Caller, draft: _Draft) -> None:
        """In the write unit: the order, its lab file, results and versions are still those the
        document was made from (another biologist issued, a result was corrected or arrived:
        a 409, nothing written)."""
        task = await repo.read("Task", draft.task.id)
        if task is not None and not task.deleted and task.version_id == draft.task.version_id:
            lab_file = await repo.read_reference(tracking.lab_file_of(task.content))
            current = _versions([task, *([lab_file] if lab_file else [])],
                                await order_results(repo, self.records.base_url, caller, task),
                                await issued_documents(repo, task.content), await self._reports(repo, task.content))
            if current == draft.relied:
                return
        raise Conflict([Issue("La prescription a changé pendant l'établissement du compte rendu (résultat "
                              "corrigé ou reçu, version émise par ailleurs) : rien n'a été émis. Vérifiez les "
                              "résultats puis émettez à nouveau.", "conflict", expression="compte-rendu")])

    async def release(self, caller: Caller | None, task_id: str, reason: str = "") -> int:
        """Show the patient what was hidden for this order: the prescriber after the
        consultation, the biologist for the reason they give, or bilan at the chosen date when
        `caller` is None; how many resources. The reason goes in the audit trail."""
        reason = reason.strip() or _release_reason(caller)
        if not reason:
            raise Invalid([Issue("Indiquez le motif de la levée du masquage.", "required", expression="motif")])
        async with self.records.work(caller) as work:
            repo = work.repo
            work.allow("release", [f"Task/{task_id}"], "update")
            task = (await self.records.read_for(repo, caller, "update", "Task", task_id)
                    if caller else await repo.read("Task", task_id))
            if task is None or task.deleted:
                raise tracking.unknown_prescription()
            reports = await self._reports(repo, task.content)
            results = await repo.read_references(r["reference"] for s in reports
                                                 for r in s.content.get("result", []))
            hidden = [s for s in [*results, *await issued_documents(repo, task.content), *reports]
                      if s.content and masking.hidden_from_patient(s.content)]
            # The explicit lifting of the masks, the one write that may drop INVISIBLE_PATIENT:
            # the release rule (work.allow above) authorises it, not the right to write reports.
            saved = await work.write([Write(s.resource_type, s.id, masking.released(s.content), "PUT", s.version_id,
                                            labelled=True, unmask=True) for s in hidden], system=True)
            for document in saved:  # the DMP's copy shown to the patient too (metadata update)
                if document.resource_type == "DocumentReference":
                    await self.feed.queue_update(repo, document, work.now)
            work.note("update", patients=patients_of(task.content),
                      touched=[f"{s.resource_type}/{s.id}" for s in hidden], detail=f"Levée du masquage : {reason}")
        return len(hidden)

    async def release_due(self, item: outbox.OutboxItem) -> None:
        """The outbox job queued for a release date."""
        try:
            await self.release(None, item.target.removeprefix("Task/"))
        except FhirError as error:
            raise RuntimeError(error.issues[0].diagnostics) from None

    async def _reports(self, repo: Repository, task: dict[str, Any]) -> list[Stored]:
        """The order's DiagnosticReport (one, a version per issued document)."""
        refs = [o["valueReference"]["reference"] for o in task.get("output", [])
                if o.get("valueReference", {}).get("reference", "").startswith("DiagnosticReport/")]
        return [s for s in await repo.read_references(refs) if s.content]

    async def _earlier(self, repo: Repository, caller: Caller, result: Stored,
                       history: dict[str, list[str]]) -> Earlier | None:
        """The antériorité the report prints beside a result."""
        found = await previous_result(repo, self.records.base_url, caller, result, history)
        if found is None:
            return None
        return Earlier(Quantity(found.value, found.unit), assembly.moment(found.when))

    async def _requests(self, repo: Repository, task: dict[str, Any]) -> list[Stored]:
        prescribed = await repo.read_references(b["reference"] for b in task.get("basedOn", []))
        return [*prescribed, *await adapted_requests(repo, self.records.base_url, task)]

    async def _report(self, repo: Repository, caller: Caller, task: Stored, lab_file: Stored,
                      requests: list[Stored], decided: list[Stored], previous: list[Stored],
                      complete: bool, now: datetime, conclusion: str,
                      forwarded: tuple[Forwarded, ...] = ()) -> tuple[LabReport, dict[str, Any]]:
        """The LabReport of this version and the references the FHIR resources need."""
        content = task.content
        by_ref = {f"ServiceRequest/{s.id}": {**s.content, "id": s.id} for s in requests}
        lab = await repo.read_reference((content.get("owner") or {}).get("reference", ""))
        first = next(iter(by_ref.values()), {})
        prescriber = await directory.practitioner_of(repo, (first.get("requester") or {}).get("reference", ""))
        biologist = await self._biologist(repo, caller)
        specimens = [s.content for s in await order_specimens(repo, self.records.base_url, caller, content)]
        codes = {c.get("code") for s in [*decided, *requests] for c in s.content.get("code", {}).get("coding", [])}
        entries: dict[str, Entry] = {}
        for row in await catalogue.results_by_loinc(repo.conn, {c for c in codes if c}):
            entries.setdefault(row["loinc"], row)
        history = await person_history(repo, self.records.base_url, caller, task, decided)
        stored = [assembly.StoredResult(r.content, by_ref.get(_based_on(r, by_ref), {}),
                                        await self._earlier(repo, caller, r, history)) for r in decided]
        set_id = _set_id(previous) or str(uuid.uuid4())
        replaces = previous[-1].content.get("masterIdentifier", {}).get("value", "") if previous else ""
        collected = [assembly.moment((s.get("collection") or {}).get("collectedDateTime")) for s in specimens]
        received = max((c for c in collected if c), default=now)
        try:
            report = LabReport(
                document_id=Identifier(str(uuid.uuid4()).upper()), set_id=Identifier(set_id.upper()),
                version=len(previous) + 1, effective_time=now,
                patient=assembly.patient(lab_file.content, caller.lab_finess or ""),
                lab=assembly.organization(lab.content if lab and lab.content else {}),
                biologist=assembly.biologist(biologist), validated_at=_validated_at(decided, now),
                prescriber=assembly.practitioner(prescriber),
                order_id=Identifier(assembly.oid_for((content.get("groupIdentifier") or {}).get("system", "")),
                                    (content.get("groupIdentifier") or {}).get("value")),
                request_id=Identifier(assembly.oid_for(f"{tracking.ACCESSION}/{caller.lab_finess}"),
                                      tracking.accession_of(content)),
                received_at=received,
                prescribed_at=_authored(by_ref),
                chapters=assembly.chapters(stored, entries, specimens, await catalogue.chapter_order(repo.conn),
                                           list(by_ref)),
                pdf=_PLACEHOLDER_PDF,
                adaptation=assembly.adaptation_text(by_ref.values(), {k: v["label_fr"] for k, v in entries.items()}),
                replaces=Identifier(replaces.removeprefix("urn:uuid:").upper()) if replaces else None,
                complete=complete, conclusion=conclusion.strip() or None, forwarded=forwarded)
        except (ReportError, ValueError) as error:
            raise _unmakeable(error) from None
        refs = {"patient": (content.get("for") or {}).get("reference", ""),
                "lab": f"Organization/{lab.id}" if lab else "", "biologist": f"Practitioner/{biologist['id']}",
                "requests": tuple(by_ref), "results": [f"Observation/{r.id}" for r in decided]}
        return report, refs

    async def _forwarded(self, repo: Repository, caller: Caller, task: dict[str, Any],
                         results: list[Stored]) -> tuple[Forwarded, ...]:
        """The exams the lab sent to its partner lab, each pending until a result of it (the
        partner's, posted by the lab's middleware) is validated or said not done."""
        order = await order_state(repo, self.records.base_url, caller.lab_finess or "", task)
        answered = {b.get("reference") for r in results for b in r.content.get("basedOn", [])
                    if r.content.get("status") in assembly.DECIDED
                    or (r.content.get("status") == "cancelled" and r.content.get("dataAbsentReason"))}
        partners = {f"Organization/{s.id}": s.content
                    for s in await repo.read_references(dict.fromkeys(p for _e, p in order.sent if p))}
        return tuple(assembly.forwarded(exam.label, partners.get(partner, {}), exam.reference not in answered)
                     for exam, partner in order.sent)

    async def _biologist(self, repo: Repository, caller: Caller) -> dict[str, Any]:
        found = await directory.practitioner_by_rpps(repo, self.records.base_url, caller.rpps or "")
        if found is None:
            raise Invalid([Issue(f"Le biologiste (RPPS {caller.rpps}) n'est pas dans l'annuaire de "
                                        "bilan : le compte rendu doit nommer qui l'a validé.", "not-found",
                                        expression="biologiste")])
        return {**found.content, "id": found.id}

    def _writes(self, task: Stored, issued: documents.Issued, decided: list[Stored], hidden: set[str] | frozenset[str],
                previous: list[Stored], report: Stored | None, now: datetime) -> list[Write]:
        content = task.content
        writes = [Write("Binary", id_, binary, "POST") for id_, binary in documents.binaries(issued)]
        writes.append(Write("DocumentReference", issued.document_id, documents.document_reference(issued), "POST",
                            labelled=True))
        if previous:
            last = previous[-1]
            writes.append(Write("DocumentReference", last.id, {**last.content, "status": "superseded"},
                                "PUT", last.version_id))
        shared = masking.PATIENT_SPACE in issued.tags
        for result in decided:
            labels = {masking.INVISIBLE_PATIENT} if result.id in hidden else set()
            writes.append(Write("Observation", result.id, masking.with_labels(
                result.content, labels, {masking.PATIENT_SPACE} if shared else set()), "PUT", result.version_id,
                labelled=True))
        report_id = report.id if report else new_id()
        diagnostic = documents.diagnostic_report(issued, [f"Observation/{r.id}" for r in decided])
        writes.append(Write("DiagnosticReport", report_id, diagnostic, "PUT" if report else "POST",
                            report.version_id if report else None, labelled=True))
        task_content = dict(content)
        if issued.status != "partial" and task_content.get("status") != "completed":
            if task_content.get("status") == "accepted":
                task_content = tracking.moved(task_content, "in-progress", now)
            task_content = tracking.moved(task_content, "completed", now)
        outputs = list(task_content.get("output", []))
        if report is None:
            outputs.append(_output(RESULTS_OUTPUT, f"DiagnosticReport/{report_id}"))
        outputs.append(_output(REPORT_OUTPUT, f"DocumentReference/{issued.document_id}"))
        task_content["output"] = outputs
        writes.append(Write("Task", task.id, task_content, "PUT", task.version_id))
        return writes

    async def _deliver(self, repo: Repository, issued: documents.Issued, draft: _Draft, now: datetime) -> None:
        """Queue the news to the prescriber (with the order's other news: prescriber_notices.py)
        and the release date, with the change."""
        about, document = issued.task, f"DocumentReference/{issued.document_id}"
        choices = draft.choices
        prescribed = next((s.content for s in draft.requests
                           if s.content and s.content.get("intent") != "filler-order"), {})
        address = await mail_address(repo, (prescribed.get("requester") or {}).get("reference", ""))
        kind = {"partial": " partiel", "corrected": " corrigé"}.get(issued.status, "")
        if address:
            await self.notices.notify(repo, address, about, Notice(
                f"Compte rendu d'examens biologiques{kind}",
                f"Le compte rendu{kind} (version {issued.report.version}) est disponible ; il est joint "
                "(CR-BIO, CDA R2 niveau 3, avec sa copie PDF).",
                abnormal=sum(1 for r in draft.decided if _out_of_range(r.content)),
                masked=len(draft.hidden), resource=document,
                attachments=(("CR-BIO.xml", documents.CDA_TYPE, issued.cda),
                             ("compte-rendu.pdf", documents.PDF_TYPE, issued.report.pdf))), now)
        if masking.INVISIBLE_PATIENT in issued.security and choices.release_on:
            due = datetime.combine(choices.release_on, time(0, 0), PARIS)  # midnight in Paris
            await outbox.enqueue(repo.conn, RELEASE, about, {"release_on": choices.release_on.isoformat()},
                                 resource=document, about=about, now=now, due=due)


def _out_of_range(result: dict[str, Any]) -> bool:
    """A result flagged beyond its reference range (low, high, critical, abnormal)."""
    return any(c.get("code") in OUT_OF_RANGE for i in result.get("interpretation", []) for c in i.get("coding", []))


def _rendered(report: LabReport) -> tuple[LabReport, bytes]:
    """The report with its PDF, and its CDA once the ANS check passed: CPU work (reportlab,
    lxml, saxon; ~0.3 s a document), run in a worker thread, outside any transaction."""
    try:
        report = replace(report, pdf=report_pdf(report))
    except (ReportError, ValueError) as error:
        raise _unmakeable(error) from None
    cda = cda_document(report)
    found = conformance.check(cda)
    if found.errors:
        raise Invalid([Issue(f"Document non conforme, non émis : {p}", "invariant",
                             expression="compte-rendu") for p in found.errors])
    for warning in found.warnings:  # where, not what: a message may quote the patient's data
        log.warning("CR-BIO %s: %s warning at %s", report.document_id.root, warning.check, warning.where)
    return report, cda


def _unmakeable(error: Exception) -> FhirError:
    return Invalid([Issue(f"Le compte rendu ne peut pas être établi : {error}", "invariant",
                          expression="compte-rendu")])


def _check_issuable(task: dict[str, Any]) -> None:
    if task.get("status") not in ("accepted", "in-progress", "completed"):
        raise Conflict([Issue("Le compte rendu ne s'émet que pour une demande importée et "
                              "en cours au laboratoire.", "business-rule", expression="compte-rendu")])


async def _lab_file(repo: Repository, task: dict[str, Any]) -> Stored:
    lab_file = await repo.read_reference(tracking.lab_file_of(task))
    if lab_file is None or lab_file.deleted:
        raise Conflict([Issue("Le dossier patient du laboratoire est introuvable.", "not-found",
                              expression="compte-rendu")])
    return lab_file


def _versions(*groups: Iterable[Stored]) -> dict[str, int]:
    """The version of each resource read: what a document was made from."""
    return {f"{s.resource_type}/{s.id}": s.version_id for group in groups for s in group}


def _release_reason(caller: Caller | None) -> str:
    """The reason a release goes without saying; a biologist says theirs."""
    if caller is None:
        return "Date de levée choisie par le laboratoire"
    return "Consultation d'annonce faite par le prescripteur" if caller.for_prescriber else ""


def _check_changed(previous: list[Stored], results: list[Stored], choices: Choices, conclusion: str) -> None:
    """A new version says something new: a result changed since the last one, a result newly
    hidden, or a new conclusion. Issuing the same report again is refused."""
    if not previous:
        return
    last = previous[-1]
    changed = any(r.last_updated > last.last_updated for r in results)
    hidden_before = {r.id for r in results if masking.hidden_from_patient(r.content)}
    concluded = bool(choices.conclusion.strip()) and choices.conclusion.strip() != conclusion
    if not changed and not concluded and choices.hidden <= hidden_before and not choices.hide_report:
        raise Conflict([Issue("Rien n'a changé depuis la dernière version du compte rendu : "
                                    "aucune nouvelle version n'est émise.", "business-rule",
                                    expression="compte-rendu")])


def _issued(report: LabReport, cda: bytes, draft: _Draft) -> documents.Issued:
    choices, refusal, refs, previous = draft.choices, draft.refusal, draft.refs, draft.previous
    security = set()
    if choices.hidden or choices.hide_report:
        security.add(masking.INVISIBLE_PATIENT)
    if choices.hidden_from_professionals:
        security.add(masking.HIDDEN_FROM_PROFESSIONALS)
    if choices.secret_connection:
        security.add(masking.SECRET_CONNECTION)
    tags = set() if refusal else {masking.PATIENT_SPACE}
    if choices.announce and masking.INVISIBLE_PATIENT in security and not refusal:
        tags.add(masking.ANNOUNCED)
    return documents.Issued(
        report=report, cda=cda, document_id=new_id(), cda_id=new_id(), pdf_id=new_id(), patient=refs["patient"],
        lab=refs["lab"], biologist=refs["biologist"], requests=refs["requests"], task=f"Task/{draft.task.id}",
        security=frozenset(security), tags=frozenset(tags),
        replaces=f"DocumentReference/{previous[-1].id}" if previous else None, not_shared=refusal,
        status=draft.status)


def _version(number: int, stored: Stored) -> Version:
    content = stored.content
    return Version(stored.id, number, content.get("date", ""), content.get("status", ""),
                   documents.partial(content), masking.hidden_from_patient(content),
                   next((e.get("valueString") for e in content.get("extension", [])
                         if e.get("url") == documents.NOT_SHARED), None))


def _set_id(previous: list[Stored]) -> str | None:
    for stored in previous[:1]:
        for ident in stored.content.get("identifier", []):
            if (ident.get("type") or {}).get("text") == "setId":
                return str(ident.get("value", "")).removeprefix("urn:uuid:")
    return None


def report_status(previous: list[Stored], complete: bool) -> str:
    """partial while results remain to validate; corrected after a complete version; else final."""
    if not complete:
        return "partial"
    was_final = any(not documents.partial(s.content) for s in previous)
    return "corrected" if was_final else "final"


def _output(code: str, reference: str) -> dict[str, Any]:
    label = OUTPUT_LABELS[code]
    return {"type": {"coding": [{"system": TASK_OUTPUT, "code": code, "display": label}], "text": label},
            "valueReference": {"reference": reference}}


async def issued_documents(repo: Repository, task: dict[str, Any]) -> list[Stored]:
    """The order's issued report versions (DocumentReference), first to last."""
    refs = [o["valueReference"]["reference"] for o in task.get("output", [])
            if _is_output(o, REPORT_OUTPUT)
            and o.get("valueReference", {}).get("reference", "").startswith("DocumentReference/")]
    return await repo.read_references(refs)


def _is_output(output: dict[str, Any], code: str) -> bool:
    """Whether a Task.output is of this kind, by its code (never its text)."""
    return any(c.get("system") == TASK_OUTPUT and c.get("code") == code
               for c in (output.get("type") or {}).get("coding", []))


def _based_on(result: Stored, requests: dict[str, dict[str, Any]]) -> str:
    return next((b["reference"] for b in result.content.get("basedOn", []) if b.get("reference") in requests), "")


def _validated_at(decided: list[Stored], now: datetime) -> datetime:
    return max((s.last_updated for s in decided), default=now)


def _authored(requests: dict[str, dict[str, Any]]) -> datetime | None:
    moments = [m for r in requests.values() if (m := assembly.moment(r.get("authoredOn"))) is not None]
    return min(moments) if moments else None

