"""The order's documents follow its exams (issue 13): tubes, labels and the reception sheet are
those of the exams in effect once an adaptation is (agreed, or made at once), the desk is told
to print the labels again; an exam for the partner lab gets its tube, its label and a transfer
slip; the report names the partner lab and stays partial until its result comes in."""

import html
import re
from typing import Any

import httpx
import pypdfium2
import zxingcpp
from lxml import etree

from bilan.demo.load import PARTNER_FINESS
from bilan.demo.prescriptions import EXAMS
from bilan.prescription.messaging import KINDS_SYSTEM
from bilan.prescription.order import FORWARDED_TO
from bilan.results.document import conformance
from tests.helpers import search
from tests.orders import adapt, adaptations, addressed, answer_of, imported, imported_for, prescribed
from tests.people import DUPONT
from tests.results import UCUM, binary, decide, documents, issue, pdf_text, posted, report_files, report_of, result

NFS, GLUCOSE, IONO = EXAMS[0], EXAMS[1], EXAMS[8]
IGA = ("2458-8", "Immunoglobulines A")  # not in the catalogue: sent to the partner lab
PARTNER = "Laboratoire de biologie spécialisée Lyon Gerland"
REPRINT = "Étiquettes à réimprimer"
V3 = {"h": "urn:hl7-org:v3"}


def test_the_labels_and_the_sheet_follow_the_adaptations_the_prescriber_agrees_to(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[NFS, IONO])
    task_id = imported(fhir, desk, web_root, spec)
    order = f"{web_root}/reception/prescriptions/{task_id}"
    first = _labels(desk, order)
    assert {_exams(lines) for lines in first.values()} == {"Ionogramme sanguin",
                                                           "Numération formule sanguine (hémogramme)"}
    serum = next(b for b, lines in first.items() if _exams(lines) == "Ionogramme sanguin")

    # Ionogramme -> acide urique, + créatinine (same serum tube), + microalbuminurie (a new tube).
    iono = prescribed(fhir, task_id, IONO[0])
    adapt(biologist, web_root, task_id, change="replace", original=f"ServiceRequest/{iono['id']}",
          code="URIC", reason="clinical-context", note="Goutte ?")
    adapt(biologist, web_root, task_id, change="add", code="FREN", reason="protocol", note="")
    adapt(biologist, web_root, task_id, change="add", code="MALB", reason="protocol", note="Diabète.")
    # Waiting for the prescriber, nothing changes at the desk.
    assert REPRINT not in desk.get(order).text
    assert set(_labels(desk, order)) == set(first)

    [uric] = [r for r in adaptations(fhir, iono) if r.get("replaces")]
    added = {r["code"]["coding"][0]["code"]: r for r in _lab_requests(fhir, task_id) if r["id"] != uric["id"]}
    changes = [uric, added["45066-8"], added["9318-7"]]  # uric acid, creatinine, microalbuminuria
    for change in changes:
        _agree(fhir, task_id, change)
    assert all(answer_of(fhir.get(f"ServiceRequest/{c['id']}").json()) == "agreed" for c in changes)

    page = html.unescape(desk.get(order).text)
    assert REPRINT in page and f"{serum} — examens modifiés" in page and "nouveau tube" in page
    sheet = html.unescape(desk.get(f"{order}/fiche").text)
    assert "Ionogramme" not in sheet
    assert "Acide urique" in sheet and "Créatinine et DFG estimé" in sheet and "Microalbuminurie" in sheet

    labels = _labels(desk, order)
    assert "Ionogramme" not in " ".join(" ".join(lines) for lines in labels.values())
    assert set(first) < set(labels) and len(labels) == 3  # same tubes, and the urine container
    assert _exams(labels[serum]).startswith("Acide urique, Créatinine")
    [urine] = set(labels) - set(first)
    assert "Flacon stérile pour urines" in labels[urine][2] and _exams(labels[urine]).startswith("Microalbuminurie")
    # Printed: the desk is no longer told to print them again.
    assert REPRINT not in desk.get(order).text

    specimens = {s["accessionIdentifier"]["value"]: s for s in _specimens(lab_middleware, fhir, task_id)}
    assert {r["reference"] for r in specimens[serum]["request"]} == {
        f"ServiceRequest/{c['id']}" for c in changes[:2]}  # the ions gone, the uric acid and creatinine in
    assert specimens[serum]["meta"]["versionId"] != "1"


