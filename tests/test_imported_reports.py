"""Reports from elsewhere: a CR-BIO posted as a DocumentReference (alone or in an MHD Provide
Document Bundle) puts its results in the patient's history; what cannot be imported is refused
with nothing stored.

Each test has its own patient: the ANS examples' INS is swapped for a fresh one with the same
traits (female, born March 1979), so that no two tests share a history."""

import base64
import dataclasses
import json
import random
import re
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest
from lxml import etree

from bilan.fhir.outcomes import FhirError, TooLarge
from bilan.fhir.parsing import validate
from bilan.prescription.checksums import nir_key
from bilan.prescription.ins import INS_NIR_TEST
from bilan.results.document.cda import cda_document
from bilan.results.document.report import Chapter, Result
from bilan.results.elsewhere.cda_reading import MAX_BYTES, read_cr_bio
from bilan.results.elsewhere.imported import DATA, IMPORTED, document_of, observations
from tests.helpers import ANS_CDA_EXAMPLES, diagnostics, expressions, search, uuid_from
from tests.lab_reports import BILLION_LAUGHS, one_page_pdf, report
from tests.received_reports import level_one, self_presenting, trod_report

EXAMPLES = {p.name.removeprefix("BIO-CR-BIO_2024.01_").removesuffix(".xml"): p
            for p in ANS_CDA_EXAMPLES}
EXAMPLE_INS = b"279035121518989"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LAB = {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "1120459876"}  # "1" + FINESS
MHD = "https://profiles.ihe.net/ITI/MHD"


@pytest.fixture(scope="module")
def importer(as_user) -> httpx.Client:
    """Who posts the reports: the lab's biologist. (The demo machine clients of deploy/idp are
    not granted system/DocumentReference.write, so their tokens cannot post one yet.)"""
    return as_user("bio.durand")


def fresh_ins(rng: random.Random) -> str:
    """A test NIR with the examples' traits: a woman born in March 1979."""
    nir = f"27903{rng.randint(1, 95):02d}{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
    return nir + f"{nir_key(nir):02d}"


def patient_for(api: httpx.Client, ins: str) -> str:
    """The examples' patient (PAT-TROIS Dominique Marie-Louise) with this INS; 'Patient/id'."""
    response = api.post("Patient", json={
        "resourceType": "Patient",
        "identifier": [{"system": INS_NIR_TEST, "value": ins}],
        "name": [{"use": "official", "family": "PAT-TROIS", "given": ["DOMINIQUE", "MARIE-LOUISE"]}],
        "gender": "female", "birthDate": "1979-03-28",
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                       "valueAddress": {"district": "Paris"}}],
    })
    assert response.status_code == 201, response.text
    return f"Patient/{response.json()['id']}"


def example(name: str, ins: str) -> bytes:
    return EXAMPLES[name].read_bytes().replace(EXAMPLE_INS, ins.encode())


def document_reference(patient: str, document: bytes, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": patient},
            "content": [{"attachment": {"contentType": "text/xml",
                                        "data": base64.b64encode(document).decode("ascii")}}],
            **extra}


@pytest.fixture
def patient(importer: httpx.Client, rng: random.Random) -> tuple[str, str]:
    """('Patient/id', INS) of a patient of the lab's own."""
    ins = fresh_ins(rng)
    return patient_for(importer, ins), ins


def results_of(api: httpx.Client, patient: str, **params: Any) -> list[dict[str, Any]]:
    found = search(api, "Observation", patient=patient, _count=200, **params)
    return [e["resource"] for e in found.get("entry", [])]


def one(api: httpx.Client, patient: str, code: str) -> dict[str, Any]:
    [found] = results_of(api, patient, code=code)
    return found


# The ANS examples, each posted alone

