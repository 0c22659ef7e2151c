"""The conversation between the lab and the prescriber about one prescription, and the
biologist's adaptations that open or extend it.

A thread is the FHIR Communications `partOf` the prescription's Task. Whoever writes them
(the web pages, the prescriber's software through the FHIR API), the same guard checks them
and completes them, and the same observer acts on them once stored: an answer to an
adaptation puts it in effect (and the order's tubes follow: order.py) or drops it, and a
message to a prescriber is mailed to them.
"""

from dataclasses import dataclass
from typing import Any

from bilan.auth import policy
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import instant, utc_now
from bilan.fhir.outcomes import Conflict, FhirError, Invalid, Issue
from bilan.fhir.query import parse_search
from bilan.fhir.references import literal
from bilan.notifications import outbox
from bilan.notifications.prescriber_notices import Notice, PrescriberNotices
from bilan.prescription import adaptation, tracking, worklist
from bilan.prescription.identity import Traits, traits
from bilan.prescription.order import adapted_requests, keep_in_step
from bilan.records.pipeline import Work
from bilan.records.service import Records, new_id
from bilan.storage import catalogue
from bilan.storage import search as store_search
from bilan.storage.catalogue import Entry
from bilan.storage.repository import Repository, Stored, Write

KINDS_SYSTEM = "https://bilan.sante.fr/fhir/CodeSystem/message-kind"
KINDS = {"message": "Message", "adaptation": "Adaptation de la prescription",
         "agreement": "Accord", "disagreement": "Désaccord",
         # A critical result: the biologist's call traced, and the urgent word to the prescriber
         # (bilan/results/desk/critical.py).
         "critical-call": "Appel pour valeur critique", "critical-value": "Valeur critique"}
CRITICAL_KINDS = ("critical-call", "critical-value")
URGENT = ("urgent", "asap", "stat")  # Communication.priority above routine: "URGENT" in the mail
ANSWER_KINDS = {"agreement": True, "disagreement": False}
PENDING_LABEL = "Adaptation en attente de l'accord du prescripteur"


@dataclass(frozen=True)
class Message:
    id: str
    sent: str
    from_lab: bool
    kind: str
    text: str
    in_response_to: str | None

    @property
    def kind_label(self) -> str:
        return KINDS.get(self.kind, self.kind)


@dataclass(frozen=True)
class Change:
    """One adaptation: what was asked, what the lab does instead, why, and the answer."""

    id: str
    change: str
    asked: str
    done: str
    reason: str
    note: str
    status: str
    answer: str
    proceeded: bool

    @property
    def change_label(self) -> str:
        return adaptation.CHANGES.get(self.change, self.change)

    @property
    def answer_label(self) -> str:
        return adaptation.ANSWERS.get(self.answer, self.answer)


@dataclass(frozen=True)
class Conversation:
    task_id: str
    requisition: str
    status: str  # the Task's, as the prescriber reads it
    patient: Traits
    asked: list[tuple[str, str]]  # (ServiceRequest reference, label) of the prescribed exams
    messages: list[Message]
    changes: list[Change]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.answer == "pending"]


def kind_of(communication: dict[str, Any]) -> str:
    return next((c.get("code") for cat in communication.get("category", [])
                 for c in cat.get("coding", []) if c.get("system") == KINDS_SYSTEM), "message")


def _text(communication: dict[str, Any]) -> str:
    return "\n".join(p["contentString"] for p in communication.get("payload", []) if p.get("contentString"))


def _invalid(message: str, field: str, kind: type[FhirError] = Invalid) -> FhirError:
    return kind([Issue(message, "business-rule", expression=field)])


