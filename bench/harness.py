"""What the HTTP benchmarks (bench/ingest.py, bench/reads.py) share: the practice software's
prescriptions, a fresh database (a PostgreSQL schema or a SQLite file), `bilan serve` as a
process group, and the sampling of a process tree's RSS and CPU from /proc.

Not a module of bilan: the scripts import it from their own folder (`python bench/x.py` puts
bench/ first on sys.path).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from sqlalchemy.engine import URL, make_url

from bilan.demo.prescriptions import bundle, random_spec

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEMO_PRESCRIBER_RPPS = "10003456786"
CLIENT_ID = "practice-software-demo"
FHIR_JSON = "application/fhir+json"
STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- bundles

@dataclass(frozen=True)
class Payload:
    body: bytes
    resources: int
    ins: str  # the patient's
    exams: int  # ServiceRequests


def make_payloads(count: int, rng: random.Random) -> list[Payload]:
    """Serialized bundles of 1 patient, 1 prescriber, 3 context observations and 5 exams."""
    payloads = []
    for _ in range(count):
        spec = random_spec(rng, exams=5)
        spec.prescriber.rpps = DEMO_PRESCRIBER_RPPS  # the practice software acts for this prescriber
        spec.anticoagulant = "Apixaban"  # fasting + anticoagulant + (weight | pregnancy) = 3
        if spec.patient.gender == "female":
            spec.weight_kg = None
        document = bundle(spec)
        payloads.append(Payload(orjson.dumps(document), len(document["entry"]), spec.patient.ins,
                                len(spec.exams)))
    return payloads


def check_answer(status: int, body: bytes) -> str | None:
    """None when the answer is a successful transaction-response, else why not."""
    if status != 200:
        return f"HTTP {status}: {body[:500].decode(errors='replace')}"
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"not JSON: {body[:500].decode(errors='replace')}"
    if document.get("type") != "transaction-response":
        return f"type {document.get('type')!r}: {body[:500].decode(errors='replace')}"
    statuses = [str(entry.get("response", {}).get("status", "")) for entry in document.get("entry", [])]
    if not statuses or not all(status.startswith(("200", "201")) for status in statuses):
        return f"entry statuses {statuses}: {body[:500].decode(errors='replace')}"
    return None


# --------------------------------------------------------------------------- database

@dataclass
class Database:
    url: str
    schema: str | None = None
    sqlite_path: Path | None = None
    created_sqlite: bool = False
    autovacuum: bool | None = None

    @property
    def is_postgres(self) -> bool:
        return make_url(self.url).get_backend_name() == "postgresql"

    def describe(self) -> str:
        shown = make_url(self.url).render_as_string(hide_password=True)
        return f"{shown} (schema {self.schema})" if self.schema else shown


def _asyncpg_dsn(url: str) -> str:
    parsed: URL = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


async def prepare_database(url: str, name: str) -> Database:
    """The database named by `url`; on PostgreSQL, in a new schema `<name>_<pid>`."""
    database = Database(url)
    if database.is_postgres:
        database.schema = f"{name}_{os.getpid()}"
        conn = await asyncpg.connect(_asyncpg_dsn(url))
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {_quote(database.schema)} CASCADE")
            await conn.execute(f"CREATE SCHEMA {_quote(database.schema)}")
            database.autovacuum = await conn.fetchval("SHOW autovacuum") == "on"
        finally:
            await conn.close()
    else:
        path = make_url(url).database
        if path and path != ":memory:":
            database.sqlite_path = Path(path)
            database.created_sqlite = not database.sqlite_path.exists()
    return database


async def analyze_schema(database: Database) -> None:
    """Refresh the planner statistics of the benchmark schema's tables."""
    if not database.schema:
        return
    conn = await asyncpg.connect(_asyncpg_dsn(database.url))
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", database.schema)
        for table in tables:
            await conn.execute(f"ANALYZE {_quote(database.schema)}.{_quote(table['tablename'])}")
    finally:
        await conn.close()


async def analyzed_tables(database: Database) -> tuple[int, int]:
    """How many of the benchmark schema's tables have planner statistics, of how many."""
    if not database.schema:
        return 0, 0
    conn = await asyncpg.connect(_asyncpg_dsn(database.url))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS tables, count(*) FILTER (WHERE last_analyze IS NOT NULL"
            " OR last_autoanalyze IS NOT NULL) AS analyzed FROM pg_stat_user_tables WHERE schemaname = $1",
            database.schema)
    finally:
        await conn.close()
    return int(row["analyzed"]), int(row["tables"])


async def cleanup_database(database: Database, keep: bool) -> None:
    if keep:
        return
    if database.schema:
        conn = await asyncpg.connect(_asyncpg_dsn(database.url))
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {_quote(database.schema)} CASCADE")
        finally:
            await conn.close()
    elif database.sqlite_path and database.created_sqlite:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database.sqlite_path}{suffix}").unlink(missing_ok=True)


