"""A result's whole path in a real browser (issue 14), at desktop and phone widths: Marie
Dupont's glucose, prescribed by Dr Lambert, is validated and issued; Dr Lambert follows his
mail's link logged out, logs in, reads the value, its flag and the previous value, and opens
the trend; Marie Dupont, told by a notice with no result in it, sees her order in progress,
then the report marked new, reads it without scrolling sideways, downloads all her data, which
a fresh bilan takes back whole, and reads who consulted her data. axe-core checks every page."""

import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from lxml import etree
from playwright.sync_api import Page, expect

from bilan.fhir.models import Bundle
from bilan.settings import Settings
from tests.browser import assert_accessible
from tests.deliveries import notifications
from tests.helpers import client, post_bundle, search
from tests.identity import user_auth
from tests.orders import addressed, imported_for, prescribed
from tests.people import DUPONT
from tests.receivers import MailRelay, eventually
from tests.results import (
    GLUCOSE,
    decide,
    documents,
    glucose,
    issue,
    pdf_text,
    posted,
    prescriber_mail,
    reported,
    result,
)
from tests.test_patient_archive import V3, fresh_bilan, pages, report_files, resources, results  # noqa: F401
from tests.test_patient_notices import CITIZEN, text_of

DESKTOP, PHONE = (1280, 800), (375, 812)


@dataclass(frozen=True)
class Glucose:
    """One run's two glucose values (its own dates, after every other test's, so that the
    previous value the prescriber sees is this run's)."""
    before: float
    before_when: str
    now: float
    now_when: str

    def shown(self, value: float) -> str:
        return f"{value:.2f}".replace(".", ",") + " mmol/L"


RUNS = {DESKTOP: Glucose(5.61, "2026-12-01T08:00:00+01:00", 7.34, "2026-12-02T08:10:00+01:00"),
        PHONE: Glucose(5.57, "2026-12-03T08:00:00+01:00", 7.29, "2026-12-04T08:10:00+01:00")}


@dataclass(frozen=True)
class Report:
    task_id: str
    number: str  # the order's number, as the prescriber's mail says it
    document_id: str
    prescriber: str  # "Dr Élise LAURENT": the name bilan keeps for dr.lambert's RPPS (its first prescription's)


def checked(page: Page, shots: Any, step: str, width: int | None = None) -> None:
    """Every page: a screenshot, axe, and (for the patient's pages) nothing wider than the screen."""
    page.wait_for_load_state("networkidle")
    shots(page, step)
    assert_accessible(page, step)
    if width is not None:
        assert page.evaluate("document.documentElement.scrollWidth") <= width, f"{step}: wider than {width} px"


def ordered(fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client, biologist: httpx.Client,
            web_root: str, rng: Any, values: Glucose) -> str:
    """An earlier report (the previous value), then Dr Lambert's new order for Marie Dupont,
    received at the lab and not yet reported: its Task id."""
    reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE], {GLUCOSE[0]: glucose(values.before)},
             values.before_when)
    return imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=DUPONT))


def issued(fhir: httpx.Client, lab_middleware: httpx.Client, biologist: httpx.Client, web_root: str, task_id: str,
           values: Glucose) -> Report:
    """The analyser's result, validated, the report issued."""
    found = posted(lab_middleware, {**result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], values.now, "mmol/L"),
                                    "effectiveDateTime": values.now_when})
    assert decide(biologist, web_root, task_id, "biologique", [found]).status_code == 200
    assert issue(biologist, web_root, task_id).status_code == 200
    [document] = documents(fhir, task_id)
    who = fhir.get(prescribed(fhir, task_id, GLUCOSE[0])["requester"]["reference"]).json()
    if who["resourceType"] == "PractitionerRole":
        who = fhir.get(who["practitioner"]["reference"]).json()
    name = f"Dr {who['name'][0]['given'][0]} {who['name'][0]['family'].upper()}"
    return Report(task_id, fhir.get(f"Task/{task_id}").json()["groupIdentifier"]["value"], document["id"], name)


def prescriber_link(fhir: httpx.Client, mail_relay: MailRelay, web_root: str, report: Report) -> str:
    """The link in the mail that tells Dr Lambert of the report (grouped per order)."""
    address = prescriber_mail(fhir, prescribed(fhir, report.task_id, GLUCOSE[0]))

    def the_mail() -> EmailMessage | None:
        return next((m for m in mail_relay.to(address) if f"n° {report.number})" in m["Subject"]
                     and "Compte rendu" in m["Subject"]), None)

    text = text_of(eventually(the_mail, 15, "the prescriber's mail about the report"))
    assert "DUPONT Marie" in text and "Résultats hors des valeurs de référence : 1." in text
    link = re.search(rf"{re.escape(web_root)}/prescripteur/prescriptions/\S+", text)
    assert link and link.group(0) == f"{web_root}/prescripteur/prescriptions/{report.task_id}", text
    return link.group(0)


