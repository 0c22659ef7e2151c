"""Worklist search benchmark: how fast the lab reception finds a prescription among many.

The benchmark
  1. prepares a database: by default a fresh SQLite file in a temporary directory; with a
     PostgreSQL URL, a throw-away schema (`bench_worklist_<random>`, dropped at the end). It runs
     the migrations, loads the catalogue and creates the demo lab (FINESS 750100001) and two
     other labs, as `bilan demo` and the tests do;
  2. stores --prescriptions prescriptions (default 100,000), ~80 % addressed to the demo lab,
     ~15 % to the two other labs and ~5 % to no lab, with the demo generator's names, INS,
     birth dates and prescribers (a pool of 300), 30 % of them for a returning patient.
     They are stored in two ways, reported apart:
       - "FHIR path": --full of them (default 2,000) as real transaction Bundles through
         `Transactions.process` (validation, resources, Task, intake, worklist row), about
         80/s on the 2-core reference machine; received now, so they are the newest rows,
         all still 'received';
       - "direct": the rest with `worklist.add`, rows shaped as `PrescriptionIntake.after_write`
         makes them, in transactions of 1,000, received over the last 12 months, in time
         order, most older ones already imported or cancelled (the row then belongs to the
         lab that did it, as `worklist.set_status` leaves it). No FHIR resources behind them:
         the search never reads resources;
  3. on PostgreSQL, runs ANALYZE (autovacuum is off on the reference machine);
  4. for each kind of query a receptionist types (the page's default filter 'received';
     inputs drawn from the demo lab's stored rows), runs --warmup searches then --searches
     measured ones through `Reception.worklist` as a reception caller of the demo lab (the
     service path: transaction, search, AuditEvent, commit), then the same texts through the
     bare `worklist.search`; prints p50/p95/p99/max per kind and over all kinds (each kind
     weighs the same), the median number of matching rows, and whether p95 < 50 ms holds;
  5. prints the plan of the slowest kind's slowest search: EXPLAIN (ANALYZE, BUFFERS) on
     PostgreSQL, EXPLAIN QUERY PLAN on SQLite.

Run it from the project root:

    .venv/bin/python bench/worklist.py
    .venv/bin/python bench/worklist.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/worklist.py --prescriptions 20000 --keep /tmp/worklist.db

--keep names a SQLite file or a PostgreSQL schema that is kept at the end and, when it already
holds at least --prescriptions worklist rows, reused without seeding. The exit code is 1 when
the target is missed.

What it does not show: several receptionists at once (one client here; on SQLite every
`Records.unit` begins IMMEDIATE, so a search holds the write lock for its whole duration and
queues behind intake), and real name frequencies: the demo generator draws from 16 family
and 16 given names, so each name word matches ~6 % of rows, far more than any real surname;
whole-name searches are pessimistic, one- and two-letter prefixes about right. The "matches"
column shows how many rows each kind really matched.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.app import build_services
from bilan.auth.caller import Caller
from bilan.demo.load import LAB_FINESS, LAB_IDENTIFIER, lab_directory
from bilan.demo.prescriptions import (
    REQUISITION_SYSTEM,
    Person,
    Prescriber,
    bundle,
    random_person,
    random_prescriber,
    random_spec,
)
from bilan.fhir.dates import utc_now
from bilan.prescription import worklist
from bilan.prescription.catalogue import read_csv
from bilan.prescription.identity import fold
from bilan.prescription.reception import Reception
from bilan.settings import Settings
from bilan.storage import catalogue
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade
from bilan.storage.tables import worklist as worklist_table

TARGET_P95_MS = 50.0
OTHER_LABS = {"690100002": "Laboratoire Bilan Lyon Sud", "130100003": "Laboratoire Bilan Marseille"}
# Where prescriptions are addressed: the demo lab, the two others, none.
LAB_WEIGHTS = [(LAB_FINESS, 0.80), ("690100002", 0.08), ("130100003", 0.07),
               (worklist.NOT_ADDRESSED, 0.05)]
PRESCRIBER_POOL = 300
RETURNING_PATIENTS = 0.30
HISTORY_DAYS = 365
BATCH = 1000
UNADDRESSED_SCANS = 0.10  # share of scanned numbers that are prescriptions addressed to no lab
MATCH_SAMPLES = 3  # searches per kind whose full match count is reported
CALLER = Caller("reception", "bench", frozenset(), lab_finess=LAB_FINESS)


# --------------------------------------------------------------------------- options

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prescriptions", type=int, default=100_000,
                        help="prescriptions stored in all (default 100000)")
    parser.add_argument("--full", type=int, default=2000,
                        help="of which stored through the real FHIR transaction path (default 2000)")
    parser.add_argument("--database-url", default=None,
                        help="SQLAlchemy async URL (default: a SQLite file in a temporary directory)")
    parser.add_argument("--searches", type=int, default=200, help="measured searches per kind (default 200)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="searches per kind first, not counted (default 20)")
    parser.add_argument("--explain", type=int, default=1,
                        help="plans shown: of the N slowest kinds (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--keep", metavar="PATH_OR_SCHEMA",
                        help="SQLite file or PostgreSQL schema to keep, and to reuse if already seeded")
    args = parser.parse_args(argv)
    if args.prescriptions < 1 or not 0 <= args.full <= args.prescriptions or args.searches < 1:
        parser.error("--prescriptions and --searches must be >= 1, 0 <= --full <= --prescriptions")
    return args


# --------------------------------------------------------------------------- database

@dataclass
class Database:
    settings: Settings
    kept: bool
    temporary: tempfile.TemporaryDirectory[str] | None = None

    @property
    def is_postgres(self) -> bool:
        return make_url(self.settings.database_url).get_backend_name() == "postgresql"

    def describe(self) -> str:
        shown = make_url(self.settings.database_url).render_as_string(hide_password=True)
        schema = self.settings.database_schema
        return f"{shown} (schema {schema}{', kept' if self.kept else ''})" if schema else shown


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def open_database(args: argparse.Namespace) -> Database:
    url = args.database_url
    if url and make_url(url).get_backend_name() == "postgresql":
        schema = args.keep or f"bench_worklist_{uuid.uuid4().hex[:8]}"
        await _admin(url, f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        return Database(Settings(database_url=url, database_schema=schema), kept=bool(args.keep))
    if url:
        return Database(Settings(database_url=url), kept=True)
    if args.keep:
        return Database(Settings(database_url=f"sqlite+aiosqlite:///{Path(args.keep).resolve()}"), kept=True)
    temporary = tempfile.TemporaryDirectory(prefix="bench-worklist-")
    return Database(Settings(database_url=f"sqlite+aiosqlite:///{temporary.name}/worklist.db"),
                    kept=False, temporary=temporary)


async def close_database(database: Database) -> None:
    if database.kept:
        return
    if database.is_postgres:
        schema = database.settings.database_schema
        await _admin(database.settings.database_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    elif database.temporary:
        database.temporary.cleanup()


async def prepare(engine: AsyncEngine, settings: Settings) -> None:
    """The schema, the catalogue and the labs, as `bilan demo` sets them up."""
    await upgrade(engine)
    async with engine.begin() as conn:
        await catalogue.replace(conn, read_csv(settings.catalogue_path))
    records = build_services(engine, settings).records
    (lab, criteria), *_ = lab_directory()
    await records.create(None, lab, if_none_exist=criteria)
    for finess, name in OTHER_LABS.items():
        identifier = {"system": LAB_IDENTIFIER[0], "value": f"1{finess}"}
        await records.create(None, dict(lab, identifier=[identifier], name=name),
                             if_none_exist=f"identifier={LAB_IDENTIFIER[0]}|1{finess}")


async def stored_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(worklist_table))).scalar_one())


async def analyze(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in ("worklist", "worklist_terms", "resources", "search_index"):
            await conn.execute(text(f"ANALYZE {table}"))


# --------------------------------------------------------------------------- seeding

@dataclass
class Population:
    """Who the prescriptions are for and from: returning patients, a pool of prescribers."""

    rng: random.Random
    prescribers: list[tuple[Prescriber, str]] = field(default_factory=list)  # with role id
    patients: list[tuple[Person, str]] = field(default_factory=list)  # with Patient id

    def __post_init__(self) -> None:
        self.prescribers = [(random_prescriber(self.rng), str(uuid.uuid4())) for _ in range(PRESCRIBER_POOL)]

    def patient(self) -> tuple[Person, str]:
        if self.patients and self.rng.random() < RETURNING_PATIENTS:
            return self.rng.choice(self.patients)
        found = (random_person(self.rng), str(uuid.uuid4()))
        self.patients.append(found)
        return found

    def lab(self) -> str:
        return self.rng.choices([f for f, _ in LAB_WEIGHTS], [w for _, w in LAB_WEIGHTS])[0]


def _fate(rng: random.Random, age: timedelta, addressed: str) -> tuple[str, str]:
    """(status, lab_finess) of a row that age: older ones were mostly imported (by the lab it
    was addressed to, the demo lab for most unaddressed ones) or sometimes cancelled."""
    received = 0.8 if age < timedelta(days=3) else 0.3 if age < timedelta(days=30) else 0.03
    draw = rng.random()
    if draw < received:
        return "received", addressed
    handler = addressed or rng.choices([f for f, _ in LAB_WEIGHTS[:3]], [w for _, w in LAB_WEIGHTS[:3]])[0]
    return ("cancelled" if draw > 0.97 else "imported"), handler


def direct_rows(population: Population, count: int, now: datetime) -> list[tuple[dict[str, Any], list[str]]]:
    """Worklist rows as after_write makes them (then moved on by set_status), oldest first."""
    rng = population.rng
    made = []
    for _ in range(count):
        spec = random_spec(rng)  # for its prescription number's format
        person, patient_id = population.patient()
        prescriber, role_id = rng.choice(population.prescribers)
        received_at = now - timedelta(seconds=rng.uniform(0, HISTORY_DAYS * 86400))
        status, lab = _fate(rng, now - received_at, population.lab())
        prescriber_words = [f"Dr {prescriber.given} {prescriber.family.upper()}", prescriber.rpps]
        made.append(({
            "requisition_system": REQUISITION_SYSTEM, "requisition_value": spec.requisition,
            "requester": f"PractitionerRole/{role_id}", "lab_finess": lab, "received_at": received_at,
            "task_id": str(uuid.uuid4()), "patient": f"Patient/{patient_id}",
            "patient_name": " ".join([person.family.upper(), *person.given]),
            "birth_date": person.birth.isoformat(), "sex": person.gender, "ins": person.ins,
            "identity_status": person.status, "prescriber_name": prescriber_words[0],
            "exam_count": rng.randint(1, 8), "urgent": rng.random() < 0.05, "status": status,
            "order_lab": lab if status != "received" else None,
        }, prescriber_words))
    made.sort(key=lambda item: item[0]["received_at"])
    return made


async def seed_direct(engine: AsyncEngine, rows: list[tuple[dict[str, Any], list[str]]]) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        async with engine.begin() as conn:
            for row, prescriber_words in rows[start:start + BATCH]:
                await worklist.add(conn, row, prescriber_words)
        done = start + len(rows[start:start + BATCH])
        if done % 10_000 < BATCH or done == len(rows):
            print(f"    direct: {done:,} rows, {done / (time.perf_counter() - started):,.0f}/s", flush=True)
    return time.perf_counter() - started


async def seed_full(engine: AsyncEngine, settings: Settings, population: Population, count: int) -> float:
    """Real prescriptions, through the FHIR transaction path the practice software uses."""
    transactions = build_services(engine, settings).transactions
    rng = population.rng
    started = time.perf_counter()
    for done in range(1, count + 1):
        spec = random_spec(rng)
        spec.patient = population.patient()[0]
        spec.prescriber = rng.choice(population.prescribers)[0]
        lab = population.lab()
        spec.lab = (LAB_IDENTIFIER[0], f"1{lab}") if lab else None
        await transactions.process(None, bundle(spec))
        if done % 500 == 0 or done == count:
            print(f"    FHIR path: {done:,} prescriptions, {done / (time.perf_counter() - started):,.0f}/s",
                  flush=True)
    return time.perf_counter() - started


async def seed(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> None:
    population = Population(random.Random(args.seed))
    direct = args.prescriptions - args.full
    print(f"  seeding {args.prescriptions:,} prescriptions: {direct:,} direct (worklist.add, no FHIR "
          f"resources), {args.full:,} through the FHIR path (Transactions.process)", flush=True)
    rows = direct_rows(population, direct, utc_now())
    direct_s = await seed_direct(engine, rows) if rows else 0.0
    full_s = await seed_full(engine, settings, population, args.full) if args.full else 0.0
    print(f"  seeded: direct {direct:,} rows in {direct_s:.1f} s ({_rate(direct, direct_s)}); "
          f"FHIR path {args.full:,} prescriptions in {full_s:.1f} s ({_rate(args.full, full_s)})", flush=True)


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds else "-"


# --------------------------------------------------------------------------- queries

@dataclass(frozen=True)
class Sample:
    """A stored row a receptionist may look for."""

    number: str
    family: str  # folded
    given: str  # folded, first given name
    birth_fr: str
    ins: str
    prescriber: str  # folded "given family"


@dataclass(frozen=True)
class Kind:
    label: str
    status: str | None
    typed: Callable[[Sample, random.Random], str]


KINDS = [
    Kind("empty (newest first)", "received", lambda s, r: ""),
    Kind("whole number", "received", lambda s, r: s.number),
    Kind("number prefix", "received", lambda s, r: s.number[:4 + r.randint(3, 5)]),
    Kind("family, 1 letter", "received", lambda s, r: s.family[:1]),
    Kind("family, 2 letters", "received", lambda s, r: s.family[:2]),
    Kind("family, 3 letters", "received", lambda s, r: s.family[:3]),
    Kind("family, whole", "received", lambda s, r: s.family),
    Kind("family + given", "received", lambda s, r: f"{s.family} {s.given}"),
    Kind("birth date dd/mm/yyyy", "received", lambda s, r: s.birth_fr),
    Kind("INS", "received", lambda s, r: s.ins),
    Kind("prescriber given+family", "received", lambda s, r: s.prescriber),
    Kind("no match (typo)", "received", lambda s, r: s.family + "qx"),
    Kind("family, whole, any status", None, lambda s, r: s.family),
]


def _sample(row: Any) -> Sample:
    patient = fold(row.patient_name).split()
    prescriber = fold(row.prescriber_name).split()  # "dr given family"
    year, month, day = (row.birth_date or "--").split("-")
    return Sample(row.requisition_value, patient[0], patient[1] if len(patient) > 1 else "",
                  f"{day}/{month}/{year}", row.ins or "", " ".join(prescriber[1:]))


async def samples(engine: AsyncEngine, rng: random.Random, count: int) -> list[Sample]:
    """Prescriptions waiting at the demo lab; a few addressed to no lab, brought on paper."""
    w = worklist_table.c
    columns = (w.requisition_value, w.patient_name, w.birth_date, w.ins, w.prescriber_name)
    async with engine.connect() as conn:
        own = (await conn.execute(select(*columns).where(
            w.lab_finess == LAB_FINESS, w.status == "received"))).all()
        paper = (await conn.execute(select(*columns).where(
            w.lab_finess == worklist.NOT_ADDRESSED, w.status == "received"))).all()
    picked = []
    for _ in range(count):
        pool = paper if paper and rng.random() < UNADDRESSED_SCANS else own
        picked.append(_sample(rng.choice(pool)))
    return picked


# --------------------------------------------------------------------------- measuring

@dataclass
class Timings:
    kind: Kind
    texts: list[str]
    service_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)


async def _timed(call: Awaitable[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call
    return (time.perf_counter() - started) * 1000, result


async def bare_search(engine: AsyncEngine, typed: str, status: str | None,
                      limit: int = 25) -> tuple[float, int]:
    async with engine.connect() as conn:
        elapsed, rows = await _timed(worklist.search(conn, LAB_FINESS, typed, status, limit))
    return elapsed, len(rows)


async def measure(engine: AsyncEngine, reception: Reception, kind: Kind, warm: list[str],
                  texts: list[str]) -> Timings:
    for typed in warm:
        await reception.worklist(CALLER, typed, kind.status)
        await bare_search(engine, typed, kind.status)
    timings = Timings(kind, texts)
    for typed in texts:
        elapsed, rows = await _timed(reception.worklist(CALLER, typed, kind.status))
        timings.service_ms.append(elapsed)
        timings.returned.append(len(rows))
    for typed in texts:
        timings.bare_ms.append((await bare_search(engine, typed, kind.status))[0])
    for typed in texts[:MATCH_SAMPLES]:
        timings.matches.append((await bare_search(engine, typed, kind.status, limit=10**9))[1])
    return timings


# --------------------------------------------------------------------------- plans

@asynccontextmanager
async def captured(engine: AsyncEngine) -> AsyncIterator[list[tuple[str, Any]]]:
    """The SQL statements (and parameters) the driver runs meanwhile."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def show_plan(engine: AsyncEngine, timings: Timings) -> None:
    slowest = max(range(len(timings.texts)), key=lambda i: timings.bare_ms[i])
    typed = timings.texts[slowest]
    async with captured(engine) as statements:
        await bare_search(engine, typed, timings.kind.status)
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    print(f"\n  plan of '{timings.kind.label}' (service-path p95 {p95(timings.service_ms):.1f} ms), "
          f"its slowest search {typed!r} ({timings.bare_ms[slowest]:.1f} ms bare):")
    for statement, parameters in statements:
        if not statement.lstrip().upper().startswith("SELECT"):
            continue
        print(f"\n    {' '.join(statement.split())}\n    parameters: {parameters}\n")
        async with engine.connect() as conn:
            plan = (await conn.exec_driver_sql(prefix + statement, parameters)).all()
        for line in plan:
            print("    " + (line[0] if postgres else f"{line[1]:>3} {line[2]:>3}  {line[3]}"))


