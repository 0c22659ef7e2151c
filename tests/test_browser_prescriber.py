"""The prescriber in a real browser: the mail's link opened logged out leads through the login
back to the prescription, which shows its values, flags and the previous value; from there,
the patient's page and the analyte's chart (see test_prescriber_results.py for the rules over
plain HTTP)."""

import httpx
from playwright.sync_api import expect

from tests.orders import addressed, imported_for, prescribed
from tests.results import GLUCOSE, decide, patient_aged, posted, result


def _validated_glucose(fhir, lab_middleware, desk, biologist, web_root, spec, value: float, when: str) -> str:
    task_id = imported_for(fhir, desk, web_root, spec)
    found = posted(lab_middleware, {**result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], value, "mmol/L"),
                                    "effectiveDateTime": when})
    assert decide(biologist, web_root, task_id, "biologique", [found]).status_code == 200
    return task_id


def test_the_mail_link_leads_through_the_login_to_the_values_and_the_trend(
        new_page, shots, issuer, fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client,
        biologist: httpx.Client, web_root: str, rng) -> None:
    person = patient_aged(rng, "male", 60)
    _validated_glucose(fhir, lab_middleware, desk, biologist, web_root, addressed(rng, exams=[GLUCOSE], patient=person),
                       5.6, "2026-09-14T08:00:00+02:00")
    task_id = _validated_glucose(fhir, lab_middleware, desk, biologist, web_root,
                                 addressed(rng, exams=[GLUCOSE], patient=person), 7.3, "2026-11-24T08:10:00+01:00")

    doctor = new_page()
    doctor.goto(f"/prescripteur/prescriptions/{task_id}")  # the mail's link, logged out
    doctor.wait_for_url(f"{issuer}/interaction/**")
    doctor.fill("input[name=login]", "dr.lambert")
    doctor.fill("input[name=password]", "demo")
    doctor.click("button[type=submit]")
    doctor.wait_for_url(f"{web_root}/prescripteur/prescriptions/{task_id}")
    results = doctor.locator("#resultats")
    expect(results).to_contain_text("1 résultat hors normes")
    row = results.locator("tbody tr").first
    expect(row.locator("td").nth(0)).to_have_text("7,3 mmol/L")
    expect(row.locator("td").nth(1)).to_contain_text("H")
    expect(row.locator("td").nth(3)).to_have_text("5,6 mmol/L le 14/09/2026")
    shots(doctor, "prescription")

    doctor.get_by_role("link", name="tous ses résultats").click()
    expect(doctor.get_by_role("heading", level=1)).to_contain_text(person.family.upper())
    doctor.locator("tbody th a").first.click()
    expect(doctor.locator("svg.trend")).to_be_visible()
    expect(doctor.locator("table tbody tr")).to_have_count(2)
    shots(doctor, "trend")
