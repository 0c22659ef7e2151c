"""eP-BIO (BIO-EP-BIO 2022.01), the CDA form of a lab prescription: posted by a prescriber's
software it becomes exactly the order its FHIR twin becomes; refused as the FHIR form is, with
the document's element named; a stored prescription read back as one passes the ANS checks and
comes back as the same order."""

import base64
import copy
import random
from typing import Any

import httpx
from lxml import etree

from bilan.demo.prescriptions import NATIONAL_PRESCRIPTION, PrescriptionSpec, bundle
from bilan.fhir.terminology import ORGANIZATION_ID
from bilan.prescription.ep_bio_reading import transaction
from bilan.prescription.ep_bio_writing import Prescription, ep_bio_document
from bilan.prescription.exams import FLAG_OFF_NOMENCLATURE, loinc_codes, sample_nature
from bilan.results.document import conformance
from bilan.settings import Settings
from bilan.storage import worklist
from bilan.storage.database import create_engine
from tests.helpers import issues, number_from, post_bundle, run, search
from tests.orders import addressed, open_by_number
from tests.people import NGUYEN

SUBMIT = "ServiceRequest/$submit-ep-bio"
CDA = {"Content-Type": "application/hl7-cda+xml"}
V3 = {"h": "urn:hl7-org:v3"}
FLAGS = {"work_accident": False, "prevention": True, "not_reimbursable": False, "off_nomenclature": True}


def ep_bio_spec(rng: random.Random) -> PrescriptionSpec:
    """A prescription by Dr Lambert to the demo lab under a national number: an urgent exam, a
    sample nature asked for, the four flags given."""
    spec = addressed(rng, exams=rng.sample([("58410-2", "Numération formule sanguine"), ("2276-4", "Ferritine"),
                                            ("1988-5", "Protéine C réactive (CRP)"), ("3016-3", "TSH ultrasensible")], 3))
    spec.requisition = number_from(rng, "EPBIO")
    spec.requisition_system = NATIONAL_PRESCRIPTION
    spec.flags = dict(FLAGS)
    spec.urgent = {spec.exams[0][0]}
    spec.samples = {spec.exams[1][0]: ("SER", "Sérum")}
    spec.clinical_question = "Asthénie depuis 3 semaines ; recherche d'une carence martiale"
    return spec


def twin(spec: PrescriptionSpec, rng: random.Random) -> PrescriptionSpec:
    """The same prescription under another number."""
    other = copy.deepcopy(spec)
    other.requisition = number_from(rng, "EPBIO")
    return other


def ep_bio_of(spec: PrescriptionSpec) -> bytes:
    """The eP-BIO document a prescriber's software writes for the prescription."""
    resources = [e["resource"] for e in bundle(spec)["entry"]]

    def of(kind: str) -> list[dict[str, Any]]:
        return [r for r in resources if r["resourceType"] == kind]

    assert spec.lab is not None
    lab = {"resourceType": "Organization", "identifier": [{"system": ORGANIZATION_ID, "value": spec.lab[1]}],
           "name": "Laboratoire destinataire"}
    return ep_bio_document(Prescription(of("ServiceRequest"), of("Patient")[0], of("Practitioner")[0],
                                        of("PractitionerRole")[0], of("Organization")[0], lab, of("Observation")))


def submit(fhir: httpx.Client, document: bytes) -> httpx.Response:
    return fhir.post(SUBMIT, content=document, headers=CDA)


def requests_of(fhir: httpx.Client, number: str) -> list[dict[str, Any]]:
    found = search(fhir, "ServiceRequest", requisition=f"{NATIONAL_PRESCRIPTION}|{number}")
    return sorted((e["resource"] for e in found["entry"]), key=lambda r: loinc_codes(r)[0])


def task_of(fhir: httpx.Client, number: str) -> dict[str, Any]:
    found = search(fhir, "Task", requisition=f"{NATIONAL_PRESCRIPTION}|{number}")
    assert found["total"] == 1, found
    return found["entry"][0]["resource"]


def worklist_row(settings: Settings, task_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any] | None:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                return await worklist.by_task(conn, task_id)
        finally:
            await engine.dispose()
    row = run(read())
    assert row is not None
    return row


def order(fhir: httpx.Client, settings: Settings, number: str) -> dict[str, Any]:
    """What the lab gets of a prescription, without what differs between two prescriptions
    (ids, number, times of receipt): worklist row, Task, exams and their clinical context."""
    requests = requests_of(fhir, number)
    by_id = {f"ServiceRequest/{r['id']}": loinc_codes(r)[0] for r in requests}
    task = task_of(fhir, number)
    row = worklist_row(settings, task["id"])
    context = {}
    for request in requests:
        for info in request.get("supportingInfo", []):
            found = fhir.get(info["reference"]).json()
            context[found["code"]["coding"][0]["code"]] = _without(found, "id", "meta")

    def exam(request: dict[str, Any]) -> dict[str, Any]:
        kept = _without(request, "id", "meta", "supportingInfo")
        kept["requisition"] = request["requisition"]["system"]
        kept["tags"] = sorted(t["code"] for t in request.get("meta", {}).get("tag", []))
        kept["context"] = sorted(fhir.get(i["reference"]).json()["code"]["coding"][0]["code"]
                                 for i in request.get("supportingInfo", []))
        return kept

    def refs(value: Any) -> Any:  # the Task's references to exams, as their codes
        if isinstance(value, dict):
            return {k: by_id.get(v, v) if k == "reference" else refs(v) for k, v in value.items()}
        return [refs(v) for v in value] if isinstance(value, list) else value

    return {
        "worklist": _without(row, "id", "requisition_value", "task_id", "received_at"),
        "task": refs(_without(task, "id", "meta", "groupIdentifier", "authoredOn", "lastModified")),
        "exams": [exam(r) for r in requests],
        "context": context,
    }


