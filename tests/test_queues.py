"""The lab's work queues: an order waits in "to validate" while a result is open, in "to issue"
once validated until its report is issued, and in "prescribers' messages" while the thread's
last word is the prescriber's, who also reaches the lab by mail. Counts are on the home page."""

import re

import httpx

from bilan.demo.load import PARTNER_FINESS
from bilan.prescription.messaging import KINDS_SYSTEM
from bilan.results.queues import ANSWERS, ISSUE, PARTNER, REPRINT, VALIDATE
from tests.helpers import search
from tests.orders import adapt, addressed, imported, prescribed
from tests.receivers import eventually
from tests.results import GLUCOSE, decide, glucose_result, issue
from tests.web import submit


def _queue(browser: httpx.Client, web_root: str, key: str) -> str:
    page = browser.get(f"{web_root}/reception/a-traiter")
    assert page.status_code == 200, page.text
    found = re.search(rf'<section class="card" id="{key}".*?</section>', page.text, re.S)
    assert found, key
    return found.group(0)


def _count(browser: httpx.Client, web_root: str, key: str) -> int:
    home = browser.get(f"{web_root}/")
    found = re.search(rf'id="compte-{key}">(\d+)<', home.text)
    assert found, home.text
    return int(found.group(1))


def test_an_order_moves_from_validation_to_issuing_then_leaves_the_queues(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    task_id = imported(fhir, desk, web_root, spec)
    before = _count(biologist, web_root, VALIDATE)
    request = prescribed(fhir, task_id, GLUCOSE[0])
    result = lab_middleware.post("Observation", json=glucose_result(request, 5.1, "mmol/L")).json()

    assert _count(biologist, web_root, VALIDATE) == before + 1
    waiting = _queue(biologist, web_root, VALIDATE)
    assert spec.requisition in waiting and f"/reception/prescriptions/{task_id}/resultats" in waiting
    assert spec.requisition not in _queue(biologist, web_root, ISSUE)

    decide(biologist, web_root, task_id, "biologique", [result["id"]])
    assert spec.requisition not in _queue(biologist, web_root, VALIDATE)
    assert spec.requisition in _queue(biologist, web_root, ISSUE)
    assert _count(biologist, web_root, VALIDATE) == before

    issued = issue(biologist, web_root, task_id)
    assert issued.status_code == 200, issued.text
    assert spec.requisition not in _queue(biologist, web_root, ISSUE)


def test_a_prescribers_message_waits_for_the_lab_and_reaches_it_by_mail(
        fhir, desk, biologist, web_root, mail_relay, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    task_id = imported(fhir, desk, web_root, spec)
    asked = fhir.post("Communication", json={
        "resourceType": "Communication", "status": "completed",
        "category": [{"coding": [{"system": KINDS_SYSTEM, "code": "message"}]}],
        "partOf": [{"reference": f"Task/{task_id}"}],
        "payload": [{"contentString": "Pouvez-vous ajouter une ferritine ?"}]})
    assert asked.status_code == 201, asked.text

    waiting = _queue(biologist, web_root, ANSWERS)
    assert spec.requisition in waiting and "Pouvez-vous ajouter une ferritine ?" in waiting
    mail = eventually(lambda: [m for m in mail_relay.to("biologie@labo-paris-est.mssante.fr")
                               if spec.requisition in m["Subject"]], what="the mail to the lab")[0]
    assert "Le prescripteur vous a écrit" in mail.get_content()
    assert f"/reception/prescriptions/{task_id}" in mail.get_content()

    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}")
    answered = submit(biologist, page, f"/reception/prescriptions/{task_id}/message",
                      {"texte": "C'est ajouté."})
    assert answered.status_code == 200, answered.text
    assert spec.requisition not in _queue(biologist, web_root, ANSWERS)


def test_queues_are_the_labs_own(fhir, desk, doctor, web_root) -> None:
    assert doctor.get(f"{web_root}/reception/a-traiter").status_code == 403
    assert 'id="compte-' not in doctor.get(f"{web_root}/").text


def test_an_exam_sent_to_the_partner_lab_waits_for_its_result(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    iga = ("2458-8", "Immunoglobulines A")  # not in the catalogue: sent to the partner lab
    spec = addressed(rng, exams=[GLUCOSE, iga])
    task_id = imported(fhir, desk, web_root, spec)
    waiting = _queue(biologist, web_root, PARTNER)
    assert spec.requisition in waiting and "Immunoglobulines A" in waiting

    request = prescribed(fhir, task_id, iga[0])
    partner = search(fhir, "Organization", identifier=f"urn:oid:1.2.250.1.71.4.2.2|1{PARTNER_FINESS}")
    answer = lab_middleware.post("Observation", json={
        **glucose_result(request, 2.1, "g/L"), "code": {"coding": [{"system": "http://loinc.org", "code": iga[0]}],
                                                        "text": iga[1]},
        "performer": [{"reference": f"Organization/{partner['entry'][0]['resource']['id']}"}]})
    assert answer.status_code == 201, answer.text
    assert spec.requisition in _queue(biologist, web_root, PARTNER)  # received, not yet validated
    desk_page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats").text
    assert "Immunoglobulines A</label> <small class=\"origin\">(Laboratoire partenaire)</small>" in desk_page
    decide(biologist, web_root, task_id, "biologique", [answer.json()["id"]])
    assert spec.requisition not in _queue(biologist, web_root, PARTNER)


def test_labels_changed_by_an_adaptation_wait_to_be_printed_again(fhir, desk, biologist, web_root, rng) -> None:
    nfs, glucose = ("58410-2", "Numération formule sanguine"), GLUCOSE
    spec = addressed(rng, exams=[nfs, glucose])
    task_id = imported(fhir, desk, web_root, spec)
    order = f"{web_root}/reception/prescriptions/{task_id}"
    assert desk.get(f"{order}/etiquettes.pdf").status_code == 200  # printed at import
    assert spec.requisition not in _queue(desk, web_root, REPRINT)

    request = prescribed(fhir, task_id, nfs[0])
    adapt(biologist, web_root, task_id, change="cancel", original=f"ServiceRequest/{request['id']}",
          reason="redundant", note="NFS faite hier.", proceed="oui")  # in effect at once
    assert spec.requisition in _queue(desk, web_root, REPRINT)
    assert desk.get(f"{order}/etiquettes.pdf").status_code == 200
    assert spec.requisition not in _queue(desk, web_root, REPRINT)
