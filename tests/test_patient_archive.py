"""Data portability: every report has a PDF (one made from the CDA for a report from elsewhere
that came without), the patient downloads all her data in one archive (PDFs, CDAs, a FHIR
Bundle) that a fresh bilan takes back whole, and Patient/$everything answers the same to her
own token. What is masked from her is absent; nobody else gets her archive."""

import base64
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pypdfium2 as pdfium
import pytest
from lxml import etree

from bilan.demo.prescriptions import patient_resource
from bilan.fhir.parsing import validate
from bilan.results.document import Identifier
from bilan.results.document.cda import cda_document
from bilan.settings import Settings
from tests.helpers import client, post_bundle, run, search, uuid_from
from tests.identity import user_auth
from tests.lab_reports import one_page_pdf, report
from tests.people import DUPONT, LEFEVRE
from tests.received_reports import level_one, trod_report
from tests.results import GLUCOSE, documents, glucose, pdf_text, reported
from tests.servers import prepare, running
from tests.web import log_in

V3 = "urn:hl7-org:v3"
HIV = ("56888-1", "Sérologie VIH")
NEGATIVE = {"coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Négatif"}]}
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"


@pytest.fixture(scope="module")
def importer(as_user) -> httpx.Client:
    """Who files reports from elsewhere: the lab's biologist."""
    return as_user("bio.durand")


def record_of(api: httpx.Client, person: Any) -> str:
    """A patient file of the lab's for this person (her INS): 'Patient/id'."""
    response = api.post("Patient", json=patient_resource(person))
    assert response.status_code == 201, response.text
    return f"Patient/{response.json()['id']}"


def imported(api: httpx.Client, patient: str, document: bytes) -> str:
    """A report from elsewhere filed for the patient; its DocumentReference id."""
    response = api.post("DocumentReference", json={
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": patient},
        "content": [{"attachment": {"contentType": "text/xml", "data": base64.b64encode(document).decode()}}]})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def trod(rng: Any) -> bytes:
    """A pharmacy's point-of-care report for Marie Dupont, with no PDF copy in it."""
    return trod_report(ins=DUPONT.ins, document_id=f"1.2.250.1.999.7.59.{rng.randint(1, 10**9)}")


def level_one_report(rng: Any) -> bytes:
    """A level-1 CR-BIO (its body a PDF) about Marie Dupont's INS."""
    made = report(document_id=Identifier(str(uuid_from(rng)).upper()), set_id=Identifier(str(uuid_from(rng)).upper()))
    return level_one(cda_document(made), one_page_pdf())


def archive_of(browser: httpx.Client, web_root: str) -> zipfile.ZipFile:
    response = browser.get(f"{web_root}/patient/archive.zip")
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    return zipfile.ZipFile(io.BytesIO(response.content))


def listed(browser: httpx.Client, web_root: str) -> set[str]:
    """The reports her space lists."""
    home = browser.get(f"{web_root}/patient/")
    assert home.status_code == 200 and "Télécharger toutes mes données" in home.text
    return set(re.findall(r'<li id="cr-([^"]+)"', home.text))


def report_files(archive: zipfile.ZipFile) -> dict[str, set[str]]:
    """Document id -> the extensions of its files in the archive."""
    found: dict[str, set[str]] = {}
    for name in archive.namelist():
        match = re.fullmatch(r"comptes-rendus/[^_/]+_(.+)\.(pdf|xml)", name)
        if match:
            found.setdefault(match.group(1), set()).add(match.group(2))
    return found


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == resource_type]


def _has_ins(patient: dict[str, Any], ins: str) -> bool:
    return any(i.get("value") == ins for i in patient.get("identifier", []))


def pages(pdf: bytes) -> int:
    document = pdfium.PdfDocument(pdf)
    try:
        return len(document)
    finally:
        document.close()


