"""What the prescriber sees of the results of his prescriptions: each order's validated results
(value, flag, reference range, the patient's previous value across the labs he may see,
critical values first, what is masked to the patient and until when), his list of
prescriptions (search, filters, paging, a "nouveau" mark) and his patients.

Only results the biologist validated (final, amended, corrected) are shown, as the report
shows them; the others are named as pending. Everything is read as the prescriber, through the
access rules; "opened" is read from the audit trail, which records each of his reads."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bilan import french
from bilan.auth import access
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Forbidden, Issue, NotFound
from bilan.fhir.query import parse_search
from bilan.fhir.text import normalise
from bilan.prescription import adaptation, identity, tracking
from bilan.records.service import Records
from bilan.results import masking
from bilan.results.desk import (
    OPEN,
    Previous,
    critical,
    interpretation,
    names,
    order_results,
    person_history,
    previous_result,
    typed,
)
from bilan.results.issuing import RELEASE
from bilan.results.views.trends import DECIDED, OUT_OF_RANGE_FLAGS
from bilan.storage import opened, outbox
from bilan.storage import search as store_search
from bilan.storage.repository import Repository, Stored

PAGE_SIZE = 20
MOST_ORDERS = 500  # a prescriber's orders read at once for his list
MOST_RESULTS = 5000
FILTERS = {"": "Toutes", "attente": "En attente de ma réponse", "nouveaux": "Nouveaux résultats",
           "anormaux": "Résultats hors normes"}


@dataclass(frozen=True)
class Line:
    """One validated result as the prescriber reads it."""

    id: str
    label: str
    value: str  # "7,2 mmol/L", "<0,5 mg/L", a text result
    flag: str  # H, L, HH, LL, A... ("" none)
    flag_label: str
    reference: str  # "3,9 – 6,1 mmol/L"
    when: str  # the sample's day
    previous: str  # the patient's previous value of the analyte, "" if none
    previous_on: str  # its day
    masked: str  # "" or "jusqu'au 12/12/2026", "jusqu'à votre consultation d'annonce"
    critical: bool
    abnormal: bool


@dataclass(frozen=True)
class OrderResults:
    lines: tuple[Line, ...]  # critical first, then the clinical order
    pending: tuple[str, ...]  # labels of the results not validated yet
    patient_id: str  # the Patient the order is for ("" if none)

    @property
    def abnormal(self) -> int:
        return sum(1 for line in self.lines if line.abnormal)


@dataclass(frozen=True)
class Row:
    """One prescription in "Mes prescriptions"."""

    task_id: str
    number: str
    patient_id: str
    patient: identity.Traits | None
    prescribed_on: str  # the ServiceRequest's authoredOn, as a French date
    status: str
    waiting: bool  # an adaptation awaits his answer
    results: int  # validated results
    abnormal: int
    new: bool  # validated results he has not opened since they came


@dataclass(frozen=True)
class Listing:
    rows: tuple[Row, ...]
    total: int  # rows matching the search and filter, all pages
    page: int
    pages: int
    q: str
    filter: str


class PrescriberView:
    def __init__(self, records: Records):
        self.records = records

    async def order_results(self, caller: Caller, task_id: str) -> OrderResults:
        """The order's results for its prescriber (a 403, audited, for anyone who may not read it)."""
        try:
            return await self._order_results(caller, task_id)
        except Forbidden:  # recorded in the audit trail as refused; said in French here
            raise Forbidden([Issue("Cette prescription n'est pas l'une des vôtres.", "forbidden")]) from None

    async def _order_results(self, caller: Caller, task_id: str) -> OrderResults:
        async with self.records.work(caller) as work:
            repo = work.repo
            task = await tracking.order_task(work, task_id, "read", "follow-order")
            found = await order_results(repo, self.records.base_url, caller, task)
            decided = [s for s in found if s.content.get("status") in DECIDED]
            history = await person_history(repo, self.records.base_url, caller, task, decided)
            known = await names.labels(repo.conn, [s.content for s in found])
            until = await _masked_until(repo, task_id)
            lines = [_line(s, known, until, await previous_result(repo, self.records.base_url, caller, s, history))
                     for s in decided]
            work.note("read", patients=patients_of(task.content) | {p for refs in history.values() for p in refs},
                      touched=[f"Task/{task_id}", *(f"Observation/{s.id}" for s in decided)])
        pending = tuple(names.label(s.content, known) for s in found if s.content.get("status") in OPEN)
        patient = str((task.content.get("for") or {}).get("reference", ""))
        return OrderResults(tuple(sorted(lines, key=lambda line: not line.critical)), pending,
                            patient.removeprefix("Patient/") if patient.startswith("Patient/") else "")

    async def prescriptions(self, caller: Caller, q: str = "", filter: str = "", page: int = 1) -> Listing:
        """His prescriptions, most recently changed first, matching `q` (patient's name, the
        prescription's number) and `filter` (FILTERS), one page of PAGE_SIZE."""
        filter = filter if filter in FILTERS else ""
        async with self.records.work(caller) as work:
            work.allow("follow-order", interaction="search-type")
            repo = work.repo
            query = parse_search("Task", [("_sort", "-modified"), ("_include", "Task:patient")],
                                 default_count=MOST_ORDERS, max_count=MOST_ORDERS)
            found = await store_search.search(repo.conn, query, self.records.base_url,
                                              lambda t: access.visible(caller, t))
            patients = {f"Patient/{p.id}": p.content for p in found.included}
            tasks = [t for t in found.matches if t.content]
            rows = await self._rows(repo, caller, tasks, patients)
            wanted = [r for r in rows if _matches(r, q) and _kept(r, filter)]
            pages = max(1, -(-len(wanted) // PAGE_SIZE))
            page = min(max(page, 1), pages)
            shown = tuple(wanted[(page - 1) * PAGE_SIZE:page * PAGE_SIZE])
            work.note("search-type", patients={f"Patient/{r.patient_id}" for r in shown if r.patient_id},
                      query="Task?_sort=-modified&_include=Task:patient")
        return Listing(shown, len(wanted), page, pages, q, filter)

    async def patient(self, caller: Caller, patient_id: str) -> identity.Traits:
        """A patient of his (a 403, audited, for a patient he may not read)."""
        try:
            return await self._patient(caller, patient_id)
        except Forbidden:
            raise Forbidden([Issue("Vous ne suivez pas ce patient : ses résultats ne vous sont pas accessibles.",
                                   "forbidden")]) from None

    async def _patient(self, caller: Caller, patient_id: str) -> identity.Traits:
        async with self.records.work(caller) as work:
            work.allow("patient-trends", [f"Patient/{patient_id}"])
            stored = await self.records.read_for(work.repo, caller, "read", "Patient", patient_id)
            if stored is None:
                raise NotFound([Issue("Ce patient est introuvable.", "not-found")])
            work.note("read", patients=[f"Patient/{patient_id}"], touched=[f"Patient/{patient_id}"])
        return identity.traits(stored.content)

    async def _rows(self, repo: Repository, caller: Caller, tasks: list[Stored],
                    patients: dict[str, dict[str, Any]]) -> list[Row]:
        originals = {b["reference"]: t.id for t in tasks for b in t.content.get("basedOn", []) if b.get("reference")}
        requests = {f"ServiceRequest/{s.id}": s.content for s in await repo.read_references(originals) if s.content}
        of_task, waiting = dict(originals), set[str]()
        if originals:
            query = parse_search("ServiceRequest", [("based-on", ",".join(originals))],
                                 default_count=MOST_RESULTS, max_count=MOST_RESULTS)
            for adapted in (await store_search.search(repo.conn, query, self.records.base_url)).matches:
                if adapted.content and adaptation.is_adaptation(adapted.content):
                    task_id = next((originals[b["reference"]] for b in adapted.content.get("basedOn", [])
                                    if b.get("reference") in originals), "")
                    of_task[f"ServiceRequest/{adapted.id}"] = task_id
                    if adaptation.answer_of(adapted.content) == "pending":
                        waiting.add(task_id)
        results: dict[str, list[Stored]] = {}
        if of_task:
            query = parse_search("Observation", [("based-on", ",".join(of_task)), ("status", ",".join(DECIDED))],
                                 default_count=MOST_RESULTS, max_count=MOST_RESULTS)
            found = await store_search.search(repo.conn, query, self.records.base_url,
                                              lambda t: access.visible(caller, t))
            for stored in found.matches:
                owner = next((of_task[b["reference"]] for b in stored.content.get("basedOn", [])
                              if of_task.get(b.get("reference", ""))), "")
                if owner:
                    results.setdefault(owner, []).append(stored)
        latest = {owner: max(s.last_updated for s in theirs) for owner, theirs in results.items()}
        seen = await opened.last_read(repo.conn, caller.subject, [f"Task/{t}" for t in latest],
                                      min(latest.values())) if latest else {}
        return [_row(t, patients, requests, results.get(t.id, []), latest.get(t.id), seen.get(f"Task/{t.id}"),
                     t.id in waiting) for t in tasks]


def _row(task: Stored, patients: dict[str, dict[str, Any]], requests: dict[str, dict[str, Any]],
         results: list[Stored], latest: datetime | None, seen: datetime | None, waiting: bool) -> Row:
    content = task.content
    patient_ref = str((content.get("for") or {}).get("reference", ""))
    authored = next((requests[b["reference"]].get("authoredOn") for b in content.get("basedOn", [])
                     if b.get("reference") in requests and requests[b["reference"]].get("authoredOn")), None)
    status = (content.get("businessStatus") or {}).get("text") or tracking.LABELS.get(content.get("status", ""), "")
    return Row(task.id, str((content.get("groupIdentifier") or {}).get("value", "")),
               patient_ref.removeprefix("Patient/") if patient_ref.startswith("Patient/") else "",
               identity.traits(patients[patient_ref]) if patient_ref in patients else None,
               french.date(authored), status, waiting, len(results),
               sum(1 for s in results if _abnormal(s.content)),
               latest is not None and (seen is None or seen < latest))


def _matches(row: Row, q: str) -> bool:
    wanted = normalise(q.strip())
    if not wanted:
        return True
    said = [row.number, *((row.patient.family, *row.patient.given) if row.patient else ())]
    return any(wanted in normalise(text) for text in said if text) or (
        row.patient is not None and all(any(word in normalise(text) for text in said) for word in wanted.split()))


def _kept(row: Row, filter: str) -> bool:
    return {"": True, "attente": row.waiting, "nouveaux": row.new, "anormaux": row.abnormal > 0}[filter]


# --------------------------------------------------------------------------- one result

def _line(stored: Stored, known: dict[str, str], until: str, previous: Previous | None) -> Line:
    content = stored.content
    flag = critical.flag(content)
    return Line(stored.id, names.label(content, known), typed.shown(content), flag,
                interpretation.LABELS.get(flag, flag) if flag else "", _reference(content),
                french.date(content.get("effectiveDateTime") or ""),
                french.quantity(previous.value, previous.unit) if previous else "",
                french.date(previous.when) if previous else "",
                until if masking.hidden_from_patient(content) else "",
                critical.is_critical(content), _abnormal(content))


def _abnormal(content: dict[str, Any]) -> bool:
    return critical.flag(content) in OUT_OF_RANGE_FLAGS



def _reference(content: dict[str, Any]) -> str:
    """The range as a French report prints it, in the result's unit."""
    unit = (content.get("valueQuantity") or {}).get("code")
    for element in content.get("referenceRange", []):
        low, high = (element.get("low") or {}).get("value"), (element.get("high") or {}).get("value")
        shown = french.unit(unit)
        if low is not None and high is not None:
            text = f"{french.number(low)} – {french.number(high)}"
        elif low is not None:
            text = f"≥ {french.number(low)}"
        elif high is not None:
            text = f"≤ {french.number(high)}"
        else:
            if element.get("text"):
                return str(element["text"])
            continue
        return f"{text} {shown}" if shown else text
    return ""


async def _masked_until(repo: Repository, task_id: str) -> str:
    """How long results masked to the patient stay so: the release day the lab set, if any."""
    days = [item.payload.get("release_on", "") for item in await outbox.for_about(repo.conn, [f"Task/{task_id}"])
            if item.channel == RELEASE and item.status == "pending"]
    day = max((d for d in days if d), default="")
    return f"jusqu'au {french.date(day)}" if day else "jusqu'à votre consultation d'annonce"