@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_ans_example_becomes_the_patients_results(importer, patient, name: str) -> None:
    reference, ins = patient
    document = example(name, ins)
    posted = importer.post("DocumentReference", json=document_reference(reference, document))
    assert posted.status_code == 201, posted.text
    stored = posted.json()
    read = read_cr_bio(document, check=False)

    # The original is kept, and what the sender left out is taken from the document.
    attachment = stored["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]) == document and attachment["size"] == len(document)
    assert stored["masterIdentifier"] == {"system": "urn:ietf:rfc:3986",
                                          "value": f"urn:oid:{read.document_id.root}"}
    assert stored["type"]["coding"][0]["code"] == "11502-2"
    assert stored["date"] == read.effective_time.isoformat()
    assert stored["author"][0]["display"] == "Laboratoire des charmes"
    assert stored["context"]["period"]["start"] <= stored["context"]["period"]["end"]
    assert "securityLabel" not in stored
    assert IMPORTED in stored["meta"]["tag"]

    results = results_of(importer, reference, **{"derived-from": f"DocumentReference/{stored['id']}"})
    batteries = {(r.chapter, r.isolate, r.battery) for r in read.results if r.battery}
    assert len(results) == len(read.results) + len(batteries)
    for result in results:
        assert validate(result) == [], result
        assert result["subject"]["reference"] == reference
        assert result["performer"][0]["identifier"] == LAB
        assert IMPORTED in result["meta"]["tag"]
        assert result["category"][0]["coding"][0]["code"] == "laboratory"
    for result in read.results:  # every LOINC-coded result is found by its code, for trends
        if result.loinc:
            assert results_of(importer, reference, code=f"{LOINC}|{result.loinc}")


def test_tsh_values_units_ranges_dates_and_lab(importer, patient) -> None:
    reference, ins = patient
    posted = importer.post("DocumentReference", json=document_reference(reference, example("TSH_1", ins)))
    assert posted.status_code == 201, posted.text

    tsh = one(importer, reference, f"{LOINC}|3016-3")
    assert tsh["status"] == "final"
    assert tsh["code"]["text"] == "Thyréostimuline (TSH)"
    assert tsh["valueQuantity"] == {"value": 1.95, "unit": "m[IU]/L", "system": UCUM, "code": "m[IU]/L"}
    assert tsh["referenceRange"][0]["low"]["value"] == 0.27
    assert tsh["referenceRange"][0]["high"] == {"value": 4.2, "unit": "m[IU]/L", "system": UCUM, "code": "m[IU]/L"}
    assert tsh["interpretation"][0]["coding"][0]["code"] == "N"
    assert tsh["effectiveDateTime"] == "2014-04-02T14:55:21+02:00"
    assert tsh["issued"] == "2021-01-04T16:05:27+01:00"  # validated by the biologist
    assert tsh["performer"][0] == {"type": "Organization", "identifier": LAB, "display": "Laboratoire des charmes"}
    assert tsh["derivedFrom"] == [{"reference": f"DocumentReference/{posted.json()['id']}"}]
    ft4 = one(importer, reference, f"{LOINC}|3024-7")
    assert ft4["valueQuantity"]["value"] == 7.67 and ft4["interpretation"][0]["coding"][0]["code"] == "L"
    # A trend over time: the patient's TSH results by date.
    dated = search(importer, "Observation", patient=reference, code=f"{LOINC}|3016-3", date="2014-04-02")
    assert dated["total"] == 1


def test_a_local_code_keeps_its_code_system_and_an_interval_its_comparator(importer, patient) -> None:
    reference, ins = patient
    document = example("CRP_non_LOINC", ins)
    posted = importer.post("DocumentReference", json=document_reference(reference, document))
    assert posted.status_code == 201, posted.text
    crp = one(importer, reference, "urn:oid:1.2.250.1.2.3.4|1234")
    assert crp["code"]["text"] == "CRP"
    assert crp["valueQuantity"] == {"value": 1.0, "comparator": "<=", "unit": "mg/L", "system": UCUM,
                                    "code": "mg/L"}
    assert crp["referenceRange"] == [{"high": {"value": 5.0, "unit": "mg/L", "system": UCUM, "code": "mg/L"}}]
    assert not results_of(importer, reference, code=f"{LOINC}|1988-5")  # no LOINC was invented


def test_microbiology_batteries_isolates_and_antibiograms(importer, patient) -> None:
    reference, ins = patient
    document = example("Microbiologie_V2", ins)
    posted = importer.post("DocumentReference", json=document_reference(reference, document))
    assert posted.status_code == 201, posted.text
    colour = one(importer, reference, f"{LOINC}|5778-6")
    assert colour["valueCodeableConcept"] == {"text": "paille"}
    aspect = one(importer, reference, f"{LOINC}|5767-9")
    macroscopy = one(importer, reference, "urn:oid:2.16.840.1.113883.5.84|4")
    assert macroscopy["hasMember"] == [{"reference": f"Observation/{colour['id']}"},
                                       {"reference": f"Observation/{aspect['id']}"}]
    assert "valueQuantity" not in macroscopy

    antibiograms = results_of(importer, reference, code=f"{LOINC}|18769-0")
    organisms = {a["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]: a for a in antibiograms}
    assert set(organisms) == {"112283007", "58800005"}  # E. coli, Streptococcus
    coli = {m["reference"].split("/")[1] for m in organisms["112283007"]["hasMember"]}
    amoxicillin = [r for r in results_of(importer, reference, code=f"{LOINC}|20-8") if r["id"] in coli]
    assert amoxicillin[0]["valueQuantity"] == {"value": 0.512, "comparator": ">=", "unit": "ug/mL",
                                               "system": UCUM, "code": "ug/mL"}
    assert amoxicillin[0]["interpretation"][0]["coding"][0]["code"] == "R"
    assert amoxicillin[0]["extension"][0]["valueCodeableConcept"]["text"] == "Escherichia coli"
    counts = results_of(importer, reference, code=f"{LOINC}|51480-2")
    assert sorted(c["valueQuantity"]["value"] for c in counts) == [120000, 200000]


# Inside an MHD Provide Document Bundle

def mhd_bundle(rng: random.Random, patient: str, document: bytes) -> dict[str, Any]:
    """An MHD Provide Document Bundle: a SubmissionSet List and the DocumentReference."""
    doc_url, set_url = f"urn:uuid:{uuid_from(rng)}", f"urn:uuid:{uuid_from(rng)}"
    submission = {
        "resourceType": "List", "status": "current", "mode": "working",
        "meta": {"profile": [f"{MHD}/StructureDefinition/IHE.MHD.Minimal.SubmissionSet"]},
        "identifier": [{"use": "usual", "system": "urn:ietf:rfc:3986",
                        "value": f"urn:oid:1.2.250.1.999.{uuid_from(rng).int % 10**9}"}],
        "code": {"coding": [{"system": f"{MHD}/CodeSystem/MHDlistTypes", "code": "submissionset"}]},
        "subject": {"reference": patient}, "date": "2021-04-01T17:15:00+01:00",
        "entry": [{"item": {"reference": doc_url}}],
    }
    return {"resourceType": "Bundle", "type": "transaction",
            "meta": {"profile": [f"{MHD}/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"]},
            "entry": [
                {"fullUrl": set_url, "resource": submission, "request": {"method": "POST", "url": "List"}},
                {"fullUrl": doc_url, "resource": document_reference(patient, document),
                 "request": {"method": "POST", "url": "DocumentReference"}}]}


def test_an_mhd_provide_document_bundle_is_imported_in_one_transaction(importer, patient, rng) -> None:
    reference, ins = patient
    response = importer.post("", json=mhd_bundle(rng, reference, example("TSH_1", ins)))
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    document_id = locations[1].split("/")[1]
    stored_list = importer.get("/".join(locations[0].split("/")[:2])).json()
    assert stored_list["entry"][0]["item"]["reference"] == f"DocumentReference/{document_id}"
    tsh = one(importer, reference, f"{LOINC}|3016-3")
    assert tsh["derivedFrom"] == [{"reference": f"DocumentReference/{document_id}"}]


# What is refused, with nothing stored

def nothing_stored(api: httpx.Client, patient: str) -> bool:
    return (search(api, "Observation", patient=patient)["total"] == 0
            and search(api, "DocumentReference", patient=patient)["total"] == 0)


XXE = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>')


@pytest.mark.parametrize("document", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "external-entity"])
def test_entity_tricks_are_refused_unread(importer, patient, document: bytes) -> None:
    reference, _ = patient
    refused = importer.post("DocumentReference", json=document_reference(reference, document))
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == {DATA}
    assert "DOCTYPE" in diagnostics(refused) and "root:" not in refused.text
    assert nothing_stored(importer, reference)


def test_what_is_not_a_cr_bio_is_refused(importer, patient) -> None:
    reference, ins = patient
    other_cda = example("TSH_1", ins).replace(b'root="1.2.250.1.213.1.1.1.55"', b'root="1.2.250.1.213.1.1.1.5"')
    for document, reason in ((other_cda, "not a CR-BIO"), (b"%PDF-1.7 not xml", "not well-formed XML"),
                             (example("TSH_1", ins)[:5000], "not well-formed XML")):
        refused = importer.post("DocumentReference", json=document_reference(reference, document))
        assert refused.status_code == 422, refused.text
        assert expressions(refused) == {DATA} and reason in diagnostics(refused)
    not_base64 = document_reference(reference, b"")
    not_base64["content"][0]["attachment"]["data"] = "@@@@"
    assert importer.post("DocumentReference", json=not_base64).status_code in (400, 422)
    assert nothing_stored(importer, reference)


def test_a_document_about_another_ins_is_refused(importer, patient, rng) -> None:
    reference, ins = patient
    other = fresh_ins(rng)
    refused = importer.post("DocumentReference", json=document_reference(reference, example("TSH_1", other)))
    assert refused.status_code == 422, refused.text
    assert expressions(refused) == {"DocumentReference.subject"} and other in diagnostics(refused)
    assert nothing_stored(importer, reference)


def test_metadata_that_contradicts_the_document_is_refused(importer, patient) -> None:
    reference, ins = patient
    document = example("TSH_1", ins)
    wrong_id = document_reference(reference, document, masterIdentifier={
        "system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4"})
    refused = importer.post("DocumentReference", json=wrong_id)
    assert refused.status_code == 422 and expressions(refused) == {"DocumentReference.masterIdentifier"}
    wrong_hash = document_reference(reference, document)
    wrong_hash["content"][0]["attachment"]["hash"] = base64.b64encode(b"\0" * 20).decode()
    refused = importer.post("DocumentReference", json=wrong_hash)
    assert refused.status_code == 422 and expressions(refused) == {f"{DATA.removesuffix('.data')}.hash"}
    no_subject = document_reference(reference, document)
    del no_subject["subject"]
    refused = importer.post("DocumentReference", json=no_subject)
    assert refused.status_code == 422 and expressions(refused) == {"DocumentReference.subject"}
    assert nothing_stored(importer, reference)


def test_an_oversized_document_is_refused_before_decoding() -> None:
    data = "A" * (4 * (MAX_BYTES // 3 + 2))
    with pytest.raises(FhirError) as refused:
        document_of({"content": [{"attachment": {"contentType": "text/xml", "data": data}}]})
    assert isinstance(refused.value, TooLarge) and refused.value.issues[0].expression == DATA


def test_other_documents_are_stored_as_sent_and_never_imported(importer, patient) -> None:
    reference, _ = patient
    linked = {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": reference},
              "meta": {"tag": [IMPORTED]},  # only bilan says what it imported
              "content": [{"attachment": {"contentType": "application/pdf",
                                          "data": base64.b64encode(b"%PDF").decode()}}]}
    stored = importer.post("DocumentReference", json=linked)
    assert stored.status_code == 201, stored.text
    assert "tag" not in stored.json()["meta"] and "masterIdentifier" not in stored.json()
    assert search(importer, "Observation", patient=reference)["total"] == 0


# Sent twice, or replaced

def test_the_same_document_is_imported_once(importer, patient, rng) -> None:
    reference, ins = patient
    document = example("TSH_1", ins)
    first = importer.post("DocumentReference", json=document_reference(reference, document))
    assert first.status_code == 201, first.text
    count = search(importer, "Observation", patient=reference)["total"]

    again = importer.post("DocumentReference", json=document_reference(reference, document))
    assert again.status_code == 409, again.text
    assert f"DocumentReference/{first.json()['id']}" in diagnostics(again)
    identifier = first.json()["masterIdentifier"]
    criteria = f"identifier={identifier['system']}|{identifier['value']}&patient={reference}"
    replayed = importer.post("DocumentReference", json=document_reference(reference, document),
                             headers={"If-None-Exist": criteria})
    assert replayed.status_code == 200 and replayed.json()["id"] == first.json()["id"]
    in_bundle = importer.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": document_reference(reference, document),
        "request": {"method": "POST", "url": "DocumentReference"}}]})
    assert in_bundle.status_code == 409
    resent = mhd_bundle(rng, reference, document)  # the sender's software sends it again, conditionally
    resent["entry"][1]["request"]["ifNoneExist"] = criteria
    conditional = importer.post("", json=resent)
    assert conditional.status_code == 200, conditional.text
    location = conditional.json()["entry"][1]["response"]["location"]
    assert location.startswith(f"DocumentReference/{first.json()['id']}/")
    assert search(importer, "Observation", patient=reference)["total"] == count
    assert search(importer, "DocumentReference", patient=reference)["total"] == 1


