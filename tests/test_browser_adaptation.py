"""The biologist adapts a prescription and the lab and the prescriber talk about it, in real
browsers: the lab's page in one browser context, the prescriber's in another, as two people on
two computers (see test_messaging.py for the same rules over plain HTTP)."""

import re

import httpx
from playwright.sync_api import Locator, Page, expect

from bilan.demo.prescriptions import EXAMS
from tests.browser import TABLET, tab_to
from tests.orders import adapt, adaptations, addressed, answer_of, imported, prescribed
from tests.receivers import eventually

NFS, CRP, FERRITIN = EXAMS[0], EXAMS[5], EXAMS[9]
PENDING = "En attente de l'accord du prescripteur"


def test_a_replacement_is_proposed_then_accepted_by_the_prescriber(
        page_as, shots, fhir: httpx.Client, desk: httpx.Client, web_root: str, rng) -> None:
    spec = addressed(rng, exams=[NFS, FERRITIN])
    task_id = imported(fhir, desk, web_root, spec)
    ferritin = prescribed(fhir, task_id, FERRITIN[0])
    lab = page_as("bio.durand")
    lab.goto(f"/reception/prescriptions/{task_id}")
    expect(lab.get_by_role("heading", name="Adapter la prescription")).to_be_visible()
    expect(lab.locator("#echanges")).to_contain_text("Aucun message pour l'instant.")
    shots(lab, "imported")

    lab.locator("#change").select_option(label="Remplacement")
    lab.locator("#original").select_option(label=FERRITIN[1])
    lab.locator("#code").select_option(label=CRP[1])
    lab.locator("#note").fill("Syndrome inflammatoire ? La ferritine n'aide pas ici.")
    with lab.expect_response(lambda r: r.url.endswith("/adaptation")) as refused:
        propose(lab)
    assert refused.value.status == 422
    reason = lab.locator("#reason")
    expect(field_of(reason).locator(".field-error")).to_have_text("Choisissez le motif de l'adaptation.")
    # What was chosen is still there: only the reason is left to give.
    expect(lab.locator("#change")).to_have_value("replace")
    expect(lab.locator("#original")).to_have_value(f"ServiceRequest/{ferritin['id']}")
    expect(lab.locator("#code")).to_have_value("CRP")
    expect(lab.locator("#note")).to_have_value(re.compile("^Syndrome inflammatoire"))
    shots(lab, "reason-missing")

    reason.select_option(label="Justifié par le contexte clinique")
    propose(lab)
    lab.wait_for_url("**#echanges")
    row = change_row(lab, "Remplacement")
    expect(row.locator("td")).to_have_text([re.compile("^Remplacement"), FERRITIN[1], CRP[1],
                                            re.compile("^Justifié par le contexte clinique.*ferritine"), PENDING])
    expect(row.locator("form")).to_have_count(0)  # only the prescriber answers
    expect(lab.get_by_role("article", name="Adaptation de la prescription")).to_contain_text(
        "remplacement de « Ferritine » par « Protéine C réactive (CRP) »")
    expect(lab.locator("#envois tbody")).to_contain_text("Messagerie sécurisée")  # the prescriber is told
    shots(lab, "proposed")
    [change] = adaptations(fhir, ferritin)
    assert change["status"] == "draft" and answer_of(change) == "pending"

    doctor = page_as("dr.lambert")
    doctor.goto("/prescripteur")
    mine = doctor.locator("tbody tr").filter(has_text=spec.requisition)
    expect(mine.locator(".badge.warn")).to_have_text("Adaptation en attente de l'accord du prescripteur")
    shots(doctor, "prescriptions")
    mine.get_by_role("link", name=spec.requisition).click()
    expect(doctor.get_by_role("heading", level=1)).to_have_text(f"Prescription n° {spec.requisition}")
    asked = change_row(doctor, "Remplacement")
    expect(asked).to_contain_text(PENDING)
    expect(asked).to_contain_text("La ferritine n'aide pas ici.")
    shots(doctor, "prescription")
    asked.get_by_label("Commentaire").fill("D'accord, CRP plutôt.")
    asked.get_by_role("button", name="J'accepte").click()
    doctor.wait_for_url("**#echanges")
    expect(change_row(doctor, "Remplacement").locator(".badge")).to_have_text("Accord du prescripteur")
    expect(doctor.get_by_role("button", name="J'accepte")).to_have_count(0)
    expect(doctor.get_by_role("article", name="Accord", exact=True)).to_contain_text("D'accord, CRP plutôt.")
    shots(doctor, "accepted")

    lab.reload()
    expect(change_row(lab, "Remplacement").locator(".badge")).to_have_text("Accord du prescripteur")
    answer = lab.get_by_role("article", name="Accord", exact=True)
    expect(answer).to_contain_text("Prescripteur")
    expect(answer).to_contain_text("D'accord, CRP plutôt.")
    shots(lab, "answer-seen")
    change = fhir.get(f"ServiceRequest/{change['id']}").json()
    assert change["status"] == "active" and answer_of(change) == "agreed"


