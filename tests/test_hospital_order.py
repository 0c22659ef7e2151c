"""A hospital's order: the prescription Bundle comes with the stay it was made in (Encounter)
and the ward (Location); both are stored, served and searchable, seen by whoever sees the
prescription, and by nobody else."""

import random
from typing import Any

import httpx
import pytest

from bilan.demo.prescriptions import REQUISITION_SYSTEM, bundle, patient_resource, random_person
from tests.helpers import expressions, ids, locations, post_bundle, search, uuid_from
from tests.orders import addressed
from tests.people import DUPONT

HOSPITAL_FINESS = "750100125"  # its legal entity's establishment (a FINESS of the AP-HP shape)
FINESS_ORG = "urn:oid:1.2.250.1.71.4.2.2"
STAY_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2.750100125.1"  # the hospital's own visit numbers
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def hospital_order(rng: random.Random, **changes: Any) -> tuple[dict[str, Any], str]:
    """A prescription to the demo lab made during a hospital stay, and the stay's number."""
    order = bundle(addressed(rng, **changes))
    patient = order["entry"][0]["fullUrl"]
    hospital, ward, stay = (f"urn:uuid:{uuid_from(rng)}" for _ in range(3))
    number = f"SEJ-{rng.randint(10**8, 10**9)}"
    ward_id = f"{HOSPITAL_FINESS}-MED{rng.randint(1, 9)}"
    order["entry"] += [
        _post(hospital, {"resourceType": "Organization", "name": "Hôpital Saint-Antoine",
                         "identifier": [{"system": FINESS_ORG, "value": f"1{HOSPITAL_FINESS}"}]},
              f"identifier={FINESS_ORG}|1{HOSPITAL_FINESS}"),
        _post(ward, {"resourceType": "Location", "status": "active", "name": "Médecine interne",
                     "identifier": [{"system": "https://bilan.sante.fr/fhir/sid/location", "value": ward_id}],
                     "managingOrganization": {"reference": hospital},
                     "address": {"city": "Paris", "postalCode": "75012"}},
              f"identifier=https://bilan.sante.fr/fhir/sid/location|{ward_id}"),
        _post(stay, {"resourceType": "Encounter", "status": "in-progress",
                     "identifier": [{"system": STAY_SYSTEM, "value": number}],
                     "class": {"system": V3_ACT, "code": "IMP", "display": "inpatient encounter"},
                     "subject": {"reference": patient},
                     "period": {"start": "2031-05-04T08:30:00+02:00"},
                     "location": [{"location": {"reference": ward}}],
                     "serviceProvider": {"reference": hospital}}),
    ]
    for entry in order["entry"]:
        if entry["resource"]["resourceType"] == "ServiceRequest":
            entry["resource"]["encounter"] = {"reference": stay}
    return order, number