def test_a_replacing_version_withdraws_the_results_it_replaces(importer, patient) -> None:
    reference, ins = patient
    first = example("TSH_1", ins)
    second = (first.replace(b'1.2.250.1.213.1.1.1.55.2024.9.1"', b'1.2.250.1.213.1.1.1.55.2024.9.2"')
              .replace(b'<versionNumber value="1"/>', b'<versionNumber value="2"/>')
              .replace(b'value="1.950"', b'value="2.150"')
              .replace(b"<componentOf>", b'<relatedDocument typeCode="RPLC"><parentDocument>'
                       b'<id root="1.2.250.1.213.1.1.1.55.2024.9.1"/></parentDocument></relatedDocument>'
                       b"<componentOf>", 1))
    assert read_cr_bio(second, check=False).replaces is not None
    old = importer.post("DocumentReference", json=document_reference(reference, first)).json()
    new = importer.post("DocumentReference", json=document_reference(reference, second))
    assert new.status_code == 201, new.text
    assert new.json()["relatesTo"] == [{"code": "replaces",
                                        "target": {"reference": f"DocumentReference/{old['id']}"}}]
    assert importer.get(f"DocumentReference/{old['id']}").json()["status"] == "superseded"
    current = results_of(importer, reference, code=f"{LOINC}|3016-3", status="final")
    assert [r["valueQuantity"]["value"] for r in current] == [2.15]
    withdrawn = results_of(importer, reference, code=f"{LOINC}|3016-3", status="entered-in-error")
    assert [r["valueQuantity"]["value"] for r in withdrawn] == [1.95]


