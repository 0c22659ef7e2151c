"""The lab's front desk in a real browser: find a prescription as a barcode scanner types its
number, check the patient's identity, import it, print the labels and the sheet, record the
sampling; and what the prescriber's software then sees of it."""

import random
import re
from urllib.parse import urljoin

import httpx
import pypdfium2 as pdfium
import zxingcpp
from playwright.sync_api import Page, expect

from bilan.demo.load import LAB_IDENTIFIER
from bilan.demo.prescriptions import REQUISITION_SYSTEM, PrescriptionSpec, bundle
from bilan.prescription.identity import fold
from tests.browser import TABLET, tab_to
from tests.helpers import post_bundle, prescription_spec, search

PRESCRIPTION_PAGE = re.compile(r"/reception/prescriptions/[^/?#]+$")
# Accented birth names none of the demo's random names (patients, prescribers) start like.
ACCENTED = ["Hébrard", "Thévenet", "Séguin", "Ménard", "Béranger", "Génin", "Frémont"]


def test_scan_check_identity_import_print_and_collect(page_as, shots, fhir: httpx.Client, rng) -> None:
    spec = posted(fhir, addressed_spec(rng))
    page = page_as("accueil.martin")

    page.goto("/reception")
    search_box = page.locator("#q")
    expect(search_box).to_be_focused()
    search_box.press_sequentially(spec.requisition)  # a scanner types the number key by key
    shots(page, "number-scanned")
    search_box.press("Enter")
    page.wait_for_url(PRESCRIPTION_PAGE)
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Prescription n° {spec.requisition}")
    expect(page.locator(".urgent-banner")).to_be_visible()
    expect(page.locator(".badge.urgent")).to_have_count(len(spec.urgent))
    expect(page.get_by_text("Aucun dossier du laboratoire ne porte cet INS")).to_be_visible()
    shots(page, "prescription")

    page.get_by_label("Créer un nouveau dossier").check()
    page.get_by_role("button", name="Importer la prescription").click()
    accession = order_accession(page)
    barcodes = page.locator("#commande tbody tr td:first-child").all_inner_texts()
    assert barcodes and all(b.startswith(f"{accession}-") for b in barcodes), barcodes
    shots(page, "imported")

    labels = page.request.get(urljoin(page.url, link_href(page, "Imprimer les étiquettes")))
    assert labels.ok and labels.headers["content-type"] == "application/pdf"
    assert label_barcodes(labels.body()) == barcodes  # one label a tube, in the page's order

    page.get_by_role("link", name="Fiche de réception").click()
    page.wait_for_url("**/fiche")
    expect(page.locator("body")).to_contain_text(accession)
    expect(page.locator(".urgent")).to_have_text("URGENT")
    printing = page.get_by_role("button", name="Imprimer")
    expect(printing).to_be_visible()
    shots(page, "reception-sheet")
    page.emulate_media(media="print")
    expect(printing).to_be_hidden()
    shots(page, "reception-sheet-print")
    page.emulate_media(media="screen")

    page.get_by_role("link", name="Retour à la prescription").click()
    page.get_by_role("button", name="Prélèvements effectués").click()
    page.wait_for_url("**#commande")
    expect(page.locator("#commande .badge").first).to_have_text("Prélèvements effectués")
    expect(page.get_by_role("button", name="Prélèvements effectués")).to_have_count(0)
    shots(page, "collected")

    found = search(fhir, "Task", requisition=f"{REQUISITION_SYSTEM}|{spec.requisition}")
    [task] = [e["resource"] for e in found["entry"] if e["search"]["mode"] == "match"]
    assert task["status"] == "in-progress"
    assert [i["value"] for i in task["identifier"]] == [accession]


def test_typing_a_name_filters_the_list_in_place(page_as, shots, fhir: httpx.Client, rng) -> None:
    spec = addressed_spec(rng)
    spec.patient.family = rng.choice(ACCENTED)
    posted(fhir, spec)
    other = posted(fhir, addressed_spec(rng))  # newer, so listed first until the filter hides it
    page = page_as("accueil.martin")
    page.goto("/reception")
    results = page.locator("#resultats")
    expect(results).to_contain_text(spec.requisition)
    expect(results).to_contain_text(other.requisition)
    shots(page, "worklist")
    start = page.url
    page.evaluate("window.stillTheSamePage = true")  # gone if the browser loaded a page

    prefix = fold(spec.patient.family)[:4]  # as typed: lower case, no accent
    assert prefix != spec.patient.family[:4].lower()
    with page.expect_response(lambda r: "q=" + prefix in r.url and r.request.headers.get("hx-request") == "true"):
        page.locator("#q").press_sequentially(prefix, delay=50)
    expect(results).not_to_contain_text(other.requisition)
    expect(results).to_contain_text(spec.requisition)
    assert page.url == start
    assert page.evaluate("window.stillTheSamePage") is True
    shots(page, "filtered")


