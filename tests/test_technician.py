"""The lab's people and their steps: reception reads the results but validates nothing, the
technician types results and validates them technically, the biologist validates biologically;
every step is signed by the person who took it, and a value typed by hand says so."""

from typing import Any

import httpx

from bilan.demo.prescriptions import EXAMS
from bilan.results.desk.signatures import signatures
from tests.orders import addressed, imported, prescribed
from tests.results import GLUCOSE, entry_path, glucose_result, line, results_of
from tests.web import submit

NFS = EXAMS[0]
TECHNICIAN, BIOLOGIST = "technician:staff-tech-bernard", "biologist:10000000017"


def _results_page(browser: httpx.Client, web_root: str, task_id: str) -> httpx.Response:
    page = browser.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert page.status_code == 200, page.text
    return page


def _analyser_result(fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client,
                     web_root: str, rng: Any) -> tuple[str, dict[str, Any]]:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    request = prescribed(fhir, task_id, GLUCOSE[0])
    posted = lab_middleware.post("Observation", json=glucose_result(request, 5.4, "mmol/L", status="registered"))
    assert posted.status_code == 201, posted.text
    return task_id, posted.json()


def test_reception_reads_the_results_but_cannot_validate_them(
        fhir, lab_middleware, desk, web_root, rng) -> None:
    task_id, result = _analyser_result(fhir, lab_middleware, desk, web_root, rng)

    page = _results_page(desk, web_root, task_id)
    assert "5,4 mmol/L" in page.text
    assert "Validation technique" not in page.text and 'name="resultats"' not in page.text
    refused = submit(desk, page, f"/reception/prescriptions/{task_id}/resultats",
                     {"action": "technique", "resultats": result["id"]})
    assert refused.status_code == 403
    assert "Seuls un technicien ou un biologiste valident techniquement un résultat." in refused.text
    assert fhir.get(f"Observation/{result['id']}").json()["status"] == "registered"


def test_the_technician_validates_technically_and_the_biologist_biologically_each_signing(
        fhir, lab_middleware, desk, technician, biologist, web_root, rng) -> None:
    task_id, result = _analyser_result(fhir, lab_middleware, desk, web_root, rng)
    path = f"/reception/prescriptions/{task_id}/resultats"

    page = _results_page(technician, web_root, task_id)
    assert "Validation technique" in page.text and "Validation biologique" not in page.text
    assert "(Automate)" in page.text  # received from the analyser's middleware
    beyond = submit(technician, page, path, {"action": "biologique", "resultats": result["id"]})
    assert beyond.status_code == 403 and "Seul un biologiste valide" in beyond.text
    done = submit(technician, page, path, {"action": "technique", "resultats": result["id"]})
    assert done.status_code == 200, done.text
    assert f"Validé techniquement par {TECHNICIAN}" in done.text

    submit(biologist, _results_page(biologist, web_root, task_id), path,
           {"action": "biologique", "resultats": result["id"]})
    stored = fhir.get(f"Observation/{result['id']}").json()
    assert stored["status"] == "final"
    assert [(s.step, s.by) for s in signatures(stored)] == [("technical", TECHNICIAN), ("biological", BIOLOGIST)]
    assert all(s.at.endswith("Z") for s in signatures(stored))


def test_a_result_typed_by_hand_is_labelled_and_signed_as_such(fhir, desk, technician, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    glucose = prescribed(fhir, task_id, GLUCOSE[0])
    submit(desk, desk.get(f"{web_root}/reception/prescriptions/{task_id}"),
           f"/reception/prescriptions/{task_id}/prelevement", {})

    page = technician.get(f"{web_root}{entry_path(task_id)}")
    assert page.status_code == 200, page.text
    results = submit(technician, page, entry_path(task_id), line(glucose, GLUCOSE[0], "5,6", "mmol/L", "3,9", "6,1"))
    assert results.url.path == f"/reception/prescriptions/{task_id}/resultats", results.text
    assert "(Saisie manuelle)" in results.text and "(Automate)" not in results.text
    assert f"Saisi à la main par {TECHNICIAN}" in results.text
    [stored] = results_of(fhir, glucose)
    assert [(s.step, s.by) for s in signatures(stored)] == [("entered", TECHNICIAN)]


def test_reception_cannot_type_results(fhir, desk, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    assert "Saisir des résultats" not in _results_page(desk, web_root, task_id).text
    assert desk.get(f"{web_root}{entry_path(task_id)}").status_code == 403


def test_the_clinical_context_shows_beside_the_results_it_changes(fhir, lab_middleware, desk, web_root, rng) -> None:
    inr_exam = ("34528-0", "TP / INR")
    spec = addressed(rng, exams=[inr_exam, GLUCOSE], anticoagulant="Warfarine")
    task_id = imported(fhir, desk, web_root, spec)
    request = prescribed(fhir, task_id, inr_exam[0])
    inr = {**glucose_result(request, 2.8, "{INR}"), "code": {"coding": [{"system": "http://loinc.org", "code": "6301-6"}]}}
    assert lab_middleware.post("Observation", json=inr).status_code == 201
    glucose = lab_middleware.post("Observation", json=glucose_result(prescribed(fhir, task_id, GLUCOSE[0]), 5.0, "mmol/L"))
    assert glucose.status_code == 201

    page = _results_page(desk, web_root, task_id)
    rows = {row.split("</label>")[0].rsplit(">", 1)[-1]: row for row in page.text.split("<tr")[1:] if "</label>" in row}
    assert "Anticoagulant : Warfarine" in next(row for label, row in rows.items() if "INR" in label or "6301-6" in label)
    assert "Anticoagulant" not in next(row for label, row in rows.items() if "Glycémie" in label)