# The mapping, on documents the ANS examples do not cover

def test_a_unit_bilan_does_not_read_as_ucum_is_kept_as_text(importer, patient) -> None:
    reference, ins = patient
    document = example("TSH_1", ins).replace(b'unit="m[IU]/L"', b'unit="mUI/L"')
    assert importer.post("DocumentReference", json=document_reference(reference, document)).status_code == 201
    tsh = one(importer, reference, f"{LOINC}|3016-3")
    assert tsh["valueQuantity"] == {"value": 1.95, "unit": "mUI/L"}
    assert tsh["referenceRange"][0]["high"] == {"value": 4.2, "unit": "mUI/L"}


def test_an_aborted_result_is_cancelled_with_its_reason_and_a_battery_lists_its_members() -> None:
    source = report()
    aborted = Chapter("18729-4", "Urines", (Result("5803-2", "pH urinaire", None, status="aborted"),),
                      specimens=source.chapters[1].specimens)
    source = dataclasses.replace(source, chapters=(*source.chapters, aborted))
    read = read_cr_bio(cda_document(source), check=False)
    made = dict(observations(read, "Patient/p", "DocumentReference/d"))
    [ph] = [o for o in made.values() if o["code"]["coding"][0]["code"] == "5803-2"]
    assert ph["status"] == "cancelled" and ph["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    batteries = [o for o in made.values() if "hasMember" in o]
    assert [b["code"]["coding"][0]["code"] for b in batteries] == ["58410-2"]
    for battery in batteries:
        members = [made[m["reference"].removeprefix("Observation/")] for m in battery["hasMember"]]
        assert members and all(m["derivedFrom"] == battery["derivedFrom"] for m in members)
    assert all(validate(dict(o, id=i)) == [] for i, o in made.items())


def test_a_report_without_structured_results_is_kept_with_none(importer, patient) -> None:
    reference, ins = patient
    document = example("TSH_1", ins).replace(b'root="1.3.6.1.4.1.19376.1.3.1.6"', b'root="1.2.3.4.5"')
    assert read_cr_bio(document, check=False).results == ()
    posted = importer.post("DocumentReference", json=document_reference(reference, document))
    assert posted.status_code == 201, posted.text
    assert search(importer, "Observation", patient=reference)["total"] == 0


# Every result of each ANS example, exactly as the document gives it

CDA = {"h": "urn:hl7-org:v3"}
SYSTEMS = {"2.16.840.1.113883.6.1": LOINC, "2.16.840.1.113883.6.96": "http://snomed.info/sct"}
RESULT = ("//h:structuredBody/h:component/h:section[h:templateId/@root='1.3.6.1.4.1.19376.1.3.3.2.1']"
          "//h:observation[h:templateId/@root='1.3.6.1.4.1.19376.1.3.1.6']"
          "[not(parent::h:entryRelationship[@typeCode='REFR'])]")


def exact(api: httpx.Client, patient: str, document: str) -> list[dict[str, Any]]:
    """The Observations derived from a document, their decimals as the JSON writes them."""
    response = api.get("Observation", params={"patient": patient, "derived-from": document, "_count": 500})
    assert response.status_code == 200, response.text
    return [e["resource"] for e in json.loads(response.text, parse_float=Decimal).get("entry", [])]


def fhir_time(value: str | None) -> str | None:
    """A CDA TS as FHIR writes it: to the day as a date, else to the second with its offset."""
    if value is None:
        return None
    digits, offset = re.fullmatch(r"(\d+)([+-]\d{4})?", value).groups()
    if len(digits) <= 8:
        return "-".join(part for part in (digits[:4], digits[4:6], digits[6:8]) if part)
    d = digits.ljust(14, "0")
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}{offset[:3]}:{offset[3:]}"


