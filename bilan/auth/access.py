"""Who may do what: the one place where bilan's access rules live (docs/access.md).

- A prescriber (or practice software acting for one) sees the prescriptions they wrote, their
  patients, the context and results of those prescriptions.
- Lab staff (reception, technician, biologist) and lab middleware see the prescriptions addressed to their
  lab and what hangs off them.
- A patient sees only their own data, and of their results and reports only those shared in
  their space and not hidden until released (bilan/results/masking.py).
- Everyone signed in may read the directory (Practitioner, PractitionerRole, Organization).
Writes: bilan/auth/policy.py, asked by the write pipeline (bilan/records/pipeline.py).
"""

from functools import lru_cache
from typing import Any

from bilan.auth.caller import Caller
from bilan.auth.policy import DIRECTORY, check_scope, forbidden, owner_key
from bilan.fhir.outcomes import FhirError
from bilan.fhir.terminology import (
    CONFIDENTIALITY,
    INS_SYSTEMS,
    INVISIBLE_PATIENT,
    RESULT_TYPES,
    SEEN_BY_PATIENT,
    SHARING,
)
from bilan.storage.compartments import (
    IdSet,
    derived,
    either,
    narrowed,
    not_owned_by_labs,
    nothing,
    owned_by,
    referred,
    referring,
    with_token,
)

ORGANIZATION_ID = "urn:oid:1.2.250.1.71.4.2.2"  # FINESS-based organisation ids: "1" + FINESS
# Search rows the write pipeline derives from facts fixed at intake, never from data a caller
# may edit later: the RPPS of a prescription's requester (ServiceRequest), the FINESS of the lab
# a prescription is addressed to (ServiceRequest) or that took the order (Task).
REQUESTER_ROW = "_requester"
LAB_ROW = "_lab"
PROFESSIONAL_ONLY = ("Communication", "Subscription")  # never in a patient's view
# Places (a hospital ward) hold no patient data: every signed-in caller reads them, like the
# directory.
OPEN_TO_ALL = (*DIRECTORY, "Location")


# The id sets are SQL constructs that depend on the caller and the type alone: built once, each
# is reused by every statement that embeds it (building one costs more than running it).
@lru_cache(maxsize=4096)
def readable(caller: Caller, resource_type: str) -> Any | None:
    """visible(), and nothing at all of a type the caller's scopes do not cover."""
    try:
        check_scope(caller, resource_type, "read")
    except FhirError:
        return select_nothing()
    return visible(caller, resource_type)


@lru_cache(maxsize=4096)
def trail_of(caller: Caller) -> Any:
    """The ids of the Patients whose audit trail the caller may read, as a subquery: a patient
    her own files' ("who accessed my data"); nobody else any, through the API."""
    try:
        check_scope(caller, "AuditEvent", "read")
    except FhirError:
        return select_nothing()
    return _me(caller) if caller.kind == "patient" else select_nothing()


def caller_of_owner(owner: str) -> Caller | None:
    """Who a resource's owner key stands for, as software acting for them (e.g. to see only
    what a Subscription's owner may see); None for an unknown key."""
    kind, _, ident = owner.partition(":")
    if kind == "rpps" and ident:
        return Caller("practice-software", owner, frozenset(), rpps=ident)
    if kind == "lab" and ident:
        return Caller("lab-middleware", owner, frozenset(), lab_finess=ident)
    return None


@lru_cache(maxsize=4096)
def visible(caller: Caller, resource_type: str) -> Any | None:
    """The ids of `resource_type` the caller may see, as a subquery; None: all of them."""
    if resource_type in OPEN_TO_ALL:
        return None
    if caller.kind == "patient":
        if resource_type in PROFESSIONAL_ONLY:
            return select_nothing()
        return _patient_compartment(caller, resource_type)
    if caller.for_prescriber:
        around = _around_requests(resource_type, _requests_of_prescriber(caller.rpps))
    elif caller.for_lab:
        around = _around_requests(resource_type, _requests_of_lab(caller.lab_finess))
    else:
        return select_nothing()
    owner = owner_key(caller)
    assert owner is not None  # a prescriber's or a lab's caller always has an owner key
    owned = owned_by(resource_type, owner)
    return owned if around is None else either(around, owned)


