"""bilan served over real HTTP inside the test process."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from bilan.app import build_services, create_app
from bilan.demo.load import lab_directory
from bilan.prescription.catalogue import read_csv
from bilan.settings import Settings
from bilan.storage import catalogue
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade


async def prepare(settings: Settings) -> None:
    """The schema, the catalogue and the demo lab, as `bilan demo` sets them up."""
    engine = create_engine(settings)
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            await catalogue.replace(conn, read_csv(settings.catalogue_path))
        records = build_services(engine, settings).records
        for resource, criteria in lab_directory():
            await records.create(None, resource, if_none_exist=criteria)
    finally:
        await engine.dispose()


@contextmanager
def running(settings: Settings) -> Iterator[None]:
    """bilan served over HTTP, in a thread, at settings.base_url."""
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
    try:
        yield
    finally:
        instance.should_exit = True
        thread.join(timeout=10)
