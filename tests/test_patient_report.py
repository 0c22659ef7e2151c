"""The patient's own page of one report (issue 14): the lab's report and one received from another
lab, each with its lab, dates, prescriber, results by chapter (value, unit, range, out-of-range
flag in words), comments and conclusion, a correction said as such, a PDF to download; the same
refusals as everywhere else for a masked report, another person's and an unknown one; "Nouveau"
gone once opened; nothing wider than a phone's screen."""

import base64
import dataclasses
import re
from typing import Any

import httpx
from playwright.sync_api import expect

from bilan.demo.prescriptions import EXAMS
from bilan.fhir.terminology import CONFIDENTIALITY, INVISIBLE_PATIENT
from bilan.prescription import tracking
from bilan.results.document.cda import cda_document
from bilan.results.document.report import Identifier, Organization
from tests.helpers import uuid_from
from tests.lab_reports import report as cda_report
from tests.orders import addressed, imported_for, prescribed
from tests.people import DUPONT
from tests.results import decide, documents, glucose, issue, posted, reported, result
from tests.web import log_in, submit

NFS, GLUCOSE = EXAMS[0], EXAMS[1]
HIV = ("56888-1", "Sérologie VIH")
NEGATIVE = {"coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Négatif"}]}
HAEMOGLOBIN = {"code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
               "valueQuantity": {"value": 13.7, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}
LILAS = Organization("930012345", "Laboratoire des Lilas", cda_report().lab.address, ("tel:0148000000",))


def page_of(browser: httpx.Client, web_root: str, document_id: str) -> httpx.Response:
    return browser.get(f"{web_root}/patient/comptes-rendus/{document_id}")


def text(page: httpx.Response) -> str:
    """The page's words, tags aside and spaces collapsed, as a reader meets them."""
    return " ".join(re.sub(r"<[^>]+>", " ", page.text).replace("&#39;", "'").split())


def item(page: str, element_id: str) -> str:
    found = re.search(rf'<li id="{element_id}">(.*?)</li>', page, re.S)
    return found.group(1) if found else ""


def from_elsewhere(api: httpx.Client, patient: str, rng: Any, **extra: Any) -> dict[str, Any]:
    """A CR-BIO of the Laboratoire des Lilas about Marie Dupont (haematology with a commented,
    high leucocyte count; biochemistry with a high glucose and a pregnancy test), imported onto
    her file at the lab; `extra`: more of the DocumentReference."""
    identity = dataclasses.replace(
        cda_report().patient, birth_family="DUPONT", birth_given=tuple(g.upper() for g in DUPONT.given),
        sex="F", birth_date=DUPONT.birth, ins=DUPONT.ins, ins_system=DUPONT.ins_system, identity_status=DUPONT.status)
    document = cda_report(document_id=Identifier(str(uuid_from(rng)).upper()),
                          set_id=Identifier(str(uuid_from(rng)).upper()), patient=identity, lab=LILAS,
                          conclusion="Contrôle de la numération dans un mois.")
    stored = api.post("DocumentReference", json={
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": patient},
        "content": [{"attachment": {"contentType": "text/xml",
                                    "data": base64.b64encode(cda_document(document)).decode("ascii")}}],
        **extra})
    assert stored.status_code == 201, stored.text
    return dict(stored.json())


def test_her_own_report_reads_as_a_report_and_is_no_longer_new_once_opened(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    task_id, _ = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE, NFS],
                          {GLUCOSE[0]: glucose(7.38), NFS[0]: HAEMOGLOBIN}, "2026-09-14T08:00:00+02:00",
                          conclusion="Glycémie élevée : à contrôler à jeun.")
    [document] = documents(fhir, task_id)
    browser, _ = log_in(web_root, "patient.dupont")
    home = browser.get(f"{web_root}/patient/").text
    assert "Nouveau" in item(home, f"cr-{document['id']}")
    assert f'href="/patient/comptes-rendus/{document["id"]}"' in item(home, f"cr-{document['id']}")
    assert f'href="/documents/{document["id"]}"' in item(home, f"cr-{document['id']}")  # the ANS view, still there

    page = page_of(browser, web_root, document["id"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    said = text(page)
    assert "Retour à mes comptes rendus" in said and "Compte rendu d'analyses du 14/09/2026" in said
    requester = fhir.get(prescribed(fhir, task_id, GLUCOSE[0])["requester"]["reference"]).json()
    if requester["resourceType"] == "PractitionerRole":
        requester = fhir.get(requester["practitioner"]["reference"]).json()
    assert "Laboratoire Bilan Paris Est" in said and "Adresse 12 rue des Analyses, 75011 PARIS" in said
    assert f"Prescrit par Dr {requester['name'][0]['given'][0]} {requester['name'][0]['family'].upper()}" in said
    assert "Prélèvement 14/09/2026 à 08:00" in said and "Validation" in said
    for heading in ("Biochimie", "Hématologie", "Conclusion du biologiste"):
        assert re.search(rf"<h2[^>]*>{heading}</h2>", page.text), heading
    sugar = re.search(r"<tr[^>]*>\s*<th scope=\"row\">Glyc[^<]*</th>(.*?)</tr>", page.text, re.S)
    assert sugar, page.text
    row = " ".join(re.sub(r"<[^>]+>", " ", sugar.group(1)).split())
    assert "7,38 mmol/L" in row and "3,9 – 6,1 mmol/L" in row and "Haut, hors normes" in row
    assert 'class="out"' in sugar.group(0)
    assert "13,7 g/dL" in said
    assert "1 résultat est hors normes" in said
    assert "Conclusion : Glycémie élevée : à contrôler à jeun." in said
    assert "Compte rendu corrigé" not in said and "Définitif" in said
    assert f'href="/documents/{document["id"]}/compte-rendu.pdf"' in page.text and "Télécharger le PDF" in said
    assert browser.get(f"{web_root}/documents/{document['id']}/compte-rendu.pdf").content.startswith(b"%PDF-")

    assert "Nouveau" not in item(browser.get(f"{web_root}/patient/").text, f"cr-{document['id']}")


def test_a_corrected_report_says_so_and_the_replaced_version_keeps_its_values(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    task_id, ids = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE],
                            {GLUCOSE[0]: glucose(7.46)}, "2026-08-03T08:00:00+02:00")
    fixed = decide(biologist, web_root, task_id, "corriger", [ids[GLUCOSE[0]]], valeur="5,12",
                   commentaire="Erreur de saisie")
    assert fixed.status_code == 200, fixed.text
    assert issue(biologist, web_root, task_id).status_code == 200
    first, second = documents(fhir, task_id)
    browser, _ = log_in(web_root, "patient.dupont")

    corrected = text(page_of(browser, web_root, second["id"]))
    assert "Compte rendu corrigé" in corrected and "Corrigé" in corrected
    assert "Glycémie à jeun 5,12 mmol/L 3,9 – 6,1 mmol/L" in corrected
    assert "Commentaire : Corrigé (était 7,46 mmol/L) : Erreur de saisie" in corrected  # the lab's own words
    assert "Aucun résultat hors normes" in corrected and "Version remplacée" not in corrected
    earlier = page_of(browser, web_root, first["id"])
    # The replaced version still says what it said, and that it was replaced.
    assert earlier.status_code == 200 and "Version remplacée" in text(earlier)
    assert "Glycémie à jeun 7,46 mmol/L 3,9 – 6,1 mmol/L Haut, hors normes" in text(earlier).replace("⚠ ", "")
    assert "Compte rendu corrigé" not in text(earlier)


def test_a_partial_report_says_more_is_coming_and_the_complete_one_is_no_correction(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    task_id = imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE, NFS], patient=DUPONT))
    sugar = posted(lab_middleware, {**result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 5.27, "mmol/L"),
                                    "effectiveDateTime": "2026-06-16T08:00:00+02:00"})
    haemoglobin = posted(lab_middleware, {**result(prescribed(fhir, task_id, NFS[0]), "718-7", 11.2, "g/dL"),
                                          "effectiveDateTime": "2026-06-16T08:00:00+02:00"})
    decide(biologist, web_root, task_id, "biologique", [sugar])
    assert issue(biologist, web_root, task_id).status_code == 200
    [partial] = documents(fhir, task_id)
    browser, _ = log_in(web_root, "patient.dupont")
    first = text(page_of(browser, web_root, partial["id"]))
    assert "Compte rendu partiel. D'autres résultats sont attendus" in first and "Partiel" in first
    assert "5,27 mmol/L" in first and "11,2" not in first

    decide(biologist, web_root, task_id, "biologique", [haemoglobin])
    assert issue(biologist, web_root, task_id).status_code == 200
    complete = documents(fhir, task_id)[-1]
    final = text(page_of(browser, web_root, complete["id"]))
    assert "Compte rendu complet. Il remplace le compte rendu partiel" in final and "Définitif" in final
    assert "corrigé" not in final.lower() and "5,27 mmol/L" in final and "11,2 g/dL" in final
    assert "11,2 g/dL 12 – 16 g/dL Bas, hors normes" in final.replace("⚠ ", "")
    replaced = text(page_of(browser, web_root, partial["id"]))
    assert "Version remplacée" in replaced and "Compte rendu partiel." not in replaced


def test_a_report_from_another_lab_renders_on_the_same_page(
        fhir, lab_middleware, desk, biologist, web_root, as_user, rng) -> None:
    task_id, _ = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE],
                          {GLUCOSE[0]: glucose(5.36)}, "2026-07-01T08:00:00+02:00")
    lab_api = as_user("bio.durand")
    file = tracking.lab_file_of(lab_api.get(f"Task/{task_id}").json())
    imported = from_elsewhere(lab_api, file, rng)
    browser, _ = log_in(web_root, "patient.dupont")
    home = browser.get(f"{web_root}/patient/").text
    listed = item(home, f"cr-{imported['id']}")
    assert "Reçu d'un autre laboratoire" in listed and "Nouveau" in listed
    assert f'href="/patient/comptes-rendus/{imported["id"]}"' in listed

    page = page_of(browser, web_root, imported["id"])
    assert page.status_code == 200, page.text
    said = text(page)
    assert "Laboratoire des Lilas" in said and "Reçu d'un autre laboratoire" in said
    assert "Prélèvement 10/03/2025" in said and "Validation 10/03/2025" in said
    for heading in ("Hématologie", "Biochimie"):
        assert re.search(rf"<h2[^>]*>{heading}</h2>", page.text), heading
    assert "<h3>Numération formule sanguine</h3>" in page.text
    assert "11,8 G/L" in said and "4,0 – 10,0 G/L" in said and "Hyperleucocytose modérée, à contrôler." in said
    assert "7,2 mmol/L" in said and "3,9 – 6,1 mmol/L" in said and said.count("Haut, hors normes") == 2
    assert "Négatif" in said and "13,2 g/dL" in said
    assert "Commentaire du biologiste : Glycémie à jeun élevée : à confronter à l'HbA1c." in said  # its chapter's
    assert re.search(r"<h2[^>]*>Conclusion et adaptation de la prescription par le biologiste</h2>", page.text)
    assert "Conclusion : Contrôle de la numération dans un mois." in said
    assert f'href="/documents/{imported["id"]}/compte-rendu.pdf"' in page.text
    assert "Nouveau" not in item(browser.get(f"{web_root}/patient/").text, f"cr-{imported['id']}")


def test_what_she_may_not_read_is_refused_in_french(
        fhir, lab_middleware, desk, biologist, doctor, web_root, as_user, rng) -> None:
    task_id, ids = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE, HIV],
                            {GLUCOSE[0]: glucose(6.64), HIV[0]: {"valueCodeableConcept": NEGATIVE}},
                            "2025-11-09T08:00:00+01:00", hidden=(HIV[0],), annonce="1")
    [masked] = documents(fhir, task_id)
    browser, _ = log_in(web_root, "patient.dupont")

    refused = page_of(browser, web_root, masked["id"])  # partly masked: absent whole
    assert refused.status_code == 403 and "Accès refusé" in refused.text
    assert "Ce compte rendu ne vous est pas accessible." in refused.text
    assert "6,64" not in refused.text and "Négatif" not in refused.text

    unknown = page_of(browser, web_root, "0f6b0a9e-0000-4000-8000-000000000000")
    assert unknown.status_code == 404 and "Ce compte rendu est introuvable." in unknown.text

    other, _ = log_in(web_root, "patient.lefevre")  # another patient: not hers
    assert page_of(other, web_root, masked["id"]).status_code == 403
    assert desk.get(f"{web_root}/patient/comptes-rendus/{masked['id']}").status_code == 403  # staff: no patient space

    page = doctor.get(f"{web_root}/prescripteur/prescriptions/{task_id}")
    submit(doctor, page, f"/prescripteur/prescriptions/{task_id}/levee-masquage", {})
    released = page_of(browser, web_root, masked["id"])
    assert released.status_code == 200 and "6,64 mmol/L" in text(released) and "Négatif" in text(released)
    assert page_of(other, web_root, masked["id"]).status_code == 403  # still not Jean Lefèvre's

    lab_api = as_user("bio.durand")  # a report from elsewhere its sender hid from her until her consultation
    hidden = from_elsewhere(lab_api, tracking.lab_file_of(lab_api.get(f"Task/{task_id}").json()), rng,
                            securityLabel=[{"coding": [{"system": CONFIDENTIALITY, "code": INVISIBLE_PATIENT}]}])
    assert hidden["id"] not in browser.get(f"{web_root}/patient/").text
    assert page_of(browser, web_root, hidden["id"]).status_code == 403


def test_the_page_fits_a_phone(fhir, lab_middleware, desk, biologist, web_root, as_user, page_as, shots,
                               rng) -> None:
    task_id, _ = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE, NFS],
                          {GLUCOSE[0]: glucose(7.1), NFS[0]: HAEMOGLOBIN}, "2026-11-02T08:00:00+01:00",
                          conclusion="Glycémie un peu élevée : contrôle à jeun dans trois mois conseillé.")
    [document] = documents(fhir, task_id)
    lab_api = as_user("bio.durand")
    imported = from_elsewhere(lab_api, tracking.lab_file_of(lab_api.get(f"Task/{task_id}").json()), rng)

    page = page_as("patient.dupont", viewport=(375, 800))
    page.get_by_role("link", name="Mes résultats").click()
    page.locator(f"#cr-{document['id']}").get_by_role("link", name="Voir le compte rendu").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Compte rendu d'analyses du 02/11/2026")
    expect(page.get_by_role("heading", name="Biochimie")).to_be_visible()
    expect(page.locator("tr.out").first).to_contain_text("Haut, hors normes")
    expect(page.get_by_role("link", name="Télécharger le PDF")).to_be_visible()
    shots(page, "phone-own-report")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    page.get_by_role("link", name="Retour à mes comptes rendus").click()
    page.locator(f"#cr-{imported['id']}").get_by_role("link", name="Voir le compte rendu").click()
    expect(page.get_by_role("heading", name="Laboratoire des Lilas")).to_be_visible()
    expect(page.locator("body")).to_contain_text("Hyperleucocytose modérée")
    shots(page, "phone-imported-report")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    heading = page.get_by_role("term").filter(has_text="Prélèvement")
    lines = "term => { const r = document.createRange(); r.selectNodeContents(term); return r.getClientRects().length; }"
    assert heading.evaluate(lines) == 1  # the word on one line, not cut in two

    page.set_viewport_size({"width": 1280, "height": 900})
    expect(page.get_by_role("columnheader", name="Valeurs de référence").first).to_be_visible()  # a table again
    shots(page, "desktop-imported-report")
