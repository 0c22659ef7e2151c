"""The prescriber's software on the FHIR API (client practice-software-demo, acting for Dr
Lambert): it reads his patients' reports and results, asks for the last values, and subscribes
to be told of new and corrected results; another prescriber's patients stay out of its reach,
through reads, searches and Subscriptions alike."""

import json
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.demo.prescriptions import bundle
from bilan.storage.tables import outbox
from tests.deliveries import in_database, subscribe, subscribed
from tests.helpers import ids, search
from tests.orders import addressed, imported, open_by_number, prescribed, task_of
from tests.people import NGUYEN
from tests.receivers import Webhook, eventually
from tests.results import GLUCOSE, decide, issue, posted, report_of, result
from tests.web import submit

FHIR_JSON = "application/fhir+json"


def notified(webhook: Webhook, path: str, resource_type: str) -> list[dict[str, Any]]:
    return [json.loads(c.body) for c in webhook.delivered(f"{path}/{resource_type}/") if c.method == "PUT"]


async def queued_for(conn: AsyncConnection, subscriptions: list[str]) -> list[str]:
    """What the outbox holds for these Subscriptions ("Type/id" of each notified resource)."""
    rows = await conn.execute(select(outbox.c.resource).where(outbox.c.subscription.in_(subscriptions)))
    return [row.resource for row in rows]


def glucose_reported(lab_middleware, biologist, web_root, task_id: str, api: httpx.Client,
                     value: float) -> str:
    """A glucose posted by the analyser, validated and issued; the Observation's id."""
    request = prescribed(api, task_id, GLUCOSE[0])
    sugar = posted(lab_middleware, result(request, GLUCOSE[0], value, "mmol/L"))
    decide(biologist, web_root, task_id, "biologique", [sugar])
    assert issue(biologist, web_root, task_id).status_code == 200
    return sugar


def test_the_software_hears_of_a_new_report_then_of_its_correction(
        fhir, lab_middleware, desk, biologist, web_root, webhook, rng) -> None:
    spec = addressed(rng, exams=[GLUCOSE])
    task_id = imported(fhir, desk, web_root, spec)
    patient = fhir.get(f"Task/{task_id}").json()["for"]["reference"]
    path = f"/logiciel-{spec.requisition}"
    subscribed(fhir, f"DiagnosticReport?patient={patient}", f"{webhook.url}{path}", payload=FHIR_JSON)
    subscribed(fhir, f"Observation?patient={patient}&status=final,corrected", f"{webhook.url}{path}",
               payload=FHIR_JSON)

    sugar = glucose_reported(lab_middleware, biologist, web_root, task_id, fhir, 7.2)
    report = report_of(fhir, task_id)
    assert report["status"] == "final" and report["subject"]["reference"] == patient
    eventually(lambda: [r for r in notified(webhook, path, "DiagnosticReport") if r["status"] == "final"],
               what="the new report, announced")
    eventually(lambda: [o for o in notified(webhook, path, "Observation")
                        if o["id"] == sugar and o["status"] == "final"], what="the validated result")

    corrected = decide(biologist, web_root, task_id, "corriger", [sugar], valeur="5,4",
                       commentaire="Erreur de dilution")
    assert corrected.status_code == 200, corrected.text
    assert issue(biologist, web_root, task_id).status_code == 200
    [amended] = eventually(lambda: [r for r in notified(webhook, path, "DiagnosticReport")
                                    if r["status"] == "corrected"], what="the corrected report, announced")
    assert amended["id"] == report["id"] and {"reference": f"Observation/{sugar}"} in amended["result"]
    fixed = eventually(lambda: [o for o in notified(webhook, path, "Observation")
                                if o["id"] == sugar and o["status"] == "corrected"],
                       what="the corrected result, announced")  # corrected, then labelled when issued
    assert {o["valueQuantity"]["value"] for o in fixed} == {5.4}

    # What the notifications name, the software reads; $lastn gives the corrected value.
    assert fhir.get(f"DiagnosticReport/{report['id']}").json()["status"] == "corrected"
    assert fhir.get(f"Observation/{sugar}").json()["valueQuantity"]["value"] == 5.4
    last = search(fhir, "Observation/$lastn", patient=patient, code=f"http://loinc.org|{GLUCOSE[0]}")
    [latest] = [e["resource"] for e in last["entry"]]
    assert latest["id"] == sugar and latest["valueQuantity"]["value"] == 5.4
    found = search(fhir, "DiagnosticReport", patient=patient, _include="DiagnosticReport:result")
    assert {e["resource"]["id"] for e in found["entry"]} == {report["id"], sugar}


