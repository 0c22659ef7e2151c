"""A result keeps the digits it was given and says when it is censored, end to end: typed in
the lab's page or sent by an analyser, stored, read back as FHIR, written in the CR-BIO (which
still passes the ANS kit's checks) and printed in its PDF. "1,950" stays 1.950; "<0,5" is a
comparator and a bound everywhere, and gets the flag it implies, or none."""

import re
from decimal import Decimal
from html import unescape
from typing import Any

import httpx
import pytest
from lxml import etree

from bilan.demo.prescriptions import EXAMS
from bilan.results.desk import interpretation, typed
from bilan.results.document import conformance
from tests.helpers import expressions
from tests.orders import addressed, collected, imported, imported_for, prescribed
from tests.people import DUPONT
from tests.results import decide, documents, entry_path, issue, line, pdf_text, report_files, result, results_of
from tests.web import submit

TSH, CRP, FERRITIN = EXAMS[4], EXAMS[5], EXAMS[9]
V3 = {"h": "urn:hl7-org:v3", "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def raw(api: httpx.Client, observation_id: str) -> str:
    """An Observation as the server writes its JSON (numbers as written, not as floats)."""
    response = api.get(f"Observation/{observation_id}")
    assert response.status_code == 200, response.text
    return response.text


def element(text: str, name: str) -> str:
    """The JSON text of an object element (its keys in any order, as PostgreSQL keeps them)."""
    found = re.search(rf'"{name}":(\{{[^{{}}]*\}})', text)
    assert found, (name, text)
    return found.group(1).strip("{}")


def flag(observation: dict[str, Any]) -> str | None:
    return next((c["code"] for i in observation.get("interpretation", []) for c in i["coding"]), None)


def cda_observation(root: etree._Element, loinc: str) -> etree._Element:
    """The report's result of this code (not its antériorité, a REFR observation of the same
    code when the patient had one before)."""
    [found] = root.xpath(f"//h:observation[h:code/@code='{loinc}'][not(parent::h:entryRelationship[@typeCode='REFR'])]",
                         namespaces=V3)
    return found


def test_typed_digits_and_limits_reach_fhir_the_cda_and_the_pdf(
        fhir, desk, biologist, web_root, rng) -> None:
    task_id = imported_for(fhir, desk, web_root, addressed(rng, exams=[TSH, CRP, FERRITIN], patient=DUPONT))
    collected(desk, web_root, task_id)
    tsh, crp, ferritin = (prescribed(fhir, task_id, code) for code, _ in (TSH, CRP, FERRITIN))
    page = biologist.get(f"{web_root}{entry_path(task_id)}")
    results = submit(biologist, page, entry_path(task_id), {
        **line(tsh, TSH[0], "1,950", "m[IU]/L", "0,270", "4,20"), **line(crp, CRP[0], "<0,5", "mg/L", "", "5,0"),
        **line(ferritin, FERRITIN[0], "< 5", "ug/L", "20", "300")})
    assert results.url.path.endswith("/resultats"), results.text
    assert "1,950 mUI/L" in results.text and "&lt; 0,5 mg/L" in results.text and "&lt; 5 µg/L" in results.text

    [thyrotropin], [protein], [ferritin_result] = (results_of(fhir, r) for r in (tsh, crp, ferritin))
    assert '"value":1.950' in element(raw(fhir, thyrotropin["id"]), "valueQuantity")
    assert '"value":0.270' in element(raw(fhir, thyrotropin["id"]), "low")
    assert {'"value":0.5', '"comparator":"<"'} <= set(element(raw(fhir, protein["id"]), "valueQuantity").split(","))
    assert protein["valueQuantity"]["comparator"] == "<" and flag(protein) == "N"  # below 0.5 is below 5
    assert ferritin_result["valueQuantity"]["comparator"] == "<" and flag(ferritin_result) == "L"  # below 5 < 20
    again = biologist.get(f"{web_root}{entry_path(task_id)}")  # open: shown as typed, to be corrected
    assert 'value="&lt; 0,5"' in again.text and 'value="1,950"' in again.text

    ids = [thyrotropin["id"], protein["id"], ferritin_result["id"]]
    assert decide(biologist, web_root, task_id, "biologique", ids).status_code == 200
    assert issue(biologist, web_root, task_id).status_code == 200
    [document] = documents(fhir, task_id)
    cda, pdf = report_files(fhir, document)
    assert conformance.problems(cda) == []
    root = etree.fromstring(cda)

    value = cda_observation(root, TSH[0]).find("h:value", V3)
    assert (value.get(XSI_TYPE), value.get("value"), value.get("unit")) == ("PQ", "1.950", "m[IU]/L")
    low = cda_observation(root, TSH[0]).find("h:referenceRange/h:observationRange/h:value/h:low", V3)
    assert low.get("value") == "0.270"
    value = cda_observation(root, CRP[0]).find("h:value", V3)
    assert value.get(XSI_TYPE) == "IVL_PQ" and value.find("h:low", V3) is None
    high = value.find("h:high", V3)
    assert (high.get("value"), high.get("unit"), high.get("inclusive")) == ("0.5", "mg/L", "false")
    assert cda_observation(root, CRP[0]).find("h:interpretationCode", V3).get("code") == "N"
    assert cda_observation(root, FERRITIN[0]).find("h:interpretationCode", V3).get("code") == "L"
    narrative = "".join(root.itertext())
    assert "< 0,5 mg/L" in narrative and "1,950 mUI/L" in narrative

    text = " ".join(pdf_text(pdf).split())
    assert "1,950 mUI/L" in text and "< 0,5 mg/L" in text and "< 5 µg/L" in text


def test_an_analyser_sends_censored_values_and_gets_the_flag_they_imply(
        fhir, lab_middleware, desk, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[TSH, CRP, FERRITIN]))
    tsh, crp, ferritin = (prescribed(fhir, task_id, code) for code, _ in (TSH, CRP, FERRITIN))

    def sent(request: dict[str, Any], code: str, comparator: str, value: float, unit: str) -> httpx.Response:
        observation = result(request, code, value, unit)
        observation["valueQuantity"]["comparator"] = comparator
        return lab_middleware.post("Observation", json=observation)

    for request, code, comparator, value, unit, expected in (
            (ferritin, FERRITIN[0], "<", 5, "ug/L", "L"),  # below 5: below the range (20 - 300)
            (tsh, TSH[0], ">", 100, "m[IU]/L", "H"),  # beyond 100: above 4.20
            (crp, CRP[0], "<=", 0.5, "mg/L", "N"),  # at most 0.5: within "< 5"
            (crp, CRP[0], "<", 6, "mg/L", None),  # below 6: normal or not, nothing to say
            (ferritin, FERRITIN[0], ">=", 20, "ug/L", None)):  # 20 or more: normal or high
        response = sent(request, code, comparator, value, unit)
        assert response.status_code == 201, response.text
        stored = fhir.get(f"Observation/{response.json()['id']}").json()
        assert stored["valueQuantity"]["comparator"] == comparator
        assert flag(stored) == expected, (comparator, value, stored)

    refused = sent(crp, CRP[0], "~", 5, "mg/L")
    assert refused.status_code in (400, 422), refused.text
    assert "Observation.valueQuantity.comparator" in expressions(refused)
    refused = sent(crp, CRP[0], "<", -1, "mg/L")  # a censoring bound no CRP can have
    assert refused.status_code == 422 and "Observation.valueQuantity.value" in expressions(refused)

    body = httpx.Request("POST", "http://x", json=result(tsh, TSH[0], 424242, "m[IU]/L")).content
    exact = lab_middleware.post("Observation", content=re.sub(rb'"value":\s*424242', b'"value":1.950', body))
    assert exact.status_code == 201, exact.text
    assert '"value":1.950' in exact.text and '"value":1.950' in raw(fhir, exact.json()["id"])
    xml = fhir.get(f"Observation/{exact.json()['id']}", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 200 and "<valueQuantity>" in xml.text


def test_censored_values_typed_with_their_french_signs(fhir, desk, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[CRP, FERRITIN]))
    collected(desk, web_root, task_id)
    crp, ferritin = prescribed(fhir, task_id, CRP[0]), prescribed(fhir, task_id, FERRITIN[0])
    page = biologist.get(f"{web_root}{entry_path(task_id)}")
    saved = submit(biologist, page, entry_path(task_id), {
        **line(crp, CRP[0], "≤ 0,50", "mg/L", "", "5,0"), **line(ferritin, FERRITIN[0], "≥1000", "ug/L", "20", "300")})
    assert saved.url.path.endswith("/resultats"), saved.text
    assert "≤ 0,50 mg/L" in unescape(saved.text) and "≥ 1000 µg/L" in unescape(saved.text)
    [protein], [iron_store] = results_of(fhir, crp), results_of(fhir, ferritin)
    assert (protein["valueQuantity"]["comparator"], flag(protein)) == ("<=", "N")
    assert (iron_store["valueQuantity"]["comparator"], flag(iron_store)) == (">=", "H")
    assert '"value":0.50' in raw(fhir, protein["id"])

    retyped = biologist.get(f"{web_root}{entry_path(task_id)}")
    assert 'value="≤ 0,50"' in unescape(retyped.text)
    submit(biologist, retyped, entry_path(task_id), {
        **line(crp, CRP[0], "≤ 0,5", "mg/L", "", "5,0"), **line(ferritin, FERRITIN[0], "≥ 1000", "ug/L", "20", "300")})
    [protein], [iron_store] = results_of(fhir, crp), results_of(fhir, ferritin)
    assert protein["meta"]["versionId"] == "2" and re.search(r'"value":0\.5[,}]', raw(fhir, protein["id"]))
    assert iron_store["meta"]["versionId"] == "1"  # the same, as it was shown: not written again


