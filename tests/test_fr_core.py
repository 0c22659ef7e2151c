"""FR Core (HL7 France) as bilan writes it: each national identifier typed by its system (a
test INS is `INS-NIR-TEST`, never `INS-NIR`), the official name as its first given name plus the
birth list, RPPS and national id, IDNST and FINESS typed, profession (TRE_G15) and specialty
(TRE_R38) each in its own system, the lab's Task focused on the request; and a prescription
that addresses the lab by its FINESS, in either form, reaches the lab's worklist."""

import random
from typing import Any

import httpx
import pytest

from bilan.demo.load import LAB_FINESS, lab_directory
from bilan.demo.prescriptions import bundle, patient_resource, random_person
from bilan.fhir import fr_core
from bilan.fhir.terminology import FINESS, INS_NIR, INS_NIR_DEMO, INS_NIR_TEST, NATIONAL_ID, ORGANIZATION_ID, RPPS
from bilan.prescription.identity import lab_file, traits
from tests.dmp_bundles import contained, copy_and_bundle, types_of
from tests.helpers import post_bundle, search
from tests.orders import addressed, imported, listed, task_of, worklist


def _official(patient: dict[str, Any]) -> dict[str, Any]:
    return next(n for n in patient["name"] if n.get("use") == "official")


def _birth_list(name: dict[str, Any]) -> str:
    return next(e["valueString"] for e in name.get("extension", []) if e["url"] == fr_core.BIRTH_GIVEN_NAMES)


@pytest.mark.parametrize(("system", "code"), [(INS_NIR, "INS-NIR"), (INS_NIR_TEST, "INS-NIR-TEST"),
                                              (INS_NIR_DEMO, "INS-NIR-DEMO")])
def test_the_lab_file_types_the_ins_by_its_system_even_when_the_prescription_typed_it_wrong(
        system: str, code: str, rng: random.Random) -> None:
    prescribed = patient_resource(random_person(rng))
    prescribed["identifier"] = [{"use": "official", "system": system, "value": prescribed["identifier"][0]["value"],
                                 "type": {"coding": [{"system": fr_core.IDENTIFIER_TYPES, "code": "INS-NIR"}]}}]
    created = lab_file(prescribed, LAB_FINESS, "P0000001")
    assert types_of(created)[system] == code


def test_the_official_name_is_the_first_given_name_and_the_birth_list(rng: random.Random) -> None:
    person = random_person(rng)
    person.given = ["Marie", "Anne-Sophie", "Louise"]
    older = patient_resource(person)
    older["name"] = [{"use": "official", "family": person.family, "given": person.given},
                     {"use": "usual", "family": "Martin"}]  # all given names in given, as before FR Core
    created = lab_file(older, LAB_FINESS, "P0000001")
    official = _official(created)
    assert official["given"] == ["Marie"] and _birth_list(official) == "Marie Anne-Sophie Louise"
    assert {"use": "usual", "family": "Martin"} in created["name"]  # other names as they were
    assert traits(created).given == ("Marie", "Anne-Sophie", "Louise") == traits(older).given  # both forms read


def test_a_prescribed_patient_reaches_the_lab_file_in_fr_core_form_with_all_given_names(
        fhir: httpx.Client, as_user: Any, desk: httpx.Client, web_root: str, rng: random.Random) -> None:
    spec = addressed(rng)
    spec.patient.given = ["Hélène", "Marie"]
    task_id = imported(fhir, desk, web_root, spec)
    biologist = as_user("bio.durand")
    task = biologist.get(f"Task/{task_id}").json()
    file_reference = next(i["valueReference"]["reference"] for i in task["input"] if i.get("valueReference"))
    patient = biologist.get(file_reference).json()
    assert types_of(patient).get(INS_NIR_TEST) == "INS-NIR-TEST", patient
    official = _official(patient)
    assert official["given"] == ["Hélène"] and _birth_list(official) == "Hélène Marie"
    page = desk.get(f"{web_root}/reception/prescriptions/{task_id}")
    assert "Hélène Marie" in page.text  # the identity check still compares every birth given name


