"""The audit trail: FHIR AuditEvents of each access to patient data (who, which patient, what,
when, from where, outcome), stored with what it describes.

A patient reads the events that name them: so a professional's access names one patient per
event. An access to several patients' data is recorded as one event per patient, naming only
that patient; the resources touched and the query text (which may carry other patients'
identifiers) go in one more event for the professional's trail, naming no patient. A
patient's own access names only them, and is recorded as one event."""

from datetime import datetime
from typing import Any, Iterable, Literal

from bilan.auth.caller import Caller
from bilan.fhir.dates import instant
from bilan.fhir.references import literal

Action = Literal["C", "R", "U", "D", "E"]
ACTIONS: dict[str, Action] = {
    "create": "C", "read": "R", "vread": "R", "search-type": "E", "history-instance": "R",
    "history-type": "R", "update": "U", "delete": "D", "transaction": "E", "login": "E",
    "logout": "E",
}
OUTCOME_SUCCESS, OUTCOME_DENIED, OUTCOME_FAILED = "0", "4", "8"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL = "http://terminology.hl7.org/CodeSystem/restful-interaction"
SUBJECT_ELEMENTS = ("subject", "patient", "for")
# What an access to the patient's shared record (DMP) says in the audit trail (outcomeDesc),
# which the patient's "who accessed my data" shows as such.
DMP_CONSULTED = "Consultation du dossier médical partagé (DMP)"
DMP_OPENED = "Ouverture d'un document du dossier médical partagé (DMP)"
DMP_IMPORTED = "Import d'un compte rendu du dossier médical partagé (DMP) dans l'historique"
DMP_DETAILS = (DMP_CONSULTED, DMP_OPENED, DMP_IMPORTED)


def patients_of(resource: dict[str, Any] | None) -> set[str]:
    """'Patient/id' of the patient a resource is about (the patient itself for a Patient)."""
    if not resource:
        return set()
    if resource.get("resourceType") == "Patient" and resource.get("id"):
        return {f"Patient/{resource['id']}"}
    found = set()
    for element in SUBJECT_ELEMENTS:
        ref = resource.get(element)
        target = literal(ref.get("reference", "")) if isinstance(ref, dict) else None
        if target and target[0] == "Patient":
            found.add(f"Patient/{target[1]}")
    return found


def audit_events(caller: Caller, interaction: str, outcome: str, when: datetime,
                 patients: Iterable[str] = (), touched: Iterable[str] = (),
                 query: str | None = None, detail: str | None = None) -> list[dict[str, Any]]:
    """The AuditEvents of one interaction: see the module's docstring."""
    patients, touched = sorted(set(patients)), set(touched)
    if caller.kind == "patient" or (len(patients) <= 1 and not query):
        return [audit_event(caller, interaction, outcome, when, patients, touched, query, detail)]
    events = [audit_event(caller, interaction, outcome, when, [patient], (), None, detail)
              for patient in patients]
    events.append(audit_event(caller, interaction, outcome, when, (), touched - set(patients),
                              query, detail))
    return events


def audit_event(caller: Caller, interaction: str, outcome: str, when: datetime,
                patients: Iterable[str] = (), touched: Iterable[str] = (),
                query: str | None = None, detail: str | None = None) -> dict[str, Any]:
    """The AuditEvent of one interaction. Names no person: the caller by role and identifier."""
    entities: list[dict[str, Any]] = [
        {"what": {"reference": ref}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                              "code": "1", "display": "Person"},
         "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1",
                  "display": "Patient"}}
        for ref in sorted(set(patients))
    ]
    entities += [{"what": {"reference": ref}} for ref in sorted(set(touched) - set(patients))]
    if query:
        entities.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                                  "code": "2", "display": "System Object"},
                         "description": "search", "detail": [{"type": "query", "valueString": query}]})
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                             "code": "humanuser" if not caller.is_machine else "dataprocessor"}]},
        "who": {"identifier": {"system": "https://bilan.sante.fr/fhir/sid/caller", "value": caller.label}},
        "altId": caller.subject,
        "requestor": True,
    }
    if caller.address:
        agent["network"] = {"address": caller.address, "type": "2"}
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": DICOM, "code": "110110", "display": "Patient Record"}
        if interaction not in ("login", "logout")
        else {"system": DICOM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": RESTFUL, "code": interaction}],
        "action": ACTIONS.get(interaction, "E"),
        "recorded": instant(when),
        "outcome": outcome,
        "agent": [agent],
        "source": {"observer": {"display": "bilan"}},
    }
    if detail:
        event["outcomeDesc"] = detail
    if entities:
        event["entity"] = entities
    return event
