"""bilan served over real HTTP inside the test process."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from bilan.app import create_app
from bilan.settings import Settings


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
