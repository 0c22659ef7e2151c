"""The demo's helper processes (the OpenID provider, the DMP stand-in): stopped the same way."""

import subprocess
from typing import Any

STOP_TIMEOUT = 10  # seconds a process has to end after SIGTERM before it is killed


def stop(process: "subprocess.Popen[Any]") -> None:
    """Ask the process to end, and kill it if it does not in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
