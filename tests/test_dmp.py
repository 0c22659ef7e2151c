"""The DMP both ways, against an independent FHIR R4 server (sekmet-fhir, from PyPI) standing in
for the shared record's MHD interface: the biologist consults a patient's DMP from the order
and imports a report from another lab, whose glucose becomes the previous value on the desk;
the DMP is refused for a provisional identity and for a patient who opposed; a report issued
under a provisional identity reaches the DMP once the identity is qualified; a masked report's
release updates the DMP copy; a DMP outage is said in French and imports nothing.

A second bilan (a database of its own, the same provider) is pointed at the stand-in, and this
module's `fhir`, `desk` and `lab_middleware` act on it; the session's first bilan keeps its
recording DMP receiver (tests/receivers.py) for the other tests."""

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from html import unescape
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from bilan.app import build_services
from bilan.auth.audit import DMP_CONSULTED, DMP_IMPORTED
from bilan.auth.caller import Caller
from bilan.demo.dmp import StandIn, one_page_pdf, other_lab_report, put_lab_report, put_pdf, stand_in
from bilan.demo.load import LAB_FINESS
from bilan.demo.prescriptions import EXAMS, Person
from bilan.fhir.models import model_class
from bilan.fhir.terminology import INS_NIR_TEST
from bilan.french import PARIS
from bilan.notifications import mhd_rules, outbox
from bilan.notifications.mhd import DmpRefused, MhdClient
from bilan.prescription.ins import IDENTITY_RELIABILITY
from bilan.results.issuing import DmpFeed, documents
from bilan.results.views import AccessTrail
from bilan.settings import Settings
from bilan.storage.database import create_engine
from tests.browser import wait_for_home
from tests.conftest import _create_schema
from tests.dmp_bundles import CDA_ID, DOCUMENT_ID, PERSON, contained, copy_and_bundle, issued
from tests.helpers import client, run
from tests.identity import LAB_SCOPES, PRACTICE_SCOPES, machine_auth, patient_auth, user_auth
from tests.orders import addressed, imported, prescribed
from tests.receivers import eventually
from tests.results import decide, issue, posted, result
from tests.servers import prepare, running
from tests.web import csrf_token, log_in, submit

GLUCOSE, PSA = EXAMS[1], ("2857-1", "PSA total")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def dmp_stand_in() -> Iterator[StandIn]:
    """The shared record: sekmet-fhir in a process of its own, on a free port."""
    with stand_in(_free_port()) as found:
        yield found


@pytest.fixture(scope="module")
def dmp_settings(settings: Settings, second_root: str, web_root: str, dmp_stand_in: StandIn) -> Iterator[Settings]:
    """A second bilan's settings: a database of its own (its outbox is its own), the same
    provider, the stand-in as its DMP."""
    changes = {"base_url": f"{second_root}/fhir", "token_audience": f"{web_root}/fhir", "dmp_url": dmp_stand_in.url,
               "dmp_username": dmp_stand_in.username, "dmp_password": dmp_stand_in.password}
    url = os.environ.get("BILAN_TEST_DATABASE_URL")
    if url and url.startswith("postgresql"):
        schema = f"test_{uuid.uuid4().hex[:10]}"
        run(_create_schema(url, schema))
        try:
            yield settings.model_copy(update={**changes, "database_schema": schema})
        finally:
            run(_create_schema(url, schema, drop=True))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield settings.model_copy(update={**changes, "database_url": f"sqlite+aiosqlite:///{tmp}/dmp.db"})


@pytest.fixture(scope="module")
def dmp_root(dmp_settings: Settings, server: str, second_root: str) -> Iterator[str]:
    """The second bilan, serving."""
    run(prepare(dmp_settings))
    with running(dmp_settings):
        yield second_root


@pytest.fixture(scope="module")
def fhir(dmp_root: str, issuer: str) -> Iterator[httpx.Client]:
    """The demo practice software, on the second bilan (this module's `fhir`)."""
    with client(f"{dmp_root}/fhir", machine_auth(issuer, "practice-software-demo", PRACTICE_SCOPES)) as api:
        yield api


