"""Read benchmark: `GET Patient/{id}` and `GET ServiceRequest?patient=…` on bilan and on a peer,
sekmet-fhir (PyPI; a small FHIR R4 server on SQLite, run as bilan/demo/dmp.py runs it, with
HTTP Basic credentials and no access rules or audit), side by side in one run.

The benchmark
  1. generates --prescriptions prescriptions (default 1,700, seeded) with `bilan.demo.prescriptions`
     (1 patient, 1 prescriber with organization and role, 3 context observations, 5 exams);
     a patient drawn twice keeps her first prescription only, so that each patient has 5
     ServiceRequests on both servers;
  2. serves bilan as in production: a fresh PostgreSQL schema (`bench_reads_<pid>`, dropped at
     the end unless --keep), `bilan catalogue`, the local OpenID provider (deploy/idp) and
     `bilan serve --workers W`; every request carries the demo practice software's token
     (client credentials), so it pays token check, access rules and audit. Starts sekmet-fhir;
  3. posts every prescription as a transaction bundle to both at --concurrency and keeps each
     patient's id on each server; then ANALYZEs bilan's schema, as autovacuum would, unless
     --no-analyze (bilan measured on a freshly loaded database: the issue asks for the same
     throughput within 20 %);
  4. warms both servers up (--warmup seconds of each request, not counted), then runs --rounds
     rounds; in each round each server is measured in turn, the first one alternating between
     rounds to cancel drift, for --seconds each:
       - `GET Patient/{id}` and `GET ServiceRequest?patient=Patient/{id}` at --concurrency
         (pooled aiohttp clients): requests/s, p50, p95;
       - the same requests one at a time (concurrency 1, the other server idle): p50, p95.
     Patients are drawn at random with the same seed on both servers (the same patients, each
     under its id on that server);
  5. checks every answer: 200, the Patient asked for, a searchset of exactly that patient's 5
     ServiceRequests; any failed request, or an error in bilan's log, makes the exit code 1;
  6. prints the table (measure, bilan, sekmet-fhir, ratio, target), the CPU split during the
     concurrent measures and each server's peak RSS;
  7. times bilan's refusal (400) of a hostile search, one parameter repeated 500 times
     (target: under 100 ms).

Run it from the project root (about 4 minutes with the defaults):

    .venv/bin/python bench/reads.py
    .venv/bin/python bench/reads.py --no-analyze
    .venv/bin/python bench/reads.py --quick          # smoke run: 100 prescriptions, 2 rounds of 1 s
    .venv/bin/python bench/reads.py --quick --workers 1 --database-url sqlite+aiosqlite:////tmp/reads.db

Targets on the 2-core reference machine (issue 16), at concurrency 16 with tokens, access rules
and audit: bilan >= 2,500 reads/s and >= 1,500 searches/s; a single read p50 <= 3 ms and a
single search p50 <= 5 ms on an idle server. The ratio is bilan's advantage: bilan / peer for
requests/s, peer / bilan for latencies (above 1: bilan is better). A missed target does not
change the exit code. The client shares the two cores with both servers and PostgreSQL, so the
figures include its own CPU cost (the "CPU" lines split the machine's CPU time).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from harness import (
    CLIENT_ID,
    DEFAULT_DATABASE_URL,
    FHIR_JSON,
    CpuSnapshot,
    Database,
    Payload,
    RssSampler,
    Server,
    analyze_schema,
    analyzed_tables,
    check_answer,
    free_port,
    load_catalogue,
    make_payloads,
    percentile,
    prepare_database,
    run_bounded,
    server_env,
    shut_down,
)
from yarl import URL

from bilan.auth.client_credentials import request_token
from bilan.demo.dmp import stand_in
from bilan.demo.idp import local_provider

NAME = "bench_reads"  # of the PostgreSQL schema and the server log
BILAN, PEER = "bilan", "sekmet-fhir"
TARGET_CONCURRENCY = 16
TARGET_READS_PER_S = 2500.0
TARGET_SEARCHES_PER_S = 1500.0
TARGET_READ_P50_MS = 3.0
TARGET_SEARCH_P50_MS = 5.0
TARGET_HOSTILE_MS = 100.0
HOSTILE_REPEATS = 500
HOSTILE_TIMES = 20
SAMPLE_INTERVAL_S = 0.25  # RSS and CPU sampling of the servers' process trees
SHOWN_ERRORS = 3
# (normal, --quick) defaults
DEFAULTS = {"prescriptions": (1700, 100), "rounds": (3, 2), "seconds": (5.0, 1.0), "warmup": (2.0, 0.5)}


# --------------------------------------------------------------------------- options

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prescriptions", type=int, help="prescriptions loaded (default 1700; --quick 100)")
    parser.add_argument("--rounds", type=int, help="measuring rounds (default 3; --quick 2)")
    parser.add_argument("--seconds", type=float, help="length of one measure of one server (default 5; --quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of each request per server first, not counted "
                                                     "(default 2; --quick 0.5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: the --quick defaults above")
    parser.add_argument("--concurrency", type=int, default=TARGET_CONCURRENCY,
                        help=f"requests in flight, loading and measuring (default {TARGET_CONCURRENCY})")
    parser.add_argument("--workers", type=int, default=2, help="bilan's worker processes (default 2)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help=f"bilan's SQLAlchemy async URL, PostgreSQL or SQLite (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--no-analyze", dest="analyze", action="store_false",
                        help="no ANALYZE of bilan's schema after loading (default: ANALYZE, as autovacuum would)")
    parser.add_argument("--port", type=int, default=0, help="bilan's port (default: a free one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the data and the draws (default 1)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound of the whole run in s (default 1800)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema / SQLite file")
    args = parser.parse_args(argv)
    for name, (normal, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    if min(args.prescriptions, args.rounds, args.concurrency, args.workers) < 1 or args.seconds <= 0 \
            or args.warmup < 0:
        parser.error("--prescriptions, --rounds, --concurrency and --workers must be >= 1, "
                     "--seconds > 0, --warmup >= 0")
    if args.port == 0:
        args.port = free_port()
    return args


# --------------------------------------------------------------------------- servers

@dataclass
class Target:
    """One server under measure, with the patients' ids it gave and its process tree's sampler."""

    name: str
    base_url: str  # FHIR base
    authorization: Callable[[], Awaitable[str]]  # a valid Authorization header value
    sampler: RssSampler
    session: aiohttp.ClientSession
    patient_ids: list[str] = field(default_factory=list)
    load_s: float = 0.0
    # Per kind of request, over the concurrent measures: CPU split, wall time, requests answered.
    cpu: dict[str, CpuSnapshot] = field(default_factory=dict)
    busy_s: dict[str, float] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)


def bearer(issuer: str) -> Callable[[], Awaitable[str]]:
    """A fresh token of the demo practice software at each call (outside the timed requests)."""
    async def authorization() -> str:
        return f"Bearer {await asyncio.to_thread(request_token, issuer, CLIENT_ID)}"
    return authorization


def basic(username: str, password: str) -> Callable[[], Awaitable[str]]:
    header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")

    async def authorization() -> str:
        return header
    return authorization


def session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                 timeout=aiohttp.ClientTimeout(total=None))


# --------------------------------------------------------------------------- loading

class Failure(Exception):
    """A server refused or answered wrongly while loading."""


PATIENT_LOCATION = re.compile(r"(?:^|/)Patient/([^/]+)")


def one_per_patient(payloads: list[Payload]) -> list[Payload]:
    """The first prescription of each patient (a random INS may come twice)."""
    first: dict[str, Payload] = {}
    for payload in payloads:
        first.setdefault(payload.ins, payload)
    return list(first.values())


def stored_patient(status: int, body: bytes) -> str:
    """The Patient id a transaction-response gives in its first entry's location."""
    problem = check_answer(status, body)
    if problem:
        raise Failure(problem)
    location = str(orjson.loads(body)["entry"][0]["response"].get("location", ""))
    found = PATIENT_LOCATION.search(location)
    if not found:
        raise Failure(f"no Patient in the first entry's location {location!r}")
    return found.group(1)


