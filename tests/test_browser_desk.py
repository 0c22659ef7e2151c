"""The lab's desk in a real browser, as the technician and the biologist work it: results wait
for the tubes to be collected, impossible and absurdly long numbers are refused next to their
field (never a 500, nothing lost), the technician validates technically and the biologist
biologically, each signing; eGFR and LDL come calculated from their inputs."""

import httpx
from playwright.sync_api import Page, expect

from bilan.demo.prescriptions import EXAMS
from tests.orders import addressed, collected, imported, prescribed
from tests.results import result

GLUCOSE, KIDNEY, LIPIDS = EXAMS[1], EXAMS[2], EXAMS[3]


def _type(page: Page, request_id: str, loinc: str, value: str) -> None:
    page.locator(f"#valeur-{request_id}-{loinc}").fill(value)
    page.get_by_role("button", name="Enregistrer les résultats").click()


def test_the_technician_types_what_a_tube_allows_and_signs_technical_validation(
        page_as, shots, fhir: httpx.Client, desk: httpx.Client, web_root: str, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    request = prescribed(fhir, task_id, GLUCOSE[0])
    field = f"#valeur-{request['id']}-{GLUCOSE[0]}"
    technician = page_as("tech.bernard")
    technician.goto(f"/reception/prescriptions/{task_id}/saisie")

    _type(technician, request["id"], GLUCOSE[0], "5,6")  # before the tube is collected
    expect(technician.locator(f"{field}-erreur")).to_contain_text("Prélèvement non enregistré")
    expect(technician.locator(field)).to_have_value("5,6")
    shots(technician, "before-collection")

    collected(desk, web_root, task_id)
    technician.goto(f"/reception/prescriptions/{task_id}/saisie")
    for typed, said in (("99999999999999999999", "n'est pas un résultat possible"),
                        ("1e309", "n'est pas un résultat possible"),
                        ("-5", "hors des limites")):
        with technician.expect_response(lambda r: r.url.endswith("/saisie") and r.request.method == "POST") as answer:
            _type(technician, request["id"], GLUCOSE[0], typed)
        assert answer.value.status == 422  # refused, never a 500
        expect(technician.locator(f"{field}-erreur")).to_contain_text(said)
        expect(technician.locator(field)).to_have_value(typed)  # what was typed stays to be corrected
    shots(technician, "absurd-values-refused")
    assert [o for o in fhir.get("Observation", params={"based-on": f"ServiceRequest/{request['id']}"}).json()
            .get("entry", [])] == []

    _type(technician, request["id"], GLUCOSE[0], "5,6")
    technician.wait_for_url("**/resultats")
    row = technician.locator("tr", has_text="Glycémie")
    expect(row).to_contain_text("(Saisie manuelle)")
    expect(technician.get_by_role("button", name="Validation biologique")).to_have_count(0)
    row.get_by_role("checkbox").check()
    technician.get_by_role("button", name="Validation technique").click()
    expect(technician.locator("tr", has_text="Glycémie")).to_contain_text(
        "Validé techniquement par technician:staff-tech-bernard")
    shots(technician, "validated-technically")

    biologist = page_as("bio.durand")
    biologist.goto(f"/reception/prescriptions/{task_id}/resultats")
    biologist.locator("tr", has_text="Glycémie").get_by_role("checkbox").check()
    biologist.get_by_role("button", name="Validation biologique").click()
    expect(biologist.locator("tr", has_text="Glycémie")).to_contain_text(
        "Validé biologiquement par biologist:10000000017")
    shots(biologist, "validated-biologically")


def test_egfr_and_ldl_come_calculated_with_their_inputs(
        page_as, shots, fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client,
        web_root: str, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[KIDNEY, LIPIDS]))
    kidney, lipids = prescribed(fhir, task_id, KIDNEY[0]), prescribed(fhir, task_id, LIPIDS[0])
    posts = [(kidney, "14682-9", 80, "umol/L"), (lipids, "2093-3", 2.00, "g/L"),
             (lipids, "2085-9", 0.50, "g/L"), (lipids, "2571-8", 1.00, "g/L")]
    for request, code, value, unit in posts:
        assert lab_middleware.post("Observation", json=result(request, code, value, unit)).status_code == 201

    biologist = page_as("bio.durand")
    biologist.goto(f"/reception/prescriptions/{task_id}/resultats")
    expect(biologist.locator("tr", has_text="DFG")).to_contain_text("Calculé (CKD-EPI 2021) à partir de la créatinine à 80 µmol/L")
    expect(biologist.locator("tr", has_text="LDL")).to_contain_text("1,30 g/L")
    expect(biologist.locator("tr", has_text="LDL")).to_contain_text("Calculé (Friedewald)")
    shots(biologist, "calculated")
