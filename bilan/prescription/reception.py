"""The lab's front desk: find a received prescription, check the patient's identity against
the lab's files, import it as the lab's order (accession number, samples, labels), then move
the order along. Every step reads and writes in one audited transaction."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bilan import french
from bilan.auth import access, policy
from bilan.auth.caller import Caller
from bilan.fhir.dates import instant
from bilan.fhir.outcomes import Conflict, FhirError, Invalid, Issue
from bilan.fhir.query import parse_search
from bilan.prescription import directory, display, identity, patient_links, tracking, transfer, worklist
from bilan.prescription import order as lab_order
from bilan.prescription.display import Exam
from bilan.prescription.identity import Comparison, Traits
from bilan.prescription.labels import Label
from bilan.prescription.order import OrderState
from bilan.prescription.practitioners import display_name
from bilan.prescription.transfer import SentTube, TransferSlip
from bilan.prescription.worklist import WorklistRow
from bilan.records.pipeline import Denied, Work
from bilan.records.service import Records, new_id
from bilan.storage import catalogue
from bilan.storage import search as store_search
from bilan.storage.compartments import owned_by
from bilan.storage.counters import next_value
from bilan.storage.repository import Repository, Stored, Write

NEW_FILE = "new"
_LAB_NUMBER = re.compile(r"^(\d{6}-\d{4})(?:-\d{2})?$")  # accession "261124-0007", tube "261124-0007-02"


def is_lab_number(text: str) -> bool:
    """Whether the text is one of the lab's own numbers (an accession number or a tube's)."""
    return _LAB_NUMBER.match(text.strip()) is not None


@dataclass(frozen=True)
class Candidate:
    """A patient file of the lab that may be the prescription's patient."""

    reference: str
    number: str
    traits: Traits
    comparisons: list[Comparison]

    @property
    def differences(self) -> int:
        return sum(not c.same for c in self.comparisons if c.trait)


@dataclass(frozen=True)
class Sample:
    barcode: str
    tube: str
    exams: tuple[str, ...]
    collected: str | None
    partner: str = ""  # the partner lab it is sent to, by name; "" when the lab does its exams


@dataclass(frozen=True)
class Order:
    task_id: str
    accession: str
    status: str
    status_label: str
    reason: str
    lab_file: str
    lab_file_number: str
    lab_traits: Traits
    samples: list[Sample]  # the tubes to draw (or drawn) for exams still asked
    state: OrderState = OrderState((), ())

    @property
    def open(self) -> bool:
        return self.status in tracking.NEXT

    @property
    def exams(self) -> tuple[Exam, ...]:
        """The exams to collect, once the biologist's adaptations apply."""
        return self.state.exams

    @property
    def reprint(self) -> list[tuple[str, str]]:
        """(barcode, what changed) of the labels to print again; [] when they are up to date."""
        return self.state.reprint

    @property
    def to_collect(self) -> bool:
        """A tube is still to draw (a new one after the first samples, or all of them)."""
        return self.status in ("accepted", "in-progress") and any(not s.collected for s in self.samples)

    @property
    def sent(self) -> bool:
        """Tubes go to a partner lab that bilan's directory names: a transfer slip can be made."""
        return any(t.partner for t in self.state.printable)


@dataclass(frozen=True)
class PrescriptionFile:
    """Everything the front desk shows of one prescription."""

    row: WorklistRow
    task: Stored
    patient: Traits
    prescriber: str
    prescriber_place: str
    authored: str
    exams: list[Exam]
    context: list[tuple[str, str]]
    candidates: list[Candidate]
    order: Order | None

    @property
    def urgent(self) -> bool:
        return any(e.urgent for e in self.exams)

    @property
    def to_forward(self) -> list[Exam]:
        """Exams the lab does not perform: to send on to its partner lab (once imported, those
        still asked)."""
        if self.order is not None:
            return self.order.state.forwarded
        return [e for e in self.exams if not e.in_catalogue]

    @property
    def closings(self) -> list[str]:
        """How the lab may still end this prescription: rejected, cancelled, or neither."""
        if self.row.status == "received" and self.row.lab_finess == worklist.NOT_ADDRESSED:
            return []  # the patient may take it to another lab
        status = self.task.content.get("status", "")
        return [s for s in tracking.NEEDS_REASON if s in tracking.NEXT.get(status, ())]

    @property
    def notes(self) -> list[str]:
        return list(dict.fromkeys(n for e in self.exams for n in e.notes))