@pytest.fixture(scope="module")
def lab_middleware(dmp_root: str, issuer: str) -> Iterator[httpx.Client]:
    with client(f"{dmp_root}/fhir", machine_auth(issuer, "lab-middleware-demo", LAB_SCOPES)) as api:
        yield api


@pytest.fixture(scope="module")
def desk(dmp_root: str) -> Iterator[httpx.Client]:
    browser, _ = log_in(dmp_root, "accueil.martin")
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def dmp_biologist(dmp_root: str) -> Iterator[httpx.Client]:
    browser, _ = log_in(dmp_root, "bio.durand")
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def dmp_api(dmp_root: str, issuer: str, web_root: str) -> Iterator[httpx.Client]:
    """bio.durand on the second bilan's FHIR API."""
    with client(f"{dmp_root}/fhir", user_auth(issuer, "bio.durand", f"{web_root}/auth/callback")) as api:
        yield api


def _in_dmp(dmp: StandIn, person: Person) -> list[dict[str, Any]]:
    with dmp.client() as api:
        found = api.get("DocumentReference", params={
            "patient:identifier": f"{person.ins_system}|{person.ins}", "_count": "100"}).json()
    return [e["resource"] for e in found.get("entry", [])]


def _other_lab_glucose(dmp: StandIn, person: Person, value: str = "6.4") -> str:
    cda = other_lab_report(person.family, tuple(person.given), person.gender, person.birth, person.ins,
                           person.ins_system, value, datetime(2026, 5, 12, 8, 10, tzinfo=PARIS))
    with dmp.client() as api:
        return put_lab_report(api, cda)


def _order_with_glucose(fhir: httpx.Client, desk: httpx.Client, lab_middleware: httpx.Client, web_root: str,
                        spec: Any) -> tuple[str, str]:
    task_id = imported(fhir, desk, web_root, spec)
    glucose = posted(lab_middleware, result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 7.2, "mmol/L"))
    return task_id, glucose


def _lab_file(fhir: httpx.Client, task_id: str) -> str:
    task = fhir.get(f"Task/{task_id}").json()
    return next(i["valueReference"]["reference"] for i in task["input"] if i.get("valueReference"))


@pytest.fixture
def dmp_page(new_page: Callable[..., Page], dmp_root: str, issuer: str) -> Page:
    """bio.durand in Chromium, logged in to the second bilan."""
    page = new_page()
    page.goto(f"{dmp_root}/auth/login")
    page.wait_for_url(f"{issuer}/interaction/**")
    page.fill("input[name=login]", "bio.durand")
    page.fill("input[name=password]", "demo")
    page.click("button[type=submit]")
    wait_for_home(page, dmp_root)
    return page


