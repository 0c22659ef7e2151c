"""The patient's results as trends: per analyte, its results over time on one chart, in one
unit whatever lab and unit they came from, the originals kept.

Only what the patient may see (bilan/auth/access.py: her own results, shared in her space,
not hidden until released) and only validated numeric results (final, amended, corrected,
with a valueQuantity). Results are grouped per analyte (bilan/results/views/analytes.py) and
converted to the series' unit: the catalogue's for the analyte, else the latest result's. A
result that cannot be converted is kept apart, never drawn on the chart. Microbiology (cultures,
germs, antibiograms) is never a trend: it is read apart, per examination
(bilan/results/views/microbiology.py).
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Protocol, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.auth import access
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import date_range
from bilan.fhir.outcomes import Issue, NotFound
from bilan.fhir.terminology import LOINC
from bilan.fhir.text import normalise
from bilan.prescription import same_person
from bilan.records.pipeline import Work
from bilan.records.service import Records
from bilan.results.desk import units
from bilan.results.document import fhir_report
from bilan.results.views import analytes, microbiology
from bilan.storage import catalogue, patient_results
from bilan.storage.patient_results import Token, custom_plans
from bilan.storage.repository import Repository, Stored

DECIDED = ("final", "amended", "corrected")
OUT_OF_RANGE_FLAGS = frozenset({"H", "L", "HH", "LL", "A", "AA"})
MOST_RESULTS = 10_000  # results of one patient read at once; far more than anyone has


@dataclass(frozen=True)
class Point:
    observation_id: str
    when: datetime  # effectiveDateTime (aware)
    value: Decimal  # in the series' unit
    unit: str  # the series' unit (UCUM)
    original_value: Decimal  # as the lab reported it
    original_unit: str
    low: Decimal | None  # the result's own reference range, in `unit`
    high: Decimal | None
    flag: str | None  # interpretation code (H, L, N, HH, LL, A...)
    lab: str  # who performed it, "" if unknown
    comparator: str | None = None  # "<", "<=", ">=", ">" for a value beyond what was measurable

    @property
    def out_of_range(self) -> bool:
        if self.flag in OUT_OF_RANGE_FLAGS:
            return True
        return ((self.low is not None and self.value < self.low)
                or (self.high is not None and self.value > self.high))

    @property
    def converted(self) -> bool:
        return self.unit != self.original_unit or self.value != self.original_value


@dataclass(frozen=True)
class Series:
    key: str  # analyte key, stable, URL-safe (e.g. "glucose")
    label: str  # French label ("Glycémie")
    chapter: str  # LOINC chapter code (18719-5...)
    chapter_label: str  # "Biochimie"...
    explanation: str  # what it measures, in plain French ("" if bilan has none)
    unit: str  # the chart's unit
    points: tuple[Point, ...]  # oldest first, all in `unit`
    apart: tuple[Point, ...]  # results that cannot be converted to `unit`, as reported
    low: Decimal | None  # the band: the reference range most points share, in `unit`
    high: Decimal | None


@dataclass(frozen=True)
class Analyte:
    key: str
    label: str
    chapter: str
    chapter_label: str
    explanation: str  # what it measures, in plain French ("" if bilan has none)
    count: int  # how many results (points + apart)
    last: Point  # the most recent


class Trends:
    def __init__(self, records: Records):
        self.records = records

    async def analytes(self, caller: Caller, text: str = "", patient: str | None = None) -> list[Analyte]:
        """The caller's (patient's) analytes with results, optionally filtered by a search text
        matched accent- and case-insensitively on the French label and synonyms ("glycémie",
        "glycemie", "glucose", "cholestérol"...), sorted by chapter then label. A professional
        names the `patient` ("Patient/id"): the person's whole history they may read."""
        params = [("status", ",".join(DECIDED))]
        async with self.records.work(caller) as work:
            repo = work.repo
            whose = await _person(work, self.records.base_url, caller, patient)
            await custom_plans(repo.conn)
            found = await visible_results(repo.conn, self.records.base_url, caller, patients=whose)
            readings = [r for r in map(_reading, found) if r is not None]
            entries = await catalogue.entries_by_loinc(
                repo.conn, analytes.related_loinc(c for r in readings for c in r.codings))
            by_key: dict[str, list[_Reading]] = {}
            for reading in _trended(readings, entries):
                key = analytes.key_of(reading.codings, entries)
                if key is not None:
                    by_key.setdefault(key, []).append(reading)
            described = {key: analytes.describe(key, entries, _latest(rs).content) for key, rs in by_key.items()}
            wanted = {key: rs for key, rs in by_key.items() if described[key].matches(text)}
            labs = await _labs(repo, [_latest(rs) for rs in wanted.values()])  # only `last` shows its lab
            work.note("search-type", patients=_patients(found),
                      query=_query_text(params))
        made = [_summary(_series(described[key], rs, labs)) for key, rs in wanted.items()]
        return sorted(made, key=lambda a: (normalise(a.chapter_label), normalise(a.label), a.key))

    async def series(self, caller: Caller, key: str, patient: str | None = None) -> Series:
        """One analyte's results over time for the caller (a professional names the `patient`,
        as for `analytes`); FhirError 404 (French message) for an analyte with no visible result."""
        async with self.records.work(caller) as work:
            repo = work.repo
            whose = await _person(work, self.records.base_url, caller, patient)
            await custom_plans(repo.conn)
            codes, entries = await analytes.codes_of_key(repo.conn, key)
            params = [("code", ",".join(f"{system or ''}|{code}" for system, code in codes)),
                      ("status", ",".join(DECIDED))]
            found = await visible_results(repo.conn, self.records.base_url, caller, codes, whose) if codes else []
            readings = [r for r in _trended([r for r in map(_reading, found) if r is not None], entries)
                        if analytes.key_of(r.codings, entries) == key]
            labs = await _labs(repo, readings)
            work.note("search-type", patients=_patients(found),
                      query=_query_text(params))
        if not readings:
            raise NotFound([Issue("Aucun résultat de cette analyse n'est disponible dans votre espace.",
                                        "not-found")])
        return _series(analytes.describe(key, entries, _latest(readings).content), readings, labs)

    async def microbiology(self, caller: Caller) -> list[microbiology.Examination]:
        """The patient caller's microbiology (what `analytes` and `series` leave out): per
        examination, newest first, its findings, germs and antibiograms."""
        async with self.records.work(caller) as work:
            repo = work.repo
            whose = await _person(work, self.records.base_url, caller, None)
            await custom_plans(repo.conn)
            found = [s for s in await visible_results(repo.conn, self.records.base_url, caller, patients=whose)
                     if s.content.get("status") in DECIDED]
            entries = await catalogue.entries_by_loinc(
                repo.conn, {code for s in found for system, code in analytes.codings(s.content) if system == LOINC})
            dated = [(s, _moment(s.content) or _moment({"effectiveDateTime": s.content.get("issued")}))
                     for s in found if microbiology.is_microbiology(s.content, entries)]  # else when validated
            shown = [(s, when) for s, when in dated if when is not None]
            labs = await _labs(repo, [s for s, _ in shown])
            work.note("search-type", patients=_patients(found),
                      query=_query_text([("status", ",".join(DECIDED))]))
        return microbiology.examinations([(s.id, when, s.content) for s, when in shown], labs,
                                         {code: entry["label_fr"] for code, entry in entries.items()})


