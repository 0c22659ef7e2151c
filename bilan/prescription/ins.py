"""INS (Identifiant National de Santé): the NIR or NIA, its key, and the traits it travels with."""

import re
from typing import Any

from bilan.fhir.outcomes import Issue
from bilan.fhir.terminology import INS_NIA as INS_NIA
from bilan.fhir.terminology import INS_NIR as INS_NIR
from bilan.fhir.terminology import INS_NIR_DEMO as INS_NIR_DEMO
from bilan.fhir.terminology import INS_NIR_TEST as INS_NIR_TEST
from bilan.fhir.terminology import INS_SYSTEMS as INS_SYSTEMS
from bilan.prescription.checksums import nir_key

# The systems live in bilan/fhir/terminology.py (auth reads them too); named here for INS readers.

IDENTITY_RELIABILITY = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
IDENTITY_STATUS_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0445"
IDENTITY_STATUSES = ("PROV", "RECUP", "VALI", "QUAL")
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"

# sex, year, month, department (2 digits, 2A or 2B), commune, order number, key
_NIR = re.compile(r"^[1-478]\d{4}(\d{2}|2[ABab])\d{6}\d{2}$")


def ins_problem(value: str) -> str | None:
    """Why a 15-character INS (13-character NIR/NIA + 2-digit key) is wrong, or None."""
    if len(value) != 15:
        return f"an INS has 15 characters (13 + a 2-digit key), {value!r} has {len(value)}"
    if not _NIR.match(value):
        return (f"{value!r} is not shaped like a NIR: sex digit, year, month, department "
                "(digits, 2A or 2B), commune, order number, key")
    expected = nir_key(value[:13])
    if int(value[13:]) != expected:
        return f"the key of {value!r} is wrong: {value[:13]} gives key {expected:02d}, not {value[13:]}"
    return None


def identity_status(patient: dict[str, Any]) -> str | None:
    """PROV, RECUP, VALI or QUAL from the FR Core identity-reliability extension."""
    for ext in patient.get("extension", []):
        if ext.get("url") != IDENTITY_RELIABILITY:
            continue
        for sub in ext.get("extension", []):
            if sub.get("url") == "identityStatus":
                return (sub.get("valueCoding") or {}).get("code")
    return None


def ins_identifiers(patient: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, ident) for i, ident in enumerate(patient.get("identifier", []))
            if ident.get("system") in INS_SYSTEMS]


def check_patient(patient: dict[str, Any], prefix: str) -> list[Issue]:
    """INS format and key, the traits that must go with it, and the reliability status."""
    issues: list[Issue] = []
    status = identity_status(patient)
    if status is not None and status not in IDENTITY_STATUSES:
        issues.append(Issue(f"identity status {status!r} is not one of {', '.join(IDENTITY_STATUSES)}",
                            "code-invalid", expression=f"{prefix}.extension"))
    found = ins_identifiers(patient)
    for index, ident in found:
        path = f"{prefix}.identifier[{index}].value"
        problem = ins_problem(str(ident.get("value", "")))
        if problem:
            issues.append(Issue(f"Invalid INS: {problem}", "value", expression=path))
        else:
            issues.extend(_consistency(patient, ident["value"], prefix))
    if found:
        issues.extend(_traits(patient, prefix, status))
    return issues


def _traits(patient: dict[str, Any], prefix: str, status: str | None) -> list[Issue]:
    missing = []
    official = [n for n in patient.get("name", []) if n.get("use") == "official"]
    if not official or not official[0].get("family"):
        missing.append(("birth name (name with use 'official' and a family)", "name"))
    elif not official[0].get("given"):
        missing.append(("birth given names (given of the official name)", "name"))
    if not patient.get("birthDate"):
        missing.append(("birth date", "birthDate"))
    if patient.get("gender") not in ("male", "female", "other", "unknown"):
        missing.append(("sex", "gender"))
    issues = [Issue(f"An INS must travel with its traits: {what} is missing", "required",
                    expression=f"{prefix}.{element}") for what, element in missing]
    if not any(e.get("url") == BIRTH_PLACE for e in patient.get("extension", [])):
        issues.append(Issue(
            "An INS must travel with its traits: the birthplace (INSEE code, patient-birthPlace "
            "extension) is missing",
            "required", severity="error" if status == "QUAL" else "warning",
            expression=f"{prefix}.extension"))
    return issues


def _consistency(patient: dict[str, Any], value: str, prefix: str) -> list[Issue]:
    """The NIR encodes sex and birth year/month: they must agree with the traits."""
    issues = []
    sex = {"1": "male", "2": "female", "7": "male", "8": "female"}.get(value[0])
    gender = patient.get("gender")
    if sex and gender in ("male", "female") and gender != sex:
        issues.append(Issue(f"The INS says {sex} but gender is {gender}", "business-rule",
                            expression=f"{prefix}.gender"))
    birth = str(patient.get("birthDate", ""))
    if len(birth) >= 7 and value[3:5].isdigit() and 1 <= int(value[3:5]) <= 12:
        if birth[2:4] != value[1:3] or birth[5:7] != value[3:5]:
            issues.append(Issue(f"The INS says born {value[3:5]}/{value[1:3]} but birthDate is {birth}",
                                "business-rule", expression=f"{prefix}.birthDate"))
    return issues