async def load(target: Target, payloads: list[Payload], concurrency: int) -> None:
    """Post every bundle to the target at `concurrency`; keep each patient's id, in order."""
    ids: list[str] = [""] * len(payloads)
    pending = iter(enumerate(payloads))
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Authorization": await target.authorization()}
    problems: list[str] = []

    async def client() -> None:
        for index, payload in pending:
            if problems:
                return
            try:
                async with target.session.post(target.base_url, data=payload.body, headers=headers) as response:
                    ids[index] = stored_patient(response.status, await response.read())
            except (Failure, aiohttp.ClientError, asyncio.TimeoutError) as error:
                problems.append(f"{type(error).__name__}: {error}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    if problems:
        raise Failure(f"{target.name} refused a prescription: {problems[0][:1000]}")
    target.load_s = time.perf_counter() - started
    target.patient_ids = ids


# --------------------------------------------------------------------------- requests

def _answer(status: int, body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    if status != 200:
        return None, f"HTTP {status}: {body[:300].decode(errors='replace')}"
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, f"not JSON: {body[:300].decode(errors='replace')}"
    return document, None


def check_read(status: int, body: bytes, patient: str, requests: int) -> str | None:
    """None when the answer is the Patient asked for, else why not."""
    document, problem = _answer(status, body)
    if document is None:
        return problem
    if document.get("resourceType") != "Patient" or document.get("id") != patient:
        return f"not Patient/{patient}: {body[:300].decode(errors='replace')}"
    return None


def check_search(status: int, body: bytes, patient: str, requests: int) -> str | None:
    """None when the answer is a searchset of exactly the patient's ServiceRequests, else why not."""
    document, problem = _answer(status, body)
    if document is None:
        return problem
    entries = document.get("entry") or []
    found = [entry.get("resource", {}) for entry in entries if entry.get("resource", {}).get("resourceType")
             == "ServiceRequest"]
    subjects = {str(resource.get("subject", {}).get("reference", "")).rsplit("/", 1)[-1] for resource in found}
    if document.get("type") != "searchset" or len(found) != requests or subjects != {patient}:
        return (f"{len(found)} ServiceRequests of {sorted(subjects)}, not {requests} of {patient}: "
                f"{body[:300].decode(errors='replace')}")
    total = document.get("total")
    if total is not None and total != requests:
        return f"total {total}, not {requests}"
    return None


@dataclass(frozen=True)
class Kind:
    """A kind of request: its path for a patient, and the check of its answer."""

    name: str
    plural: str
    path: Callable[[str], str]
    check: Callable[[int, bytes, str, int], str | None]


READ = Kind("read", "reads", lambda patient: f"Patient/{patient}", check_read)
SEARCH = Kind("search", "searches", lambda patient: f"ServiceRequest?patient=Patient/{patient}", check_search)
KINDS = (READ, SEARCH)


# --------------------------------------------------------------------------- measures

@dataclass
class Figures:
    """One measure of one server, over all rounds."""

    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Figures) -> None:
        self.latencies_s += other.latencies_s
        self.elapsed_s += other.elapsed_s
        self.errors += other.errors

    @property
    def per_s(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, fraction: float) -> float:
        return percentile(sorted(self.latencies_s), fraction) * 1000


async def measure(target: Target, kind: Kind, requests: list[int], concurrency: int, seconds: float,
                  seed: int, authorization: str) -> Figures:
    """`kind` requests on random patients at `concurrency` for `seconds`, each answer checked."""
    draws = random.Random(seed)
    urls = [URL(f"{target.base_url}/{kind.path(patient)}", encoded=True) for patient in target.patient_ids]
    headers = {"Accept": FHIR_JSON, "Authorization": authorization}
    figures = Figures()

    async def client() -> None:
        while time.perf_counter() < deadline:
            index = draws.randrange(len(urls))
            started = time.perf_counter()
            try:
                async with target.session.get(urls[index], headers=headers) as response:
                    status, body = response.status, await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                figures.errors.append(f"{target.name} {urls[index]}: {type(error).__name__}: {error}")
                continue
            figures.latencies_s.append(time.perf_counter() - started)
            problem = kind.check(status, body, target.patient_ids[index], requests[index])
            if problem:
                figures.errors.append(f"{target.name} {urls[index]}: {problem}")

    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(client() for _ in range(concurrency)))
    figures.elapsed_s = time.perf_counter() - started
    return figures


