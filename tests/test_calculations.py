"""Calculated results: eGFR by CKD-EPI 2021 with every creatinine, LDL by Friedewald with a
lipid panel (never above 3.4 mmol/L of triglycerides), each derived from its inputs, marked as
calculated, saying how, and written again when an input changes."""

from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bilan.demo.prescriptions import EXAMS
from bilan.results.desk.calculations import egfr_ckd_epi_2021, ldl_friedewald
from tests.orders import addressed, imported, prescribed
from tests.results import result, results_of

KIDNEY, LIPIDS = EXAMS[2], EXAMS[3]
CREATININE, EGFR = "14682-9", "62238-1"
CHOLESTEROL, HDL, TRIGLYCERIDES, LDL = "2093-3", "2085-9", "2571-8", "13457-7"
SAMPLED = "2026-11-24T08:10:00+01:00"  # tests.results.result's sampling time


@pytest.mark.parametrize(("creatinine", "age", "female", "expected"), [
    (Decimal("80"), 50, True, 77),       # 0.905 mg/dL, above kappa (0.7) for a woman
    (Decimal("88.42"), 60, False, 86),   # 1.0 mg/dL, the NKF calculator's 86
    (Decimal("50"), 30, True, 126),      # below kappa: the alpha exponent applies
    (Decimal("400"), 75, False, 13),     # kidney failure
])
def test_egfr_follows_ckd_epi_2021(creatinine: Decimal, age: int, female: bool, expected: int) -> None:
    assert egfr_ckd_epi_2021(creatinine, age, female) == expected


def test_ldl_by_friedewald_only_below_3_4_mmol_of_triglycerides() -> None:
    assert ldl_friedewald(Decimal("5.2"), Decimal("1.3"), Decimal("1.5")) == Decimal("3.22")
    assert ldl_friedewald(Decimal("5.2"), Decimal("1.3"), Decimal("3.39")) == Decimal("2.36")
    assert ldl_friedewald(Decimal("5.2"), Decimal("1.3"), Decimal("3.4")) is None


def test_a_negative_ldl_is_not_calculable_and_the_triglycerides_are_stored(
        fhir, lab_middleware, desk, web_root, rng) -> None:
    spec = addressed(rng, exams=[LIPIDS])
    task_id = imported(fhir, desk, web_root, spec)
    request = prescribed(fhir, task_id, LIPIDS[0])
    for code, value in ((CHOLESTEROL, 1.00), (HDL, 0.95), (TRIGLYCERIDES, 1.00)):  # 2.59 - 2.46 - 0.51 < 0
        assert lab_middleware.post("Observation", json=result(request, code, value, "g/L")).status_code == 201
    ldl = _calculated(fhir, request, LDL)
    assert "valueQuantity" not in ldl and ldl["note"][0]["text"].startswith("Non calculable : la formule donne -")


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _calculated(fhir: httpx.Client, request: dict[str, Any], code: str) -> dict[str, Any]:
    found = [o for o in results_of(fhir, request) if o["code"]["coding"][0]["code"] == code]
    assert len(found) == 1, found
    return found[0]


def test_an_egfr_comes_with_each_creatinine_and_follows_its_correction(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[KIDNEY])
    task_id = imported(fhir, desk, web_root, spec)
    request = prescribed(fhir, task_id, KIDNEY[0])
    posted = lab_middleware.post("Observation", json=result(request, CREATININE, 80, "umol/L"))
    assert posted.status_code == 201, posted.text

    egfr = _calculated(fhir, request, EGFR)
    female = spec.patient.gender == "female"
    expected = egfr_ckd_epi_2021(Decimal("80"), _age(spec.patient.birth, date(2026, 11, 24)), female)
    assert egfr["valueQuantity"]["value"] == expected and egfr["valueQuantity"]["code"] == "mL/min/{1.73_m2}"
    assert egfr["derivedFrom"] == [{"reference": f"Observation/{posted.json()['id']}"}]
    assert egfr["meta"]["tag"][0]["code"] == "calculated" and egfr["status"] == "registered"
    assert egfr["note"][0]["text"].startswith("Calculé (CKD-EPI 2021) à partir de la créatinine à 80 µmol/L")
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert "Calculé (CKD-EPI 2021)" in page.text

    again = lab_middleware.put(f"Observation/{posted.json()['id']}",
                               json={**posted.json(), "valueQuantity": {**posted.json()["valueQuantity"], "value": 160}})
    assert again.status_code == 200, again.text
    recalculated = _calculated(fhir, request, EGFR)
    assert recalculated["id"] == egfr["id"]
    assert recalculated["valueQuantity"]["value"] < expected  # double the creatinine, a lower filtration


def test_ldl_is_calculated_from_the_lipid_panel_unless_triglycerides_are_too_high(
        fhir, lab_middleware, desk, web_root, rng) -> None:
    spec = addressed(rng, exams=[LIPIDS])
    task_id = imported(fhir, desk, web_root, spec)
    request = prescribed(fhir, task_id, LIPIDS[0])
    for code, value in ((CHOLESTEROL, 2.00), (HDL, 0.50), (TRIGLYCERIDES, 1.00)):
        assert lab_middleware.post("Observation", json=result(request, code, value, "g/L")).status_code == 201

    ldl = _calculated(fhir, request, LDL)
    # 5.172 - 1.293 - 1.129 / 2.2 = 3.366 mmol/L, in the catalogue's g/L (factor 2.586): 1.30
    assert ldl["valueQuantity"]["value"] == 1.30 and ldl["valueQuantity"]["code"] == "g/L"
    assert len(ldl["derivedFrom"]) == 3 and "Friedewald" in ldl["note"][0]["text"]

    triglycerides = next(o for o in results_of(fhir, request) if o["code"]["coding"][0]["code"] == TRIGLYCERIDES)
    high = {**triglycerides, "valueQuantity": {**triglycerides["valueQuantity"], "value": 3.50}}  # 3.95 mmol/L
    assert lab_middleware.put(f"Observation/{triglycerides['id']}", json=high).status_code == 200
    refused = _calculated(fhir, request, LDL)
    assert "valueQuantity" not in refused and refused["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
    assert refused["note"][0]["text"].startswith("Non calculable : triglycérides ≥ 3,4 mmol/L")
