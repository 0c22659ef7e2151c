"""Trends benchmark: how fast a patient's results come back as one analyte's series over time,
among a million results of ten thousand patients.

The benchmark
  1. prepares a PostgreSQL schema (`bench_trends_<random>`, dropped at the end unless --keep):
     the migrations, the catalogue, the demo lab, as `bilan demo` and the tests do;
  2. stores --patients patients (default 10,000; the first is Marie Dupont, patient.dupont at
     the demo OpenID provider) and --visits x --analytes results each (default 10 x 10 = 100,
     so 1,000,000 Observations). Each patient has glucose, creatinine and total cholesterol and
     seven more analytes of the catalogue, measured at each visit over ten years; a visit is
     done at the demo lab (70 %: catalogue codes and units, e.g. glucose 40193-5 in mmol/L,
     creatinine 14682-9 in umol/L) or at another lab whose report was imported (30 %: related
     codes in other units, glucose 2345-7 in g/L, creatinine 2160-0 in mg/L, HbA1c 59261-8 in
     mmol/mol, which does not convert to %). About 1 % of results are hidden from the patient
     until released. Visits are stored in time order, patients interleaved, as a lab receives
     them.
     Each Observation is what bilan stores for such a result (the demo lab's after intake,
     validation and issue; another lab's as bilan/results/elsewhere/imported.py makes it): its current
     version, one history row, and the search rows `searchparams.extract` makes plus the owner
     row, as `Repository.save` writes them — checked against `Repository.save` itself on a
     sample before seeding. Written with COPY, secondary indexes dropped and rebuilt after
     (same definitions), ANALYZE at the end. Only one history version per result (the app
     keeps three: received, validated, shared): history is never read by a trend.
  3. measures, for --queries random patients (after --warmup), `Trends.series` for one of
     their analytes, `Observation/$lastn` for that analyte's codes (max=3) and
     `Trends.analytes`, as that patient (a patient caller: her access rules, the audit event,
     the commit): p50, p95, p99, max; the series' queries without the service around them
     ("bare"); and the plans of the slowest series' queries (--explain);
  4. with --page, serves bilan (`bilan serve`, one worker) with the local OpenID provider,
     logs in as patient.dupont through the provider's form and fetches her trend page
     (--page-url, default /patient/analyses/{key}) for each of her analytes, --page-requests
     times in all: p50, p95, max, the whole HTTP round trip (session, access rules, query,
     audit, chart and HTML).

Also `GET Observation?patient=…&code=…` through the generic FHIR search (records.search, as
the API runs it), which must cost what the trends service costs.

Targets on the 2-core reference machine: series p95 < 20 ms, generic search p95 <= 20 ms, page
p95 < 100 ms.

Run it from the project root (about 4 minutes with the defaults, most of it storing):

    .venv/bin/python bench/trends.py
    .venv/bin/python bench/trends.py --page
    .venv/bin/python bench/trends.py --patients 1000 --keep bench_trends_small --page

--keep names a schema that is kept at the end and, when it already holds the patients' results,
reused without seeding. The exit code is 1 when a target is missed.

What it does not show: several patients at once (one client), and a warm database: each
measured patient is another one, so her rows are mostly read from the operating system's cache
(PostgreSQL's shared_buffers is 128 MB on the reference machine; the schema's size is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from html import unescape
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.app import build_services
from bilan.auth import access
from bilan.auth.caller import Caller
from bilan.demo.load import LAB_FINESS, lab_directory
from bilan.fhir.dates import instant, utc_now
from bilan.fhir.query import parse_search
from bilan.fhir.searchparams import extract
from bilan.prescription.catalogue import read_csv
from bilan.prescription.checksums import nir_key
from bilan.prescription.ins import INS_NIR_TEST
from bilan.records.service import Records
from bilan.results import masking
from bilan.results.desk import interpretation
from bilan.results.desk.intake import COMPUTED
from bilan.results.document.fhir_report import OBSERVATION_CATEGORY
from bilan.results.elsewhere.imported import IMPORTED
from bilan.results.views import analytes
from bilan.results.views.lastn import last_n
from bilan.results.views.trends import Trends, visible_results
from bilan.settings import Settings
from bilan.storage import catalogue
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade
from bilan.storage.patient_results import custom_plans
from bilan.storage.repository import OWNER, Repository, Write
from bilan.storage.tables import resources

DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TARGET_SERIES_P95_MS = 20.0
TARGET_PAGE_P95_MS = 100.0
TARGET_SEARCH_P95_MS = 20.0  # Observation?patient=&code= through the generic FHIR search
DUPONT_INS = "279035121518989"  # patient.dupont at the demo OpenID provider
LOINC = analytes.LOINC
UCUM = "http://unitsofmeasure.org"
OWN_LAB_SHARE = 0.70
HIDDEN_SHARE = 0.01
PATIENTS_PER_BATCH = 250
OWNER_KEY = f"lab:{LAB_FINESS}"
OTHER_LABS = [("1930012345", "Laboratoire des Lilas"), ("1690054321", "Biolab Lyon Confluence"),
              ("1330098765", "Laboratoire du Vieux-Port")]
FIRST_VISIT = datetime(2016, 1, 4, 7, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- the results

@dataclass(frozen=True)
class Kind:
    """An analyte as the two kinds of lab report it: (LOINC, unit) at the demo lab, and at
    other labs with their factor from the demo lab's unit (None: not a plain factor)."""

    own: tuple[str, str]
    other: tuple[str, str]
    factor: Decimal | None
    mean: float
    spread: float
    low: float | None
    high: float | None


