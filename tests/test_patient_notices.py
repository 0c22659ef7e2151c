"""What the patient is told, and what her space says before and after: one notice per report
version (available, corrected), none while masked and one at release, never a result in it;
her own notice address; orders "en cours" with their state; "Nouveau" until she opens a report;
a partly masked report absent whole, from her pages and from the FHIR API."""

import re
from email.message import EmailMessage
from typing import Any

import httpx

from bilan.demo.prescriptions import EXAMS
from bilan.notifications.outbox import OutboxItem
from tests.deliveries import notifications
from tests.helpers import search
from tests.orders import addressed, collected, imported_for, prescribed
from tests.people import DUPONT
from tests.receivers import MailRelay, eventually
from tests.results import decide, documents, glucose, issue, posted, reported, result
from tests.web import log_in, submit

NFS, GLUCOSE = EXAMS[0], EXAMS[1]
HIV = ("56888-1", "Sérologie VIH")
NEGATIVE = {"coding": [{"system": "http://snomed.info/sct", "code": "260385009", "display": "Négatif"}]}
CITIZEN = f"{DUPONT.ins}@patient.mssante.fr"
OWN = "marie.dupont@exemple.fr"


def notices(settings: Any, task_id: str) -> list[OutboxItem]:
    """The notices queued to Marie Dupont's addresses about an order, oldest first."""
    return [n for n in notifications(settings, f"Task/{task_id}") if n.channel == "email"
            and n.target in (CITIZEN, OWN)]


def received(mail_relay: MailRelay, items: list[OutboxItem]) -> list[EmailMessage]:
    """The mails the relay took for these outbox rows (their Message-ID is the row's), once
    all arrived."""
    def found() -> list[EmailMessage] | None:
        mails = [m for m in mail_relay.messages for n in items if m["Message-ID"].startswith(f"<outbox-{n.id}@")]
        return mails if len(mails) >= len(items) else None
    return eventually(found, 15, "the notices at the relay")


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    assert body is not None
    return f"{mail['Subject']}\n{body.get_content()}"


def set_address(browser: httpx.Client, web_root: str, address: str) -> httpx.Response:
    page = browser.get(f"{web_root}/patient/")
    return submit(browser, page, "/patient/adresse", {"courriel": address})


def item(page: str, element_id: str) -> str:
    """The text of the list item with this id ("" when the page has none)."""
    found = re.search(rf'<li id="{element_id}">(.*?)</li>', page, re.S)
    return found.group(1) if found else ""


def test_one_notice_per_version_to_both_addresses_without_any_result(
        fhir, lab_middleware, desk, biologist, web_root, mail_relay, settings, rng) -> None:
    browser, _ = log_in(web_root, "patient.dupont")
    refused = set_address(browser, web_root, "marie.dupont@exemple")
    assert refused.status_code == 422
    assert 'id="courriel-erreur"' in refused.text and "Saisissez une adresse électronique complète" in refused.text
    assert 'value="marie.dupont@exemple"' in refused.text and 'aria-invalid="true"' in refused.text
    saved = set_address(browser, web_root, OWN)
    assert saved.status_code == 200 and "Votre adresse est enregistrée" in saved.text and f'value="{OWN}"' in saved.text

    task_id, ids = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE, NFS],
                            {GLUCOSE[0]: glucose(7.43), NFS[0]: {"code": {"coding": [
                                {"system": "http://loinc.org", "code": "718-7"}]},
                                "valueQuantity": {"value": 13.7, "unit": "g/dL", "system": "http://unitsofmeasure.org",
                                                  "code": "g/dL"}}}, "2026-11-02T08:00:00+01:00")
    [first] = documents(fhir, task_id)
    queued = notices(settings, task_id)
    # One per address for the version, not one per result (two results here).
    assert sorted((n.target, n.resource) for n in queued) == sorted(
        (to, f"DocumentReference/{first['id']}") for to in (CITIZEN, OWN))

    fixed = decide(biologist, web_root, task_id, "corriger", [ids[GLUCOSE[0]]], valeur="6,18",
                   commentaire="Erreur de saisie")
    assert fixed.status_code == 200, fixed.text
    assert issue(biologist, web_root, task_id).status_code == 200
    first, second = documents(fhir, task_id)
    queued = notices(settings, task_id)
    assert sorted((n.target, n.resource) for n in queued) == sorted(
        (to, f"DocumentReference/{d['id']}") for d in (first, second) for to in (CITIZEN, OWN))

    mails = received(mail_relay, queued)
    by_version = {n.resource: [m for m in mails if m["Message-ID"].startswith(f"<outbox-{n.id}@")] for n in queued}
    assert all(len(found) == 1 for found in by_version.values())
    corrected = [text_of(m) for n in queued if n.resource == f"DocumentReference/{second['id']}"
                 for m in by_version[n.resource]]
    assert corrected and all("corrigé" in t for t in corrected)
    for mail in mails:
        text = text_of(mail)
        assert "Laboratoire Bilan Paris Est" in text and f"{web_root}/patient/" in text
        for medical in ("Glyc", "glucose", "Hémoglobine", "NFS", GLUCOSE[0], "718-7", "7,43", "7.43", "6,18",
                        "6.18", "13,7", "13.7", "mmol", "g/dL", "Dupont", "DUPONT"):
            assert medical not in text, medical


