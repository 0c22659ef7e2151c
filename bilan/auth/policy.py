"""May this caller do this to this resource: the write rules (docs/access.md, "Writes").

Reads are answered by the id sets of bilan/auth/access.py; a write is asked of the stored
version (the caller must be able to read it) and of the new one (what it changes, what it
points to), by the write pipeline (bilan/records/pipeline.py), for every write whoever asks.
"""

from typing import Any

from bilan.auth.caller import Caller, Kind
from bilan.fhir.outcomes import FhirError, Forbidden, Issue
from bilan.fhir.terminology import INS_SYSTEMS

DIRECTORY = ("Practitioner", "PractitionerRole", "Organization")
PRESCRIPTION = ("Patient", "Practitioner", "PractitionerRole", "Organization", "ServiceRequest",
                "Observation", "Condition", "Communication", "Subscription", "Encounter", "Location")
ROLE_WRITES: dict[str, tuple[str, ...]] = {
    "prescriber": PRESCRIPTION,
    "practice-software": (*PRESCRIPTION, "DocumentReference", "List"),  # reports from the DMP
    "reception": ("Patient", "Task", "Specimen", "Communication"),
    "technician": ("Task", "Specimen", "Observation", "Communication"),
    "biologist": ("Patient", "Task", "Specimen", "ServiceRequest", "Observation",
                  "DiagnosticReport", "DocumentReference", "List", "Communication"),
    "lab-middleware": ("Observation", "Specimen", "Task", "DiagnosticReport", "DocumentReference",
                       "List", "Communication", "Subscription"),
    "patient": (),
}

# Who a person or an organisation is: only the resource's owner (who created it) or bilan's
# directory (resources bilan loaded itself) may change these, since others rely on them. A
# Patient's links say which other records are the same person (patient_links.py).
IDENTIFYING: dict[str, tuple[str, ...]] = {
    "Patient": ("identifier", "name", "birthDate", "gender", "link"),
    "Practitioner": ("identifier", "name"),
    "PractitionerRole": ("identifier", "practitioner", "organization"),
    "Organization": ("identifier", "name"),
    "Location": ("identifier", "name", "managingOrganization", "partOf"),
}
# Facts fixed at intake, that access is derived from: nobody changes them afterwards.
FIXED: dict[str, tuple[str, ...]] = {
    "ServiceRequest": ("subject", "requester", "requisition", "performer", "basedOn"),
    "Task": ("for", "basedOn", "groupIdentifier", "requester"),
    "Observation": ("subject", "basedOn"),
    "DiagnosticReport": ("subject", "basedOn"),
    "DocumentReference": ("subject",),
    "Specimen": ("subject", "request"),
    "Communication": ("subject", "partOf"),
    "Condition": ("subject",),
    "Encounter": ("subject",),
}
# An identifier of these names one resource: a second would make every conditional reference
# to it ambiguous, and let anyone stand in for the one it names.
UNIQUE_IDENTIFIERS: dict[str, tuple[str, ...]] = {
    "Practitioner": ("https://rpps.esante.gouv.fr",),
    "Organization": ("urn:oid:1.2.250.1.71.4.2.2", "https://finess.esante.gouv.fr"),
}
# Others' data points at these: while it does, they are not deleted.
KEPT_WHILE_REFERRED = ("Patient", *DIRECTORY, "Location")

# Domain actions, by who may take them.
LAB_STAFF: tuple[Kind, ...] = ("reception", "technician", "biologist")
LAB: tuple[Kind, ...] = (*LAB_STAFF, "lab-middleware")
ACTIONS: dict[str, tuple[tuple[Kind, ...], str]] = {
    "reception": (LAB_STAFF, "Seul le personnel du laboratoire a accès à la réception."),
    "results-desk": (LAB, "Réservé au laboratoire."),
    # Reception reads the results desk (to answer a caller) but validates nothing.
    "validate-technically": (("technician", "biologist"),
                             "Seuls un technicien ou un biologiste valident techniquement un résultat."),
    "validate-biologically": (("biologist",), "Seul un biologiste valide ou corrige un résultat validé."),
    "enter-results": (("technician", "biologist"), "Votre rôle ne permet pas d'enregistrer des résultats."),
    "adapt": (("biologist",), "Seul un biologiste peut adapter une prescription."),
    "answer-adaptation": (("prescriber", "practice-software"),
                          "Seul le prescripteur accepte ou refuse une adaptation."),
    "issue": (("biologist",), "Seul un biologiste émet le compte rendu."),
    "call-critical": (("biologist",), "Seul un biologiste trace l'appel d'une valeur critique au prescripteur."),
    "release": (("prescriber", "practice-software", "biologist"),
                "Seuls le prescripteur et le biologiste lèvent le masquage."),
    "follow-order": (("prescriber", "practice-software", *LAB), "Réservé aux professionnels."),
    "deliveries": (LAB, "Réservé au laboratoire."),
    # The patient's shared record (DMP): a health professional's access, the lab's biologist.
    "dmp": (("biologist",), "Seul un biologiste consulte le DMP du patient."),
    "sharing-opposition": (LAB_STAFF, "Seul le personnel du laboratoire recueille l'opposition du patient."),
    # Trends are the patient's own: for anyone else they would mix several patients, unless
    # they name one (patient-trends: the records of that person they may read).
    "trends": (("patient",), "Les courbes de résultats sont réservées au patient concerné."),
    "patient-trends": (("prescriber", "practice-software", *LAB), "Réservé aux professionnels."),
}


def forbidden(diagnostics: str, expression: str | None = None) -> FhirError:
    return Forbidden([Issue(diagnostics, "forbidden", expression=expression)])


def check_scope(caller: Caller, resource_type: str, mode: str) -> None:
    """Software needs a SMART system scope for the type and mode (read or write)."""
    if not caller.is_machine:
        return
    wanted = {f"system/{resource_type}.{mode}", f"system/*.{mode}", f"system/{resource_type}.*",
              "system/*.*"}
    if not wanted & caller.scopes:
        raise forbidden(f"The token's scopes do not allow system/{resource_type}.{mode}")


def check_type(caller: Caller, resource_type: str) -> None:
    """The caller's role and scopes let it write this type at all."""
    check_scope(caller, resource_type, "write")
    if resource_type not in ROLE_WRITES.get(caller.kind, ()):
        raise forbidden(f"A {caller.kind} may not write {resource_type} resources")


def writable(resource_type: str) -> bool:
    """Whether any caller may write this type; bilan alone writes the others (Binary, the
    audit trail)."""
    return any(resource_type in types for types in ROLE_WRITES.values())


def check_action(caller: Caller, action: str, expression: str | None = None) -> None:
    kinds, refusal = ACTIONS[action]
    if caller.kind not in kinds:
        raise forbidden(refusal, expression)


def owner_key(caller: Caller | None) -> str | None:
    """Whose a resource is when this caller creates it: the prescriber's or the lab's."""
    if caller is None:
        return None
    if caller.for_prescriber:
        return f"rpps:{caller.rpps}"
    if caller.for_lab:
        return lab_key(caller.lab_finess or "")
    return None


def lab_key(finess: str) -> str:
    """Whose the resources a lab's staff or software create are (its tubes, its patient files)."""
    return f"lab:{finess}"


def check_change(caller: Caller, resource_type: str, stored: dict[str, Any], new: dict[str, Any],
                 stored_owner: str | None, path: str) -> None:
    """An update keeps what others rely on: the facts fixed at intake, and (unless the caller
    owns the resource) what identifies a person or an organisation."""
    for element in FIXED.get(resource_type, ()):
        if stored.get(element) != new.get(element):
            raise forbidden(f"{resource_type}.{element} is fixed once stored: create a new "
                            f"{resource_type} instead", f"{path}.{element}")
    if resource_type == "Patient" and _ins(stored) and _ins(stored) != _ins(new):
        # A patient reads their data by their INS: changing it would hand a record to another.
        raise forbidden("A Patient's INS is fixed once stored: it says whose data this is",
                        f"{path}.identifier")
    if stored_owner is not None and stored_owner == owner_key(caller):
        return
    for element in IDENTIFYING.get(resource_type, ()):
        if stored.get(element) != new.get(element):
            raise forbidden(f"Only who created this {resource_type} may change its {element}: "
                            "others' data relies on it", f"{path}.{element}")


def _ins(patient: dict[str, Any]) -> set[tuple[str, str]]:
    return {(str(i.get("system")), str(i.get("value"))) for i in patient.get("identifier") or []
            if isinstance(i, dict) and i.get("system") in INS_SYSTEMS}


def check_delete(resource_type: str, referrers: list[str], path: str) -> None:
    if resource_type in KEPT_WHILE_REFERRED and referrers:
        raise forbidden(f"This {resource_type} is referred to by {', '.join(referrers)}: it "
                        "cannot be deleted while other data points at it", path)