# --------------------------------------------------------------------------- report

def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def _figures(values: list[float]) -> str:
    ordered = sorted(values)
    shown = [percentile(ordered, q) for q in (0.50, 0.95, 0.99)] + [ordered[-1]]
    return " ".join(f"{value:6.1f}" for value in shown)


def p95(values: list[float]) -> float:
    return percentile(sorted(values), 0.95)


def report(results: list[Timings]) -> bool:
    """Print the table; True when the overall service-path p95 is under the target."""
    width = max(len(t.kind.label) for t in results)
    columns = "   p50    p95    p99    max"
    print(f"\n  {'':<{width + 25}}  {'service path (ms)':^27}   {'bare search (ms)':^27}")
    print(f"  {'query kind':<{width}}  {'status':8}  {'matches':>7}  {'rows':>4}  {columns}   {columns}")
    for t in results:
        matches = int(statistics.median(t.matches)) if t.matches else 0
        print(f"  {t.kind.label:<{width}}  {t.kind.status or 'any':8}  {matches:>7}  "
              f"{statistics.mean(t.returned):>4.0f}  {_figures(t.service_ms)}   {_figures(t.bare_ms)}")
    service = [v for t in results for v in t.service_ms]
    bare = [v for t in results for v in t.bare_ms]
    print(f"  {'overall (each kind weighs the same)':<{width + 25}}  {_figures(service)}   {_figures(bare)}")
    met = p95(service) < TARGET_P95_MS
    print(f"\n  {'target met' if met else 'target missed'}: overall service-path p95 {p95(service):.1f} ms "
          f"(< {TARGET_P95_MS:.0f}); bare search p95 {p95(bare):.1f} ms")
    missed = [t.kind.label for t in results if p95(t.service_ms) >= TARGET_P95_MS]
    if missed:
        print(f"  kinds with a service-path p95 >= {TARGET_P95_MS:.0f} ms: {', '.join(missed)}")
    return met