def _k(own: tuple[str, str], other: tuple[str, str] | None, factor: str | None, mean: float, spread: float,
       low: float | None, high: float | None) -> Kind:
    return Kind(own, other or own, Decimal(factor) if factor else None, mean, spread, low, high)


ALWAYS = [
    _k(("40193-5", "mmol/L"), ("2345-7", "g/L"), "0.18016", 5.4, 0.8, 3.9, 6.1),  # glucose
    _k(("14682-9", "umol/L"), ("2160-0", "mg/L"), "0.1131", 75, 14, 45, 104),  # creatinine
    _k(("2093-3", "g/L"), ("14647-2", "mmol/L"), "2.586", 1.9, 0.3, 1.5, 2.0),  # total cholesterol
]
MORE = [
    _k(("2085-9", "g/L"), ("14646-4", "mmol/L"), "2.586", 0.55, 0.12, 0.40, 1.00),  # HDL
    _k(("2571-8", "g/L"), ("14927-8", "mmol/L"), "1.129", 1.1, 0.4, 0.50, 1.50),  # triglycerides
    _k(("4548-4", "%"), ("59261-8", "mmol/mol"), None, 5.8, 0.5, 4.0, 6.0),  # HbA1c: % vs IFCC
    _k(("718-7", "g/dL"), ("718-7", "g/L"), "10", 13.4, 1.0, 11.5, 14.5),  # haemoglobin
    _k(("6690-2", "10*9/L"), None, None, 7.0, 1.6, 5, 10),  # leukocytes
    _k(("777-3", "10*9/L"), None, None, 250, 50, 150, 400),  # platelets
    _k(("2823-3", "mmol/L"), None, None, 4.2, 0.4, 3.5, 5.0),  # potassium
    _k(("2951-2", "mmol/L"), None, None, 140, 2.5, 136, 145),  # sodium
    _k(("3016-3", "m[IU]/L"), None, None, 1.8, 0.8, 0.27, 4.20),  # TSH
    _k(("1988-5", "mg/L"), None, None, 3.0, 3.0, None, 5.0),  # CRP
    _k(("2276-4", "ug/L"), ("2276-4", "ng/mL"), "1", 120, 60, 20, 300),  # ferritin
    _k(("1920-8", "U/L"), None, None, 25, 8, 10, 50),  # ASAT
    _k(("1742-6", "U/L"), None, None, 25, 10, 10, 50),  # ALAT
    _k(("2324-2", "U/L"), None, None, 30, 15, 4, 60),  # GGT
]


def _number(value: float, digits: int = 3) -> Decimal:
    exact = Decimal(repr(max(value, 0.01)))
    return exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding=ROUND_HALF_UP).normalize()


def _quantity(value: Decimal, unit: str) -> dict[str, Any]:
    return {"value": float(value), "unit": unit, "system": UCUM, "code": unit}


@dataclass
class Seeder:
    rng: random.Random
    last_updated: datetime
    labels: dict[str, str]  # catalogue label by LOINC code

    def patient(self, number: int) -> tuple[str, dict[str, Any], str]:
        """(id, Patient, INS) of patient number n; the first is Marie Dupont."""
        if number == 0:
            ins, family, given, gender, birth = DUPONT_INS, "Dupont", ["Marie", "Louise"], "female", "1979-03-12"
        else:
            sex = self.rng.choice("12")
            nir = f"{sex}{self.rng.randint(40, 99):02d}{self.rng.randint(1, 12):02d}75{number:06d}"
            ins = nir + f"{nir_key(nir):02d}"
            family, given = f"Patient{number}", ["Bench"]
            gender, birth = ("male" if sex == "1" else "female"), f"19{nir[1:3]}-{nir[3:5]}-15"
        resource = {"resourceType": "Patient",
                    "identifier": [{"use": "official", "system": INS_NIR_TEST, "value": ins}],
                    "name": [{"use": "official", "family": family, "given": given}],
                    "gender": gender, "birthDate": birth}
        return str(uuid.uuid4()), resource, ins

    def kinds(self) -> list[Kind]:
        return ALWAYS + self.rng.sample(MORE, 7)

    def visit(self, patient_id: str, kinds: list[Kind], when: datetime) -> list[dict[str, Any]]:
        """The results of one visit, at the demo lab or at another one."""
        if self.rng.random() < OWN_LAB_SHARE:
            return [self._own(patient_id, kind, when) for kind in kinds]
        lab = self.rng.choice(OTHER_LABS)
        document = f"DocumentReference/{uuid.uuid4()}"
        return [self._imported(patient_id, kind, when, lab, document) for kind in kinds]

    def _value(self, kind: Kind) -> Decimal:
        return _number(self.rng.gauss(kind.mean, kind.spread))

    def _own(self, patient_id: str, kind: Kind, when: datetime) -> dict[str, Any]:
        code, unit = kind.own
        value = self._value(kind)
        low, high = (Decimal(str(b)) if b is not None else None for b in (kind.low, kind.high))
        flag = interpretation.flag(value, low, high)
        result: dict[str, Any] = {
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "basedOn": [{"reference": f"ServiceRequest/{uuid.uuid4()}"}],
            "effectiveDateTime": when.isoformat(),
            "valueQuantity": _quantity(value, unit),
            "referenceRange": [{"text": "Valeurs de référence du laboratoire",
                                **({"low": _quantity(low, unit)} if low is not None else {}),
                                **({"high": _quantity(high, unit)} if high is not None else {})}],
        }
        if flag:  # computed from the range at intake, and tagged so
            result["interpretation"] = [{"coding": [{"system": interpretation.CODE_SYSTEM_URI, "code": flag,
                                                     "display": interpretation.label(flag)}]}]
            result["meta"] = {"tag": [COMPUTED]}
        return self._shared(result)

    def _imported(self, patient_id: str, kind: Kind, when: datetime, lab: tuple[str, str],
                  document: str) -> dict[str, Any]:
        code, unit = kind.other
        own_value = self._value(kind)
        if kind.factor is not None:
            value = _number(float(own_value * kind.factor))
            low, high = (_number(b * float(kind.factor)) if b is not None else None for b in (kind.low, kind.high))
        elif kind.other == kind.own:
            value, low, high = own_value, *(Decimal(str(b)) if b is not None else None for b in (kind.low, kind.high))
        else:  # HbA1c in mmol/mol (IFCC) from % (NGSP)
            value = _number((float(own_value) - 2.15) * 10.929)
            low, high = Decimal(20), Decimal(42)
        flag = interpretation.flag(value, low, high)
        label = self.labels.get(code, code)
        result: dict[str, Any] = {
            "resourceType": "Observation", "meta": {"tag": [IMPORTED]}, "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]},
                         {"coding": [{"system": LOINC, "code": "18719-5"}]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": label}], "text": label},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": when.isoformat(),
            "issued": (when + timedelta(hours=9)).isoformat(),
            "performer": [{"type": "Organization", "identifier": {"system": access.ORGANIZATION_ID, "value": lab[0]},
                           "display": lab[1]}],
            "derivedFrom": [{"reference": document}],
            "valueQuantity": _quantity(value, unit),
            "referenceRange": [{**({"low": _quantity(low, unit)} if low is not None else {}),
                                **({"high": _quantity(high, unit)} if high is not None else {})}],
        }
        if flag:
            result["interpretation"] = [{"coding": [{"system": interpretation.CODE_SYSTEM_URI, "code": flag,
                                                     "display": interpretation.label(flag)}]}]
        return self._shared(result)

    def _shared(self, result: dict[str, Any]) -> dict[str, Any]:
        """Shared in the patient's space, as issuing and import leave it; some hidden until released."""
        hidden = {masking.INVISIBLE_PATIENT} if self.rng.random() < HIDDEN_SHARE else set()
        return masking.with_labels(result, hidden, {masking.PATIENT_SPACE})


# --------------------------------------------------------------------------- storing

RESOURCE_COLUMNS = ("resource_type", "id", "version_id", "last_updated", "deleted", "content")
VERSION_COLUMNS = (*RESOURCE_COLUMNS, "method")
INDEX_COLUMNS = ("resource_type", "resource_id", "name", "system", "value", "exact", "date_start", "date_end")


@dataclass
class Rows:
    resources: list[tuple[Any, ...]] = field(default_factory=list)
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    index: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, resource_type: str, resource_id: str, content: dict[str, Any], now: datetime,
            owner: str | None) -> None:
        """The rows Repository.save writes for a create (version 1)."""
        stored = dict(content, id=resource_id)
        stored["meta"] = dict(content.get("meta") or {}, versionId="1", lastUpdated=instant(now))
        body = orjson.dumps(stored).decode()
        at = _stored_instant(now)
        self.resources.append((resource_type, resource_id, 1, at, False, body))
        self.versions.append((resource_type, resource_id, 1, at, False, body, "POST"))
        self.index.extend((resource_type, resource_id, r.name, r.system, r.value, r.exact,
                           _stored_instant(r.start), _stored_instant(r.end)) for r in extract(stored))
        if owner:
            self.index.append((resource_type, resource_id, OWNER, None, owner, None, None, None))


