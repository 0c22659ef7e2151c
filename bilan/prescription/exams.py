"""A prescribed exam (ServiceRequest): its LOINC code, the four eP-BIO flags it may carry and
the nature of the sample it is done on."""

import re
from typing import Any

from bilan.fhir.outcomes import Issue
from bilan.fhir.terminology import LOINC as LOINC  # the system lives in terminology
from bilan.prescription.checksums import luhn_valid
from bilan.prescription.tubes import SPECIMEN_TYPES as SPECIMEN_TYPES  # the table's FHIR system

LAB_CATEGORY = ("http://snomed.info/sct", "108252007")

# eP-BIO flags of a prescribed exam. No FR Core profile carries them on a ServiceRequest (FR
# Document Core has them as Observations coded GEN-180, GEN-295, GEN-181, GEN-298 in the
# CI-SIS terminology); these are bilan's extensions (valueBoolean), documented in docs/api.md.
EXTENSION_BASE = "https://bilan.sante.fr/fhir/StructureDefinition"
FLAG_WORK_ACCIDENT = f"{EXTENSION_BASE}/ep-bio-work-accident"
FLAG_PREVENTION = f"{EXTENSION_BASE}/ep-bio-prevention"
FLAG_NOT_REIMBURSABLE = f"{EXTENSION_BASE}/ep-bio-not-reimbursable"
FLAG_OFF_NOMENCLATURE = f"{EXTENSION_BASE}/ep-bio-off-nomenclature"
FLAGS = (FLAG_WORK_ACCIDENT, FLAG_PREVENTION, FLAG_NOT_REIMBURSABLE, FLAG_OFF_NOMENCLATURE)

# The nature of the sample (HL7 table 0487, SPECIMEN_TYPES: BLD, SER, PLAS, UR...), as FHIR
# says it: the `type` of the Specimen the request's `specimen` names, contained in the request
# since the sample is not taken yet.

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
    for index, specimen in enumerate(request.get("specimen", [])):
        reference = specimen.get("reference", "")
        if reference.startswith("#") and _contained(request, reference) is None:
            issues.append(Issue(f"{reference} names no contained Specimen", "not-found",
                                expression=f"{prefix}.specimen[{index}]"))
    return issues


def sample_nature(request: dict[str, Any]) -> dict[str, Any] | None:
    """The coding (HL7 table 0487) of the sample nature the request asks for, if it says one."""
    for specimen in request.get("specimen", []):
        found = _contained(request, specimen.get("reference", ""))
        for coding in ((found or {}).get("type") or {}).get("coding", []):
            if coding.get("system") == SPECIMEN_TYPES and coding.get("code"):
                return dict(coding)
    return None


def with_sample_nature(request: dict[str, Any], coding: dict[str, Any]) -> dict[str, Any]:
    """The request asking for a sample of that nature."""
    specimen = {"resourceType": "Specimen", "id": "sample", "type": {"coding": [coding]}}
    return dict(request, contained=[*request.get("contained", []), specimen],
                specimen=[{"reference": "#sample"}])


def flag(request: dict[str, Any], url: str) -> bool | None:
    """The value of one eP-BIO flag, None when the request does not give it."""
    return next((e["valueBoolean"] for e in request.get("extension", [])
                 if e.get("url") == url and isinstance(e.get("valueBoolean"), bool)), None)


def _contained(request: dict[str, Any], reference: str) -> dict[str, Any] | None:
    return next((c for c in request.get("contained", [])
                 if c.get("resourceType") == "Specimen" and reference == f"#{c.get('id')}"), None)


def flagged_unknown(request: dict[str, Any]) -> dict[str, Any]:
    """The request tagged as holding an exam the lab's catalogue does not list."""
    meta = dict(request.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("system") != INTAKE_FLAGS]
    tags.append({"system": INTAKE_FLAGS, "code": UNKNOWN_EXAM,
                 "display": "Examen absent du catalogue du laboratoire"})
    meta["tag"] = tags
    return dict(request, meta=meta)
