"""A report is made (PDF, CDA, the ANS check: seconds) with no transaction open, so other
writers are not held up; the order changing meanwhile (a result corrected, a version issued
from another screen) stops the issuing with a 409, and nothing of it is stored."""

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.demo.prescriptions import EXAMS
from bilan.results.document import conformance
from bilan.settings import Settings
from tests.deliveries import in_database, notifications
from tests.orders import addressed, imported, prescribed
from tests.results import binary, decide, documents, issue, posted, result
from tests.web import log_in

GLUCOSE = EXAMS[1]
CHANGED = "La prescription a changé pendant"  # as the page shows it (HTML-escaped after)


class HeldCheck:
    """The real ANS check, whose first call waits at its start until the test lets it go: the
    moment a report is being made."""

    def __init__(self, check: Any):
        self.check = check
        self.started, self.go = threading.Event(), threading.Event()
        self.calls = 0

    def __call__(self, document: bytes, *args: Any) -> conformance.Conformance:
        self.calls += 1
        if self.calls == 1:
            self.started.set()
            self.go.wait(60)
        return self.check(document, *args)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldCheck]:
    conformance.warm()  # compiled once per process: not while the test holds the check
    check = HeldCheck(conformance.check)
    monkeypatch.setattr(conformance, "check", check)
    yield check
    check.go.set()


@pytest.fixture(scope="module")
def other_screen(web_root: str, server: str) -> Iterator[httpx.Client]:
    """The biologist logged in on a second screen."""
    browser, _ = log_in(web_root, "bio.durand")
    yield browser
    browser.close()


@contextmanager
def issuing_held(biologist: httpx.Client, web_root: str, task_id: str,
                 held: HeldCheck) -> Iterator["Future[httpx.Response]"]:
    """The biologist issues the order's report; inside, the report is being checked."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(issue, biologist, web_root, task_id)
        try:
            while not held.started.wait(0.2):
                assert not pending.done(), pending.result().text
            yield pending
        finally:
            held.go.set()


def validated_order(fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client,
                    biologist: httpx.Client, web_root: str, rng: Any) -> tuple[str, str]:
    """An imported order with one result validated by the biologist: (Task id, result id)."""
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    sugar = posted(lab_middleware, result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 7.2, "mmol/L"))
    assert decide(biologist, web_root, task_id, "biologique", [sugar]).status_code == 200
    return task_id, sugar


def write_lock_taken(settings: Settings) -> bool:
    """Whether another writer gets, within 3 s, a lock no open transaction over the records
    lets through: SQLite's one write lock; on PostgreSQL the resources table exclusively,
    which any transaction that read a resource holds off until it ends."""
    if settings.database_url.startswith("sqlite"):
        connection = sqlite3.connect(settings.database_url.split(":///", 1)[1], timeout=3, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            connection.close()

    async def lock(conn: AsyncConnection) -> None:
        await conn.execute(text("SET LOCAL lock_timeout = '3s'"))
        await conn.execute(text("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE"))
    try:
        in_database(settings, lock)
        return True
    except DBAPIError:
        return False


def test_no_lock_is_held_on_the_records_while_a_report_is_made(
        fhir, lab_middleware, desk, biologist, web_root, settings, held, rng) -> None:
    task_id, _ = validated_order(fhir, lab_middleware, desk, biologist, web_root, rng)
    with issuing_held(biologist, web_root, task_id, held) as pending:
        assert write_lock_taken(settings)
    issued = pending.result()
    assert issued.status_code == 200, issued.text
    assert len(documents(fhir, task_id)) == 1


def test_a_result_corrected_while_the_report_is_made_stops_it_and_nothing_is_stored(
        fhir, lab_middleware, desk, biologist, other_screen, web_root, settings, held, rng) -> None:
    task_id, sugar = validated_order(fhir, lab_middleware, desk, biologist, web_root, rng)
    with issuing_held(biologist, web_root, task_id, held) as pending:
        corrected = decide(other_screen, web_root, task_id, "corriger", [sugar], valeur="5,4",
                           commentaire="Erreur de dilution")
        assert corrected.status_code == 200, corrected.text
    refused = pending.result()
    assert refused.status_code == 409 and CHANGED in refused.text
    # Nothing of the refused version: no document, no report, the order untouched, nothing sent.
    assert documents(fhir, task_id) == []
    task = fhir.get(f"Task/{task_id}").json()
    assert "output" not in task and task["status"] != "completed"
    assert [n for n in notifications(settings, f"Task/{task_id}") if n.resource
            and n.resource.startswith("DocumentReference/")] == []

    issued = issue(biologist, web_root, task_id)  # looked at again: issued with the corrected value
    assert issued.status_code == 200, issued.text
    [document] = documents(fhir, task_id)
    cda = binary(fhir, document["content"][0]["attachment"]).decode()
    assert "5,4" in cda or "5.4" in cda


def test_two_screens_issuing_at_once_make_one_version(
        fhir, lab_middleware, desk, biologist, other_screen, web_root, held, rng) -> None:
    task_id, _ = validated_order(fhir, lab_middleware, desk, biologist, web_root, rng)
    with issuing_held(biologist, web_root, task_id, held) as pending:
        first = issue(other_screen, web_root, task_id)  # while the first screen's report is made
        assert first.status_code == 200, first.text
    refused = pending.result()
    assert refused.status_code == 409 and CHANGED in refused.text
    [document] = documents(fhir, task_id)
    assert document["docStatus"] == "final"
    assert held.calls == 2