async def visible_results(conn: AsyncConnection, base_url: str, caller: Caller,
                          codes: list[analytes.Coding] | None = None,
                          patients: list[str] | None = None) -> list[Stored]:
    """The caller's results (of these codes; about these Patient ids, else her own records)
    that she may see, in no particular order.

    One query: her candidate results under the access rules every search applies
    (`access.readable`), without the count a FHIR search adds.
    """
    tokens: list[Token] | None = None if codes is None else [(system or "", code) for system, code in codes]
    candidates = await own_results(conn, caller, tokens, patients)
    if not candidates:
        return []
    return await patient_results.observations(conn, candidates, access.readable(caller, "Observation"))


async def _person(work: Work, base_url: str, caller: Caller, patient: str | None) -> list[str] | None:
    """Whose results a trend reads: the patient caller's own records (None: by her INS); for a
    professional, the Patient ids of the person `patient` names that they may read (their
    records of her linked by the lab, the same qualified INS: prescription.same_person)."""
    if caller.kind == "patient" or patient is None:
        work.allow("trends", interaction="search-type")
        return None
    work.allow("patient-trends", [patient], "search-type")
    found = await same_person(work.repo, base_url, caller, patient)
    if not found:
        raise NotFound([Issue("Ce patient est introuvable.", "not-found")])
    return [reference.split("/", 1)[1] for reference in found]