def results(observations: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Each result (not a battery) by its code and value: what a history shows."""
    def value(o: dict[str, Any]) -> str:
        if "valueQuantity" in o:
            return str(Decimal(str(o["valueQuantity"]["value"])).normalize())
        if "valueCodeableConcept" in o:
            return str(o["valueCodeableConcept"].get("coding", [{}])[0].get("code"))
        return str(o.get("valueString", ""))
    return Counter((str(o["code"].get("coding", [{}])[0].get("code")), value(o))
                   for o in observations if "hasMember" not in o and o.get("status") != "entered-in-error")


@pytest.fixture(scope="module")
def her_reports(fhir, lab_middleware, desk, biologist, web_root, importer, rng_module) -> dict[str, str]:
    """Marie Dupont's reports of each kind: the lab's own, one masked from her, a pharmacy's
    point-of-care report and a level-1 report from elsewhere (document ids)."""
    rng = rng_module
    own, _ = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE],
                      {GLUCOSE[0]: glucose(6.2)}, "2026-04-07T08:00:00+02:00")
    masked, hidden = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE, HIV],
                         {GLUCOSE[0]: glucose(5.4), HIV[0]: {"valueCodeableConcept": NEGATIVE}},
                         "2026-05-11T08:00:00+02:00", hidden=(HIV[0],))
    record = record_of(importer, DUPONT)
    return {"own": documents(fhir, own)[-1]["id"], "masked": documents(fhir, masked)[-1]["id"],
            "trod": imported(importer, record, trod(rng)), "level_one": imported(importer, record, level_one_report(rng)),
            "record": record, "masked_results": " ".join(hidden.values())}


def test_a_report_from_elsewhere_without_a_copy_gets_a_pdf_made_from_its_results(her_reports, web_root) -> None:
    browser, _ = log_in(web_root, "patient.dupont")
    home = browser.get(f"{web_root}/patient/").text
    assert f"/documents/{her_reports['trod']}/compte-rendu.pdf" in home  # offered as for her lab's reports
    made = browser.get(f"{web_root}/documents/{her_reports['trod']}/compte-rendu.pdf")
    assert made.status_code == 200 and made.headers["content-type"] == "application/pdf"
    assert made.content.startswith(b"%PDF-") and pages(made.content) == 1
    text = pdf_text(made.content)
    assert "Pharmacie du Marché" in text and "Glycémie capillaire" in text and "1,250 g/L" in text
    assert "Dépistage grippe A" in text and "positif" in text
    assert "établie par bilan" in text  # it says it is bilan's copy, the CDA being the reference

    carried = browser.get(f"{web_root}/documents/{her_reports['level_one']}/compte-rendu.pdf")
    assert carried.status_code == 200 and carried.content == one_page_pdf()  # the report's own file

    own = browser.get(f"{web_root}/documents/{her_reports['own']}/compte-rendu.pdf")
    assert own.status_code == 200 and "Glycémie" in pdf_text(own.content)  # the lab's, from its CR-BIO
    masked = browser.get(f"{web_root}/documents/{her_reports['masked']}/compte-rendu.pdf")
    assert masked.status_code == 403


def test_the_archive_holds_every_report_she_sees_as_pdf_and_cda_and_nothing_masked(her_reports, web_root) -> None:
    browser, _ = log_in(web_root, "patient.dupont")
    seen = listed(browser, web_root)
    archive = archive_of(browser, web_root)

    files = report_files(archive)
    assert set(files) == seen and {her_reports["own"], her_reports["trod"], her_reports["level_one"]} <= seen
    assert her_reports["masked"] not in files
    assert all(kinds == {"pdf", "xml"} for kinds in files.values()), files
    for name in archive.namelist():
        data = archive.read(name)
        if name.endswith(".pdf"):
            assert data.startswith(b"%PDF-") and pages(data) >= 1, name
        elif name.endswith(".xml"):
            root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
            assert root.tag == f"{{{V3}}}ClinicalDocument", name
    readme = archive.read("LISEZMOI.txt").decode("utf-8")
    assert "comptes-rendus/" in readme and "FHIR" in readme and f"Comptes rendus : {len(seen)}" in readme

    bundle = json.loads(archive.read("fhir/dossier.json"))
    assert bundle["type"] == "collection" and validate(bundle) == []
    reports = resources(bundle, "DocumentReference")
    assert {d["id"] for d in reports} == seen
    for document in reports:  # complete on its own: every file inline, no link to this server
        assert all(c["attachment"].get("data") and "url" not in c["attachment"] for c in document["content"])
    assert all(_has_ins(p, DUPONT.ins) for p in resources(bundle, "Patient")) and resources(bundle, "Patient")
    assert her_reports["masked"] not in json.dumps(bundle)
    kept = {o["id"] for o in resources(bundle, "Observation")}
    assert kept and not kept & set(her_reports["masked_results"].split())  # the masked report's, even unmasked ones


def test_nobody_else_gets_her_archive(her_reports, web_root, desk) -> None:
    browser, _ = log_in(web_root, "patient.lefevre")
    his = archive_of(browser, web_root)
    bundle = json.loads(his.read("fhir/dossier.json"))
    assert not set(report_files(his)) & {her_reports["own"], her_reports["trod"], her_reports["level_one"]}
    assert all(_has_ins(p, LEFEVRE.ins) for p in resources(bundle, "Patient"))
    assert DUPONT.ins not in json.dumps(bundle)

    outside = httpx.get(f"{web_root}/patient/archive.zip", follow_redirects=False)
    assert outside.status_code == 401 and "Connectez-vous" in outside.text and not outside.content.startswith(b"PK")
    lab = desk.get(f"{web_root}/patient/archive.zip")
    assert lab.status_code == 403 and "patients" in lab.text


@pytest.fixture
def fresh_bilan(own_database: Settings, second_root: str, web_root: str, issuer: str, mail_relay) -> Iterator[str]:
    """Another bilan, on a database of its own with nothing of hers: its FHIR base."""
    settings = own_database.model_copy(update={
        "base_url": f"{second_root}/fhir", "token_audience": f"{web_root}/fhir", "oidc_issuer": issuer,
        "smtp_host": "127.0.0.1", "smtp_port": mail_relay.port, "dmp_url": ""})

    run(prepare(settings))
    with running(settings):
        yield settings.base_url


def test_her_archive_imports_whole_into_a_fresh_bilan(her_reports, web_root, issuer, fresh_bilan) -> None:
    browser, _ = log_in(web_root, "patient.dupont")
    archive = archive_of(browser, web_root)
    bundle = json.loads(archive.read("fhir/dossier.json"))
    transaction = json.loads(archive.read("fhir/import.json"))
    assert transaction["type"] == "transaction" and validate(transaction) == []

    with client(fresh_bilan, user_auth(issuer, "bio.durand", f"{web_root}/auth/callback")) as there:
        answer = post_bundle(there, transaction)
        assert answer.status_code == 200, answer.text[:2000]
        statuses = [e["response"]["status"] for e in answer.json()["entry"]]
        assert all(s.startswith("201") for s in statuses), statuses
        [patient] = search(there, "Patient", identifier=f"{DUPONT.ins_system}|{DUPONT.ins}")["entry"]
        subject = f"Patient/{patient['resource']['id']}"
        reports = search(there, "DocumentReference", patient=subject, status="current", _count=500)
        observations = search(there, "Observation", patient=subject, _count=2000)

    archived = resources(bundle, "DocumentReference")
    assert reports["total"] == len(archived) == len(transaction["entry"]) - 1
    again = [e["resource"] for e in observations.get("entry", [])]
    assert results(again) == results(resources(bundle, "Observation"))  # every result, same code and value
    # Each report's document came back byte for byte.
    def documents_of(found: list[dict[str, Any]]) -> set[bytes]:
        return {base64.b64decode(c["attachment"]["data"]) for d in found for c in d["content"]
                if "xml" in c["attachment"]["contentType"]}
    assert documents_of([e["resource"] for e in reports["entry"]]) == documents_of(archived)


def test_everything_answers_her_own_token_and_refuses_others(her_reports, as_user, importer, fhir, other_lab,
                                                             anonymous) -> None:
    her = as_user("patient.dupont")
    record = her_reports["record"]
    answer = her.get(f"{record}/$everything")
    assert answer.status_code == 200, answer.text[:500]
    bundle = answer.json()
    assert bundle["type"] == "searchset" and validate(bundle) == [] and bundle["total"] == len(bundle["entry"])
    found = {e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"}
    assert {her_reports["own"], her_reports["trod"], her_reports["level_one"]} <= found
    assert her_reports["masked"] not in found
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} >= {"Patient", "DocumentReference",
                                                                          "DiagnosticReport", "Observation"}
    listed_in_space = search(her, "DocumentReference", status="current", _count=500)
    assert found == {e["resource"]["id"] for e in listed_in_space.get("entry", [])}

    his = record_of(importer, LEFEVRE)
    refused = her.get(f"{his}/$everything")
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    assert her.get("Patient/no-such-patient/$everything").status_code == 404
    assert her.get(f"Observation/{her_reports['trod']}/$everything").status_code == 404
    assert other_lab.get(f"{record}/$everything").status_code == 403  # another lab's: not its patient
    assert anonymous.get(f"{record}/$everything").status_code == 401

    # A professional gets what the access rules give him of that record: the lab the reports
    # it filed; her prescriber the reports of his prescriptions, the one masked from her too
    # (he explains it to her), and nothing another lab or pharmacy sent.
    lab = importer.get(f"{record}/$everything")
    assert lab.status_code == 200
    assert {her_reports["trod"], her_reports["level_one"]} <= {e["resource"]["id"] for e in lab.json()["entry"]}
    prescribed_for = fhir.get(f"DocumentReference/{her_reports['masked']}").json()["subject"]["reference"]
    prescriber = fhir.get(f"{prescribed_for}/$everything")
    assert prescriber.status_code == 200, prescriber.text[:500]
    his_view = {e["resource"]["id"] for e in prescriber.json()["entry"]}
    assert her_reports["masked"] in his_view and her_reports["trod"] not in his_view
    assert fhir.get(f"{record}/$everything").status_code == 403  # the lab's own file of her: not his


def test_the_capability_statement_declares_everything(fhir) -> None:
    statement = fhir.get("metadata").json()
    [patient] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Patient"]
    assert {"name": "everything", "definition": EVERYTHING} in patient["operation"]
