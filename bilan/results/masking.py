"""What a patient may see of their results, as labels on the resources themselves.

- A report reaches the patient's space only when it was shared there: the tag
  `sharing|patient-space`, set when the report is issued for a patient with a qualified INS
  who did not oppose it.
- Masking ("masquage"): the DMP's confidentiality codes as security labels. INVISIBLE_PATIENT
  hides a result, or a whole report, from the patient until it is released (by the prescriber,
  or at a date the lab chose); MASQUE_PS and CONNEXION_SECRETE are recorded and carried in the
  document's metadata for the shared record.
The access rules (bilan/auth/access.py) read the tag derived from both, `seen-by-patient`, through
the `_tag` search rows, so a hidden result is absent from every search, count and include."""

from typing import Any

# The codes live in bilan/fhir/terminology.py (the access rules read them too).
from bilan.fhir.terminology import ANNOUNCED as ANNOUNCED
from bilan.fhir.terminology import CONFIDENTIALITY as CONFIDENTIALITY
from bilan.fhir.terminology import HIDDEN_FROM_PROFESSIONALS as HIDDEN_FROM_PROFESSIONALS
from bilan.fhir.terminology import INVISIBLE_PATIENT as INVISIBLE_PATIENT
from bilan.fhir.terminology import PATIENT_SPACE as PATIENT_SPACE
from bilan.fhir.terminology import RESULT_TYPES as RESULT_TYPES
from bilan.fhir.terminology import SECRET_CONNECTION as SECRET_CONNECTION
from bilan.fhir.terminology import SEEN_BY_PATIENT as SEEN_BY_PATIENT
from bilan.fhir.terminology import SHARING as SHARING

FLAG_LABELS = {
    INVISIBLE_PATIENT: "Invisible au patient jusqu'à la consultation d'annonce",
    HIDDEN_FROM_PROFESSIONALS: "Masqué aux professionnels de santé",
    SECRET_CONNECTION: "Connexion secrète",
}


def coding(system: str, code: str) -> dict[str, str]:
    display = FLAG_LABELS.get(code) or {PATIENT_SPACE: "Partagé dans l'espace du patient",
                                        ANNOUNCED: "Résultat en attente de consultation annoncé",
                                        SEEN_BY_PATIENT: "Visible par le patient"}.get(code, code)
    return {"system": system, "code": code, "display": display}


def with_labels(resource: dict[str, Any], security: set[str], tags: set[str]) -> dict[str, Any]:
    """The resource with exactly these bilan labels (others' labels kept), and the derived
    SEEN_BY_PATIENT tag when it is shared with the patient and not hidden from them."""
    tags = set(tags) - {SEEN_BY_PATIENT}
    if PATIENT_SPACE in tags and INVISIBLE_PATIENT not in security:
        tags.add(SEEN_BY_PATIENT)
    meta = dict(resource.get("meta") or {})
    kept_security = [c for c in meta.get("security", []) if c.get("system") != CONFIDENTIALITY]
    kept_tags = [c for c in meta.get("tag", []) if c.get("system") != SHARING]
    meta["security"] = kept_security + [coding(CONFIDENTIALITY, c) for c in sorted(security)]
    meta["tag"] = kept_tags + [coding(SHARING, c) for c in sorted(tags)]
    for name in ("security", "tag"):
        if not meta[name]:
            meta.pop(name)
    return {**resource, "meta": meta}


def security_of(resource: dict[str, Any]) -> set[str]:
    return {c.get("code", "") for c in (resource.get("meta") or {}).get("security", [])
            if c.get("system") == CONFIDENTIALITY}


def tags_of(resource: dict[str, Any]) -> set[str]:
    return {c.get("code", "") for c in (resource.get("meta") or {}).get("tag", [])
            if c.get("system") == SHARING}


def hidden_from_patient(resource: dict[str, Any]) -> bool:
    return INVISIBLE_PATIENT in security_of(resource)


def released(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without INVISIBLE_PATIENT (other labels kept)."""
    return with_labels(resource, security_of(resource) - {INVISIBLE_PATIENT}, tags_of(resource))