def test_the_dmp_copy_types_every_national_identifier() -> None:
    _, bundle_ = copy_and_bundle()
    copy = bundle_["entry"][1]["resource"]
    lab = contained(copy, copy["custodian"])
    biologist = contained(copy, copy["authenticator"])
    patient = contained(copy, copy["context"]["sourcePatientInfo"])
    assert types_of(lab) == {ORGANIZATION_ID: "IDNST", FINESS: "FINEG"}
    assert {i["value"] for i in lab["identifier"]} == {"1750012345", "750012345"}
    assert types_of(biologist) == {RPPS: "RPPS", NATIONAL_ID: "IDNPS"}
    assert types_of(patient) == {INS_NIR_TEST: "INS-NIR-TEST"}
    assert _official(patient)["given"] == ["Marie"] and _birth_list(_official(patient)) == "Marie Louise Jeanne"


def test_the_directory_types_identifiers_and_keeps_profession_and_specialty_apart(rng: random.Random) -> None:
    lab, biologist, _ = (resource for resource, _ in lab_directory())
    assert types_of(lab) == {ORGANIZATION_ID: "IDNST", FINESS: "FINEG"}
    assert types_of(biologist) == {RPPS: "RPPS", NATIONAL_ID: "IDNPS"}
    qualifications = [c for q in biologist["qualification"] for c in q["code"]["coding"]]
    assert {(c["system"], c["code"]) for c in qualifications} == {(fr_core.PROFESSION, "10"), (fr_core.SPECIALTY, "SM03")}
    resources = {e["resource"]["resourceType"]: e["resource"] for e in bundle(addressed(rng))["entry"]}
    role = resources["PractitionerRole"]
    assert [c["system"] for cc in role["code"] for c in cc["coding"]] == [fr_core.PROFESSION]
    assert [c["system"] for cc in role["specialty"] for c in cc["coding"]] == [fr_core.SPECIALTY]
    assert types_of(resources["Practitioner"]) == {RPPS: "RPPS", NATIONAL_ID: "IDNPS"}
    assert types_of(resources["Organization"]) == {ORGANIZATION_ID: "IDNST", FINESS: "FINEG"}


def _addressed_by_identifier(spec: Any, system: str, value: str) -> dict[str, Any]:
    """The prescription's Bundle with its lab named by an identifier alone (no reference)."""
    sent = bundle(spec)
    for entry in sent["entry"]:
        if entry["resource"]["resourceType"] == "ServiceRequest":
            entry["resource"]["performer"] = [{"type": "Organization", "identifier": {"system": system, "value": value}}]
    return sent


@pytest.mark.parametrize("form", ["FINESS reference", "FINESS identifier", "IDNST identifier"])
def test_a_prescription_addressed_to_the_lab_by_its_finess_lands_on_its_worklist(
        form: str, fhir: httpx.Client, lab_middleware: httpx.Client, other_lab: httpx.Client, desk: httpx.Client,
        web_root: str, rng: random.Random) -> None:
    spec = addressed(rng)
    if form == "FINESS reference":
        spec.lab = (FINESS, LAB_FINESS)  # Organization?identifier=https://finess.esante.gouv.fr|<finess>
        response = post_bundle(fhir, bundle(spec))
    else:
        system, value = (FINESS, LAB_FINESS) if form == "FINESS identifier" else (ORGANIZATION_ID, f"1{LAB_FINESS}")
        response = post_bundle(fhir, _addressed_by_identifier(spec, system, value))
    assert response.status_code == 200, response.text
    assert listed(spec.requisition, worklist(desk, web_root, spec.requisition))
    task = task_of(fhir, spec.requisition)
    lab = search(fhir, "Organization", identifier=f"{FINESS}|{LAB_FINESS}")["entry"][0]["resource"]
    assert task["owner"]["reference"] == f"Organization/{lab['id']}"
    assert task["focus"] == task["basedOn"][0]  # the request the Task fulfils, in focus
    [first] = (b["reference"] for b in task["basedOn"][:1])
    assert lab_middleware.get(first).status_code == 200  # the lab reads what is addressed to it
    assert other_lab.get(first).status_code in (403, 404)  # another lab does not
