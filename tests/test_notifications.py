"""Notifications: rest-hook Subscriptions of practice and lab software, e-mails to prescribers;
queued with the change, delivered after commit, retried until the receiver is back."""

import asyncio
import json
import random
from datetime import datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.app import build_services
from bilan.demo.prescriptions import REQUISITION_SYSTEM
from bilan.fhir.dates import utc_now
from bilan.notifications import outbox
from bilan.notifications.outbox import OutboxItem
from bilan.notifications.subscriptions import activate
from bilan.storage import outbox as stored_outbox
from bilan.storage.database import create_engine
from bilan.storage.repository import Write
from bilan.storage.tables import outbox as outbox_table
from tests.deliveries import (
    in_database,
    mail_to_prescriber,
    notifications,
    subscribe,
    subscribed,
)
from tests.helpers import DEMO_PRESCRIBER_RPPS, expressions, run, uuid_from
from tests.orders import addressed, open_by_number, send, task_of
from tests.receivers import MailRelay, Webhook, eventually
from tests.web import log_in, submit

T = TypeVar("T")
pytestmark = pytest.mark.usefixtures("server")  # its delivery worker sends what tests queue


def requisitions(*numbers: str) -> str:
    return ",".join(f"{REQUISITION_SYSTEM}|{n}" for n in numbers)


def test_a_subscription_bilan_cannot_honour_is_refused_naming_the_element(fhir) -> None:
    response = subscribe(fhir, "Task?colour=blue", "http://practice.example/hook",
                         payload="application/xml")
    assert response.status_code == 422
    assert expressions(response) == {"Subscription.criteria", "Subscription.channel.endpoint",
                                     "Subscription.channel.payload"}
    response = fhir.post("Subscription", json={
        "resourceType": "Subscription", "status": "requested", "reason": "Suivi",
        "criteria": "Task?status=accepted",
        "channel": {"type": "email", "endpoint": "mailto:a@b.fr"}})
    assert response.status_code == 422
    [issue] = [i for i in response.json()["issue"]
               if "Subscription.channel.type" in i["expression"]]
    assert issue["code"] == "not-supported"


def test_practice_software_is_told_when_the_lab_imports_its_prescription(
        fhir, webhook: Webhook, web_root, settings, rng) -> None:
    spec = addressed(rng)
    subscribed(fhir, f"Task?requisition={requisitions(spec.requisition)}", f"{webhook.url}/fhir",
               payload="application/fhir+json", header=["Authorization: Bearer jeton-du-cabinet"])
    send(fhir, spec)
    task_id = task_of(fhir, spec.requisition)["id"]

    desk, _ = log_in(web_root, "accueil.martin")
    page = open_by_number(desk, web_root, spec.requisition)
    submit(desk, page, page.url.path + "/import", {"dossier": "new"})

    def with_status(status: str) -> list:
        return [c for c in webhook.delivered() if json.loads(c.body)["status"] == status]

    call = eventually(lambda: with_status("accepted"), what="the accepted Task")[0]
    assert (call.method, call.path) == ("PUT", f"/fhir/Task/{task_id}")
    assert call.headers["authorization"] == "Bearer jeton-du-cabinet"
    assert call.headers["content-type"] == "application/fhir+json"
    task = json.loads(call.body)
    assert task["resourceType"] == "Task" and task["id"] == task_id
    assert task["groupIdentifier"]["value"] == spec.requisition
    # Sent concurrently, the creation's notification may land a moment after the import's.
    eventually(lambda: with_status("requested"), what="the Task's creation, announced too")
    eventually(lambda: {n.status for n in notifications(settings, f"Task/{task_id}")
                        if n.channel == "rest-hook"} == {"delivered"}, what="every row delivered")


def test_a_subscription_never_receives_what_its_owner_may_not_see(
        fhir, lab_middleware, webhook: Webhook, settings, rng) -> None:
    ours = addressed(rng)
    elsewhere = addressed(rng, lab=("urn:oid:1.2.250.1.71.4.2.2", "1750999998"))
    system, value = elsewhere.lab
    fhir.post("Organization", json={"resourceType": "Organization", "name": "Autre laboratoire",
                                    "identifier": [{"system": system, "value": value}]},
              headers={"If-None-Exist": f"identifier={system}|{value}"})
    criteria = f"Task?requisition={requisitions(ours.requisition, elsewhere.requisition)}"
    practice = subscribed(fhir, criteria, f"{webhook.url}/cabinet")
    lab = subscribed(lab_middleware, criteria, f"{webhook.url}/labo",
                     payload="application/fhir+json")
    send(fhir, ours)
    send(fhir, elsewhere)
    ours_task, elsewhere_task = (f"Task/{task_of(fhir, spec.requisition)['id']}"
                                 for spec in (ours, elsewhere))

    # The prescriber's software hears of both of its prescriptions; the lab, of the one
    # addressed to it only: the other lab's Task is not its to see.
    queued = {(n.subscription, n.about)
              for n in notifications(settings, ours_task, elsewhere_task)}
    assert queued == {(practice, ours_task), (practice, elsewhere_task), (lab, ours_task)}
    eventually(lambda: len(webhook.delivered("/cabinet")) == 2 and webhook.delivered("/labo"))
    [call] = webhook.delivered("/labo")
    assert call.path == f"/labo/{ours_task}"
    assert {(c.method, c.body) for c in webhook.delivered("/cabinet")} == {("POST", b"")}


