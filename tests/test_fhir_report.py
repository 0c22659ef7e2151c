"""The report as FHIR: a DiagnosticReport and its Observations that bilan's validator accepts,
linked to each other inside one transaction Bundle."""

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from bilan.app import AMENDMENTS, RULES
from bilan.fhir.models import Bundle, model_class
from bilan.fhir.parsing import validate
from bilan.records.validation import Validator
from bilan.results.desk.units import check_unit
from bilan.results.document.fhir_report import (
    UCUM,
    References,
    pdf_attachment,
    report_resources,
    transaction_bundle,
)
from bilan.results.document.report import Chapter, Identifier, LabReport, ReportError, Result
from tests.lab_reports import FIRST_ID, report

SERUM_ID = Identifier("1.2.250.1.213.1.1.9.2", "250310-0007-02")
BLOOD_ID = Identifier("1.2.250.1.213.1.1.9.2", "250310-0007-01")
REFS = References(
    patient="Patient/pat-1",
    lab="Organization?identifier=http://finess.sante.gouv.fr|750012345",
    biologist="PractitionerRole/bio-1",
    requests=("ServiceRequest/sr-1", "ServiceRequest/sr-2"),
    specimens={SERUM_ID: "Specimen/serum-1", BLOOD_ID: "Specimen/blood-1"},
)
SECOND_VERSION = {"version": 2, "replaces": FIRST_ID,
                  "document_id": Identifier("6F1D3A52-8C1B-4E0B-9E43-0A51C1D2B002")}


def with_specimen_ids(base: LabReport) -> LabReport:
    ids = {"SER": SERUM_ID, "BLD": BLOOD_ID}
    chapters = tuple(dataclasses.replace(c, specimens=tuple(
        dataclasses.replace(s, id=ids[s.kind.code]) for s in c.specimens)) for c in base.chapters)
    return dataclasses.replace(base, chapters=chapters)


def resources(**changes: Any) -> list[dict[str, Any]]:
    return report_resources(with_specimen_ids(report(**changes)), REFS)


def by_code(found: list[dict[str, Any]], code: str) -> dict[str, Any]:
    return next(r for r in found if r["code"]["coding"][0]["code"] == code)


def diagnostic_report(found: list[dict[str, Any]]) -> dict[str, Any]:
    [dr] = [r for r in found if r["resourceType"] == "DiagnosticReport"]
    return dr


