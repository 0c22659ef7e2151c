"""The biologist's adaptation of a prescription (add, cancel or replace an exam), as the lab's
own ServiceRequests: the prescriber's are never changed.

- add: a new lab request (`intent` filler-order, performer the lab) based on the prescription,
  `active` once in effect;
- replace: a new lab request that `replaces` the prescribed one and is based on it, `active`
  once in effect;
- cancel: a lab request for the prescribed exam, based on it, `revoked` once in effect.
A change waiting for the prescriber's agreement is `draft` (`on-hold` for a cancellation: the
exam is suspended); agreement puts it in effect, disagreement drops it (`revoked`; `active`
for a cancellation: the exam will be done). A change the biologist made at once stays made,
with the answer recorded beside it. The extension carries what changed and the answer.
"""

from typing import Any

from bilan.fhir.outcomes import Conflict, FhirError, Invalid, Issue
from bilan.prescription.exams import LAB_CATEGORY, LOINC

ADAPTATION = "https://bilan.sante.fr/fhir/StructureDefinition/adaptation"
REASONS_SYSTEM = "https://bilan.sante.fr/fhir/CodeSystem/adaptation-reason"
REASONS = {
    "redundant": "Redondant avec un résultat récent",
    "clinical-context": "Justifié par le contexte clinique",
    "protocol": "Protocole ou recommandation",
    "contraindicated": "Contre-indiqué ou non pertinent",
    "unsuitable-sample": "Échantillon non conforme",
    "non-compliant": "Prescription non conforme",
}
CHANGES = {"add": "Ajout", "cancel": "Annulation", "replace": "Remplacement"}
ANSWERS = {"pending": "En attente de l'accord du prescripteur", "agreed": "Accord du prescripteur",
           "disagreed": "Désaccord du prescripteur"}


def _invalid(message: str, field: str) -> FhirError:
    return Invalid([Issue(message, "required", expression=field)])


def lab_request(original: dict[str, Any] | None, originals: list[str], change: str,
                code: tuple[str, str] | None, reason: str, note: str, proceed: bool,
                lab: str, author: str) -> dict[str, Any]:
    """The lab's ServiceRequest expressing one change. `original` is the prescribed request
    it concerns (None for an addition), `originals` the prescription's requests, `code`
    (LOINC, label) the exam added or put in its place."""
    if change not in CHANGES:
        raise _invalid("Choisissez le type d'adaptation.", "change")
    if reason not in REASONS:
        raise _invalid("Choisissez le motif de l'adaptation.", "reason")
    if change != "add" and original is None:
        raise _invalid("Choisissez l'examen prescrit concerné.", "original")
    if change != "cancel" and code is None:
        raise _invalid("Choisissez l'examen du catalogue.", "code")
    base = original or {}
    concept = ({"coding": [{"system": LOINC, "code": code[0], "display": code[1]}], "text": code[1]}
               if code else base["code"])
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "extension": [{"url": ADAPTATION, "extension": [
            {"url": "change", "valueCode": change},
            {"url": "answer", "valueCode": "pending"},
            {"url": "proceeded", "valueBoolean": proceed},
        ]}],
        "requisition": base.get("requisition") or {},
        "status": _status(change, proceed),
        "intent": "filler-order",
        "category": [{"coding": [{"system": LAB_CATEGORY[0], "code": LAB_CATEGORY[1],
                                  "display": "Laboratory procedure"}]}],
        "priority": base.get("priority", "routine"),
        "code": concept,
        "subject": base.get("subject") or {},
        "requester": {"reference": lab},
        "performer": [{"reference": lab}],
        "reasonCode": [{"coding": [{"system": REASONS_SYSTEM, "code": reason, "display": REASONS[reason]}],
                        "text": REASONS[reason]}],
        "basedOn": [{"reference": r} for r in ([f"ServiceRequest/{base['id']}"] if original else originals)],
    }
    if change == "replace":
        request["replaces"] = [{"reference": f"ServiceRequest/{base['id']}"}]
    if note.strip():
        request["note"] = [{"authorString": author, "text": note.strip()}]
    return request


def answered(request: dict[str, Any], agreed: bool) -> dict[str, Any]:
    """The lab request once the prescriber answered: a change that waited takes effect, or
    is dropped; one already made stays made, with the answer beside it."""
    if answer_of(request) != "pending":
        raise Conflict([Issue("Cette adaptation a déjà reçu une réponse.", "business-rule")])
    parts = [{"url": "answer", "valueCode": "agreed" if agreed else "disagreed"}
             if p.get("url") == "answer" else p for p in _parts(request)]
    status, change = request["status"], change_of(request)
    if status in ("draft", "on-hold"):
        if agreed:
            status = _status(change, True)
        else:
            status = "active" if change == "cancel" else "revoked"
    extensions = [e for e in request.get("extension", []) if e.get("url") != ADAPTATION]
    return {**request, "status": status,
            "extension": [*extensions, {"url": ADAPTATION, "extension": parts}]}


def in_effect(prescribed: list[dict[str, Any]], adapted: list[dict[str, Any]],
              suspended: bool = False) -> list[dict[str, Any]]:
    """The order's exams once the adaptations apply: the prescribed ones (active) that no
    cancellation or replacement in effect removed, then the lab's additions and replacements in
    effect. A cancellation waiting for the prescriber's answer suspends its exam: left out,
    unless `suspended` (its tube is drawn all the same, in case the prescriber disagrees)."""
    dropped: set[str] = set()
    for request in adapted:
        change, status = change_of(request), request.get("status")
        if change == "replace" and status == "active":
            dropped |= {r.get("reference", "") for r in request.get("replaces", [])}
        if change == "cancel" and (status == "revoked" or (status == "on-hold" and not suspended)):
            dropped |= {b.get("reference", "") for b in request.get("basedOn", [])}
    kept = [r for r in prescribed
            if r.get("status") == "active" and f"ServiceRequest/{r.get('id')}" not in dropped]
    return kept + [r for r in adapted if change_of(r) in ("add", "replace") and r.get("status") == "active"]


def is_adaptation(request: dict[str, Any]) -> bool:
    return any(e.get("url") == ADAPTATION for e in request.get("extension", []))


def change_of(request: dict[str, Any]) -> str:
    return _part(request, "change", "valueCode") or ""


def answer_of(request: dict[str, Any]) -> str:
    return _part(request, "answer", "valueCode") or ""


def proceeded(request: dict[str, Any]) -> bool:
    return bool(_part(request, "proceeded", "valueBoolean"))


def _status(change: str, in_effect: bool) -> str:
    if change == "cancel":
        return "revoked" if in_effect else "on-hold"
    return "active" if in_effect else "draft"


def _parts(request: dict[str, Any]) -> list[dict[str, Any]]:
    return next((e.get("extension", []) for e in request.get("extension", [])
                 if e.get("url") == ADAPTATION), [])


def _part(request: dict[str, Any], name: str, key: str) -> Any:
    return next((p.get(key) for p in _parts(request) if p.get("url") == name), None)
