"""Accessibility in a real browser: every page of every role, with data on it, at desktop and
phone widths, has no critical or serious WCAG 2.1 A/AA violation that axe-core finds; the
report viewer (the ANS stylesheet's page) too. And what axe cannot see: a skip link to the
content, the focus on the first refused field after a failed form, and a visible confirmation
after each action that changes an order (import, answer, validation, release, report)."""

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import assert_accessible
from tests.orders import adapt, addressed, imported, prescribed, send, task_of
from tests.people import DUPONT
from tests.results import GLUCOSE, documents, glucose, posted, reported, result

DESKTOP, PHONE = (1280, 900), (375, 812)
CRP = ("1988-5", "Protéine C réactive (CRP)")


@dataclass(frozen=True)
class World:
    received: str  # a prescription waiting at the desk (identity check and import)
    open: str  # imported, an analyser's result to validate, an adaptation awaiting the prescriber
    reported: str  # Marie Dupont's, validated and issued
    document: str  # its report's DocumentReference


@pytest.fixture(scope="module")
def world(fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client, biologist: httpx.Client,
          web_root: str, rng_module) -> World:
    waiting = addressed(rng_module, exams=[GLUCOSE])
    send(fhir, waiting)
    open_task = imported(fhir, desk, web_root, addressed(rng_module, exams=[GLUCOSE, CRP]))
    posted(lab_middleware, result(prescribed(fhir, open_task, GLUCOSE[0]), GLUCOSE[0], 1.6, "mmol/L"))
    crp = prescribed(fhir, open_task, CRP[0])
    adapt(biologist, web_root, open_task, change="cancel", original=f"ServiceRequest/{crp['id']}",
          reason="redundant", note="CRP faite hier au laboratoire.")
    done, _ = reported(fhir, lab_middleware, desk, biologist, web_root, rng_module, [GLUCOSE],
                       {GLUCOSE[0]: glucose(7.3)}, "2026-11-24T08:10:00+01:00")
    return World(task_of(fhir, waiting.requisition)["id"], open_task, done, documents(fhir, done)[-1]["id"])


def pages_of(role: str, world: World) -> list[str]:
    """The pages a role has, by path (those that need a link from another page are followed there)."""
    lab = [f"/reception/prescriptions/{world.open}", f"/reception/prescriptions/{world.open}/resultats",
           f"/reception/prescriptions/{world.reported}/resultats", f"/reception/prescriptions/{world.open}/fiche",
           "/reception", "/reception?statut=imported", "/reception/a-traiter", f"/documents/{world.document}"]
    return {
        "accueil.martin": ["/", f"/reception/prescriptions/{world.received}", *lab],
        "tech.bernard": ["/", *lab, f"/reception/prescriptions/{world.open}/saisie"],
        "bio.durand": ["/", *lab, f"/reception/prescriptions/{world.open}/saisie",
                       f"/reception/prescriptions/{world.open}/dmp"],
        "dr.lambert": ["/", "/prescripteur/", f"/prescripteur/prescriptions/{world.open}",
                       f"/prescripteur/prescriptions/{world.reported}", "patient", "trend",
                       f"/documents/{world.document}"],
        "patient.dupont": ["/", "/patient/", "/patient/analyses", "trend", "/patient/acces",
                           f"/documents/{world.document}", f"/patient/comptes-rendus/{world.document}",
                           "/page-qui-n-existe-pas", "/reception"],
    }[role]


def visit(page: Page, path: str, world: World) -> None:
    if path == "patient":  # the prescriber's page of a patient, from his prescription
        page.goto(f"/prescripteur/prescriptions/{world.reported}")
        page.get_by_role("link", name="tous ses résultats").click()
    elif path == "trend" and "/prescripteur" in page.url:
        page.locator("tbody th a").first.click()
    elif path == "trend":
        page.goto("/patient/analyses")
        page.locator("#analyses a").first.click()
    else:
        page.goto(path)
    page.wait_for_load_state("networkidle")


