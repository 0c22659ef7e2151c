"""The patient's space: their reports newest first, their results as trends, who accessed their
data; a masked HIV result absent from every page, API answer and count until released."""

from typing import Any

from tests.helpers import search
from tests.results import (
    GLUCOSE,
    documents,
    glucose,
    reported,
)
from tests.web import log_in, submit

HIV = ("56888-1", "Sérologie VIH")
NEGATIVE = {"coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Négatif"}]}


def test_the_patient_sees_reports_and_a_trend_and_who_looked(
        fhir, lab_middleware, desk, biologist, web_root, as_user, rng) -> None:
    reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE],
             {GLUCOSE[0]: glucose(5.3)}, "2026-03-02T08:00:00+01:00")
    task_id, _ = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE],
                          {GLUCOSE[0]: glucose(7.4)}, "2026-09-14T08:00:00+02:00")
    browser, _ = log_in(web_root, "patient.dupont")

    home = browser.get(f"{web_root}/patient/")
    assert home.status_code == 200 and "Mes comptes rendus" in home.text
    assert "Laboratoire Bilan Paris Est" in home.text and "Glycémie" in home.text
    [latest] = documents(fhir, task_id)
    assert latest["id"] in home.text

    found = browser.get(f"{web_root}/patient/analyses", params={"q": "glycemie"}, headers={"HX-Request": "true"})
    assert "Glycémie" in found.text and "<html" not in found.text  # the htmx block alone
    assert "Aucune analyse" in browser.get(f"{web_root}/patient/analyses", params={"q": "zzz"}).text
    link = found.text.split('href="/patient/analyses/')[1].split('"')[0]
    trend = browser.get(f"{web_root}/patient/analyses/{link}")
    assert trend.status_code == 200
    assert '<rect class="band"' in trend.text and "7,4 mmol/L" in trend.text and "5,3" in trend.text
    assert 'class="point out"' in trend.text  # 7.4 is above the range: marked

    trail = browser.get(f"{web_root}/patient/acces")
    assert "biologiste" in trail.text and "a consulté" in trail.text

    assert desk.get(f"{web_root}/patient/").status_code == 403  # the lab has no patient space


def test_a_masked_hiv_result_is_absent_everywhere_until_released(
        fhir, lab_middleware, desk, biologist, doctor, web_root, as_user, rng) -> None:
    task_id, ids = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE, HIV],
                            {GLUCOSE[0]: glucose(5.1), HIV[0]: {"valueCodeableConcept": NEGATIVE}},
                            "2026-10-05T08:00:00+02:00", hidden=(HIV[0],), annonce="1")
    hiv = ids[HIV[0]]
    patient = as_user("patient.dupont")
    browser, _ = log_in(web_root, "patient.dupont")
    [document] = documents(fhir, task_id)

    def seen() -> dict[str, Any]:
        observations = search(patient, "Observation", code=f"http://loinc.org|{HIV[0]}")
        lastn = patient.get("Observation/$lastn", params={"code": f"http://loinc.org|{HIV[0]}"}).json()
        reports = search(patient, "DocumentReference", _id=document["id"])
        home = browser.get(f"{web_root}/patient/").text
        return {"search": observations["total"], "ids": [e["resource"]["id"] for e in observations.get("entry", [])],
                "lastn": [e["resource"]["id"] for e in lastn.get("entry", [])], "reports": reports["total"],
                "read": patient.get(f"Observation/{hiv}").status_code, "home": document["id"] in home,
                "hint": "attend votre consultation" in home, "pdf": browser.get(
                    f"{web_root}/documents/{document['id']}/compte-rendu.pdf").status_code}

    before = seen()
    assert hiv not in before["ids"] and hiv not in before["lastn"]
    assert before["reports"] == 0 and before["read"] == 403 and not before["home"] and before["pdf"] == 403
    assert before["hint"]  # the lab chose to say a result awaits the consultation, not what or when

    page = doctor.get(f"{web_root}/prescripteur/prescriptions/{task_id}")
    submit(doctor, page, f"/prescripteur/prescriptions/{task_id}/levee-masquage", {})
    after = seen()
    assert hiv in after["ids"] and hiv in after["lastn"] and after["search"] == before["search"] + 1
    assert after["reports"] == 1 and after["read"] == 200 and after["home"] and after["pdf"] == 200
