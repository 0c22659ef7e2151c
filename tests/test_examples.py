"""The official HL7 R4 examples and the ANS examples are the first test material."""

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from bilan.fhir.dates import date_range
from bilan.fhir.parsing import parse_body, to_xml, validate
from bilan.fhir.searchparams import RESOURCE_TYPES
from bilan.prescription.ins import INS_NIR_TEST
from tests.helpers import ANS_CDA_EXAMPLES, HL7_EXAMPLES, diagnostics, expressions

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _examples() -> list[Path]:
    if not HL7_EXAMPLES.is_dir():
        pytest.fail(f"HL7 examples missing: run `npm ci` in {HL7_EXAMPLES.parent.parent}")
    return sorted(p for p in HL7_EXAMPLES.glob("*.json") if p.name.split("-")[0] in RESOURCE_TYPES)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


def _plain(value: Any) -> Any:
    """JSON-comparable form: numbers compared by value, meta and narrative set aside."""
    if isinstance(value, dict):
        return {k: "".join(v.split()) if k == "data" else _plain(v)  # base64 line breaks
                for k, v in value.items() if k not in ("meta", "text")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return Decimal(str(value)).normalize()
    if isinstance(value, str) and DATETIME.match(value):
        return date_range(value)  # "Z" and "+00:00" are the same instant
    return value


def test_hl7_examples_parse_and_round_trip_through_xml() -> None:
    examples = _examples()
    assert len(examples) > 100
    for path in examples:
        resource = json.loads(path.read_text(encoding="utf-8"))
        assert validate(resource) == [], path.name
        back = parse_body(to_xml(resource), "application/fhir+xml")
        assert _plain(back) == _plain(resource), path.name


LAB_TYPES = ("Specimen", "Task", "DiagnosticReport")


def test_hl7_examples_are_stored_and_read_back_or_refused_with_a_reason(fhir, lab_middleware,
                                                                       as_user) -> None:
    writers = {"DocumentReference": as_user("bio.durand"), "List": as_user("bio.durand"),
               **{t: lab_middleware for t in LAB_TYPES}}
    pending = {p.name: _load(p) for p in _examples() if not p.name.startswith("AuditEvent")}
    stored: dict[str, dict[str, Any]] = {}
    refused: dict[str, httpx.Response] = {}
    while pending:  # examples refer to each other: store what can be, then retry the rest
        progress = False
        for name, resource in list(pending.items()):
            api = writers.get(resource["resourceType"], fhir)
            response = api.put(f"{resource['resourceType']}/{resource['id']}",
                               content=json.dumps(resource, default=str))
            if response.status_code in (200, 201):
                stored[name] = pending.pop(name)
                progress = True
            else:
                refused[name] = response
        if not progress:
            break
        refused = {}

    print(f"HL7 examples: {len(stored)} stored and read back, {len(refused)} refused")
    assert len(stored) > 80, sorted(refused)
    for name, resource in stored.items():
        api = writers.get(resource["resourceType"], fhir)
        back = api.get(f"{resource['resourceType']}/{resource['id']}").json()
        if resource["resourceType"] == "Subscription" and resource["status"] == "requested":
            resource = dict(resource, status="active")  # the server activates what it accepts
        assert _plain(back) == _plain(json.loads(json.dumps(resource, default=str), parse_float=Decimal)), name
    for name, response in refused.items():
        if name.startswith("Binary"):  # bilan writes Binary contents only when it issues a report
            assert response.status_code == 403, (name, response.text)
            continue
        if response.status_code == 403:  # points to, or speaks for, what its writer may not
            assert response.json()["issue"][0].get("expression"), (name, response.text)
            continue
        assert response.status_code in (400, 422), (name, response.text)
        assert expressions(response), (name, response.text)
    reasons = {name: diagnostics(response) for name, response in refused.items()}
    # Exams coded without LOINC are refused for that; references to what bilan does not hold too.
    assert "needs a LOINC code" in reasons["ServiceRequest-lipid.json"]
    assert "needs a LOINC code" in reasons["ServiceRequest-colonoscopy.json"]
    # A Condition of a hospital stay is stored with its Encounter, which bilan serves; a
    # reference to what bilan does not hold (an EpisodeOfCare) is refused for that.
    assert {"Condition-f001.json", "Encounter-f001.json"} <= set(stored)
    assert "EpisodeOfCare/example does not resolve" in reasons["Encounter-f203.json"]


def _cda_patient(path: Path) -> dict[str, Any]:
    """The recordTarget of an ANS CR-BIO example as a FHIR Patient with its INS and traits."""
    ns = {"h": "urn:hl7-org:v3"}
    doc = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    role = doc.find(".//h:recordTarget/h:patientRole", ns)
    ins = role.find("h:id[@root='1.2.250.1.213.1.4.10']", ns).get("extension")
    person = role.find("h:patient", ns)
    birth = person.find("h:birthTime", ns).get("value")
    gender = {"F": "female", "M": "male"}[person.find("h:administrativeGenderCode", ns).get("code")]
    return {
        "resourceType": "Patient",
        "identifier": [{"system": INS_NIR_TEST, "value": ins}],
        "name": [{"use": "official", "family": person.findtext("h:name/h:family[@qualifier='BR']", namespaces=ns),
                  "given": person.findtext("h:name/h:given", namespaces=ns).split()}],
        "gender": gender,
        "birthDate": f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}",
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {
            "district": person.findtext("h:birthplace/h:place/h:addr/h:county", namespaces=ns)}}],
    }


@pytest.mark.parametrize("path", ANS_CDA_EXAMPLES, ids=lambda p: p.name)
def test_ans_example_patients_are_accepted(fhir: httpx.Client, path: Path) -> None:
    patient = _cda_patient(path)
    response = fhir.post("Patient", json=patient,
                         headers={"If-None-Exist": f"identifier={INS_NIR_TEST}|{patient['identifier'][0]['value']}"})
    assert response.status_code in (200, 201), response.text
    assert response.json()["identifier"][0]["value"] == "279035121518989"


def test_ans_document_core_patient_ins_is_refused(fhir: httpx.Client) -> None:
    # ansforge/interop-IG-fhir-document-core example patient: INS-NIR 123456789012244, key wrong.
    patient = _cda_patient(ANS_CDA_EXAMPLES[0])
    patient["identifier"] = [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "123456789012244"}]
    response = fhir.post("Patient", json=patient)
    assert response.status_code == 422
    assert "Patient.identifier[0].value" in expressions(response)
    assert "gives key 12, not 44" in diagnostics(response)
