"""The biologist adapts a prescription and the lab and the prescriber talk about it: in the
lab's pages, the prescriber's pages and through the FHIR API."""

import json
import re
from typing import Any

import httpx

from bilan.demo.prescriptions import EXAMS
from bilan.prescription.messaging import KINDS_SYSTEM
from tests.deliveries import subscribed
from tests.helpers import search
from tests.orders import (
    adapt,
    adaptations,
    addressed,
    answer_of,
    imported,
    prescribed,
)
from tests.receivers import eventually
from tests.web import follow, submit

CRP = ("1988-5", "Protéine C réactive (CRP)")


def test_a_replacement_waits_for_the_prescribers_agreement_given_through_the_api(
        fhir, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[EXAMS[0], EXAMS[9]])  # NFS, ferritin
    task_id = imported(fhir, desk, web_root, spec)
    ferritin = prescribed(fhir, task_id, EXAMS[9][0])

    page = adapt(biologist, web_root, task_id, change="replace", original=f"ServiceRequest/{ferritin['id']}",
                 code="CRP", reason="clinical-context", note="Syndrome inflammatoire ?")
    assert "Remplacement" in page.text and "En attente de l&#39;accord du prescripteur" in page.text

    [change] = adaptations(fhir, ferritin)
    assert change["status"] == "draft" and change["replaces"] == [{"reference": f"ServiceRequest/{ferritin['id']}"}]
    assert change["code"]["coding"][0]["code"] == CRP[0] and change["performer"][0]["reference"].startswith("Organization/")
    assert fhir.get(f"ServiceRequest/{ferritin['id']}").json()["meta"]["versionId"] == "1"  # never altered
    task = fhir.get(f"Task/{task_id}").json()
    assert task["businessStatus"]["text"] == "Adaptation en attente de l'accord du prescripteur"

    thread = search(fhir, "Communication", **{"part-of": f"Task/{task_id}"})["entry"]
    [proposal] = [e["resource"] for e in thread]
    assert proposal["category"][0]["coding"][0]["code"] == "adaptation"
    assert "remplacement de « Ferritine » par « Protéine C réactive (CRP) »" in proposal["payload"][0]["contentString"]
    assert proposal["recipient"] == [task["requester"]] and proposal["sender"] == task["owner"]
    about = search(fhir, "Communication", about=f"ServiceRequest/{change['id']}")
    assert [e["resource"]["id"] for e in about["entry"]] == [proposal["id"]]

    agreement = fhir.post("Communication", json={
        "resourceType": "Communication", "status": "completed",
        "category": [{"coding": [{"system": KINDS_SYSTEM, "code": "agreement"}]}],
        "partOf": [{"reference": f"Task/{task_id}"}], "inResponseTo": [{"reference": f"Communication/{proposal['id']}"}],
        "about": [{"reference": f"ServiceRequest/{change['id']}"}],
        "payload": [{"contentString": "D'accord, merci."}]})
    assert agreement.status_code == 201, agreement.text
    assert agreement.json()["sender"] == task["requester"]  # bilan says who sent it

    change = fhir.get(f"ServiceRequest/{change['id']}").json()
    assert change["status"] == "active" and answer_of(change) == "agreed"
    assert fhir.get(f"Task/{task_id}").json()["businessStatus"]["text"] == "Reçue au laboratoire"
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}")
    assert "Accord du prescripteur" in page.text and "D&#39;accord, merci." in page.text

    twice = fhir.post("Communication", json={**agreement.json(), "id": None})
    assert twice.status_code == 409 and "déjà reçu une réponse" in twice.text