def test_no_notice_while_masked_one_at_release_and_the_report_is_absent_whole(
        fhir, lab_middleware, desk, biologist, doctor, web_root, settings, as_user, rng) -> None:
    browser, _ = log_in(web_root, "patient.dupont")
    assert set_address(browser, web_root, OWN).status_code == 200
    task_id, ids = reported(fhir, lab_middleware, desk, biologist, web_root, rng, [GLUCOSE, HIV],
                            {GLUCOSE[0]: glucose(6.87), HIV[0]: {"valueCodeableConcept": NEGATIVE}},
                            "2025-11-09T08:00:00+01:00", hidden=(HIV[0],), annonce="1")
    sugar = ids[GLUCOSE[0]]  # not masked itself, but part of a masked report
    patient = as_user("patient.dupont")
    [document] = documents(fhir, task_id)

    def seen() -> dict[str, Any]:
        home = browser.get(f"{web_root}/patient/").text
        listed = browser.get(f"{web_root}/patient/analyses", params={"q": "glycemie"}).text
        trends = "".join(browser.get(f"{web_root}/patient/analyses/{key}").text
                         for key in set(re.findall(r'href="/patient/analyses/([^"?]+)"', listed)))
        lastn = patient.get("Observation/$lastn", params={"code": f"http://loinc.org|{GLUCOSE[0]}", "max": "50"})
        return {"read": patient.get(f"Observation/{sugar}").status_code,
                "search": search(patient, "Observation", _id=sugar)["total"],
                "lastn": sugar in lastn.text, "report": search(patient, "DiagnosticReport", _id=document["id"])["total"],
                "home": document["id"] in home, "hint": "attend votre consultation" in home,
                "trend": "6,87" in trends}

    assert notices(settings, task_id) == []  # queued with the issuing, if ever: none while masked
    before = seen()
    assert before == {"read": 403, "search": 0, "lastn": False, "report": 0, "home": False, "hint": True,
                      "trend": False}

    page = doctor.get(f"{web_root}/prescripteur/prescriptions/{task_id}")
    submit(doctor, page, f"/prescripteur/prescriptions/{task_id}/levee-masquage", {})
    assert sorted(n.target for n in notices(settings, task_id)
                  if n.resource == f"DocumentReference/{document['id']}") == sorted((CITIZEN, OWN))
    after = seen()
    assert after["read"] == 200 and after["search"] == 1 and after["lastn"] and after["home"] and after["trend"]


def test_an_order_is_en_cours_with_its_state_and_a_report_new_until_opened(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE, NFS], patient=DUPONT)
    task_id = imported_for(fhir, desk, web_root, spec)
    browser, _ = log_in(web_root, "patient.dupont")

    def order() -> str:
        return item(browser.get(f"{web_root}/patient/").text, f"commande-{task_id}")

    assert "En cours" in order() and "Reçue au laboratoire" in order()
    collected(desk, web_root, task_id)
    assert "Prélèvements effectués" in order()

    sugar = posted(lab_middleware, {**result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 5.2, "mmol/L"),
                                    "effectiveDateTime": "2026-11-16T08:00:00+01:00"})
    haemoglobin = posted(lab_middleware, {**result(prescribed(fhir, task_id, NFS[0]), "718-7", 13.1, "g/dL"),
                                          "effectiveDateTime": "2026-11-16T08:00:00+01:00"})
    decide(biologist, web_root, task_id, "biologique", [sugar])
    assert issue(biologist, web_root, task_id).status_code == 200  # partial: the NFS awaits validation
    [partial] = documents(fhir, task_id)
    assert "Résultats partiels" in order()
    line = item(browser.get(f"{web_root}/patient/").text, f"cr-{partial['id']}")
    assert "Nouveau" in line and "Partiel" in line

    assert browser.get(f"{web_root}/documents/{partial['id']}").status_code == 200
    assert "Nouveau" not in item(browser.get(f"{web_root}/patient/").text, f"cr-{partial['id']}")

    decide(biologist, web_root, task_id, "biologique", [haemoglobin])
    assert issue(biologist, web_root, task_id).status_code == 200
    home = browser.get(f"{web_root}/patient/").text
    final = documents(fhir, task_id)[-1]
    assert f"commande-{task_id}" not in home  # reported: no longer in progress
    assert "Nouveau" in item(home, f"cr-{final['id']}")