def test_a_tube_whose_exams_are_all_cancelled_at_once_is_no_longer_printed(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[NFS, GLUCOSE])
    task_id = imported(fhir, desk, web_root, spec)
    order = f"{web_root}/reception/prescriptions/{task_id}"
    first = _labels(desk, order)
    nfs = prescribed(fhir, task_id, NFS[0])
    edta = next(b for b, lines in first.items() if "Numération" in _exams(lines))

    adapt(biologist, web_root, task_id, change="cancel", original=f"ServiceRequest/{nfs['id']}",
          reason="redundant", note="NFS faite hier.", proceed="oui")  # urgent: in effect at once

    page = html.unescape(desk.get(order).text)
    assert REPRINT in page and f"{edta} — tube annulé" in page
    assert "Numération" not in html.unescape(desk.get(f"{order}/fiche").text)
    assert set(_labels(desk, order)) == set(first) - {edta}
    assert REPRINT not in desk.get(order).text
    cancelled = next(s for s in _specimens(lab_middleware, fhir, task_id)
                     if s["accessionIdentifier"]["value"] == edta)
    assert cancelled["status"] == "unavailable"  # never drawn: no physical specimen


def test_an_exam_for_the_partner_lab_has_its_tube_its_label_and_a_transfer_slip(
        fhir, lab_middleware, desk, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE, IGA])
    task_id = imported(fhir, desk, web_root, spec)
    order = f"{web_root}/reception/prescriptions/{task_id}"
    page = html.unescape(desk.get(order).text)
    assert "Bordereau de transmission" in page and PARTNER in page

    [sent] = [s for s in _specimens(lab_middleware, fhir, task_id) if s.get("extension")]
    partner = fhir.get(next(e["valueReference"]["reference"] for e in sent["extension"]
                            if e["url"] == FORWARDED_TO)).json()
    assert partner["identifier"][0]["value"] == f"1{PARTNER_FINESS}" and partner["name"] == PARTNER
    assert sent["container"][0]["type"]["text"] == "Tube sec avec gel (bouchon jaune)"  # IgA: serum
    barcode = sent["accessionIdentifier"]["value"]
    labels = _labels(desk, order)
    assert len(labels) == 2 and _exams(labels[barcode]) == "Immunoglobulines A"

    slip = desk.get(f"{order}/bordereau.pdf")
    assert slip.status_code == 200 and slip.headers["content-type"] == "application/pdf"
    text = " ".join(pdf_text(slip.content).split())
    for expected in ("Bordereau de transmission", "Laboratoire Bilan Paris Est", PARTNER, f"FINESS {PARTNER_FINESS}",
                     spec.patient.family.upper(), spec.patient.birth.strftime("%d/%m/%Y"), spec.requisition,
                     barcode.rsplit("-", 1)[0], "Immunoglobulines A (LOINC 2458-8)", "À jeun", "UN 3373"):
        assert expected in text, expected
    assert "Glycémie" not in text  # done here: not on the partner's slip
    assert _barcodes(slip.content) == [barcode]


