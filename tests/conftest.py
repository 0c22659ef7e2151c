"""Test set-up: one bilan service over real HTTP, on SQLite by default or on the PostgreSQL
server named by BILAN_TEST_DATABASE_URL (in a throw-away schema)."""

import asyncio
import os
import random
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from bilan.app import create_app
from bilan.demo.prescriptions import PrescriptionSpec, bundle, random_spec
from bilan.prescription import catalogue
from bilan.settings import Settings
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade

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


async def _prepare(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await catalogue.replace(conn, catalogue.read_csv(settings.catalogue_path))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    url = os.environ.get("BILAN_TEST_DATABASE_URL")
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    if url and url.startswith("postgresql"):
        schema = f"test_{uuid.uuid4().hex[:10]}"
        asyncio.run(_create_schema(url, schema))
        try:
            yield Settings(database_url=url, database_schema=schema, base_url=base)
        finally:
            asyncio.run(_create_schema(url, schema, drop=True))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Settings(database_url=url or f"sqlite+aiosqlite:///{tmp}/bilan-test.db", base_url=base)


@pytest.fixture(scope="session")
def server(settings: Settings) -> Iterator[str]:
    """A running bilan, its FHIR base URL."""
    asyncio.run(_prepare(settings))
    port = int(settings.base_url.split(":")[2].split("/")[0])
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("bilan did not start")
        time.sleep(0.05)
    yield settings.base_url
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def fhir(server: str) -> Iterator[httpx.Client]:
    """An HTTP client on the FHIR base URL, sending and accepting FHIR JSON."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    with httpx.Client(base_url=server, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """Random data of its own for each test, reproducible from the test's name."""
    return random.Random(f"{request.node.nodeid}-{uuid.uuid4()}")


@pytest.fixture
def spec(rng: random.Random) -> PrescriptionSpec:
    return random_spec(rng)


@pytest.fixture
def prescription(spec: PrescriptionSpec) -> dict:
    return bundle(spec)


def pytest_report_header() -> str:
    return f"bilan database: {os.environ.get('BILAN_TEST_DATABASE_URL') or 'SQLite (temporary file)'}"

