"""The ordinary FHIR REST interactions, as any FHIR client expects them."""

import httpx

from bilan.demo.prescriptions import patient_resource, random_person
from tests.helpers import diagnostics, expressions


def _patient(rng) -> dict:
    return patient_resource(random_person(rng))


def test_create_read_update_with_versions(fhir: httpx.Client, rng) -> None:
    created = fhir.post("Patient", json=_patient(rng))
    assert created.status_code == 201
    patient = created.json()
    assert created.headers["location"].endswith(f"/Patient/{patient['id']}/_history/1")
    assert created.headers["etag"] == 'W/"1"'
    assert patient["meta"]["versionId"] == "1"

    patient["telecom"] = [{"system": "phone", "value": "0612345678"}]
    updated = fhir.put(f"Patient/{patient['id']}", json=patient, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200
    assert updated.headers["etag"] == 'W/"2"'

    read = fhir.get(f"Patient/{patient['id']}")
    assert read.json()["telecom"][0]["value"] == "0612345678"
    assert read.headers["etag"] == 'W/"2"'
    first = fhir.get(f"Patient/{patient['id']}/_history/1").json()
    assert "telecom" not in first and first["meta"]["versionId"] == "1"


def test_stale_update_is_refused_and_nothing_is_overwritten(fhir: httpx.Client, rng) -> None:
    patient = fhir.post("Patient", json=_patient(rng)).json()
    patient["gender"] = "unknown"
    assert fhir.put(f"Patient/{patient['id']}", json=patient, headers={"If-Match": 'W/"1"'}).status_code == 200

    patient["telecom"] = [{"system": "phone", "value": "0699999999"}]
    stale = fhir.put(f"Patient/{patient['id']}", json=patient, headers={"If-Match": 'W/"1"'})

    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    current = fhir.get(f"Patient/{patient['id']}").json()
    assert current["meta"]["versionId"] == "2" and "telecom" not in current


def test_update_creates_with_a_client_id(fhir: httpx.Client, rng) -> None:
    patient = dict(_patient(rng), id=f"client-{rng.randint(0, 10**9)}")
    response = fhir.put(f"Patient/{patient['id']}", json=patient)
    assert response.status_code == 201
    assert fhir.get(f"Patient/{patient['id']}").status_code == 200


def test_update_with_mismatched_id_is_refused(fhir: httpx.Client, rng) -> None:
    patient = fhir.post("Patient", json=_patient(rng)).json()
    response = fhir.put(f"Patient/{patient['id']}", json=dict(patient, id="other"))
    assert response.status_code == 400
    assert "Patient.id" in expressions(response)


def test_delete_keeps_history(fhir: httpx.Client, rng) -> None:
    patient = fhir.post("Patient", json=_patient(rng)).json()

    assert fhir.delete(f"Patient/{patient['id']}").status_code == 204

    assert fhir.get(f"Patient/{patient['id']}").status_code == 410
    history = fhir.get(f"Patient/{patient['id']}/_history").json()
    assert history["type"] == "history" and history["total"] == 2
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert fhir.get(f"Patient/{patient['id']}/_history/1").json()["id"] == patient["id"]
    assert fhir.get(f"Patient/{patient['id']}/_history/2").status_code == 410
    found = fhir.get("Patient", params={"_id": patient["id"]}).json()
    assert found["total"] == 0


def test_prefer_return(fhir: httpx.Client, rng) -> None:
    minimal = fhir.post("Patient", json=_patient(rng), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert "location" in minimal.headers

    outcome = fhir.post("Patient", json=_patient(rng), headers={"Prefer": "return=OperationOutcome"})
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_conditional_create_with_if_none_exist(fhir: httpx.Client, rng) -> None:
    patient = _patient(rng)
    ident = patient["identifier"][0]
    criteria = f"identifier={ident['system']}|{ident['value']}"

    first = fhir.post("Patient", json=patient, headers={"If-None-Exist": criteria})
    second = fhir.post("Patient", json=patient, headers={"If-None-Exist": criteria})

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


def test_xml_when_asked(fhir: httpx.Client, rng) -> None:
    patient = fhir.post("Patient", json=_patient(rng)).json()

    by_format = fhir.get(f"Patient/{patient['id']}", params={"_format": "xml"})
    by_accept = fhir.get(f"Patient/{patient['id']}", headers={"Accept": "application/fhir+xml"})

    for response in (by_format, by_accept):
        assert response.headers["content-type"].startswith("application/fhir+xml")
        assert response.text.startswith("<?xml") and f'<id value="{patient["id"]}"/>' in response.text
    created = fhir.post("Patient", content=by_format.content,
                        headers={"Content-Type": "application/fhir+xml"})
    assert created.status_code == 201
    assert created.json()["identifier"] == patient["identifier"]


def test_xml_with_an_entity_declaration_is_refused(fhir: httpx.Client) -> None:
    body = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Patient xmlns="http://hl7.org/fhir"><gender value="&x;"/></Patient>')
    response = fhir.post("Patient", content=body, headers={"Content-Type": "application/fhir+xml"})
    assert response.status_code == 400
    assert "root" not in response.text


def test_errors_are_operation_outcomes(fhir: httpx.Client) -> None:
    assert fhir.get("Patient/does-not-exist").status_code == 404
    unknown_type = fhir.get("Medication/1")
    assert unknown_type.status_code == 404 and "does not serve" in diagnostics(unknown_type)
    strict = fhir.get("Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and "shoe-size" in diagnostics(strict)
    bad_date = fhir.get("Patient", params={"birthdate": "ge1980-99"})
    assert bad_date.status_code == 400
    assert fhir.patch("Patient/x", json={}).status_code == 405
    mismatch = fhir.post("Practitioner", json={"resourceType": "Patient"})
    assert mismatch.status_code == 400


def test_resource_with_a_dangling_reference_is_refused(fhir: httpx.Client) -> None:
    response = fhir.post("Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "Poids"},
        "subject": {"reference": "Patient/nobody"},
    })
    assert response.status_code == 422
    assert "Observation.subject.reference" in expressions(response)


def test_unknown_search_parameters_are_ignored_and_said_so(fhir: httpx.Client, rng) -> None:
    patient = fhir.post("Patient", json=_patient(rng)).json()

    response = fhir.get("Patient", params={"_id": patient["id"], "shoe-size": "42"})

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1
    outcome = [e for e in body["entry"] if e["search"]["mode"] == "outcome"][0]["resource"]
    assert "shoe-size" in outcome["issue"][0]["diagnostics"]
    self_link = [link["url"] for link in body["link"] if link["relation"] == "self"][0]
    assert "shoe-size" not in self_link
