"""The ordinary FHIR REST interactions, as any FHIR client expects them."""

import httpx

from bilan.demo.prescriptions import bundle, patient_resource, random_person
from tests.helpers import diagnostics, expressions, ids, locations, post_bundle, search
from tests.orders import addressed
from tests.people import DUPONT


def _patient(rng) -> dict:
    return patient_resource(random_person(rng))


def _named(rng, family: str) -> dict:
    patient = _patient(rng)
    patient["name"][0]["family"] = family
    return patient


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


def test_a_version_is_found_by_its_own_values_only(fhir: httpx.Client, rng) -> None:
    """Search rows follow the current version: an update drops the old version's values, a
    transaction that creates and updates together indexes both."""
    first, second = (f"Versionné-{rng.randint(0, 10**9)}" for _ in range(2))
    patient = fhir.post("Patient", json=_named(rng, first)).json()
    patient["name"][0]["family"] = second
    assert fhir.put(f"Patient/{patient['id']}", json=patient).status_code == 200
    assert search(fhir, "Patient", **{"family:exact": first})["total"] == 0
    assert ids(search(fhir, "Patient", **{"family:exact": second})) == {f"Patient/{patient['id']}"}

    third, fourth = (f"Versionné-{rng.randint(0, 10**9)}" for _ in range(2))
    patient["name"][0]["family"] = third
    both = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient, "request": {"method": "PUT", "url": f"Patient/{patient['id']}"}},
        {"resource": _named(rng, fourth), "request": {"method": "POST", "url": "Patient"}},
    ]}
    response = post_bundle(fhir, both)
    assert response.status_code == 200, response.text
    assert search(fhir, "Patient", **{"family:exact": second})["total"] == 0
    assert ids(search(fhir, "Patient", **{"family:exact": third})) == {f"Patient/{patient['id']}"}
    assert ids(search(fhir, "Patient", **{"family:exact": fourth})) == {locations(response)[1]}
    history = fhir.get(f"Patient/{patient['id']}/_history").json()
    assert [e["resource"]["name"][0]["family"] for e in history["entry"]] == [third, second, first]


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


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _ordered(fhir: httpx.Client, rng, **changes) -> tuple[object, list[str]]:
    """A prescription by Dr Lambert to the demo lab: the spec and the stored 'Type/id's."""
    spec = addressed(rng, **changes)
    response = post_bundle(fhir, bundle(spec))
    assert response.status_code == 200, response.text
    return spec, locations(response)


def test_post_search_answers_as_get_does(fhir: httpx.Client, as_user, rng) -> None:
    _, where = _ordered(fhir, rng)
    patient = where[0]
    by_get = search(fhir, "ServiceRequest", patient=patient, _include="ServiceRequest:patient")
    by_post = fhir.post("ServiceRequest/_search", headers=FORM,
                        data={"patient": patient, "_include": "ServiceRequest:patient"})
    assert by_post.status_code == 200, by_post.text
    assert ids(by_post.json()) == ids(by_get) and ids(by_post.json(), "include") == {patient}
    assert by_post.json()["total"] == by_get["total"] > 0
    # Parameters in the URL and in the body add up.
    both = fhir.post(f"ServiceRequest/_search?patient={patient}", headers=FORM, data={"_count": "1"})
    assert both.json()["total"] == by_get["total"] and len(both.json()["entry"]) == 1
    # The same access rules: another prescriber finds nothing of Dr Lambert's patient.
    nguyen = as_user("dr.nguyen").post("ServiceRequest/_search", headers=FORM, data={"patient": patient})
    assert nguyen.status_code == 200 and nguyen.json()["total"] == 0
    # The same refusals, naming the parameter.
    refused = fhir.post("ServiceRequest/_search", headers=FORM, data={"authored": "ge1980-99"})
    assert refused.status_code == 400 and "authored" in expressions(refused)
    as_json = fhir.post("ServiceRequest/_search", json={"patient": patient})
    assert as_json.status_code == 415


