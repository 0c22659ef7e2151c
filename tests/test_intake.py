"""A prescriber's software sends an e-prescription as a transaction Bundle."""

import copy
import json
from concurrent.futures import ThreadPoolExecutor

import httpx

from bilan.demo.prescriptions import PrescriptionSpec, bundle
from bilan.prescription.exams import INTAKE_FLAGS, UNKNOWN_EXAM
from bilan.prescription.ins import INS_NIR_TEST
from tests.helpers import (
    diagnostics,
    entry_index,
    expressions,
    locations,
    post_bundle,
    prescription_spec,
    search,
)


def test_prescription_is_stored_with_references_resolved(fhir: httpx.Client, spec: PrescriptionSpec,
                                                          prescription: dict) -> None:
    response = post_bundle(fhir, prescription)

    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses[1] in ("200 OK", "201 Created")  # Dr Lambert may be known already
    assert statuses[:1] + statuses[2:] == ["201 Created"] * (len(statuses) - 1)
    stored = locations(response)
    patient = stored[0]
    requests = [loc for loc in stored if loc.startswith("ServiceRequest/")]
    assert len(requests) == len(spec.exams)
    for location in requests:
        request = fhir.get(location).json()
        assert request["subject"]["reference"] == patient
        assert request["requester"]["reference"].startswith("PractitionerRole/")
        assert request["requisition"]["value"] == spec.requisition
        for info in request["supportingInfo"]:
            context = fhir.get(info["reference"])
            assert context.status_code == 200
            assert context.json()["subject"]["reference"] == patient
    role = fhir.get(fhir.get(requests[0]).json()["requester"]["reference"]).json()
    assert fhir.get(role["practitioner"]["reference"]).json()["identifier"][0]["value"] == spec.prescriber.rpps


def test_same_patient_and_prescriber_sent_twice_are_one_resource(fhir: httpx.Client, rng) -> None:
    first = prescription_spec(rng)
    second = prescription_spec(rng)
    second.patient, second.prescriber = first.patient, first.prescriber

    one = locations(post_bundle(fhir, bundle(first)))
    two = post_bundle(fhir, bundle(second))

    assert locations(two)[:4] == one[:4]  # patient, practitioner, organization, role
    assert [e["response"]["status"] for e in two.json()["entry"][:4]] == ["200 OK"] * 4
    found = search(fhir, "Patient", identifier=f"{INS_NIR_TEST}|{first.patient.ins}")
    assert found["total"] == 1


def test_resending_the_same_prescription_returns_what_was_stored(fhir: httpx.Client, spec,
                                                                  prescription: dict) -> None:
    first = post_bundle(fhir, prescription)
    again = post_bundle(fhir, bundle(spec))  # a retry: same prescription, new urn:uuids

    assert again.status_code == 200
    assert locations(again) == locations(first)
    assert {e["response"]["status"] for e in again.json()["entry"]} == {"200 OK"}
    found = search(fhir, "ServiceRequest", requisition=spec.requisition)
    assert found["total"] == len(spec.exams)


def test_same_number_with_other_exams_is_a_conflict(fhir: httpx.Client, spec, prescription) -> None:
    assert post_bundle(fhir, prescription).status_code == 200
    changed = copy.deepcopy(spec)
    changed.exams = spec.exams[:2]

    response = post_bundle(fhir, bundle(changed))

    assert response.status_code == 409
    assert spec.requisition in diagnostics(response)
    assert search(fhir, "ServiceRequest", requisition=spec.requisition)["total"] == len(spec.exams)


def test_concurrent_imports_of_one_prescription_store_it_once(fhir: httpx.Client, spec) -> None:
    bundles = [bundle(spec) for _ in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda b: post_bundle(fhir, b), bundles))

    assert {r.status_code for r in responses} == {200}
    assert len({tuple(locations(r)) for r in responses}) == 1
    assert search(fhir, "ServiceRequest", requisition=spec.requisition)["total"] == len(spec.exams)
    assert search(fhir, "Patient", identifier=f"{INS_NIR_TEST}|{spec.patient.ins}")["total"] == 1


