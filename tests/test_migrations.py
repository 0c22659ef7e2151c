"""Data migrations on a database of their own (SQLite, or a throw-away PostgreSQL schema):
what was stored before a revision reads the same after it."""

from typing import Any

from sqlalchemy import select, text, update

from bilan.app import build_services
from bilan.demo.load import lab_directory
from bilan.demo.prescriptions import bundle
from bilan.fhir.parsing import validate
from bilan.settings import Settings
from bilan.storage.database import create_engine
from bilan.storage.migrate import downgrade, upgrade
from bilan.storage.tables import resources
from tests.helpers import run
from tests.orders import addressed

ACCESS_ROWS = text("SELECT resource_type, resource_id, name, value FROM search_index "
                   "WHERE name IN ('_requester', '_lab') ORDER BY 1, 2, 3, 4")


def test_what_was_stored_before_0005_gets_its_access_rows_and_can_be_put_back(own_database: Settings, rng) -> None:
    async def scenario() -> tuple[list[Any], list[Any], list[Any], dict[str, Any], dict[str, Any]]:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            services = build_services(engine, own_database)
            for resource, criteria in lab_directory():
                await services.records.create(None, resource, if_none_exist=criteria)
            await services.transactions.process(None, bundle(addressed(rng)))
            async with engine.begin() as conn:
                written = list(await conn.execute(ACCESS_ROWS))
                # A Task as stored before 0005: its code a bare Coding.
                [(task_id, task)] = list(await conn.execute(
                    select(resources.c.id, resources.c.content).where(resources.c.resource_type == "Task")))
                old = {**task, "code": task["code"]["coding"][0]}
                await conn.execute(update(resources).where(resources.c.id == task_id).values(content=old))
                # A result the desk annotated before 0005: the note's time naive.
                [(result_id, result)] = list(await conn.execute(
                    select(resources.c.id, resources.c.content).where(
                        resources.c.resource_type == "Observation").limit(1)))
                noted = {**result, "note": [{"authorString": "biologist:1", "time": "2026-11-24T08:10:00.123456",
                                             "text": "Validé"}]}
                await conn.execute(update(resources).where(resources.c.id == result_id).values(content=noted))
            await downgrade(engine, "0004")
            async with engine.begin() as conn:
                dropped = list(await conn.execute(ACCESS_ROWS))
            await upgrade(engine)
            async with engine.begin() as conn:
                filled = list(await conn.execute(ACCESS_ROWS))
                migrated = (await conn.execute(select(resources.c.content).where(
                    resources.c.id == task_id))).scalar_one()
                annotated = (await conn.execute(select(resources.c.content).where(
                    resources.c.id == result_id))).scalar_one()
            return written, dropped, filled, migrated, annotated
        finally:
            await engine.dispose()

    written, dropped, filled, task, result = run(scenario())
    names = {row.name for row in written}
    assert names == {"_requester", "_lab"}  # the prescriber's RPPS, the lab's FINESS
    assert dropped == []
    assert filled == written
    assert task["code"] == {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code",
                                        "code": "fulfill", "display": "Fulfill the focal request"}]}
    assert result["note"][0]["time"] == "2026-11-24T08:10:00.123456Z"
    assert validate(result) == []
