"""Required bindings that the R4B models do not check (they accept status "bogus")."""

from typing import Any

from bilan.fhir.outcomes import Issue

REQUEST_STATUS = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
REQUEST_INTENT = ("proposal", "plan", "directive", "order", "original-order", "reflex-order",
                  "filler-order", "instance-order", "option")
REQUEST_PRIORITY = ("routine", "urgent", "asap", "stat")
GENDER = ("male", "female", "other", "unknown")
OBSERVATION_STATUS = ("registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown")
TASK_STATUS = ("draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
               "in-progress", "on-hold", "failed", "completed", "entered-in-error")
TASK_INTENT = ("unknown", "proposal", "plan", "order", "original-order", "reflex-order",
               "filler-order", "instance-order", "option")
REPORT_STATUS = ("registered", "partial", "preliminary", "final", "amended", "corrected",
                 "appended", "cancelled", "entered-in-error", "unknown")
SPECIMEN_STATUS = ("available", "unavailable", "unsatisfactory", "entered-in-error")
DOCUMENT_STATUS = ("current", "superseded", "entered-in-error")
COMPOSITION_STATUS = ("preliminary", "final", "amended", "entered-in-error")

# (resource type, element) -> allowed codes, for elements whose binding is "required".
REQUIRED_CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("ServiceRequest", "status"): REQUEST_STATUS,
    ("ServiceRequest", "intent"): REQUEST_INTENT,
    ("ServiceRequest", "priority"): REQUEST_PRIORITY,
    ("Patient", "gender"): GENDER,
    ("Practitioner", "gender"): GENDER,
    ("Observation", "status"): OBSERVATION_STATUS,
    ("Task", "status"): TASK_STATUS,
    ("Task", "intent"): TASK_INTENT,
    ("Task", "priority"): REQUEST_PRIORITY,
    ("DiagnosticReport", "status"): REPORT_STATUS,
    ("Specimen", "status"): SPECIMEN_STATUS,
    ("DocumentReference", "status"): DOCUMENT_STATUS,
    ("DocumentReference", "docStatus"): COMPOSITION_STATUS,
}


def check_required_codes(resource: dict[str, Any], prefix: str) -> list[Issue]:
    issues = []
    resource_type = resource.get("resourceType")
    for (rtype, element), allowed in REQUIRED_CODES.items():
        if rtype != resource_type or element not in resource:
            continue
        value = resource[element]
        if value not in allowed:
            issues.append(Issue(
                f"{element} {value!r} is not one of the allowed codes: {', '.join(allowed)}",
                "code-invalid",
                expression=f"{prefix}.{element}",
            ))
    return issues
