"""Test set-up: one bilan service over real HTTP, on SQLite by default or on the PostgreSQL
server named by BILAN_TEST_DATABASE_URL (in a throw-away schema)."""

import asyncio
import os
import random
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bilan.demo.prescriptions import PrescriptionSpec, bundle
from bilan.results.document import conformance
from bilan.settings import Settings
from tests.helpers import RUN_SEED, client, prescription_spec, run, seeded
from tests.identity import (
    LAB_SCOPES,
    PRACTICE_SCOPES,
    machine_auth,
    other_lab_auth,
    start_idp,
    user_auth,
)
from tests.people import OTHER_LAB, OTHER_LAB_FINESS
from tests.receivers import MailRelay, Webhook
from tests.servers import prepare, running
from tests.web import log_in

pytest_plugins = ["tests.browser"]  # browser, new_page, page_as, shots

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _create_schema(url: str, schema: str, drop: bool = False) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if drop:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        else:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def web_root() -> str:
    """Where bilan listens in the tests (its FHIR base is web_root + /fhir)."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="session")
def second_root() -> str:
    """Where a second bilan (other settings, same provider and database) may listen."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="session")
def issuer(web_root: str, second_root: str) -> Iterator[str]:
    """A real OpenID provider (deploy/idp) issuing tokens for the test service."""
    port = _free_port()
    roots = (web_root, second_root)
    process = start_idp(port, f"{web_root}/fhir", ",".join(f"{r}/auth/callback" for r in roots),
                        ",".join(f"{r}/" for r in roots))
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def mail_relay() -> Iterator[MailRelay]:
    """The SMTP relay bilan mails through in the tests; it keeps what it receives."""
    relay = MailRelay()
    relay.up()
    yield relay
    relay.down()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """An endpoint (practice or lab software) receiving rest-hook notifications."""
    hook = Webhook()
    hook.up()
    yield hook
    hook.down()


@pytest.fixture(scope="session")
def dmp() -> Iterator[Webhook]:
    """The shared record's MHD endpoint, which receives the reports bilan issues."""
    hook = Webhook()
    hook.up()
    yield hook
    hook.down()


@pytest.fixture(scope="session")
def settings(web_root: str, issuer: str, mail_relay: MailRelay, dmp: Webhook) -> Iterator[Settings]:
    url = os.environ.get("BILAN_TEST_DATABASE_URL")
    # Deliveries polled and retried within a second, and news to a prescriber grouped over two
    # seconds, so that tests wait little.
    common = {"base_url": f"{web_root}/fhir", "oidc_issuer": issuer, "smtp_host": "127.0.0.1",
              "smtp_port": mail_relay.port, "dmp_url": f"{dmp.url}/dmp/fhir", "outbox_poll_seconds": 0.2,
              "outbox_max_backoff_seconds": 1, "prescriber_notice_seconds": 2}
    if url and url.startswith("postgresql"):
        schema = f"test_{uuid.uuid4().hex[:10]}"
        asyncio.run(_create_schema(url, schema))
        try:
            yield Settings(database_url=url, database_schema=schema, **common)
        finally:
            asyncio.run(_create_schema(url, schema, drop=True))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Settings(database_url=url or f"sqlite+aiosqlite:///{tmp}/bilan-test.db", **common)


@pytest.fixture
def own_database() -> Iterator[Settings]:
    """A database of the test's own (a temporary SQLite file, or a throw-away PostgreSQL schema
    when BILAN_TEST_DATABASE_URL names a server), with no schema yet."""
    url = os.environ.get("BILAN_TEST_DATABASE_URL")
    if url and url.startswith("postgresql"):
        schema = f"test_{uuid.uuid4().hex[:10]}"
        run(_create_schema(url, schema))  # in a thread: the browser tests keep a loop in this one
        try:
            yield Settings(database_url=url, database_schema=schema)
        finally:
            run(_create_schema(url, schema, drop=True))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Settings(database_url=f"sqlite+aiosqlite:///{tmp}/own.db")


@pytest.fixture(scope="session")
def server(settings: Settings) -> Iterator[str]:
    """A running bilan, its FHIR base URL."""
    asyncio.run(prepare(settings))
    with running(settings):
        yield settings.base_url