Results = dict[tuple[str, int, str], Figures]  # (kind, concurrency, server) -> figures


async def measured(target: Target, kind: Kind, requests: list[int], concurrency: int, seconds: float,
                   seed: int, counts_cpu: bool) -> Figures:
    """One measure, its CPU split added to the target's when `counts_cpu`."""
    authorization = await target.authorization()
    before, started = CpuSnapshot.take(target.sampler), time.perf_counter()
    figures = await measure(target, kind, requests, concurrency, seconds, seed, authorization)
    if counts_cpu:
        used = CpuSnapshot.take(target.sampler).minus(before)
        target.cpu[kind.name] = target.cpu.get(kind.name, CpuSnapshot(0.0, 0.0, 0.0)).plus(used)
        target.busy_s[kind.name] = target.busy_s.get(kind.name, 0.0) + time.perf_counter() - started
        target.answered[kind.name] = target.answered.get(kind.name, 0) + len(figures.latencies_s)
    return figures


async def warm_up(targets: list[Target], requests: list[int], args: argparse.Namespace) -> list[str]:
    errors = []
    for target in targets:
        for kind in KINDS:
            errors += (await measured(target, kind, requests, args.concurrency, args.warmup, args.seed,
                                      counts_cpu=False)).errors
    return errors


async def rounds(targets: list[Target], requests: list[int], args: argparse.Namespace) -> Results:
    """Every measure of every server in each round, the servers' order alternating."""
    results: Results = {}
    for number in range(args.rounds):
        order = targets if number % 2 == 0 else targets[::-1]
        seed = args.seed * 1000 + number  # the same draws for both servers within a round
        line = []
        for concurrency in (args.concurrency, 1):
            for kind in KINDS:
                for target in order:
                    figures = await measured(target, kind, requests, concurrency, args.seconds, seed,
                                             counts_cpu=concurrency == args.concurrency)
                    results.setdefault((kind.name, concurrency, target.name), Figures()).add(figures)
                    line.append(f"{target.name} {kind.name} c{concurrency} {figures.per_s:.0f}/s")
        print(f"  round {number + 1}/{args.rounds}: " + ", ".join(line), flush=True)
    return results


