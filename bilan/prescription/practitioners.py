"""Professionals' identifiers: RPPS (11 digits, Luhn key) and the national id."""

from typing import Any

from bilan import french
from bilan.fhir.outcomes import Issue
from bilan.fhir.terminology import NATIONAL_ID as NATIONAL_ID  # the systems live in terminology (auth reads them too)
from bilan.fhir.terminology import RPPS as RPPS
from bilan.prescription.checksums import luhn_valid


def rpps_problem(value: str) -> str | None:
    if len(value) != 11 or not value.isdigit():
        return f"an RPPS number has 11 digits, not {value!r}"
    if not luhn_valid(value):
        return f"the Luhn key of RPPS {value} is wrong"
    return None


def check_practitioner(practitioner: dict[str, Any], prefix: str) -> list[Issue]:
    issues = []
    for index, ident in enumerate(practitioner.get("identifier", [])):
        path = f"{prefix}.identifier[{index}].value"
        if ident.get("system") == RPPS:
            problem = rpps_problem(str(ident.get("value", "")))
            if problem:
                issues.append(Issue(f"Invalid RPPS: {problem}", "value", expression=path))
        elif ident.get("system") == NATIONAL_ID and not str(ident.get("value", "")).strip():
            issues.append(Issue("The national id (IdNat_PS) is empty", "value", expression=path))
    return issues


def display_name(practitioner: dict[str, Any]) -> str:
    """Title, given names and family name in capitals ("Dr Claire LAMBERT"); "" if none."""
    name = (practitioner.get("name") or [{}])[0]
    return french.professional_name(name.get("family") or "", name.get("given", []), name.get("prefix", []))