def _stored_instant(value: datetime | None) -> datetime | None:
    """An instant as the columns hold it (storage.tables.Instant): UTC, without an offset."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def _rows_of_save(rows: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((tuple(str(v) if v is not None else None for v in row) for row in rows), key=str)


async def check_rows_match_the_repository(engine: AsyncEngine, seeder: Seeder) -> None:
    """The rows the seeder writes are those Repository.save writes (checked, then rolled back)."""
    patient_id, _, _ = seeder.patient(1)
    when = FIRST_VISIT
    samples = seeder.visit(patient_id, ALWAYS, when) + seeder.visit(patient_id, MORE[:4], when)
    now = utc_now()
    expected = Rows()
    for sample in samples:
        expected.add("Observation", f"check-{uuid.uuid4()}", sample, now, OWNER_KEY)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            await Repository(conn).save([Write("Observation", row[1], sample, "POST")
                                         for row, sample in zip(expected.resources, samples)], now, OWNER_KEY)
            ids = [row[1] for row in expected.resources]
            stored = (await conn.execute(text(
                "SELECT resource_type, resource_id, name, system, value, exact, date_start, date_end "
                "FROM search_index WHERE resource_id = ANY(:ids)"), {"ids": ids})).all()
            contents = (await conn.execute(text("SELECT id, content FROM resources WHERE id = ANY(:ids)"),
                                           {"ids": ids})).all()
        finally:
            await transaction.rollback()
    if _rows_of_save(stored) != _rows_of_save(expected.index):
        raise SystemExit("the seeder's search rows differ from Repository.save's: fix bench/trends.py")
    # Read back as the store reads JSON: decimals as Decimal, their digits kept.
    by_id = {row[1]: json.loads(row[5], parse_float=Decimal) for row in expected.resources}
    if len(contents) != len(by_id) or any(
            (content if isinstance(content, dict) else orjson.loads(content)) != by_id[resource_id]
            for resource_id, content in contents):
        raise SystemExit("the seeder's resources differ from Repository.save's: fix bench/trends.py")
    print(f"  checked: the seeder's rows for {len(samples)} results equal Repository.save's", flush=True)


async def _copy(conn: asyncpg.Connection, rows: Rows) -> None:
    await conn.copy_records_to_table("resources", records=rows.resources, columns=RESOURCE_COLUMNS)
    await conn.copy_records_to_table("resource_versions", records=rows.versions, columns=VERSION_COLUMNS)
    await conn.copy_records_to_table("search_index", records=rows.index, columns=INDEX_COLUMNS)


SECONDARY_INDEXES = ("ix_search_value", "ix_search_date", "ix_search_resource", "ix_resources_type_updated")


async def seed(url: str, schema: str, args: argparse.Namespace, seeder: Seeder) -> dict[str, Any]:
    """Store the patients and their results; what the measures need to know of them."""
    conn = await asyncpg.connect(_asyncpg_dsn(url), server_settings={"search_path": schema,
                                                                      "synchronous_commit": "off"})
    started = time.perf_counter()
    people: list[tuple[str, str, list[Kind]]] = []
    try:
        definitions = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = ANY($2)",
            schema, list(SECONDARY_INDEXES))
        for row in definitions:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        rows = Rows()
        for number in range(args.patients):
            patient_id, resource, ins = seeder.patient(number)
            rows.add("Patient", patient_id, resource, seeder.last_updated, None)
            people.append((patient_id, ins, seeder.kinds()[:args.analytes]))
        await _copy(conn, rows)
        visits = _visit_times(seeder.rng, args.visits)
        stored = 0
        for round_number, _ in enumerate(visits[0] if visits else []):
            order = list(range(len(people)))
            seeder.rng.shuffle(order)
            for start in range(0, len(order), PATIENTS_PER_BATCH):
                rows = Rows()
                for number in order[start:start + PATIENTS_PER_BATCH]:
                    patient_id, _, kinds = people[number]
                    when = visits[number % len(visits)][round_number]
                    now = seeder.last_updated + timedelta(microseconds=stored)
                    for result in seeder.visit(patient_id, kinds, when):
                        rows.add("Observation", str(uuid.uuid4()), result, now, OWNER_KEY)
                        stored += 1
                await _copy(conn, rows)
            elapsed = time.perf_counter() - started
            print(f"    visit {round_number + 1}/{args.visits}: {stored:,} results, {stored / elapsed:,.0f}/s",
                  flush=True)
        index_started = time.perf_counter()
        for row in definitions:
            await conn.execute(row["indexdef"])
        print(f"  indexes rebuilt in {time.perf_counter() - index_started:.0f} s", flush=True)
    finally:
        await conn.close()
    print(f"  seeded {args.patients:,} patients, {stored:,} results in {time.perf_counter() - started:.0f} s",
          flush=True)
    return {"people": [(ins, kinds) for _, ins, kinds in people]}


def _visit_times(rng: random.Random, visits: int) -> list[list[datetime]]:
    """A few hundred visit calendars (one visit every ~year, at 7-9 am), shared by patients."""
    calendars = []
    for _ in range(500):
        day = FIRST_VISIT + timedelta(days=rng.randint(0, 60))
        times = []
        for _ in range(visits):
            times.append(day + timedelta(minutes=rng.randint(0, 120)))
            day += timedelta(days=rng.randint(200, 400))
        calendars.append(times)
    return calendars


# --------------------------------------------------------------------------- database

def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def prepare(engine: AsyncEngine, settings: Settings) -> dict[str, str]:
    """The schema, the catalogue and the demo lab; catalogue labels by LOINC code."""
    await upgrade(engine)
    rows = read_csv(settings.catalogue_path)
    async with engine.begin() as conn:
        await catalogue.replace(conn, rows)
    records = build_services(engine, settings).records
    for resource, criteria in lab_directory():
        await records.create(None, resource, if_none_exist=criteria)
    return {row["loinc"]: row["label_fr"] for row in rows}


async def stored_results(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(resources).where(
            resources.c.resource_type == "Observation"))).scalar_one())


async def people_of(engine: AsyncEngine) -> list[tuple[str, list[str]]]:
    """(INS, analyte keys) of every stored patient: for a kept schema, read back."""
    async with engine.connect() as conn:
        patients = {row.id: row.ins for row in await conn.execute(text(
            "SELECT id, content->'identifier'->0->>'value' AS ins FROM resources WHERE resource_type = 'Patient'"))}
        codes: dict[str, set[str]] = {}
        for row in await conn.execute(text(
                "SELECT DISTINCT p.value AS patient, c.value AS code FROM search_index p "
                "JOIN search_index c ON c.resource_type = 'Observation' AND c.resource_id = p.resource_id "
                "AND c.name = 'code' WHERE p.resource_type = 'Observation' AND p.name = 'patient'")):
            codes.setdefault(row.patient, set()).add(row.code)
        entries = await catalogue.entries_by_loinc(conn, {c for found in codes.values() for c in found})
    return [(patients[pid], sorted({k for c in found if (k := analytes.key_of([(LOINC, c)], entries))}))
            for pid, found in codes.items() if pid in patients]


async def keys_of(engine: AsyncEngine, people: list[tuple[str, list[Kind]]]) -> list[tuple[str, list[str]]]:
    async with engine.connect() as conn:
        entries = await catalogue.entries_by_loinc(conn, {c for k in ALWAYS + MORE for c in (k.own[0], k.other[0])})
    return [(ins, sorted({analytes.key_of([(LOINC, k.own[0])], entries) or "" for k in kinds}))
            for ins, kinds in people]


async def analyze(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in ("resources", "resource_versions", "search_index", "catalogue"):
            await conn.execute(text(f"ANALYZE {table}"))


# --------------------------------------------------------------------------- measuring

def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def figures(values: list[float]) -> str:
    ordered = sorted(values)
    return "  ".join(f"{name} {percentile(ordered, q):6.1f}" for name, q in
                     (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))) + f"  max {ordered[-1]:6.1f}"


def p95(values: list[float]) -> float:
    return percentile(sorted(values), 0.95)


async def _timed(call: Awaitable[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    found = await call
    return (time.perf_counter() - started) * 1000, found


def patient_caller(ins: str) -> Caller:
    return Caller("patient", f"bench-{ins}", frozenset(), ins=ins)


async def bare_series(engine: AsyncEngine, base_url: str, caller: Caller, key: str) -> tuple[float, int]:
    """The series' queries alone (the analyte's codes, the patient's results under her access
    rules): no transaction around them, no audit, no conversion."""
    async with engine.begin() as conn:
        started = time.perf_counter()
        await custom_plans(conn)
        codes, _ = await analytes.codes_of_key(conn, key)
        found = await visible_results(conn, base_url, caller, codes)
    return (time.perf_counter() - started) * 1000, len(found)


async def her_patient(records: Records, caller: Caller) -> str:
    """The patient's Patient id, as a client finds it once."""
    mine = await records.search(caller, parse_search("Patient", [], default_count=1, max_count=1))
    return mine.matches[0].id


