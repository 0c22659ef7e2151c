"""The audit trail's own, append-only tables: every answered read has its row, committed before
the answer (with the rows of concurrent reads), and no read is answered when its row cannot be
written; nobody can change or erase a row; events stored as resources before
revision 0010 move there and back; the FHIR AuditEvent view reads and searches them."""

import asyncio
import random
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bilan.app import Services, build_services
from bilan.auth.caller import Caller
from bilan.demo.prescriptions import bundle
from bilan.fhir.query import parse_search
from bilan.settings import Settings
from bilan.storage import audit_log as audit_log_store
from bilan.storage.database import create_engine, create_reads_engine
from bilan.storage.migrate import downgrade, upgrade
from bilan.storage.tables import audit_log, audit_patients, resource_versions, resources, search_index
from tests.helpers import locations, run, search
from tests.orders import addressed
from tests.people import DUPONT
from tests.servers import prepare

DUPONT_ACCOUNT = "patient.dupont"
PRESCRIBER = Caller("prescriber", "prescriber:10003456786", frozenset({"user/*.read"}), rpps="10003456786")


@pytest.fixture(scope="module")
def order(fhir: httpx.Client, rng_module: Any) -> dict[str, str]:
    """Dr Lambert's prescription for Mme Dupont, its ServiceRequest and Patient."""
    spec = addressed(rng_module, patient=DUPONT)
    sent = fhir.post("", json=bundle(spec))
    assert sent.status_code == 200, sent.text
    where = locations(sent)
    return {"request": next(loc for loc in where if loc.startswith("ServiceRequest/")),
            "patient": next(loc for loc in where if loc.startswith("Patient/"))}


def _rows(settings: Settings, **where: str) -> list[Any]:
    async def found() -> list[Any]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                stmt = select(audit_log).where(*(audit_log.c[k] == v for k, v in where.items()))
                return list(await conn.execute(stmt.order_by(audit_log.c.recorded)))
        finally:
            await engine.dispose()
    return run(found())


def test_each_answered_read_leaves_one_row_naming_its_patient(order: dict[str, str], fhir: httpx.Client,
                                                            as_user: Any, settings: Settings) -> None:
    caller = "practice-software-demo"
    before = len(_rows(settings, altid=caller, subtype="read"))
    assert fhir.get(order["request"]).status_code == 200
    after = _rows(settings, altid=caller, subtype="read")
    assert len(after) == before + 1
    event = after[-1].content
    assert {e["what"]["reference"] for e in event["entity"]} >= {order["patient"], order["request"]}
    refused = as_user("dr.nguyen").get(order["request"])
    assert refused.status_code == 403
    denied = [row.content for row in _rows(settings, subtype="read", outcome="4")]
    assert any(e["agent"][0]["who"]["identifier"]["value"] == "prescriber:10123456781"
               and {"what": {"reference": order["request"]}} in e["entity"] for e in denied)


def test_the_patient_reads_and_searches_her_events_and_no_one_elses(order: dict[str, str], fhir: httpx.Client,
                                                                     as_user: Any) -> None:
    assert fhir.get(order["request"]).status_code == 200
    dupont = as_user(DUPONT_ACCOUNT)
    reads = search(dupont, "AuditEvent", patient=order["patient"], subtype="read", outcome="0",
                   date=f"ge{datetime.now(timezone.utc):%Y-%m-%d}", _sort="-date", _count=5)
    assert reads["total"] >= 1
    newest = reads["entry"][0]["resource"]
    assert newest["subtype"][0]["code"] == "read" and newest["meta"]["versionId"] == "1"
    one = dupont.get(f"AuditEvent/{newest['id']}")
    assert one.status_code == 200 and one.json()["entity"] == newest["entity"]
    assert dupont.get(f"AuditEvent/{newest['id']}/_history/1").status_code == 200
    assert dupont.get(f"AuditEvent/{newest['id']}/_history/2").status_code == 404
    assert search(dupont, "AuditEvent", patient=order["patient"], subtype="delete")["total"] == 0
    # Another patient, and the prescriber's own software, see nothing of it.
    assert as_user("patient.lefevre").get(f"AuditEvent/{newest['id']}").status_code == 403
    assert search(as_user("patient.lefevre"), "AuditEvent", patient=order["patient"])["total"] == 0
    assert fhir.get(f"AuditEvent/{newest['id']}").status_code == 403
    assert search(fhir, "AuditEvent")["total"] == 0