def test_nobody_answers_or_adapts_in_the_other_partys_place(
        fhir, lab_middleware, desk, biologist, web_root, rng) -> None:
    spec = addressed(rng, exams=[EXAMS[0], EXAMS[9]])
    task_id = imported(fhir, desk, web_root, spec)
    ferritin = prescribed(fhir, task_id, EXAMS[9][0])
    adapt(biologist, web_root, task_id, change="replace", original=f"ServiceRequest/{ferritin['id']}",
          code="CRP", reason="clinical-context", note="?")
    [change] = adaptations(fhir, ferritin)

    def message(kind: str, about: list[str]) -> dict[str, Any]:
        return {"resourceType": "Communication", "status": "completed",
                "category": [{"coding": [{"system": KINDS_SYSTEM, "code": kind}]}],
                "partOf": [{"reference": f"Task/{task_id}"}], "about": [{"reference": r} for r in about],
                "payload": [{"contentString": "D'accord."}]}

    forged = lab_middleware.post("Communication", json=message("agreement", [f"ServiceRequest/{change['id']}"]))
    assert forged.status_code == 403, forged.text
    assert forged.json()["issue"][0]["expression"] == ["Communication.category"]
    assert answer_of(fhir.get(f"ServiceRequest/{change['id']}").json()) == "pending"
    proposed = fhir.post("Communication", json=message("adaptation", []))
    assert proposed.status_code == 403 and proposed.json()["issue"][0]["expression"] == ["Communication.category"]


def test_the_prescriber_disagrees_in_the_web_view_and_the_exam_is_kept(
        fhir, desk, biologist, doctor, web_root, rng) -> None:
    spec = addressed(rng, exams=[EXAMS[0], EXAMS[5]])  # NFS, CRP
    task_id = imported(fhir, desk, web_root, spec)
    crp = prescribed(fhir, task_id, EXAMS[5][0])
    adapt(biologist, web_root, task_id, change="cancel", original=f"ServiceRequest/{crp['id']}",
          reason="redundant", note="CRP faite hier au laboratoire.")

    mine = doctor.get(f"{web_root}/prescripteur/")
    assert spec.requisition in mine.text and "Adaptation en attente" in mine.text
    page = doctor.get(f"{web_root}/prescripteur/prescriptions/{task_id}")
    assert "Annulation" in page.text and "CRP faite hier au laboratoire." in page.text
    change_id = re.search(r'name="adaptation" value="([^"]+)"', page.text).group(1)
    answered = submit(doctor, page, f"/prescripteur/prescriptions/{task_id}/reponse",
                      {"adaptation": change_id, "accord": "non", "texte": "Je préfère la refaire."})
    assert "Désaccord du prescripteur" in answered.text and "Je préfère la refaire." in answered.text

    change = fhir.get(f"ServiceRequest/{change_id}").json()
    assert change["status"] == "active" and answer_of(change) == "disagreed"  # the CRP will be done
    assert "Désaccord du prescripteur" in biologist.get(f"{web_root}/reception/prescriptions/{task_id}").text


def test_an_urgent_addition_proceeds_at_once_and_messages_go_both_ways(
        fhir, desk, biologist, doctor, web_root, rng) -> None:
    spec = addressed(rng, exams=[EXAMS[0]])
    task_id = imported(fhir, desk, web_root, spec)
    adapt(biologist, web_root, task_id, change="add", code="TNT", reason="clinical-context", proceed="oui")
    [change] = adaptations(fhir, prescribed(fhir, task_id, EXAMS[0][0]))
    assert change["status"] == "active" and answer_of(change) == "pending"

    page = doctor.get(f"{web_root}/prescripteur/prescriptions/{task_id}")
    submit(doctor, page, f"/prescripteur/prescriptions/{task_id}/message", {"texte": "Douleur thoracique depuis ce matin."})
    lab_page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}")
    assert "Douleur thoracique depuis ce matin." in lab_page.text
    submit(biologist, lab_page, f"/reception/prescriptions/{task_id}/message", {"texte": "Résultat dans l'heure."})
    thread = search(fhir, "Communication", **{"part-of": f"Task/{task_id}", "_sort": "sent"})["entry"]
    assert [e["resource"]["payload"][0]["contentString"][:20] for e in thread][1:] == [
        "Douleur thoracique d", "Résultat dans l'heur"]


