"""The delivery worker: sends what the outbox holds, after commit, and records the outcome.

One runs in each bilan process (started by the app's lifespan); they share the outbox through
leases (outbox.py). A rest-hook is delivered when the endpoint answers 2xx; an e-mail when the
relay accepts it; one of bilan's own jobs (a release of masked results at its date) when it
ran. Anything else is tried again later, with a back-off, until
`outbox_max_attempts`. Logs name outbox ids, channels and outcomes only: never an address, a
URL or a body.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress

import aiosmtplib
import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.fhir.dates import utc_now
from bilan.notifications import mail
from bilan.notifications.outbox import (
    EMAIL,
    PENDING,
    REST_HOOK,
    OutboxItem,
    backoff,
    claim_due,
    mark_delivered,
    retry_later,
)
from bilan.settings import Settings

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 10  # seconds
LEASE_SECONDS = 120  # longer than any one send (HTTP_TIMEOUT, mail.SMTP_TIMEOUT)
BATCH = 20  # rows claimed at once by one worker
STOP_GRACE = 5  # seconds a send in progress may take to finish at shutdown


class Failure(Exception):
    """A delivery that did not happen; its message is stored on the row for the lab to see."""


class DeliveryWorker:
    def __init__(self, engine: AsyncEngine, settings: Settings,
                 jobs: Mapping[str, Callable[[OutboxItem], Awaitable[None]]] | None = None):
        self.engine = engine
        self.settings = settings
        self.jobs = dict(jobs or {})  # bilan's own work due at a time (channel -> job)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False,
                                       headers={"User-Agent": "bilan"})

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bilan-outbox-delivery")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, STOP_GRACE)
        await self._http.aclose()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            claimed = 0
            try:
                claimed = await self.deliver_due()
            except Exception:  # the database is unreachable: the next round tries again
                log.exception("outbox: delivery round failed")
            if claimed < BATCH:
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.outbox_poll_seconds)

    async def deliver_due(self) -> int:
        """One round: claim what is due, send it, record each outcome. How many were claimed."""
        async with self.engine.begin() as conn:
            items = await claim_due(conn, utc_now(), LEASE_SECONDS, BATCH)
        outcomes = await asyncio.gather(*(self._deliver(item) for item in items),
                                        return_exceptions=True)
        for item, outcome in zip(items, outcomes):
            if isinstance(outcome, Exception):  # its lease runs out, and it is tried again
                log.error("outbox %s (%s): outcome not recorded (%s)", item.id, item.channel,
                          type(outcome).__name__)
        return len(items)

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            await self._send(item)
        except Failure as failure:
            await self._failed(item, failure)
            return
        except Exception as error:  # a bug: counted as an attempt, so the row ends up failed
            await self._failed(item, Failure(f"bilan: {type(error).__name__}"))
            return
        async with self.engine.begin() as conn:
            recorded = await mark_delivered(conn, item, utc_now())
        log.info("outbox %s (%s): delivered at attempt %d%s", item.id, item.channel,
                 item.attempts + 1, "" if recorded else " (lease had run out)")

    async def _failed(self, item: OutboxItem, failure: Failure) -> None:
        cap = self.settings.outbox_max_backoff_seconds
        async with self.engine.begin() as conn:
            status = await retry_later(conn, item, str(failure), utc_now(),
                                       max_attempts=self.settings.outbox_max_attempts,
                                       max_backoff=cap)
        attempt = item.attempts + 1
        if status == PENDING:
            log.warning("outbox %s (%s): attempt %d failed (%s), next in %g s", item.id,
                        item.channel, attempt, _kind(failure), backoff(attempt, cap))
        else:
            log.error("outbox %s (%s): attempt %d failed (%s), %s", item.id, item.channel,
                      attempt, _kind(failure), "given up" if status else "lease had run out")

    async def _send(self, item: OutboxItem) -> None:
        if item.channel == REST_HOOK:
            await self._call(item)
        elif item.channel == EMAIL:
            await self._mail(item)
        elif item.channel in self.jobs:
            try:
                await self.jobs[item.channel](item)
            except Exception as error:
                raise Failure(f"{type(error).__name__}: {error}"[:300]) from None
        else:
            raise Failure(f"unknown channel {item.channel}")

    async def _call(self, item: OutboxItem) -> None:
        request = item.payload
        headers = [(name, value) for name, value in request.get("headers") or []]
        body = b""
        if request.get("body") is not None:
            body = orjson.dumps(request["body"])
            headers.append(("Content-Type", request.get("content_type") or "application/fhir+json"))
        try:
            response = await self._http.request(request["method"], request["url"],
                                                content=body, headers=headers)
        except httpx.HTTPError as error:
            raise Failure(f"{type(error).__name__}: {error}"[:300]) from None
        if not response.is_success:
            raise Failure(f"HTTP {response.status_code}")

    async def _mail(self, item: OutboxItem) -> None:
        message = mail.message(self.settings.mail_from, item.target, item.payload["subject"],
                               item.payload["text"], item.id, item.payload.get("attachments"))
        try:
            await mail.send(message, self.settings)
        except aiosmtplib.SMTPResponseException as error:
            raise Failure(f"SMTP {error.code}: {error.message}"[:300]) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise Failure(f"{type(error).__name__}: {error}"[:300]) from None


def _kind(failure: Failure) -> str:
    """What a log line may say of a failure: its first word (HTTP 503, SMTP 451, ConnectError),
    never the relay's or the endpoint's text, which may quote an address."""
    words = str(failure).split(":")[0].split()
    return " ".join(words[:2])