def test_import_with_the_keyboard_alone_on_a_tablet(page_as, shots, fhir: httpx.Client, rng) -> None:
    spec = posted(fhir, addressed_spec(rng))
    page = page_as("accueil.martin", viewport=TABLET)
    page.goto("/reception")
    expect(page.locator("#q")).to_be_focused()

    page.keyboard.type(spec.requisition)
    expect(page.locator("#resultats caption")).to_contain_text("1 prescription,")  # filtered live
    expect(page.locator("#resultats")).to_contain_text(spec.requisition)
    shots(page, "number-typed")
    page.keyboard.press("Enter")
    page.wait_for_url(PRESCRIPTION_PAGE)
    shots(page, "prescription")
    tab_to(page, "#dossier-nouveau")
    page.keyboard.press("Space")
    expect(page.locator("#dossier-nouveau")).to_be_checked()
    shots(page, "new-file-focused")
    tab_to(page, "button:text('Importer la prescription')")
    page.keyboard.press("Enter")

    order_accession(page)
    shots(page, "imported")


def test_a_second_prescription_joins_the_patients_file(page_as, shots, fhir: httpx.Client, rng) -> None:
    first = posted(fhir, addressed_spec(rng))
    second = addressed_spec(rng)
    second.patient = first.patient  # same person, same INS: the practice sends the same Patient
    posted(fhir, second)
    page = page_as("accueil.martin")

    open_prescription(page, first.requisition)
    page.get_by_label("Créer un nouveau dossier").check()
    page.get_by_role("button", name="Importer la prescription").click()
    order_accession(page)
    number = re.match(r"n° (P\d+)", page.locator("#commande dd").nth(1).inner_text()).group(1)

    open_prescription(page, second.requisition)
    candidate = page.get_by_label(f"Rattacher au dossier n° {number}")
    expect(candidate).to_be_checked()  # identical traits: proposed first
    expect(page.locator(f"label[for='{candidate.get_attribute('id')}']")).to_contain_text("Traits identiques")
    expect(page.get_by_role("table", name=f"Comparaison avec le dossier n° {number}")).to_be_visible()
    shots(page, "candidate-file")

    page.get_by_label("Créer un nouveau dossier").check()
    with page.expect_response(lambda r: r.url.endswith("/import")) as refused:
        page.get_by_role("button", name="Importer la prescription").click()
    assert refused.value.status == 409
    error = page.locator("#dossier-erreur")
    expect(error).to_contain_text(f"Le dossier n° {number} porte déjà cet INS")
    expect(page.locator("fieldset")).to_have_attribute("aria-describedby", "dossier-erreur")
    expect(page.locator("#commande")).to_have_count(0)
    shots(page, "second-file-refused")

    page.get_by_label(f"Rattacher au dossier n° {number}").check()
    page.get_by_role("button", name="Importer la prescription").click()
    order_accession(page)
    expect(page.locator("#commande dd").nth(1)).to_contain_text(f"n° {number} — ")
    shots(page, "imported-into-the-file")


def addressed_spec(rng: random.Random) -> PrescriptionSpec:
    """A fresh prescription to the demo lab, its first exam urgent."""
    spec = prescription_spec(rng)
    spec.lab = LAB_IDENTIFIER
    spec.urgent = {spec.exams[0][0]}
    return spec


def posted(fhir: httpx.Client, spec: PrescriptionSpec) -> PrescriptionSpec:
    response = post_bundle(fhir, bundle(spec))
    assert response.status_code == 200, response.text
    return spec


def open_prescription(page: Page, number: str) -> None:
    page.goto(f"/reception?q={number}")  # what Enter in the search box sends
    page.wait_for_url(PRESCRIPTION_PAGE)


def order_accession(page: Page) -> str:
    """The accession number of the order the page shows, once the import is done."""
    title = page.locator("#commande h2")
    expect(title).to_have_text(re.compile(r"Dossier de prélèvement n° \d{6}-\d{4}$"))
    return title.inner_text().rsplit(" ", 1)[-1]


def link_href(page: Page, name: str) -> str:
    href = page.get_by_role("link", name=name).get_attribute("href")
    assert href, name
    return href


def label_barcodes(pdf: bytes) -> list[str]:
    """What a scanner reads on each label, page by page (see test_labels.py)."""
    read = []
    for page in pdfium.PdfDocument(pdf):
        [found] = zxingcpp.read_barcodes(page.render(scale=10).to_pil().convert("L"))
        assert found.format == zxingcpp.BarcodeFormat.Code128
        read.append(found.text)
    return read