@pytest.mark.parametrize(("written", "read"), [
    ("5,2", (None, "5.2")), ("1 200", (None, "1200")), ("1,950", (None, "1.950")), ("-0,0", (None, "0.0")),
    ("<0,5", ("<", "0.5")), ("< 0,5", ("<", "0.5")), ("<=0,5", ("<=", "0.5")), ("≤ 0,5", ("<=", "0.5")),
    (">1000", (">", "1000")), ("≥1000", (">=", "1000")), ("", (None, None)),
])
def test_a_typed_result_is_read_with_its_sign_and_digits(written: str, read: tuple[str | None, str | None]) -> None:
    comparator, number = typed.censored(written)
    assert (comparator, None if number is None else str(number)) == read


@pytest.mark.parametrize("written", ["cinq", "<", "<<5", "5,2,1", "≈5"])
def test_what_is_not_a_number_says_so(written: str) -> None:
    with pytest.raises(typed.NotANumber):
        typed.censored(written)


@pytest.mark.parametrize("written", ["1e309", "NaN", "inf", "-Infinity", "99999999999999999999", "1E+9", "<1e400"])
def test_what_no_measure_can_be_is_told_apart(written: str) -> None:
    with pytest.raises(typed.Unmeasurable):
        typed.censored(written)


@pytest.mark.parametrize(("comparator", "bound", "low", "high", "expected"), [
    ("<", "0.5", "1", "5", "L"), ("<", "1", "1", "5", "L"), ("<=", "1", "1", "5", None),
    ("<", "0.5", "0.3", "5", None), ("<", "5", None, "5", "N"), ("<=", "5", None, "5", "N"), ("<", "6", None, "5", None),
    (">", "1000", None, "500", "H"), (">", "5", "1", "5", "H"), (">=", "5", "1", "5", None),
    (">", "1", "1", None, "N"), (">", "0.5", "1", None, None), ("<", "3", None, None, None), (None, "3", "1", "5", "N"),
])
def test_a_censored_value_gets_the_flag_every_value_it_may_be_shares(
        comparator: str | None, bound: str, low: str | None, high: str | None, expected: str | None) -> None:
    low_limit, high_limit = (None if text is None else Decimal(text) for text in (low, high))
    assert interpretation.flag_censored(comparator, Decimal(bound), low_limit, high_limit) == expected