def quantities(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = [resource["valueQuantity"]] if "valueQuantity" in resource else []
    for range_ in resource.get("referenceRange", []):
        found += [range_[k] for k in ("low", "high") if k in range_]
    return found


def aborted_report(**changes: Any) -> list[dict[str, Any]]:
    base = with_specimen_ids(report(**changes))
    aborted = Result("2823-3", "Potassium", None, status="aborted",
                     comment="Échantillon hémolysé : non réalisable.")
    biochemistry = base.chapters[1]
    chapters = (base.chapters[0],
                dataclasses.replace(biochemistry, items=(*biochemistry.items, aborted)))
    return report_resources(dataclasses.replace(base, chapters=chapters), REFS)


@pytest.mark.parametrize("make", [resources, aborted_report,
                                  lambda: resources(**SECOND_VERSION)])
def test_every_resource_is_valid_fhir_that_bilan_would_store(make) -> None:
    validator = Validator(RULES, AMENDMENTS)
    for resource in make():
        assert validate(resource) == [], resource
        assert validator.check(resource) == [], resource
        model_class(resource["resourceType"]).model_validate(resource)


def test_the_report_lists_its_chapters_and_points_at_its_actors() -> None:
    dr = diagnostic_report(resources())
    assert dr["code"]["coding"] == [{"system": "http://loinc.org", "code": "11502-2",
                                     "display": "Compte rendu d'examens biologiques"}]
    categories = [c["coding"][0] for c in dr["category"]]
    assert {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB",
            "display": "Laboratory"} in categories
    assert {(c["system"], c["code"]) for c in categories[1:]} == {
        ("http://loinc.org", "18723-7"), ("http://loinc.org", "18719-5")}
    assert dr["status"] == "final"
    assert [b["reference"] for b in dr["basedOn"]] == list(REFS.requests)
    assert dr["subject"] == {"reference": "Patient/pat-1"}
    assert dr["performer"] == [{"reference": REFS.lab}]
    assert dr["resultsInterpreter"] == [{"reference": "PractitionerRole/bio-1"}]
    assert dr["effectiveDateTime"] == "2025-03-10T07:35:00+01:00"  # collection
    assert dr["issued"] == "2025-03-10T16:40:00+01:00"
    assert {s["reference"] for s in dr["specimen"]} == {"Specimen/serum-1", "Specimen/blood-1"}
    assert dr["conclusion"] == "Biochimie : Glycémie à jeun élevée : à confronter à l'HbA1c."
    assert "presentedForm" not in dr


def test_results_and_battery_members_resolve_inside_the_bundle() -> None:
    found = resources()
    bundle = transaction_bundle(found)
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    dr = diagnostic_report(found)
    top = [by_url[r["reference"]] for r in dr["result"]]
    assert [o["code"]["coding"][0]["code"] for o in top] == ["58410-2", "40193-5", "2106-3"]

    battery = top[0]
    members = [by_url[m["reference"]] for m in battery["hasMember"]]
    assert [m["code"]["coding"][0]["code"] for m in members] == ["718-7", "6690-2", "777-3"]
    assert not any(key.startswith("value") for key in battery) and battery["status"] == "final"
    reachable = {o["code"]["coding"][0]["code"] for o in top + members}
    assert reachable == {r["code"]["coding"][0]["code"] for r in found[1:]}


def test_a_high_glucose_carries_h_and_its_reference_range() -> None:
    glucose = by_code(resources(), "40193-5")
    assert glucose["status"] == "final"
    assert glucose["valueQuantity"] == {"value": Decimal("7.2"), "unit": "mmol/L", "system": UCUM,
                                        "code": "mmol/L"}
    assert glucose["interpretation"][0]["coding"] == [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "H", "display": "Anormalement haut"}]
    assert glucose["referenceRange"] == [{
        "low": {"value": Decimal("3.9"), "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
        "high": {"value": Decimal("6.1"), "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}]
    assert [c["coding"][0]["code"] for c in glucose["category"]] == ["laboratory", "18719-5"]
    assert glucose["specimen"] == {"reference": "Specimen/serum-1"}
    assert [b["reference"] for b in glucose["basedOn"]] == list(REFS.requests)
    assert glucose["performer"] == [{"reference": REFS.lab}, {"reference": REFS.biologist}]
    assert glucose["effectiveDateTime"] == "2025-03-10T07:35:00+01:00"
    assert glucose["issued"] == "2025-03-10T16:30:00+01:00"


def test_coded_results_and_comments() -> None:
    found = resources()
    hcg = by_code(found, "2106-3")
    assert hcg["valueCodeableConcept"]["coding"] == [
        {"system": "http://snomed.info/sct", "code": "260385009", "display": "Négatif"}]
    assert by_code(found, "6690-2")["note"] == [{"text": "Hyperleucocytose modérée, à contrôler."}]
    assert by_code(found, "777-3")["valueQuantity"]["value"] == 254


def test_a_result_that_will_not_be_done_is_cancelled_with_a_reason() -> None:
    potassium = by_code(aborted_report(), "2823-3")
    assert potassium["status"] == "cancelled"
    assert potassium["dataAbsentReason"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
        "code": "not-performed", "display": "Not Performed"}
    assert not any(key.startswith("value") for key in potassium)
    assert potassium["note"] == [{"text": "Échantillon hémolysé : non réalisable."}]


@pytest.mark.parametrize("changes, status", [
    ({}, "final"),
    ({"complete": False}, "partial"),
    (SECOND_VERSION, "corrected"),
])
def test_report_status_follows_version_and_completeness(changes: dict, status: str) -> None:
    assert diagnostic_report(resources(**changes))["status"] == status


def test_units_are_ucum() -> None:
    found = [q for r in resources() for q in quantities(r)]
    assert len(found) == 12  # four quantities, each with a low and a high
    for quantity in found:
        assert quantity["system"] == UCUM
        assert quantity["code"] == quantity["unit"]
        assert check_unit(quantity["code"]) is None


def test_the_bundle_is_a_transaction_that_creates_everything() -> None:
    found = resources()
    bundle = transaction_bundle(found)
    assert validate(bundle) == []
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction" and len(bundle["entry"]) == len(found) == 7
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls) and all(u.startswith("urn:uuid:") for u in urls)
    for entry in bundle["entry"]:
        assert entry["request"] == {"method": "POST", "url": entry["resource"]["resourceType"]}
        assert "id" not in entry["resource"]
    local = [ref for e in bundle["entry"] for ref in _references(e["resource"])
             if ref.startswith("urn:uuid:")]
    assert local and set(local) <= set(urls)


def test_the_same_report_gives_the_same_resources() -> None:
    assert resources() == resources()
    assert diagnostic_report(resources())["id"] != diagnostic_report(
        resources(document_id=Identifier("B0B0B0B0-0000-4000-8000-000000000001")))["id"]
    assert diagnostic_report(resources())["identifier"] == [
        {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:6f1d3a52-8c1b-4e0b-9e43-0a51c1d2b001"}]


def test_the_pdf_copy_can_be_presented() -> None:
    lab_report = with_specimen_ids(report())
    dr = report_resources(lab_report, REFS, [pdf_attachment(lab_report)])[0]
    assert validate(dr) == []
    [form] = dr["presentedForm"]
    assert form["contentType"] == "application/pdf" and form["size"] == len(lab_report.pdf)


def test_a_report_with_one_commented_chapter_concludes_with_its_comment() -> None:
    biochemistry = report().chapters[1]
    dr = diagnostic_report(resources(chapters=(biochemistry,)))
    assert dr["conclusion"] == biochemistry.comment
    assert [c["coding"][0]["code"] for c in dr["category"]] == ["LAB", "18719-5"]


@pytest.mark.parametrize("field, reference", [
    ("patient", "Practitioner/p1"), ("lab", "Patient/x"), ("biologist", "Organization/o"),
    ("patient", "not a reference"),
])
def test_references_must_name_the_right_type(field: str, reference: str) -> None:
    with pytest.raises(ReportError):
        dataclasses.replace(REFS, **{field: reference})


def test_a_quantity_keeps_an_integer_when_it_is_one() -> None:
    chapter = report().chapters[1]
    glucose = dataclasses.replace(chapter.items[0], value=dataclasses.replace(
        chapter.items[0].value, value=Decimal(7)))
    dr_and_obs = resources(chapters=(Chapter(chapter.code, chapter.display, (glucose,)),))
    assert by_code(dr_and_obs, "40193-5")["valueQuantity"]["value"] == 7


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in _references(v)]
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []
