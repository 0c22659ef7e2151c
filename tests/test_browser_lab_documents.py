"""The order's documents and the desk's judgement in real browsers (issue 13), as reception, the
technician and the biologist work them: an adapted order's labels printed again at the front
desk, an exam for the partner lab with its transfer slip and a report partial until its result
comes in, a woman's haemoglobin judged against women's ranges, the previous glucose found
across the lab's file and another prescriber's Patient. The same rules over plain HTTP:
test_documents_follow_order.py, test_reference_ranges.py, test_linked_history.py."""

import dataclasses
import re
from urllib.parse import urljoin

import httpx
import pypdfium2
from playwright.sync_api import Locator, Page, expect

from bilan.demo.load import LAB_IDENTIFIER, PARTNER_FINESS
from bilan.demo.prescriptions import EXAMS, PrescriptionSpec, random_person
from tests.helpers import number_from, search
from tests.orders import addressed, collected, imported, imported_for, prescribed, send, task_of
from tests.people import NGUYEN
from tests.results import GLUCOSE, UCUM, decide, documents, glucose_result, patient_aged, pdf_text, posted, result

NFS, IONO = EXAMS[0], EXAMS[8]
IGA = ("2458-8", "Immunoglobulines A")  # not in the catalogue: sent to the partner lab
HAEMOGLOBIN = "718-7"
PARTNER = "Laboratoire de biologie spécialisée Lyon Gerland"
REPRINT = "Étiquettes à réimprimer"
PENDING = "En attente de l'accord du prescripteur"
AGREED = "Accord du prescripteur"
TO_FOLLOW = (f"Immunoglobulines A : examen transmis au laboratoire partenaire {PARTNER} (FINESS {PARTNER_FINESS}), "
             "résultat à suivre.")
PRESCRIPTION_PAGE = re.compile(r"/reception/prescriptions/[^/?#]+(#\w+)?$")


def test_an_adapted_orders_labels_are_printed_again_at_reception(
        page_as, shots, fhir: httpx.Client, desk: httpx.Client, web_root: str, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[NFS, IONO]))
    reception = page_as("accueil.martin")
    reception.goto(f"/reception/prescriptions/{task_id}")
    serum = tube_row(reception, IONO[1]).locator("td").first.inner_text()
    first = labels(reception, "Imprimer les étiquettes")
    assert len(first) == 2 and any(IONO[1] in label for label in first), first
    reception.reload()
    expect(reception.locator("#reimpression")).to_have_count(0)
    shots(reception, "labels-printed")

    lab = page_as("bio.durand")
    lab.goto(f"/reception/prescriptions/{task_id}")
    propose(lab, "Remplacement", original=IONO[1], code="Acide urique", reason="Justifié par le contexte clinique",
            note="Goutte ? L'acide urique plutôt que le ionogramme.")
    propose(lab, "Ajout", code="Créatinine et DFG estimé", reason="Protocole ou recommandation")
    expect(change_row(lab, "Remplacement").locator("td")).to_have_text(
        [re.compile("^Remplacement"), IONO[1], "Acide urique", re.compile("^Justifié par le contexte clinique"),
         PENDING])
    expect(change_row(lab, "Ajout")).to_contain_text("Créatinine et DFG estimé")
    shots(lab, "replacement-and-addition-proposed")
    reception.reload()
    expect(reception.locator("#reimpression")).to_have_count(0)  # nothing in effect before the prescriber agrees

    doctor = page_as("dr.lambert")
    doctor.goto(f"/prescripteur/prescriptions/{task_id}")
    shots(doctor, "asked-to-agree")
    for kind in ("Remplacement", "Ajout"):
        change_row(doctor, kind).get_by_role("button", name="J'accepte").click()
        expect(change_row(doctor, kind).locator(".badge")).to_have_text(AGREED)
    expect(doctor.get_by_role("button", name="J'accepte")).to_have_count(0)
    shots(doctor, "both-agreed")

    reception.reload()
    notice = reception.locator("#reimpression")
    expect(notice).to_contain_text(REPRINT)
    expect(notice.locator("li")).to_have_text([f"{serum} — examens modifiés"])
    expect(tube_row(reception, "Acide urique")).to_contain_text("Créatinine et DFG estimé")
    expect(reception.locator("#commande tbody")).not_to_contain_text(IONO[1])
    shots(reception, "reprint-notice")

    reception.get_by_role("link", name="Fiche de réception").click()
    reception.wait_for_url("**/fiche")
    sheet = reception.locator("body")
    expect(sheet).to_contain_text("Acide urique")
    expect(sheet).to_contain_text("Créatinine et DFG estimé")
    expect(sheet).not_to_contain_text("Ionogramme")
    shots(reception, "reception-sheet")
    reception.get_by_role("link", name="Retour à la prescription").click()
    reception.wait_for_url(PRESCRIPTION_PAGE)

    again = labels(reception, "Réimprimer les étiquettes")
    assert len(again) == 2 and "Ionogramme" not in " ".join(again), again  # the same two tubes
    assert any("Acide urique, Créatinine" in label for label in again), again
    reception.reload()
    expect(reception.locator("#reimpression")).to_have_count(0)
    expect(reception.get_by_role("link", name="Imprimer les étiquettes")).to_be_visible()
    shots(reception, "labels-reprinted")