def test_the_prescriber_refuses_a_cancellation_with_the_keyboard_on_a_tablet(
        page_as, shots, fhir: httpx.Client, desk: httpx.Client, biologist: httpx.Client, web_root: str,
        rng) -> None:
    spec = addressed(rng, exams=[NFS, CRP])
    task_id = imported(fhir, desk, web_root, spec)
    crp = prescribed(fhir, task_id, CRP[0])
    adapt(biologist, web_root, task_id, change="cancel", original=f"ServiceRequest/{crp['id']}",
          reason="redundant", note="CRP faite hier au laboratoire.")
    doctor = page_as("dr.lambert", viewport=TABLET)
    doctor.goto("/prescripteur")
    shots(doctor, "prescriptions")

    tab_to(doctor, f"a:text-is('{spec.requisition}')")
    doctor.keyboard.press("Enter")
    doctor.wait_for_url(f"**/prescripteur/prescriptions/{task_id}")
    row = change_row(doctor, "Annulation")
    expect(row).to_contain_text("CRP faite hier au laboratoire.")
    tab_to(doctor, "#echanges textarea[id^=commentaire-]")
    doctor.keyboard.type("Je préfère la refaire : contrôle à J3.")
    doctor.keyboard.press("Tab")
    expect(row.get_by_role("button", name="J'accepte")).to_be_focused()
    doctor.keyboard.press("Tab")
    refuse = row.get_by_role("button", name="Je refuse")
    expect(refuse).to_be_focused()
    shots(doctor, "refusal-focused")
    doctor.keyboard.press("Enter")

    doctor.wait_for_url("**#echanges")
    expect(change_row(doctor, "Annulation").locator(".badge")).to_have_text("Désaccord du prescripteur")
    refusal = doctor.get_by_role("article", name="Désaccord", exact=True)
    expect(refusal).to_contain_text("Je préfère la refaire : contrôle à J3.")
    shots(doctor, "refused")
    [change] = adaptations(fhir, crp)
    assert change["status"] == "active" and answer_of(change) == "disagreed"  # the CRP will be done

    lab = page_as("bio.durand", viewport=TABLET)
    lab.goto(f"/reception/prescriptions/{task_id}")
    expect(change_row(lab, "Annulation").locator(".badge")).to_have_text("Désaccord du prescripteur")
    expect(lab.get_by_role("article", name="Désaccord", exact=True)).to_contain_text("contrôle à J3")
    shots(lab, "refusal-seen-at-the-lab")


