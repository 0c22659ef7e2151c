"""One French vocabulary (bilan/french.py): a result reads the same on the patient's page, the
PDF report and the CDA narrative, with the digits the lab gave, its unit as a French report
prints it, and times on Paris clocks."""

import dataclasses
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from bilan import french
from bilan.prescription.catalogue import read_csv
from bilan.results.document.cda import cda_document
from bilan.results.document.pdf import report_pdf
from bilan.results.document.report import Chapter
from tests.lab_reports import at, quantity, report
from tests.results import GLUCOSE, documents, glucose, pdf_text, reported
from tests.web import log_in

CATALOGUE = Path(__file__).parent.parent / "bilan" / "data" / "catalogue" / "catalogue.csv"
V3 = {"cda": "urn:hl7-org:v3"}

# Every unit of the catalogue (ucum and alt_ucum), as a French lab report prints it.
PRINTED = {
    "%": "%", "/mL": "/mL", "/uL": "/µL", "10*12/L": "T/L", "10*9/L": "G/L", "L/L": "L/L",
    "U/L": "UI/L", "[IU]/L": "UI/L", "m[IU]/L": "mUI/L", "fL": "fL", "g/L": "g/L", "g/dL": "g/dL",
    "mL/min/{1.73_m2}": "mL/min/1,73 m²", "mg/L": "mg/L", "mg/g": "mg/g", "mg/mmol": "mg/mmol",
    "mm/h": "mm/h", "mmol/L": "mmol/L", "ng/L": "ng/L", "ng/mL": "ng/mL", "nmol/L": "nmol/L",
    "pg": "pg", "pmol/L": "pmol/L", "s": "s", "ug/L": "µg/L", "ug/dL": "µg/dL", "ug/mL": "µg/mL",
    "umol/L": "µmol/L", "{INR}": "", "{ratio}": "",
}


@pytest.mark.parametrize(("value", "shown"), [
    (Decimal("5.0"), "5,0"), (Decimal("1.950"), "1,950"), (Decimal("5"), "5"), (Decimal("0.081"), "0,081"),
    (Decimal("1E+2"), "100"), (Decimal("1.2E-3"), "0,0012"), (Decimal("-0.50"), "-0,50"),
    (5.0, "5,0"), (7, "7"), ("7.20", "7,20"), (None, ""),
])
def test_a_number_keeps_the_digits_it_was_given(value: Decimal | float | int | str | None, shown: str) -> None:
    assert french.number(value) == shown


def test_every_catalogue_unit_prints_as_a_french_report_writes_it() -> None:
    used = {unit for row in read_csv(CATALOGUE) for column in ("ucum", "alt_ucum")
            for unit in (row[column] or "").split("|") if unit}
    assert used <= PRINTED.keys(), f"decide how these print: {sorted(used - PRINTED.keys())}"
    assert {code: french.unit(code) for code in used} == {code: PRINTED[code] for code in used}


def test_only_equal_units_share_a_printed_form() -> None:
    assert french.unit("10*3/uL") == french.unit("10*9/L") == "G/L"  # 10^3/µL is 10^9/L
    assert french.unit("10*6/uL") == french.unit("10*12/L") == "T/L"
    assert french.unit("mmol/mol") == "mmol/mol"  # not listed: printed as it is
    assert french.quantity(Decimal("1.12"), "{INR}") == "1,12"  # no dangling space
    assert french.quantity(Decimal("5.0"), "10*9/L") == "5,0 G/L"


def test_a_label_that_names_its_unit_does_not_name_it_twice() -> None:
    assert french.label_with_unit("Lymphocytes (%)", "%") == "Lymphocytes (%)"
    assert french.label_with_unit("Leucocytes", "10*9/L") == "Leucocytes (G/L)"
    assert french.label_with_unit("VGM (volume globulaire moyen)", "fL") == "VGM (volume globulaire moyen) (fL)"
    assert french.label_with_unit("INR", "{INR}") == "INR"