def test_a_partner_labs_exam_goes_with_its_slip_and_the_report_waits_for_its_result(
        page_as, shots, fhir: httpx.Client, lab_middleware: httpx.Client, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE, IGA])
    send(fhir, spec)
    reception = page_as("accueil.martin")
    reception.goto(f"/reception?q={spec.requisition}")  # what a scan and Enter send
    reception.wait_for_url(PRESCRIPTION_PAGE)
    expect(reception.locator("tbody tr", has_text=IGA[1])).to_contain_text("À transmettre")
    shots(reception, "prescription")
    reception.get_by_label("Créer un nouveau dossier").check()
    reception.get_by_role("button", name="Importer la prescription").click()
    sent = tube_row(reception, IGA[1])
    expect(sent).to_contain_text(f"Transmis {PARTNER}")
    expect(tube_row(reception, "Glycémie")).to_contain_text("Ici")
    expect(reception.locator("#commande")).to_contain_text(f"Examens à transmettre à un autre laboratoire {IGA[1]}")
    shots(reception, "partner-tube")

    slip = folded(pdf_text(download(reception, reception.get_by_role("link", name="Bordereau de transmission"))))
    barcode = sent.locator("td").first.inner_text()
    for expected in ("Bordereau de transmission", "Laboratoire Bilan Paris Est", PARTNER, f"FINESS {PARTNER_FINESS}",
                     spec.patient.family.upper(), spec.requisition, barcode.rsplit("-", 1)[0],
                     f"{IGA[1]} (LOINC {IGA[0]})"):
        assert expected in slip, (expected, slip)
    assert "Glycémie" not in slip  # done here: not on the partner's slip
    reception.get_by_role("button", name="Prélèvements effectués").click()
    expect(tube_row(reception, IGA[1]).locator("td").last).not_to_have_text("—")

    task_id = task_of(fhir, spec.requisition)["id"]
    posted(lab_middleware, result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 5.1, "mmol/L"))
    biologist = page_as("bio.durand")
    biologist.goto(f"/reception/prescriptions/{task_id}/resultats")
    validate(biologist, "Glycémie")
    issue_report(biologist, "Émettre le compte rendu")
    versions = biologist.locator("#compte-rendu tbody tr")
    expect(versions).to_have_count(1)
    expect(versions.locator("td").first).to_have_text("1 (partiel)")
    shots(biologist, "partial-report-issued")
    assert TO_FOLLOW in folded(pdf_text(download(biologist, versions.get_by_role("link", name="PDF"))))
    versions.get_by_role("link", name="Voir").click()
    expect(biologist.locator("body")).to_contain_text("résultat à suivre")
    expect(biologist.locator("body")).to_contain_text(PARTNER)
    shots(biologist, "partial-report")
    biologist.go_back()
    assert [d["docStatus"] for d in documents(fhir, task_id)] == ["preliminary"]

    partners_result(fhir, lab_middleware, task_id, 2.1)
    biologist.reload()
    validate(biologist, IGA[1])
    issue_report(biologist, "Émettre le compte rendu corrigé")
    expect(versions.locator("td:first-child")).to_have_text(["2", "1 (partiel)"])
    expect(versions.first).to_contain_text("En vigueur")
    expect(versions.nth(1)).to_contain_text("Remplacé")
    shots(biologist, "final-report-issued")
    final = folded(pdf_text(download(biologist, versions.first.get_by_role("link", name="PDF"))))
    assert f"{IGA[1]} : examen transmis au laboratoire partenaire {PARTNER}" in final, final
    assert "résultat à suivre" not in final and "2,1" in final
    versions.first.get_by_role("link", name="Voir").click()
    expect(biologist.locator("body")).not_to_contain_text("résultat à suivre")
    shots(biologist, "final-report")
    assert [d["docStatus"] for d in documents(fhir, task_id)][-1] == "final"


def test_a_womans_haemoglobin_is_judged_against_womens_ranges(
        page_as, shots, fhir: httpx.Client, desk: httpx.Client, web_root: str, rng) -> None:
    technician = page_as("tech.bernard")
    for gender, (low, high), judged in (("female", ("12", "16"), "N Normal"),
                                        ("male", ("13", "17"), "L Anormalement bas")):
        task_id = imported(fhir, desk, web_root, addressed(rng, exams=[NFS], patient=patient_aged(rng, gender, 40)))
        collected(desk, web_root, task_id)
        key = f"{prescribed(fhir, task_id, NFS[0])['id']}-{HAEMOGLOBIN}"
        technician.goto(f"/reception/prescriptions/{task_id}/saisie")
        expect(technician.locator(f"#bas-{key}")).to_have_value(low)  # the patient's range, proposed
        expect(technician.locator(f"#haut-{key}")).to_have_value(high)
        technician.locator(f"#valeur-{key}").fill("12,5")
        shots(technician, f"typed-for-a-{gender}")
        technician.get_by_role("button", name="Enregistrer les résultats").click()
        technician.wait_for_url("**/resultats")
        row = result_row(technician, "Hémoglobine")
        expect(row.locator("td").nth(2)).to_have_text("12,5 g/dL")
        expect(row.locator("td").nth(3)).to_have_text(judged)
        expect(row.locator("td").nth(4)).to_have_text(f"{low} – {high}")
        shots(technician, f"judged-for-a-{gender}")


def test_the_biologist_sees_the_previous_glucose_from_another_prescribers_order(
        page_as, shots, fhir: httpx.Client, as_user, lab_middleware: httpx.Client, desk: httpx.Client,
        biologist: httpx.Client, web_root: str, rng) -> None:
    """Dr Lambert's order, then Dr Nguyen's for the same person (an INS validated, not
    qualified: the lab's import links its file to each prescriber's Patient)."""
    nguyen = as_user("dr.nguyen")
    person = dataclasses.replace(random_person(rng), status="VALI")
    first = imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=person))
    earlier = posted(lab_middleware, glucose_result(prescribed(fhir, first, GLUCOSE[0]), 5.0, "mmol/L",
                                                    effectiveDateTime="2026-11-20T08:00:00+01:00"))
    assert decide(biologist, web_root, first, "biologique", [earlier]).status_code == 200
    second = imported_for(nguyen, desk, web_root, PrescriptionSpec(
        person, NGUYEN, number_from(rng, "HIS"), [GLUCOSE], lab=LAB_IDENTIFIER))
    posted(lab_middleware, glucose_result(prescribed(nguyen, second, GLUCOSE[0]), 12.5, "mmol/L",
                                          effectiveDateTime="2026-11-21T08:00:00+01:00"))
    assert prescribed(fhir, first, GLUCOSE[0])["subject"] != prescribed(nguyen, second, GLUCOSE[0])["subject"]

    lab = page_as("bio.durand")
    lab.goto(f"/reception/prescriptions/{second}")
    expect(lab.locator("#prescripteur-titre + dl")).to_contain_text("Dr Paul NGUYEN")
    lab.get_by_role("link", name="Résultats", exact=True).click()
    lab.wait_for_url("**/resultats")
    row = result_row(lab, "Glycémie")
    expect(row.locator("td").nth(2)).to_have_text("12,5 mmol/L")
    previous = row.locator("td").nth(5)
    expect(previous).to_contain_text("5,0 mmol/L (20/11/2026)")
    expect(previous.locator(".badge")).to_have_text("Variation inhabituelle : à vérifier")  # +7.5 in a day
    shots(lab, "previous-result")