# --------------------------------------------------------------------------- report

@dataclass(frozen=True)
class Row:
    label: str
    bilan: float
    peer: float
    unit: str  # "/s" (higher is better) or "ms"
    target: float | None = None

    @property
    def ratio(self) -> float:
        """bilan's advantage: above 1, bilan is better."""
        higher, lower = (self.bilan, self.peer) if self.unit == "/s" else (self.peer, self.bilan)
        return higher / lower if lower else float("nan")

    def verdict(self) -> str:
        if self.target is None:
            return ""
        met = self.bilan >= self.target if self.unit == "/s" else self.bilan <= self.target
        sign = ">=" if self.unit == "/s" else "<="
        return f"{sign} {self.target:,.0f}{'' if self.unit == '/s' else ' ms'}  {'pass' if met else 'MISS'}"

    def value(self, figure: float) -> str:
        return f"{figure:,.0f}" if self.unit == "/s" else f"{figure:.1f} ms"


def rows(results: Results, concurrency: int) -> list[Row]:
    def pair(kind: str, level: int) -> tuple[Figures, Figures]:
        return results[(kind, level, BILAN)], results[(kind, level, PEER)]

    table = []
    for kind, per_s_target in ((READ, TARGET_READS_PER_S), (SEARCH, TARGET_SEARCHES_PER_S)):
        ours, theirs = pair(kind.name, concurrency)
        targeted = concurrency == TARGET_CONCURRENCY
        table += [
            Row(f"{kind.plural}/s, concurrency {concurrency}", ours.per_s, theirs.per_s, "/s",
                per_s_target if targeted else None),
            Row(f"  {kind.name} p50", ours.percentile_ms(0.5), theirs.percentile_ms(0.5), "ms"),
            Row(f"  {kind.name} p95", ours.percentile_ms(0.95), theirs.percentile_ms(0.95), "ms"),
        ]
    for kind, p50_target in ((READ, TARGET_READ_P50_MS), (SEARCH, TARGET_SEARCH_P50_MS)):
        ours, theirs = pair(kind.name, 1)
        table += [
            Row(f"one {kind.name}, idle server, p50", ours.percentile_ms(0.5), theirs.percentile_ms(0.5), "ms",
                p50_target),
            Row(f"one {kind.name}, idle server, p95", ours.percentile_ms(0.95), theirs.percentile_ms(0.95), "ms"),
        ]
    return table