def check_all(page: Page, paths: list[str], world: World, shots: Any, label: str) -> None:
    """Every page checked, every failure reported together."""
    failures = []
    for path in paths:
        visit(page, path, world)
        shots(page, f"{label}-{path.strip('/') or 'accueil'}")
        try:
            assert_accessible(page, f"{label} {path}")
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("role", ["accueil.martin", "tech.bernard", "bio.durand", "dr.lambert", "patient.dupont"])
def test_every_page_of_every_role_passes_axe(role: str, viewport: tuple[int, int], world: World, page_as,
                                             shots) -> None:
    page = page_as(role, viewport=viewport)
    check_all(page, pages_of(role, world), world, shots, role)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_pages_seen_logged_out_pass_axe(viewport: tuple[int, int], world: World, new_page, shots) -> None:
    page = new_page(viewport)
    check_all(page, ["/", "/patient/", "/page-qui-n-existe-pas", "/auth/login"], world, shots, "anonyme")



def test_the_report_viewer_speaks_french_names_its_images_links_its_pdf_and_leads_back(
        world: World, page_as, shots) -> None:
    page = page_as("dr.lambert")
    refused = []  # what the page's Content-Security-Policy blocks shows in the console
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text
            else None)
    page.goto(f"/prescripteur/prescriptions/{world.reported}")
    with page.expect_navigation() as opened:
        page.locator("#compte-rendu").get_by_role("link", name="voir").first.click()
    headers = opened.value.headers if opened.value else {}
    assert headers["content-security-policy"].startswith("default-src 'none'")  # still the strict policy
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page).to_have_title("Compte rendu d'examens biologiques — bilan")
    expect(page.locator("body")).to_contain_text("Glycémie à jeun")
    assert page.locator("img").count() >= 1
    assert page.locator("img:not([alt])").count() == 0
    expect(page.locator("object, embed, iframe")).to_have_count(0)
    pdf_link = page.get_by_role("link", name="Ouvrir la copie PDF du compte rendu")
    expect(pdf_link).to_have_attribute("href", f"/documents/{world.document}/compte-rendu.pdf")
    pdf = page.request.get(pdf_link.get_attribute("href") or "")
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf" and pdf.body().startswith(b"%PDF-")
    assert_accessible(page, "report viewer")
    shots(page, "report")
    assert not refused, refused

    page.get_by_role("link", name="← Retour").click()
    page.wait_for_url(f"**/prescripteur/prescriptions/{world.reported}")


def test_a_report_opened_from_elsewhere_leads_back_home(world: World, page_as) -> None:
    page = page_as("patient.dupont", viewport=PHONE)
    page.goto(f"/documents/{world.document}")  # typed, or from a mail: no page of bilan before
    expect(page.get_by_role("link", name="← Retour")).to_have_attribute("href", "/")


@pytest.mark.parametrize("role, path", [("patient.dupont", "/patient/"), ("accueil.martin", "/reception/a-traiter")])
def test_the_first_tab_offers_to_skip_to_the_content(role: str, path: str, page_as) -> None:
    page = page_as(role, viewport=PHONE)
    page.goto(path)
    page.locator("body").focus()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Aller au contenu")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()  # hidden until focused, then seen
    page.keyboard.press("Enter")
    expect(page.locator("main#contenu")).to_be_focused()
    page.keyboard.press("Tab")  # the next stop is in the content, not the header's logout
    assert page.evaluate("document.querySelector('main').contains(document.activeElement)")


