"""News of an order to its prescriber, grouped: one e-mail per order and window, naming the
patient, the lab, what happened in order and how to reach the biologist; urgent news at once."""

import time
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from bilan import french
from bilan.demo.prescriptions import EXAMS, PrescriptionSpec
from bilan.settings import Settings
from tests.deliveries import notifications
from tests.orders import addressed, imported, prescribed
from tests.people import DUPONT
from tests.receivers import MailRelay, eventually
from tests.results import GLUCOSE, prescriber_mail, reported
from tests.test_two_instances import second_instance  # noqa: F401  (a fixture)
from tests.web import csrf_token

NFS, FERRITIN, TSH = EXAMS[0], EXAMS[9], EXAMS[4]
CRP = EXAMS[5]
LAB_PHONE, LAB_MAIL = "0143000000", "biologie@labo-paris-est.mssante.fr"


def mails(mail_relay: MailRelay, address: str, number: str) -> list[EmailMessage]:
    return [m for m in mail_relay.to(address) if f"n° {number})" in m["Subject"]]


def posted_form(browser: httpx.Client, page: httpx.Response, action: str, data: dict[str, str]) -> None:
    """Post one of the page's forms without following the redirect: news made quickly."""
    response = browser.post(str(page.url.join(action)), data={**data, "_csrf_token": csrf_token(page)})
    assert response.status_code in (302, 303), response.text[-2000:]


def lab_message(biologist: httpx.Client, web_root: str, task_id: str, text: str) -> None:
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}")
    posted_form(biologist, page, f"/reception/prescriptions/{task_id}/message", {"texte": text})


def patient_line(spec: PrescriptionSpec) -> str:
    person = spec.patient
    born = "née" if person.gender == "female" else "né"
    return f"{french.person_name(person.family, person.given[:1])}, {born} le {person.birth:%d/%m/%Y}"


def quiet(settings: Settings) -> None:
    """Long enough for a window to end and its mail to go: a second mail would be there."""
    time.sleep(settings.prescriber_notice_seconds + 1.5)


def test_three_adaptations_and_a_message_make_one_mail(
        fhir, desk, biologist, web_root, mail_relay, settings, rng) -> None:
    spec = addressed(rng, exams=[NFS, FERRITIN, TSH])
    task_id = imported(fhir, desk, web_root, spec)
    ferritin, tsh = prescribed(fhir, task_id, FERRITIN[0]), prescribed(fhir, task_id, TSH[0])
    address = prescriber_mail(fhir, ferritin)
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}")
    action = f"/reception/prescriptions/{task_id}/adaptation"
    started = time.monotonic()
    posted_form(biologist, page, action, {"change": "replace", "original": f"ServiceRequest/{ferritin['id']}",
                                          "code": "CRP", "reason": "clinical-context"})
    posted_form(biologist, page, action, {"change": "cancel", "original": f"ServiceRequest/{tsh['id']}",
                                          "reason": "redundant"})
    posted_form(biologist, page, action, {"change": "add", "code": "TNT", "reason": "clinical-context"})
    posted_form(biologist, page, f"/reception/prescriptions/{task_id}/message",
                {"texte": "Merci de rappeler le laboratoire."})
    assert time.monotonic() - started < settings.prescriber_notice_seconds, "the four news took too long"

    [mail] = eventually(lambda: mails(mail_relay, address, spec.requisition), what="the grouped mail")
    quiet(settings)
    assert len(mails(mail_relay, address, spec.requisition)) == 1
    assert "Adaptation de la prescription" in mail["Subject"] and "Message" in mail["Subject"]
    text = mail.get_content()
    assert patient_line(spec) in text
    assert "Laboratoire Bilan Paris Est" in text
    order = [text.index(s) for s in ("1. Adaptation de la prescription", "remplacement de « Ferritine »",
                                      "2. Adaptation de la prescription", "annulation de l'examen « TSH",
                                      "3. Adaptation de la prescription", "ajout de l'examen",
                                      "4. Message", "Merci de rappeler le laboratoire.")]
    assert order == sorted(order)  # in the order they happened
    assert LAB_PHONE in text and LAB_MAIL in text and "Joindre le biologiste" in text
    assert f"{web_root}/prescripteur/prescriptions/{task_id}" in text


def test_news_of_two_orders_make_two_mails(fhir, desk, biologist, web_root, mail_relay, settings, rng) -> None:
    first, second = addressed(rng, exams=[NFS]), addressed(rng, exams=[NFS])
    ids = [imported(fhir, desk, web_root, spec) for spec in (first, second)]
    address = prescriber_mail(fhir, prescribed(fhir, ids[0], NFS[0]))
    for task_id, spec in zip(ids, (first, second)):
        lab_message(biologist, web_root, task_id, f"Tube hémolysé ({spec.requisition}).")

    for task_id, spec, other in ((ids[0], first, second), (ids[1], second, first)):
        [mail] = eventually(lambda: mails(mail_relay, address, spec.requisition), what="each order's mail")
        assert f"Tube hémolysé ({spec.requisition})." in mail.get_content()
        assert other.requisition not in mail.get_content()
        assert patient_line(spec) in mail.get_content()
        assert f"/prescripteur/prescriptions/{task_id}" in mail.get_content()