def test_an_endpoint_that_is_down_gets_the_notification_when_it_is_back(
        fhir, webhook: Webhook, settings, rng) -> None:
    spec = addressed(rng)
    subscribed(fhir, f"Task?requisition={requisitions(spec.requisition)}", f"{webhook.url}/hook")
    webhook.down()
    send(fhir, spec)
    task = f"Task/{task_of(fhir, spec.requisition)['id']}"

    def after(attempts: int) -> OutboxItem | None:
        [item] = notifications(settings, task)
        return item if item.attempts >= attempts else None

    refused = eventually(lambda: after(1), what="a first attempt")
    assert refused.status == "pending" and "ConnectError" in refused.last_error
    webhook.status = 503
    webhook.up()
    failed = eventually(lambda: after(refused.attempts + 1), what="an attempt answered 503")
    assert (failed.status, failed.last_error) == ("pending", "HTTP 503")
    webhook.status = 200
    delivered = eventually(lambda: (item := after(0)) and item.status == "delivered" and item,
                           what="the delivery")
    assert delivered.last_error is None and delivered.delivered_at >= delivered.created_at
    assert [c.answered for c in webhook.calls][-1] == 200 and len(webhook.delivered()) == 1


class Refused(Exception):
    pass


def test_a_change_that_rolls_back_queues_nothing(settings, webhook: Webhook, rng: random.Random) -> None:
    marker = f"urn:uuid:{uuid_from(rng)}"
    owner = f"rpps:{DEMO_PRESCRIBER_RPPS}"
    subscription = activate({
        "resourceType": "Subscription", "status": "requested", "reason": "Suivi",
        "criteria": f"Task?identifier=urn:ietf:rfc:3986|{marker}",
        "channel": {"type": "rest-hook", "endpoint": f"{webhook.url}/hook"}})
    task = {"resourceType": "Task", "status": "requested", "intent": "order",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": marker}]}
    rolled_back, kept, subscription_id = (str(uuid_from(rng)) for _ in range(3))

    async def scenario() -> list[OutboxItem]:
        engine = create_engine(settings)
        records = build_services(engine, settings).records
        try:
            async with records.work(None) as work:
                await work.write([Write("Subscription", subscription_id, subscription, "POST")],
                                 owner=owner)
            with pytest.raises(Refused):
                async with records.work(None) as work:
                    await work.write([Write("Task", rolled_back, task, "POST")], owner=owner)
                    assert await outbox.for_about(work.conn, [f"Task/{rolled_back}"])
                    raise Refused
            async with records.work(None) as work:
                await work.write([Write("Task", kept, task, "POST")], owner=owner)
            async with engine.connect() as conn:
                return await outbox.for_about(conn, [f"Task/{rolled_back}", f"Task/{kept}"])
        finally:
            await engine.dispose()

    assert [n.about for n in run(scenario())] == [f"Task/{kept}"]
    eventually(webhook.delivered, what="the kept change's notification")
    assert len(webhook.delivered()) == 1


def test_a_message_for_the_prescriber_is_mailed_to_their_secure_address(
        settings, mail_relay: MailRelay, rng: random.Random) -> None:
    to, about = f"dr.{uuid_from(rng).hex[:8]}@medecin.mssante.fr", f"Task/{uuid_from(rng)}"
    mail_to_prescriber(settings, to, about)

    [mail] = eventually(lambda: mail_relay.to(to), what="the e-mail")
    assert mail["From"] == settings.mail_from
    assert mail["Subject"] == "bilan — Demande d'adaptation (prescription n° P-0001)"
    assert "Glycémie à jeun ?" in mail.get_content()
    eventually(lambda: notifications(settings, about)[0].status == "delivered")
    [item] = notifications(settings, about)
    assert (item.channel, item.target, item.attempts) == ("email", to, 1)


def test_a_mail_waits_while_the_relay_is_down(settings, mail_relay: MailRelay, rng: random.Random) -> None:
    to, about = f"dr.{uuid_from(rng).hex[:8]}@medecin.mssante.fr", f"Task/{uuid_from(rng)}"
    mail_relay.down()
    try:
        mail_to_prescriber(settings, to, about)
        waiting = eventually(lambda: (item := notifications(settings, about)[0]).attempts >= 1
                             and item, what="a first attempt")
        assert waiting.status == "pending" and waiting.last_error
    finally:
        mail_relay.up()
    eventually(lambda: mail_relay.to(to), what="the e-mail")
    eventually(lambda: notifications(settings, about)[0].status == "delivered")
    assert len(mail_relay.to(to)) == 1


def test_workers_sharing_the_outbox_never_claim_the_same_row(settings) -> None:
    """Workers (processes; here connections) claiming at once never share a row; a lease that
    ran out passes the row on, and its first holder may no longer record an outcome."""
    later = utc_now() + timedelta(days=365)  # due for this test's claims, not for the server's
    engine = create_engine(settings)

    async def claim(at: datetime, limit: int) -> list[OutboxItem]:
        async with engine.begin() as conn:
            return await stored_outbox.claim_due(conn, at, 60, limit)

    async def scenario() -> tuple[list[int], list[list[OutboxItem]], bool, bool]:
        claims: list[list[OutboxItem]] = []
        mine: list[int] = []
        try:
            async with engine.begin() as conn:
                mine = [await outbox.enqueue(conn, outbox.REST_HOOK, "https://example.org/hook",
                                             {}, now=later) for _ in range(12)]
            claims += await asyncio.gather(*(claim(later, 5) for _ in range(4)))
            claims.append(await claim(later, 1000))
            retaken = await claim(later + timedelta(seconds=61), 1000)
            first = next(i for batch in claims for i in batch if i.id == mine[0])
            [taken] = [i for i in retaken if i.id == mine[0]]
            async with engine.begin() as conn:
                late = await stored_outbox.mark_delivered(conn, first, later)
                holder = await stored_outbox.mark_delivered(conn, taken, later)
            return mine, claims, late, holder
        finally:
            async with engine.begin() as conn:  # other tests' due rows go back to the server
                await conn.execute(update(outbox_table).where(outbox_table.c.id.in_(mine))
                                   .values(status="delivered"))
                await conn.execute(update(outbox_table).where(
                    outbox_table.c.id.in_([i.id for batch in claims for i in batch]),
                    outbox_table.c.id.not_in(mine)).values(lease_until=None))
            await engine.dispose()

    mine, claims, late, holder = run(scenario())
    claimed = [i.id for batch in claims for i in batch]
    assert len(claimed) == len(set(claimed)) and set(mine) <= set(claimed)
    assert (late, holder) == (False, True)


def test_a_notification_is_given_up_after_its_last_attempt_with_its_error(settings, rng: random.Random) -> None:
    later = utc_now() + timedelta(days=365)  # never due for the server's worker

    async def attempt(conn: AsyncConnection, item_id: int, at: datetime) -> tuple[str, OutboxItem]:
        claimed = await stored_outbox.claim_due(conn, at, 60, 1000)
        await conn.execute(update(outbox_table).values(lease_until=None).where(  # not ours
            outbox_table.c.id.in_([i.id for i in claimed if i.id != item_id])))
        [item] = [i for i in claimed if i.id == item_id]
        status = await outbox.retry_later(conn, item, "HTTP 502", at, max_attempts=3,
                                          max_backoff=3600)
        [stored] = await outbox.for_about(conn, [item.about])
        return status, stored

    async def work(conn: AsyncConnection) -> list[tuple[str, OutboxItem]]:
        item_id = await outbox.enqueue(conn, outbox.REST_HOOK, "https://example.org/hook", {},
                                       about=f"Task/{uuid_from(rng)}", now=later)
        outcomes = [await attempt(conn, item_id, later)]
        outcomes.append(await attempt(conn, item_id, outcomes[-1][1].next_attempt_at))
        outcomes.append(await attempt(conn, item_id, outcomes[-1][1].next_attempt_at))
        return outcomes

    outcomes = in_database(settings, work)
    assert [status for status, _ in outcomes] == ["pending", "pending", "failed"]
    first, second, last = (item for _, item in outcomes)
    assert (second.next_attempt_at - first.next_attempt_at).total_seconds() == 2  # 1 s, then 2 s
    assert (last.status, last.attempts, last.last_error) == ("failed", 3, "HTTP 502")
    assert outbox.backoff(30, 3600) == 3600
