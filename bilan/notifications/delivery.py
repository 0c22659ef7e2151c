"""The delivery worker: sends what the outbox holds, after commit, and records the outcome.

One runs in each bilan process (started by the app's lifespan); they share the outbox through
leases (bilan/storage/outbox.py). A rest-hook is delivered when the endpoint answers 2xx; an
e-mail when the relay accepts it; one of bilan's own jobs (a release of masked results at its
date) when it ran. Anything else is tried again later, with a back-off, until
`outbox_max_attempts`. Logs name outbox ids, channels and outcomes only: never an address, a
URL or a body.

Each row is sent by a task of its own, as soon as it is claimed: a hanging endpoint holds its
own rows only, never a round of others. At most CONCURRENCY sends are under way, of which
PER_DESTINATION to one endpoint or address, and an attempt gives up after ATTEMPT_TIMEOUT
(it is then retried like any failure).
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from functools import partial

import aiosmtplib
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.fhir.dates import utc_now
from bilan.fhir.parsing import to_json
from bilan.notifications import mail
from bilan.notifications.mhd import DmpError
from bilan.notifications.outbox import (
    EMAIL,
    PENDING,
    REST_HOOK,
    OutboxItem,
    after_failure,
    backoff,
)
from bilan.settings import Settings
from bilan.storage.outbox import Deliveries

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 10  # seconds, for each step of a call (connect, send, each read)
ATTEMPT_TIMEOUT = 60  # seconds a whole attempt may take, whatever the channel
LEASE_SECONDS = 120  # longer than any one attempt (ATTEMPT_TIMEOUT)
CONCURRENCY = 20  # sends under way at once in one worker
PER_DESTINATION = 4  # of which to one endpoint (or mail address, or job)
STOP_GRACE = 5  # seconds a send in progress may take to finish at shutdown


class Failure(Exception):
    """A delivery that did not happen; its message is stored on the row for the lab to see."""


class DeliveryWorker:
    def __init__(self, engine: AsyncEngine, settings: Settings,
                 jobs: Mapping[str, Callable[[OutboxItem], Awaitable[None]]] | None = None):
        self.outbox = Deliveries(engine)
        self.settings = settings
        self.jobs = dict(jobs or {})  # bilan's own work due at a time (channel -> job)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # a send ended while every slot was taken, or stop()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._held: Counter[str] = Counter()  # sends under way, by target
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False,
                                       headers={"User-Agent": "bilan"})

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bilan-outbox-delivery")

    async def stop(self) -> None:
        """Stop claiming; let the sends under way finish within STOP_GRACE, else cancel them
        (their leases run out and another worker sends them again)."""
        self._stopping.set()
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        if self._task is not None:
            with suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, STOP_GRACE)
        if self._sending:
            _, late = await asyncio.wait(set(self._sending), timeout=max(0.0, deadline - loop.time()))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._http.aclose()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            free = CONCURRENCY - len(self._sending)
            claimed = 0
            if free > 0:
                try:
                    claimed = await self.start_due(free)
                except Exception:  # the database is unreachable: the next round tries again
                    log.exception("outbox: delivery round failed")
            if free <= 0 or claimed < free:  # no room, or nothing more due for now
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.outbox_poll_seconds)
                self._wake.clear()

    async def start_due(self, room: int = CONCURRENCY) -> int:
        """Claim up to `room` due rows and start sending each in a task of its own, which
        records its outcome; how many were claimed."""
        items = await self.outbox.claim_due(utc_now(), LEASE_SECONDS, room,
                                            per_target=PER_DESTINATION, held=dict(self._held))
        for item in items:
            self._held[item.target] += 1
            task = asyncio.create_task(self._deliver_logged(item), name=f"bilan-outbox-{item.id}")
            self._sending.add(task)
            task.add_done_callback(partial(self._ended, target=item.target))
        return len(items)

    def _ended(self, task: asyncio.Task[None], target: str) -> None:
        was_full = len(self._sending) >= CONCURRENCY
        self._sending.discard(task)
        self._held[target] -= 1
        if self._held[target] <= 0:
            del self._held[target]
        if was_full:
            self._wake.set()

    async def _deliver_logged(self, item: OutboxItem) -> None:
        try:
            await self._deliver(item)
        except Exception as error:  # not recorded: its lease runs out, and it is tried again
            log.error("outbox %s (%s): outcome not recorded (%s)", item.id, item.channel,
                      type(error).__name__)

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT):
                await self._send(item)
        except Failure as failure:
            await self._failed(item, failure)
            return
        except TimeoutError:
            await self._failed(item, Failure(f"Timeout: no outcome within {ATTEMPT_TIMEOUT} s"))
            return
        except Exception as error:  # a bug: counted as an attempt, so the row ends up failed
            await self._failed(item, Failure(f"bilan: {type(error).__name__}"))
            return
        recorded = await self.outbox.mark_delivered(item, utc_now())
        log.info("outbox %s (%s): delivered at attempt %d%s", item.id, item.channel,
                 item.attempts + 1, "" if recorded else " (lease had run out)")

    async def _failed(self, item: OutboxItem, failure: Failure) -> None:
        cap = self.settings.outbox_max_backoff_seconds
        status, when = after_failure(item, utc_now(), max_attempts=self.settings.outbox_max_attempts,
                                     max_backoff=cap)
        if not await self.outbox.mark_failed(item, str(failure), status=status, next_attempt_at=when):
            status = ""
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
            except DmpError as error:  # the DMP's refusal or absence, said in French for the lab
                raise Failure(str(error)[:300]) from None
            except Exception as error:
                raise Failure(f"{type(error).__name__}: {error}"[:300]) from None
        else:
            raise Failure(f"unknown channel {item.channel}")

    async def _call(self, item: OutboxItem) -> None:
        request = item.payload
        headers = [(name, value) for name, value in request.get("headers") or []]
        body = b""
        if request.get("body") is not None:
            body = to_json(request["body"])  # a FHIR body: its decimals keep their digits
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