def test_the_biologist_imports_a_report_from_another_lab_whose_glucose_becomes_the_previous_value(
        dmp_page: Page, shots, dmp_root: str, dmp_stand_in: StandIn, dmp_biologist: httpx.Client, fhir: httpx.Client,
        desk: httpx.Client, lab_middleware: httpx.Client, web_root: str, issuer: str, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    person = spec.patient
    _other_lab_glucose(dmp_stand_in, person)
    with dmp_stand_in.client() as api:
        pdf_id = put_pdf(api, one_page_pdf(["Échographie abdominale", "Conclusion : examen normal."]),
                         {"system": person.ins_system, "value": person.ins}, datetime(2026, 3, 2, 9, 0, tzinfo=PARIS),
                         "Échographie abdominale", "Dr Martin Léa", "Cabinet de radiologie du Parc")
    task_id, _ = _order_with_glucose(fhir, desk, lab_middleware, dmp_root, spec)

    page = dmp_page
    page.goto(f"{dmp_root}/reception/prescriptions/{task_id}/resultats")
    glucose_row = page.locator("tr", has_text="Glycémie")
    expect(glucose_row).to_contain_text("—")  # no previous value in bilan
    shots(page, "no-previous-value")
    page.get_by_role("button", name="Chercher dans le DMP").or_(page.get_by_role("link", name="Chercher dans le DMP")).click()
    found = page.locator("#dmp-anteriorites-liste tr.dmp-document")
    expect(found).to_have_count(1)  # the lab reports only, loaded after the page
    expect(found).to_contain_text("Laboratoire des Calanques")
    shots(page, "previous-results-in-the-dmp")

    page.get_by_role("link", name="Dossier médical partagé").click()
    rows = page.locator("tr.dmp-document")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("CR-BIO")  # lab reports first
    expect(rows.nth(0)).to_contain_text("Laboratoire des Calanques")
    expect(rows.nth(0)).to_contain_text("12/05/2026")
    expect(rows.nth(0)).to_contain_text("Hélène ROUSSEL")
    expect(rows.nth(1)).to_contain_text("Cabinet de radiologie du Parc")
    shots(page, "dmp-list")
    rows.nth(0).get_by_role("button", name="Importer dans l'historique").click()
    expect(page.locator("#dmp-message")).to_contain_text("Compte rendu importé")
    expect(page.locator("tr.dmp-document").nth(0)).to_contain_text("Dans l'historique")
    shots(page, "imported")

    page.goto(f"{dmp_root}/reception/prescriptions/{task_id}/resultats")
    expect(page.locator("tr", has_text="Glycémie")).to_contain_text("6,4 mmol/L")  # the other lab's value
    expect(page.locator("tr", has_text="Glycémie")).to_contain_text("12/05/2026")
    shots(page, "previous-value-from-the-dmp")

    # Opened: the CR-BIO through the ANS stylesheet, the PDF as a PDF.
    listing = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp")
    cr_bio = next(d["id"] for d in _in_dmp(dmp_stand_in, person) if d["type"]["coding"][0]["code"] == "11502-2")
    view = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp/{cr_bio}")
    assert view.status_code == 200 and "Glycémie" in view.text and "default-src 'none'" in view.headers[
        "content-security-policy"]
    assert '<html lang="fr"' in view.text and f'href="/reception/prescriptions/{task_id}/dmp/"' in view.text
    copy = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp/{cr_bio}/copie.pdf")
    assert copy.status_code == 200 and copy.content.startswith(b"%PDF-") and "Copie PDF" in view.text
    document = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp/{pdf_id}")
    assert document.headers["content-type"] == "application/pdf" and document.content.startswith(b"%PDF-")
    again = submit(dmp_biologist, listing, f"/reception/prescriptions/{task_id}/dmp/{cr_bio}/import", {})
    assert again.status_code == 409 and "déjà dans l'historique" in unescape(again.text)

    # The patient sees who consulted their DMP and imported from it.
    patient = client(f"{dmp_root}/fhir", patient_auth(issuer, f"{web_root}/fhir", f"patient-{person.ins}", person.ins))
    with patient:
        events = [e["resource"] for e in patient.get("AuditEvent", params={"_count": "100"}).json().get("entry", [])]
    said = {e.get("outcomeDesc") for e in events}
    assert {DMP_CONSULTED, DMP_IMPORTED} <= said


def test_the_dmp_is_refused_for_a_provisional_identity_and_for_a_patient_who_opposed(
        dmp_root: str, dmp_stand_in: StandIn, dmp_biologist: httpx.Client, fhir: httpx.Client, desk: httpx.Client,
        web_root: str, rng) -> None:
    provisional = addressed(rng, exams=[GLUCOSE])
    provisional.patient = dataclasses.replace(provisional.patient, status="PROV")
    _other_lab_glucose(dmp_stand_in, provisional.patient)
    task_id = imported(fhir, desk, dmp_root, provisional)
    page = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp")
    assert page.status_code == 200 and "le DMP ne se consulte qu'avec une INS qualifiée" in unescape(page.text)
    assert "Laboratoire des Calanques" not in page.text
    refused = dmp_biologist.post(f"{dmp_root}/reception/prescriptions/{task_id}/dmp/x/import",
                                 data={"_csrf_token": _csrf(page)})
    assert refused.status_code == 409 and "INS qualifiée" in refused.text

    opposed = addressed(rng, exams=[GLUCOSE])
    _other_lab_glucose(dmp_stand_in, opposed.patient)
    task_id = imported(fhir, desk, dmp_root, opposed)
    results = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/resultats")
    submit(dmp_biologist, results, f"/reception/prescriptions/{task_id}/dmp/opposition", {"opposition": "oui"})
    page = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp")
    assert "s'est opposé au partage" in unescape(page.text) and "Laboratoire des Calanques" not in page.text


def test_a_report_issued_under_a_provisional_identity_reaches_the_dmp_once_qualified(
        dmp_root: str, dmp_stand_in: StandIn, dmp_biologist: httpx.Client, dmp_api: httpx.Client, fhir: httpx.Client,
        desk: httpx.Client, lab_middleware: httpx.Client, web_root: str, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    spec.patient = dataclasses.replace(spec.patient, status="PROV")
    task_id, glucose = _order_with_glucose(fhir, desk, lab_middleware, dmp_root, spec)
    assert decide(dmp_biologist, dmp_root, task_id, "biologique", [glucose]).status_code == 200
    assert issue(dmp_biologist, dmp_root, task_id).status_code == 200
    assert _in_dmp(dmp_stand_in, spec.patient) == []  # not shared: no qualified INS

    reference = _lab_file(fhir, task_id)
    lab_file = dmp_api.get(reference).json()
    assert dmp_api.put(reference, json=_qualified(lab_file)).status_code == 200

    [sent] = eventually(lambda: _in_dmp(dmp_stand_in, spec.patient), 15, "the report sent to the DMP")
    assert sent["subject"]["identifier"]["value"] == spec.patient.ins
    lab = contained(sent, sent["custodian"])  # the lab as the DMP knows it: by its national identifiers
    assert {i["value"] for i in lab["identifier"]} == {f"1{LAB_FINESS}", LAB_FINESS}
    with dmp_stand_in.client() as api:  # the CDA is there too, where the copy says
        binary = api.get(sent["content"][0]["attachment"]["url"]).json()
    assert binary["resourceType"] == "Binary" and binary["data"]

    # At most once: qualifying again (or any later write of the file) queues nothing more.
    lab_file = dmp_api.get(reference).json()
    assert dmp_api.put(reference, json={**lab_file, "telecom": [{"system": "phone", "value": "0600000000"}]}
                       ).status_code == 200
    page = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}")
    assert page.text.count("<td>DMP</td>") == 1


def test_a_masked_report_s_release_updates_the_dmp_copy(
        dmp_root: str, dmp_stand_in: StandIn, dmp_biologist: httpx.Client, fhir: httpx.Client, desk: httpx.Client,
        lab_middleware: httpx.Client, web_root: str, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    task_id, glucose = _order_with_glucose(fhir, desk, lab_middleware, dmp_root, spec)
    assert decide(dmp_biologist, dmp_root, task_id, "biologique", [glucose]).status_code == 200
    assert issue(dmp_biologist, dmp_root, task_id, masquer_tout="1").status_code == 200

    def labels() -> set[str]:
        found = _in_dmp(dmp_stand_in, spec.patient)
        return {c["code"] for d in found for label in d.get("securityLabel", []) for c in label["coding"]}

    eventually(lambda: "INVISIBLE_PATIENT" in labels(), 15, "the masked report in the DMP")
    page = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/resultats")
    released = submit(dmp_biologist, page, f"/reception/prescriptions/{task_id}/levee-masquage",
                      {"motif": "Consultation d'annonce faite au laboratoire"})
    assert released.status_code == 200
    eventually(lambda: labels() and "INVISIBLE_PATIENT" not in labels(), 15, "the DMP copy released")
    assert len(_in_dmp(dmp_stand_in, spec.patient)) == 1  # the same copy, updated


def test_dmp_history_sends_the_lab_s_reports_the_dmp_does_not_have_yet_at_most_once(
        dmp_settings: Settings, dmp_root: str, dmp_stand_in: StandIn, dmp_biologist: httpx.Client,
        dmp_api: httpx.Client, fhir: httpx.Client, desk: httpx.Client, lab_middleware: httpx.Client, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    spec.patient = dataclasses.replace(spec.patient, status="PROV")
    task_id, glucose = _order_with_glucose(fhir, desk, lab_middleware, dmp_root, spec)
    assert decide(dmp_biologist, dmp_root, task_id, "biologique", [glucose]).status_code == 200
    assert issue(dmp_biologist, dmp_root, task_id).status_code == 200
    # The identity qualified while no DMP was configured (nothing queued then).
    reference = _lab_file(fhir, task_id)
    unconfigured = dmp_settings.model_copy(update={"dmp_url": ""})
    run(_qualify_without_dmp(unconfigured, reference, _qualified(dmp_api.get(reference).json())))
    assert _in_dmp(dmp_stand_in, spec.patient) == []

    env = {**os.environ, "BILAN_DATABASE_URL": dmp_settings.database_url, "BILAN_BASE_URL": dmp_settings.base_url,
           "BILAN_DATABASE_SCHEMA": dmp_settings.database_schema or "", "BILAN_DMP_URL": dmp_stand_in.url}
    if not dmp_settings.database_schema:
        del env["BILAN_DATABASE_SCHEMA"]
    since = datetime.now(PARIS).date().isoformat()
    first = subprocess.run([sys.executable, "-m", "bilan", "dmp-history", "--since", since], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert re.search(r"^[1-9]\d* report\(s\) issued since", first.stdout)
    eventually(lambda: _in_dmp(dmp_stand_in, spec.patient), 15, "the history sent by the running bilan")
    again = subprocess.run([sys.executable, "-m", "bilan", "dmp-history", "--since", since], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.stdout.startswith("0 report(s)"), again.stdout + again.stderr  # at most once


async def _qualify_without_dmp(settings: Settings, reference: str, patient: dict[str, Any]) -> None:
    engine = create_engine(settings)
    try:
        records = build_services(engine, settings).records
        await records.update(None, "Patient", reference.removeprefix("Patient/"), patient)
    finally:
        await engine.dispose()


def test_a_later_opposition_hides_the_dmp_copy_and_the_patient_sees_who_consulted_her_dmp(
        dmp_settings: Settings, dmp_root: str, dmp_stand_in: StandIn, dmp_biologist: httpx.Client,
        fhir: httpx.Client, desk: httpx.Client, lab_middleware: httpx.Client, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    task_id, glucose = _order_with_glucose(fhir, desk, lab_middleware, dmp_root, spec)
    assert decide(dmp_biologist, dmp_root, task_id, "biologique", [glucose]).status_code == 200
    assert issue(dmp_biologist, dmp_root, task_id).status_code == 200

    def labels() -> set[str]:
        found = _in_dmp(dmp_stand_in, spec.patient)
        return {c["code"] for d in found for label in d.get("securityLabel", []) for c in label["coding"]}

    eventually(lambda: _in_dmp(dmp_stand_in, spec.patient), 15, "the report in the DMP")
    assert "INVISIBLE_PATIENT" not in labels()
    consulted = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp")
    assert consulted.status_code == 200

    results = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/resultats")
    submit(dmp_biologist, results, f"/reception/prescriptions/{task_id}/dmp/opposition", {"opposition": "oui"})
    eventually(lambda: {"INVISIBLE_PATIENT", "MASQUE_PS"} <= labels(), 15, "the DMP copy hidden after the opposition")
    assert len(_in_dmp(dmp_stand_in, spec.patient)) == 1  # the same copy, updated, not deleted

    lines = run(_trail(dmp_settings, spec.patient.ins))
    assert any(re.search(r" a consulté votre dossier médical partagé \(DMP\)$", line.sentence)
               for line in lines), lines


def test_a_dmp_outage_during_consultation_is_said_in_french_and_nothing_is_half_imported(
        dmp_root: str, dmp_stand_in: StandIn, dmp_biologist: httpx.Client, dmp_api: httpx.Client,
        fhir: httpx.Client, desk: httpx.Client,
        lab_middleware: httpx.Client, web_root: str, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    _other_lab_glucose(dmp_stand_in, spec.patient)
    task_id, _ = _order_with_glucose(fhir, desk, lab_middleware, dmp_root, spec)
    listing = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp")
    [document] = [d["id"] for d in _in_dmp(dmp_stand_in, spec.patient)]
    lab_file = _lab_file(fhir, task_id)
    before = _history(dmp_api, lab_file)

    dmp_stand_in.stop()  # the DMP goes down (the last test of the module)
    attempt = submit(dmp_biologist, listing, f"/reception/prescriptions/{task_id}/dmp/{document}/import", {})
    assert attempt.status_code == 409 and "Le DMP ne répond pas" in attempt.text and "Rien n'a été importé" in unescape(attempt.text)
    page = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/dmp")
    assert page.status_code == 200 and "Le DMP ne répond pas" in page.text
    assert _history(dmp_api, lab_file) == before
    results = dmp_biologist.get(f"{dmp_root}/reception/prescriptions/{task_id}/resultats")
    assert "6,4" not in results.text  # no previous value from a half import


def _history(api: httpx.Client, patient: str) -> tuple[int, int]:
    """The patient's documents and results on the lab's file, counted as the lab reads them."""
    return tuple(api.get(kind, params={"patient": patient, "_summary": "count"}).json()["total"]
                 for kind in ("DocumentReference", "Observation"))  # type: ignore[return-value]


def _qualified(patient: dict[str, Any]) -> dict[str, Any]:
    extensions = []
    for extension in patient.get("extension", []):
        if extension.get("url") == IDENTITY_RELIABILITY:
            extension = {**extension, "extension": [
                {**e, "valueCoding": {**e["valueCoding"], "code": "QUAL"}} if e.get("url") == "identityStatus" else e
                for e in extension.get("extension", [])]}
        extensions.append(extension)
    return {**patient, "extension": extensions}


def _csrf(page: httpx.Response) -> str:
    return csrf_token(page)


async def _trail(settings: Settings, ins: str) -> list[Any]:
    """What the patient reads under "Qui a consulté mes données ?", line by line."""
    engine = create_engine(settings)
    try:
        records = build_services(engine, settings).records
        found = await AccessTrail(records).page(Caller("patient", f"patient-{ins}", frozenset(), ins=ins))
        return [line for day in found.days for line in day.lines]
    finally:
        await engine.dispose()


# --- The ITI-65 bundle against the MHD Comprehensive rules, element by element -----------------

def test_the_dmp_bundle_passes_every_mhd_comprehensive_rule_and_is_valid_fhir() -> None:
    document, bundle = copy_and_bundle()
    assert mhd_rules.problems(bundle) == []
    model_class("Bundle").model_validate(bundle)  # valid FHIR R4 as well
    submission, copy, binary = (e["resource"] for e in bundle["entry"])
    assert [e["request"]["method"] for e in bundle["entry"]] == ["POST", "POST", "PUT"]
    assert all(mhd_rules.uuid_urn(e["fullUrl"]) for e in bundle["entry"])
    assert copy["content"][0]["attachment"]["url"] == f"Binary/{CDA_ID}" and binary["resourceType"] == "Binary"
    # bilan's own DocumentReference: one content (the CDA), the lab's facility and practice setting
    assert [c["attachment"]["contentType"] for c in document["content"]] == ["application/xml"]
    assert document["context"]["facilityType"]["coding"][0]["code"] == "SA25"
    assert document["context"]["practiceSetting"]["coding"][0]["code"] == "AMBULATOIRE"
    # the copy: contained author, authenticator and source patient, nothing of bilan's own
    assert contained(copy, copy["authenticator"])["resourceType"] == "Practitioner"
    assert {contained(copy, a)["resourceType"] for a in copy["author"]} == {"Organization", "Practitioner"}
    assert contained(copy, copy["context"]["sourcePatientInfo"])["birthDate"] == "1979-03-12"
    assert "docStatus" not in copy and "related" not in copy["context"] and "bilan.sante.fr" not in json.dumps(bundle)
    assert copy["subject"]["identifier"] == {"system": INS_NIR_TEST, "value": PERSON.ins}


def test_bilan_s_own_pages_serve_the_pdf_from_the_cda_it_embeds() -> None:
    found = issued()
    assert documents.embedded_pdf(found.cda) == found.report.pdf
    assert documents.embedded_pdf(b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>") is None


def _entry(kind: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda b: next(e for e in b["entry"] if e["resource"]["resourceType"] == kind)


_LIST, _DOC, _BINARY = _entry("List"), _entry("DocumentReference"), _entry("Binary")


def _set(path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        target = path(bundle)
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    return change


_DELETE = object()
_L = lambda b: _LIST(b)["resource"]  # noqa: E731
_D = lambda b: _DOC(b)["resource"]  # noqa: E731
_CONTENT = lambda b: _D(b)["content"][0]  # noqa: E731
_ATTACHMENT = lambda b: _CONTENT(b)["attachment"]  # noqa: E731
_CONTEXT = lambda b: _D(b)["context"]  # noqa: E731
_OTHER_INS = {"system": INS_NIR_TEST, "value": "182017512345656"}

# (what is broken, the change, the element the problem names)
MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("a batch", _set(lambda b: b, "type", "batch"), "Bundle.type"),
    ("no profile", _set(lambda b: b, "meta", {}), "Bundle.meta.profile"),
    ("a fullUrl that is no UUID", _set(_LIST, "fullUrl", f"urn:uuid:{DOCUMENT_ID}-ss"), "Bundle.entry[0].fullUrl"),
    ("a fullUrl twice", _set(_BINARY, "fullUrl", f"urn:uuid:{DOCUMENT_ID}"), "Bundle.entry[2].fullUrl"),
    ("a SubmissionSet by PUT", _set(_LIST, "request", {"method": "PUT", "url": "List/x"}), "Bundle.entry[0].request"),
    ("a DocumentReference by PUT", _set(_DOC, "request", {"method": "PUT", "url": "DocumentReference/x"}),
     "Bundle.entry[1].request"),
    ("no SubmissionSet uniqueId", lambda b: _L(b).update(identifier=_L(b)["identifier"][1:]),
     "Bundle.entry[0].resource.identifier: one uniqueId"),
    ("no SubmissionSet entryUUID", lambda b: _L(b).update(identifier=_L(b)["identifier"][:1]),
     "Bundle.entry[0].resource.identifier: one entryUUID"),
    ("a uniqueId that is no OID", lambda b: _L(b)["identifier"][0].update(value=f"urn:uuid:{DOCUMENT_ID}"),
     "Bundle.entry[0].resource.identifier: one uniqueId"),
    ("an untyped entryUUID", lambda b: _L(b)["identifier"][1].pop("type"),
     "Bundle.entry[0].resource.identifier: one entryUUID"),
    ("no sourceId", lambda b: _L(b).update(extension=_L(b)["extension"][1:]), "resource.extension: one sourceId"),
    ("no designationType", lambda b: _L(b).update(extension=_L(b)["extension"][:1]),
     "resource.extension: one designationType"),
    ("a SubmissionSet not working", _set(_L, "mode", "snapshot"), "Bundle.entry[0].resource.status"),
    ("a SubmissionSet of no patient", _set(_L, "subject", _DELETE), "Bundle.entry[0].resource.subject"),
    ("a SubmissionSet without date", _set(_L, "date", _DELETE), "Bundle.entry[0].resource.date"),
    ("a SubmissionSet author not contained", _set(_L, "source", {"reference": "Organization/o1"}),
     "Bundle.entry[0].resource.source"),
    ("a SubmissionSet naming a DocumentReference elsewhere",
     _set(_L, "entry", [{"item": {"reference": "DocumentReference/d1"}}]), "Bundle.entry[0].resource.entry"),
    ("two SubmissionSets", lambda b: b["entry"].append(
        {**_LIST(b), "fullUrl": "urn:uuid:0b7d9f52-3c1e-4a8b-9d2f-5e6a7b8c9d09"}), "Bundle.entry: one SubmissionSet"),
    ("two patients", lambda b: _L(b).update(subject={"type": "Patient", "identifier": _OTHER_INS}), "one patient"),
    ("a patient by a bilan reference", _set(_D, "subject", {"reference": "Patient/p1"}),
     "Bundle.entry[1].resource.subject"),
    ("no masterIdentifier", _set(_D, "masterIdentifier", _DELETE), "resource.masterIdentifier"),
    ("no entryUUID", lambda b: _D(b).update(identifier=_D(b)["identifier"][1:]),
     "Bundle.entry[1].resource.identifier: one entryUUID"),
    ("a superseded document", _set(_D, "status", "superseded"), "Bundle.entry[1].resource.status"),
    ("a docStatus", _set(_D, "docStatus", "final"), "Bundle.entry[1].resource.docStatus"),
    ("no type", _set(_D, "type", _DELETE), "Bundle.entry[1].resource.type"),
    ("two categories", lambda b: _D(b)["category"].append(_D(b)["category"][0]), "Bundle.entry[1].resource.category"),
    ("no confidentiality", _set(_D, "securityLabel", []), "Bundle.entry[1].resource.securityLabel"),
    ("two contents", lambda b: _D(b)["content"].append(_CONTENT(b)), "Bundle.entry[1].resource.content: exactly one"),
    ("the document inline", _set(_ATTACHMENT, "data", "PD94"), "content[0].attachment.data"),
    ("no language", _set(_ATTACHMENT, "language", _DELETE), "content[0].attachment.language"),
    ("no creation", _set(_ATTACHMENT, "creation", _DELETE), "content[0].attachment.creation"),
    ("no format", _set(_CONTENT, "format", _DELETE), "content[0].format"),
    ("an attachment naming no Binary", _set(_ATTACHMENT, "url", "Binary/elsewhere"), "content[0].attachment.url"),
    ("a wrong hash", _set(_ATTACHMENT, "hash", "AAAA"), "content[0].attachment.hash"),
    ("a wrong size", _set(_ATTACHMENT, "size", 12), "content[0].attachment.size"),
    ("the SA07 facility", _set(_CONTEXT, "facilityType", {"coding": [
        {"system": "urn:oid:1.2.250.1.71.4.2.4", "code": "SA07"}]}), "context.facilityType"),
    ("the BIOLOGIE practice setting", _set(_CONTEXT, "practiceSetting", {"coding": [
        {"system": "urn:oid:1.2.250.1.213.1.1.4.9", "code": "BIOLOGIE"}]}), "context.practiceSetting"),
    ("no source patient", _set(_CONTEXT, "sourcePatientInfo", _DELETE), "context.sourcePatientInfo"),
    ("a source patient not contained", _set(_CONTEXT, "sourcePatientInfo", {"reference": "Patient/p1"}),
     "context.sourcePatientInfo"),
    ("an author not contained", lambda b: _D(b)["author"].__setitem__(1, {"reference": "Practitioner/b1"}),
     "Bundle.entry[1].resource.author[1]"),
    ("an authenticator not contained", _set(_D, "authenticator", {"reference": "Practitioner/b1"}),
     "Bundle.entry[1].resource.authenticator"),
    ("a link to bilan's order", _set(_CONTEXT, "related", [{"reference": "Task/t1"}]), "context.related[0].reference"),
    ("bilan's tags", _set(_D, "meta", {"tag": [{"system": "https://bilan.sante.fr/fhir/CodeSystem/sharing",
                                               "code": "patient-space"}]}), "meta.tag[0].system"),
]


@pytest.mark.parametrize(("broken", "change", "named"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_mhd_rule_fails_on_a_bundle_that_breaks_it(broken: str, change: Callable[[dict[str, Any]], None],
                                                       named: str) -> None:
    _, bundle = copy_and_bundle()
    change(bundle)
    found = mhd_rules.problems(bundle)
    assert any(named in problem for problem in found), (broken, found)


def test_bilan_refuses_to_send_a_bundle_that_breaks_mhd_and_sends_a_conformant_one() -> None:
    received: list[httpx.Request] = []

    def dmp(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"})

    client = MhdClient("https://dmp.example/fhir", transport=httpx.MockTransport(dmp))
    feed = DmpFeed(SimpleNamespace(base_url="https://bilan.example/fhir"), client)  # type: ignore[arg-type]
    _, bundle = copy_and_bundle()
    broken = json.loads(json.dumps(bundle))
    broken["entry"][0]["fullUrl"] = f"urn:uuid:{DOCUMENT_ID}-ss"

    def item(body: dict[str, Any]) -> outbox.OutboxItem:
        now = datetime(2026, 5, 12, 10, 0, tzinfo=PARIS)
        return outbox.OutboxItem(1, "dmp", "https://dmp.example/fhir", None, f"DocumentReference/{DOCUMENT_ID}",
                                 "Task/t1", {"kind": "provide", "method": "POST", "path": "", "body": body},
                                 "pending", 0, now, None, None, now, None)

    with pytest.raises(DmpRefused, match="lot MHD n'est pas conforme.*fullUrl"):
        run(feed.send(item(broken)))
    assert received == []  # nothing left bilan
    run(feed.send(item(bundle)))
    assert [json.loads(r.content)["entry"][0]["fullUrl"] for r in received] == [bundle["entry"][0]["fullUrl"]]