def from_xml(document: bytes) -> Counter[tuple[Any, ...]]:
    """Each result as read here with XPath alone: code, label, value, range, interpretation,
    time and status, every number as the digits the lab wrote."""
    root = etree.fromstring(document)

    def one(element: etree._Element, path: str) -> Any:
        found = element.xpath(path, namespaces=CDA)
        return found[0] if found else None

    def printed(element: etree._Element | None) -> str | None:
        if element is None:
            return None
        reference = one(element, "h:originalText/h:reference/@value")
        if reference:
            return " ".join(root.xpath("string(//*[@ID=$id])", id=reference[1:]).split())
        return " ".join(element.findtext("h:originalText", "", CDA).split()) or element.get("displayName")

    rows = []
    for observation in root.xpath(RESULT, namespaces=CDA):
        code = one(observation, "h:code")
        coded = code if code.get("code") else one(code, "h:translation[@code]")
        value = one(observation, "h:value")
        kind = value.get("{http://www.w3.org/2001/XMLSchema-instance}type") if value is not None else None
        if kind == "PQ":
            shown: tuple[Any, ...] = ("=", value.get("value"), value.get("unit"))
        elif kind == "IVL_PQ":
            bound = one(value, "h:low") if one(value, "h:low") is not None else one(value, "h:high")
            strict = bound.get("inclusive") == "false"
            sign = (">" if strict else ">=") if bound.tag.endswith("low") else ("<" if strict else "<=")
            shown = (sign, bound.get("value"), bound.get("unit"))
        elif kind == "CD":
            shown = ("coded", value.get("code"), printed(value))
        else:
            shown = ("text", " ".join("".join(value.itertext()).split()) if value is not None else None)
        ranged = one(observation, "h:referenceRange/h:observationRange/h:value")
        low, high = (one(ranged, f"h:{b}") if ranged is not None else None for b in ("low", "high"))
        rows.append((
            (SYSTEMS.get(coded.get("codeSystem"), f"urn:oid:{coded.get('codeSystem')}"), coded.get("code")),
            printed(code) or coded.get("displayName"), shown,
            low.get("value") if low is not None else None, high.get("value") if high is not None else None,
            next((b.get("unit") for b in (low, high) if b is not None), None),
            one(observation, "h:interpretationCode/@code"), fhir_time(one(observation, "h:effectiveTime/@value")),
            {"completed": "final", "aborted": "cancelled"}[one(observation, "h:statusCode/@code")]))
    return Counter(rows)