def test_times_show_on_paris_clocks_winter_and_summer() -> None:
    assert french.datetime(datetime(2026, 1, 15, 13, 5, tzinfo=timezone.utc)) == "15/01/2026 14:05"
    assert french.datetime(datetime(2026, 7, 15, 12, 5, tzinfo=timezone.utc)) == "15/07/2026 14:05"
    assert french.datetime("2026-07-15T12:05:00Z", at=True) == "15/07/2026 à 14:05"
    assert french.date("2026-07-01T23:30:00Z") == "02/07/2026"  # already the next day in Paris
    assert french.datetime(datetime(2026, 1, 15, 13, 5)) == "15/01/2026 14:05"  # naive: read as UTC


def test_dates_print_day_first_and_partial_dates_what_they_have() -> None:
    assert french.date("2026-11-24") == french.date(date(2026, 11, 24)) == "24/11/2026"
    assert french.date("1979-03") == "03/1979" and french.date("1979") == "1979"
    assert french.date(None) == french.date("") == ""


def test_names_in_the_french_order() -> None:
    assert french.person_name("Dupont", ("Marie", "Claire")) == "DUPONT Marie Claire"
    assert french.person_name("Dupont", ("Marie", "Claire")[:1]) == "DUPONT Marie"
    assert french.professional_name("Lambert", "Claire", "Dr") == "Dr Claire LAMBERT"


def test_the_pdf_and_the_cda_narrative_print_the_same_value_and_paris_times() -> None:
    def utc(day: int, hour: int, minute: int) -> datetime:
        return at(day, hour, minute).astimezone(timezone.utc)

    five = quantity("40193-5", "Glycémie à jeun", "5.0", "mmol/L", "3.9", "6.1")
    serum = dataclasses.replace(report().chapters[1].specimens[0], collected_at=utc(10, 7, 35),
                                received_at=utc(10, 8, 5))
    in_utc = report(chapters=(Chapter("18719-5", "Biochimie", (five,), specimens=(serum,)),),
                    validated_at=utc(10, 16, 30), received_at=utc(10, 8, 5), effective_time=utc(10, 16, 40))

    assert "5,0 mmol/L" in pdf_text(report_pdf(in_utc))
    root = etree.fromstring(cda_document(in_utc))
    narrative = " ".join(root.xpath("//cda:section/cda:text//text()", namespaces=V3))
    assert "5,0 mmol/L" in narrative and "Marcel CAMPARINI" in narrative
    assert "le 10/03/2025 à 07:35" in narrative  # the collection, on Paris clocks
    times = root.xpath("//@value[starts-with(., '2025')]", namespaces=V3)
    assert times and all(t.endswith("+0100") for t in times), times
    assert "20250310073500+0100" in times  # the specimen's collection, header and entries alike
    assert root.xpath("//cda:value[@unit='mmol/L']/@value", namespaces=V3) == ["5.0"]  # data stay UCUM


def test_a_result_of_5_0_reads_5_0_on_the_patient_page_and_in_the_pdf(
        fhir, lab_middleware, desk, biologist, web_root, as_user, rng) -> None:
    task_id, _ = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE],
                          {GLUCOSE[0]: glucose(5.0)}, "2026-07-02T08:00:00+02:00")
    browser, _ = log_in(web_root, "patient.dupont")
    found = browser.get(f"{web_root}/patient/analyses", params={"q": "glycemie"})
    link = found.text.split('href="/patient/analyses/')[1].split('"')[0]
    trend = browser.get(f"{web_root}/patient/analyses/{link}")
    assert trend.status_code == 200 and "5,0 mmol/L" in trend.text

    [document] = documents(fhir, task_id)
    pdf = browser.get(f"{web_root}/documents/{document['id']}/compte-rendu.pdf")
    assert pdf.status_code == 200 and "5,0 mmol/L" in pdf_text(pdf.content)
