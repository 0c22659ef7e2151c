"""`bilan demo`'s data loads through the one write path, and shows what the README promises."""

from sqlalchemy import func, select

from bilan.app import build_services
from bilan.auth.caller import Caller
from bilan.demo.load import load_demo
from bilan.fhir.query import parse_search
from bilan.results.queues import ANSWERS, CRITICAL, ISSUE, PARTNER, REPRINT, VALIDATE, LabQueues
from bilan.results.views.patient_space import PatientSpace
from bilan.settings import Settings
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade
from bilan.storage.tables import resources
from tests.helpers import run

LAMBERT = Caller("practice-software", "demo", frozenset({"system/*.read"}), rpps="10003456786")
DUPONT = Caller("patient", "patient.dupont", frozenset(), ins="279035121518989")
DURAND = Caller("biologist", "bio.durand", frozenset(), rpps="10000000017", lab_finess="750100001")


def test_the_demo_loads_and_each_party_sees_its_share(own_database: Settings) -> None:
    async def scenario() -> tuple[int, int, int, dict[str, list[str]]]:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            await load_demo(own_database)
            records = build_services(engine, own_database).records
            async with engine.connect() as conn:
                tasks = (await conn.execute(select(func.count()).where(
                    resources.c.resource_type == "Task"))).scalar_one()
            requests = await records.search(LAMBERT, parse_search("ServiceRequest", [], default_count=500, max_count=500))
            reports = await PatientSpace(records).reports(DUPONT)
            queues = await LabQueues(records).queues(DURAND)
            return tasks, requests.total, len(reports), {k: [w.number for w in v] for k, v in queues.items.items()}
        finally:
            await engine.dispose()

    tasks, lamberts_requests, dupont_reports, queues = run(scenario())
    assert tasks >= 5  # four prescriptions and the one addressed to no lab, and past orders
    assert lamberts_requests > 0
    assert dupont_reports >= 6  # her past reports: three from this lab, three from others
    # The lab's queues have work: results to validate, one critical (its call to record), with the
    # prescriber's message, a report to issue.
    assert queues == {CRITICAL: ["DEMO-2026-9100"], VALIDATE: ["DEMO-2026-9100"], ISSUE: ["DEMO-2026-9101"],
                      ANSWERS: ["DEMO-2026-9100"], PARTNER: ["DEMO-2026-9101"],
                      REPRINT: []}