class Reception:
    def __init__(self, records: Records, partner_finess: str = ""):
        self.records = records
        self.partner_finess = partner_finess  # the lab the exams not in the catalogue are sent to

    async def worklist(self, caller: Caller, text: str = "", status: str | None = None) -> list[WorklistRow]:
        """The lab's prescriptions matching what was typed, newest first; only the one a number
        of the lab's own names (its accession number, a tube's barcode), when it is one."""
        async with self.records.work(caller) as work:
            work.allow("reception", interaction="search-type")
            numbered = await self._by_lab_number(work, caller, text)
            rows = [numbered] if numbered else await worklist.search(work.conn, caller.lab_finess or "", text, status)
            work.note("search-type", patients={r.patient for r in rows},
                      query=f"worklist?status={status or ''}&q={text}")
        return rows

    async def _by_lab_number(self, work: Work, caller: Caller, text: str) -> WorklistRow | None:
        """The order a lab number names: "261124-0007" (accession) or "261124-0007-02" (a tube)."""
        found = _LAB_NUMBER.match(text.strip())
        if found is None:
            return None
        query = parse_search("Task", [("identifier", f"{tracking.ACCESSION}/{caller.lab_finess}|{found.group(1)}")],
                             default_count=2, max_count=2)
        tasks = await store_search.search(work.conn, query, self.records.base_url,
                                          lambda t: access.visible(caller, t))
        return await worklist.by_task(work.conn, tasks.matches[0].id) if len(tasks.matches) == 1 else None

    async def open(self, caller: Caller, task_id: str) -> PrescriptionFile:
        async with self.records.work(caller) as work:
            row = await worklist_row(work, task_id, "read")
            found = await self._file(work.repo, caller, row)
            _note(work, "read", found)
        return found

    async def import_prescription(self, caller: Caller, task_id: str, file_choice: str,
                                  opposes: bool = False) -> None:
        """Turn the prescription into the lab's order, with the patient's opposition to sharing
        their results if they said so. Importing it again (a second agent, a second click)
        changes nothing."""
        async with self.records.work(caller) as work:
            repo = work.repo
            await worklist_row(work, task_id, "update")
            await repo.lock_many([f"worklist:{task_id}"])
            row = await worklist_row(work, task_id, "update")  # as the lock holder left it
            if row.status == "imported":
                return
            if row.status != "received":
                raise Conflict([Issue("Cette prescription a été annulée.", "business-rule")])
            found = await self._file(repo, caller, row)
            now = work.now
            lab_file = await self._lab_file(work, found, file_choice)
            accession = await _accession(repo, caller.lab_finess or "", now)
            task = tracking.with_opposition(tracking.accepted(
                found.task.content, now, await self._lab(repo, caller), caller.lab_finess or "",
                accession, lab_file), opposes)
            # Taking the order is the reception rule's (worklist_row: addressed to this lab or to none),
            # before the order is the lab's to read; what hangs off it is then the lab's own.
            await work.write([Write("Task", found.task.id, task, "PUT", found.task.version_id)],
                             system=True)
            await lab_order.keep_in_step(work, {**task, "id": found.task.id}, caller.lab_finess or "",
                                         await self._partner(repo), system=False)
            await _link(work, lab_file, found.row.patient)
            await worklist.set_status(repo.conn, row.id, "imported", caller.lab_finess)
            _note(work, "read", found)

    async def collect(self, caller: Caller, task_id: str) -> None:
        """The samples were taken: the order is in progress. Once it is, a tube added since (an
        adaptation in effect) is recorded as taken the same way."""
        async with self.records.work(caller) as work:
            found = await self._imported(work, task_id, "update")
            assert found.order is not None
            tubes = [t for t in found.order.state.printable if not t.collected]
            writes = []
            if found.task.content.get("status") != "in-progress" or not tubes:
                task = tracking.moved(found.task.content, "in-progress", work.now)
                writes.append(Write("Task", found.task.id, task, "PUT", found.task.version_id))
            for tube in tubes:
                content = dict(tube.specimen.content, status="available",
                               collection={"collectedDateTime": instant(work.now)})
                writes.append(Write("Specimen", tube.specimen.id, content, "PUT", tube.specimen.version_id))
            await work.write(writes)

    async def close(self, caller: Caller, task_id: str, status: str, reason: str) -> None:
        """Reject or cancel the prescription at the lab, with the reason the prescriber will see."""
        if status not in tracking.NEEDS_REASON:
            raise Invalid([Issue("Action inconnue.", "value", expression="status")])
        async with self.records.work(caller) as work:
            repo = work.repo
            row = await worklist_row(work, task_id, "update")
            if row.status == "received" and row.lab_finess == worklist.NOT_ADDRESSED:
                raise Conflict([Issue(
                    "Cette prescription n'est adressée à aucun laboratoire : le patient peut la "
                    "présenter ailleurs. Importez-la avant de l'annuler.", "business-rule")])
            found = await self._file(repo, caller, row)
            task = tracking.moved(found.task.content, status, work.now, reason)
            if row.status == "received":
                task["owner"] = {"reference": await self._lab(repo, caller)}
            # as for the import: the reception rule (worklist_row) lets the lab close what it may take
            await work.write([Write("Task", found.task.id, task, "PUT", found.task.version_id)],
                             system=True)
            await worklist.set_status(repo.conn, row.id, "cancelled", caller.lab_finess)
            _note(work, "read", found)

    async def labels(self, caller: Caller, task_id: str) -> list[Label]:
        """The labels of the tubes to draw, as the order now stands; handing them out for print
        records the print on each tube (what clears « Étiquettes à réimprimer »)."""
        async with self.records.work(caller) as work:
            found = await self._imported(work, task_id, "read")
            _note(work, "read", found)
            order = found.order
            assert order is not None
            if not order.samples:
                raise Conflict([Issue("Aucun tube à étiqueter : aucun examen n'est plus demandé.",
                                      "business-rule")])
            await work.write(lab_order.printed(order.state, work.now))
        traits = order.lab_traits
        return [Label(barcode=s.barcode, accession=order.accession, patient=traits.name,
                      birth_date=traits.birth_date_fr, sex=identity.SEX_LABELS.get(traits.sex, ""),
                      tube=s.tube, exams=", ".join(s.exams)) for s in order.samples]

    async def transfer_slips(self, caller: Caller, task_id: str) -> list[TransferSlip]:
        """The transfer slip of each partner lab the order sends tubes to."""
        async with self.records.work(caller) as work:
            repo = work.repo
            found = await self._imported(work, task_id, "read")
            _note(work, "read", found)
            order = found.order
            assert order is not None
            sent = [t for t in order.state.printable if t.partner]
            if not sent:
                raise Conflict([Issue("Aucun tube à transmettre à un laboratoire partenaire.", "business-rule")])
            lab = await repo.read_reference(await self._lab(repo, caller))
            partners = {f"Organization/{s.id}": s.content
                        for s in await repo.read_references(dict.fromkeys(t.partner for t in sent)) if s.content}
            if not partners:
                raise Conflict([Issue("Le laboratoire partenaire est introuvable dans l'annuaire.", "not-found")])
        sender = transfer.party(lab.content if lab and lab.content else {})
        request = (("Prescription n°", found.row.requisition_value), ("Dossier de prélèvement n°", order.accession),
                   ("Prescripteur", ", ".join(p for p in (found.prescriber, found.prescriber_place) if p)),
                   ("Prescrit le", french.date(found.authored) if found.authored else ""))
        slips = []
        for partner, content in partners.items():
            tubes = [t for t in sent if t.partner == partner]
            slips.append(TransferSlip(
                accession=order.accession, sender=sender, partner=transfer.party(content),
                patient=_slip_patient(order), request=request,
                tubes=tuple(SentTube(t.barcode, t.tube, tuple(f"{e.label} (LOINC {e.code})" for e in t.exams),
                                     french.datetime(t.collected) if t.collected else "") for t in tubes),
                context=tuple(found.context), notes=tuple(found.notes),
                urgent=any(e.urgent for t in tubes for e in t.exams)))
        return slips

    async def _imported(self, work: Work, task_id: str, interaction: str) -> PrescriptionFile:
        assert work.caller is not None
        found = await self._file(work.repo, work.caller, await worklist_row(work, task_id, interaction))
        if found.order is None:
            raise Conflict([Issue("Importez d'abord la prescription.", "business-rule")])
        return found

    async def _file(self, repo: Repository, caller: Caller, row: WorklistRow) -> PrescriptionFile:
        task = await repo.read("Task", row.task_id)
        if task is None or task.deleted:
            raise tracking.unknown_prescription()
        requests = await _contents(repo, [b["reference"] for b in task.content.get("basedOn", [])])
        entries = await catalogue.orderable(repo.conn, (e for r in requests for e in _codes(r)))
        exams = [display.exam(r, next((entries[c] for c in _codes(r) if c in entries), None))
                 for r in requests]
        context_refs = list(dict.fromkeys(s["reference"] for r in requests
                                          for s in r.get("supportingInfo", []) if s.get("reference")))
        patient = await repo.read_reference(row.patient)
        traits = identity.traits(patient.content if patient and patient.content else {})
        first = requests[0] if requests else {}
        prescriber, place = await _prescriber(repo, (first.get("requester") or {}).get("reference", ""))
        order = await self._order(repo, caller, row, task) if row.status != "received" else None
        return PrescriptionFile(
            row=row, task=task, patient=traits, prescriber=prescriber, prescriber_place=place,
            authored=first.get("authoredOn", ""), exams=exams,
            context=[display.context_item(c) for c in await _contents(repo, context_refs)],
            candidates=await self._candidates(repo, caller, traits) if row.status == "received" else [],
            order=order,
        )

    async def _candidates(self, repo: Repository, caller: Caller, traits: Traits) -> list[Candidate]:
        """The lab's patient files with the same INS, or the same birth name and birth date."""
        searches = []
        if traits.ins:
            searches.append([("identifier", traits.ins)])
        if traits.family and traits.birth_date:
            searches.append([("family", traits.family), ("birthdate", traits.birth_date)])
        mine = owned_by("Patient", policy.owner_key(caller) or "")
        found: dict[str, Stored] = {}
        for params in searches:
            query = parse_search("Patient", params, default_count=20, max_count=20)
            result = await store_search.search(repo.conn, query, self.records.base_url, lambda _t: mine)
            found.update((s.id, s) for s in result.matches)
        return [Candidate(f"Patient/{s.id}", identity.file_number(s.content, caller.lab_finess or ""),
                          identity.traits(s.content),
                          identity.compare(traits, identity.traits(s.content)))
                for s in found.values()]

    async def _order(self, repo: Repository, caller: Caller, row: WorklistRow, task: Stored) -> Order | None:
        content = task.content
        reference = tracking.lab_file_of(content)
        lab_file = await repo.read_reference(reference)
        file_content = lab_file.content if lab_file and lab_file.content else {}
        state = await lab_order.state(repo, self.records.base_url, row.order_lab or caller.lab_finess or "",
                                      content)
        return Order(
            task_id=task.id, accession=tracking.accession_of(content), status=content.get("status", ""),
            status_label=tracking.LABELS.get(content.get("status", ""), ""),
            reason=(content.get("statusReason") or {}).get("text", ""), lab_file=reference,
            lab_file_number=identity.file_number(file_content, row.order_lab or ""),
            lab_traits=identity.traits(file_content),
            samples=[Sample(t.barcode, t.tube, tuple(e.label for e in t.exams), t.collected, t.partner_name)
                     for t in state.printable], state=state)

    async def _lab_file(self, work: Work, found: PrescriptionFile, choice: str) -> str:
        """The lab's patient file for this order: the one the agent confirmed, or a new one.
        Two files are never merged, and a new file is refused when one has the same INS."""
        by_reference = {c.reference: c for c in found.candidates}
        if choice in by_reference:
            return choice
        if choice != NEW_FILE:
            raise Invalid([Issue("Choisissez le dossier patient : un dossier existant proposé, "
                                        "ou un nouveau dossier.", "required", expression="dossier")])
        same_ins = [c for c in found.candidates if found.patient.ins and c.traits.ins == found.patient.ins]
        if same_ins:
            raise Conflict([Issue(
                f"Le dossier n° {same_ins[0].number} porte déjà cet INS : rattachez la prescription "
                "à ce dossier plutôt que d'en créer un second.", "duplicate", expression="dossier")])
        repo, finess = work.repo, (work.caller.lab_finess if work.caller else None) or ""
        patient = await repo.read_reference(found.row.patient)
        number = await _file_number(repo, finess)
        content = identity.lab_file(patient.content if patient and patient.content else {}, finess, number)
        patient_id = new_id()
        await work.write([Write("Patient", patient_id, content, "POST")])
        return f"Patient/{patient_id}"

    async def _lab(self, repo: Repository, caller: Caller) -> str:
        found = await directory.organization_by_finess(repo, self.records.base_url, caller.lab_finess or "")
        if found is None:
            raise Conflict([Issue(f"Le laboratoire (FINESS {caller.lab_finess}) n'est pas "
                                        "enregistré dans bilan.", "not-found")])
        return f"Organization/{found.id}"

    async def _partner(self, repo: Repository) -> dict[str, str] | None:
        """The partner lab, as a tube sent to it names it; None when bilan's directory does not
        hold the one the settings name (the tubes are made all the same, naming no lab)."""
        found = (await directory.organization_by_finess(repo, self.records.base_url, self.partner_finess)
                 if self.partner_finess else None)
        if found is None:
            return None
        return {"reference": f"Organization/{found.id}", "display": found.content.get("name", "")}



