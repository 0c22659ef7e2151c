"""How the lab's pages name what a prescription carries: exams, priorities, flags and the
clinical context, in French."""

from dataclasses import dataclass
from typing import Any

from bilan import french
from bilan.prescription.exams import (
    FLAG_NOT_REIMBURSABLE,
    FLAG_OFF_NOMENCLATURE,
    FLAG_PREVENTION,
    FLAG_WORK_ACCIDENT,
    INTAKE_FLAGS,
    UNKNOWN_EXAM,
    loinc_codes,
    sample_nature,
)
from bilan.storage.catalogue import Entry

PRIORITIES = {"routine": "Normale", "urgent": "Urgente", "asap": "Dès que possible",
              "stat": "Immédiate"}
URGENT = ("urgent", "asap", "stat")
FLAG_LABELS = {FLAG_WORK_ACCIDENT: "Accident du travail", FLAG_PREVENTION: "Prévention",
               FLAG_NOT_REIMBURSABLE: "Non remboursable", FLAG_OFF_NOMENCLATURE: "Hors nomenclature"}
CONTEXT_LABELS = {"49541-6": "À jeun", "82810-3": "Grossesse", "10160-0": "Traitement en cours",
                  "29463-7": "Poids"}
VALUE_LABELS = {"F": "Oui", "NF": "Non", "77386006": "Enceinte", "60001007": "Non enceinte"}


@dataclass(frozen=True)
class Exam:
    reference: str
    code: str
    label: str
    priority: str
    urgent: bool
    flags: tuple[str, ...]
    notes: tuple[str, ...]
    in_catalogue: bool
    specimen: str  # the catalogue's sample type, "" when unknown
    local_code: str = ""  # the catalogue's mnemonic
    chapter: str = ""  # the catalogue's chapter (LOINC)
    sample: str = ""  # the sample nature the prescriber asked for (eP-BIO), "" when not said


def exam(request: dict[str, Any], catalogue_entry: Entry | None) -> Exam:
    codes = loinc_codes(request)
    concept = request.get("code") or {}
    label = (catalogue_entry["label_fr"] if catalogue_entry else "") or concept.get("text") or next(
        (c.get("display") for c in concept.get("coding", []) if c.get("display")), "Examen")
    unknown = any(t.get("system") == INTAKE_FLAGS and t.get("code") == UNKNOWN_EXAM
                  for t in (request.get("meta") or {}).get("tag", []))
    priority = request.get("priority", "routine")
    return Exam(
        reference=f"ServiceRequest/{request['id']}", code=codes[0] if codes else "", label=label,
        priority=PRIORITIES.get(priority, priority), urgent=priority in URGENT,
        flags=tuple(FLAG_LABELS[e["url"]] for e in request.get("extension", [])
                    if e.get("url") in FLAG_LABELS and e.get("valueBoolean") is True),
        notes=tuple(n["text"] for n in request.get("note", []) if n.get("text")),
        in_catalogue=catalogue_entry is not None and not unknown,
        specimen=(catalogue_entry["specimen"] if catalogue_entry else None) or "",
        sample=_asked_sample(request) or "",
        local_code=catalogue_entry["local_code"] if catalogue_entry else "",
        chapter=(catalogue_entry["chapter_loinc"] if catalogue_entry else None) or "",
    )


def _asked_sample(request: dict[str, Any]) -> str | None:
    coding = sample_nature(request)
    return (coding.get("display") or coding["code"]) if coding else None


def context_item(resource: dict[str, Any]) -> tuple[str, str]:
    """(what, value) of a clinical-context Observation or Condition."""
    concept = resource.get("code") or {}
    codings = concept.get("coding", [])
    code = next((c.get("code") for c in codings if c.get("code") in CONTEXT_LABELS), None)
    what = CONTEXT_LABELS.get(code or "") or concept.get("text") or next(
        (c.get("display") for c in codings if c.get("display")), resource["resourceType"])
    return what, _value(resource)


def _value(resource: dict[str, Any]) -> str:
    if "valueString" in resource:
        return str(resource["valueString"])
    if "valueQuantity" in resource:
        quantity = resource["valueQuantity"]
        shown = quantity.get("unit") or french.unit(quantity.get("code"))
        return " ".join(part for part in (french.number(quantity.get("value")), shown) if part)
    if "valueBoolean" in resource:
        return "Oui" if resource["valueBoolean"] else "Non"
    concept = resource.get("valueCodeableConcept")
    if concept:
        for coding in concept.get("coding", []):
            if coding.get("code") in VALUE_LABELS:
                return VALUE_LABELS[coding["code"]]
        return concept.get("text") or next((c.get("display") or c.get("code", "")
                                            for c in concept.get("coding", [])), "")
    if resource["resourceType"] == "Condition":
        return (resource.get("clinicalStatus") or {}).get("text") or "Présent"
    return ""
