"""Bad input never gets a 500: NUL characters, foreign XML, numbers out of range, wrong JSON
types, searches that would cost minutes. Each is refused with a 4xx naming what is wrong (an
OperationOutcome on the API, a French message in the pages) and nothing is stored."""

import re
from typing import Any

import httpx
from playwright.sync_api import expect

from bilan.demo.prescriptions import EXAMS, REQUISITION_SYSTEM, bundle
from bilan.fhir.query import MAX_PARAMETERS, MAX_REPEATS, MAX_VALUE_LENGTH, MAX_VALUES
from tests.deliveries import subscribe
from tests.helpers import diagnostics, entry_index, expressions, issues, post_bundle
from tests.orders import addressed, collected, imported, prescribed, send, worklist
from tests.results import entry_path, glucose_result, line, results_of
from tests.web import csrf_token

GLUCOSE = EXAMS[1]
XML = "application/fhir+xml"
VALUE = "Observation.valueQuantity.value"


def nothing_for(fhir: httpx.Client, number: str) -> bool:
    """Whether no prescription with this number was stored."""
    found = fhir.get("ServiceRequest", params={"requisition": f"{REQUISITION_SYSTEM}|{number}"})
    return found.status_code == 200 and found.json()["total"] == 0


def refused(response: httpx.Response, status: int, expression: str) -> None:
    assert response.status_code == status, response.text
    assert expression in expressions(response), response.text


def test_a_nul_character_is_refused_in_a_body_a_search_an_id_and_a_form(
        fhir, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    sent = bundle(spec)
    patient = entry_index(sent, "Patient")
    sent["entry"][patient]["resource"]["name"][0]["family"] = "Du\u0000pont"
    response = post_bundle(fhir, sent)
    refused(response, 400, f"Bundle.entry[{patient}].resource.name[0].family")
    assert "NUL" in diagnostics(response)
    assert nothing_for(fhir, spec.requisition)

    sent = bundle(spec)
    sent["entry"][patient]["request"]["ifNoneExist"] = "identifier=urn:x|a%00b"  # a conditional create
    refused(post_bundle(fhir, sent), 400, f"Bundle.entry[{patient}].request.ifNoneExist")
    assert nothing_for(fhir, spec.requisition)

    refused(fhir.get("Patient", params={"family": "Du\u0000pont"}), 400, "family")
    refused(fhir.get("ServiceRequest", params={"requisition": "a\u0000b", "_count": "5"}), 400, "requisition")
    refused(fhir.get("Patient/abc%00def"), 400, "Patient.id")
    refused(fhir.get("Patient/abc/_history/1%002"), 400, "Patient.meta.versionId")
    refused(fhir.post("Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": "identifier=a%00b"}),
            400, "identifier")

    page = worklist(desk, web_root, "Dup\u0000ont")
    assert page.status_code == 400 and "caractère nul" in page.text, page.text

    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    collected(desk, web_root, task_id)
    request = prescribed(fhir, task_id, GLUCOSE[0])
    form = biologist.get(f"{web_root}{entry_path(task_id)}")
    typed = line(request, GLUCOSE[0], "5,2", "mmol/L\u0000")
    answer = biologist.post(f"{web_root}{entry_path(task_id)}", data={**typed, "_csrf_token": csrf_token(form)})
    assert answer.status_code == 400 and "caractère nul" in answer.text, answer.text
    assert "text/html" in answer.headers["content-type"]
    assert results_of(fhir, request) == []


def patient_xml(inside: str) -> str:
    return (f'<Patient xmlns="http://hl7.org/fhir" xmlns:xi="http://www.w3.org/2001/XInclude">'
            f'<identifier><system value="urn:test"/><value value="XML-TEST"/></identifier>{inside}</Patient>')


def test_xinclude_and_foreign_elements_in_xml_are_refused_by_name(fhir, lab_middleware) -> None:
    for inside, where, text in (
            ('<xi:include href="/etc/passwd" parse="text"/>', "Patient.include", "XInclude"),
            ('<name><family value="X"/><xi:include href="/etc/hostname" parse="text"/></name>',
             "Patient.name.include", "XInclude"),
            ('<foo xmlns="urn:other"><bar/></foo>', "Patient.foo", "urn:other"),
            ('<active xmlns="" value="true"/>', "Patient.active", "not FHIR"),
            ('<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>a</p>'
             '<xi:include href="/etc/hostname" parse="text"/></div></text>', "Patient.text.div.include", "XInclude")):
        response = lab_middleware.post("Patient", content=patient_xml(inside),
                                       headers={"Content-Type": XML, "Accept": XML})
        assert response.status_code == 400, response.text
        assert f'<expression value="{where}"/>' in response.text and text in response.text
        assert "root:" not in response.text  # nothing was ever read from the file
    assert fhir.get("Patient", params={"identifier": "urn:test|XML-TEST"}).json()["total"] == 0

    quoted = fhir.get("Patient", params={"birthdate": "\u0001", "_format": "xml"})  # echoed in the error
    assert quoted.status_code == 400 and '<expression value="birthdate"/>' in quoted.text

    entity = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
              + patient_xml('<name><family value="&x;"/></name>'))
    response = lab_middleware.post("Patient", content=entity, headers={"Content-Type": XML})
    assert response.status_code == 400 and "root:" not in response.text