def test_the_report_names_the_partner_lab_and_stays_partial_until_its_result_is_in(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE, IGA], patient=DUPONT)
    task_id = imported_for(fhir, desk, web_root, spec)
    glucose, iga = prescribed(fhir, task_id, GLUCOSE[0]), prescribed(fhir, task_id, IGA[0])
    decide(biologist, web_root, task_id, "biologique", [posted(lab_middleware, result(glucose, GLUCOSE[0], 5.1,
                                                                                       "mmol/L"))])
    assert issue(biologist, web_root, task_id).status_code == 200

    [first] = documents(fhir, task_id)
    assert first["docStatus"] == "preliminary" and report_of(fhir, task_id)["status"] == "partial"
    assert fhir.get(f"Task/{task_id}").json()["status"] != "completed"
    cda, pdf = report_files(fhir, first)
    assert conformance.problems(cda) == []
    pending = f"Immunoglobulines A : examen transmis au laboratoire partenaire {PARTNER} (FINESS {PARTNER_FINESS}), " \
              "résultat à suivre."
    assert pending in _narrative(cda) and pending in " ".join(pdf_text(pdf).split())

    # The partner's result, as the lab's middleware brings it in, validated by the biologist.
    partner = search(fhir, "Organization", identifier=f"urn:oid:1.2.250.1.71.4.2.2|1{PARTNER_FINESS}")
    answer = posted(lab_middleware, {**result(iga, IGA[0], 2.1, "g/L"), "code": {"coding": [
        {"system": "http://loinc.org", "code": IGA[0], "display": "IgA [Mass/volume] in Serum or Plasma"}],
        "text": IGA[1]}, "performer": [
        {"reference": f"Organization/{partner['entry'][0]['resource']['id']}"}], "referenceRange": [
        {"low": {"value": 0.7, "unit": "g/L", "system": UCUM, "code": "g/L"},
         "high": {"value": 4.0, "unit": "g/L", "system": UCUM, "code": "g/L"}}]})
    decide(biologist, web_root, task_id, "biologique", [answer])
    assert issue(biologist, web_root, task_id).status_code == 200

    second = documents(fhir, task_id)[-1]
    assert second["docStatus"] == "final" and report_of(fhir, task_id)["status"] == "final"
    assert fhir.get(f"Task/{task_id}").json()["status"] == "completed"
    cda = binary(fhir, second["content"][0]["attachment"])
    assert conformance.problems(cda) == []
    narrative = _narrative(cda)
    assert f"Immunoglobulines A : examen transmis au laboratoire partenaire {PARTNER}" in narrative
    assert "résultat à suivre" not in narrative and "2,1" in narrative


def _agree(fhir: httpx.Client, task_id: str, change: dict[str, Any]) -> None:
    """The prescriber's software agrees to one adaptation."""
    response = fhir.post("Communication", json={
        "resourceType": "Communication", "status": "completed",
        "category": [{"coding": [{"system": KINDS_SYSTEM, "code": "agreement"}]}],
        "partOf": [{"reference": f"Task/{task_id}"}], "about": [{"reference": f"ServiceRequest/{change['id']}"}],
        "payload": [{"contentString": "D'accord."}]})
    assert response.status_code == 201, response.text


def _lab_requests(fhir: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    """The lab's own requests (adaptations) on the order."""
    task = fhir.get(f"Task/{task_id}").json()
    based = ",".join(b["reference"] for b in task["basedOn"])
    return [e["resource"] for e in search(fhir, "ServiceRequest", **{"based-on": based}).get("entry", [])
            if e["resource"].get("intent") == "filler-order"]


def _specimens(lab_middleware: httpx.Client, fhir: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    task = fhir.get(f"Task/{task_id}").json()
    requests = [b["reference"] for b in task["basedOn"]] + [f"ServiceRequest/{r['id']}"
                                                              for r in _lab_requests(fhir, task_id)]
    return [e["resource"] for e in search(lab_middleware, "Specimen", request=",".join(requests))["entry"]]


def _labels(desk: httpx.Client, order: str) -> dict[str, list[str]]:
    """The labels PDF as printed now: each label's lines, by the barcode its Code 128 scans as."""
    pdf = desk.get(f"{order}/etiquettes.pdf")
    assert pdf.status_code == 200, pdf.text
    labels = {}
    for page in pypdfium2.PdfDocument(pdf.content):
        [scanned] = zxingcpp.read_barcodes(page.render(scale=10).to_pil().convert("L"))
        labels[scanned.text] = page.get_textpage().get_text_range().splitlines()
    return labels


def _exams(lines: list[str]) -> str:
    """A label's exams line, without the ellipsis a long one ends with."""
    return lines[-1].removesuffix("…")


def _barcodes(pdf: bytes) -> list[str]:
    found = []
    for page in pypdfium2.PdfDocument(pdf):
        found += [b.text for b in zxingcpp.read_barcodes(page.render(scale=6).to_pil().convert("L"))]
    return found


def _narrative(cda: bytes) -> str:
    """The CDA's human-readable text, spaces folded."""
    root = etree.fromstring(cda)
    return re.sub(r"\s+", " ", " ".join(root.xpath("//h:section/h:text//text()", namespaces=V3)))
