"""Notices to the patient: a report of hers became available in her space (issued and not
masked, or its mask lifted), or a corrected version replaced it.

An observer of every write (bilan/records/pipeline.py) queues them in the outbox, in the
transaction that made the report visible: one mail per report version and address, never
one per result, none while the report is masked. A notice says that a report is there (or
was corrected), which lab, and where to read it: no exam, no value, no date of a sample.
It goes to the patient's MSSanté citizen mailbox when her identity is qualified (a report is
shared in her space only then) and to the address she set in her space (patient_address.py).
Reports imported from elsewhere are not announced: their own lab tells her."""

from typing import Any

from bilan.notifications.outbox import enqueue_mail
from bilan.notifications.patient_address import chosen_email, citizen_mailbox
from bilan.prescription import identity
from bilan.records.pipeline import Work
from bilan.results import masking
from bilan.storage.repository import Repository, Stored

CORRECTED = "amended"  # a corrected version's docStatus (bilan/results/issuing/documents.py)


class PatientNotices:
    def __init__(self, web_root: str):
        self.link = f"{web_root.rstrip('/')}/patient/"

    async def on_saved(self, work: Work, stored: list[Stored]) -> None:
        for version in stored:
            if version.resource_type == "DocumentReference" and await newly_visible(work.repo, version):
                await self._notify(work, version)

    async def _notify(self, work: Work, version: Stored) -> None:
        content = version.content
        addresses = await notice_addresses(work.repo, (content.get("subject") or {}).get("reference", ""))
        if not addresses:
            return
        lab = await _lab_name(work.repo, content.get("custodian"))
        subject, text = notice(lab, self.link, corrected=content.get("docStatus") == CORRECTED)
        for address in addresses:
            await enqueue_mail(work.conn, address, subject, text, resource=f"DocumentReference/{version.id}",
                               about=_task_of(content), now=work.now)


async def newly_visible(repo: Repository, version: Stored) -> bool:
    """Whether this version of a lab's issued report is the one that shows it to the patient:
    the current version, seen by her, and not seen by her in its previous version."""
    content = version.content
    if version.deleted or content.get("status") != "current" or _task_of(content) is None:
        return False
    if masking.SEEN_BY_PATIENT not in masking.tags_of(content):
        return False
    if version.version_id == 1:
        return True
    before = await repo.read_version("DocumentReference", version.id, version.version_id - 1)
    return before is None or masking.SEEN_BY_PATIENT not in masking.tags_of(before.content)


async def notice_addresses(repo: Repository, patient: str) -> list[str]:
    """Where the patient of this file is told: her MSSanté citizen mailbox (qualified INS
    only) and the address she chose."""
    found = await repo.read_reference(patient) if patient.startswith("Patient/") else None
    if found is None or found.deleted:
        return []
    traits = identity.traits(found.content)
    if traits.status != "QUAL" or not traits.ins:
        return []
    return list(dict.fromkeys(a for a in (citizen_mailbox(traits.ins), await chosen_email(repo, traits.ins)) if a))


def notice(lab: str, link: str, *, corrected: bool) -> tuple[str, str]:
    """The subject and text of a notice: no medical content at all."""
    who = lab or "votre laboratoire"
    if corrected:
        subject = "Votre compte rendu d'analyses a été corrigé"
        said = (f"{who[:1].upper()}{who[1:]} a corrigé un compte rendu d'analyses de biologie médicale : la version corrigée "
                "remplace la précédente dans votre espace.")
    else:
        subject = "Un compte rendu d'analyses est disponible"
        said = f"Un compte rendu d'analyses de biologie médicale de {who} est disponible dans votre espace."
    text = (f"Bonjour,\n\n{said}\n\nPour le consulter, connectez-vous : {link}\n\n"
            "Ce message ne contient aucun résultat. N'y répondez pas : cette adresse ne lit pas les réponses.\n")
    return subject, text


def _task_of(document: dict[str, Any]) -> str | None:
    """The order an issued report belongs to (none for a report imported from elsewhere)."""
    return next((r["reference"] for r in (document.get("context") or {}).get("related", [])
                 if str(r.get("reference", "")).startswith("Task/")), None)


async def _lab_name(repo: Repository, custodian: dict[str, Any] | None) -> str:
    if not custodian:
        return ""
    if custodian.get("display"):
        return str(custodian["display"])
    found = await repo.read_reference(str(custodian.get("reference", "")))
    return str(found.content.get("name", "")) if found is not None else ""
