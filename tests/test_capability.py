"""GET /fhir/metadata says exactly what works: every interaction and search parameter it
claims is exercised for real, each definition URL is R4's own or resolves to bilan's."""

import base64
import csv
import random
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from bilan.demo.prescriptions import bundle, patient_resource, random_person
from bilan.fhir.parsing import validate
from tests.helpers import diagnostics, locations, post_bundle, search
from tests.orders import addressed
from tests.people import DUPONT

R4_LIST = Path(__file__).parent / "r4_search_parameters.tsv"
OWN = "https://bilan.sante.fr/fhir/SearchParameter/"
SAMPLE = {"token": "x", "string": "x", "date": "ge2020-01-01", "reference": "x", "uri": "http://x"}
WRITES = {"create", "update", "delete"}
REFUSED = (403, 405, 501)


def _statement(client: httpx.Client) -> dict[str, Any]:
    response = client.get("metadata")
    assert response.status_code == 200
    statement: dict[str, Any] = response.json()
    return statement


def _resources(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in statement["rest"][0]["resource"]}


def _codes(resource: dict[str, Any]) -> set[str]:
    return {i["code"] for i in resource["interaction"]}


def test_capability_statement(fhir: httpx.Client) -> None:
    statement = _statement(fhir)
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    types = _resources(statement)
    assert {"Patient", "Practitioner", "ServiceRequest", "Task", "DiagnosticReport", "Encounter",
            "Location"} <= set(types)
    assert _codes(types["ServiceRequest"]) == {"create", "read", "vread", "update", "delete",
                                               "history-instance", "history-type", "search-type"}
    # Nobody writes the audit trail nor the documents' contents: bilan does.
    for read_only in ("AuditEvent", "Binary"):
        assert not _codes(types[read_only]) & WRITES, read_only
        assert types[read_only]["updateCreate"] is False
    assert types["AuditEvent"]["searchInclude"] == []
    assert not any(i.startswith("AuditEvent:") for r in types.values() for i in r.get("searchRevInclude", []))
    params = {p["name"] for p in types["ServiceRequest"]["searchParam"]}
    assert {"requisition", "patient", "subject", "status", "authored", "requester", "code", "encounter"} <= params
    # No profile is claimed that stored resources are not checked against (docs/api.md).
    assert not [t for t, r in types.items() if "supportedProfile" in r]