class Messaging:
    def __init__(self, records: Records, mail_link: str, notice_window: float = 60):
        self.records = records
        self.mail_link = mail_link  # bilan's web root, for the links in e-mails
        self.notices = PrescriberNotices(mail_link, records.base_url, notice_window)
        self.records.guards.setdefault("Communication", []).append(self.guard)

    async def conversation(self, caller: Caller, task_id: str) -> Conversation:
        async with self.records.work(caller) as work:
            task = await tracking.order_task(work, task_id, "read")
            found = await self._thread(work.repo, task)
            work.note("read", patients=patients_of(task.content), touched=[f"Task/{task_id}"])
        return found

    async def deliveries(self, caller: Caller, task_id: str) -> list[Any]:
        """What was sent, or is still to send, about this prescription (webhooks to the
        prescriber's software, e-mails): for the lab, who must know what did not arrive."""
        async with self.records.work(caller) as work:
            work.allow("deliveries", [f"Task/{task_id}"])
            await tracking.order_task(work, task_id, "read")
            return await outbox.for_about(work.conn, [f"Task/{task_id}"])

    async def send(self, caller: Caller, task_id: str, text: str, kind: str = "message",
                   about: list[str] | None = None, in_response_to: str | None = None) -> None:
        """A message in the thread (the guard fills in sender, recipient and patient)."""
        if not text.strip():
            raise _invalid("Écrivez votre message.", "payload")
        message: dict[str, Any] = {
            "resourceType": "Communication", "status": "completed",
            "category": [{"coding": [{"system": KINDS_SYSTEM, "code": kind, "display": KINDS[kind]}]}],
            "partOf": [{"reference": f"Task/{task_id}"}],
            "about": [{"reference": r} for r in [f"Task/{task_id}", *(about or [])]],
            "payload": [{"contentString": text.strip()}],
        }
        if in_response_to:
            message["inResponseTo"] = [{"reference": in_response_to}]
        await self.records.create(caller, message)

    async def answer(self, caller: Caller, task_id: str, change_id: str, agreed: bool, text: str) -> None:
        """The prescriber agrees or disagrees with one adaptation."""
        kind = "agreement" if agreed else "disagreement"
        await self.send(caller, task_id, text.strip() or KINDS[kind], kind,
                        about=[f"ServiceRequest/{change_id}"])

    async def adapt(self, caller: Caller, task_id: str, change: str, original: str, local_code: str,
                    reason: str, note: str, proceed: bool) -> None:
        """The biologist adds, cancels or replaces an exam; the prescriber is told at once."""
        async with self.records.work(caller) as work:
            repo = work.repo
            work.allow("adapt", [f"Task/{task_id}"], "update")
            task = await tracking.order_task(work, task_id, "update")
            content = task.content
            if content.get("status") not in ("accepted", "in-progress"):
                raise _invalid("Importez la prescription avant de l'adapter.", "Task.status", Conflict)
            originals = [b["reference"] for b in content.get("basedOn", [])]
            prescribed = await _prescribed(repo, originals, original) if change != "add" else None
            code = await _catalogue_code(repo, local_code) if change != "cancel" else None
            request = adaptation.lab_request(prescribed, originals, change, code, reason, note, proceed,
                                             content.get("owner", {}).get("reference", ""), caller.label)
            request_id = new_id()
            await work.write([Write("ServiceRequest", request_id, request, "POST")])
            message = _adaptation_message(content, request, prescribed, proceed)
            await work.write([Write("Communication", new_id(), {
                **message, "about": [{"reference": f"Task/{task_id}"},
                                     {"reference": f"ServiceRequest/{request_id}"}],
            }, "POST")])
            if proceed:  # in effect at once: the tubes follow
                await keep_in_step(work, content, caller.lab_finess or "")
            await self._mark_pending(work, task_id)

    async def guard(self, repo: Repository, caller: Caller | None, message: dict[str, Any]) -> dict[str, Any]:
        """A Communication belongs to the thread of a Task its author may see; an answer is the
        prescriber's, to an adaptation still waiting. Fills in sender, recipient, patient, time."""
        tasks = [r["reference"] for r in message.get("partOf", []) if r.get("reference", "").startswith("Task/")]
        if len(tasks) != 1:
            raise _invalid("A message belongs to the thread of one prescription: partOf names its Task",
                           "Communication.partOf")
        task = await repo.read_reference(tasks[0])
        if task is None or task.deleted:
            raise _invalid(f"{tasks[0]} does not exist", "Communication.partOf")
        await self.records.check_read(repo, caller, "create", task, "Communication.partOf[0]")
        kind, content = kind_of(message), task.content
        if kind in ANSWER_KINDS:
            await self._check_answer(repo, caller, message, content)
        elif kind == "adaptation" and caller is not None:
            policy.check_action(caller, "adapt", "Communication.category")
        elif kind in CRITICAL_KINDS and caller is not None:
            policy.check_action(caller, "call-critical", "Communication.category")
        from_lab = caller.for_lab if caller is not None else kind == "adaptation"
        lab, prescriber = content.get("owner"), content.get("requester")
        other = prescriber if from_lab else lab  # no lab yet: a prescription nobody imported
        defaults = {"subject": content.get("for"), "sent": instant(utc_now()),
                    "recipient": [other] if other else None}
        completed = {**{k: v for k, v in defaults.items() if v}, **message}
        if caller is not None:  # who writes is who sends
            completed["sender"] = lab if from_lab else prescriber
        return completed

    async def on_saved(self, work: Work, stored: list[Stored]) -> None:
        """Act on new messages: an answer applies to its adaptation; a message is mailed to its
        recipient (the prescriber, with the order's other news: prescriber_notices.py; or the
        lab when the prescriber writes)."""
        for item in stored:
            if item.resource_type != "Communication" or item.version_id != 1 or not item.content:
                continue
            kind = kind_of(item.content)
            if kind in ANSWER_KINDS:
                await self._apply_answer(work, item.content, ANSWER_KINDS[kind])
            await self._mail(work.repo, item)

    async def _check_answer(self, repo: Repository, caller: Caller | None, message: dict[str, Any],
                            task: dict[str, Any]) -> None:
        if caller is not None:
            policy.check_action(caller, "answer-adaptation", "Communication.category")
        changes = [r for r in await self._about_changes(repo, message)
                   if set(_based_on(r)) & {b["reference"] for b in task.get("basedOn", [])}]
        if len(changes) != 1:
            raise _invalid("An answer is about one adaptation of this prescription (about: its "
                           "ServiceRequest)", "Communication.about")
        if adaptation.answer_of(changes[0].content) != "pending":
            raise _invalid("Cette adaptation a déjà reçu une réponse.", "Communication.about", Conflict)

    async def _apply_answer(self, work: Work, message: dict[str, Any], agreed: bool) -> None:
        """The prescriber's answer (checked by the guard) applies to the lab's adaptation."""
        for change in await self._about_changes(work.repo, message):
            await work.write([Write("ServiceRequest", change.id, adaptation.answered(change.content, agreed),
                                    "PUT", change.version_id)], system=True)
        for part in message.get("partOf", []):
            task_id = part.get("reference", "").removeprefix("Task/")
            await self._tubes_follow(work, task_id)
            await self._mark_pending(work, task_id)

    async def _tubes_follow(self, work: Work, task_id: str) -> None:
        """An answer may put a change in effect: the order's tubes follow, and stay the lab's."""
        task = await work.repo.read("Task", task_id)
        row = await worklist.by_task(work.conn, task_id)
        if task is not None and not task.deleted and row is not None and row.order_lab:
            await keep_in_step(work, task.content, row.order_lab)

    async def _about_changes(self, repo: Repository, message: dict[str, Any]) -> list[Stored]:
        keys = [k for k in (literal(r.get("reference", "")) for r in message.get("about", []))
                if k and k[0] == "ServiceRequest"]
        found = await repo.read_many(keys)
        return [s for s in found.values() if s.content and adaptation.is_adaptation(s.content)]

    async def _mark_pending(self, work: Work, task_id: str) -> None:
        """The Task says whether an adaptation waits for the prescriber (bilan's bookkeeping)."""
        repo = work.repo
        task = await repo.read("Task", task_id)
        if task is None or task.deleted:
            return
        pending = any(adaptation.answer_of(s.content) == "pending"
                      for s in await adapted_requests(repo, self.records.base_url, task.content))
        label = PENDING_LABEL if pending else tracking.LABELS.get(task.content.get("status", ""), "")
        if (task.content.get("businessStatus") or {}).get("text") != label:
            content = {**task.content, "businessStatus": {"text": label},
                       "lastModified": instant(utc_now())}
            await work.write([Write("Task", task.id, content, "PUT", task.version_id)], system=True)

    async def _mail(self, repo: Repository, message: Stored) -> None:
        content = message.content
        for recipient in content.get("recipient", []):
            address = await mail_address(repo, recipient.get("reference", ""))
            if not address:
                continue
            task = next((p["reference"] for p in content.get("partOf", [])), "")
            if not recipient.get("reference", "").startswith("Organization/"):  # to the prescriber
                await self.notices.notify(repo, address, task, Notice(
                    KINDS.get(kind_of(content), "Message"), _text(content),
                    urgent=content.get("priority") in URGENT, resource=f"Communication/{message.id}"),
                    utc_now())
                continue
            number = await _requisition(repo, task)
            urgent = "URGENT — " if content.get("priority") in URGENT else ""
            await outbox.enqueue_mail(
                repo.conn, address, f"bilan — {urgent}{KINDS.get(kind_of(content), 'Message')} "
                                    f"(prescription n° {number})",
                f"Le prescripteur vous a écrit au sujet de la prescription n° {number} :\n\n"
                f"{_text(content)}\n\nRépondre : {self.mail_link}/reception/prescriptions/"
                f"{task.removeprefix('Task/')}\n",
                resource=f"Communication/{message.id}", about=task or None, now=utc_now())

    async def _thread(self, repo: Repository, task: Stored) -> Conversation:
        content = task.content
        query = parse_search("Communication", [("part-of", f"Task/{task.id}"), ("_sort", "sent")],
                             default_count=500, max_count=500)
        result = await store_search.search(repo.conn, query, self.records.base_url)
        lab = (content.get("owner") or {}).get("reference")
        messages = [Message(s.id, s.content.get("sent", ""),
                            s.content.get("sender", {}).get("reference") == lab,
                            kind_of(s.content), _text(s.content),
                            next((r["reference"] for r in s.content.get("inResponseTo", [])), None))
                    for s in result.matches]
        requests = await adapted_requests(repo, self.records.base_url, content)
        originals = [b["reference"] for b in content.get("basedOn", [])]
        asked = {s.id: s.content for s in await repo.read_references(originals) if s.content}
        patient = await repo.read_reference((content.get("for") or {}).get("reference", ""))
        return Conversation(
            task.id, (content.get("groupIdentifier") or {}).get("value", ""),
            (content.get("businessStatus") or {}).get("text", ""),
            traits(patient.content if patient and patient.content else {}),
            [(f"ServiceRequest/{i}", _label(r)) for i, r in asked.items()], messages,
            [_change(s, asked) for s in requests])

    async def orderables(self) -> list[Entry]:
        """The catalogue's orderable exams (what a biologist may add or put instead)."""
        async with self.records.work(None) as work:
            return await catalogue.orderables(work.conn)