async def worklist_row(work: Work, task_id: str, interaction: str, action: str = "reception") -> WorklistRow:
    """The prescription's row at the lab's desk, once the caller may take `action` on it
    (policy.ACTIONS) and the reception rule lets them work on it: addressed to their lab or to
    none, until another lab imports it."""
    caller = work.caller
    assert caller is not None  # the desk is for signed-in lab staff
    work.allow(action, [f"Task/{task_id}"], interaction)
    row = await worklist.by_task(work.conn, task_id)
    if row is None:
        raise tracking.unknown_prescription()
    try:
        access.check_reception(caller, row.lab_finess, row.order_lab)
    except FhirError as error:
        raise Denied(caller, interaction, error, [f"Task/{task_id}"], [row.patient]) from None
    return row


async def _link(work: Work, lab_file: str, prescribed: str) -> None:
    """The identity check's decision, kept: the lab's file links to the prescription's Patient
    (patient_links.py). Written on the lab's own file only, once the order is the lab's (the
    prescription's Patient is then the lab's to read, even when it was addressed to no lab).
    Two imports into one file at once (two prescriptions of one person) take turns. A file the
    lab made through the FHIR API has no file number of the lab's: it gets one here, as the
    report names the patient by it (a CDA's patientRole/id)."""
    await work.repo.lock_many([lab_file])
    stored = await work.repo.read_reference(lab_file)
    if stored is None or stored.content is None:
        return
    content = patient_links.linked(stored.content, prescribed) if prescribed else None
    finess = (work.caller.lab_finess if work.caller else None) or ""
    if not identity.file_number(content or stored.content, finess):
        content = identity.numbered(content or stored.content, finess, await _file_number(work.repo, finess))
    if content is not None:
        await work.write([Write("Patient", stored.id, content, "PUT", stored.version_id)])