def _r4_definitions() -> dict[tuple[str, str], tuple[str, str]]:
    """(type, code) -> (definition URL, parameter type) of every search parameter R4 defines."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    with R4_LIST.open(encoding="utf-8") as lines:
        for url, code, kind, bases in csv.reader((line for line in lines if not line.startswith("#")),
                                                 delimiter="\t"):
            for base in bases.split():
                found[(base, code)] = (url, kind)
    return found


def test_every_definition_is_r4s_where_r4_has_one_and_bilans_otherwise(fhir: httpx.Client,
                                                                       anonymous: httpx.Client) -> None:
    r4 = _r4_definitions()
    for resource in _statement(fhir)["rest"][0]["resource"]:
        for param in resource["searchParam"]:
            where = (resource["type"], param["name"])
            official = r4.get(where) or r4.get(("Resource", param["name"]))
            if official is not None:
                assert (param["definition"], param["type"]) == official, where
                continue
            assert param["definition"].startswith(OWN), where
            # bilan's own definition resolves, by its canonical URL and by its id
            found = anonymous.get("SearchParameter", params={"url": param["definition"]}).json()
            assert found["total"] == 1, where
            definition = found["entry"][0]["resource"]
            assert (definition["code"], definition["base"], definition["type"]) == \
                (param["name"], [resource["type"]], param["type"]), where
            read = anonymous.get(f"SearchParameter/{definition['id']}")
            assert read.status_code == 200 and read.json()["url"] == param["definition"]


def test_the_statement_and_bilans_definitions_are_valid_fhir(anonymous: httpx.Client) -> None:
    assert validate(_statement(anonymous)) == []
    found = anonymous.get("SearchParameter").json()
    assert found["total"] >= 1
    for entry in found["entry"]:
        assert validate(entry["resource"]) == [], entry["resource"]["id"]
    assert anonymous.get("SearchParameter/Patient-name").status_code == 404  # R4's, not bilan's


def test_every_declared_search_parameter_answers_by_get_and_by_post(fhir: httpx.Client) -> None:
    statement = _statement(fhir)
    for resource in statement["rest"][0]["resource"]:
        name = resource["type"]
        for param in resource["searchParam"]:
            query = {param["name"]: SAMPLE[param["type"]]}
            response = fhir.get(name, params=query)
            assert response.status_code == 200, (name, param["name"], response.text)
            if "search-type" in _codes(resource):
                posted = _post_search(fhir, name, query)
                assert posted.status_code == 200, (name, param["name"], posted.text)
                assert posted.json()["total"] == response.json()["total"]
        for include in resource.get("searchInclude", []):
            response = fhir.get(name, params={"_include": include, "_count": 1})
            assert response.status_code == 200, (include, response.text)
            iterate = fhir.get(name, params={"_include:iterate": include, "_count": 1})
            assert iterate.status_code == 200, (include, iterate.text)
        for include in resource.get("searchRevInclude", []):
            response = fhir.get(name, params={"_revinclude": include, "_count": 1})
            assert response.status_code == 200, (include, response.text)


@pytest.fixture(scope="module")
def order(fhir: httpx.Client, rng_module: random.Random) -> dict[str, str]:
    """A prescription to the demo lab: what the samples below point to."""
    spec = addressed(rng_module)
    response = post_bundle(fhir, bundle(spec))
    assert response.status_code == 200, response.text
    where = locations(response)
    first = {loc.split("/")[0]: loc for loc in reversed(where)}
    task = search(fhir, "Task", **{"based-on": first["ServiceRequest"]})["entry"][0]["resource"]
    return {**first, "Task": f"Task/{task['id']}"}


Sample = Callable[[dict[str, str], random.Random], dict[str, Any]]
LAB_WRITES = ("Task", "Specimen", "DiagnosticReport")  # the lab's middleware writes these
SAMPLES: dict[str, Sample] = {
    "Patient": lambda o, rng: patient_resource(random_person(rng)),
    "Practitioner": lambda o, rng: {"resourceType": "Practitioner", "name": [{"family": "Essai"}]},
    "PractitionerRole": lambda o, rng: {"resourceType": "PractitionerRole",
                                        "practitioner": {"reference": o["Practitioner"]}},
    "Organization": lambda o, rng: {"resourceType": "Organization", "name": "Cabinet d'essai"},
    "ServiceRequest": lambda o, rng: {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": o["Patient"]}, "requester": {"reference": o["PractitionerRole"]},
        "authoredOn": "2031-01-02T10:00:00+01:00"},
    "Observation": lambda o, rng: {"resourceType": "Observation", "status": "final",
                                   "code": {"text": "Poids"}, "subject": {"reference": o["Patient"]},
                                   "valueQuantity": {"value": 70, "unit": "kg",
                                                     "system": "http://unitsofmeasure.org", "code": "kg"}},
    "Condition": lambda o, rng: {"resourceType": "Condition", "code": {"text": "Diabète"},
                                 "subject": {"reference": o["Patient"]}},
    "Communication": lambda o, rng: {"resourceType": "Communication", "status": "completed",
                                     "partOf": [{"reference": o["Task"]}],
                                     "payload": [{"contentString": "Bonjour"}]},
    "Subscription": lambda o, rng: {"resourceType": "Subscription", "status": "requested",
                                    "reason": "essai", "criteria": "Task?status=completed",
                                    "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook",
                                                "payload": "application/fhir+json"}},
    "DocumentReference": lambda o, rng: {
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": o["Patient"]},
        "content": [{"attachment": {"contentType": "text/plain",
                                    "data": base64.b64encode(b"Compte rendu").decode()}}]},
    "List": lambda o, rng: {"resourceType": "List", "status": "current", "mode": "working",
                            "subject": {"reference": o["Patient"]}},
    "Encounter": lambda o, rng: {"resourceType": "Encounter", "status": "finished",
                                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                           "code": "AMB"},
                                 "subject": {"reference": o["Patient"]}},
    "Location": lambda o, rng: {"resourceType": "Location", "name": "Consultations externes"},
    "Task": lambda o, rng: {"resourceType": "Task", "status": "requested", "intent": "order",
                            "for": {"reference": o["Patient"]}, "basedOn": [{"reference": o["ServiceRequest"]}]},
    "Specimen": lambda o, rng: {"resourceType": "Specimen", "subject": {"reference": o["Patient"]},
                                "request": [{"reference": o["ServiceRequest"]}]},
    "DiagnosticReport": lambda o, rng: {"resourceType": "DiagnosticReport", "status": "preliminary",
                                        "code": {"text": "Bilan"}, "subject": {"reference": o["Patient"]},
                                        "basedOn": [{"reference": o["ServiceRequest"]}]},
}


def _post_search(client: httpx.Client, name: str, params: dict[str, str]) -> httpx.Response:
    return client.post(f"{name}/_search", data=params,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})


def _served(response: httpx.Response, what: Any, *expected: int) -> httpx.Response:
    assert response.status_code not in REFUSED, (what, response.text)
    assert response.status_code in expected, (what, response.status_code, response.text)
    return response


def test_every_declared_write_works_for_real(fhir: httpx.Client, lab_middleware: httpx.Client,
                                             order: dict[str, str], rng: random.Random) -> None:
    for resource in _statement(fhir)["rest"][0]["resource"]:
        name, codes = resource["type"], _codes(resource)
        if not codes & WRITES:
            continue
        assert name in SAMPLES, f"{name} claims writes: give it a sample to exercise them"
        client = lab_middleware if name in LAB_WRITES else fhir
        created = _served(client.post(name, json=SAMPLES[name](order, rng)), (name, "create"), 201).json()
        path = f"{name}/{created['id']}"
        _served(client.get(path), (name, "read"), 200)
        _served(client.get(f"{path}/_history/1"), (name, "vread"), 200)
        changed = dict(created, language="fr-FR")
        _served(client.put(path, json=changed), (name, "update"), 200)
        history = _served(client.get(f"{path}/_history"), (name, "history-instance"), 200).json()
        assert history["total"] == 2
        _served(client.get(f"{name}/_history", params={"_count": 1}), (name, "history-type"), 200)
        found = _served(client.get(name, params={"_id": created["id"]}), (name, "search-type"), 200).json()
        assert found["total"] == 1
        posted = _post_search(client, name, {"_id": created["id"]})
        assert _served(posted, (name, "POST _search"), 200).json()["total"] == 1
        _served(client.delete(path), (name, "delete"), 204)
        assert client.get(path).status_code == 410


def test_the_audit_trail_is_read_as_claimed(fhir: httpx.Client, as_user: Any, rng: random.Random) -> None:
    """AuditEvent: read-only, each patient reading the events that name her."""
    assert post_bundle(fhir, bundle(addressed(rng, patient=DUPONT))).status_code == 200
    dupont = as_user("patient.dupont")
    codes = _codes(_resources(_statement(fhir))["AuditEvent"])
    calls = {
        "search-type": lambda: dupont.get("AuditEvent", params={"_count": 1}),
        "history-type": lambda: dupont.get("AuditEvent/_history", params={"_count": 1}),
    }
    for code in codes & set(calls):
        _served(calls[code](), ("AuditEvent", code), 200)
    event = dupont.get("AuditEvent", params={"_count": 1}).json()["entry"][0]["resource"]
    instance = {"read": f"AuditEvent/{event['id']}", "vread": f"AuditEvent/{event['id']}/_history/1",
                "history-instance": f"AuditEvent/{event['id']}/_history"}
    for code in codes & set(instance):
        _served(dupont.get(instance[code]), ("AuditEvent", code), 200)
    assert codes <= {*calls, *instance}


def test_read_only_types_answer_each_claimed_read(fhir: httpx.Client) -> None:
    """Binary holds what bilan issued: what it claims answers (404 for an unknown id)."""
    for name, resource in _resources(_statement(fhir)).items():
        if _codes(resource) & WRITES or name in ("AuditEvent", "SearchParameter"):
            continue
        calls = {"search-type": (f"{name}", 200), "history-type": (f"{name}/_history", 200),
                 "read": (f"{name}/unknown-id", 404), "vread": (f"{name}/unknown-id/_history/1", 404),
                 "history-instance": (f"{name}/unknown-id/_history", 404)}
        for code in _codes(resource):
            path, status = calls[code]
            response = _served(fhir.get(path), (name, code), status)
            if status == 404:
                assert "does not serve" not in response.text and "Nothing is served" not in response.text
        for write in ("post", "put", "delete"):  # and what it does not claim is refused
            response = getattr(fhir, write)(name if write == "post" else f"{name}/x",
                                            **({"json": {"resourceType": name, "id": "x"}} if write != "delete" else {}))
            assert response.status_code in (400, 403), (name, write, response.text)


def test_unsupported_modifiers_are_refused_naming_the_parameter(fhir: httpx.Client) -> None:
    for key, value in (("_include:recurse", "ServiceRequest:patient"), ("_revinclude:x", "Task:focus"),
                       ("_sort:asc", "_lastUpdated"), ("status:not", "active"), ("_count:x", "2"),
                       ("authored:missing", "true")):
        response = fhir.get("ServiceRequest", params={key: value})
        assert response.status_code == 400, (key, response.text)
        assert response.json()["issue"][0]["expression"] == [key], key
        assert key.split(":")[1] in diagnostics(response)