def _based_on(request: Stored) -> list[str]:
    return [b.get("reference", "") for b in request.content.get("basedOn", [])]


def _change(stored: Stored, asked: dict[str, dict[str, Any]]) -> Change:
    request = stored.content
    change = adaptation.change_of(request)
    base = [asked[r.removeprefix("ServiceRequest/")] for r in _based_on(stored)
            if r.removeprefix("ServiceRequest/") in asked]
    label = _label(request)
    return Change(
        id=stored.id, change=change, asked=_label(base[0]) if change != "add" and base else "—",
        done="—" if change == "cancel" else label,
        reason=next((c.get("text") for c in request.get("reasonCode", [])), ""),
        note=next((n.get("text", "") for n in request.get("note", [])), ""),
        status=request.get("status", ""), answer=adaptation.answer_of(request),
        proceeded=adaptation.proceeded(request))


def _label(request: dict[str, Any]) -> str:
    concept = request.get("code") or {}
    return concept.get("text") or next((c.get("display") for c in concept.get("coding", [])), "Examen")


def _adaptation_message(task: dict[str, Any], request: dict[str, Any], prescribed: dict[str, Any] | None,
                        proceed: bool) -> dict[str, Any]:
    change = adaptation.change_of(request)
    what = {"add": f"ajout de l'examen « {_label(request)} »",
            "cancel": f"annulation de l'examen « {_label(prescribed or {})} »",
            "replace": f"remplacement de « {_label(prescribed or {})} » par « {_label(request)} »"}[change]
    reason = next((c.get("text") for c in request.get("reasonCode", [])), "")
    note = next((f" {n['text']}" for n in request.get("note", []) if n.get("text")), "")
    then = ("Réalisé sans attendre votre réponse (urgence) ; dites-nous si vous n'êtes pas d'accord."
            if proceed else "Merci de nous indiquer votre accord.")
    return {
        "resourceType": "Communication", "status": "completed",
        "category": [{"coding": [{"system": KINDS_SYSTEM, "code": "adaptation", "display": KINDS["adaptation"]}]}],
        "partOf": [{"reference": f"Task/{task['id']}"}],
        "payload": [{"contentString": f"Adaptation de la prescription : {what}. Motif : {reason}.{note} {then}"}],
    }