async def generic_search(records: Records, caller: Caller, patient_id: str, codes: str) -> int:
    """`GET Observation?patient=…&code=…` as the FHIR API runs it (access rules, count, audit),
    for the analyte's codes."""
    query = parse_search("Observation", [("patient", f"Patient/{patient_id}"), ("code", codes)],
                         default_count=100, max_count=100)
    return (await records.search(caller, query)).total


@dataclass
class Measured:
    series_ms: list[float] = field(default_factory=list)
    analytes_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)
    lastn_ms: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)
    points: list[int] = field(default_factory=list)
    analyte_counts: list[int] = field(default_factory=list)
    slowest: tuple[float, str, str] = (0.0, "", "")


async def measure(engine: AsyncEngine, settings: Settings, people: list[tuple[str, list[str]]],
                  args: argparse.Namespace) -> Measured:
    records = build_services(engine, settings).records
    trends = Trends(records)
    rng = random.Random(args.seed + 1)
    picked = [rng.choice(people) for _ in range(args.warmup + args.queries)]
    keys = [rng.choice(found) for _, found in picked]
    async with engine.connect() as conn:  # what $lastn is asked for: the codes of the analyte
        wanted = {key: ",".join(f"{system}|{code}" for system, code in (await analytes.codes_of_key(conn, key))[0])
                  for key in set(keys)}
    done = Measured()
    for n, ((ins, _), key) in enumerate(zip(picked, keys)):
        caller = patient_caller(ins)
        series_ms, series = await _timed(trends.series(caller, key))
        analytes_ms, found = await _timed(trends.analytes(caller))
        bare_ms, _ = await bare_series(engine, settings.base_url, caller, key)
        lastn_ms, _ = await _timed(last_n(records, caller, [("code", wanted[key]), ("max", "3")]))
        search_ms, _ = await _timed(generic_search(records, caller, await her_patient(records, caller),
                                                   wanted[key]))
        if n < args.warmup:
            continue
        done.series_ms.append(series_ms)
        done.analytes_ms.append(analytes_ms)
        done.bare_ms.append(bare_ms)
        done.lastn_ms.append(lastn_ms)
        done.search_ms.append(search_ms)
        done.points.append(len(series.points) + len(series.apart))
        done.analyte_counts.append(len(found))
        if series_ms > done.slowest[0]:
            done.slowest = (series_ms, ins, key)
    return done


@contextmanager
def captured(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def explain(engine: AsyncEngine, settings: Settings, ins: str, key: str) -> None:
    with captured(engine) as statements:
        await bare_series(engine, settings.base_url, patient_caller(ins), key)
    print(f"\n  plans of the slowest series' search (patient INS {ins}, analyte {key}):")
    for statement, parameters in statements:
        if not statement.lstrip().upper().startswith("SELECT"):
            continue
        print(f"\n    {' '.join(statement.split())[:600]}...\n")
        async with engine.connect() as conn:
            plan = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)).all()
        for line in plan:
            print("    " + line[0])


# --------------------------------------------------------------------------- the page

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(settings: Settings, schema: str) -> Iterator[str]:
    """bilan (`bilan serve`, one worker) and the local OpenID provider; yields the web root."""
    port, idp_port = free_port(), free_port()
    web = f"http://127.0.0.1:{port}"
    idp_env = dict(os.environ, IDP_PORT=str(idp_port), IDP_HOST="127.0.0.1", BILAN_AUDIENCE=f"{web}/fhir",
                   BILAN_WEB_REDIRECT_URIS=f"{web}/auth/callback", BILAN_POST_LOGOUT_URIS=f"{web}/")
    idp = subprocess.Popen(["node", "deploy/idp/server.mjs"], env=idp_env, stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    assert idp.stdout is not None
    ready = idp.stdout.readline().strip()
    if not ready.startswith("idp ready at"):
        idp.kill()
        raise SystemExit("the local OpenID provider did not start (npm ci in deploy/idp?)")
    env = dict(os.environ, BILAN_DATABASE_URL=settings.database_url, BILAN_DATABASE_SCHEMA=schema,
               BILAN_BASE_URL=f"{web}/fhir", BILAN_OIDC_ISSUER=ready.removeprefix("idp ready at").strip(),
               BILAN_LOG_LEVEL="WARNING")
    server = subprocess.Popen([sys.executable, "-m", "bilan", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{web}/fhir/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("bilan serve did not start")
            time.sleep(0.2)
        yield web
    finally:
        for process in (server, idp):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)


def log_in(web: str, username: str) -> httpx.Client:
    """The provider's login form, filled in as a person would."""
    browser = httpx.Client(timeout=30, follow_redirects=True)
    login = browser.get(f"{web}/auth/login")
    action = unescape(re.search(r'<form[^>]*action="([^"]+)"', login.text).group(1))  # type: ignore[union-attr]
    home = browser.post(str(login.url.join(action)), data={"login": username, "password": "demo"})
    if home.status_code != 200 or "bilan_session" not in browser.cookies:
        raise SystemExit(f"could not log in as {username}: {home.status_code}")
    return browser


def measure_page(settings: Settings, schema: str, template: str, keys: list[str], requests: int,
                 warmup: int) -> tuple[list[float], int]:
    with served(settings, schema) as web:
        browser = log_in(web, "patient.dupont")
        timings, size = [], 0
        for n in range(warmup + requests):
            key = keys[n % len(keys)]
            started = time.perf_counter()
            page = browser.get(web + template.format(key=key))
            elapsed = (time.perf_counter() - started) * 1000
            if page.status_code != 200:
                raise SystemExit(f"{template.format(key=key)} answered {page.status_code}: {page.text[:500]}")
            if n >= warmup:
                timings.append(elapsed)
                size = max(size, len(page.content))
        browser.close()
    return timings, size


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help=f"PostgreSQL SQLAlchemy async URL (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--patients", type=int, default=10_000, help="patients (default 10000)")
    parser.add_argument("--visits", type=int, default=10, help="visits per patient (default 10)")
    parser.add_argument("--analytes", type=int, default=10, help="analytes per visit, 3 to 10 (default 10)")
    parser.add_argument("--queries", type=int, default=300, help="measured patients (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="patients first, not counted (default 30)")
    parser.add_argument("--explain", action="store_true", help="show the plan of the slowest series' search")
    parser.add_argument("--page", action="store_true", help="also measure the trend page over HTTP")
    parser.add_argument("--page-url", default="/patient/analyses/{key}",
                        help="the trend page's path, {key} the analyte (default /patient/analyses/{key})")
    parser.add_argument("--page-requests", type=int, default=200, help="measured page loads (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--keep", metavar="SCHEMA", help="PostgreSQL schema to keep, and to reuse if seeded")
    args = parser.parse_args(argv)
    if make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("the trends benchmark runs on PostgreSQL")
    if args.patients < 1 or args.visits < 1 or not 3 <= args.analytes <= 10 or args.queries < 1:
        parser.error("--patients, --visits, --queries >= 1; 3 <= --analytes <= 10")
    return args


async def run(args: argparse.Namespace) -> int:
    schema = args.keep or f"bench_trends_{uuid.uuid4().hex[:8]}"
    await _admin(args.database_url, f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    settings = Settings(database_url=args.database_url, database_schema=schema)
    engine = create_engine(settings)
    met = True
    try:
        print(f"database {make_url(args.database_url).render_as_string(hide_password=True)} (schema {schema}"
              f"{', kept' if args.keep else ''})", flush=True)
        labels = await prepare(engine, settings)
        wanted = args.patients * args.visits * args.analytes
        already = await stored_results(engine)
        if already >= wanted:
            print(f"  reusing {already:,} stored results (no seeding)", flush=True)
            people = await people_of(engine)
        elif already:
            print(f"  {already:,} results already stored, fewer than {wanted:,}: use another --keep", file=sys.stderr)
            return 2
        else:
            seeder = Seeder(random.Random(args.seed), utc_now(), labels)
            await check_rows_match_the_repository(engine, seeder)
            print(f"  storing {args.patients:,} patients x {args.visits} visits x {args.analytes} analytes "
                  f"= {wanted:,} results", flush=True)
            seeded = await seed(args.database_url, schema, args, seeder)
            people = await keys_of(engine, seeded["people"])
        started = time.perf_counter()
        await analyze(engine)
        async with engine.connect() as conn:
            size = (await conn.execute(text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relkind = 'r'"), {"schema": schema})).scalar_one()
        print(f"  ANALYZE in {time.perf_counter() - started:.1f} s; the schema takes {size / 2**30:.1f} GiB", flush=True)

        done = await measure(engine, settings, people, args)
        print(f"\n  {args.queries} patients, after {args.warmup} not counted; times in ms")
        print(f"  Trends.series (one analyte, service path)    {figures(done.series_ms)}"
              f"   ({statistics.median(done.points):.0f} results per series)")
        print(f"  its queries alone (bare)                     {figures(done.bare_ms)}")
        print(f"  Observation/$lastn, the analyte's codes, max=3 {figures(done.lastn_ms)}")
        print(f"  Observation?patient&code (generic search)    {figures(done.search_ms)}")
        print(f"  Trends.analytes (the patient's list)          {figures(done.analytes_ms)}"
              f"   ({statistics.median(done.analyte_counts):.0f} analytes per patient)")
        series_met = p95(done.series_ms) < TARGET_SERIES_P95_MS
        search_met = p95(done.search_ms) <= TARGET_SEARCH_P95_MS
        met &= series_met and search_met
        print(f"  {'target met' if search_met else 'target missed'}: generic search p95 "
              f"{p95(done.search_ms):.1f} ms (<= {TARGET_SEARCH_P95_MS:.0f})")
        print(f"\n  {'target met' if series_met else 'target missed'}: series p95 {p95(done.series_ms):.1f} ms "
              f"(< {TARGET_SERIES_P95_MS:.0f})", flush=True)
        if args.explain:
            await explain(engine, settings, done.slowest[1], done.slowest[2])
        if args.page:
            dupont = next(found for ins, found in people if ins == DUPONT_INS)
            timings, size = measure_page(settings, schema, args.page_url, dupont, args.page_requests,
                                         max(len(dupont), 10))
            page_met = p95(timings) < TARGET_PAGE_P95_MS
            met &= page_met
            print(f"\n  trend page {args.page_url} as patient.dupont over HTTP ({len(dupont)} analytes, up to "
                  f"{size / 1024:.0f} KiB)\n  {'':44} {figures(timings)}")
            print(f"  {'target met' if page_met else 'target missed'}: page p95 {p95(timings):.1f} ms "
                  f"(< {TARGET_PAGE_P95_MS:.0f})", flush=True)
        else:
            print("  (the trend page over HTTP: --page)")
        return 0 if met else 1
    finally:
        await engine.dispose()
        if not args.keep:
            await _admin(args.database_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
