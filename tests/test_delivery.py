"""The delivery worker sends each notification on its own: an endpoint that hangs holds up its
own notifications only, never an e-mail or another endpoint's."""

import random
import threading
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.fhir.dates import utc_now
from bilan.notifications import outbox
from bilan.notifications.delivery import CONCURRENCY
from bilan.storage import outbox as stored_outbox
from bilan.storage.tables import outbox as outbox_table
from tests.deliveries import in_database, mail_to_prescriber, notifications
from tests.helpers import uuid_from
from tests.receivers import MailRelay, Webhook, eventually

pytestmark = pytest.mark.usefixtures("server")  # its delivery worker sends what tests queue


class HangingWebhook(Webhook):
    """A webhook that takes every call and answers none until release()."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[str] = []  # paths of the calls it holds or held
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        answering = super()._handler()
        hook = self

        class Hanging(answering):  # type: ignore[valid-type, misc]
            def _hold(self) -> None:
                hook.arrived.append(self.path)
                hook._released.wait(120)
                self._record()

            do_POST = do_PUT = _hold

        return Hanging


def call(url: str) -> dict:
    return {"method": "POST", "url": url, "headers": [], "body": None, "content_type": None}


def test_a_hanging_webhook_holds_up_no_other_delivery(
        settings, webhook: Webhook, mail_relay: MailRelay, rng: random.Random) -> None:
    hanging = HangingWebhook()
    hanging.up()
    held: list[int] = []
    hooked = f"Task/{uuid_from(rng)}"
    try:
        # More calls to the hanging endpoint than a worker sends at once, queued first.
        async def queue_hanging(conn: AsyncConnection) -> list[int]:
            return [await outbox.enqueue(conn, outbox.REST_HOOK, f"{hanging.url}/hook",
                                         call(f"{hanging.url}/hook/{n}"), about=hooked, now=utc_now())
                    for n in range(CONCURRENCY + 5)]

        held = in_database(settings, queue_hanging)
        eventually(lambda: hanging.arrived, what="the hanging endpoint to be called")

        to, about = f"dr.{uuid_from(rng).hex[:8]}@medecin.mssante.fr", f"Task/{uuid_from(rng)}"
        mail_to_prescriber(settings, to, about)
        in_database(settings, lambda conn: outbox.enqueue(
            conn, outbox.REST_HOOK, f"{webhook.url}/other", call(f"{webhook.url}/other"), now=utc_now()))

        eventually(lambda: mail_relay.to(to), what="the e-mail")
        eventually(lambda: webhook.delivered("/other"), what="the other endpoint's call")
        assert hanging.arrived and not hanging.calls  # the hanging endpoint has answered nothing yet
        # ... and no call to it has failed yet (by timeout): the others did not wait for that.
        assert {(item.status, item.attempts) for item in notifications(settings, hooked)} == {("pending", 0)}
    finally:
        hanging.release()
        in_database(settings, lambda conn: conn.execute(  # no retries for the other tests to wait on
            update(outbox_table).where(outbox_table.c.id.in_(held)).values(status="failed")))
        hanging.down()


def test_a_worker_claims_no_more_of_one_target_than_it_may_send_at_once(settings, rng: random.Random) -> None:
    later = utc_now() + timedelta(days=365)  # due for this test's claims, not for the server's
    busy, other = (f"https://{uuid_from(rng).hex[:8]}.example.org/hook" for _ in range(2))

    async def work(conn: AsyncConnection) -> tuple[list[int], list[str], list[int]]:
        mine = [await outbox.enqueue(conn, outbox.REST_HOOK, target, {}, now=later)
                for target in [busy] * 6 + [other] * 3]
        claimed = await stored_outbox.claim_due(conn, later, 60, 1000, per_target=2, held={busy: 1})
        await conn.execute(update(outbox_table).values(lease_until=None).where(  # not ours
            outbox_table.c.id.in_([i.id for i in claimed if i.id not in mine])))
        given_back = await stored_outbox.claim_due(conn, later, 60, 1000)
        await conn.execute(update(outbox_table).where(outbox_table.c.id.in_(mine))
                           .values(status="delivered"))
        await conn.execute(update(outbox_table).values(lease_until=None).where(
            outbox_table.c.id.in_([i.id for i in given_back if i.id not in mine])))
        return ([i.id for i in claimed if i.id in mine], [i.target for i in claimed if i.id in mine],
                [i.id for i in given_back if i.id in mine])

    claimed, targets, given_back = in_database(settings, work)
    assert Counter(targets) == {busy: 1, other: 2}  # one more of the busy one, two of the other
    assert len(given_back) == 6 and not set(given_back) & set(claimed)  # the rest stayed due