async def own_results(conn: AsyncConnection, caller: Caller, codes: list[Token] | None,
                      patients: list[str] | None = None) -> list[str]:
    """The ids of the results about the caller's own patient records, or about these Patient
    ids, with one of these codes (token values: system None for any, "" for none): what the
    caller may see is among them, and the search then applies every access rule to these few
    (bilan/storage/patient_results.py: found from her rows only)."""
    mine = patients if patients is not None else access.visible(caller, "Patient")
    return await patient_results.results_about(conn, mine, codes, MOST_RESULTS)


def _query_text(params: list[tuple[str, str]]) -> str:
    return "Observation?" + "&".join(f"{k}={v}" for k, v in params)


def _patients(found: Iterable[Stored]) -> set[str]:
    return {p for s in found for p in patients_of(s.content)}


# --------------------------------------------------------------------------- one result

@dataclass(frozen=True)
class _Reading:
    """A validated numeric result as stored: value, unit and range as the lab reported them."""

    id: str
    content: dict[str, Any]
    when: datetime
    value: Decimal
    unit: str
    comparator: str | None
    low: tuple[Decimal, str] | None
    high: tuple[Decimal, str] | None
    flag: str | None
    codings: list[analytes.Coding]


def _reading(stored: Stored) -> _Reading | None:
    content = stored.content
    quantity = content.get("valueQuantity") or {}
    codings = analytes.codings(content)
    if content.get("status") not in DECIDED or quantity.get("value") is None:
        return None
    if not (_laboratory(content) or any(system == LOINC for system, _ in codings)):
        return None
    when, value = _moment(content), _decimal(quantity.get("value"))
    if when is None or value is None:
        return None
    unit = quantity.get("code") or quantity.get("unit") or ""
    low, high = _range(content, unit)
    return _Reading(stored.id, content, when, value, unit, quantity.get("comparator"), low, high,
                    _flag(content), codings)


def _laboratory(content: dict[str, Any]) -> bool:
    return any(c.get("system") == fhir_report.OBSERVATION_CATEGORY and c.get("code") == "laboratory"
               for category in content.get("category", []) for c in category.get("coding", []))


def _moment(content: dict[str, Any]) -> datetime | None:
    """When it was measured (the specimen's time), as an aware datetime."""
    text = (content.get("effectiveDateTime") or content.get("effectiveInstant")
            or (content.get("effectivePeriod") or {}).get("start"))
    if not text:
        return None
    try:
        return date_range(text)[0]  # its start, for a partial date such as 2014-04
    except ValueError:
        return None


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _range(content: dict[str, Any], unit: str) -> tuple[tuple[Decimal, str] | None, tuple[Decimal, str] | None]:
    for element in content.get("referenceRange", []):
        bounds = []
        for name in ("low", "high"):
            quantity = element.get(name) or {}
            number = _decimal(quantity.get("value")) if quantity.get("value") is not None else None
            bounds.append((number, quantity.get("code") or quantity.get("unit") or unit) if number is not None else None)
        if bounds != [None, None]:
            return bounds[0], bounds[1]
    return None, None


def _flag(content: dict[str, Any]) -> str | None:
    return next((c["code"] for i in content.get("interpretation", []) for c in i.get("coding", [])
                 if c.get("code")), None)


def _trended(readings: list[_Reading], entries: dict[str, catalogue.Entry]) -> list[_Reading]:
    """The readings a trend may show: microbiology is read apart."""
    return [r for r in readings if not microbiology.is_microbiology(r.content, entries)]


def _latest(readings: list[_Reading]) -> _Reading:
    return max(readings, key=lambda r: (r.when, r.id))


# --------------------------------------------------------------------------- series

def _series(analyte: analytes.Analyte, readings: list[_Reading], labs: dict[str, str]) -> Series:
    ordered = sorted(readings, key=lambda r: (r.when, r.id))
    unit = analyte.unit or _ucum(ordered[-1].unit)
    points: list[Point] = []
    apart: list[Point] = []
    for reading in ordered:
        point = _point(reading, unit, analyte, labs.get(reading.id, ""))
        (points if point.unit == unit else apart).append(point)
    low, high = _band(points)
    return Series(analyte.key, analyte.label, analyte.chapter, analyte.chapter_label, analyte.explanation, unit,
                  tuple(points), tuple(apart), low, high)


