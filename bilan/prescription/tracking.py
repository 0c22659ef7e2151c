"""The Task that lets a prescriber follow a prescription at the lab (the OpenHIE lab-order
pattern): created when the prescription arrives, its status moved by the lab."""

from datetime import datetime
from typing import TYPE_CHECKING, Any

from bilan.fhir.dates import instant
from bilan.fhir.outcomes import Conflict, FhirError, Invalid, Issue, NotFound
from bilan.storage.repository import Stored

if TYPE_CHECKING:
    from bilan.records.pipeline import Work

TASK_CODE = {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill",
                         "display": "Fulfill the focal request"}]}
ACCESSION = "https://bilan.sante.fr/fhir/sid/accession"  # + "/" + FINESS
LAB_FILE_INPUT = "Dossier patient du laboratoire"
# The patient opposed the sharing of their results (patient's space, DMP), as told at reception.
OPPOSITION = "https://bilan.sante.fr/fhir/StructureDefinition/sharing-opposition"

# What the lab may do next, from each status.
NEXT = {
    "requested": ("accepted", "rejected", "cancelled"),
    "accepted": ("in-progress", "rejected", "cancelled"),
    "in-progress": ("completed", "cancelled"),
}
LABELS = {"requested": "Transmise, en attente du laboratoire", "accepted": "Reçue au laboratoire",
          "in-progress": "Prélèvements effectués", "completed": "Compte rendu disponible",
          "rejected": "Refusée par le laboratoire", "cancelled": "Annulée"}
NEEDS_REASON = ("rejected", "cancelled")


async def order_task(work: "Work", task_id: str, interaction: str, action: str | None = None) -> Stored:
    """The order's Task, once the caller may take `action` (bilan/auth/policy.py ACTIONS) and may
    read it; a 404 in French when there is none."""
    if action is not None:
        work.allow(action, [f"Task/{task_id}"], interaction)
    task = await work.records.read_for(work.repo, work.caller, interaction, "Task", task_id)
    if task is None:
        raise unknown_prescription()
    return task


def unknown_prescription() -> FhirError:
    return NotFound([Issue("Cette prescription est introuvable.", "not-found")])


def new_task(requests: list[str], requisition: dict[str, Any], patient: str, requester: str,
             lab: str | None, now: datetime) -> dict[str, Any]:
    """The Task of a prescription just received: 'requested', owned by the lab it is addressed
    to (if any). `requests` are ServiceRequest references: the first is the focal request the
    Task fulfils (`focus`, as the "fulfill" task code reads it), all of them its `basedOn`
    (what bilan reads)."""
    task: dict[str, Any] = {
        "resourceType": "Task", "status": "requested", "intent": "order", "code": TASK_CODE,
        "businessStatus": {"text": LABELS["requested"]},
        "groupIdentifier": requisition, "basedOn": [{"reference": r} for r in requests],
        "for": {"reference": patient}, "requester": {"reference": requester},
        "authoredOn": instant(now), "lastModified": instant(now),
    }
    if requests:
        task["focus"] = {"reference": requests[0]}
    if lab:
        task["owner"] = {"reference": lab}
    return task


def moved(task: dict[str, Any], status: str, now: datetime, reason: str = "") -> dict[str, Any]:
    """The Task at its next status; 409 for a move the workflow does not allow."""
    current = task.get("status", "")
    if status not in NEXT.get(current, ()):
        raise Conflict([Issue(
            f"La demande est « {LABELS.get(current, current)} » : elle ne peut pas passer à "
            f"« {LABELS.get(status, status)} ».", "business-rule", expression="Task.status")])
    if status in NEEDS_REASON and not reason.strip():
        raise Invalid([Issue("Indiquez le motif.", "required", expression="Task.statusReason")])
    task = {**task, "status": status, "businessStatus": {"text": LABELS[status]},
            "lastModified": instant(now)}
    if reason.strip():
        task["statusReason"] = {"text": reason.strip()}
    return task


def accepted(task: dict[str, Any], now: datetime, lab: str, lab_finess: str, accession: str,
             lab_patient: str) -> dict[str, Any]:
    """The Task once the lab imported the prescription as its order."""
    task = moved(task, "accepted", now)
    task["owner"] = {"reference": lab}
    task["identifier"] = [{"use": "usual", "system": f"{ACCESSION}/{lab_finess}", "value": accession}]
    task["input"] = [{"type": {"text": LAB_FILE_INPUT}, "valueReference": {"reference": lab_patient}}]
    return task


def opposed(task: dict[str, Any]) -> bool:
    return any(e.get("url") == OPPOSITION and e.get("valueBoolean") for e in task.get("extension", []))


def with_opposition(task: dict[str, Any], opposes: bool) -> dict[str, Any]:
    kept = [e for e in task.get("extension", []) if e.get("url") != OPPOSITION]
    return {**task, "extension": kept + [{"url": OPPOSITION, "valueBoolean": opposes}]}


def accession_of(task: dict[str, Any]) -> str:
    return next((i.get("value", "") for i in task.get("identifier", [])
                 if i.get("system", "").startswith(ACCESSION)), "")


def lab_file_of(task: dict[str, Any]) -> str:
    return next((i["valueReference"]["reference"] for i in task.get("input", [])
                 if (i.get("type") or {}).get("text") == LAB_FILE_INPUT and i.get("valueReference")), "")