def _post(full_url: str, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
    request = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


@pytest.fixture(scope="module")
def received(fhir: httpx.Client, rng_module: random.Random) -> dict[str, Any]:
    order, number = hospital_order(rng_module)
    response = post_bundle(fhir, order)
    assert response.status_code == 200, response.text
    where = locations(response)
    return {"order": order, "stay": number, "where": where,
            "encounter": next(loc for loc in where if loc.startswith("Encounter/")),
            "location": next(loc for loc in where if loc.startswith("Location/")),
            "patient": where[0],
            "requests": {loc for loc in where if loc.startswith("ServiceRequest/")}}


def test_the_order_goes_through_intake_with_its_stay(received: dict[str, Any], fhir: httpx.Client) -> None:
    order = received["order"]
    requisition = next(e["resource"]["requisition"]["value"] for e in order["entry"]
                       if e["resource"]["resourceType"] == "ServiceRequest")
    tasks = search(fhir, "Task", requisition=f"{REQUISITION_SYSTEM}|{requisition}")
    assert tasks["total"] == 1  # the lab's order was opened
    for request in received["requests"]:
        assert fhir.get(request).json()["encounter"]["reference"] == received["encounter"]
    encounter = fhir.get(received["encounter"]).json()
    assert encounter["subject"]["reference"] == received["patient"]
    assert encounter["location"][0]["location"]["reference"] == received["location"]
    assert fhir.get(received["location"]).json()["name"] == "Médecine interne"


def test_the_lab_finds_the_stay_and_the_ward(received: dict[str, Any], lab_middleware: httpx.Client) -> None:
    encounter, location = received["encounter"], received["location"]
    assert lab_middleware.get(encounter).status_code == 200
    by_patient = search(lab_middleware, "Encounter", patient=received["patient"])
    assert ids(by_patient) == {encounter}
    by_number = search(lab_middleware, "Encounter", identifier=f"{STAY_SYSTEM}|{received['stay']}",
                       **{"class": f"{V3_ACT}|IMP"}, date="ge2031-05-04")
    assert ids(by_number) == {encounter}
    assert ids(search(lab_middleware, "ServiceRequest", encounter=encounter)) == received["requests"]
    assert location in ids(search(lab_middleware, "Location", name="medecine", **{"address-city": "Paris"}))
    # The stay with each exam, then (iterating) the ward the stay names.
    found = search(lab_middleware, "ServiceRequest", encounter=encounter,
                   _include="ServiceRequest:encounter", **{"_include:iterate": "Encounter:location"})
    assert ids(found, "include") == {encounter, location}
    once = search(lab_middleware, "ServiceRequest", encounter=encounter, _include="ServiceRequest:encounter")
    assert ids(once, "include") == {encounter}
    # A plain _include starts at the searched type: it never follows what was included.
    refused = lab_middleware.get("ServiceRequest", params={"encounter": encounter,
                                                           "_include": "Encounter:location"})
    assert refused.status_code == 400 and "_include" in expressions(refused)


def test_another_prescriber_sees_neither_the_stay_nor_finds_it(received: dict[str, Any], as_user: Any) -> None:
    nguyen = as_user("dr.nguyen")
    read = nguyen.get(received["encounter"])
    assert read.status_code == 403
    assert search(nguyen, "Encounter", patient=received["patient"])["total"] == 0
    assert search(nguyen, "Encounter", identifier=f"{STAY_SYSTEM}|{received['stay']}")["total"] == 0
    # The ward is no one's data: everyone signed in may read it, as the directory.
    assert nguyen.get(received["location"]).status_code == 200
    # Nor can he widen his view by pointing at the stay from an order of his own.
    patient = nguyen.post("Patient", json=patient_resource(random_person(random.Random(received["stay"])))).json()
    widened = nguyen.post("ServiceRequest", json={
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": f"Patient/{patient['id']}"},
        "encounter": {"reference": received["encounter"]}})
    assert widened.status_code == 403 and expressions(widened) == {"ServiceRequest.encounter"}
    assert nguyen.get(received["encounter"]).status_code == 403


def test_the_patient_reads_her_own_stay(fhir: httpx.Client, as_user: Any, rng: random.Random) -> None:
    order, number = hospital_order(rng, patient=DUPONT)
    response = post_bundle(fhir, order)
    assert response.status_code == 200, response.text
    encounter = next(loc for loc in locations(response) if loc.startswith("Encounter/"))
    dupont = as_user("patient.dupont")
    assert dupont.get(encounter).status_code == 200
    assert encounter in ids(search(dupont, "Encounter", identifier=f"{STAY_SYSTEM}|{number}"))


def test_a_stay_of_another_patient_is_refused_and_nothing_stored(fhir: httpx.Client, rng: random.Random) -> None:
    order, number = hospital_order(rng)
    other = bundle(addressed(rng))["entry"][0]
    other["fullUrl"] = f"urn:uuid:{uuid_from(rng)}"
    order["entry"].append(other)
    stay = next(i for i, e in enumerate(order["entry"]) if e["resource"]["resourceType"] == "Encounter")
    order["entry"][stay]["resource"]["subject"] = {"reference": other["fullUrl"]}

    response = post_bundle(fhir, order)

    assert response.status_code == 422, response.text
    assert f"Bundle.entry[{stay}].resource.subject" in expressions(response)
    assert search(fhir, "Encounter", identifier=f"{STAY_SYSTEM}|{number}")["total"] == 0