def _point(reading: _Reading, unit: str, analyte: analytes.Analyte, lab: str) -> Point:
    try:
        value = _convert(reading.value, reading.unit, unit, analyte)
    except units.UnitError:  # kept apart, as reported
        return Point(reading.id, reading.when, reading.value, reading.unit, reading.value, reading.unit,
                     *_bounds(reading, reading.unit, analyte), reading.flag, lab, reading.comparator)
    return Point(reading.id, reading.when, value, unit, reading.value, reading.unit,
                 *_bounds(reading, unit, analyte), reading.flag, lab, reading.comparator)


def _bounds(reading: _Reading, unit: str, analyte: analytes.Analyte) -> tuple[Decimal | None, Decimal | None]:
    """The result's reference range in `unit`; none at all if a bound does not convert."""
    try:
        low, high = (_convert(bound[0], bound[1], unit, analyte) if bound else None
                       for bound in (reading.low, reading.high))
        return low, high
    except units.UnitError:
        return None, None


def _convert(value: Decimal, unit: str, target: str, analyte: analytes.Analyte) -> Decimal:
    """`value` in `target`: by scale within a dimension, across mass and moles through the
    catalogue's factor for the analyte; UnitError when there is no way."""
    if unit == target:
        return value
    source = _ucum(unit)
    if source == target:
        return value
    if analyte.same_unit_only:
        raise units.IncompatibleUnits(f"{analyte.label}: {unit} does not convert to {target}")
    failure: units.UnitError | None = None
    for loinc in dict.fromkeys(row["loinc"] for row in analyte.rows) or [""]:
        try:
            return units.convert(value, source, target, loinc, analyte.rows)
        except units.UnitError as error:
            failure = error
    raise failure or units.IncompatibleUnits(f"{unit} does not convert to {target}")


def _ucum(unit: str) -> str:
    """A unit as UCUM writes it, when a report spelled it otherwise ("mmol/l", "mUI/L")."""
    return units.suggest_unit(unit) or unit if units.check_unit(unit) else unit


def _band(points: list[Point]) -> tuple[Decimal | None, Decimal | None]:
    """The reference range most points share (the latest among equally common ones)."""
    ranges = [(p.low, p.high) for p in points if (p.low, p.high) != (None, None)]
    if not ranges:
        return None, None
    counts = Counter(ranges)
    best = max(counts.values())
    return next(r for r in reversed(ranges) if counts[r] == best)


def _summary(series: Series) -> Analyte:
    every = series.points + series.apart
    last = max(every, key=lambda p: (p.when, p.observation_id))
    return Analyte(series.key, series.label, series.chapter, series.chapter_label, series.explanation,
                   len(every), last)


# --------------------------------------------------------------------------- labs

class _Result(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def content(self) -> dict[str, Any]: ...


async def _labs(repo: Repository, readings: Sequence[_Result]) -> dict[str, str]:
    """Who performed each result: the performing lab's name as the result gives it, else the
    lab's Organization it refers to, else the lab that recorded it."""
    named: dict[str, str] = {}
    referred: dict[str, str] = {}
    for reading in readings:
        for performer in _labs_of(reading.content):
            if performer.get("display"):
                named[reading.id] = performer["display"]
                break
            if str(performer.get("reference", "")).startswith("Organization/"):
                referred.setdefault(reading.id, performer["reference"])
    if referred:
        found = {f"Organization/{s.id}": s for s in await repo.read_references(referred.values())}
        for result_id, reference in referred.items():
            if result_id not in named and reference in found:
                named[result_id] = found[reference].content.get("name", "")
    unnamed = [r.id for r in readings if r.id not in named]
    if unnamed:
        named.update(await _recording_labs(repo, unnamed))
    return named


def _labs_of(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in content.get("performer", [])
            if p.get("type") == "Organization" or str(p.get("reference", "")).startswith("Organization/")]


async def _recording_labs(repo: Repository, result_ids: list[str]) -> dict[str, str]:
    """The name of the lab that recorded each result (its owner key "lab:FINESS"), from the
    directory's Organization with that FINESS."""
    found = await patient_results.recording_labs(repo.conn, result_ids, access.ORGANIZATION_ID)
    return {result_id: organization.get("name", "") for result_id, organization in found.items()}
