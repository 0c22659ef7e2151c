"""The patient's results as trends: one series per analyte whatever the lab and the unit, the
originals kept, what cannot be converted kept apart; $lastn and date-sorted searches; never a
result the patient may not see yet.

A patient of the module's own (drawn from its seed) gets results from the demo lab (the whole
flow: prescription, import, analysers, validation, issued report shared in her space) and from
another lab (a CR-BIO posted as a DocumentReference). She asks the API with a token carrying her
INS (signed by the local provider's key: it has no account for her), and the trends service as
the Caller that token makes. No other test gives her anything: the assertions are exact."""

import base64
import dataclasses
import random
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import httpx
import pytest

from bilan.app import build_services
from bilan.auth.caller import Caller
from bilan.demo.prescriptions import Person, random_person
from bilan.fhir.outcomes import FhirError, Forbidden, NotFound
from bilan.fhir.text import normalise
from bilan.prescription import tracking
from bilan.records.service import Records
from bilan.results.document.cda import cda_document
from bilan.results.document.fhir_report import OBSERVATION_CATEGORY
from bilan.results.document.report import (
    Chapter,
    Code,
    Identifier,
    Organization,
    Quantity,
    Result,
    Specimen,
)
from bilan.results.views import Trends
from bilan.results.views.trends import Series
from bilan.settings import Settings
from bilan.storage.database import create_engine
from tests.audit import stored_events
from tests.helpers import client, search, uuid_from
from tests.helpers import (
    run as in_thread,  # the browser tests keep a loop in this thread
)
from tests.identity import patient_auth
from tests.lab_reports import PARIS, SPECIMEN_TYPE
from tests.lab_reports import report as cda_report
from tests.orders import addressed, imported_for, prescribed
from tests.results import decide, issue, posted, result
from tests.web import submit

LOINC = "http://loinc.org"
GLUCOSE_EXAM, RENAL_EXAM, HBA1C_EXAM = ("40193-5", "Glycémie à jeun"), ("45066-8", "Fonction rénale"), \
    ("4548-4", "Hémoglobine glyquée (HbA1c)")
OTHER_LAB = Organization("930012345", "Laboratoire des Lilas", cda_report().lab.address, ("tel:0148000000",))
DEMO_LAB = "Laboratoire Bilan Paris Est"
LABORATORY = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}]
T = TypeVar("T")


def at(year: int, month: int, day: int) -> str:
    return datetime(year, month, day, 8, 15, tzinfo=PARIS).isoformat()