def test_after_a_refused_form_the_focus_is_on_the_first_error(
        world: World, fhir: httpx.Client, desk: httpx.Client, web_root: str, page_as, shots, rng) -> None:
    # Reception: a second lab file for a patient who has one (her INS) is refused.
    duplicate = addressed(rng, exams=[GLUCOSE], patient=DUPONT)
    send(fhir, duplicate)
    reception = page_as("accueil.martin")
    reception.goto(f"/reception/prescriptions/{task_of(fhir, duplicate.requisition)['id']}")
    reception.get_by_label("Créer un nouveau dossier").check()
    reception.get_by_role("button", name="Importer la prescription").click()
    expect(reception.locator("#dossier-erreur")).to_contain_text("porte déjà cet INS")
    expect(reception.locator("input[name=dossier]:focus")).to_have_count(1)
    shots(reception, "import-refused")

    # Result entry: a value that is no number.
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    value = f"#valeur-{prescribed(fhir, task_id, GLUCOSE[0])['id']}-{GLUCOSE[0]}"
    technician = page_as("tech.bernard")
    technician.goto(f"/reception/prescriptions/{task_id}/saisie")
    technician.locator(value).fill("beaucoup")
    technician.get_by_role("button", name="Enregistrer les résultats").click()
    expect(technician.locator(value)).to_be_focused()
    expect(technician.locator(value)).to_have_attribute("aria-invalid", "true")

    # Validation with nothing ticked: the focus on the boxes to tick.
    technician.goto(f"/reception/prescriptions/{world.open}/resultats")
    technician.get_by_role("button", name="Validation technique").click()
    expect(technician.locator("#resultats-erreur")).to_be_visible()
    expect(technician.locator("input[name=resultats]").first).to_be_focused()

    # The prescriber's empty message.
    doctor = page_as("dr.lambert")
    doctor.goto(f"/prescripteur/prescriptions/{world.open}")
    doctor.locator("#echanges").get_by_role("button", name="Envoyer").click()
    expect(doctor.locator("#texte-erreur")).to_be_visible()
    expect(doctor.locator("#texte")).to_be_focused()

    # The patient's e-mail address.
    patient = page_as("patient.dupont", viewport=PHONE)
    patient.goto("/patient/")
    patient.get_by_label("Adresse électronique").fill("pas-une-adresse")
    patient.get_by_role("button", name="Enregistrer").click()
    expect(patient.get_by_label("Adresse électronique")).to_be_focused()
    shots(patient, "address-refused")


def confirmed(page: Page, text: str) -> None:
    """The page says the action went through, where the person is looking."""
    status = page.get_by_role("status").filter(has_text=text)
    expect(status).to_be_visible()
    expect(status).to_be_in_viewport()


def test_each_action_that_changes_an_order_says_it_went_through(
        fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client, biologist: httpx.Client,
        web_root: str, page_as, shots, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE, CRP])
    send(fhir, spec)
    task_id = task_of(fhir, spec.requisition)["id"]
    reception = page_as("accueil.martin", viewport=PHONE)
    reception.goto(f"/reception/prescriptions/{task_id}")
    expect(reception.get_by_role("status")).to_have_count(0)  # nothing done yet: nothing said
    reception.get_by_label("Créer un nouveau dossier").check()
    reception.get_by_role("button", name="Importer la prescription").click()
    confirmed(reception, "Prescription importée.")
    shots(reception, "imported")

    crp = prescribed(fhir, task_id, CRP[0])
    adapt(biologist, web_root, task_id, change="cancel", original=f"ServiceRequest/{crp['id']}", reason="redundant")
    doctor = page_as("dr.lambert")
    doctor.goto(f"/prescripteur/prescriptions/{task_id}")
    doctor.get_by_role("button", name="J'accepte").click()
    confirmed(doctor, "Réponse envoyée au laboratoire.")
    shots(doctor, "answered")

    found = posted(lab_middleware, result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 5.2, "mmol/L"))
    technician = page_as("tech.bernard")
    technician.goto(f"/reception/prescriptions/{task_id}/resultats")
    technician.locator(f"#r-{found}").check()
    technician.get_by_role("button", name="Validation technique").click()
    confirmed(technician, "Validation technique enregistrée.")

    lab = page_as("bio.durand", viewport=PHONE)
    lab.goto(f"/reception/prescriptions/{task_id}/resultats")
    lab.locator(f"#r-{found}").check()
    lab.get_by_role("button", name="Validation biologique").click()
    confirmed(lab, "Validation biologique enregistrée.")
    lab.get_by_label("Glycémie").last.check()  # hidden from the patient until her doctor has seen her
    lab.get_by_role("button", name="Émettre le compte rendu").click()
    confirmed(lab, "Compte rendu validé et envoyé.")
    shots(lab, "issued")

    doctor.goto(f"/prescripteur/prescriptions/{task_id}")
    expect(doctor.get_by_role("status")).to_have_count(0)  # said once, on the page the action led to
    doctor.get_by_role("button", name="J'ai annoncé les résultats").click()
    confirmed(doctor, "Masquage levé : le patient voit ses résultats.")
    shots(doctor, "released")


def test_a_made_up_confirmation_says_nothing(world: World, page_as) -> None:
    page = page_as("accueil.martin")
    page.goto(f"/reception/prescriptions/{world.open}?fait=%3Cscript%3Ealert(1)%3C/script%3E")
    expect(page.get_by_role("status")).to_have_count(0)
    assert "<script>alert" not in page.content()