def test_searches_the_trail_cannot_answer_are_refused(as_user: Any) -> None:
    dupont = as_user(DUPONT_ACCOUNT)
    chained = dupont.get("AuditEvent", params={"patient.identifier": "279035121518989"})
    assert chained.status_code == 400
    assert chained.json()["issue"][0]["expression"] == ["patient"]
    included = dupont.get("AuditEvent", params={"_include": "AuditEvent:patient"})
    assert included.status_code == 400
    assert dupont.post("AuditEvent", json={"resourceType": "AuditEvent"}).status_code == 403


def test_nobody_can_change_or_erase_the_trail(own_database: Settings) -> None:
    async def attempts() -> list[str]:
        engine = create_engine(own_database)
        refused = []
        try:
            await upgrade(engine)
            services = build_services(engine, own_database)
            async with services.records.unit() as repo:
                await services.records.audit(repo, PRESCRIBER, "read", patients=["Patient/p1"],
                                             touched=["Patient/p1"])
            for table, change in ((audit_log, update(audit_log).values(outcome="4")),
                                  (audit_log, delete(audit_log)),
                                  (audit_patients, update(audit_patients).values(patient_id="p2")),
                                  (audit_patients, delete(audit_patients))):
                try:
                    async with engine.begin() as conn:
                        await conn.execute(change)
                except DBAPIError as error:
                    refused.append(f"{table.name}: {'append-only' in str(error)}")
            async with engine.connect() as conn:
                kept = (await conn.execute(select(func.count()).select_from(audit_patients)
                                           .where(audit_patients.c.patient_id == "p1"))).scalar_one()
                assert kept == 1
        finally:
            await engine.dispose()
        return refused

    assert run(attempts()) == ["audit_log: True", "audit_log: True",
                               "audit_patients: True", "audit_patients: True"]


def test_events_stored_as_resources_move_to_the_trail_and_back(own_database: Settings) -> None:
    recorded = datetime(2026, 11, 30, 9, 15, 0, 123000, tzinfo=timezone.utc)
    event = {"resourceType": "AuditEvent", "id": "evt-1",
             "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
             "subtype": [{"system": "http://terminology.hl7.org/CodeSystem/restful-interaction",
                          "code": "read"}],
             "action": "R", "recorded": "2026-11-30T09:15:00.123+00:00", "outcome": "0",
             "agent": [{"who": {"identifier": {"value": "prescriber:1"}}, "altId": "dr.x",
                        "requestor": True}],
             "source": {"observer": {"display": "bilan"}},
             "entity": [{"what": {"reference": "Patient/p1"}}, {"what": {"reference": "Observation/o1"}}]}

    async def scenario() -> tuple[list[Any], int, list[Any], list[str]]:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            await downgrade(engine, "0009")
            row = {"resource_type": "AuditEvent", "id": "evt-1", "version_id": 1,
                   "last_updated": recorded, "deleted": False,
                   "content": dict(event, meta={"versionId": "1"})}
            async with engine.begin() as conn:
                await conn.execute(insert(resources), [row])
                await conn.execute(insert(resource_versions), [dict(row, method="POST")])
                await conn.execute(insert(search_index), [
                    {"resource_type": "AuditEvent", "resource_id": "evt-1", "name": "patient",
                     "system": "Patient", "value": "p1"}])
            await upgrade(engine)
            async with engine.connect() as conn:
                moved = list(await conn.execute(select(audit_log)))
                left = (await conn.execute(select(func.count()).select_from(resources)
                                           .where(resources.c.resource_type == "AuditEvent"))).scalar_one()
                named = list(await conn.execute(select(audit_patients)))
            await downgrade(engine, "0009")
            async with engine.connect() as conn:
                back = [r.id for r in await conn.execute(
                    select(resources.c.id).where(resources.c.resource_type == "AuditEvent"))]
                rows = {(r.name, r.value) for r in await conn.execute(
                    select(search_index).where(search_index.c.resource_id == "evt-1"))}
            assert {("patient", "p1"), ("subtype", "read"), ("altid", "dr.x")} <= rows
            await upgrade(engine)
            services = build_services(engine, own_database)
            found = await services.records.search(None, parse_search(
                "AuditEvent", [("patient", "Patient/p1"), ("date", "2026-11-30")],
                default_count=10, max_count=10))
            assert [m.id for m in found.matches] == ["evt-1"]
            assert found.matches[0].last_updated == recorded
            return moved, left, named, back
        finally:
            await engine.dispose()

    moved, left, named, back = run(scenario())
    [row] = moved
    assert (row.id, row.subtype, row.action, row.outcome, row.altid) == ("evt-1", "read", "R", "0", "dr.x")
    assert row.content["entity"] == event["entity"] and "meta" not in row.content
    assert left == 0
    assert [(n.patient_id, n.event_id) for n in named] == [("p1", "evt-1")]
    assert back == ["evt-1"]