def print_table(table: list[Row]) -> None:
    header = ("measure", BILAN, PEER, "ratio", "target (bilan)")
    lines = [header] + [(row.label, row.value(row.bilan), row.value(row.peer), f"{row.ratio:.2f}x", row.verdict())
                        for row in table]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    print()
    for line in lines:
        print("  " + "  ".join(cell.ljust(width) if column in (0, 4) else cell.rjust(width)
                               for column, (cell, width) in enumerate(zip(line, widths, strict=True))).rstrip())


def cpu_line(target: Target, kind: str) -> str:
    """Where the machine's CPU went during one kind's concurrent measures, in all and per request."""
    usage, answered = target.cpu[kind], max(1, target.answered[kind])
    rest = max(0.0, usage.machine - usage.server - usage.client)

    def part(seconds: float) -> str:
        return f"{seconds:.1f} s ({1000 * seconds / answered:.2f} ms/request)"

    return (f"server {part(usage.server)}, client {part(usage.client)}, rest of machine (database, the "
            f"other server, other processes) {part(rest)}, of {target.busy_s[kind] * (os.cpu_count() or 1):.1f} s "
            "available")


def rss_line(sampler: RssSampler) -> str:
    return (f"{sampler.peak_tree_kib / 1024:.1f} MiB total over {sampler.peak_processes} processes, "
            f"{sampler.peak_process_kib / 1024:.1f} MiB largest process")


async def statistics_mode(database: Database, analyzed: bool) -> str:
    if not database.schema:
        return "n/a (SQLite)"
    done, tables = await analyzed_tables(database)
    autovacuum = "on" if database.autovacuum else "off"
    mode = "ANALYZE after loading" if analyzed else "no ANALYZE (--no-analyze)"
    return f"{mode}; autovacuum {autovacuum}; {done} of {tables} tables with statistics when measured"


def print_context(args: argparse.Namespace, database: Database, targets: list[Target], mode: str,
                  payloads: list[Payload]) -> None:
    resources = sum(payload.resources for payload in payloads)
    lines = [
        ("bilan database", database.describe()),
        ("bilan workers", str(args.workers)),
        ("planner statistics", mode),
        ("data", f"{len(payloads)} prescriptions of as many patients, {resources} resources on each server"),
        ("measures", f"{args.rounds} rounds x {args.seconds:g} s per measure and server, concurrency "
                     f"{args.concurrency} and 1, after {args.warmup:g} s of warm-up"),
    ]
    lines += [(f"{target.name} loading", f"{target.load_s:.1f} s ({resources / target.load_s:.0f} resources/s)")
              for target in targets]
    width = max(len(name) for name, _ in lines)
    print()
    for name, value in lines:
        print(f"  {name:<{width}}  {value}")


def report(args: argparse.Namespace, database: Database, targets: list[Target], mode: str,
           payloads: list[Payload], results: Results, errors: list[str], server_errors: list[str]) -> None:
    print_context(args, database, targets, mode, payloads)
    print_table(rows(results, args.concurrency))
    print("\n  ratio: bilan's advantage (bilan / peer for requests/s, peer / bilan for latencies)")
    checked = sum(len(figures.latencies_s) for figures in results.values())
    print(f"\n  answers checked: {checked}, errors: {len(errors)}, errors in bilan's log: {len(server_errors)}")
    for kind in KINDS:
        for target in targets:
            if kind.name in target.cpu:
                print(f"  CPU, {target.name} {kind.plural} at concurrency {args.concurrency}: "
                      f"{cpu_line(target, kind.name)}")
    for target in targets:
        print(f"  peak RSS, {target.name}: {rss_line(target.sampler)}")
    for error in errors[:SHOWN_ERRORS]:
        print(f"\n  error: {error[:600]}")
    for line in server_errors[:SHOWN_ERRORS]:
        print(f"\n  bilan log: {line[:600]}")


# --------------------------------------------------------------------------- main