def test_counts_and_offsets_are_plain_digits_within_bounds(fhir) -> None:
    for name, value in (("_offset", "99999999999999999999"), ("_count", "99999999999999999999"),
                        ("_offset", "٣"), ("_count", "٣"), ("_count", "²"), ("_offset", "1" * 5000)):
        response = fhir.get("Task", params={name: value})
        refused(response, 400, name)
        history = fhir.get("Task/_history", params={name: value})
        refused(history, 400, name)
    refused(fhir.get("Observation/$lastn", params={"patient": "Patient/x", "code": "1988-5", "max": "٣"}),
            400, "max")
    assert fhir.get("Task", params={"_count": "100000"}).status_code == 200  # capped, as FHIR allows
    ok = fhir.get("Task", params={"_offset": "3", "_count": "2"})
    assert ok.status_code == 200 and ok.json()["type"] == "searchset"
    assert fhir.get("Task/x/_history/²").status_code == 404
    assert fhir.put("Task/x", json={"resourceType": "Task"}, headers={"If-Match": 'W/"²"'.encode()}).status_code == 400


def test_a_subscription_with_wrong_json_types_is_refused_naming_the_element(fhir, webhook) -> None:
    response = subscribe(fhir, "Task?status=accepted", False)  # type: ignore[arg-type]
    assert response.status_code in (400, 422), response.text
    assert "Subscription.channel.endpoint" in expressions(response)
    for channel, where in (({"payload": 3}, "Subscription.channel.payload"),
                           ({"header": "Authorization: x"}, "Subscription.channel.header"),
                           ({"header": [7]}, "Subscription.channel.header[0]"),
                           ({"type": ["rest-hook"]}, "Subscription.channel.type")):
        response = subscribe(fhir, "Task?status=accepted", f"{webhook.url}/hook", **channel)
        assert response.status_code in (400, 422), response.text
        assert where in expressions(response), response.text
    response = fhir.post("Subscription", json={
        "resourceType": "Subscription", "status": "requested", "reason": "Suivi", "criteria": 12,
        "channel": {"type": "rest-hook", "endpoint": f"{webhook.url}/hook"}})
    assert response.status_code in (400, 422) and "Subscription.criteria" in expressions(response)
    response = subscribe(fhir, "Task?" + "&".join(["status=accepted"] * (MAX_REPEATS + 1)), f"{webhook.url}/hook")
    assert response.status_code == 422 and "Subscription.criteria" in expressions(response)
    stored = fhir.get("Subscription", params={"_count": "500"}).json().get("entry", [])
    assert all(e["resource"]["channel"]["endpoint"] != f"{webhook.url}/hook" for e in stored)


def observation_json(request: dict[str, Any], value: str) -> bytes:
    """An Observation with `value` written as it is in the JSON (a literal, not a float)."""
    text = httpx.Request("POST", "http://x", json=glucose_result(request, 1.5, "mmol/L")).content.decode()
    return re.sub(r'"value":\s*1\.5', f'"value":{value}', text).encode()


