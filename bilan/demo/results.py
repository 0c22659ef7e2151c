"""Past reports for the demo: Marie Dupont's last three check-ups at the demo lab, taken through
the same steps as at the lab (import at reception, results from the analysers, biological
validation, issue), the three ANS example reports as documents from other labs, and the lab's
work in progress for its queues (a critical value to call, results to validate, a report to
issue, a prescriber's message). Loading again changes nothing: an order already imported is left as it is, and a
document already imported is found by its identifier."""

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

from bilan.auth.caller import Caller
from bilan.demo.prescriptions import EXAMS, Person, Prescriber, PrescriptionSpec, bundle
from bilan.fhir.terminology import LOINC, UCUM
from bilan.prescription import tracking
from bilan.prescription.messaging import KINDS_SYSTEM
from bilan.prescription.reception import NEW_FILE, Reception
from bilan.records.service import Records
from bilan.records.transaction import Transactions
from bilan.results.desk import ResultsDesk
from bilan.results.document import conformance
from bilan.results.elsewhere import document_identifier, read_cr_bio
from bilan.results.issuing import Choices, Issuing

# (LOINC asked, LOINC reported, unit, value at each check-up), for a patient whose fasting
# glucose and cholesterol creep up while her blood count stays steady.
CHECKUPS = [
    ("40193-5", "40193-5", "mmol/L", (5.4, 5.9, 6.6)),
    ("45066-8", "14682-9", "umol/L", (68, 71, 75)),
    ("58410-2", "718-7", "g/dL", (13.1, 12.8, 13.4)),
    ("58410-2", "6690-2", "10*9/L", (6.2, 7.8, 6.9)),
    ("57698-3", "2093-3", "mmol/L", (5.1, 5.6, 6.3)),
]
DATES = (datetime(2025, 11, 18, 7, 40, tzinfo=timezone.utc), datetime(2026, 5, 12, 7, 55, tzinfo=timezone.utc),
         datetime(2026, 11, 17, 7, 35, tzinfo=timezone.utc))
EXAMPLES = sorted((conformance.CDA_KIT / "ExemplesCDA").glob("BIO-CR-BIO_2024.01_*.xml"))


async def load_past_reports(records: Records, transactions: Transactions, patient: Person,
                            prescriber: Prescriber, lab: tuple[str, str], lab_finess: str,
                            biologist_rpps: str, mail_link: str) -> str:
    """Issue the demo patient's past reports (the prescriber's mails link to mail_link, the
    web pages' root); her patient file at the lab."""
    desk = Caller("reception", "demo-loader", frozenset(), lab_finess=lab_finess)
    biologist = Caller("biologist", "demo-loader", frozenset(), rpps=biologist_rpps, lab_finess=lab_finess)
    middleware = Caller("lab-middleware", "demo-loader", frozenset({"system/*.*"}), lab_finess=lab_finess)
    reception, results, issuing = Reception(records), ResultsDesk(records), Issuing(records, "", mail_link)
    labels = dict(EXAMS)
    exams = sorted({(asked, labels.get(asked, asked)) for asked, *_ in CHECKUPS})
    lab_file = ""
    for n, when in enumerate(DATES):
        number = f"DEMO-{when:%Y}-{9000 + n}"
        await transactions.process(None, bundle(PrescriptionSpec(
            patient=patient, prescriber=prescriber, requisition=number, exams=exams, lab=lab,
            authored=when.replace(hour=6), clinical_question="Bilan de suivi annuel")))
        [row] = await reception.worklist(desk, number)
        if row.status == "received":
            found = await reception.open(desk, row.task_id)
            same = [c.reference for c in found.candidates if c.traits.ins == found.patient.ins]
            await reception.import_prescription(desk, row.task_id, same[0] if same else NEW_FILE)
            await _report(records, reception, results, issuing, (desk, middleware, biologist), row.task_id, n, when)
        lab_file = tracking.lab_file_of((await records.read(desk, "Task", row.task_id)).content)
    return lab_file


async def _report(records: Records, reception: Reception, results: ResultsDesk, issuing: Issuing,
                  callers: tuple[Caller, Caller, Caller], task_id: str, n: int, when: datetime) -> None:
    """The analysers' results of check-up n, validated and issued."""
    desk, middleware, biologist = callers
    found = await reception.open(desk, task_id)
    for asked, reported, unit, values in CHECKUPS:
        request = next(e for e in found.exams if e.code == asked)
        await records.create(middleware, _result(request.reference, found.row.patient, reported, values[n], unit, when))
    await _validate_all(results, biologist, task_id)
    await issuing.issue(biologist, task_id, Choices())


