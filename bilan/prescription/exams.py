"""A prescribed exam (ServiceRequest): its LOINC code and the eP-BIO flags it may carry."""

import re
from typing import Any

from bilan.fhir.outcomes import Issue
from bilan.fhir.terminology import LOINC as LOINC  # the system lives in terminology
from bilan.prescription.checksums import luhn_valid

LAB_CATEGORY = ("http://snomed.info/sct", "108252007")

# eP-BIO flags of a prescribed exam. No public FHIR profile carries them; these are bilan's
# extensions (valueBoolean), documented in docs/prescription.md.
EXTENSION_BASE = "https://bilan.sante.fr/fhir/StructureDefinition"
FLAG_WORK_ACCIDENT = f"{EXTENSION_BASE}/ep-bio-work-accident"
FLAG_PREVENTION = f"{EXTENSION_BASE}/ep-bio-prevention"
FLAG_NOT_REIMBURSABLE = f"{EXTENSION_BASE}/ep-bio-not-reimbursable"
FLAGS = (FLAG_WORK_ACCIDENT, FLAG_PREVENTION, FLAG_NOT_REIMBURSABLE)

# Tag set on an exam whose code the lab's catalogue does not know: accepted, for the lab to see.
INTAKE_FLAGS = "https://bilan.sante.fr/fhir/CodeSystem/intake-flag"
UNKNOWN_EXAM = "exam-not-in-catalogue"

_LOINC_SHAPE = re.compile(r"^\d{1,7}-\d$")


def loinc_problem(code: str) -> str | None:
    if not _LOINC_SHAPE.match(code):
        return f"{code!r} is not a LOINC code (digits, a dash, a check digit: e.g. 2345-7)"
    if not luhn_valid(code.replace("-", "")):
        return f"the check digit of LOINC code {code!r} is wrong"
    return None


def loinc_codes(request: dict[str, Any]) -> list[str]:
    return [c["code"] for c in (request.get("code") or {}).get("coding", [])
            if c.get("system") == LOINC and c.get("code")]


def check_request(request: dict[str, Any], prefix: str) -> list[Issue]:
    """A laboratory ServiceRequest names its exam in LOINC; its flags are booleans."""
    issues: list[Issue] = []
    codings = (request.get("code") or {}).get("coding", [])
    loinc = [(i, c) for i, c in enumerate(codings) if c.get("system") == LOINC]
    if not loinc:
        issues.append(Issue("The exam needs a LOINC code (system http://loinc.org); with no exact "
                            "code, use 19146-0 and name the exam in code.text",
                            "required", expression=f"{prefix}.code.coding"))
    for index, coding in loinc:
        problem = loinc_problem(str(coding.get("code", "")))
        if problem:
            issues.append(Issue(problem, "code-invalid",
                                expression=f"{prefix}.code.coding[{index}].code"))
    for index, ext in enumerate(request.get("extension", [])):
        if ext.get("url") in FLAGS and not isinstance(ext.get("valueBoolean"), bool):
            issues.append(Issue(f"{ext['url'].rsplit('/', 1)[-1]} is a yes/no flag: use valueBoolean",
                                "value", expression=f"{prefix}.extension[{index}]"))
    return issues


def flagged_unknown(request: dict[str, Any]) -> dict[str, Any]:
    """The request tagged as holding an exam the lab's catalogue does not list."""
    meta = dict(request.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("system") != INTAKE_FLAGS]
    tags.append({"system": INTAKE_FLAGS, "code": UNKNOWN_EXAM,
                 "display": "Examen absent du catalogue du laboratoire"})
    meta["tag"] = tags
    return dict(request, meta=meta)
