"""Running the ASGI app: one process, or several sharing the port through SO_REUSEPORT.

With SO_REUSEPORT the kernel spreads incoming connections evenly over the workers; uvicorn's
own --workers lets them race on one socket, and long-lived keep-alive connections (practice
software, lab middleware) then pile onto whichever worker wins.
"""

import multiprocessing
import signal
import socket
from types import FrameType

import uvicorn

APP = "bilan.app:create_app"


def serve(host: str, port: int, workers: int, log_level: str) -> None:
    if workers <= 1:
        uvicorn.run(APP, factory=True, host=host, port=port, log_level=log_level, access_log=False)
        return
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_worker, args=(host, port, log_level), daemon=False)
                for _ in range(workers)]
    for child in children:
        child.start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.is_alive():
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.join()


def _worker(host: str, port: int, log_level: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    config = uvicorn.Config(APP, factory=True, log_level=log_level, access_log=False)
    # The socket itself, not its descriptor: uvicorn rebuilds a descriptor as a Unix socket, and
    # asyncio then leaves Nagle's algorithm on for the connections it accepts, which a client's
    # delayed ACK turns into 40 ms a response on a kept-alive connection.
    uvicorn.Server(config).run(sockets=[sock])