async def _validate_all(results: ResultsDesk, biologist: Caller, task_id: str) -> None:
    """Biological validation of every open result of the order, calculated ones included."""
    await results.decide(biologist, task_id, "biologique", [r.id for r in await results.results(biologist, task_id)
                                                          if r.open], "")


# The lab's work in progress: (number, day, whether validated, the prescriber's message, the
# results that differ from her last check-up by LOINC). DEMO-2026-9100's glucose is critical
# (HH, above 25 mmol/L): it waits for the biologist's call to the prescriber.
PARTNER_EXAM = ("2458-8", "Immunoglobulines A")  # not in the catalogue: sent to the partner lab
IN_PROGRESS: list[tuple[str, datetime, bool, str, dict[str, float]]] = [
    ("DEMO-2026-9100", datetime(2026, 12, 1, 7, 30, tzinfo=timezone.utc), False,
     "Merci de m'appeler si la glycémie dépasse 7 mmol/L.", {"40193-5": 26.8}),
    ("DEMO-2026-9101", datetime(2026, 12, 2, 7, 45, tzinfo=timezone.utc), True, "", {}),
]


async def load_work_in_progress(records: Records, transactions: Transactions, patient: Person,
                                prescriber: Prescriber, lab: tuple[str, str], lab_finess: str,
                                biologist_rpps: str) -> None:
    """Orders of the demo patient still at the lab: results awaiting validation with a message
    from the prescriber, and validated results whose report is not issued yet, with an exam
    awaited from the partner lab."""
    desk = Caller("reception", "demo-loader", frozenset(), lab_finess=lab_finess)
    biologist = Caller("biologist", "demo-loader", frozenset(), rpps=biologist_rpps, lab_finess=lab_finess)
    middleware = Caller("lab-middleware", "demo-loader", frozenset({"system/*.*"}), lab_finess=lab_finess)
    software = Caller("practice-software", "demo-loader", frozenset({"system/*.*"}), rpps=prescriber.rpps)
    reception, results = Reception(records), ResultsDesk(records)
    labels = dict(EXAMS)
    exams = sorted({(asked, labels.get(asked, asked)) for asked, *_ in CHECKUPS})
    for number, when, validated, message, changed in IN_PROGRESS:
        await transactions.process(None, bundle(PrescriptionSpec(
            patient=patient, prescriber=prescriber, requisition=number,
            exams=[*exams, PARTNER_EXAM] if validated else exams, lab=lab,
            authored=when.replace(hour=6), clinical_question="Contrôle glycémique")))
        [row] = await reception.worklist(desk, number)
        if row.status != "received":
            continue
        found = await reception.open(desk, row.task_id)
        same = [c.reference for c in found.candidates if c.traits.ins == found.patient.ins]
        await reception.import_prescription(desk, row.task_id, same[0] if same else NEW_FILE)
        found = await reception.open(desk, row.task_id)
        for asked, reported, unit, values in CHECKUPS:
            request = next(e for e in found.exams if e.code == asked)
            await records.create(middleware, _result(request.reference, found.row.patient, reported,
                                                      changed.get(reported, values[-1]), unit, when))
        if validated:
            await _validate_all(results, biologist, row.task_id)
        if message:
            await records.create(software, {
                "resourceType": "Communication", "status": "completed",
                "category": [{"coding": [{"system": KINDS_SYSTEM, "code": "message"}]}],
                "partOf": [{"reference": f"Task/{row.task_id}"}],
                "payload": [{"contentString": message}]})


async def load_reports_from_elsewhere(records: Records, patient: str, lab_finess: str,
                                      biologist_rpps: str) -> int:
    """The ANS's three example CR-BIOs for the demo patient (their INS is hers), as the DMP
    would hand them over to her lab; how many were new."""
    biologist = Caller("biologist", "demo-loader", frozenset(), rpps=biologist_rpps, lab_finess=lab_finess)
    new = 0
    for path in EXAMPLES:
        document = path.read_bytes()
        identifier = document_identifier(read_cr_bio(document, check=False).document_id)
        reference = {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": patient},
                     "content": [{"attachment": {"contentType": "text/xml",
                                                 "data": base64.b64encode(document).decode("ascii")}}]}
        saved = await records.create(biologist, reference, if_none_exist=(
            f"identifier={identifier['system']}|{identifier['value']}&patient={patient}"))
        new += int(saved.created)
    return new


def _result(request: str, patient: str, code: str, value: float, unit: str, when: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": patient}, "basedOn": [{"reference": request}],
        "effectiveDateTime": (when + timedelta(minutes=5)).isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }
