"""Two bilan instances, one database: a second `bilan serve`, a process of its own on another
port, beside the test service. A web session made on one works on the other (and a logout on
one ends it on both); the outbox, drained by both delivery workers at once, delivers each
message exactly once."""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bilan.fhir.dates import utc_now
from bilan.notifications.outbox import REST_HOOK
from bilan.settings import Settings
from bilan.storage import outbox
from bilan.storage.database import create_engine
from tests.helpers import run
from tests.receivers import Webhook
from tests.web import csrf_token, follow, log_in

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 40
START_TIMEOUT_S = 60


@pytest.fixture
def second_instance(settings: Settings, server: str, second_root: str, web_root: str) -> Iterator[str]:
    """`bilan serve` at second_root on the test service's database, with the same session
    secret (docs/storage.md: what every node shares); its web root."""
    port = second_root.rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILAN_")}
    shared = {"database_url": settings.database_url, "database_schema": settings.database_schema,
              "base_url": f"{second_root}/fhir", "token_audience": f"{web_root}/fhir",
              "oidc_issuer": settings.oidc_issuer, "session_secret": settings.session_secret,
              "smtp_host": settings.smtp_host, "smtp_port": settings.smtp_port,
              "dmp_url": settings.dmp_url, "outbox_poll_seconds": settings.outbox_poll_seconds,
              "outbox_max_backoff_seconds": settings.outbox_max_backoff_seconds}
    env.update({f"BILAN_{name.upper()}": str(value) for name, value in shared.items() if value is not None})
    process = subprocess.Popen([sys.executable, "-m", "bilan", "serve", "--host", "127.0.0.1",
                                "--port", port, "--workers", "1"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    try:
        _wait_until_up(second_root, process)
        yield second_root
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_until_up(root: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the second bilan stopped: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"{root}/fhir/metadata", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("the second bilan did not answer within a minute")


def test_a_session_made_on_one_instance_works_on_the_other_until_logged_out_on_either(
        web_root: str, second_instance: str) -> None:
    browser, home = log_in(web_root, "dr.lambert")
    assert "Se déconnecter" in home.text
    there = browser.get(f"{second_instance}/prescripteur/")
    assert there.status_code == 200 and "Se déconnecter" in there.text, there.text[-500:]
    # A form of the second instance's page, posted there: the CSRF check holds across nodes.
    logged_out = follow(browser, browser.post(f"{second_instance}/auth/logout",
                                              data={"_csrf_token": csrf_token(there)}))
    assert logged_out.status_code == 200
    back = browser.get(f"{web_root}/prescripteur/", follow_redirects=False)
    assert back.status_code in (302, 303, 401), back.status_code  # the first one ended it too


def test_the_outbox_drained_by_both_instances_delivers_each_message_exactly_once(
        settings: Settings, second_instance: str, webhook: Webhook) -> None:
    async def queue() -> None:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                now = utc_now()
                for n in range(MESSAGES):
                    await outbox.enqueue(conn, REST_HOOK, webhook.url, {
                        "method": "POST", "url": f"{webhook.url}/two-instances/{n}",
                        "headers": [], "body": {"resourceType": "Parameters", "id": f"m{n}"}},
                        now=now)
        finally:
            await engine.dispose()

    run(queue())
    deadline = time.monotonic() + 60
    while len(webhook.delivered("/two-instances/")) < MESSAGES and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # a duplicate would arrive within the workers' next rounds
    paths = Counter(call.path for call in webhook.delivered("/two-instances/"))
    assert sorted(paths) == sorted(f"/two-instances/{n}" for n in range(MESSAGES))
    assert set(paths.values()) == {1}
    bodies = {json.loads(call.body)["id"] for call in webhook.delivered("/two-instances/")}
    assert bodies == {f"m{n}" for n in range(MESSAGES)}