@lru_cache(maxsize=4096)
def findable(caller: Caller | None, resource_type: str) -> Any | None:
    """What a conditional create or reference from this caller may resolve to: what it may
    read; for bilan's own code, anything but the patient files labs keep for themselves."""
    if caller is None:
        return not_owned_by_labs(resource_type) if resource_type == "Patient" else None
    return readable(caller, resource_type)


def select_nothing() -> IdSet:
    """No id at all."""
    return nothing()


def _me(caller: Caller) -> IdSet:
    assert caller.ins is not None  # a patient caller is only built from claims naming her INS
    return either(*(with_token("Patient", "identifier", system, caller.ins) for system in INS_SYSTEMS))


def _patient_compartment(caller: Caller, resource_type: str) -> Any:
    if resource_type == "Patient":
        return _me(caller)
    if resource_type == "Binary":
        documents = _patient_compartment(caller, "DocumentReference")
        return referring("Binary", "security-context", "DocumentReference", documents)
    mine = referring(resource_type, "patient", "Patient", _me(caller))
    if resource_type in RESULT_TYPES:
        # Results and reports: only those shared in the patient's space, never a hidden one.
        seen = with_token(resource_type, "_tag", SHARING, SEEN_BY_PATIENT)
        if resource_type == "Observation":  # a partly masked report is absent as a whole
            return narrowed(mine, within=(seen,), without=(_in_masked_reports(),))
        return narrowed(mine, within=(seen,))
    return mine


def _in_masked_reports() -> IdSet:
    """The results of the reports hidden from the patient until released, the unmasked ones
    too: she sees a report whole, after her consultation, or not at all."""
    masked = with_token("DiagnosticReport", "_security", CONFIDENTIALITY, INVISIBLE_PATIENT)
    return referred("DiagnosticReport", "result", masked, "Observation")


def _requests_of_prescriber(rpps: str | None) -> IdSet:
    return derived("ServiceRequest", REQUESTER_ROW, rpps or "")


def _requests_of_lab(finess: str | None) -> IdSet:
    """Prescriptions addressed to the lab, and those it imported (addressed to no lab)."""
    orders = derived("Task", LAB_ROW, finess or "")
    return either(derived("ServiceRequest", LAB_ROW, finess or ""),
                  referred("Task", "based-on", orders, "ServiceRequest"))


def check_reception(caller: Caller, addressed_to: str, imported_by: str | None) -> None:
    """Lab staff may work on a prescription addressed to their lab or to none, until another
    lab imports it."""
    if addressed_to not in ("", caller.lab_finess) or imported_by not in (None, caller.lab_finess):
        raise forbidden("Cette prescription est prise en charge par un autre laboratoire.")


def _around_requests(resource_type: str, requests: IdSet) -> IdSet | None:
    """What hangs off a set of prescribed exams: patient, context, tasks, samples, results
    (None for a type that does not hang off prescriptions)."""
    if resource_type == "ServiceRequest":
        return either(requests, referring("ServiceRequest", "based-on", "ServiceRequest", requests))
    if resource_type == "Patient":
        return referred("ServiceRequest", "patient", requests, "Patient")
    if resource_type == "Observation":  # context, and results of the exams asked or adapted
        asked = either(requests, referring("ServiceRequest", "based-on", "ServiceRequest", requests))
        return either(referred("ServiceRequest", "supporting-info", requests, "Observation"),
                      referring("Observation", "based-on", "ServiceRequest", asked))
    if resource_type == "Condition":
        return referred("ServiceRequest", "supporting-info", requests, "Condition")
    if resource_type == "Encounter":  # the stay or visit an exam was ordered in
        return referred("ServiceRequest", "encounter", requests, "Encounter")
    if resource_type in ("Task", "DiagnosticReport"):
        return referring(resource_type, "based-on", "ServiceRequest", requests)
    if resource_type == "DocumentReference":
        return referring("DocumentReference", "related", "ServiceRequest", requests)
    if resource_type == "Binary":
        documents = referring("DocumentReference", "related", "ServiceRequest", requests)
        return referring("Binary", "security-context", "DocumentReference", documents)
    if resource_type == "Specimen":
        return referring("Specimen", "request", "ServiceRequest", requests)
    if resource_type == "Communication":
        tasks = referring("Task", "based-on", "ServiceRequest", requests)
        return referring("Communication", "part-of", "Task", tasks)
    return None