async def _prescribed(repo: Repository, originals: list[str], original: str) -> dict[str, Any]:
    if original not in originals:
        raise _invalid("Choisissez l'examen prescrit concerné.", "original")
    found = await repo.read_reference(original)
    if found is None or found.deleted:
        raise _invalid("Choisissez l'examen prescrit concerné.", "original")
    return found.content


async def _catalogue_code(repo: Repository, local_code: str) -> tuple[str, str]:
    entry = await catalogue.entry(repo.conn, local_code)
    if entry is None:
        raise _invalid("Choisissez l'examen du catalogue.", "code")
    return entry["loinc"], entry["label_fr"]


async def mail_address(repo: Repository, reference: str) -> str | None:
    """The e-mail (MSSanté) address of a Practitioner, of a PractitionerRole and then its
    Practitioner, or of an Organization (the lab's)."""
    if not reference.startswith(("Practitioner/", "PractitionerRole/", "Organization/")):
        return None
    found = await repo.read_reference(reference)
    content = found.content if found and found.content else {}
    for telecom in content.get("telecom", []):
        if telecom.get("system") == "email" and telecom.get("value"):
            return str(telecom["value"])
    if reference.startswith("PractitionerRole/"):
        return await mail_address(repo, (content.get("practitioner") or {}).get("reference", ""))
    return None


async def _requisition(repo: Repository, task: str) -> str:
    found = await repo.read_reference(task)
    return (found.content.get("groupIdentifier") or {}).get("value", "") if found else ""
