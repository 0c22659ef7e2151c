"""Data migrations on a database of their own (SQLite, or a throw-away PostgreSQL schema):
what was stored before a revision reads the same after it."""

import importlib.util
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

from sqlalchemy import insert, select, text, update

from bilan import data
from bilan.app import build_services
from bilan.demo.load import lab_directory
from bilan.demo.prescriptions import bundle
from bilan.fhir.parsing import validate
from bilan.prescription.catalogue import read_csv
from bilan.results.issuing.issuing import TASK_OUTPUT, Version, _version, issued_documents, report_status
from bilan.settings import Settings
from bilan.storage.database import create_engine
from bilan.storage.migrate import MIGRATIONS, downgrade, upgrade
from bilan.storage.repository import Repository
from bilan.storage.tables import catalogue, resource_versions, resources
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
                for table in (resources, resource_versions):
                    await conn.execute(update(table).where(table.c.id == task_id).values(content=old))
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
                history = (await conn.execute(select(resource_versions.c.content).where(
                    resource_versions.c.id == task_id))).scalar_one()
                assert history == migrated  # a read by version agrees with the read
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


def test_reports_issued_before_0006_read_by_their_codes(own_database: Settings) -> None:
    """An order issued partial, final, then corrected, stored as the code before 0006 stored it:
    the state in the description, the outputs typed by their text."""
    old_task = {"resourceType": "Task", "status": "completed", "intent": "order", "output": [
        {"type": {"text": "Résultats"}, "valueReference": {"reference": "DiagnosticReport/r-1"}},
        *({"type": {"text": "Compte rendu"}, "valueReference": {"reference": f"DocumentReference/d-{n}"}}
          for n in (1, 2, 3))]}
    old_documents = {f"d-{n}": {"resourceType": "DocumentReference", "status": status,
                                "description": f"Compte rendu d'examens biologiques, version {n}{partial}"}
                     for n, status, partial in ((1, "superseded", " (partiel)"), (2, "superseded", ""),
                                                (3, "current", ""))}
    elsewhere = {"resourceType": "DocumentReference", "status": "current",
                 "description": "Compte rendu d'un autre laboratoire"}  # no order of ours lists it

    async def scenario() -> tuple[dict[str, Any], list[Any], list[Version], str, dict[str, Any]]:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            stored = [("Task", "t-1", old_task), ("DocumentReference", "elsewhere", elsewhere),
                      *(("DocumentReference", id_, content) for id_, content in old_documents.items())]
            async with engine.begin() as conn:
                for resource_type, id_, content in stored:
                    row = {"resource_type": resource_type, "id": id_, "version_id": 1,
                           "last_updated": datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc), "deleted": False, "content": content}
                    await conn.execute(insert(resources).values(row))
                    await conn.execute(insert(resource_versions).values({**row, "method": "POST"}))
            await downgrade(engine, "0005")
            await upgrade(engine)
            async with engine.begin() as conn:
                repo = Repository(conn)
                task = await repo.read("Task", "t-1")
                assert task is not None
                versions = await issued_documents(repo, task.content)
                history = list(await conn.execute(select(resource_versions.c.id, resource_versions.c.content).where(
                    resource_versions.c.resource_type == "DocumentReference").order_by(resource_versions.c.id)))
                other = await repo.read("DocumentReference", "elsewhere")
                assert other is not None
            return (task.content, history, [_version(n, s) for n, s in enumerate(versions, 1)],
                    report_status(versions, complete=True), other.content)
        finally:
            await engine.dispose()

    task, history, versions, next_status, other = run(scenario())
    assert [o["type"]["coding"] for o in task["output"]] == [
        [{"system": TASK_OUTPUT, "code": code, "display": label}]
        for code, label in [("results", "Résultats"), *[("report", "Compte rendu")] * 3]]
    assert [(v.document_id, v.number, v.partial) for v in versions] == [("d-1", 1, True), ("d-2", 2, False),
                                                                          ("d-3", 3, False)]
    assert next_status == "corrected"  # a final version came before
    assert {id_: content.get("docStatus") for id_, content in history} == {
        "d-1": "preliminary", "d-2": "final", "d-3": "amended", "elsewhere": None}  # vread agrees
    assert "docStatus" not in other


def test_0009_gives_a_catalogue_loaded_before_it_the_clinical_order_of_its_csv(own_database: Settings, rng) -> None:
    """bilan's entries held unchanged take their row of bilan's CSV; an entry the lab changed
    or added follows them, by label, as the pages showed it until then."""
    rows = read_csv(data.CATALOGUE)
    changed = rng.choice([r for r in rows if r["kind"] == "result"])
    added = [{**rows[0], "local_code": f"LAB{n}", "label_fr": label, "loinc": f"{rng.randint(10000, 99999)}-{n}"}
             for n, label in enumerate(rng.sample(["Zinc", "Amylase", "Magnésium"], 3))]
    before_0009 = [c.name for c in catalogue.c if c.name not in ("position", "source", "notes")]

    async def scenario() -> tuple[dict[str, int], list[str]]:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            await downgrade(engine, "0008")
            async with engine.begin() as conn:
                await conn.execute(insert(catalogue), [
                    {k: ("0-0" if r is changed and k == "loinc" else r[k]) for k in before_0009}
                    for r in [*rows, *added]])
            await upgrade(engine)
            async with engine.connect() as conn:
                positions = {r.local_code: r.position for r in await conn.execute(
                    select(catalogue.c.local_code, catalogue.c.position))}
                notes = [r.notes for r in await conn.execute(select(catalogue.c.notes))]
            return positions, notes
        finally:
            await engine.dispose()

    positions, notes = run(scenario())
    kept = [r["local_code"] for r in rows if r is not changed]
    assert [positions[code] for code in kept] == [r["position"] for r in rows if r is not changed]
    assert sorted(positions, key=positions.__getitem__)[len(kept):] == [
        e["local_code"] for e in sorted([changed, *added], key=lambda e: e["label_fr"])]
    assert set(notes) == {None}  # the lab's documentation comes with its CSV, loaded again
    migration = _migration("0009")
    assert migration.ORDER == [(r["local_code"], r["loinc"]) for r in rows]


def _migration(revision: str) -> ModuleType:
    path = next((MIGRATIONS / "versions").glob(f"{revision}_*.py"))
    spec = importlib.util.spec_from_file_location(f"migration_{revision}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