def patient_notice(settings: Settings, mail_relay: MailRelay, web_root: str, report: Report, values: Glucose) -> str:
    """The notice mailed to her citizen address about this report: no result in it; its link."""
    def the_mail() -> EmailMessage | None:
        rows = [n for n in notifications(settings, f"Task/{report.task_id}")
                if n.target == CITIZEN and n.resource == f"DocumentReference/{report.document_id}"]
        return next((m for m in mail_relay.to(CITIZEN) for n in rows
                     if m["Message-ID"].startswith(f"<outbox-{n.id}@")), None)

    text = text_of(eventually(the_mail, 15, "the patient's notice"))
    now = values.shown(values.now).split()[0]
    for medical in ("Glyc", "glucose", GLUCOSE[0], "mmol", now, now.replace(",", "."), "Dupont", "DUPONT"):
        assert medical not in text, medical
    link = re.search(rf"{re.escape(web_root)}/patient/\S*", text)
    assert link, text
    return link.group(0)


def prescriber_reads(new_page: Callable[..., Page], shots: Any, issuer: str, web_root: str, link: str,
                     viewport: tuple[int, int], values: Glucose) -> None:
    doctor = new_page(viewport)
    doctor.goto(link)  # logged out
    doctor.wait_for_url(f"{issuer}/interaction/**")
    checked(doctor, shots, "prescriber-login")
    doctor.fill("input[name=login]", "dr.lambert")
    doctor.fill("input[name=password]", "demo")
    doctor.click("button[type=submit]")
    doctor.wait_for_url(link)  # back where the mail led, not on the home page
    found = doctor.locator("#resultats")
    expect(found).to_contain_text("1 résultat hors normes")
    row = found.locator("tbody tr").first
    expect(row.locator("td").nth(0)).to_have_text(values.shown(values.now))
    expect(row.locator("td").nth(1)).to_contain_text("H")
    expect(row.locator("td").nth(3)).to_have_text(f"{values.shown(values.before)} le {values.before_when[8:10]}/12/2026")
    checked(doctor, shots, "prescriber-prescription")

    doctor.get_by_role("link", name="tous ses résultats").click()
    expect(doctor.get_by_role("heading", level=1)).to_contain_text("DUPONT")
    checked(doctor, shots, "prescriber-patient")
    doctor.locator("tbody th a", has_text="Glyc").first.click()
    expect(doctor.locator("svg.trend")).to_be_visible()
    table = doctor.locator("table").last
    expect(table).to_contain_text(values.shown(values.now))
    expect(table).to_contain_text(values.shown(values.before))
    checked(doctor, shots, "prescriber-trend")


def report_line(page: Page, report: Report) -> Any:
    return page.locator(f"#cr-{report.document_id}")


def patient_reads(patient: Page, shots: Any, link: str, report: Report, width: int, values: Glucose) -> str:
    """From the notice's link to her report and back; the archive she downloads (its path)."""
    patient.goto(link)
    expect(patient.locator(f"#commande-{report.task_id}")).to_have_count(0)  # reported: no longer in progress
    line = report_line(patient, report)
    expect(line).to_contain_text("Nouveau")
    checked(patient, shots, "patient-new-report", width)

    line.get_by_role("link", name=re.compile("^Voir le compte rendu")).click()
    patient.wait_for_url(f"**/patient/comptes-rendus/{report.document_id}")
    body = patient.locator("main")
    expect(body).to_contain_text("Laboratoire Bilan Paris Est")
    expect(body).to_contain_text(values.shown(values.now))
    expect(body).to_contain_text("Haut, hors normes")
    expect(body.locator("dd").filter(has_text=report.prescriber).first).to_be_visible()
    checked(patient, shots, "patient-report", width)

    patient.get_by_role("link", name="Retour à mes comptes rendus").click()
    patient.wait_for_url("**/patient/#cr-titre")
    expect(report_line(patient, report)).to_be_visible()
    expect(report_line(patient, report)).not_to_contain_text("Nouveau")
    checked(patient, shots, "patient-report-read", width)

    with patient.expect_download() as download:
        patient.get_by_role("link", name="Télécharger toutes mes données").click()
    assert download.value.suggested_filename.endswith(".zip")
    return str(download.value.path())


