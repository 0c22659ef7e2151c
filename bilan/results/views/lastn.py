"""Observation/$lastn: the last N results of each code, among those the caller may see (FHIR
R4 OperationDefinition Observation-lastn).

The request names a patient (`patient` or `subject`; a patient caller may leave it out: it
can only be her) and a `category` or a `code`; any other Observation search parameter
filters further. Results are grouped by Observation.code (codings equal by system and code,
translations transitively; text-only codes by their text), newest first by effective time,
`max` per group (default 1), more when the last ones kept tie on their time.

The search runs among the named patient's own results of the asked codes, found from her rows
(bilan/results/views/trends.py `own_results`), never among every result of a code; the access rules
apply to them as to any search.
"""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.auth import access, policy
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import OLDEST, date_range
from bilan.fhir.outcomes import FhirError, bad_request
from bilan.fhir.query import SearchQuery, parse_search, parse_token_value
from bilan.fhir.searchparams import params_for
from bilan.records.pipeline import Denied
from bilan.records.service import Records
from bilan.results.views.trends import MOST_RESULTS, own_results
from bilan.storage import search as store_search
from bilan.storage.patient_results import custom_plans
from bilan.storage.repository import Stored

SCAN = 5000  # results read to choose from; a narrower request beyond that
UNSUPPORTED = ("_count", "_offset", "_sort", "_include", "_revinclude", "_summary")


async def last_n(records: Records, caller: Caller, params: list[tuple[str, str]],
                 strict: bool = False) -> tuple[list[Stored], list[str]]:
    """The results kept, newest first, and the search parameters ignored (unknown ones, when
    not `strict`)."""
    most, criteria = _max(params)
    _check_request(caller, criteria)
    query = parse_search("Observation", criteria, default_count=SCAN, max_count=SCAN, strict=strict)
    query.sort = [(params_for("Observation")["date"], True)]
    text = "&".join(f"{k}={v}" for k, v in params)
    async with records.work(caller) as work:
        repo = work.repo
        try:
            policy.check_scope(caller, "Observation", "read")
        except FhirError as error:
            raise Denied(caller, "search-type", error, []) from None
        await custom_plans(repo.conn)
        candidates = await _narrowed(repo.conn, caller, query, records.base_url)
        if candidates:
            query.criteria += parse_search("Observation", [("_id", ",".join(candidates))],
                                           default_count=1, max_count=1).criteria
        found = (await store_search.search(repo.conn, query, records.base_url, lambda t: access.readable(caller, t))
                 if candidates != [] else store_search.SearchResult(0, [], []))
        kept = _last(found.matches, most) if found.total <= SCAN else []
        work.note("search-type", query=f"Observation/$lastn?{text}",
                  patients={p for s in kept for p in patients_of(s.content)})
    if found.total > SCAN:
        raise bad_request(f"$lastn chooses among at most {SCAN} results and {found.total} match: "
                          "narrow it with code, category or date")
    return kept, query.ignored


def _max(params: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]]]:
    values = [v for k, v in params if k == "max"]
    if len(values) > 1 or (values and (not values[0].isdigit() or int(values[0]) < 1)):
        raise bad_request("max must be one whole number, 1 or more", "max")
    for key, _ in params:
        if key.split(":")[0] in UNSUPPORTED:
            raise bad_request(f"{key} is not supported with $lastn", key)
    return (int(values[0]) if values else 1), [(k, v) for k, v in params if k != "max"]


def _check_request(caller: Caller, criteria: list[tuple[str, str]]) -> None:
    names = {k.split(":")[0].split(".")[0] for k, _ in criteria}
    if not names & {"patient", "subject"} and caller.kind != "patient":
        raise bad_request("$lastn needs the patient (patient or subject)", "patient")
    if not names & {"category", "code"}:
        raise bad_request("$lastn needs a category or a code", "category")


async def _narrowed(conn: AsyncConnection, caller: Caller, query: SearchQuery, base_url: str) -> list[str] | None:
    """The ids of the results the request can match, found from the patient's own rows: those
    about the Patients it names (or, for a patient, about her) with one of the asked codes; the
    code criterion they satisfy is then taken off the query. None: no narrowing."""
    named = [c for c in query.criteria if c.param.name == "patient" and c.modifier is None and c.chain is None]
    coded = [c for c in query.criteria if c.param.name == "code"]
    patients: list[str] | None = None
    if named:
        ids = [_patient_id(value, base_url) for value in named[0].values]
        patients = [i for i in ids if i is not None]
        if len(patients) != len(ids):
            return None  # another form of reference: left to the search
    elif caller.kind != "patient":
        return None
    tokens = [parse_token_value(value) for value in coded[0].values] if coded else None
    found = await own_results(conn, caller, tokens, patients)
    if len(found) >= MOST_RESULTS:
        return None
    if len(coded) == 1:
        query.criteria.remove(coded[0])
    return found


def _patient_id(value: str, base_url: str) -> str | None:
    value = value.removeprefix(base_url.rstrip("/") + "/").removeprefix("Patient/")
    return None if "/" in value else value


def _last(matches: list[Stored], most: int) -> list[Stored]:
    """`most` per code group, newest first, with the ties at the cut."""
    groups = _groups([s.content for s in matches])
    by_group: dict[int, list[tuple[datetime, int]]] = {}
    for index, stored in enumerate(matches):
        by_group.setdefault(groups[index], []).append((_effective(stored.content), index))
    kept: list[int] = []
    for members in by_group.values():
        members.sort(key=lambda m: m[0], reverse=True)
        cut = members[min(most, len(members)) - 1][0]
        kept += [index for when, index in members if when >= cut]
    ordered = sorted(kept, key=lambda index: _effective(matches[index].content), reverse=True)
    return [matches[index] for index in ordered]


def _groups(contents: list[dict[str, Any]]) -> list[int]:
    """A group number per result: results sharing a coding (system and code), directly or
    through a third result, are one group; a code without coding is grouped by its text."""
    parent = list(range(len(contents)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first: dict[tuple[str, ...], int] = {}
    for index, content in enumerate(contents):
        concept = content.get("code") or {}
        keys: list[tuple[str, ...]] = [("coding", str(c.get("system")), c["code"])
                                       for c in concept.get("coding", []) if c.get("code")]
        if not keys:
            keys = [("text", concept.get("text") or "")]
        for key in keys:
            if key in first:
                parent[root(index)] = root(first[key])
            else:
                first[key] = index
    return [root(index) for index in range(len(contents))]


def _effective(content: dict[str, Any]) -> datetime:
    text = (content.get("effectiveDateTime") or content.get("effectiveInstant")
            or (content.get("effectivePeriod") or {}).get("start"))
    try:
        return date_range(text)[0] if text else OLDEST
    except ValueError:
        return OLDEST
