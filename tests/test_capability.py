"""GET /fhir/metadata says exactly what works."""

import httpx

SAMPLE = {"token": "x", "string": "x", "date": "ge2020-01-01", "reference": "x"}


def test_capability_statement(fhir: httpx.Client) -> None:
    response = fhir.get("metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction"}
    types = {r["type"]: r for r in rest["resource"]}
    assert {"Patient", "Practitioner", "ServiceRequest", "Task", "DiagnosticReport"} <= set(types)
    interactions = {i["code"] for i in types["ServiceRequest"]["interaction"]}
    assert interactions == {"create", "read", "vread", "update", "delete", "history-instance",
                            "history-type", "search-type"}
    params = {p["name"] for p in types["ServiceRequest"]["searchParam"]}
    assert {"requisition", "patient", "subject", "status", "authored", "requester", "code"} <= params


def test_every_declared_search_parameter_answers(fhir: httpx.Client) -> None:
    statement = fhir.get("metadata").json()
    for resource in statement["rest"][0]["resource"]:
        for param in resource["searchParam"]:
            response = fhir.get(resource["type"], params={param["name"]: SAMPLE[param["type"]]})
            assert response.status_code == 200, (resource["type"], param["name"], response.text)
        for include in resource["searchInclude"]:
            response = fhir.get(resource["type"], params={"_include": include, "_count": 1})
            assert response.status_code == 200, (include, response.text)
        for include in resource["searchRevInclude"]:
            response = fhir.get(resource["type"], params={"_revinclude": include, "_count": 1})
            assert response.status_code == 200, (include, response.text)


def test_every_declared_interaction_is_served(fhir: httpx.Client) -> None:
    statement = fhir.get("metadata").json()
    for resource in statement["rest"][0]["resource"]:
        name = resource["type"]
        calls = {
            "search-type": lambda: fhir.get(name),
            "history-type": lambda: fhir.get(f"{name}/_history"),
            "read": lambda: fhir.get(f"{name}/unknown-id"),
            "vread": lambda: fhir.get(f"{name}/unknown-id/_history/1"),
            "history-instance": lambda: fhir.get(f"{name}/unknown-id/_history"),
            "delete": lambda: fhir.delete(f"{name}/unknown-id"),
            "create": lambda: fhir.post(name, json={"resourceType": name, "unknownElement": 1}),
            "update": lambda: fhir.put(f"{name}/unknown-id", json={"resourceType": name, "id": "other"}),
        }
        for interaction in resource["interaction"]:
            response = calls[interaction["code"]]()
            # Served: a FHIR answer (or a refusal for this caller), never "no such route" (405)
            # nor a crash.
            assert response.status_code in (200, 204, 400, 403, 404), (name, interaction, response.text)
            if response.status_code == 404:
                assert "does not serve" not in response.text and "Nothing is served" not in response.text