def from_fhir(observations: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    rows = []
    for obs in observations:
        if "hasMember" in obs:
            continue
        coding = obs["code"]["coding"][0]
        if "valueQuantity" in obs:
            q = obs["valueQuantity"]
            shown: tuple[Any, ...] = (q.get("comparator", "="), str(q["value"]), q.get("unit"))
        elif "valueCodeableConcept" in obs:
            concept = obs["valueCodeableConcept"]
            shown = ("coded", (concept.get("coding") or [{}])[0].get("code"), concept.get("text"))
        else:
            shown = ("text", obs.get("valueString"))
        ranges = (obs.get("referenceRange") or [{}])[0]
        low, high = ranges.get("low"), ranges.get("high")
        rows.append((
            (coding["system"], coding["code"]), obs["code"].get("text"), shown,
            str(low["value"]) if low else None, str(high["value"]) if high else None,
            (low or high or {}).get("unit"),
            obs["interpretation"][0]["coding"][0]["code"] if "interpretation" in obs else None,
            obs.get("effectiveDateTime"), obs["status"]))
    return Counter(rows)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_ans_examples_results_land_exactly(importer, patient, name: str) -> None:
    reference, ins = patient
    document = example(name, ins)
    posted = importer.post("DocumentReference", json=document_reference(reference, document))
    assert posted.status_code == 201, posted.text
    observations = exact(importer, reference, f"DocumentReference/{posted.json()['id']}")

    expected = from_xml(document)
    assert from_fhir(observations) == expected and sum(expected.values()) > 0
    root = etree.fromstring(document)
    batteries = Counter(battery for result in root.xpath(RESULT, namespaces=CDA)
                        for battery in result.xpath("ancestor::h:organizer[@classCode='BATTERY'][1]",
                                                    namespaces=CDA))
    assert sorted(len(o["hasMember"]) for o in observations if "hasMember" in o) == sorted(batteries.values())


def test_the_tsh_keeps_its_digits_in_json_and_xml(importer, patient) -> None:
    reference, ins = patient
    posted = importer.post("DocumentReference", json=document_reference(reference, example("TSH_1", ins)))
    assert posted.status_code == 201, posted.text
    found = importer.get("Observation", params={"patient": reference, "code": f"{LOINC}|3016-3"})
    assert '"value":1.950' in found.text and '"value":0.270' in found.text and '"value":4.200' in found.text
    as_xml = importer.get("Observation", params={"patient": reference, "code": f"{LOINC}|3016-3", "_format": "xml"})
    assert as_xml.status_code == 200 and '<value value="1.950"/>' in as_xml.text


# Point-of-care tests, auto-présentable and level-1 reports

def test_a_trod_report_feeds_the_history(importer, patient) -> None:
    reference, ins = patient
    posted = importer.post("DocumentReference", json=document_reference(reference, trod_report(ins=ins)))
    assert posted.status_code == 201, posted.text
    stored = posted.json()
    assert stored["type"]["coding"][0] == {"system": LOINC, "code": "96173-0",
                                           "display": "Test rapide d'orientation diagnostique"}
    assert stored["author"][0]["display"] == "Pharmacie du Marché"
    observations = exact(importer, reference, f"DocumentReference/{stored['id']}")
    assert from_fhir(observations) == from_xml(trod_report(ins=ins)) and len(observations) == 3
    for observation in observations:
        assert validate(observation) == []

    glucose = one(importer, reference, f"{LOINC}|41653-7")  # found by its code, as any result
    assert glucose["interpretation"] == [{"coding": [{"system": "http://snomed.info/sct", "code": "80394007",
                                                      "display": "hyperglycémie"}], "text": "hyperglycémie"}]
    assert glucose["effectiveDateTime"] == "2025-03-10T09:30:00+01:00"
    flu = one(importer, reference, f"{LOINC}|80382-5")
    assert flu["effectiveDateTime"] == "2025-03-10"  # the day the pharmacy gave, not a midnight
    assert flu["valueCodeableConcept"]["coding"] == [{"system": "http://snomed.info/sct", "code": "10828004",
                                                      "display": "positif"}]
    on_the_day = search(importer, "Observation", patient=reference, date="2025-03-10")
    assert on_the_day["total"] == 3
    last = importer.get("Observation/$lastn", params={"patient": reference, "category": "laboratory"})
    assert last.status_code == 200, last.text
    assert {e["resource"]["code"]["coding"][0]["code"] for e in last.json()["entry"]} == {
        "41653-7", "94558-4", "80382-5"}


def test_a_self_presenting_report_is_imported_from_the_cda_inside(importer, biologist, web_root,
                                                                  patient) -> None:
    reference, ins = patient
    wrapped = self_presenting(cda_document(report())).replace(EXAMPLE_INS, ins.encode())
    posted = importer.post("DocumentReference", json=document_reference(reference, wrapped))
    assert posted.status_code == 201, posted.text
    assert base64.b64decode(posted.json()["content"][0]["attachment"]["data"]) == wrapped  # kept as sent
    observations = exact(importer, reference, f"DocumentReference/{posted.json()['id']}")
    assert from_fhir(observations) == from_xml(cda_document(report()))
    haemoglobin = one(importer, reference, f"{LOINC}|718-7")
    assert haemoglobin["valueQuantity"]["value"] == 13.2
    shown = biologist.get(f"{web_root}/documents/{posted.json()['id']}")  # through the ANS stylesheet
    assert shown.status_code == 200 and "Hémoglobine" in shown.text and "Numération formule sanguine" in shown.text


def test_a_level_one_report_is_kept_with_its_pdf_and_no_result(importer, biologist, web_root, patient) -> None:
    reference, ins = patient
    document = level_one(cda_document(report()), one_page_pdf()).replace(EXAMPLE_INS, ins.encode())
    posted = importer.post("DocumentReference", json=document_reference(reference, document))
    assert posted.status_code == 201, posted.text
    stored = posted.json()
    cda, pdf = stored["content"]
    assert base64.b64decode(cda["attachment"]["data"]) == document
    assert pdf["attachment"]["contentType"] == "application/pdf"
    assert base64.b64decode(pdf["attachment"]["data"]) == one_page_pdf()
    assert stored["type"]["coding"][0]["code"] == "11502-2" and IMPORTED in stored["meta"]["tag"]
    assert search(importer, "Observation", patient=reference)["total"] == 0

    shown = biologist.get(f"{web_root}/documents/{stored['id']}/compte-rendu.pdf")  # as documents are listed
    assert shown.status_code == 200 and shown.content == one_page_pdf()
    assert shown.headers["content-type"] == "application/pdf"
    again = importer.put(f"DocumentReference/{stored['id']}", json=stored)  # the PDF is not added twice
    assert again.status_code == 200, again.text
    assert len(again.json()["content"]) == 2


def test_code_less_batteries_are_each_grouped() -> None:
    document = etree.fromstring(cda_document(report()))
    for code in document.xpath("//h:organizer[@classCode='BATTERY']/h:code", namespaces=CDA):
        code.getparent().remove(code)
    read = read_cr_bio(etree.tostring(document), check=False)
    made = dict(observations(read, "Patient/p", "DocumentReference/d"))
    [battery] = [o for o in made.values() if "hasMember" in o]
    assert battery["code"] == {"text": "Batterie d'examens sans code"}
    members = [made[m["reference"].removeprefix("Observation/")]["code"]["coding"][0]["code"]
               for m in battery["hasMember"]]
    assert members == ["718-7", "6690-2", "777-3"]
    assert all(validate(dict(o, id=i)) == [] for i, o in made.items())