@pytest.fixture(scope="session")
def fhir(server: str, issuer: str) -> Iterator[httpx.Client]:
    """The demo practice software (acting for Dr Lambert) on the FHIR API."""
    with client(server, machine_auth(issuer, "practice-software-demo", PRACTICE_SCOPES)) as api:
        yield api


@pytest.fixture(scope="session")
def lab_middleware(server: str, issuer: str) -> Iterator[httpx.Client]:
    """The demo lab's analyser middleware on the FHIR API."""
    with client(server, machine_auth(issuer, "lab-middleware-demo", LAB_SCOPES)) as api:
        yield api


@pytest.fixture(scope="session")
def as_user(server: str, issuer: str, web_root: str) -> Iterator[Any]:
    """as_user("bio.durand"): the FHIR API with the token of a person who logged in."""
    opened: dict[str, httpx.Client] = {}

    def open_as(username: str) -> httpx.Client:
        if username not in opened:
            opened[username] = client(server, user_auth(issuer, username, f"{web_root}/auth/callback"))
        return opened[username]

    yield open_as
    for api in opened.values():
        api.close()


@pytest.fixture(scope="session")
def anonymous(server: str) -> Iterator[httpx.Client]:
    with client(server, None) as api:
        yield api


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Random data of its own for each test, reproducible from the test's node id and the run
    seed (BILAN_TEST_SEED). Requisition numbers come from it: tests' numbers differ because
    their ids do, and each session has a database of its own."""
    return seeded(request.node.nodeid)


@pytest.fixture(scope="module")
def rng_module(request: pytest.FixtureRequest) -> random.Random:
    """Like `rng`, for the data a module's tests share (its module-scoped fixtures)."""
    return seeded(request.node.nodeid)


@pytest.fixture
def spec(rng: random.Random) -> PrescriptionSpec:
    """A prescription signed by Dr Lambert, for whom the demo practice software acts."""
    return prescription_spec(rng)


@pytest.fixture
def prescription(spec: PrescriptionSpec) -> dict:
    return bundle(spec)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the ANS pipeline while the first tests run: the first report issued in the run
    would otherwise wait for it (tens of seconds on a busy machine) past the clients' timeout."""
    threading.Thread(target=conformance.warm, name="warm-ans-pipeline", daemon=True).start()


def pytest_report_header() -> list[str]:
    seed = f"BILAN_TEST_SEED={RUN_SEED}" if RUN_SEED else "none (BILAN_TEST_SEED unset: data from the test ids alone)"
    return [f"bilan database: {os.environ.get('BILAN_TEST_DATABASE_URL') or 'SQLite (temporary file)'}",
            f"bilan test seed: {seed}"]



def _logged_in(web_root: str, username: str) -> Iterator[httpx.Client]:
    browser, _ = log_in(web_root, username)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def desk(web_root: str, server: str) -> Iterator[httpx.Client]:
    """The lab's receptionist in bilan's pages (a browser-less login)."""
    yield from _logged_in(web_root, "accueil.martin")


@pytest.fixture(scope="module")
def technician(web_root: str, server: str) -> Iterator[httpx.Client]:
    """The lab's technician in bilan's pages."""
    yield from _logged_in(web_root, "tech.bernard")


@pytest.fixture(scope="module")
def biologist(web_root: str, server: str) -> Iterator[httpx.Client]:
    """The lab's biologist in bilan's pages."""
    yield from _logged_in(web_root, "bio.durand")


@pytest.fixture(scope="module")
def doctor(web_root: str, server: str) -> Iterator[httpx.Client]:
    """Dr Lambert, for whom the demo practice software acts, in bilan's pages."""
    yield from _logged_in(web_root, "dr.lambert")


@pytest.fixture(scope="module")
def other_lab(server: str, issuer: str, fhir: httpx.Client) -> Iterator[httpx.Client]:
    """The middleware of a second lab, whose Organization is in the directory."""
    fhir.post("Organization", json={"resourceType": "Organization", "name": "Autre laboratoire",
                                    "identifier": [{"system": OTHER_LAB[0], "value": OTHER_LAB[1]}]},
              headers={"If-None-Exist": f"identifier={OTHER_LAB[0]}|{OTHER_LAB[1]}"})
    with client(server, other_lab_auth(issuer, server, OTHER_LAB_FINESS)) as api:
        yield api
