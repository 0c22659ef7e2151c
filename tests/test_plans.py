"""Plans that hold without statistics: on a PostgreSQL database loaded a minute ago (autovacuum
off, no ANALYZE), reading one Patient costs a prescriber with 8,000 requests what it costs one
with 400: the access rules probe that Patient's rows, never the prescriber's other requests."""

import json
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql

from bilan.auth import access
from bilan.auth.caller import Caller
from bilan.settings import Settings
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade
from bilan.storage.repository import _read_seen
from bilan.storage.tables import resources, search_index
from tests.helpers import run

SMALL, LARGE = ("10000000001", 400), ("10000000002", 8000)  # (RPPS, requests)
REQUESTS_PER_PATIENT = 5
# A request's other search rows, as a prescription's carry them.
OTHER_ROWS = [("status", "active"), ("intent", "order"), ("code", "2345-7"), ("category", "108252007"),
              ("priority", "routine"), ("_lab", "750100001"), ("requisition", "DEMO-1"),
              ("identifier", "X-1"), ("performer", "o1")]


def _software(rpps: str) -> Caller:
    return Caller("practice-software", f"software-{rpps}", frozenset({"system/*.read"}), rpps=rpps)


def _prescriber_rows(rpps: str, requests: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A prescriber's patients and the search rows of his requests, five per patient."""
    patients = [{"resource_type": "Patient", "id": f"{rpps}-p{n}", "version_id": 1, "deleted": False,
                 "content": {"resourceType": "Patient"}} for n in range(requests // REQUESTS_PER_PATIENT)]
    rows = []
    for n in range(requests):
        request = f"{rpps}-sr{n}"
        rows.append({"resource_type": "ServiceRequest", "resource_id": request, "name": "patient",
                     "system": "Patient", "value": f"{rpps}-p{n // REQUESTS_PER_PATIENT}"})
        rows.append({"resource_type": "ServiceRequest", "resource_id": request, "name": "_requester",
                     "system": None, "value": rpps})
        rows.extend({"resource_type": "ServiceRequest", "resource_id": request, "name": name,
                     "system": None, "value": value} for name, value in OTHER_ROWS)
    return patients, rows


def test_reading_a_patient_costs_the_same_whatever_the_prescribers_volume(own_database: Settings) -> None:
    if not own_database.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's planner")

    async def buffers_read(engine: Any, rpps: str, patient: str) -> int:
        """The pages the read of `patient` by `rpps`'s software touches (EXPLAIN ANALYZE)."""
        compiled = _read_seen(access.visible(_software(rpps), "Patient")).compile(dialect=postgresql.dialect())
        values = dict(compiled.params, resource_type="Patient", resource_id=patient)
        sql = str(compiled) % {k: f"'{v}'" for k, v in values.items()}
        async with engine.connect() as conn:
            [[found]] = (await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"))).all()
        plan = (found if isinstance(found, list) else json.loads(found))[0]["Plan"]
        assert plan["Actual Rows"] == 1
        return int(plan["Shared Hit Blocks"]) + int(plan.get("Shared Read Blocks", 0))

    async def scenario() -> tuple[int, int, int]:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            async with engine.begin() as conn:
                for rpps, requests in (SMALL, LARGE):
                    patients, rows = _prescriber_rows(rpps, requests)
                    await conn.execute(insert(resources).values(last_updated=text("now()")), patients)
                    await conn.execute(insert(search_index), rows)
            async with engine.connect() as conn:
                analyzed = (await conn.execute(text(
                    "SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'search_index'"))).scalar_one()
            # Each prescriber's last patient: her requests' rows are the last of his.
            small = await buffers_read(engine, SMALL[0], f"{SMALL[0]}-p{SMALL[1] // REQUESTS_PER_PATIENT - 1}")
            large = await buffers_read(engine, LARGE[0], f"{LARGE[0]}-p{LARGE[1] // REQUESTS_PER_PATIENT - 1}")
            return analyzed, small, large
        finally:
            await engine.dispose()

    analyzed, small, large = run(scenario())
    assert analyzed == 0  # the planner knows the tables' sizes, nothing of their values
    assert large <= small + 2, (small, large)  # a B-tree one level deeper at most