SOFTWARE = Caller("practice-software", "practice-software-demo", frozenset({"system/*.read", "system/*.write"}),
                  rpps="10003456786")
READS = 24


async def _prescribed(settings: Settings, reads: AsyncEngine | None) -> tuple[Services, list[str]]:
    """bilan's services on `settings`' fresh database, and the ServiceRequests of one
    prescription of Dr Lambert's software."""
    await prepare(settings)
    services = build_services(create_engine(settings), settings, reads)
    answer = await services.transactions.process(SOFTWARE, bundle(addressed(random.Random(16))))
    return services, [e["response"]["location"].split("/_history")[0] for e in answer["entry"]
                      if e["response"]["location"].startswith("ServiceRequest/")]


def test_concurrent_reads_each_have_their_row_when_answered(own_database: Settings) -> None:
    async def scenario() -> tuple[int, list[Any], int]:
        reads = create_reads_engine(own_database)
        services, requests = await _prescribed(own_database, reads)
        try:
            targets = [requests[n % len(requests)] for n in range(READS)]
            answered = await asyncio.gather(*(services.records.read(PRESCRIBER, *t.split("/")) for t in targets))
            async with services.records.engine.connect() as conn:  # as soon as the reads are answered
                rows = list(await conn.execute(select(audit_log).where(audit_log.c.subtype == "read")))
                named = (await conn.execute(select(func.count()).select_from(audit_patients).where(
                    audit_patients.c.event_id.in_([r.id for r in rows])))).scalar_one()
            return len(answered), rows, named
        finally:
            await services.records.engine.dispose()
            if reads is not None:
                await reads.dispose()

    answered, rows, named = run(scenario())
    assert answered == len(rows) == READS
    read = Counter(e["what"]["reference"] for r in rows for e in r.content["entity"]
                   if e["what"]["reference"].startswith("ServiceRequest/"))
    assert len(read) == 5 and sum(read.values()) == READS  # the prescription's five exams
    assert named == READS  # each event names the patient


def test_no_read_is_answered_when_its_audit_row_cannot_be_written(own_database: Settings) -> None:
    async def scenario() -> tuple[list[Any], str]:
        reads = create_reads_engine(own_database)
        services, requests = await _prescribed(own_database, reads)
        records = services.records
        try:
            async with records.engine.begin() as conn:  # the trail is gone: a faulty migration, say
                await conn.execute(text("ALTER TABLE audit_patients RENAME TO audit_patients_away"))
            outcomes = await asyncio.gather(*(records.read(PRESCRIBER, *t.split("/")) for t in requests * 2),
                                            return_exceptions=True)
            async with records.engine.begin() as conn:
                await conn.execute(text("ALTER TABLE audit_patients_away RENAME TO audit_patients"))
            again = await records.read(PRESCRIBER, *requests[0].split("/"))  # the trail is back
            return list(outcomes), again.id
        finally:
            await records.engine.dispose()
            if reads is not None:
                await reads.dispose()

    outcomes, again = run(scenario())
    assert len(outcomes) == 10 and all(isinstance(o, DBAPIError) for o in outcomes), outcomes
    assert again  # the next read, its row written, is answered


def test_reads_commit_without_waiting_for_the_disk_and_writes_still_wait(own_database: Settings) -> None:
    if not own_database.database_url.startswith("postgresql"):
        pytest.skip("synchronous_commit is PostgreSQL's")
    settings = own_database.model_copy(update={"pool_size": 1})

    async def setting(conn: AsyncConnection) -> str:
        return str((await conn.execute(text("SHOW synchronous_commit"))).scalar_one())

    async def scenario() -> list[str]:
        engine, reads = create_engine(settings), create_reads_engine(settings)
        assert reads is not None
        try:
            await upgrade(engine)
            seen = []
            async with reads.connect() as conn:  # where reads and their audit rows commit
                seen.append(await setting(conn))
            async with engine.begin() as conn:  # a read's audit rows, without a reads engine
                await audit_log_store.reads_only(conn)
                seen.append(await setting(conn))
            for records in (build_services(engine, settings, reads).records, build_services(engine, settings).records):
                await records.audit_read(PRESCRIBER, "read", patients=["Patient/p1"])
                async with records.unit() as repo:  # a write's transaction, on a pooled connection
                    seen.append(await setting(repo.conn))
            async with reads.connect() as conn:  # both reads' rows were committed
                written = (await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one()
            seen.append(str(written))
            return seen
        finally:
            await engine.dispose()
            await reads.dispose()

    assert run(scenario()) == ["off", "off", "on", "on", "2"]