def test_the_front_desk_writes_in_the_thread_but_does_not_adapt(
        page_as, shots, fhir: httpx.Client, desk: httpx.Client, web_root: str, mail_relay, rng) -> None:
    spec = addressed(rng, exams=[NFS])
    task_id = imported(fhir, desk, web_root, spec)
    lab = page_as("accueil.martin")
    lab.goto(f"/reception/prescriptions/{task_id}")
    expect(lab.get_by_role("heading", name="Échanges avec le prescripteur")).to_be_visible()
    expect(lab.get_by_text("Adapter la prescription")).to_have_count(0)
    expect(lab.locator("#change")).to_have_count(0)

    lab.get_by_role("button", name="Envoyer").click()  # nothing written yet
    box = lab.locator("#texte")
    expect(lab.locator("#texte-erreur")).to_have_text("Écrivez votre message.")
    expect(box).to_have_attribute("aria-describedby", "texte-erreur")
    shots(lab, "empty-message")
    box.fill("Le patient viendra à jeun demain matin.\nTube supplémentaire prévu.")
    lab.get_by_role("button", name="Envoyer").click()
    lab.wait_for_url("**#echanges")
    sent = lab.get_by_role("article", name="Message", exact=True)
    expect(sent).to_contain_text("Laboratoire")
    expect(sent).to_contain_text("Le patient viendra à jeun demain matin.")
    shots(lab, "message-sent")

    doctor = page_as("dr.lambert")
    doctor.goto(f"/prescripteur/prescriptions/{task_id}")
    received = doctor.get_by_role("article", name="Message", exact=True)
    expect(received).to_contain_text("Laboratoire")
    expect(received).to_contain_text("Tube supplémentaire prévu.")
    expect(doctor.locator("#echanges table")).to_have_count(0)  # no adaptation to answer
    shots(doctor, "message-received")
    eventually(lambda: any(spec.requisition in m["Subject"] for m in mail_relay.to(mail_of(fhir, task_id))),
               what="the mail telling the prescriber")


def test_enter_in_the_comment_box_does_not_answer(
        page_as, fhir: httpx.Client, desk: httpx.Client, biologist: httpx.Client, web_root: str, rng) -> None:
    spec = addressed(rng, exams=[NFS, CRP])
    task_id = imported(fhir, desk, web_root, spec)
    crp = prescribed(fhir, task_id, CRP[0])
    adapt(biologist, web_root, task_id, change="cancel", original=f"ServiceRequest/{crp['id']}", reason="redundant")
    doctor = page_as("dr.lambert", viewport=TABLET)
    doctor.goto(f"/prescripteur/prescriptions/{task_id}")
    comment = change_row(doctor, "Annulation").get_by_label("Commentaire")
    comment.fill("Non, je refuse : à refaire.")
    comment.press("Enter")  # as a person ends a sentence; a choice is made with the buttons
    doctor.wait_for_load_state()
    [change] = adaptations(fhir, crp)
    assert answer_of(change) == "pending", "Enter alone answered the adaptation"


def test_the_pages_fit_their_width(page_as, fhir: httpx.Client, desk: httpx.Client, biologist: httpx.Client,
                                   web_root: str, rng) -> None:
    spec = addressed(rng, exams=[NFS, CRP])
    task_id = imported(fhir, desk, web_root, spec)
    adapt(biologist, web_root, task_id, change="add", code="TNT", reason="protocol")
    widths = {}  # what a box needs, what it has
    lab = page_as("bio.durand")
    lab.goto(f"/reception/prescriptions/{task_id}")
    for width, height in [(1280, 800), TABLET]:
        lab.set_viewport_size({"width": width, "height": height})
        widths[f"lab page at {width} px"] = lab.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        for control in ["#change", "#original", "#code", "#reason"]:
            widths[f"{control} at {width} px"] = lab.locator(control).evaluate(
                "e => [e.getBoundingClientRect().right, e.parentElement.getBoundingClientRect().right]")
    doctor = page_as("dr.lambert", viewport=TABLET)
    doctor.goto("/prescripteur")
    widths["prescriber list at 768 px"] = doctor.locator(".card.scroll").evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert all(needs <= has for needs, has in widths.values()), widths


def propose(page: Page) -> None:
    page.get_by_role("button", name="Proposer l'adaptation").click()


def field_of(control: Locator) -> Locator:
    """The block of a form control: its label, the control and its error message."""
    return control.locator("xpath=..")


def change_row(page: Page, kind: str) -> Locator:
    """The adaptations table's row for a change of this kind (Ajout, Annulation, Remplacement)."""
    rows = page.locator("#echanges tbody tr").filter(has=page.locator("td:first-child", has_text=kind))
    expect(rows).to_have_count(1)
    return rows


def mail_of(fhir: httpx.Client, task_id: str) -> str:
    """The e-mail address of the prescription's prescriber."""
    requester = fhir.get(f"Task/{task_id}").json()["requester"]["reference"]
    practitioner = fhir.get(fhir.get(requester).json()["practitioner"]["reference"]).json()
    return next(t["value"] for t in practitioner["telecom"] if t["system"] == "email")

