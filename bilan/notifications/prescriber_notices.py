"""News of one order to its prescriber, grouped: one e-mail per order, address and window.

The lab's messages, its adaptations and the reports it issues each make a notice, queued in
the transaction of the change (the outbox). The first notice of an order to an address opens
a group: an e-mail row due `window` seconds later. Notices of the same order to the same
address that come before it is due join that row, which is written again; one that comes
later opens the next group. An urgent notice (an urgent message, a critical value) makes its
group due at once, carrying what was waiting with it.

A row joins a group only while it is untried and unleased, read under a row lock
(bilan/storage/outbox.py `waiting`): either a notice joins before a worker claims the row, or
the worker claims it first and the notice opens a new group; no notice is sent twice nor
lost.

The mail says which patient, which lab, what happened in order, how many results are out of
range and whether something is masked to the patient (counts, no values), how to reach the
biologist, and the link to the prescription's page.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bilan import french
from bilan.fhir.query import parse_search
from bilan.notifications.outbox import EMAIL, encoded_attachments
from bilan.notifications.outbox import enqueue as enqueue_row
from bilan.prescription.identity import traits
from bilan.storage import outbox as store
from bilan.storage import search as store_search
from bilan.storage.repository import Repository


@dataclass(frozen=True)
class Notice:
    """One piece of news about the order, as the mail lists it."""

    title: str  # "Message", "Adaptation de la prescription", "Compte rendu d'examens biologiques"...
    text: str
    urgent: bool = False
    abnormal: int | None = None  # a report's results out of their reference range
    masked: int = 0  # a report's results hidden from the patient until the prescriber releases them
    resource: str | None = None  # what the notice is about (a Communication, a DocumentReference)
    # A report's documents as (file name, media type, content): the latest report's travel.
    attachments: tuple[tuple[str, str, bytes], ...] = field(default=())


@dataclass(frozen=True)
class Order:
    """What every mail about the order says, read when its group opens."""

    task: str  # "Task/id"
    number: str  # the prescription number
    patient: str  # "DUPONT Marie, née le 02/11/1962"
    lab: str
    contact: str  # how to reach the biologist
    link: str  # the prescription's page for the prescriber


class PrescriberNotices:
    def __init__(self, web_root: str, base_url: str, window: float):
        self.web_root = web_root.rstrip("/")
        self.base_url = base_url
        self.window = timedelta(seconds=window)

    async def notify(self, repo: Repository, to: str, task: str, notice: Notice, now: datetime) -> int:
        """Queue `notice` for the prescriber at address `to`, in the group of this order; the
        outbox row's id. The row's `resource` is its latest notice's."""
        for item in await store.waiting(repo.conn, EMAIL, to, task, now):
            group = item.payload.get("notice")
            if group is None:
                continue
            notices = [*group["notices"], _stored(notice)]
            due = now if notice.urgent else item.next_attempt_at
            payload = _payload(group["order"], notices, _attachments(item.payload, notice))
            if await store.rewrite_waiting(repo.conn, item, payload, resource=notice.resource or item.resource,
                                           due=due):
                return item.id
        order = asdict(await self._order(repo, task))
        payload = _payload(order, [_stored(notice)], _attachments({}, notice))
        return await enqueue_row(repo.conn, EMAIL, to, payload, resource=notice.resource, about=task,
                                 now=now, due=now if notice.urgent else now + self.window)

    async def _order(self, repo: Repository, task: str) -> Order:
        found = await repo.read_reference(task)
        content = found.content if found and found.content else {}
        patient = await repo.read_reference((content.get("for") or {}).get("reference", ""))
        lab_ref = (content.get("owner") or {}).get("reference", "")
        lab = await repo.read_reference(lab_ref) if lab_ref.startswith("Organization/") else None
        lab_content = lab.content if lab and lab.content else {}
        return Order(task, (content.get("groupIdentifier") or {}).get("value", ""),
                     _patient(patient.content if patient and patient.content else {}),
                     lab_content.get("name", "Laboratoire"),
                     await self._contact(repo, lab_ref, lab_content),
                     f"{self.web_root}/prescripteur/prescriptions/{task.removeprefix('Task/')}")

    async def _contact(self, repo: Repository, lab_ref: str, lab: dict[str, Any]) -> str:
        """The lab's phone and secure mail, else those of a role in the lab (the directory's)."""
        said = _telecom(lab.get("telecom", []))
        if said or not lab_ref.startswith("Organization/"):
            return said
        query = parse_search("PractitionerRole", [("organization", lab_ref)], default_count=10, max_count=10)
        found = await store_search.search(repo.conn, query, self.base_url)
        return next((s for s in (_telecom(r.content.get("telecom", [])) for r in found.matches) if s), "")


def _patient(patient: dict[str, Any]) -> str:
    known = traits(patient)
    name = french.person_name(known.family, known.given[:1]) or "Patient"
    born = {"female": "née", "male": "né"}.get(known.sex, "né(e)")
    return f"{name}, {born} le {french.date(known.birth_date)}" if known.birth_date else name


def _telecom(telecom: list[dict[str, Any]]) -> str:
    kinds = {"phone": "téléphone", "email": "messagerie sécurisée"}
    return ", ".join(f"{kinds[t['system']]} {t['value']}" for t in telecom
                     if t.get("system") in kinds and t.get("value"))


def _stored(notice: Notice) -> dict[str, Any]:
    return {"title": notice.title, "text": notice.text, "urgent": notice.urgent,
            "abnormal": notice.abnormal, "masked": notice.masked}


def _attachments(payload: dict[str, Any], notice: Notice) -> list[dict[str, str]]:
    if notice.attachments:  # a newer report's documents replace the older one's
        return encoded_attachments(notice.attachments)
    return list(payload.get("attachments") or [])


def _payload(order: dict[str, Any], notices: list[dict[str, Any]],
             attachments: list[dict[str, str]]) -> dict[str, Any]:
    subject, text = mail(order, notices)
    payload: dict[str, Any] = {"subject": subject, "text": text,
                               "notice": {"order": order, "notices": notices}}
    if attachments:
        payload["attachments"] = attachments
    return payload


def mail(order: dict[str, Any], notices: list[dict[str, Any]]) -> tuple[str, str]:
    """The subject and text of a group's mail."""
    urgent = "URGENT — " if any(n["urgent"] for n in notices) else ""
    titles = ", ".join(dict.fromkeys(n["title"] for n in notices))
    subject = f"bilan — {urgent}{titles} (prescription n° {order['number']})"
    lines = [f"Du nouveau au sujet de la prescription n° {order['number']} :", "",
             f"Patient : {order['patient']}", f"Laboratoire : {order['lab']}", ""]
    lines += [f"{n}. {notice['title']}{' (URGENT)' if notice['urgent'] else ''} :\n{notice['text']}\n"
              for n, notice in enumerate(notices, start=1)]
    reports = [n for n in notices if n["abnormal"] is not None]
    if reports:
        latest = reports[-1]
        lines.append(f"Résultats hors des valeurs de référence : {latest['abnormal']}."
                     if latest["abnormal"] else "Aucun résultat hors des valeurs de référence.")
        if latest["masked"]:
            plural = "s" if latest["masked"] > 1 else ""
            lines.append(f"Masqué au patient : {latest['masked']} résultat{plural}.")
        lines.append("")
    if order["contact"]:
        lines.append(f"Joindre le biologiste : {order['contact']}.")
    lines.append(f"Répondre, consulter : {order['link']}")
    return subject, "\n".join(lines) + "\n"
