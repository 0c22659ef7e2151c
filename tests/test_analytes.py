"""The patient's vocabulary in "Mes analyses": one line per analyte whatever the lab's code
(CRP and hs-CRP), microbiology (cultures, germs, antibiograms) in a section of its own in words
and never as a trend, a plain-French explanation of every analyte, units as French reports
print them."""

import csv
import random
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bilan import french
from bilan.auth.caller import Caller
from bilan.demo.prescriptions import Person, random_person
from bilan.fhir.outcomes import NotFound
from bilan.prescription import tracking
from bilan.results.views import analytes
from bilan.results.views.explanations import explanations
from bilan.results.views.microbiology import Examination
from tests.helpers import search, uuid_from
from tests.lab_reports import PARIS
from tests.people import DUPONT
from tests.results import UCUM, reported
from tests.test_imported_reports import document_reference, example, fresh_ins, patient_for
from tests.test_trends import (
    OTHER_LAB,
    at,
    by_id,
    measured,
    other_lab_document,
    shared_order,
    with_trends,
)
from tests.web import log_in

CATALOGUE = Path(__file__).parent.parent / "bilan" / "data" / "catalogue" / "catalogue.csv"
CRP_EXAM, ECBU_EXAM = ("1988-5", "Protéine C réactive (CRP)"), ("630-4", "ECBU")
SCOPES = frozenset({"openid", "profile", "bilan"})


def catalogue_rows() -> list[dict[str, str]]:
    with CATALOGUE.open(encoding="utf-8", newline="") as text:
        return list(csv.DictReader(text))


def patient_caller(ins: str) -> Caller:
    return Caller("patient", f"fc-patient-{ins}", SCOPES, ins=ins)


# Without a server: the data files

def test_every_analyte_a_patient_sees_has_an_explanation() -> None:
    keys = {group.key for group in analytes.GROUPS}
    keys |= {analytes.entry_key(row) for row in catalogue_rows()  # type: ignore[arg-type]
             if row["kind"] != "panel" and row["loinc"]}
    missing = sorted(k for k in keys if not explanations().get(k))
    assert missing == []
    for key in keys:
        text = explanations()[key]
        assert 20 < len(text) < 240 and text[0].isupper() and text.endswith("."), key
    assert analytes.describe("glucose", {}, None).explanation.startswith("Mesure le taux de sucre dans le sang")
    assert sorted(set(explanations()) - keys) == []  # no line for an analyte that does not exist


def test_a_code_belongs_to_one_group_at_most() -> None:
    codes = [code for group in analytes.GROUPS for code in group.codes]
    assert len(codes) == len(set(codes))
    keys = [group.key for group in analytes.GROUPS]
    assert len(keys) == len(set(keys))


def test_a_grouped_catalogue_entry_keeps_its_key() -> None:
    """A link to a trend made before its entry joined a group still opens it."""
    for row in catalogue_rows():
        group = next((g for g in analytes.GROUPS if row["loinc"] in g.codes), None)
        if group is not None and group.key not in ("glucose", "creatinine", "cholesterol", "hdl", "triglycerides",
                                                   "acide-urique", "hba1c"):
            assert group.key == row["local_code"].lower().replace("_", "-"), row["local_code"]


def test_every_catalogue_unit_prints_the_french_way() -> None:
    units = {u for row in catalogue_rows() for u in (row["ucum"], row["alt_ucum"]) if u}
    for unit in units:
        shown = french.unit(unit)
        assert not re.search(r"[*\[\]{}]|(^|/)u", shown), (unit, shown)
    assert [french.unit(u) for u in ("10*9/L", "umol/L", "m[IU]/L", "ug/L", "mL/min/{1.73_m2}", "{INR}")] == [
        "G/L", "µmol/L", "mUI/L", "µg/L", "mL/min/1,73 m²", ""]
    assert french.quantity(3, "10*6/L") == "3 10⁶/L" and french.unit("mm[Hg]") == "mmHg"


# CRP from two labs under two codes, and the lab's own ECBU

@pytest.fixture(scope="module")
def person(rng_module: random.Random) -> Person:
    return random_person(rng_module)


