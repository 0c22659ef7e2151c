"""A patient's identity traits (INS doctrine): read from a Patient, compared field by field
with another file, copied into the lab's own patient file."""

import unicodedata
from dataclasses import dataclass
from typing import Any

from bilan import french
from bilan.fhir import fr_core
from bilan.prescription.ins import (
    BIRTH_PLACE,
    IDENTITY_RELIABILITY,
    IDENTITY_STATUS_SYSTEM,
    identity_status,
    ins_identifiers,
)

LAB_PATIENT = "https://bilan.sante.fr/fhir/sid/lab-patient"  # + "/" + FINESS: the lab's file number
STATUS_LABELS = {"PROV": "Identité provisoire", "RECUP": "Identité récupérée",
                 "VALI": "Identité validée", "QUAL": "Identité qualifiée"}
SEX_LABELS = {"female": "F", "male": "M", "other": "Autre", "unknown": "Inconnu"}


@dataclass(frozen=True)
class Traits:
    family: str  # birth name
    given: tuple[str, ...]  # birth given names, in order
    birth_date: str  # YYYY-MM-DD
    sex: str
    birth_place: str  # INSEE (COG) code
    ins: str
    status: str  # PROV, RECUP, VALI or QUAL; PROV when the file says nothing

    @property
    def name(self) -> str:
        """As a lab shows it: birth name in capitals, then the first given name."""
        return french.person_name(self.family, self.given[:1])

    @property
    def birth_date_fr(self) -> str:
        return french.date(self.birth_date)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def provisional(self) -> bool:
        return self.status == "PROV"


@dataclass(frozen=True)
class Comparison:
    label: str
    prescribed: str
    on_file: str
    trait: bool = True  # an identity trait; False for what only describes the identity

    @property
    def same(self) -> bool:
        return fold(self.prescribed) == fold(self.on_file)


def fold(text: str) -> str:
    """Lower case, no accents, single spaces: how names are compared and searched."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.lower().split())


def traits(patient: dict[str, Any]) -> Traits:
    names = patient.get("name") or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    ins = ins_identifiers(patient)
    return Traits(
        family=official.get("family") or "",
        given=fr_core.birth_given_names(official),
        birth_date=patient.get("birthDate") or "",
        sex=patient.get("gender") or "",
        birth_place=_birth_place(patient),
        ins=ins[0][1].get("value", "") if ins else "",
        status=identity_status(patient) or "PROV",
    )


def compare(prescribed: Traits, on_file: Traits) -> list[Comparison]:
    """The traits side by side, as the identity check shows them."""
    return [
        Comparison("Nom de naissance", prescribed.family, on_file.family),
        Comparison("Prénoms de naissance", " ".join(prescribed.given), " ".join(on_file.given)),
        Comparison("Date de naissance", prescribed.birth_date_fr, on_file.birth_date_fr),
        Comparison("Sexe", SEX_LABELS.get(prescribed.sex, prescribed.sex),
                   SEX_LABELS.get(on_file.sex, on_file.sex)),
        Comparison("Lieu de naissance (code INSEE)", prescribed.birth_place, on_file.birth_place),
        Comparison("INS", prescribed.ins, on_file.ins),
        Comparison("Statut de l'identité", prescribed.status_label, on_file.status_label, trait=False),
    ]


def lab_file(prescribed: dict[str, Any], lab_finess: str, number: str) -> dict[str, Any]:
    """A new patient file for the lab, with the prescription's traits and their reliability
    status unchanged (a provisional identity stays provisional), in the FR Core form: the INS
    typed by its system, the official name as its first given name and the birth list."""
    keep = ("extension", "name", "gender", "birthDate", "telecom", "address")
    patient = {"resourceType": "Patient", **{k: prescribed[k] for k in keep if k in prescribed}}
    if "name" in patient:
        patient["name"] = [fr_core.in_fr_core_name(n) for n in patient["name"]]
    patient["identifier"] = [fr_core.typed(ident) for _, ident in ins_identifiers(prescribed)]
    patient = numbered(patient, lab_finess, number)
    if identity_status(patient) is None:
        patient.setdefault("extension", []).append({"url": IDENTITY_RELIABILITY, "extension": [
            {"url": "identityStatus", "valueCoding": {"system": IDENTITY_STATUS_SYSTEM, "code": "PROV"}}]})
    return patient


def numbered(patient: dict[str, Any], lab_finess: str, number: str) -> dict[str, Any]:
    """The patient file with the lab's file number first among its identifiers."""
    return {**patient, "identifier": [{"use": "usual", "system": f"{LAB_PATIENT}/{lab_finess}", "value": number},
                                      *patient.get("identifier", [])]}


def file_number(patient: dict[str, Any], lab_finess: str) -> str:
    return next((i.get("value", "") for i in patient.get("identifier", [])
                 if i.get("system") == f"{LAB_PATIENT}/{lab_finess}"), "")


def _birth_place(patient: dict[str, Any]) -> str:
    for ext in patient.get("extension", []):
        if ext.get("url") == BIRTH_PLACE:
            for sub in (ext.get("valueAddress") or {}).get("extension", []):
                code = (sub.get("valueCoding") or {}).get("code")
                if code:
                    return str(code)
    return ""