def test_a_result_out_of_any_plausible_range_is_refused(fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    request = prescribed(fhir, task_id, GLUCOSE[0])
    for literal in ("99999999999999999999", "1e309", "-1e309", "1000000000", "123456789012345678901234567890"):
        response = lab_middleware.post("Observation", content=observation_json(request, literal))
        refused(response, 422, VALUE)
    for literal in ("NaN", "Infinity", '"nan"', '"inf"'):
        response = lab_middleware.post("Observation", content=observation_json(request, literal))
        assert response.status_code in (400, 422), response.text
        issues(response)
    xml = (f'<Observation xmlns="http://hl7.org/fhir"><status value="preliminary"/><code><coding>'
           f'<system value="http://loinc.org"/><code value="{GLUCOSE[0]}"/></coding></code>'
           f'<subject><reference value="{request["subject"]["reference"]}"/></subject>'
           f'<valueQuantity><value value="1e309"/><unit value="mmol/L"/>'
           f'<system value="http://unitsofmeasure.org"/><code value="mmol/L"/></valueQuantity></Observation>')
    refused(lab_middleware.post("Observation", content=xml, headers={"Content-Type": XML}), 422, VALUE)
    assert results_of(fhir, request) == []
    assert lab_middleware.post("Observation", json=glucose_result(request, 7.2, "mmol/L")).status_code == 201

    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    collected(desk, web_root, task_id)
    request = prescribed(fhir, task_id, GLUCOSE[0])
    page = biologist.get(f"{web_root}{entry_path(task_id)}")
    name = f"valeur-{request['id']}-{GLUCOSE[0]}"
    for typed in ("99999999999999999999", "1e309", "nan", "inf", "-1e12"):
        answer = biologist.post(f"{web_root}{entry_path(task_id)}", data={
            **line(request, GLUCOSE[0], typed, "mmol/L"), "_csrf_token": csrf_token(page)})
        assert answer.status_code == 422, answer.text
        error = re.search(rf'id="{re.escape(name)}-erreur"[^>]*>([^<]*)<', answer.text)
        assert error and "nombre" in error.group(1), answer.text
    assert results_of(fhir, request) == []


def test_a_search_that_would_cost_minutes_is_refused_naming_the_limit(fhir, rng) -> None:
    for params, where in (
            ([("name", "a")] * 160, "name"),
            ([("family", "a")] * (MAX_REPEATS + 1), "family"),
            ([("family", "a")] * 10 + [("given", "b")] * 10 + [("birthdate", "ge2000")] * 20
             + [("gender", "male")] * (MAX_PARAMETERS - 40 + 1), None),
            ([("family", ",".join(["a"] * (MAX_VALUES + 1)))], "family"),
            ([("family", "a" * (MAX_VALUE_LENGTH + 1))], "family")):
        response = fhir.get("Patient", params=params)
        assert response.status_code == 400, response.text
        assert where is None or where in expressions(response)
        assert issues(response)[0]["code"] == "too-costly"
        assert re.search(r"\b(20|50|500)\b", diagnostics(response))  # the limit is said
    assert fhir.get("Patient", params=[("family", "a")] * MAX_REPEATS).status_code == 200
    sent = bundle(addressed(rng))
    patient = entry_index(sent, "Patient")
    sent["entry"][patient]["request"]["ifNoneExist"] = "&".join(["identifier=urn:x|a"] * 300)
    response = post_bundle(fhir, sent)
    refused(response, 400, f"Bundle.entry[{patient}].request.ifNoneExist")
    assert issues(response)[0]["code"] == "too-costly"
    refused(fhir.get("Observation/$lastn", params=[("code", "1988-5")] * 200), 400, "code")


def test_pages_carry_security_headers_and_the_api_nosniff(fhir, desk, web_root, rng) -> None:
    for page in (desk.get(f"{web_root}/reception"), desk.get(f"{web_root}/nulle-part"), httpx.get(f"{web_root}/")):
        assert "text/html" in page.headers["content-type"]
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "object-src 'self'" in policy and "frame-src 'self'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] in ("same-origin", "strict-origin-when-cross-origin")
    api = fhir.get("metadata")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api.headers
    assert httpx.get(f"{web_root}/static/htmx-2.0.11.min.js").headers["x-content-type-options"] == "nosniff"

    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    labels = desk.get(f"{web_root}/reception/prescriptions/{task_id}/etiquettes.pdf")
    assert labels.headers["content-type"] == "application/pdf"
    assert labels.headers["content-security-policy"] == "frame-ancestors 'self'"  # bilan's pages may show it
    assert labels.headers["x-frame-options"] == "SAMEORIGIN"


def test_the_policy_lets_the_pages_work_in_a_browser(page_as, fhir, desk, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    spec = addressed(rng, exams=[GLUCOSE])
    send(fhir, spec)
    page = page_as("accueil.martin")
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto("/reception")
    with page.expect_response(lambda r: "q=" in r.url and r.request.headers.get("hx-request") == "true"):
        page.locator("#q").fill(spec.requisition)  # htmx, from /static, filters in place
    expect(page.locator("#resultats")).to_contain_text(spec.requisition)
    page.goto(f"/reception/prescriptions/{task_id}/fiche")
    page.evaluate("window.print = () => { window.printed = true }")
    page.get_by_role("button", name="Imprimer").click()  # its inline onclick, allowed by hash
    assert page.evaluate("window.printed") is True
    assert page.evaluate("getComputedStyle(document.querySelector('.tools')).marginBottom") != "0px"
    assert refusals == []
