"""Results from the lab's analysers: a checked UCUM unit, and a flag computed from the
reference range when the instrument gives none."""


import httpx

from bilan.demo.prescriptions import EXAMS
from tests.helpers import expressions
from tests.orders import addressed, imported, prescribed
from tests.results import GLUCOSE, glucose_result
from tests.web import submit


def test_the_lab_gets_a_flag_from_the_catalogue_range_and_units_are_ucum(
        fhir, lab_middleware: httpx.Client, desk, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[EXAMS[0], GLUCOSE]))
    request = prescribed(fhir, task_id, GLUCOSE[0])

    high = lab_middleware.post("Observation", json=glucose_result(request, 7.2, "mmol/L"))
    assert high.status_code == 201, high.text
    stored = high.json()
    assert stored["interpretation"][0]["coding"][0]["code"] == "H"
    assert stored["referenceRange"][0]["low"]["value"] == 3.9 and stored["referenceRange"][0]["high"]["value"] == 6.1
    assert any(t["code"] == "computed" for t in stored["meta"]["tag"])

    normal = lab_middleware.post("Observation", json=glucose_result(request, 6.1, "mmol/L")).json()
    assert normal["interpretation"][0]["coding"][0]["code"] == "N"  # a value at the limit is normal
    own_range = lab_middleware.post("Observation", json=glucose_result(
        request, 1.2, "g/L", referenceRange=[{"low": {"value": 0.7, "code": "g/L"},
                                             "high": {"value": 1.1, "code": "g/L"}}])).json()
    assert own_range["interpretation"][0]["coding"][0]["code"] == "H"
    other_unit = lab_middleware.post("Observation", json=glucose_result(request, 1.0, "g/L")).json()
    assert "interpretation" not in other_unit  # no range in that unit: no guess
    given = lab_middleware.post("Observation", json=glucose_result(
        request, 7.2, "mmol/L", interpretation=[{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "HH"}]}])).json()
    assert given["interpretation"][0]["coding"][0]["code"] == "HH"  # the instrument's flag stands

    alien = lab_middleware.post("Observation", json=glucose_result(request, 7.2, "U/L"))
    assert alien.status_code == 422 and "mmol/L" in alien.text  # not a concentration of glucose
    wrong = lab_middleware.post("Observation", json=glucose_result(request, 7.2, "mmol/l"))
    assert wrong.status_code == 422 and expressions(wrong) == {"Observation.valueQuantity.code"}
    assert "mmol/L" in wrong.text
    assert fhir.get("Observation", params={"based-on": f"ServiceRequest/{request['id']}"}).json()["total"] == 5


def test_the_biologist_validates_with_the_previous_result_beside_each_new_one(
        fhir, lab_middleware: httpx.Client, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[EXAMS[0], GLUCOSE])
    first = prescribed(fhir, imported(fhir, desk, web_root, spec), GLUCOSE[0])
    earlier = glucose_result(first, 5.0, "mmol/L", status="final", effectiveDateTime="2026-11-20T08:00:00+01:00")
    assert lab_middleware.post("Observation", json=earlier).status_code == 201
    again = addressed(rng, exams=[GLUCOSE], patient=spec.patient)
    task_id = imported(fhir, desk, web_root, again)
    request = prescribed(fhir, task_id, GLUCOSE[0])
    new = lab_middleware.post("Observation", json=glucose_result(
        request, 12.5, "mmol/L", effectiveDateTime="2026-11-21T08:00:00+01:00")).json()

    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert "12,5 mmol/L" in page.text and "5,0 mmol/L" in page.text
    assert "Variation inhabituelle" in page.text  # +7.5 mmol/L in a day: beyond the glucose rule

    refused = submit(desk, page, f"/reception/prescriptions/{task_id}/resultats",
                     {"action": "biologique", "resultats": new["id"]})
    assert refused.status_code == 403
    missing = submit(biologist, page, f"/reception/prescriptions/{task_id}/resultats",
                     {"action": "repasser", "resultats": new["id"]})
    assert missing.status_code == 422 and "Indiquez le motif." in missing.text
    submit(biologist, page, f"/reception/prescriptions/{task_id}/resultats",
           {"action": "biologique", "resultats": new["id"], "commentaire": "Contrôle à jeun à prévoir."})
    final = fhir.get(f"Observation/{new['id']}").json()
    assert final["status"] == "final" and final["note"][-1]["text"] == "Contrôle à jeun à prévoir."
    twice = submit(biologist, page, f"/reception/prescriptions/{task_id}/resultats",
                   {"action": "annuler", "resultats": new["id"], "commentaire": "?"})
    assert twice.status_code == 409