def test_a_bundle_that_fails_anywhere_stores_nothing(fhir: httpx.Client, spec, prescription) -> None:
    last = entry_index(prescription, "ServiceRequest", len(spec.exams) - 1)
    infos = prescription["entry"][last]["resource"]["supportingInfo"]
    infos.append({"reference": "Observation/does-not-exist"})

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert f"Bundle.entry[{last}].resource.supportingInfo[{len(infos) - 1}].reference" in expressions(response)
    assert search(fhir, "Patient", identifier=f"{INS_NIR_TEST}|{spec.patient.ins}")["total"] == 0
    assert search(fhir, "ServiceRequest", requisition=spec.requisition)["total"] == 0


def test_two_entries_writing_one_resource_are_refused(fhir: httpx.Client, spec, prescription) -> None:
    patient = prescription["entry"][0]
    patient["request"] = {"method": "PUT", "url": f"Patient/p-{spec.requisition.lower()}"}
    patient["resource"]["id"] = f"p-{spec.requisition.lower()}"
    twin = copy.deepcopy(patient)
    twin["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000001"
    prescription["entry"].append(twin)

    response = post_bundle(fhir, prescription)

    assert response.status_code == 400
    assert f"Bundle.entry[{len(prescription['entry']) - 1}].request.url" in expressions(response)
    assert search(fhir, "ServiceRequest", requisition=spec.requisition)["total"] == 0
    assert fhir.get(f"Patient/p-{spec.requisition.lower()}").status_code == 404


def test_long_values_are_stored_and_found(fhir: httpx.Client, spec, prescription) -> None:
    long_text = "Bilan demandé dans le cadre d'un suivi " * 20
    index = entry_index(prescription, "ServiceRequest")
    prescription["entry"][index]["resource"]["identifier"] = [{"system": "urn:x", "value": long_text}]

    response = post_bundle(fhir, prescription)

    assert response.status_code == 200, response.text
    assert search(fhir, "ServiceRequest", identifier=f"urn:x|{long_text[:256]}")["total"] == 1


def test_unknown_exam_is_accepted_and_flagged_for_the_lab(fhir: httpx.Client, spec) -> None:
    spec.exams = [("2345-7", "Glucose [Mass/volume] in Serum or Plasma"), spec.exams[0]]
    prescription = bundle(spec)

    response = post_bundle(fhir, prescription)

    assert response.status_code == 200, response.text
    index = entry_index(prescription, "ServiceRequest", 0)
    entry = response.json()["entry"][index]
    outcome = entry["response"]["outcome"]["issue"][0]
    assert outcome["severity"] == "warning" and "2345-7" in outcome["diagnostics"]
    flagged = fhir.get(locations(response)[index]).json()
    assert {"system": INTAKE_FLAGS, "code": UNKNOWN_EXAM} in [
        {"system": t["system"], "code": t["code"]} for t in flagged["meta"]["tag"]]
    known = fhir.get(locations(response)[index + 1]).json()
    assert "tag" not in known["meta"]


def test_wrong_ins_key_is_rejected_naming_the_element(fhir: httpx.Client, spec, prescription) -> None:
    # The ANS document-core example patient carries INS-NIR 123456789012244, whose key is wrong.
    prescription["entry"][0]["resource"]["identifier"][0]["value"] = "123456789012244"
    prescription["entry"][0]["request"]["ifNoneExist"] = f"identifier={INS_NIR_TEST}|123456789012244"

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert "Bundle.entry[0].resource.identifier[0].value" in expressions(response)
    assert "1234567890122 gives key 12, not 44" in diagnostics(response)


def test_corsican_ins_key_is_computed_with_2a_as_19(fhir: httpx.Client, rng) -> None:
    spec = prescription_spec(rng)
    spec.patient.gender = "male"
    spec.patient.birth = spec.patient.birth.replace(month=5, day=1)
    body = f"1{spec.patient.birth:%y}052A004{rng.randint(100, 999)}"
    spec.patient.ins = body + f"{97 - int(body.replace('2A', '19')) % 97:02d}"

    assert post_bundle(fhir, bundle(spec)).status_code == 200


def test_ins_without_its_traits_is_rejected(fhir: httpx.Client, prescription) -> None:
    patient = prescription["entry"][0]["resource"]
    del patient["birthDate"]
    patient["name"][0].pop("given")

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert {"Bundle.entry[0].resource.birthDate", "Bundle.entry[0].resource.name"} <= expressions(response)
    assert "traits" in diagnostics(response)


def test_ins_disagreeing_with_sex_is_rejected(fhir: httpx.Client, prescription) -> None:
    patient = prescription["entry"][0]["resource"]
    patient["gender"] = "female" if patient["gender"] == "male" else "male"

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert "Bundle.entry[0].resource.gender" in expressions(response)


def test_rpps_with_a_wrong_key_is_rejected(fhir: httpx.Client, spec, prescription) -> None:
    wrong = spec.prescriber.rpps[:-1] + str((int(spec.prescriber.rpps[-1]) + 1) % 10)
    prescription["entry"][1]["resource"]["identifier"][0]["value"] = wrong

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert "Bundle.entry[1].resource.identifier[0].value" in expressions(response)
    assert "Luhn" in diagnostics(response)


def test_exam_code_that_is_not_loinc_is_rejected(fhir: httpx.Client, prescription) -> None:
    index = entry_index(prescription, "ServiceRequest")
    prescription["entry"][index]["resource"]["code"]["coding"][0]["code"] = "2345-8"

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert f"Bundle.entry[{index}].resource.code.coding[0].code" in expressions(response)
    assert "check digit" in diagnostics(response)


def test_value_sets_the_models_do_not_check(fhir: httpx.Client, prescription) -> None:
    index = entry_index(prescription, "ServiceRequest")
    prescription["entry"][index]["resource"]["priority"] = "whenever"
    prescription["entry"][0]["resource"]["gender"] = "bogus"

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert {f"Bundle.entry[{index}].resource.priority", "Bundle.entry[0].resource.gender"} <= expressions(response)


def test_structural_error_is_a_400_with_the_path(fhir: httpx.Client, prescription) -> None:
    prescription["entry"][0]["resource"]["birthDate"] = "1980-13-45"

    response = post_bundle(fhir, prescription)

    assert response.status_code == 400
    assert "Bundle.entry[0].resource.birthDate" in expressions(response)


def test_one_patient_per_prescription(fhir: httpx.Client, rng, prescription) -> None:
    other = bundle(prescription_spec(rng))["entry"][0]
    prescription["entry"].append(other)
    index = entry_index(prescription, "ServiceRequest", 1)
    prescription["entry"][index]["resource"]["subject"] = {"reference": other["fullUrl"]}

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert f"Bundle.entry[{index}].resource.subject" in expressions(response)
    assert "one patient" in diagnostics(response)


def test_exams_of_a_prescription_share_its_number(fhir: httpx.Client, prescription) -> None:
    index = entry_index(prescription, "ServiceRequest", 2)
    prescription["entry"][index]["resource"]["requisition"]["value"] = "OTHER-NUMBER"

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert f"Bundle.entry[{index}].resource.requisition" in expressions(response)


def test_unresolved_urn_reference_is_rejected(fhir: httpx.Client, prescription) -> None:
    index = entry_index(prescription, "ServiceRequest")
    prescription["entry"][index]["resource"]["supportingInfo"].append({"reference": "urn:uuid:not-in-bundle"})

    response = post_bundle(fhir, prescription)

    assert response.status_code == 422
    assert any(e.startswith(f"Bundle.entry[{index}].resource.supportingInfo") for e in expressions(response))


def test_malformed_bodies_get_an_operation_outcome(fhir: httpx.Client, prescription) -> None:
    cases = [
        fhir.post("", content=b"{not json", headers={"Content-Type": "application/fhir+json"}),
        fhir.post("", content=json.dumps(prescription), headers={"Content-Type": "text/plain"}),
        fhir.post("", json=dict(prescription, type="batch-response")),
        fhir.post("", json={"resourceType": "Patient"}),
        fhir.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {}}]}),
        fhir.post("", content=b"[1, 2]", headers={"Content-Type": "application/fhir+json"}),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["diagnostics"]


def test_oversized_body_is_refused(fhir: httpx.Client, prescription) -> None:
    prescription["entry"][0]["resource"]["text"] = {"status": "generated",
                                                     "div": "<div>" + "x" * (6 * 1024 * 1024) + "</div>"}

    response = post_bundle(fhir, prescription)

    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"


def test_prescription_in_xml(fhir: httpx.Client, spec, prescription) -> None:
    from bilan.fhir.parsing import to_xml

    response = fhir.post("", content=to_xml(prescription),
                         headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert b"transaction-response" in response.content
    assert search(fhir, "ServiceRequest", requisition=spec.requisition)["total"] == len(spec.exams)
