"""The `bilan` command as a newcomer meets it: failures in one sentence, `bilan demo` on ports
of one's choice, stopped without leaving a process behind, mails with absolute links."""

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bilan.demo.dmp import PASSWORD, USERNAME
from bilan.fhir.terminology import INS_NIR_TEST
from bilan.settings import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILAN_")}
    return {**env, **variables}


def _bilan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bilan", *args], check=False, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@contextmanager
def _taken(port: int) -> Iterator[None]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


def test_dev_token_with_the_provider_unreachable_says_so_in_one_sentence() -> None:
    issuer = f"http://127.0.0.1:{_free_port()}"
    line = _one_sentence(_bilan("dev-token", env=_env(BILAN_OIDC_ISSUER=issuer)))
    assert issuer in line and "--issuer" in line


def test_an_unreachable_database_is_one_sentence(tmp_path: Path) -> None:
    for url in (f"postgresql+asyncpg://bilan:secret@127.0.0.1:{_free_port()}/bilan",
                f"sqlite+aiosqlite:///{tmp_path}/no/such/folder/bilan.db"):
        line = _one_sentence(_bilan("migrate", env=_env(BILAN_DATABASE_URL=url)))
        assert "Cannot reach the database" in line
        assert "secret" not in line


def test_a_port_in_use_is_one_sentence(tmp_path: Path) -> None:
    http, idp, smtp = _free_port(), _free_port(), _free_port()
    env = _env(BILAN_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bilan.db",
               BILAN_IDP_PORT=str(idp))
    with _taken(smtp):
        line = _one_sentence(_bilan("demo", "--port", str(http), "--smtp-port", str(smtp), env=env))
        assert str(smtp) in line and "--smtp-port" in line
    with _taken(http):
        line = _one_sentence(_bilan("serve", "--port", str(http), env=env))
        assert str(http) in line and "--port" in line


def _children(pid: int) -> set[int]:
    """The processes whose parent is pid (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_demo_serves_on_chosen_ports_and_sigterm_leaves_nothing_behind(tmp_path: Path) -> None:
    http, idp, smtp, dmp = _free_port(), _free_port(), _free_port(), _free_port()
    database = tmp_path / "demo.db"
    env = _env(BILAN_DATABASE_URL=f"sqlite+aiosqlite:///{database}", BILAN_IDP_PORT=str(idp),
               BILAN_SMTP_PORT=str(smtp), BILAN_DMP_PORT=str(dmp))
    demo = subprocess.Popen([sys.executable, "-m", "bilan", "demo", "--port", str(http)], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 45
        while True:
            assert demo.poll() is None, demo.stderr.read() if demo.stderr else ""
            assert time.monotonic() < deadline, "bilan demo did not serve within 45 s"
            try:
                if httpx.get(f"http://127.0.0.1:{http}/favicon.ico", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert httpx.get(f"http://127.0.0.1:{idp}/.well-known/openid-configuration").status_code == 200
        assert not _is_free(smtp)
        # The DMP stand-in, with Marie Dupont's documents from other labs (docs/dmp.md).
        shared = httpx.get(f"http://127.0.0.1:{dmp}/fhir/DocumentReference", auth=(USERNAME, PASSWORD),
                           params={"patient:identifier": f"{INS_NIR_TEST}|279035121518989"}).json()
        assert shared["total"] == 5
        children = _children(demo.pid)
        assert children  # the OpenID provider
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0
    deadline = time.monotonic() + 5
    while any(_alive(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [child for child in children if _alive(child)]
    assert all(_is_free(port) for port in (http, idp, smtp))
    # The mails queued while loading link to the demo's own address.
    with sqlite3.connect(database) as db:
        texts = [json.loads(payload)["text"] for (payload,) in
                 db.execute("SELECT payload FROM outbox WHERE channel = 'email'")]
    assert texts
    links = [re.search(rf"http://127\.0\.0\.1:{http}/((prescripteur|reception)/prescriptions/|patient/)", text)
             for text in texts]
    assert all(links)  # to the prescriber, to the lab for the prescriber's message, to the patient's space


def test_the_favicon_is_served(server: str) -> None:
    web = server.removesuffix("/fhir")
    response = httpx.get(f"{web}/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/")
    page = httpx.get(f"{web}/")
    assert '<link rel="icon"' in page.text
    assert httpx.get(f"{web}/static/favicon.svg").headers["content-type"].startswith("image/svg+xml")