async def _file_number(repo: Repository, lab_finess: str) -> str:
    """The lab's next patient file number."""
    return f"P{await next_value(repo.conn, f'lab-file:{lab_finess}'):07d}"


def _note(work: Work, interaction: str, found: PrescriptionFile) -> None:
    """What the desk showed of the prescription, for the audit trail (writes note themselves)."""
    patients = {found.row.patient} | ({found.order.lab_file} if found.order and found.order.lab_file else set())
    work.note(interaction, patients=patients,
              touched=[f"Task/{found.task.id}", *(e.reference for e in found.exams)])


async def _contents(repo: Repository, references: list[str]) -> list[dict[str, Any]]:
    return [s.content for s in await repo.read_references(references) if s.content]


def _codes(request: dict[str, Any]) -> list[str]:
    return [c["code"] for c in (request.get("code") or {}).get("coding", []) if c.get("code")]


async def _prescriber(repo: Repository, reference: str) -> tuple[str, str]:
    """The prescriber's name and practice, through their PractitionerRole."""
    async def content(ref: str) -> dict[str, Any]:
        found = await repo.read_reference(ref)
        return found.content if found and found.content else {}

    found, place = await content(reference), ""
    if found.get("resourceType") == "PractitionerRole":
        place = (await content((found.get("organization") or {}).get("reference", ""))).get("name", "")
        found = await content((found.get("practitioner") or {}).get("reference", ""))
    return display_name(found) or "Prescripteur inconnu", place


async def _accession(repo: Repository, lab_finess: str, now: datetime) -> str:
    """The order's number: the lab's calendar day and a daily sequence, e.g. 261124-0007."""
    day = french.in_paris(now).strftime("%y%m%d")  # the lab's calendar day
    return f"{day}-{await next_value(repo.conn, f'accession:{lab_finess}:{day}'):04d}"


async def order_specimens(repo: Repository, base_url: str, caller: Caller,
                          task: dict[str, Any]) -> list[Stored]:
    """The order's tubes, as the caller's lab stored them (for its prescribed and adapted exams)."""
    return await lab_order.order_specimens(repo, base_url, caller.lab_finess or "", task)


def _slip_patient(order: Order) -> tuple[tuple[str, str], ...]:
    """The patient's traits on a transfer slip: the INS only under a qualified identity."""
    traits = order.lab_traits
    return (("Nom de naissance", traits.family.upper()), ("Prénoms", " ".join(traits.given)),
            ("Sexe", identity.SEX_LABELS.get(traits.sex, "")), ("Né(e) le", traits.birth_date_fr),
            ("INS", traits.ins if traits.status == "QUAL" else ""),
            ("Identité", traits.status_label), ("Dossier du laboratoire n°", order.lab_file_number))
