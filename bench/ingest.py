"""Ingestion benchmark: prescription bundles posted over real HTTP to a running `bilan serve`.

The benchmark
  1. prepares a database: a fresh PostgreSQL schema (`bench_ingest_<pid>`, dropped at the end
     unless --keep) or, for a SQLite URL, the given file;
  2. loads the exam catalogue (`bilan catalogue`), starts the local OpenID provider
     (deploy/idp) and `bilan serve --workers W`, and gets the demo practice software's token
     (client credentials, private_key_jwt): the bundles are Dr Lambert's prescriptions, so every
     request goes through token checks, access rules and the audit trail, as in production;
  3. pre-generates and serializes every bundle (1 patient, 1 prescriber with organization and
     role, 3 context observations, 5 exams = 12 resources), so client-side generation is not
     measured;
  4. posts --warmup bundles (not counted), then --prescriptions bundles at --concurrency over
     a pooled aiohttp client, timing each request, checking each answer;
  5. prints prescriptions/s, resources/s, latency percentiles and the server's peak RSS
     (whole process tree and largest single process, sampled every 100 ms from /proc).

Run it from the project root:

    .venv/bin/python bench/ingest.py --prescriptions 3000 --concurrency 16
    .venv/bin/python bench/ingest.py --prescriptions 300 --workers 1 \\
        --database-url sqlite+aiosqlite:////tmp/bench.db

Target on the 2-core reference machine: >= 1,500 resources/s (about 150 prescriptions/s) with
p95 < 100 ms at concurrency 16. The client shares the machine with the server, so the figures
include the client's own CPU cost; the "CPU during run" line splits the machine's CPU time
between server, client and the rest (mostly PostgreSQL). Any failed request makes the exit code
non-zero.

The schema is new and grows thirtyfold during the run. In production autovacuum keeps the
planner statistics fresh (and PostgreSQL re-plans cached statements when they change); where
autovacuum is off, as on the reference machine, the benchmark stands in for it: ANALYZE after
the warm-up and every --analyze-every seconds (default 10; 0 turns it off).
"""

from __future__ import annotations

import argparse
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
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from sqlalchemy.engine import URL, make_url

from bilan.auth.client_credentials import request_token
from bilan.demo.idp import local_provider
from bilan.demo.prescriptions import bundle, random_spec

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEMO_PRESCRIBER_RPPS = "10003456786"
CLIENT_ID = "practice-software-demo"
FHIR_JSON = "application/fhir+json"
TARGET_RESOURCES_PER_S = 1500.0
TARGET_P95_MS = 100.0
TARGET_CONCURRENCY = 16
RSS_INTERVAL_S = 0.1
STARTUP_TIMEOUT_S = 60.0
SHOWN_ERRORS = 3


# --------------------------------------------------------------------------- options

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prescriptions", type=int, default=3000, help="measured bundles (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help=f"SQLAlchemy async URL, PostgreSQL or SQLite (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--warmup", type=int, default=100, help="bundles posted first, not counted (default 100)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the generated bundles (default 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of the whole run in s (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema / SQLite file")
    parser.add_argument("--analyze-every", type=float, default=10.0,
                        help="where autovacuum is off: ANALYZE after the warm-up and every N s, "
                             "as autovacuum would (default 10; 0: never)")
    args = parser.parse_args(argv)
    if args.prescriptions < 1 or args.concurrency < 1 or args.workers < 1 or args.warmup < 0:
        parser.error("--prescriptions, --concurrency and --workers must be >= 1, --warmup >= 0")
    if args.port == 0:
        args.port = free_port()
    return args


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- bundles

@dataclass(frozen=True)
class Payload:
    body: bytes
    resources: int


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
        payloads.append(Payload(orjson.dumps(document), len(document["entry"])))
    return payloads


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