def _without(found: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in found.items() if k not in keys}


# Intake

def test_an_ep_bio_prescription_and_its_fhir_twin_become_the_same_order(
        fhir: httpx.Client, settings: Settings, desk: httpx.Client, web_root: str, rng: random.Random) -> None:
    spec = ep_bio_spec(rng)
    document = ep_bio_of(spec)
    assert conformance.check(document, conformance.EP_BIO).conforms
    received = submit(fhir, document)
    assert received.status_code == 200, received.text
    assert received.json()["type"] == "transaction-response"
    fhir_twin = twin(spec, rng)
    assert post_bundle(fhir, bundle(fhir_twin)).status_code == 200

    from_cda, from_fhir = order(fhir, settings, spec.requisition), order(fhir, settings, fhir_twin.requisition)
    assert from_cda == from_fhir
    exams = {loinc_codes(r)[0]: r for r in requests_of(fhir, spec.requisition)}
    assert set(exams) == {code for code, _ in spec.exams}
    assert exams[spec.exams[0][0]]["priority"] == "urgent"
    assert sample_nature(exams[spec.exams[1][0]]) == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0487", "code": "SER", "display": "Sérum"}
    assert all({"url": FLAG_OFF_NOMENCLATURE, "valueBoolean": True} in r["extension"] for r in exams.values())
    assert {c["code"]["coding"][0]["code"] for c in from_cda["context"].values()} >= {"49541-6", "29463-7"}
    assert from_cda["worklist"]["exam_count"] == 3 and from_cda["worklist"]["urgent"]

    # The desk finds it by its national number, with its flags and the sample asked for.
    page = open_by_number(desk, web_root, spec.requisition)
    assert "Hors nomenclature" in page.text and "Prévention" in page.text
    assert "Sérum" in page.text and "demandé par le prescripteur" in page.text


def test_a_document_carried_by_a_document_reference_is_the_same(
        fhir: httpx.Client, settings: Settings, rng: random.Random) -> None:
    spec = ep_bio_spec(rng)
    reference = {"resourceType": "DocumentReference", "status": "current", "content": [{"attachment": {
        "contentType": "application/hl7-cda+xml", "data": base64.b64encode(ep_bio_of(spec)).decode()}}]}
    received = fhir.post(SUBMIT, json=reference)
    assert received.status_code == 200, received.text
    fhir_twin = twin(spec, rng)
    assert post_bundle(fhir, bundle(fhir_twin)).status_code == 200
    assert order(fhir, settings, spec.requisition) == order(fhir, settings, fhir_twin.requisition)


def test_a_sample_nature_must_name_a_contained_specimen(fhir: httpx.Client, rng: random.Random) -> None:
    spec = ep_bio_spec(rng)
    sent = bundle(spec)
    index = next(i for i, e in enumerate(sent["entry"]) if e["resource"].get("specimen"))
    sent["entry"][index]["resource"]["specimen"] = [{"reference": "#elsewhere"}]
    refused = post_bundle(fhir, sent)
    assert refused.status_code == 422, refused.text
    assert f"Bundle.entry[{index}].resource.specimen[0]" in {e for i in issues(refused) for e in i["expression"]}


def test_a_document_the_schematron_refuses_stores_nothing(fhir: httpx.Client, rng: random.Random) -> None:
    spec = ep_bio_spec(rng)
    tree = etree.fromstring(ep_bio_of(spec))
    act = tree.xpath("//h:observation[h:templateId/@root='1.2.250.1.213.1.1.3.27.2']", namespaces=V3)[0]
    off = act.xpath("h:entryRelationship[h:observation/h:templateId/@root='1.2.250.1.213.1.1.3.48.33']",
                    namespaces=V3)[0]
    act.remove(off)
    refused = submit(fhir, etree.tostring(tree))
    assert refused.status_code == 422, refused.text
    found = issues(refused)
    assert any("FR-Hors-nomenclature" in i["diagnostics"] and i["location"] == [
        "/ClinicalDocument/component/structuredBody/component[1]/section/entry[1]/observation"] for i in found), found
    assert search(fhir, "ServiceRequest", requisition=f"{NATIONAL_PRESCRIPTION}|{spec.requisition}")["total"] == 0
    assert search(fhir, "Task", requisition=f"{NATIONAL_PRESCRIPTION}|{spec.requisition}")["total"] == 0