async def measure_both(args: argparse.Namespace, database: Database, targets: list[Target],
                       payloads: list[Payload]) -> tuple[Results, list[str], str]:
    for target in targets:
        print(f"loading {len(payloads)} prescriptions into {target.name} ...", flush=True)
        await load(target, payloads, args.concurrency)
    if args.analyze:
        await analyze_schema(database)
    mode = await statistics_mode(database, args.analyze)
    print(f"planner statistics: {mode}", flush=True)
    requests = [payload.exams for payload in payloads]
    errors = await warm_up(targets, requests, args)
    print(f"measuring: {args.rounds} rounds of {args.seconds:g} s per measure and server ...", flush=True)
    results = await rounds(targets, requests, args)
    errors += [error for figures in results.values() for error in figures.errors]
    return results, errors, mode


async def hostile_search(target: Target, times: int = HOSTILE_TIMES) -> tuple[float, str | None]:
    """A search repeating one parameter 500 times, which bilan must refuse (400) at once: the
    median time of its refusal, and what went wrong if it was not refused."""
    url = f"{target.base_url}/ServiceRequest?" + "&".join(["status=active"] * HOSTILE_REPEATS)
    headers = {"Authorization": await target.authorization(), "Accept": FHIR_JSON}
    latencies = []
    for _ in range(times):
        started = time.perf_counter()
        async with target.session.get(URL(url, encoded=True), headers=headers) as response:
            await response.read()
            if response.status != 400:
                return 0.0, f"a search repeating a parameter {HOSTILE_REPEATS} times answered {response.status}"
        latencies.append(time.perf_counter() - started)
    return percentile(sorted(latencies), 0.5), None


async def run(args: argparse.Namespace) -> int:
    print(f"generating {args.prescriptions} prescriptions (seed {args.seed}) ...", flush=True)
    payloads = one_per_patient(make_payloads(args.prescriptions, random.Random(args.seed)))
    database = await prepare_database(args.database_url, NAME)
    server: Server | None = None
    samplers: list[RssSampler] = []
    processes = ExitStack()
    try:
        os.environ.setdefault("BILAN_IDP_PORT", str(free_port()))
        issuer = processes.enter_context(local_provider("127.0.0.1", args.port))
        env = server_env(database)
        print(f"database {database.describe()}: {load_catalogue(env)}", flush=True)
        server = Server.start(env, args.port, args.workers, NAME)
        peer = processes.enter_context(stand_in(free_port()))
        assert peer.process is not None
        samplers = [RssSampler(server.process.pid, SAMPLE_INTERVAL_S), RssSampler(peer.process.pid, SAMPLE_INTERVAL_S)]
        for sampler in samplers:
            sampler.start()
        async with AsyncExitStack() as sessions:
            targets = [
                Target(BILAN, server.base_url, bearer(issuer), samplers[0],
                       await sessions.enter_async_context(session(args.concurrency))),
                Target(PEER, peer.url, basic(peer.username, peer.password), samplers[1],
                       await sessions.enter_async_context(session(args.concurrency))),
            ]
            await server.wait_ready(targets[0].session)
            print(f"bilan at {server.base_url} ({args.workers} workers), {PEER} at {peer.url}", flush=True)
            results, errors, mode = await measure_both(args, database, targets, payloads)
            hostile_s, refused = await hostile_search(targets[0])
        errors += [refused] if refused else []
        server_errors = server.logged_errors()
        report(args, database, targets, mode, payloads, results, errors, server_errors)
        print(f"  hostile search ({HOSTILE_REPEATS} repeated parameters), bilan's 400: p50 "
              f"{hostile_s * 1000:.1f} ms (target < {TARGET_HOSTILE_MS:g} ms: "
              f"{'pass' if hostile_s * 1000 < TARGET_HOSTILE_MS else 'MISS'})")
        return 1 if errors or server_errors else 0
    except Failure as failure:
        print(f"\nbenchmark failed: {failure}", file=sys.stderr)
        return 1
    finally:
        for sampler in samplers:
            sampler.stop()
        processes.close()
        await shut_down(server, database, args.keep)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bounded(lambda: run(args), args.timeout)


if __name__ == "__main__":
    sys.exit(main())