async def prepare_database(url: str) -> Database:
    database = Database(url)
    if database.is_postgres:
        database.schema = f"bench_ingest_{os.getpid()}"
        conn = await asyncpg.connect(_asyncpg_dsn(url))
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {_quote(database.schema)} CASCADE")
            await conn.execute(f"CREATE SCHEMA {_quote(database.schema)}")
            database.autovacuum = await conn.fetchval("SHOW autovacuum") == "on"
        finally:
            await conn.close()
    else:
        name = make_url(url).database
        if name and name != ":memory:":
            database.sqlite_path = Path(name)
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
    def start(cls, env: dict[str, str], port: int, workers: int) -> Server:
        log = tempfile.NamedTemporaryFile(prefix="bench_ingest_server_", suffix=".log", delete=False)
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
            self._stop.wait(RSS_INTERVAL_S)

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


# --------------------------------------------------------------------------- load

@dataclass
class Results:
    latencies_s: list[float] = field(default_factory=list)
    resources: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


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


async def post_all(session: aiohttp.ClientSession, url: str, payloads: list[Payload],
                   concurrency: int, token: str) -> Results:
    """Post every payload with `concurrency` requests in flight."""
    results = Results()
    queue: Iterator[Payload] = iter(payloads)
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Authorization": f"Bearer {token}"}

    async def client() -> None:
        for payload in queue:
            started = time.perf_counter()
            try:
                async with session.post(url, data=payload.body, headers=headers) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                results.errors.append(f"{type(error).__name__}: {error}")
                continue
            results.latencies_s.append(time.perf_counter() - started)
            problem = check_answer(status, body)
            if problem:
                results.errors.append(problem)
            else:
                results.resources += payload.resources

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    results.elapsed_s = time.perf_counter() - started
    return results


# --------------------------------------------------------------------------- report

def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _statistics(database: Database, every: float) -> str:
    if not database.schema:
        return "n/a (SQLite)"
    if database.autovacuum:
        return "autovacuum on"
    if _stands_in_for_autovacuum(database, every):
        return f"autovacuum off: ANALYZE after warm-up and every {every:g} s"
    return "autovacuum off, no ANALYZE"


def _stands_in_for_autovacuum(database: Database, every: float) -> bool:
    return bool(database.schema) and database.autovacuum is False and every > 0