def test_what_is_not_a_cda_is_refused_with_an_outcome(fhir: httpx.Client) -> None:
    broken = submit(fhir, b"<ClinicalDocument xmlns='urn:hl7-org:v3'><id>")
    assert broken.status_code == 400 and issues(broken)[0]["code"] == "structure"
    assert fhir.post(SUBMIT, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    empty = fhir.post(SUBMIT, json={"resourceType": "DocumentReference", "status": "current", "content": [
        {"attachment": {"contentType": "application/pdf", "data": "JVBERg=="}}]})
    assert empty.status_code == 400 and issues(empty)[0]["expression"] == ["DocumentReference.content"]


def test_intake_refuses_a_document_as_it_refuses_its_fhir_twin(fhir: httpx.Client, rng: random.Random) -> None:
    """A wrong INS key passes the schematrons but not intake: the same OperationOutcome, plus
    where in the document the patient is."""
    spec = ep_bio_spec(rng)
    spec.patient.ins = spec.patient.ins[:-2] + f"{(int(spec.patient.ins[-2:]) + 1) % 97:02d}"
    from_cda = submit(fhir, ep_bio_of(spec))
    fhir_twin = twin(spec, rng)
    from_fhir = post_bundle(fhir, bundle(fhir_twin))
    assert from_cda.status_code == from_fhir.status_code == 422
    located = issues(from_cda)
    assert [_without(i, "location") for i in located] == issues(from_fhir)
    ins = next(i for i in located if "Invalid INS" in i["diagnostics"])
    assert ins["expression"] == ["Bundle.entry[0].resource.identifier[0].value"]
    assert ins["location"] == ["/ClinicalDocument/recordTarget/patientRole"]


# Access

def test_only_a_prescriber_submits_and_only_in_his_own_name(
        fhir: httpx.Client, lab_middleware: httpx.Client, rng: random.Random) -> None:
    spec = ep_bio_spec(rng)
    by_lab = submit(lab_middleware, ep_bio_of(spec))
    assert by_lab.status_code == 403, by_lab.text
    other = ep_bio_spec(rng)
    other.prescriber = copy.deepcopy(NGUYEN)  # Dr Lambert's software sends Dr Nguyen's prescription
    forged = submit(fhir, ep_bio_of(other))
    assert forged.status_code == 403, forged.text
    assert all(i.get("location", [""])[0].startswith("/ClinicalDocument/") for i in issues(forged)), forged.text
    for number in (spec.requisition, other.requisition):
        assert search(fhir, "ServiceRequest", requisition=f"{NATIONAL_PRESCRIPTION}|{number}")["total"] == 0


# Export

def test_a_stored_prescription_reads_back_as_a_conformant_document_of_the_same_order(
        fhir: httpx.Client, as_user: Any, lab_middleware: httpx.Client, settings: Settings,
        rng: random.Random) -> None:
    spec = ep_bio_spec(rng)
    assert post_bundle(fhir, bundle(spec)).status_code == 200
    stored = order(fhir, settings, spec.requisition)
    first = requests_of(fhir, spec.requisition)[0]
    # Only who may read the whole prescription (patient included) gets its document.
    assert lab_middleware.get(f"ServiceRequest/{first['id']}/$ep-bio").status_code == 403
    assert as_user("dr.nguyen").get(f"ServiceRequest/{first['id']}/$ep-bio").status_code in (403, 404)
    for reader in (fhir, as_user("bio.durand")):
        exported = reader.get(f"ServiceRequest/{first['id']}/$ep-bio")
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("application/hl7-cda+xml")
        found = conformance.check(exported.content, conformance.EP_BIO)
        assert (found.errors, found.warnings) == ((), ())

    # Read back, it is the same prescription: sent again, it is recognised as the one stored.
    read = transaction(exported.content)
    again = [e["resource"] for e in read.bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    sent = [e["resource"] for e in bundle(spec)["entry"] if e["resource"]["resourceType"] == "ServiceRequest"]
    assert sorted(_exam_facts(r) for r in again) == sorted(_exam_facts(r) for r in sent)
    replayed = submit(fhir, exported.content)
    assert replayed.status_code == 200, replayed.text
    assert {e["response"]["status"] for e in replayed.json()["entry"]} == {"200 OK"}
    assert order(fhir, settings, spec.requisition) == stored


def test_a_prescription_without_national_number_has_no_ep_bio_form(fhir: httpx.Client, rng: random.Random) -> None:
    spec = addressed(rng)
    assert post_bundle(fhir, bundle(spec)).status_code == 200
    found = search(fhir, "ServiceRequest", requisition=f"{spec.requisition_system}|{spec.requisition}")
    refused = fhir.get(f"ServiceRequest/{found['entry'][0]['resource']['id']}/$ep-bio")
    assert refused.status_code == 422 and issues(refused)[0]["expression"] == ["ServiceRequest.requisition"]


def _exam_facts(request: dict[str, Any]) -> tuple[Any, ...]:
    return (loinc_codes(request)[0], request["priority"], request["requisition"]["system"],
            request["requisition"]["value"], str(sample_nature(request)),
            tuple(sorted((e["url"], e["valueBoolean"]) for e in request.get("extension", []))))