# --- what the people do --------------------------------------------------------------------

def propose(page: Page, change: str, code: str, reason: str, original: str = "", note: str = "") -> None:
    """The biologist's adaptation form, filled in and sent."""
    page.locator("#change").select_option(label=change)
    if original:
        page.locator("#original").select_option(label=original)
    page.locator("#code").select_option(label=code)
    page.locator("#reason").select_option(label=reason)
    page.locator("#note").fill(note)
    page.get_by_role("button", name="Proposer l'adaptation").click()
    expect(change_row(page, change)).to_contain_text(PENDING)


def validate(page: Page, label: str) -> None:
    """The biologist ticks one result and validates it biologically."""
    result_row(page, label).get_by_role("checkbox").check()
    page.get_by_role("button", name="Validation biologique").click()
    expect(result_row(page, label)).to_contain_text("Validé biologiquement")


def issue_report(page: Page, button: str) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()
    expect(page.locator("#cr-erreurs")).to_have_count(0)


def partners_result(fhir: httpx.Client, lab_middleware: httpx.Client, task_id: str, value: float) -> str:
    """The partner lab's IgA, as the lab's middleware brings it in (its performer the partner)."""
    [partner] = search(fhir, "Organization", identifier=f"urn:oid:1.2.250.1.71.4.2.2|1{PARTNER_FINESS}")["entry"]
    return posted(lab_middleware, {
        **result(prescribed(fhir, task_id, IGA[0]), IGA[0], value, "g/L"),
        "code": {"coding": [{"system": "http://loinc.org", "code": IGA[0],
                             "display": "IgA [Mass/volume] in Serum or Plasma"}], "text": IGA[1]},
        "performer": [{"reference": f"Organization/{partner['resource']['id']}"}],
        "referenceRange": [{"low": {"value": 0.7, "unit": "g/L", "system": UCUM, "code": "g/L"},
                            "high": {"value": 4.0, "unit": "g/L", "system": UCUM, "code": "g/L"}}]})


# --- what they see -------------------------------------------------------------------------

def tube_row(page: Page, exam: str) -> Locator:
    """The order's tube whose exams include `exam`."""
    row = page.locator("#commande tbody tr").filter(has=page.locator("td:nth-child(3)", has_text=exam))
    expect(row).to_have_count(1)
    return row


def change_row(page: Page, kind: str) -> Locator:
    """The adaptations table's row for a change of this kind (Ajout, Annulation, Remplacement)."""
    rows = page.locator("#echanges tbody tr").filter(has=page.locator("td:first-child", has_text=kind))
    expect(rows).to_have_count(1)
    return rows


def result_row(page: Page, label: str) -> Locator:
    """The results table's row of the analysis whose name starts with `label`."""
    name = page.locator("td:nth-child(2) label", has_text=re.compile(f"^{re.escape(label)}"))
    row = page.locator("tbody tr").filter(has=name)
    expect(row).to_have_count(1)
    return row


def download(page: Page, link: Locator) -> bytes:
    """What the link gives, fetched with the page's session (a PDF opens in the browser's viewer)."""
    href = link.get_attribute("href")
    assert href
    response = page.request.get(urljoin(page.url, href))
    assert response.ok and response.headers["content-type"] == "application/pdf", response.status
    return response.body()


def labels(page: Page, link: str) -> list[str]:
    """Each label of the labels PDF the page's link prints, its lines joined."""
    document = pypdfium2.PdfDocument(download(page, page.get_by_role("link", name=link)))
    try:
        return [folded(p.get_textpage().get_text_range()) for p in document]
    finally:
        document.close()


def folded(text: str) -> str:
    return " ".join(text.split())