def test_post_search_is_in_the_patients_audit_trail(fhir: httpx.Client, as_user, rng) -> None:
    _, where = _ordered(fhir, rng, patient=DUPONT)
    dupont = as_user("patient.dupont")
    before = search(dupont, "AuditEvent", subtype="search-type", altid="practice-software-demo")["total"]
    posted = fhir.post("ServiceRequest/_search", headers=FORM, data={"patient": where[0]})
    assert posted.status_code == 200 and posted.json()["total"] > 0
    after = search(dupont, "AuditEvent", subtype="search-type", altid="practice-software-demo")["total"]
    assert after == before + 1


def test_revinclude_iterate_follows_what_was_included(fhir: httpx.Client, rng) -> None:
    _, where = _ordered(fhir, rng)
    patient = where[0]
    requests = {w for w in where if w.startswith("ServiceRequest/")}
    once = search(fhir, "Patient", _id=patient.split("/")[1], _revinclude="ServiceRequest:patient")
    assert ids(once, "include") == requests
    iterated = fhir.get("Patient", params=[("_id", patient.split("/")[1]),
                                          ("_revinclude", "ServiceRequest:patient"),
                                          ("_revinclude:iterate", "Task:based-on")]).json()
    tasks = {i for i in ids(iterated, "include") if i.startswith("Task/")}
    assert len(tasks) == 1 and ids(iterated, "include") == requests | tasks


def test_transaction_reads_come_after_its_writes(fhir: httpx.Client, as_user, rng) -> None:
    patient = _patient(rng)
    ident = patient["identifier"][0]
    hidden = as_user("dr.nguyen").post("Patient", json=_patient(rng)).json()["id"]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"Patient?identifier={ident['system']}|{ident['value']}"}},
        {"fullUrl": "urn:uuid:6f1c3b1e-1d1f-4a55-9a64-7f7b3c0e2a11", "resource": patient,
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": f"Patient/{hidden}"}},
        {"request": {"method": "GET", "url": "Patient/nobody-at-all"}},
    ]}
    response = post_bundle(fhir, transaction)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    found = entries[0]["resource"]
    assert found["type"] == "searchset" and found["total"] == 1  # it sees the write of entry 1
    assert entries[1]["response"]["status"] == "201 Created"
    assert found["entry"][0]["resource"]["id"] == entries[1]["response"]["location"].split("/")[1]
    assert entries[2]["response"]["status"] == "403 Forbidden" and "resource" not in entries[2]
    assert entries[2]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[3]["response"]["status"] == "404 Not Found"


def test_batch_answers_each_entry_on_its_own(fhir: httpx.Client, rng) -> None:
    kept = fhir.post("Patient", json=_patient(rng)).json()
    good, bad = _patient(rng), dict(_patient(rng), gender="martian")
    ident = good["identifier"][0]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": good, "request": {"method": "POST", "url": "Patient"}},
        {"resource": bad, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": f"Patient/{kept['id']}"}},
        {"request": {"method": "GET", "url": f"Patient/{kept['id']}/_history/1"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={ident['system']}|{ident['value']}"}},
        {"resource": dict(kept, gender="unknown"),
         "request": {"method": "PUT", "url": f"Patient/{kept['id']}", "ifMatch": 'W/"1"'}},
        {"request": {"method": "DELETE", "url": f"Patient/{kept['id']}"}},
        {"request": {"method": "PATCH", "url": f"Patient/{kept['id']}"}},
    ]}
    response = post_bundle(fhir, batch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in body["entry"]]
    assert statuses[0] == "201" and statuses[1] in ("400", "422")
    assert "Bundle.entry[1].resource.gender" in {
        e for issue in body["entry"][1]["response"]["outcome"]["issue"] for e in issue.get("expression", [])}
    assert statuses[2:] == ["200", "200", "200", "200", "204", "400"]
    assert body["entry"][2]["resource"]["id"] == kept["id"]
    assert body["entry"][4]["resource"]["total"] == 1  # entries are processed in their order
    assert fhir.get(body["entry"][0]["response"]["location"]).status_code == 200
    assert fhir.get(f"Patient/{kept['id']}").status_code == 410