async def describe_rows(engine: AsyncEngine) -> str:
    """How the stored rows spread over labs and statuses."""
    w = worklist_table.c
    async with engine.connect() as conn:
        counts = (await conn.execute(select(w.lab_finess, w.status, func.count())
                                     .group_by(w.lab_finess, w.status))).all()
    by_lab: dict[str, dict[str, int]] = {}
    for lab, status, count in counts:
        by_lab.setdefault(lab or "no lab", {})[status] = count
    return "; ".join(f"{lab}: {sum(statuses.values()):,} ("
                     + ", ".join(f"{n:,} {status}" for status, n in sorted(statuses.items())) + ")"
                     for lab, statuses in sorted(by_lab.items(), key=lambda item: -sum(item[1].values())))


# --------------------------------------------------------------------------- main

async def run(args: argparse.Namespace) -> int:
    database = await open_database(args)
    settings = database.settings
    engine = create_engine(settings)
    try:
        print(f"database {database.describe()}", flush=True)
        await prepare(engine, settings)
        already = await stored_rows(engine)
        if already >= args.prescriptions:
            print(f"  reusing {already:,} stored worklist rows (no seeding)")
        elif already:
            print(f"  {already:,} worklist rows already stored, fewer than {args.prescriptions:,}: "
                  "use another --keep", file=sys.stderr)
            return 2
        else:
            await seed(engine, settings, args)
        if database.is_postgres:
            started = time.perf_counter()
            await analyze(engine)
            print(f"  ANALYZE in {time.perf_counter() - started:.1f} s", flush=True)
        print(f"  worklist rows by lab: {await describe_rows(engine)}", flush=True)
        rng = random.Random(args.seed + 1)
        picked = await samples(engine, rng, args.warmup + args.searches)
        reception = Reception(build_services(engine, settings).records)
        results = []
        for kind in KINDS:
            typed = [kind.typed(sample, rng) for sample in picked]
            results.append(await measure(engine, reception, kind, typed[:args.warmup], typed[args.warmup:]))
            print(f"  measured {kind.label}", flush=True)
        met = report(results)
        by_p95 = sorted(results, key=lambda t: p95(t.service_ms), reverse=True)
        for timings in by_p95[:args.explain]:
            await show_plan(engine, timings)
        return 0 if met else 1
    finally:
        await engine.dispose()
        await close_database(database)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