def reference_range(low: float, high: float, unit: str) -> list[dict[str, Any]]:
    return [{"low": {"value": low, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
             "high": {"value": high, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}]


def in_service(settings: Settings, call: Callable[[Records], Awaitable[T]]) -> T:
    """Call the service on the test database, as the app does."""
    async def run() -> T:
        engine = create_engine(settings)
        try:
            return await call(build_services(engine, settings).records)
        finally:
            await engine.dispose()
    return in_thread(run())


def with_trends(settings: Settings, call: Callable[[Trends], Awaitable[T]]) -> T:
    return in_service(settings, lambda records: call(Trends(records)))


def audit_events(settings: Settings, caller: Caller) -> list[dict[str, Any]]:
    """The AuditEvents recording what this caller did."""
    return stored_events(settings, caller.subject)


def by_id(series: Series) -> dict[str, Any]:
    return {p.observation_id: p for p in series.points}


def apart_by_id(series: Series) -> dict[str, Any]:
    return {p.observation_id: p for p in series.apart}


@pytest.fixture(scope="module")
def person(rng_module: random.Random) -> Person:
    return random_person(rng_module)


@pytest.fixture(scope="module")
def her(person: Person) -> Caller:
    """The patient in the service, as her token makes her (subject and INS)."""
    return Caller("patient", f"fc-patient-{person.ins}", frozenset({"openid", "profile", "bilan"}), ins=person.ins)


@pytest.fixture(scope="module")
def her_api(server: str, issuer: str, her: Caller) -> Iterator[httpx.Client]:
    """Her on the FHIR API."""
    with client(server, patient_auth(issuer, server, her.subject, her.ins)) as api:
        yield api


def shared_order(fhir: httpx.Client, desk: httpx.Client, biologist: httpx.Client, lab_middleware: httpx.Client,
                 web_root: str, rng: random.Random, patient: Person, exams: list[tuple[str, str]],
                 results: list[tuple[str, str, float, str, dict[str, Any]]], hidden: bool = False) -> tuple[str, list[str]]:
    """A prescription for `patient`, its results (exam, code, value, unit, more) validated and
    the report issued (shared in her space, the results hidden until released if `hidden`);
    the Task id and the results' ids."""
    spec = addressed(rng, exams=exams, patient=patient)
    task_id = imported_for(fhir, desk, web_root, spec)
    requests = {code: prescribed(fhir, task_id, code) for code, _ in exams}
    ids = [posted(lab_middleware, result(requests[exam], code, value, unit, category=LABORATORY, **more))
           for exam, code, value, unit, more in results]
    assert decide(biologist, web_root, task_id, "biologique", ids).status_code == 200
    done = issue(biologist, web_root, task_id, **({"masquer": ids} if hidden else {}))
    assert done.status_code == 200, done.text[-2000:]
    return task_id, ids


def other_lab_document(rng: random.Random, patient: Person, lab_file: str, results: list[Result],
                       when: datetime) -> dict[str, Any]:
    """A CR-BIO from another lab about `patient`, as a DocumentReference for her lab file."""
    base = cda_report()
    identity = dataclasses.replace(
        base.patient, birth_family=patient.family.upper(), birth_given=tuple(g.upper() for g in patient.given),
        sex="F" if patient.gender == "female" else "M", birth_date=patient.birth, ins=patient.ins,
        ins_system=patient.ins_system)
    serum = Specimen(Code("SER", "Sérum", SPECIMEN_TYPE), when, when)
    blood = Specimen(Code("BLD", "Sang total", SPECIMEN_TYPE), when, when)
    chemistry = tuple(r for r in results if r.code != "59261-8")
    haematology = tuple(r for r in results if r.code == "59261-8")
    chapters = ((Chapter("18719-5", "Biochimie", chemistry, specimens=(serum,)),) if chemistry else ()) + (
        (Chapter("18723-7", "Hématologie", haematology, specimens=(blood,)),) if haematology else ())
    document = cda_report(document_id=Identifier(str(uuid_from(rng)).upper()),
                          set_id=Identifier(str(uuid_from(rng)).upper()), patient=identity, lab=OTHER_LAB,
                          effective_time=when, validated_at=when, received_at=when, prescribed_at=when,
                          chapters=chapters)
    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": lab_file},
            "content": [{"attachment": {"contentType": "text/xml",
                                        "data": base64.b64encode(cda_document(document)).decode("ascii")}}]}


def measured(code: str, display: str, value: str, unit: str, low: str, high: str, when: datetime,
             flag: str = "N") -> Result:
    return Result(code, display, Quantity(Decimal(value), unit), flag, Decimal(low), Decimal(high), observed_at=when)


@pytest.fixture(scope="module")
def two_labs(fhir, lab_middleware, desk, biologist, web_root, as_user, rng_module, person) -> dict[str, str]:
    """Her glucose, creatinine and HbA1c from the demo lab (g/L, mg/L, %; and an earlier
    glucose) and from another lab (mmol/L, umol/L, and HbA1c in mmol/mol, which does not
    convert to %)."""
    _, [earlier] = shared_order(
        fhir, desk, biologist, lab_middleware, web_root, rng_module, person, [GLUCOSE_EXAM],
        [(GLUCOSE_EXAM[0], "2345-7", 0.95, "g/L", {"effectiveDateTime": at(2025, 11, 18)})])
    task_id, (glucose, creatinine, hba1c) = shared_order(
        fhir, desk, biologist, lab_middleware, web_root, rng_module, person, [GLUCOSE_EXAM, RENAL_EXAM, HBA1C_EXAM], [
            (GLUCOSE_EXAM[0], "2345-7", 1.10, "g/L",
             {"effectiveDateTime": at(2026, 3, 10), "referenceRange": reference_range(0.74, 1.06, "g/L")}),
            (RENAL_EXAM[0], "2160-0", 9.0, "mg/L",
             {"effectiveDateTime": at(2026, 3, 10), "referenceRange": reference_range(5.1, 11.8, "mg/L")}),
            (HBA1C_EXAM[0], "4548-4", 6.1, "%", {"effectiveDateTime": at(2026, 3, 10)}),
        ])
    glucose_subject = fhir.get(f"Observation/{glucose}").json()["subject"]["reference"]
    lab_file = tracking.lab_file_of(fhir.get(f"Task/{task_id}").json()) or glucose_subject
    when = datetime(2025, 9, 2, 7, 30, tzinfo=PARIS)
    importer = as_user("bio.durand")
    stored = importer.post("DocumentReference", json=other_lab_document(rng_module, person, lab_file, [
        measured("14749-6", "Glucose", "5.9", "mmol/L", "3.9", "6.1", when),
        measured("14682-9", "Créatinine", "80", "umol/L", "45", "104", when),
        measured("59261-8", "HbA1c (IFCC)", "48", "mmol/mol", "20", "42", when, "H"),
    ], when))
    assert stored.status_code == 201, stored.text
    document = stored.json()["id"]
    imported = {r["resource"]["code"]["coding"][0]["code"]: r["resource"]["id"]
                for r in search(importer, "Observation", **{"derived-from": f"DocumentReference/{document}"})["entry"]}
    return {"glucose": glucose, "earlier_glucose": earlier, "creatinine": creatinine, "hba1c": hba1c,
            "task": task_id, "lab_file": lab_file, "glucose_subject": glucose_subject,
            "other_glucose": imported["14749-6"], "other_creatinine": imported["14682-9"],
            "other_hba1c": imported["59261-8"]}


def test_one_series_per_analyte_across_labs_and_units(two_labs, settings, her) -> None:
    glucose = with_trends(settings, lambda trends: trends.series(her, "glucose"))
    assert glucose.label == "Glycémie" and glucose.unit == "mmol/L"
    assert (glucose.chapter, glucose.chapter_label) == ("18719-5", "Biochimie")
    points = by_id(glucose)
    assert set(points) == {two_labs["glucose"], two_labs["earlier_glucose"], two_labs["other_glucose"]}
    assert glucose.apart == ()
    ours, theirs = points[two_labs["glucose"]], points[two_labs["other_glucose"]]
    assert (ours.value, ours.unit, ours.original_value, ours.original_unit) == (Decimal("6.1"), "mmol/L",
                                                                                 Decimal("1.1"), "g/L")
    assert (ours.low, ours.high) == (Decimal("4.1"), Decimal("5.88"))
    assert ours.out_of_range  # 6.1 mmol/L above 5.88: the lab's own range, converted
    assert (theirs.value, theirs.original_unit, theirs.low, theirs.high) == (Decimal("5.9"), "mmol/L",
                                                                            Decimal("3.9"), Decimal("6.1"))
    assert ours.lab == DEMO_LAB and theirs.lab == OTHER_LAB.name
    assert ours.when == datetime(2026, 3, 10, 7, 15, tzinfo=timezone.utc)
    assert [p.observation_id for p in glucose.points] == [  # oldest first
        two_labs["other_glucose"], two_labs["earlier_glucose"], two_labs["glucose"]]
    assert all(p.unit == "mmol/L" for p in glucose.points)
    assert glucose.low is not None and glucose.high is not None

    creatinine = with_trends(settings, lambda trends: trends.series(her, "creatinine"))
    assert creatinine.unit == "umol/L"
    assert set(by_id(creatinine)) == {two_labs["creatinine"], two_labs["other_creatinine"]}
    ours, theirs = by_id(creatinine)[two_labs["creatinine"]], by_id(creatinine)[two_labs["other_creatinine"]]
    assert (ours.value, ours.original_value, ours.original_unit) == (Decimal("80"), Decimal("9.0"), "mg/L")
    assert (ours.low, ours.high) == (Decimal("45"), Decimal("104"))
    assert (theirs.value, theirs.unit) == (Decimal("80"), "umol/L")
    assert not ours.out_of_range and not theirs.out_of_range


def test_a_result_that_cannot_be_converted_stays_apart(two_labs, settings, her) -> None:
    hba1c = with_trends(settings, lambda trends: trends.series(her, "hba1c"))
    assert hba1c.unit == "%"
    assert set(by_id(hba1c)) == {two_labs["hba1c"]}
    assert set(apart_by_id(hba1c)) == {two_labs["other_hba1c"]}  # mmol/mol (IFCC) is no factor away from %
    apart = apart_by_id(hba1c)[two_labs["other_hba1c"]]
    assert (apart.value, apart.unit, apart.original_unit) == (Decimal("48"), "mmol/mol", "mmol/mol")
    assert apart.flag == "H" and apart.out_of_range
    summary = next(a for a in with_trends(settings, lambda t: t.analytes(her)) if a.key == "hba1c")
    assert summary.count == 2  # the point and the one apart


def test_analytes_are_found_by_their_french_names(two_labs, settings, her) -> None:
    every = with_trends(settings, lambda trends: trends.analytes(her))
    assert sorted(a.key for a in every) == ["creatinine", "glucose", "hba1c"]
    order = [(normalise(a.chapter_label), normalise(a.label)) for a in every]
    assert order == sorted(order)  # by chapter, then label
    glucose = next(a for a in every if a.key == "glucose")
    assert glucose.label == "Glycémie" and glucose.count == 3
    assert glucose.last.observation_id == two_labs["glucose"]  # 2026-03-10, her newest
    for typed, keys in (("glycémie", ["glucose"]), ("GLYCEMIE", ["glucose"]), ("glucose", ["glucose"]),
                        ("Glyc", ["glucose", "hba1c"])):  # the start of "hémoglobine glyquée" too
        assert sorted(a.key for a in with_trends(settings, lambda t: t.analytes(her, typed))) == keys, typed
    assert [a.key for a in with_trends(settings, lambda t: t.analytes(her, "créatinine"))] == ["creatinine"]
    assert with_trends(settings, lambda t: t.analytes(her, "cholestérol zz")) == []


def test_every_call_is_audited_and_an_unknown_analyte_is_a_404(two_labs, settings, her) -> None:
    before = {e["id"] for e in audit_events(settings, her)}
    with_trends(settings, lambda trends: trends.series(her, "glucose"))
    with_trends(settings, lambda trends: trends.analytes(her, "glyc"))
    events = [e for e in audit_events(settings, her) if e["id"] not in before]
    assert len(events) == 2
    assert all(e["subtype"][0]["code"] == "search-type" and e["outcome"] == "0" for e in events)
    named = {e["what"]["reference"] for event in events for e in event.get("entity", []) if "what" in e}
    assert named == {two_labs["glucose_subject"], two_labs["lab_file"]}  # her files, no one else's
    for key in ("not-an-analyte", "9999-9", "code-bm90IGEgY29kZQ", "GLY"):
        with pytest.raises(FhirError) as missing:
            with_trends(settings, lambda trends: trends.series(her, key))
        assert isinstance(missing.value, NotFound) and "Aucun résultat" in str(missing.value)
    doctor = Caller("prescriber", "dr.lambert", frozenset(), rpps="10003456786")
    with pytest.raises(FhirError) as refused:
        with_trends(settings, lambda trends: trends.series(doctor, "glucose"))
    assert isinstance(refused.value, Forbidden)


def lastn(api: httpx.Client, **params: Any) -> dict[str, Any]:
    response = api.get("Observation/$lastn", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


def entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def ids_of(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_lastn_gives_the_last_results_of_each_code(two_labs, her_api, fhir) -> None:
    codes = f"{LOINC}|2345-7,{LOINC}|14749-6,{LOINC}|2160-0"
    glucose, earlier, other, creatinine = (two_labs[k] for k in ("glucose", "earlier_glucose", "other_glucose",
                                                                   "creatinine"))
    assert set(ids_of(lastn(her_api, code=codes, max=100))) == {glucose, earlier, other, creatinine}
    last = entries(lastn(her_api, code=codes))  # max=1 by default: the latest of each code, newest first
    assert {o["id"] for o in last[:2]} == {glucose, creatinine} and [o["id"] for o in last[2:]] == [other]
    dates = [o["effectiveDateTime"] for o in last]  # 2026-03-10 twice, then 2025-09-02
    assert dates == sorted(dates, key=lambda d: datetime.fromisoformat(d), reverse=True)

    # The prescriber's software: the patient named, by category; his prescriptions' results only.
    subject = fhir.get(f"Observation/{glucose}").json()["subject"]["reference"]
    by_category = entries(lastn(fhir, patient=subject, category="laboratory", max=100))
    assert {o["id"] for o in by_category} == {glucose, earlier, creatinine, two_labs["hba1c"]}
    assert all(o["subject"]["reference"] == subject for o in by_category)

    assert fhir.get("Observation/$lastn", params={"code": codes}).status_code == 400  # whose?
    assert her_api.get("Observation/$lastn", params={"max": "0", "code": codes}).status_code == 400
    assert her_api.get("Observation/$lastn", params={"patient": subject}).status_code == 400  # which codes?


def test_search_by_patient_code_and_date_sorted_by_date(two_labs, her_api) -> None:
    files = ",".join(sorted({two_labs["lab_file"], two_labs["glucose_subject"]}))  # the lab's, the prescriber's
    codes = f"{LOINC}|2345-7,{LOINC}|14749-6"
    oldest_first = [two_labs["other_glucose"], two_labs["earlier_glucose"], two_labs["glucose"]]
    found = search(her_api, "Observation", patient=files, code=codes, date="ge2025-01-01", _sort="date", _count=100)
    assert ids_of(found) == oldest_first  # 2025-09, 2025-11, 2026-03
    newest_first = search(her_api, "Observation", code=codes, _sort="-date")
    assert ids_of(newest_first) == oldest_first[::-1]
    since = search(her_api, "Observation", code=codes, date="ge2025-10-01", _sort="-date")
    assert ids_of(since) == oldest_first[:0:-1]


def test_the_capability_statement_declares_lastn(fhir) -> None:
    observation = next(r for r in fhir.get("metadata").json()["rest"][0]["resource"] if r["type"] == "Observation")
    assert observation["operation"] == [{"name": "lastn",
                                         "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn"}]


def what_she_sees(api: httpx.Client, settings: Settings, her: Caller, observation_id: str,
                  codes: str) -> dict[str, Any]:
    """Whether she finds the result by a search, by $lastn, in her trend, by reading it; and how
    many glucose results her trends count."""
    series = with_trends(settings, lambda trends: trends.series(her, "glucose"))
    counted = next(a.count for a in with_trends(settings, lambda trends: trends.analytes(her)) if a.key == "glucose")
    return {"search": observation_id in ids_of(search(api, "Observation", code=codes, _count=500)),
            "lastn": observation_id in ids_of(lastn(api, code=codes, max=500)),
            "series": observation_id in by_id(series),
            "read": api.get(f"Observation/{observation_id}").status_code == 200, "count": counted}


def test_a_hidden_result_appears_nowhere_until_released(
        two_labs, fhir, lab_middleware, desk, biologist, doctor, web_root, settings, her, her_api, person,
        rng) -> None:
    codes = f"{LOINC}|2345-7"
    task_id, [hidden] = shared_order(
        fhir, desk, biologist, lab_middleware, web_root, rng, person, [GLUCOSE_EXAM],
        [(GLUCOSE_EXAM[0], "2345-7", 1.32, "g/L", {"effectiveDateTime": at(2026, 4, 20)})], hidden=True)
    assert fhir.get(f"Observation/{hidden}").json()["meta"]["security"][0]["code"] == "INVISIBLE_PATIENT"

    unseen = dict.fromkeys(("search", "lastn", "series", "read"), False)
    assert what_she_sees(her_api, settings, her, hidden, codes) == {**unseen, "count": 3}
    assert ids_of(lastn(her_api, code=codes)) == [two_labs["glucose"]]

    page = doctor.get(f"{web_root}/prescripteur/prescriptions/{task_id}")
    released = submit(doctor, page, f"/prescripteur/prescriptions/{task_id}/levee-masquage", {})
    assert released.status_code == 200
    assert what_she_sees(her_api, settings, her, hidden, codes) == {**dict.fromkeys(unseen, True), "count": 4}
    point = by_id(with_trends(settings, lambda trends: trends.series(her, "glucose")))[hidden]
    assert (point.value, point.unit, point.original_value, point.original_unit) == (
        Decimal("7.33"), "mmol/L", Decimal("1.32"), "g/L")
    assert ids_of(lastn(her_api, code=codes)) == [hidden]  # 2026-04-20: now her newest 2345-7