def archive_checked(path: str, report: Report, values: Glucose) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every PDF and CDA readable, hers among them; the FHIR Bundle a valid R4B one. The
    collection and the import transaction."""
    archive = zipfile.ZipFile(path)
    files = report_files(archive)
    assert files.get(report.document_id) == {"pdf", "xml"}, files
    for name in archive.namelist():
        data = archive.read(name)
        if name.endswith(".pdf"):
            assert data.startswith(b"%PDF-") and pages(data) >= 1, name
            if report.document_id in name:
                assert "Glycémie" in pdf_text(data) and values.shown(values.now)[:4] in pdf_text(data)
        elif name.endswith(".xml"):
            root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
            assert root.tag == f"{{{V3}}}ClinicalDocument", name
    collection = json.loads(archive.read("fhir/dossier.json"))
    parsed = Bundle.model_validate(collection)
    assert parsed.type == "collection"
    assert report.document_id in {d["id"] for d in resources(collection, "DocumentReference")}
    assert any(o.get("valueQuantity", {}).get("value") == values.now for o in resources(collection, "Observation"))
    transaction = json.loads(archive.read("fhir/import.json"))
    assert Bundle.model_validate(transaction).type == "transaction"
    return collection, transaction


def imported_again(fresh: str, issuer: str, web_root: str, collection: dict[str, Any],
                   transaction: dict[str, Any]) -> None:
    """The import Bundle into a fresh bilan: the same reports and results come back."""
    with client(fresh, user_auth(issuer, "bio.durand", f"{web_root}/auth/callback")) as there:
        answer = post_bundle(there, transaction)
        assert answer.status_code == 200, answer.text[:2000]
        assert all(e["response"]["status"].startswith("201") for e in answer.json()["entry"])
        [patient] = search(there, "Patient", identifier=f"{DUPONT.ins_system}|{DUPONT.ins}")["entry"]
        subject = f"Patient/{patient['resource']['id']}"
        reports = search(there, "DocumentReference", patient=subject, status="current", _count=500)
        observations = search(there, "Observation", patient=subject, _count=2000)
    assert reports["total"] == len(resources(collection, "DocumentReference"))
    assert results([e["resource"] for e in observations.get("entry", [])]) == \
        results(resources(collection, "Observation"))


def trail_lines(page: Page) -> list[str]:
    return [" ".join(t.split()) for t in page.locator("ul.trail li").all_inner_texts()]


def patient_reads_her_trail(patient: Page, shots: Any, width: int, report: Report) -> None:
    patient.get_by_role("link", name="Qui a consulté mes données ?").click()
    patient.wait_for_url("**/patient/acces")
    lines = trail_lines(patient)
    assert any(line.startswith("Vous vous êtes connecté(e)") for line in lines), lines
    consulted = [line for line in lines if line.startswith(f"{report.prescriber} a consulté ")]
    assert consulted, lines
    assert not any(re.search(r"Vous (a|s'est) |\bdes données\b", line) for line in lines), lines
    checked(patient, shots, "patient-trail", width)

    patient.get_by_label("Les accès des professionnels seulement").check()
    patient.get_by_role("button", name="Afficher").click()
    patient.wait_for_url("**/patient/acces?qui=professionnels")
    professionals = trail_lines(patient)
    assert professionals and not any(line.startswith("Vous") for line in professionals), professionals
    assert any(line.startswith(f"{report.prescriber} a consulté ") for line in professionals), professionals
    checked(patient, shots, "patient-trail-professionals", width)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_result_reaches_its_prescriber_and_its_patient_who_takes_it_elsewhere(
        viewport: tuple[int, int], fhir, lab_middleware, desk, biologist, web_root, issuer, settings, mail_relay,
        new_page, page_as, shots, fresh_bilan, rng) -> None:  # noqa: F811  (fresh_bilan: a fixture)
    values, width = RUNS[viewport], viewport[0]
    task_id = ordered(fhir, lab_middleware, desk, biologist, web_root, rng, values)

    patient = page_as("patient.dupont", viewport=viewport)
    checked(patient, shots, "patient-home", width)
    patient.get_by_role("link", name="Mes résultats").click()
    waiting = patient.locator(f"#commande-{task_id}")
    expect(waiting).to_contain_text("En cours")
    expect(waiting).to_contain_text("Reçue au laboratoire")
    checked(patient, shots, "patient-order-in-progress", width)

    report = issued(fhir, lab_middleware, biologist, web_root, task_id, values)
    prescriber_reads(new_page, shots, issuer, web_root, prescriber_link(fhir, mail_relay, web_root, report),
                     viewport, values)

    archive = patient_reads(patient, shots, patient_notice(settings, mail_relay, web_root, report, values), report, width,
                            values)
    imported_again(fresh_bilan, issuer, web_root, *archive_checked(archive, report, values))
    patient_reads_her_trail(patient, shots, width, report)
