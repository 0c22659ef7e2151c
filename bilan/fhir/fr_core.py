"""FR Core (HL7 France) conventions for the resources bilan writes or passes on: each national
identifier typed by its system (fr-core-cs-v2-0203), the official name as its first given name
plus the list of birth given names (`fr-core-patient-birth-list-given-name`), organisations by
both their national structure id and their FINESS, and a professional's profession (TRE_G15) and
specialty (TRE_R38) each in its own code system."""

from typing import Any

from bilan.fhir.terminology import (
    FINESS,
    INS_NIA,
    INS_NIR,
    INS_NIR_DEMO,
    INS_NIR_TEST,
    NATIONAL_ID,
    ORGANIZATION_ID,
    RPPS,
)

IDENTIFIER_TYPES = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
BIRTH_GIVEN_NAMES = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name"
PROFESSION = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
SPECIALTY = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
PHYSICIAN = {"system": PROFESSION, "code": "10", "display": "Médecin"}
MEDICAL_BIOLOGY = {"system": SPECIALTY, "code": "SM03", "display": "Biologie médicale (SM)"}
GENERAL_PRACTICE = {"system": SPECIALTY, "code": "SM54", "display": "Médecine générale (SM)"}

# The FR Core identifier type of each national system (the FINESS one: a lab is a geographic entity).
TYPE_OF_SYSTEM = {
    INS_NIR: ("INS-NIR", "NIR définitif"), INS_NIA: ("INS-NIA", "NIR temporaire"),
    INS_NIR_TEST: ("INS-NIR-TEST", "NIR TEST"), INS_NIR_DEMO: ("INS-NIR-DEMO", "NIR DEMO"),
    RPPS: ("RPPS", "N° RPPS"), NATIONAL_ID: ("IDNPS", "Identifiant National de Professionnel de Santé"),
    ORGANIZATION_ID: ("IDNST", "Identification nationale de structure définie par l’ANS dans le CI_SIS"),
    FINESS: ("FINEG", "FINESS d'entité géographique"),
}


def identifier_type(system: str) -> dict[str, Any] | None:
    """The FR Core `Identifier.type` of a national identifier system; None for any other."""
    found = TYPE_OF_SYSTEM.get(system)
    if found is None:
        return None
    return {"coding": [{"system": IDENTIFIER_TYPES, "code": found[0], "display": found[1]}]}


def typed(identifier: dict[str, Any]) -> dict[str, Any]:
    """The identifier with the type its system calls for (a wrong FR Core type is replaced: a
    test INS typed `INS-NIR` becomes `INS-NIR-TEST`); others unchanged."""
    wanted = identifier_type(str(identifier.get("system", "")))
    if wanted is None:
        return identifier
    if system_type(identifier) == wanted["coding"][0]["code"]:
        return identifier
    return {**identifier, "type": wanted}


def system_type(identifier: dict[str, Any]) -> str | None:
    """The FR Core type code an identifier carries, if any."""
    codings = (identifier.get("type") or {}).get("coding", [])
    return next((str(c.get("code")) for c in codings if c.get("system") == IDENTIFIER_TYPES), None)


def official_name(family: str, given: list[str] | tuple[str, ...], **more: Any) -> dict[str, Any]:
    """A Patient's official (birth) name: the first given name, and all of them in order in
    the birth-list extension."""
    name: dict[str, Any] = {"use": "official", "family": family, **more}
    if given:
        name["given"] = [given[0]]
        name["extension"] = [{"url": BIRTH_GIVEN_NAMES, "valueString": " ".join(given)}]
    return name


def birth_given_names(name: dict[str, Any]) -> tuple[str, ...]:
    """All birth given names of a name: its birth-list extension, else its given names."""
    listed = next((e.get("valueString") for e in name.get("extension", [])
                   if e.get("url") == BIRTH_GIVEN_NAMES and e.get("valueString")), None)
    return tuple(str(listed).split()) if listed else tuple(name.get("given") or ())


def in_fr_core_name(name: dict[str, Any]) -> dict[str, Any]:
    """An official name put in the FR Core form (names given all in `given` are listed)."""
    if name.get("use") != "official":
        return name
    kept = {k: v for k, v in name.items() if k not in ("use", "family", "given", "extension")}
    others = [e for e in name.get("extension", []) if e.get("url") != BIRTH_GIVEN_NAMES]
    found = official_name(str(name.get("family") or ""), list(birth_given_names(name)), **kept)
    found["extension"] = others + found.get("extension", [])
    if not found["extension"]:
        del found["extension"]
    return found


def organization_identifiers(finess: str) -> list[dict[str, Any]]:
    """An organisation's identifiers, typed: its national structure id ("1" + FINESS) and its FINESS."""
    return [typed({"use": "official", "system": ORGANIZATION_ID, "value": f"1{finess}"}),
            typed({"system": FINESS, "value": finess})]


def finess_of(identifier: dict[str, Any]) -> str | None:
    """The FINESS an organisation identifier names, in either form; None for another."""
    value = str(identifier.get("value") or "")
    if identifier.get("system") == FINESS and value:
        return value
    if identifier.get("system") == ORGANIZATION_ID and value.startswith("1") and len(value) > 1:
        return value[1:]
    return None