def test_another_prescribers_patients_results_never_reach_the_software(
        fhir, lab_middleware, desk, biologist, web_root, webhook, as_user, settings, rng) -> None:
    """As an attacker: Dr Lambert's software reads, searches and subscribes its way towards the
    results of a patient of Dr Nguyen's, reported by the same lab."""
    lab = as_user("bio.durand")
    theirs = addressed(rng, exams=[GLUCOSE], prescriber=NGUYEN)
    assert as_user("dr.nguyen").post("", json=bundle(theirs)).status_code == 200
    page = open_by_number(desk, web_root, theirs.requisition)
    submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    their_task = task_of(lab, theirs.requisition)["id"]
    their_patient = lab.get(f"Task/{their_task}").json()["for"]["reference"]
    ins = theirs.patient.ins

    path = f"/intrus-{theirs.requisition}"
    # Criteria naming the other patient: refused, or never matched; broad ones match only his own.
    watching = []
    for criteria in (f"DiagnosticReport?patient={their_patient}", f"Observation?subject={their_patient}",
                     f"Observation?patient.identifier={ins}", "DiagnosticReport?status=final,corrected",
                     f"Observation?code=http://loinc.org|{GLUCOSE[0]}"):
        response = subscribe(fhir, criteria, f"{webhook.url}{path}", payload=FHIR_JSON)
        assert response.status_code in (201, 400, 403), response.text
        if response.status_code == 201:
            watching.append(response.json()["id"])
    assert len(watching) >= 2  # at least the broad ones, which must match his own results

    mine = addressed(rng, exams=[GLUCOSE])
    my_task = imported(fhir, desk, web_root, mine)
    their_sugar = glucose_reported(lab_middleware, biologist, web_root, their_task, lab, 8.1)
    their_report = report_of(lab, their_task)
    my_sugar = glucose_reported(lab_middleware, biologist, web_root, my_task, fhir, 4.8)
    my_report = report_of(fhir, my_task)
    decide(biologist, web_root, their_task, "corriger", [their_sugar], valeur="8,0", commentaire="Recalcul")
    assert issue(biologist, web_root, their_task).status_code == 200

    # His own report reaches the broad Subscriptions; by then the other's were matched too.
    eventually(lambda: [r for r in notified(webhook, path, "DiagnosticReport") if r["id"] == my_report["id"]],
               what="his own report, announced")
    eventually(lambda: [o for o in notified(webhook, path, "Observation") if o["id"] == my_sugar],
               what="his own result, announced")
    eventually(lambda: report_of(lab, their_task)["status"] == "corrected", what="their correction")
    # Queued with the change or never: the outbox holds nothing of theirs for these Subscriptions.
    queued = set(in_database(settings, lambda conn: queued_for(conn, watching)))
    assert {f"DiagnosticReport/{my_report['id']}", f"Observation/{my_sugar}"} <= queued
    assert not queued & {f"DiagnosticReport/{their_report['id']}", f"Observation/{their_sugar}"}
    seen = {(c.path.split("/")[-2], c.path.split("/")[-1]) for c in webhook.delivered(path)}
    assert ("DiagnosticReport", their_report["id"]) not in seen
    assert ("Observation", their_sugar) not in seen
    assert all(their_patient not in c.body.decode() for c in webhook.delivered(path))

    # Nor by reading, searching or asking for the last values.
    assert fhir.get(f"DiagnosticReport/{their_report['id']}").status_code == 403
    assert fhir.get(f"Observation/{their_sugar}").status_code == 403
    assert search(fhir, "DiagnosticReport", patient=their_patient)["total"] == 0
    by_ins = search(fhir, "Observation", **{"patient.identifier": ins})
    assert f"Observation/{their_sugar}" not in ids(by_ins)
    last = fhir.get("Observation/$lastn", params={"patient": their_patient})
    assert last.status_code == 403 or not last.json().get("entry"), last.text