async def analyze_periodically(database: Database, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await analyze_schema(database)


def report(args: argparse.Namespace, database: Database, results: Results, sampler: RssSampler,
           usage: CpuSnapshot, server_errors: list[str], warmup_errors: list[str]) -> bool:
    """Print the figures; True when the target is met."""
    latencies_ms = sorted(value * 1000 for value in results.latencies_s)
    ok = args.prescriptions - len(results.errors)
    per_s = ok / results.elapsed_s if results.elapsed_s else 0.0
    resources_per_s = results.resources / results.elapsed_s if results.elapsed_s else 0.0
    p95 = percentile(latencies_ms, 0.95)
    rows = [
        ("database", database.describe()),
        ("server workers", str(args.workers)),
        ("planner statistics", _statistics(database, args.analyze_every)),
        ("concurrency", str(args.concurrency)),
        ("prescriptions", f"{ok} ok / {args.prescriptions} posted (+{args.warmup} warm-up)"),
        ("resources", str(results.resources)),
        ("elapsed", f"{results.elapsed_s:.2f} s"),
        ("prescriptions/s", f"{per_s:.1f}"),
        ("resources/s", f"{resources_per_s:.1f}"),
        ("latency p50", f"{percentile(latencies_ms, 0.50):.1f} ms"),
        ("latency p95", f"{p95:.1f} ms"),
        ("latency p99", f"{percentile(latencies_ms, 0.99):.1f} ms"),
        ("latency max", f"{latencies_ms[-1] if latencies_ms else float('nan'):.1f} ms"),
        ("server peak RSS", f"{sampler.peak_tree_kib / 1024:.1f} MiB total over {sampler.peak_processes} "
                            f"processes, {sampler.peak_process_kib / 1024:.1f} MiB largest process"),
        ("CPU during run", f"server {usage.server:.1f} s, client {usage.client:.1f} s, "
                           f"rest of machine (database, other processes) "
                           f"{max(0.0, usage.machine - usage.server - usage.client):.1f} s, "
                           f"of {results.elapsed_s * (os.cpu_count() or 1):.1f} s available"),
        ("errors", f"{len(results.errors)} (+{len(warmup_errors)} during warm-up)"),
        ("server log errors", str(len(server_errors))),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    met = (not results.errors and not warmup_errors
           and resources_per_s >= TARGET_RESOURCES_PER_S and p95 < TARGET_P95_MS)
    verdict = "target met" if met else "target missed"
    note = "" if args.concurrency == TARGET_CONCURRENCY else f" (target defined at concurrency {TARGET_CONCURRENCY})"
    print(f"\n  {verdict}: {resources_per_s:.0f} resources/s (>= {TARGET_RESOURCES_PER_S:.0f}), "
          f"p95 {p95:.1f} ms (< {TARGET_P95_MS:.0f}){note}")
    for error in (warmup_errors + results.errors)[:SHOWN_ERRORS]:
        print(f"\n  error: {error[:500]}")
    for line in server_errors[:SHOWN_ERRORS]:
        print(f"\n  server log: {line[:500]}")
    return met


# --------------------------------------------------------------------------- main

async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    print(f"generating {args.warmup + args.prescriptions} bundles (seed {args.seed}) ...", flush=True)
    warmup = make_payloads(args.warmup, rng)
    measured = make_payloads(args.prescriptions, rng)
    sizes = sorted({payload.resources for payload in warmup + measured})
    print(f"  resources per bundle: {', '.join(map(str, sizes))}", flush=True)
    database = await prepare_database(args.database_url)
    server: Server | None = None
    sampler: RssSampler | None = None
    provider = ExitStack()
    try:
        # The practice software's tokens come from the local OpenID provider, as in the demo.
        os.environ.setdefault("BILAN_IDP_PORT", str(free_port()))
        issuer = provider.enter_context(local_provider("127.0.0.1", args.port))
        env = server_env(database)
        print(f"database {database.describe()}: {load_catalogue(env)}", flush=True)
        server = Server.start(env, args.port, args.workers)
        sampler = RssSampler(server.process.pid)
        sampler.start()
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await server.wait_ready(session)
            print(f"server up at {server.base_url} ({args.workers} workers); warming up with "
                  f"{args.warmup} bundles ...", flush=True)
            token = await asyncio.to_thread(request_token, issuer, CLIENT_ID)
            warm = await post_all(session, server.base_url, warmup, args.concurrency, token)
            analyzer = None
            if _stands_in_for_autovacuum(database, args.analyze_every):
                await analyze_schema(database)
                analyzer = asyncio.create_task(analyze_periodically(database, args.analyze_every))
            print(f"posting {args.prescriptions} bundles at concurrency {args.concurrency} ...", flush=True)
            token = await asyncio.to_thread(request_token, issuer, CLIENT_ID)  # fresh: 10 min
            before = CpuSnapshot.take(sampler)
            try:
                results = await post_all(session, server.base_url, measured, args.concurrency, token)
            finally:
                if analyzer:
                    analyzer.cancel()
            usage = CpuSnapshot.take(sampler).minus(before)
        report(args, database, results, sampler, usage, server.logged_errors(), warm.errors)
        return 1 if results.errors or warm.errors else 0
    finally:
        if sampler:
            sampler.stop()
        if server:
            server.stop()
            if not args.keep:
                server.log_path.unlink(missing_ok=True)
            else:
                print(f"server log kept in {server.log_path}")
        provider.close()
        await asyncio.shield(cleanup_database(database, args.keep))
        if args.keep and database.schema:
            print(f"schema {database.schema} kept")


async def bounded(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        async with asyncio.timeout(args.timeout):
            return await run(args)
    except TimeoutError:
        print(f"\nbenchmark aborted: over the {args.timeout:.0f} s bound", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(bounded(args))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("\nterminated", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