@pytest.fixture(scope="module")
def two_crps(fhir, lab_middleware, desk, biologist, web_root, as_user, rng_module, person) -> dict[str, str]:
    """Her CRP (1988-5) and urine leukocytes (the ECBU's, chapter Microbiologie) at the demo lab,
    and a high-sensitivity CRP (30522-7) from another lab."""
    task_id, (crp, leukocytes) = shared_order(
        fhir, desk, biologist, lab_middleware, web_root, rng_module, person, [CRP_EXAM, ECBU_EXAM], [
            (CRP_EXAM[0], "1988-5", 12, "mg/L", {"effectiveDateTime": at(2026, 3, 10)}),
            (ECBU_EXAM[0], "30405-5", 50000, "/mL", {"effectiveDateTime": at(2026, 3, 10)}),
        ])
    lab_file = tracking.lab_file_of(fhir.get(f"Task/{task_id}").json()) or \
        fhir.get(f"Observation/{crp}").json()["subject"]["reference"]
    when = datetime(2025, 9, 2, 7, 30, tzinfo=PARIS)
    importer = as_user("bio.durand")
    stored = importer.post("DocumentReference", json=other_lab_document(rng_module, person, lab_file, [
        measured("30522-7", "CRP ultrasensible", "3.1", "mg/L", "0", "5", when)], when))
    assert stored.status_code == 201, stored.text
    [theirs] = [e["resource"]["id"] for e in search(importer, "Observation", **{
        "derived-from": f"DocumentReference/{stored.json()['id']}"})["entry"]]
    return {"crp": crp, "other_crp": theirs, "leukocytes": leukocytes}


def test_crp_from_two_labs_under_two_codes_is_one_line(two_crps, settings, person) -> None:
    her = patient_caller(person.ins)
    every = with_trends(settings, lambda trends: trends.analytes(her))
    crps = [a for a in every if "CRP" in a.label or a.key in ("crp", "30522-7", "1988-5")]
    assert [(a.key, a.label, a.count) for a in crps] == [("crp", "Protéine C réactive (CRP)", 2)]
    assert crps[0].explanation.startswith("Protéine produite par le foie")
    series = with_trends(settings, lambda trends: trends.series(her, "crp"))
    points = by_id(series)
    assert set(points) == {two_crps["crp"], two_crps["other_crp"]} and series.apart == ()
    ours, theirs = points[two_crps["crp"]], points[two_crps["other_crp"]]
    assert (theirs.value, theirs.unit, theirs.lab) == (Decimal("3.1"), "mg/L", OTHER_LAB.name)
    assert (ours.value, ours.unit) == (12, "mg/L")
    assert [p.observation_id for p in series.points] == [two_crps["other_crp"], two_crps["crp"]]
    assert series.explanation == crps[0].explanation
    found = with_trends(settings, lambda trends: trends.analytes(her, "ultrasensible"))
    assert [a.key for a in found] == ["crp"]  # the hs-CRP's own name finds the one line


def test_the_labs_own_ecbu_is_microbiology_and_never_a_trend(two_crps, settings, person) -> None:
    her = patient_caller(person.ins)
    every = with_trends(settings, lambda trends: trends.analytes(her))
    assert "ecbu-leu" not in {a.key for a in every}
    assert all(a.chapter != "18725-2" for a in every)
    with pytest.raises(NotFound):
        with_trends(settings, lambda trends: trends.series(her, "ecbu-leu"))
    [exam] = with_trends(settings, lambda trends: trends.microbiology(her))
    assert exam.day.isoformat() == "2026-03-10" and exam.germs == ()
    assert [(f.label, f.value) for f in exam.findings] == [("Leucocytes urinaires", "50000 /mL")]


# An antibiogram from another lab (the ANS example)

def fresh_example(name: str, ins: str, rng: random.Random) -> bytes:
    """An ANS example about this INS, under a document id of its own."""
    root = f"2.25.{uuid_from(rng).int}".encode()
    return re.sub(rb'(<(?:id|setId) root=")1\.2\.250\.1\.213\.1\.1\.1\.55\.2024\.8(\.2)?("\s*/>)',
                  lambda m: m.group(1) + root + (m.group(2) or b"") + m.group(3), example(name, ins), count=2)


def coli(examinations: list[Examination]) -> dict[str, tuple[str, str]]:
    [exam] = [e for e in examinations if e.day.isoformat() == "2024-01-04"]
    germ = next(g for g in exam.germs if g.name == "Escherichia coli")
    return {s.antibiotic: (s.reading, s.value) for s in germ.antibiogram}