async def shut_down(server: "Server | None", database: Database, keep: bool) -> None:
    """Stop bilan and drop its schema (or file); with `keep`, keep both and say where."""
    if server:
        server.stop()
        if keep:
            print(f"bilan's log kept in {server.log_path}")
        else:
            server.log_path.unlink(missing_ok=True)
    await asyncio.shield(cleanup_database(database, keep))
    if keep and database.schema:
        print(f"schema {database.schema} kept")


# --------------------------------------------------------------------------- server

def server_env(database: Database) -> dict[str, str]:
    env = dict(os.environ)
    env["BILAN_DATABASE_URL"] = database.url
    env["BILAN_LOG_LEVEL"] = "WARNING"
    env.pop("BILAN_DATABASE_SCHEMA", None)
    if database.schema:
        env["BILAN_DATABASE_SCHEMA"] = database.schema
    return env


def load_catalogue(env: dict[str, str]) -> str:
    """Run `bilan catalogue` (migrations included); returns its last output line."""
    done = subprocess.run([sys.executable, "-m", "bilan", "catalogue"], env=env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"bilan catalogue failed ({done.returncode}):\n{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else "catalogue loaded"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str

    @classmethod
    def start(cls, env: dict[str, str], port: int, workers: int, name: str) -> Server:
        log = tempfile.NamedTemporaryFile(prefix=f"{name}_server_", suffix=".log", delete=False)
        command = [sys.executable, "-m", "bilan", "serve", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", str(workers)]
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return cls(process, Path(log.name), f"http://127.0.0.1:{port}/fhir")

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                async with session.get(f"{self.base_url}/metadata") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the whole process group (uvicorn supervisor and its workers)."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        _signal_group(self.process.pid, signal.SIGKILL)  # stray workers, if any

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def logged_errors(self) -> list[str]:
        """Lines of the server log at ERROR/CRITICAL level or starting a traceback."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        markers = (" ERROR ", " CRITICAL ", "Traceback (most recent call last)")
        return [line for line in lines if any(marker in line for marker in markers)]


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- RSS sampling

@dataclass(frozen=True)
class ProcStat:
    ppid: int
    cpu_ticks: int  # utime + stime


def _proc_stats() -> dict[int, ProcStat]:
    """Parent and CPU time of every process, from /proc/<pid>/stat."""
    stats = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is parenthesised and may contain spaces: split after it.
        fields = stat[stat.rfind(")") + 2:].split()
        stats[int(entry.name)] = ProcStat(int(fields[1]), int(fields[11]) + int(fields[12]))
    return stats


def _tree(root: int, stats: dict[int, ProcStat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class RssSampler:
    """Samples the RSS and CPU time of a process tree in a background thread; keeps the peaks."""

    root: int
    interval_s: float = 0.1
    peak_tree_kib: int = 0
    peak_process_kib: int = 0
    peak_processes: int = 0
    cpu_ticks: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the processes of the tree."""
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        stats = _proc_stats()
        pids = _tree(self.root, stats)
        for pid in pids:
            if pid in stats:
                self.cpu_ticks[pid] = stats[pid].cpu_ticks
        sizes = [_rss_kib(pid) for pid in pids]
        self.peak_tree_kib = max(self.peak_tree_kib, sum(sizes))
        self.peak_process_kib = max(self.peak_process_kib, max(sizes, default=0))
        self.peak_processes = max(self.peak_processes, sum(1 for size in sizes if size))


def _machine_busy_seconds() -> float:
    """CPU time spent by the whole machine outside idle and iowait, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by the server tree, this client process and the whole machine."""

    server: float
    client: float
    machine: float

    @classmethod
    def take(cls, sampler: RssSampler) -> CpuSnapshot:
        sampler.sample()
        return cls(sampler.cpu_seconds(), time.process_time(), _machine_busy_seconds())

    def minus(self, other: CpuSnapshot) -> CpuSnapshot:
        return CpuSnapshot(self.server - other.server, self.client - other.client,
                           self.machine - other.machine)

    def plus(self, other: CpuSnapshot) -> CpuSnapshot:
        return CpuSnapshot(self.server + other.server, self.client + other.client,
                           self.machine + other.machine)


# --------------------------------------------------------------------------- figures

def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]



# --------------------------------------------------------------------------- running

async def _bounded(run: Callable[[], Awaitable[int]], timeout_s: float) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        async with asyncio.timeout(timeout_s):
            return await run()
    except TimeoutError:
        print(f"\nbenchmark aborted: over the {timeout_s:.0f} s bound", file=sys.stderr)
        return 2


def run_bounded(run: Callable[[], Awaitable[int]], timeout_s: float) -> int:
    """Run the benchmark within `timeout_s`; its exit code (SIGTERM and ^C end it cleanly)."""
    try:
        return asyncio.run(_bounded(run, timeout_s))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("\nterminated", file=sys.stderr)
        return 143