def test_adaptation_rules(fhir, desk, biologist, web_root, as_user, rng) -> None:
    spec = addressed(rng, exams=[EXAMS[0], EXAMS[5]])
    task_id = imported(fhir, desk, web_root, spec)

    missing = adapt(biologist, web_root, task_id, change="add", code="TNT", reason="")
    assert missing.status_code == 422 and "Choisissez le motif de l&#39;adaptation." in missing.text
    page = desk.get(f"{web_root}/reception/prescriptions/{task_id}")
    assert "Adapter la prescription" not in page.text  # reception staff do not adapt
    refused = submit(desk, page, f"/reception/prescriptions/{task_id}/adaptation",
                     {"change": "add", "code": "TNT", "reason": "protocol"})
    assert refused.status_code == 403
    empty = submit(desk, page, f"/reception/prescriptions/{task_id}/message", {"texte": "  "})
    assert empty.status_code == 422 and "Écrivez votre message." in empty.text

    # Someone else's prescription: its thread is neither readable nor writable.
    other = as_user("dr.nguyen")
    assert search(other, "Communication", **{"part-of": f"Task/{task_id}"})["total"] == 0
    intrusion = other.post("Communication", json={
        "resourceType": "Communication", "status": "completed",
        "partOf": [{"reference": f"Task/{task_id}"}], "payload": [{"contentString": "?"}]})
    assert intrusion.status_code == 403
    assert search(as_user("patient.dupont"), "Communication")["total"] == 0
    orphan = fhir.post("Communication", json={"resourceType": "Communication", "status": "completed",
                                              "payload": [{"contentString": "Bonjour"}]})
    assert orphan.status_code == 422 and "Communication.partOf" in orphan.text


def test_pages_of_the_prescriber_are_theirs(web_root, server, desk) -> None:
    logged_out = httpx.get(f"{web_root}/prescripteur/")  # to the login, and back after it
    assert logged_out.is_redirect and logged_out.headers["location"] == "/auth/login?next=%2Fprescripteur"
    assert follow(desk, desk.get(f"{web_root}/prescripteur/")).status_code == 403


def test_an_adaptation_reaches_the_prescriber_by_webhook_and_mail_even_after_an_outage(
        fhir, desk, biologist, web_root, webhook, mail_relay, rng) -> None:
    """The issue's whole story: posted by software, imported, adapted; the practice software's
    endpoint is down for a while; the mail arrives; the prescriber answers through the API."""
    spec = addressed(rng, exams=[EXAMS[0], EXAMS[9]])
    task_id = imported(fhir, desk, web_root, spec)
    requester = fhir.get(f"Task/{task_id}").json()["requester"]["reference"]
    practitioner = fhir.get(fhir.get(requester).json()["practitioner"]["reference"]).json()
    address = next(t["value"] for t in practitioner["telecom"] if t["system"] == "email")
    subscribed(fhir, f"Communication?recipient={requester}&part-of=Task/{task_id}", f"{webhook.url}/fhir",
               payload="application/fhir+json", header=["Authorization: Bearer jeton-du-cabinet"])
    webhook.down()

    ferritin = prescribed(fhir, task_id, EXAMS[9][0])
    adapt(biologist, web_root, task_id, change="replace", original=f"ServiceRequest/{ferritin['id']}",
          code="CRP", reason="clinical-context")

    mail = eventually(lambda: [m for m in mail_relay.to(address) if spec.requisition in m["Subject"]],
                      what="the mail to the prescriber")[0]
    assert "remplacement de « Ferritine »" in mail.get_content()
    assert f"/prescripteur/prescriptions/{task_id}" in mail.get_content()
    waiting = eventually(lambda: "ConnectError" in (page := biologist.get(
        f"{web_root}/reception/prescriptions/{task_id}")).text and page, what="the failed attempt, shown to the lab")
    assert "En attente" in waiting.text.split('id="envois-titre"')[1]

    webhook.up()
    [call] = eventually(lambda: webhook.delivered("/fhir/Communication/"), what="the webhook, once back")
    proposal = json.loads(call.body)
    assert call.method == "PUT" and proposal["category"][0]["coding"][0]["code"] == "adaptation"
    assert call.headers["authorization"] == "Bearer jeton-du-cabinet"

    [change] = adaptations(fhir, ferritin)
    answer = fhir.post("Communication", json={
        "resourceType": "Communication", "status": "completed",
        "category": [{"coding": [{"system": KINDS_SYSTEM, "code": "agreement"}]}],
        "partOf": [{"reference": f"Task/{task_id}"}], "inResponseTo": [{"reference": f"Communication/{proposal['id']}"}],
        "about": [{"reference": f"ServiceRequest/{change['id']}"}],
        "payload": [{"contentString": "Bien vu, d'accord."}]})
    assert answer.status_code == 201, answer.text
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}")
    assert "Accord du prescripteur" in page.text and "Bien vu, d&#39;accord." in page.text
    assert "Délivrée" in page.text.split('id="envois-titre"')[1]
