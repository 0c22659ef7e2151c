"""The lab's work queues: what waits for the lab, order by order, across the rooms.

- critical values to call (a result flagged LL or HH whose call to the prescriber is not
  recorded: the most urgent, first);
- results to validate (received or typed, not yet validated biologically);
- reports to issue (results validated since the last issued version, none left open);
- prescribers' messages the lab has not answered (the thread's last word is the prescriber's);
- results awaited from the partner lab (an exam sent there with no validated result yet);
- labels to print again (tubes changed by an adaptation since the labels were printed).

Each queue is read as the caller, through the access rules, from the lab's imported orders."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bilan.auth.caller import Caller
from bilan.fhir.dates import OLDEST, date_range
from bilan.fhir.query import parse_search
from bilan.prescription import order_state, worklist
from bilan.prescription.worklist import WorklistRow
from bilan.records.pipeline import Work
from bilan.records.service import Records
from bilan.results.desk import OPEN, critical, order_results
from bilan.results.issuing import issued_documents
from bilan.storage import search as store_search
from bilan.storage.repository import Stored

CRITICAL, VALIDATE, ISSUE, ANSWERS, PARTNER, REPRINT = (
    "valeurs-critiques", "a-valider", "a-emettre", "reponses", "partenaire", "etiquettes")
TITLES = {CRITICAL: "Valeurs critiques à appeler", VALIDATE: "Résultats à valider",
          ISSUE: "Comptes rendus à émettre", ANSWERS: "Messages des prescripteurs",
          PARTNER: "Résultats attendus du laboratoire partenaire", REPRINT: "Étiquettes à réimprimer"}
VALIDATED = ("final", "amended", "corrected")
ORDERS_READ = 500  # the lab's most recent imported orders the queues look at


@dataclass(frozen=True)
class Waiting:
    """One order in a queue, with what waits and since when."""

    task_id: str
    number: str
    patient: str
    detail: str
    since: datetime


@dataclass
class Queues:
    items: dict[str, list[Waiting]] = field(default_factory=lambda: {key: [] for key in TITLES})

    def count(self, key: str) -> int:
        return len(self.items[key])


class LabQueues:
    def __init__(self, records: Records):
        self.records = records

    async def queues(self, caller: Caller) -> Queues:
        async with self.records.work(caller) as work:
            work.allow("results-desk", interaction="search-type")
            rows = await worklist.search(work.conn, caller.lab_finess or "", "", "imported", limit=ORDERS_READ)
            tasks = await work.repo.read_references(f"Task/{row.task_id}" for row in rows)
            by_task = {row.task_id: row for row in rows}
            threads = await self._threads(work, tasks)
            found = Queues()
            for task in tasks:
                if task.content.get("status") in ("accepted", "in-progress", "completed"):
                    await self._place(work, caller, task, by_task[task.id], threads.get(task.id, []), found)
            self._answers(tasks, by_task, threads, found)
            work.note("search-type", patients={r.patient for r in rows}, query="queues")
        for waiting in found.items.values():
            waiting.sort(key=lambda w: w.since)
        return found

    async def _place(self, work: Work, caller: Caller, task: Stored, row: WorklistRow, thread: list[Stored],
                     found: Queues) -> None:
        results = await order_results(work.repo, self.records.base_url, caller, task)
        await self._awaited(work, caller, task, row, results, found)
        uncalled = critical.uncalled(results, critical.calls_in(thread))
        if uncalled:
            labels = await critical.names(work.repo, uncalled)
            found.items[CRITICAL].append(_waiting(row, " ; ".join(critical.described(r.content, labels)
                                                                   for r in uncalled),
                                                  min(r.last_updated for r in uncalled)))
        open_ = [r for r in results if r.content.get("status") in OPEN]
        if open_:
            found.items[VALIDATE].append(_waiting(row, f"{len(open_)} résultat(s)", min(r.last_updated for r in open_)))
            return
        validated = [r for r in results if r.content.get("status") in VALIDATED]
        if not validated:
            return
        documents = await issued_documents(work.repo, task.content)
        last_issued = max((d.last_updated for d in documents), default=OLDEST)
        pending = [r for r in validated if r.last_updated > last_issued]
        if pending:
            detail = "Nouvelle version" if documents else "Première émission"
            found.items[ISSUE].append(_waiting(row, detail, min(r.last_updated for r in pending)))

    async def _awaited(self, work: Work, caller: Caller, task: Stored, row: WorklistRow, results: list[Stored],
                       found: Queues) -> None:
        """The order's exams sent to the partner lab that have no validated result yet, and its
        labels to print again."""
        if task.content.get("status") not in ("accepted", "in-progress"):
            return
        order = await order_state(work.repo, self.records.base_url, caller.lab_finess or "", task.content)
        if order.reprint:
            found.items[REPRINT].append(_waiting(row, " ; ".join(f"{barcode} : {change}" for barcode, change
                                                                  in order.reprint), row.received_at))
        answered = {b.get("reference") for r in results for b in r.content.get("basedOn", [])
                    if r.content.get("status") in (*VALIDATED, "cancelled")}
        awaited = [exam.label for exam in order.forwarded if exam.reference not in answered]
        if awaited:
            found.items[PARTNER].append(_waiting(row, " ; ".join(awaited), row.received_at))

    async def _threads(self, work: Work, tasks: list[Stored]) -> dict[str, list[Stored]]:
        """Each order's thread, by Task id, oldest message first."""
        if not tasks:
            return {}
        query = parse_search("Communication", [("part-of", ",".join(f"Task/{t.id}" for t in tasks)),
                                               ("_sort", "sent")], default_count=5000, max_count=5000)
        threads: dict[str, list[Stored]] = {}
        for message in (await store_search.search(work.conn, query, self.records.base_url)).matches:
            for part in message.content.get("partOf", []):
                threads.setdefault(part.get("reference", "").removeprefix("Task/"), []).append(message)
        return threads

    def _answers(self, tasks: list[Stored], rows: dict[str, WorklistRow], threads: dict[str, list[Stored]],
                 found: Queues) -> None:
        for task in tasks:
            lab = (task.content.get("owner") or {}).get("reference")
            thread = [m.content for m in threads.get(task.id, [])]
            if thread and (thread[-1].get("sender") or {}).get("reference") != lab:
                last = thread[-1]
                text = next((p.get("contentString", "") for p in last.get("payload", [])), "")
                found.items[ANSWERS].append(_waiting(rows[task.id], text, _sent(last)))


def _waiting(row: WorklistRow, detail: str, since: datetime) -> Waiting:
    return Waiting(row.task_id, row.requisition_value, row.patient_name, detail, since)


def _sent(message: dict[str, Any]) -> datetime:
    return date_range(message["sent"])[0] if message.get("sent") else OLDEST
