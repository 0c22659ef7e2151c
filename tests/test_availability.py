"""A database that is down, stalled or too slow is a 503 with Retry-After, said within
seconds (in French on the pages), never a 500 nor a minute-long hang."""

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from bilan.settings import Settings
from tests.identity import PRACTICE_SCOPES, machine_auth
from tests.servers import running

POSTGRES = (os.environ.get("BILAN_TEST_DATABASE_URL") or "").startswith("postgresql")


@contextmanager
def bilan_on(settings: Settings, second_root: str, web_root: str, **changes: object) -> Iterator[None]:
    """A second bilan at second_root with other database settings; it accepts the tokens
    issued for the first one."""
    other = settings.model_copy(update={"base_url": f"{second_root}/fhir",
                                        "token_audience": f"{web_root}/fhir", **changes})
    with running(other):
        yield


@contextmanager
def stalled_port() -> Iterator[int]:
    """A port where connections are accepted by the kernel and then never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    [issue] = response.json()["issue"]
    assert issue["code"] == "transient" and "database" in issue["diagnostics"]


@pytest.mark.parametrize("where", ["down", "stalled"])
def test_a_database_that_is_down_or_stalled_is_a_quick_503(settings, second_root, web_root, issuer, server,
                                                           where) -> None:
    with stalled_port() as stalled:
        port = closed_port() if where == "down" else stalled
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"
        with bilan_on(settings, second_root, web_root, database_url=url, database_schema=None,
                      database_connect_timeout=1):
            auth = machine_auth(issuer, "practice-software-demo", PRACTICE_SCOPES)
            with httpx.Client(base_url=f"{second_root}/fhir", auth=auth, timeout=60) as api:
                started = time.monotonic()
                search = api.get("Task", params={"status": "requested"})
                assert time.monotonic() - started < 20  # not asyncpg's 60 s default
                assert_unavailable(search)
                assert_unavailable(api.post("Patient", json={"resourceType": "Patient"},
                                            headers={"Content-Type": "application/fhir+json"}))
                assert api.get("metadata").status_code == 200  # still says what it serves
            page = httpx.get(f"{second_root}/reception", cookies={"bilan_session": "a-session"}, timeout=60)
            assert page.status_code == 503, page.text
            assert "text/html" in page.headers["content-type"] and "indisponible" in page.text
            assert int(page.headers["retry-after"]) > 0


@contextmanager
def locked_resources(settings: Settings) -> Iterator[None]:
    """Another session holding the resources table: reads wait for it. (On a loop of its own,
    in its own thread: the browser tests keep one marked as running in this thread.)"""
    import asyncpg

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    conn = run(asyncpg.connect(settings.database_url.replace("postgresql+asyncpg://", "postgresql://"),
                               server_settings={"search_path": settings.database_schema or "public"}))
    transaction = conn.transaction()
    run(transaction.start())
    run(conn.execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE"))
    try:
        yield
    finally:
        run(transaction.rollback())
        run(conn.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.mark.skipif(not POSTGRES, reason="statement_timeout is PostgreSQL's")
def test_a_statement_past_the_timeout_is_cancelled_into_a_503(settings, second_root, web_root, issuer,
                                                              server, fhir) -> None:
    with bilan_on(settings, second_root, web_root, statement_timeout_ms=500):
        auth = machine_auth(issuer, "practice-software-demo", PRACTICE_SCOPES)
        with httpx.Client(base_url=f"{second_root}/fhir", auth=auth, timeout=60) as api:
            assert api.get("Task", params={"status": "requested"}).status_code == 200
            with locked_resources(settings):
                assert_unavailable(api.get("Task", params={"status": "requested"}))
            assert api.get("Task", params={"status": "requested"}).status_code == 200