def test_news_after_the_window_make_a_second_mail(
        fhir, desk, biologist, web_root, mail_relay, settings, rng) -> None:
    spec = addressed(rng, exams=[NFS])
    task_id = imported(fhir, desk, web_root, spec)
    address = prescriber_mail(fhir, prescribed(fhir, task_id, NFS[0]))
    lab_message(biologist, web_root, task_id, "Premier message.")
    eventually(lambda: mails(mail_relay, address, spec.requisition), what="the first mail")
    lab_message(biologist, web_root, task_id, "Second message.")

    both = eventually(lambda: len(found := mails(mail_relay, address, spec.requisition)) == 2 and found,
                      what="the second mail")
    assert "Premier message." in both[0].get_content() and "Second message." not in both[0].get_content()
    assert "Second message." in both[1].get_content() and "Premier message." not in both[1].get_content()


def test_an_urgent_message_goes_at_once_with_what_was_waiting(
        fhir, desk, biologist, web_root, as_user, mail_relay, settings, rng) -> None:
    spec = addressed(rng, exams=[NFS])
    task_id = imported(fhir, desk, web_root, spec)
    address = prescriber_mail(fhir, prescribed(fhir, task_id, NFS[0]))
    lab_message(biologist, web_root, task_id, "Le prélèvement est arrivé.")
    urgent = as_user("bio.durand").post("Communication", json=message(task_id, "Rappelez-nous au plus vite.",
                                                                      priority="urgent"))
    assert urgent.status_code == 201, urgent.text

    [mail] = eventually(lambda: mails(mail_relay, address, spec.requisition), what="the urgent mail")
    [row] = eventually(lambda: (rows := [n for n in notifications(settings, f"Task/{task_id}")
                                         if n.target == address]) and rows[0].delivered_at and rows,
                       what="its row, delivered")
    # Due at once, not at the end of the window it joined.
    assert row.next_attempt_at < row.created_at + timedelta(seconds=settings.prescriber_notice_seconds)
    assert mail["Subject"].startswith("bilan — URGENT")
    text = mail.get_content()
    assert text.index("Le prélèvement est arrivé.") < text.index("Rappelez-nous au plus vite.")
    quiet(settings)
    assert len(mails(mail_relay, address, spec.requisition)) == 1  # what it carried is not sent again


def test_a_report_with_abnormal_and_masked_results_says_so(
        fhir, lab_middleware, desk, biologist, web_root, mail_relay, settings, rng) -> None:
    high = {"valueQuantity": {"value": 9.0, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                              "code": "mmol/L"}}
    normal = {"valueQuantity": {"value": 2.0, "unit": "mg/L", "system": "http://unitsofmeasure.org",
                                "code": "mg/L"}}
    task_id, ids = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE, CRP],
                            {GLUCOSE[0]: high, CRP[0]: normal}, "2026-11-24T08:10:00+01:00", hidden=(CRP[0],))
    number = fhir.get(f"Task/{task_id}").json()["groupIdentifier"]["value"]
    address = prescriber_mail(fhir, prescribed(fhir, task_id, GLUCOSE[0]))

    [mail] = eventually(lambda: mails(mail_relay, address, number), what="the report's mail")
    text = mail.get_body(("plain",)).get_content()
    assert "Compte rendu d'examens biologiques" in mail["Subject"]
    assert "Résultats hors des valeurs de référence : 1." in text
    assert "Masqué au patient : 1 résultat" in text
    assert "DUPONT Marie" in text and f"le {DUPONT.birth:%d/%m/%Y}" in text
    assert "9,0" not in text and "9.0" not in text  # counts, never values
    assert {part.get_filename() for part in mail.iter_attachments()} == {"CR-BIO.xml", "compte-rendu.pdf"}


@pytest.mark.usefixtures("second_instance")
def test_two_workers_send_every_news_once(
        fhir, desk, web_root, as_user, mail_relay, settings, rng) -> None:
    """News keeps coming over several windows while two bilan processes drain the outbox: each
    window's mail is claimed by one worker, and a news item that comes as a group is claimed joins
    it or opens the next, never both."""
    spec = addressed(rng, exams=[NFS])
    task_id = imported(fhir, desk, web_root, spec)
    address = prescriber_mail(fhir, prescribed(fhir, task_id, NFS[0]))
    lab = as_user("bio.durand")
    texts = [f"Nouvelle n° {n}." for n in range(12)]
    for text in texts:
        assert lab.post("Communication", json=message(task_id, text)).status_code == 201
        time.sleep(settings.prescriber_notice_seconds / 4)

    eventually(lambda: all(any(t in m.get_content() for m in mails(mail_relay, address, spec.requisition))
                           for t in texts), 20, "every news item mailed")
    quiet(settings)
    sent = [m.get_content() for m in mails(mail_relay, address, spec.requisition)]
    assert [sum(t in body for body in sent) for t in texts] == [1] * len(texts)
    assert 2 <= len(sent) < len(texts)  # grouped by window, not one per item


def message(task_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Communication", "status": "completed",
            "partOf": [{"reference": f"Task/{task_id}"}], "payload": [{"contentString": text}], **extra}