def test_an_antibiogram_is_read_in_words_and_is_no_trend(as_user, settings, rng) -> None:
    importer = as_user("bio.durand")
    ins = fresh_ins(rng)
    patient = patient_for(importer, ins)
    posted = importer.post("DocumentReference", json=document_reference(
        patient, fresh_example("Microbiologie_V2", ins, rng)))
    assert posted.status_code == 201, posted.text
    her = patient_caller(ins)

    assert with_trends(settings, lambda trends: trends.analytes(her)) == []  # all of it is microbiology
    for key in ("20-8", "28-1", "18928-2", "51480-2", "ecbu-leu", "ecbu-bact", "5778-6"):
        with pytest.raises(NotFound):
            with_trends(settings, lambda trends: trends.series(her, key))

    found = with_trends(settings, lambda trends: trends.microbiology(her))
    assert coli(found) == {"Amoxicilline": ("résistant", "≥ 0,512 µg/mL"),
                           "Ampicilline": ("intermédiaire", "< 0,128 µg/mL"),
                           "Gentamicine": ("sensible", "< 0,032 µg/mL")}
    [exam] = found
    assert {g.name for g in exam.germs} == {"Escherichia coli", "Streptococcus D."}
    streptococcus = next(g for g in exam.germs if g.name == "Streptococcus D.")
    assert {s.reading for s in streptococcus.antibiogram} == {"sensible"}
    assert [(f.label, f.value) for f in streptococcus.findings] == [("Dénombrement de germes", "200000 /mL")]
    findings = dict((f.label, f.value) for f in exam.findings)
    assert findings["Couleur"] == "paille" and findings["Leucocytes"] == "500 /mL"
    assert exam.lab  # the lab that performed it, as the document names it


# Her pages

def test_her_pages_speak_her_language(fhir, lab_middleware, desk, biologist, web_root, as_user, rng) -> None:
    """Marie Dupont (the ANS examples' INS): a CRP here, an hs-CRP elsewhere, a ferritin and a
    TSH in UCUM units, an antibiogram from another lab."""
    task_id, ids = reported(fhir, lab_middleware, desk, biologist, web_root, rng,
                            [CRP_EXAM, ("2276-4", "Ferritine"), ("3016-3", "TSH")], {
                                CRP_EXAM[0]: quantity(8.5, "mg/L"), "2276-4": quantity(85, "ug/L"),
                                "3016-3": quantity(2.1, "m[IU]/L")}, "2026-10-12T08:00:00+02:00")
    lab_file = tracking.lab_file_of(fhir.get(f"Task/{task_id}").json())
    assert lab_file
    importer = as_user("bio.durand")
    when = datetime(2026, 6, 2, 7, 30, tzinfo=PARIS)
    crp_elsewhere = importer.post("DocumentReference", json=other_lab_document(rng, DUPONT, lab_file, [
        measured("30522-7", "CRP ultrasensible", "2.7", "mg/L", "0", "5", when)], when))
    assert crp_elsewhere.status_code == 201, crp_elsewhere.text
    antibiogram = importer.post("DocumentReference", json=document_reference(
        lab_file, fresh_example("Microbiologie_V2", DUPONT.ins, rng)))
    assert antibiogram.status_code == 201, antibiogram.text
    browser, _ = log_in(web_root, "patient.dupont")

    for path in ("/patient/", "/patient/analyses"):
        page = browser.get(f"{web_root}{path}")
        assert page.status_code == 200
        lines = analytes_links(page.text)
        assert lines.count("crp") == 1 and "30522-7" not in lines and "1988-5" not in lines
        assert not {"20-8", "28-1", "18928-2", "51480-2"} & set(lines)  # no antibiotic, no count
        micro = page.text.split('id="microbiologie"')[1]
        assert "Germe identifié : Escherichia coli" in micro
        assert re.search(r"Amoxicilline</td>\s*<td><strong>résistant</strong>", micro)
        assert re.search(r"Ampicilline</td>\s*<td>intermédiaire", micro)
        assert re.search(r"Gentamicine</td>\s*<td>sensible", micro)
        assert "≥ 0,512 µg/mL" in micro and "ug/mL" not in page.text
        assert "Protéine produite par le foie lors d&#39;une inflammation" in page.text
        for raw in ("ug/L", "m[IU]/L", "10*9/L", "umol/L"):
            assert raw not in page.text, raw
        assert "µg/L" in page.text and "mUI/L" in page.text

    assert browser.get(f"{web_root}/patient/analyses/20-8").status_code == 404
    trend = browser.get(f"{web_root}/patient/analyses/crp")
    assert trend.status_code == 200
    assert "Protéine produite par le foie" in trend.text
    assert "8,5 mg/L" in trend.text and "2,7 mg/L" in trend.text and OTHER_LAB.name in trend.text
    ferritin = browser.get(f"{web_root}/patient/analyses/ferri")
    assert "réserves de fer" in ferritin.text
    chart = ferritin.text.split("<svg")[1].split("</svg>")[0]
    assert "85 µg/L" in chart and "ug/L" not in ferritin.text


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def analytes_links(html: str) -> list[str]:
    return re.findall(r'href="/patient/analyses/([^"?]+)"', html)

