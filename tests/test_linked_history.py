"""One person, several Patient records (issue 13, "History is split"): the prescriber's Patient
each prescription came with, the lab's own file, a second prescriber's Patient for the same
INS, reports from other labs attached to the lab's file. The lab's import links its file to
the prescription's Patient (`Patient.link`, seealso), and the desk's previous result, its delta
check and a professional's trend read the whole history the caller may read
(bilan/prescription/patient_links.py `same_person`).

Then the attempts to widen a view with a link: a prescriber linking his Patient to another's,
the lab writing a link on a prescriber's Patient, a second lab linking its file to the first
lab's, a link someone else wrote: none shows a result its reader could not already read.

Each test makes its own people (`rng`). The local provider has no account for a second lab's
staff: its biologist calls the API with a token signed by the provider's key, and its reception
and desk, like the trends (which have no page for professionals), are called in the service as
the Caller such a token makes."""

import base64
import copy
import dataclasses
import random
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import httpx
import pytest

from bilan.app import build_services
from bilan.auth.caller import Caller
from bilan.demo.load import BIOLOGIST_RPPS, LAB_FINESS, LAB_IDENTIFIER
from bilan.demo.prescriptions import Person, PrescriptionSpec, random_person
from bilan.fhir.outcomes import FhirError, NotFound
from bilan.prescription import tracking
from bilan.prescription.reception import NEW_FILE, Reception
from bilan.records.service import Records
from bilan.results.desk import ResultsDesk
from bilan.results.document.cda import cda_document
from bilan.results.document.report import Chapter, Code, Identifier, Organization, Specimen
from bilan.results.views import Trends
from bilan.settings import Settings
from bilan.storage.database import create_engine
from tests.helpers import client, issues, number_from, search, uuid_from
from tests.helpers import run as in_thread
from tests.identity import WEB_CLIENT, signed_auth
from tests.lab_reports import PARIS, SPECIMEN_TYPE, quantity
from tests.lab_reports import report as cda_report
from tests.orders import addressed, imported_for, prescribed, send, task_of
from tests.people import NGUYEN, OTHER_LAB, OTHER_LAB_FINESS
from tests.results import GLUCOSE, decide, glucose_result, posted

ELSEWHERE = Organization("930012345", "Laboratoire des Lilas", cda_report().lab.address, ("tel:0148000000",))
EARLIER, LATER = "2026-11-20T08:00:00+01:00", "2026-11-21T08:00:00+01:00"
T = TypeVar("T")


# --- actors --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nguyen(as_user) -> httpx.Client:
    """Dr Nguyen on the API: a second prescriber."""
    return as_user("dr.nguyen")


@pytest.fixture(scope="module")
def lab_api(as_user) -> httpx.Client:
    """The demo lab's biologist on the API."""
    return as_user("bio.durand")


@pytest.fixture(scope="module")
def other_biologist(server: str, issuer: str, other_lab: httpx.Client) -> Iterator[httpx.Client]:
    """A biologist of the second lab on the API (a token signed by the local provider's key)."""
    claims = {"sub": "bio-autre-labo", "client_id": WEB_CLIENT[0], "scope": "openid profile bilan",
              "role": "biologist", "rpps": OTHER_BIOLOGIST.rpps, "lab_finess": OTHER_LAB_FINESS}
    with client(server, signed_auth(issuer, server, claims)) as api:
        yield api


OTHER_RECEPTION = Caller("reception", "accueil-autre-labo", frozenset(), lab_finess=OTHER_LAB_FINESS)
OTHER_BIOLOGIST = Caller("biologist", "bio-autre-labo", frozenset(), rpps="10000000033",
                         lab_finess=OTHER_LAB_FINESS)
LAB_BIOLOGIST = Caller("biologist", "psc-810000000017", frozenset(), rpps=BIOLOGIST_RPPS, lab_finess=LAB_FINESS)
DR_NGUYEN = Caller("prescriber", "dr.nguyen", frozenset(), rpps=NGUYEN.rpps)


def in_service(settings: Settings, call: Callable[[Records], Awaitable[T]]) -> T:
    """Call a service on the test database, as the app does."""
    async def run() -> T:
        engine = create_engine(settings)
        try:
            return await call(build_services(engine, settings).records)
        finally:
            await engine.dispose()
    return in_thread(run())


# --- data ------------------------------------------------------------------------------------

def nguyens_order(nguyen: httpx.Client, desk: httpx.Client, web_root: str, rng: random.Random,
                  person: Person) -> str:
    """Dr Nguyen's glucose for `person`, imported by the demo lab (into her file if it has one)."""
    spec = PrescriptionSpec(person, NGUYEN, number_from(rng, "HIS"), [GLUCOSE], lab=LAB_IDENTIFIER)
    return imported_for(nguyen, desk, web_root, spec)


def glucose_of(api: httpx.Client, lab_middleware: httpx.Client, task_id: str, value: float, when: str,
               **extra: Any) -> str:
    return posted(lab_middleware, glucose_result(prescribed(api, task_id, GLUCOSE[0]), value, "mmol/L",
                                                 effectiveDateTime=when, **extra))


def lab_file(api: httpx.Client, task_id: str) -> str:
    return tracking.lab_file_of(api.get(f"Task/{task_id}").json())


def subject(api: httpx.Client, task_id: str) -> str:
    return str(prescribed(api, task_id, GLUCOSE[0])["subject"]["reference"])


def desk_page(biologist: httpx.Client, web_root: str, task_id: str) -> str:
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    assert page.status_code == 200, page.text[:500]
    return page.text


def previous_on_desk(settings: Settings, caller: Caller, task_id: str) -> dict[str, Any]:
    """Each result of the order on the desk, as `caller` sees it: its previous value, or None."""
    rows = in_service(settings, lambda records: ResultsDesk(records).results(caller, task_id))
    return {row.id: row.previous.value if row.previous else None for row in rows}


def trend(settings: Settings, caller: Caller, patient: str) -> set[str]:
    """The glucose results of the person `patient` names, in `caller`'s trend."""
    series = in_service(settings, lambda records: Trends(records).series(caller, "glucose", patient=patient))
    return {p.observation_id for p in series.points + series.apart}


def report_from_elsewhere(rng: random.Random, person: Person, patient: str, value: str,
                          when: datetime) -> dict[str, Any]:
    """A CR-BIO from another lab with `person`'s fasting glucose, for the Patient `patient`."""
    identity = dataclasses.replace(
        cda_report().patient, birth_family=person.family.upper(), birth_given=tuple(g.upper() for g in person.given),
        sex="F" if person.gender == "female" else "M", birth_date=person.birth, ins=person.ins,
        ins_system=person.ins_system, identity_status=person.status)
    serum = Specimen(Code("SER", "Sérum", SPECIMEN_TYPE), when, when)
    chapter = Chapter("18719-5", "Biochimie", (
        dataclasses.replace(quantity(GLUCOSE[0], GLUCOSE[1], value, "mmol/L", "3.9", "6.1", "H"), observed_at=when),),
        specimens=(serum,))
    document = cda_report(document_id=Identifier(str(uuid_from(rng)).upper()),
                          set_id=Identifier(str(uuid_from(rng)).upper()), patient=identity, lab=ELSEWHERE,
                          effective_time=when, validated_at=when, received_at=when, prescribed_at=when,
                          chapters=(chapter,))
    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": patient},
            "content": [{"attachment": {"contentType": "text/xml",
                                        "data": base64.b64encode(cda_document(document)).decode("ascii")}}]}


def results(api: httpx.Client, **params: str) -> set[str]:
    """The ids of the Observations `api` finds."""
    return {e["resource"]["id"] for e in search(api, "Observation", **params).get("entry", [])
            if e["search"]["mode"] == "match"}


def with_link(patient: dict[str, Any], other: str) -> dict[str, Any]:
    changed = {k: v for k, v in copy.deepcopy(patient).items() if k != "meta"}
    changed["link"] = [*changed.get("link", []), {"other": {"reference": other}, "type": "seealso"}]
    return changed


def refusal(response: httpx.Response, element: str) -> dict[str, Any]:
    """Status, and whether the first issue names `element` (or a part of it)."""
    named = False
    if response.status_code >= 400:
        named = any(e == element or e.startswith(element + "[") or e.startswith(element + ".")
                    for e in issues(response)[0].get("expression", []))
    return {"status": response.status_code, "names the element": named}


REFUSED = {"status": 403, "names the element": True}


# --- the whole history -----------------------------------------------------------------------

@pytest.mark.parametrize("status", ["QUAL", "VALI"])
def test_the_previous_glucose_is_found_on_another_prescribers_patient(
        fhir, nguyen, lab_api, lab_middleware, desk, biologist, web_root, rng, status) -> None:
    """Dr Lambert's order, then Dr Nguyen's for the same person: two Patients, one lab file.
    A qualified INS says they are one person; a validated (not qualified) one does not, and the
    link the lab's import wrote (its identity check) says it instead."""
    person = dataclasses.replace(random_person(rng), status=status)
    first = imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=person))
    earlier = glucose_of(fhir, lab_middleware, first, 5.0, EARLIER, status="final")
    second = nguyens_order(nguyen, desk, web_root, rng, person)
    new = glucose_of(nguyen, lab_middleware, second, 12.5, LATER)

    lamberts, nguyens, file = subject(fhir, first), subject(nguyen, second), lab_file(lab_api, first)
    assert lamberts != nguyens and lab_file(lab_api, second) == file  # two Patients, one lab file
    links = lab_api.get(file).json().get("link", [])
    assert sorted((link["other"]["reference"], link["type"]) for link in links) == sorted(
        [(lamberts, "seealso"), (nguyens, "seealso")])

    page = desk_page(biologist, web_root, second)
    assert "Résultat antérieur" in page and "12,5 mmol/L" in page and "5,0 mmol/L" in page
    assert "Variation inhabituelle" in page  # +7.5 mmol/L in a day: the delta check ran on it
    assert results(nguyen, patient=lamberts) == set()  # Nguyen's view: unchanged
    assert earlier not in results(nguyen, patient=nguyens)
    assert new in results(nguyen, patient=nguyens)


def test_a_report_from_another_lab_counts_as_history(
        fhir, nguyen, lab_api, lab_middleware, desk, biologist, web_root, rng, settings) -> None:
    """A CR-BIO from elsewhere, imported onto the lab's file of her first order: the desk of a
    later order by another prescriber compares with it, and a professional's trend of the
    person shows it beside the lab's own result, each reader seeing only what it may read."""
    person = random_person(rng)
    first = imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=person))
    file = lab_file(lab_api, first)
    when = datetime(2026, 11, 20, 8, 0, tzinfo=PARIS)
    stored = lab_api.post("DocumentReference", json=report_from_elsewhere(rng, person, file, "6.8", when))
    assert stored.status_code == 201, stored.text
    [elsewhere] = results(lab_api, **{"derived-from": f"DocumentReference/{stored.json()['id']}"})

    second = nguyens_order(nguyen, desk, web_root, rng, person)
    new = glucose_of(nguyen, lab_middleware, second, 12.5, LATER)
    page = desk_page(biologist, web_root, second)
    assert "6,8 mmol/L" in page and "Variation inhabituelle" in page
    decide(biologist, web_root, second, "biologique", [new])

    nguyens = subject(nguyen, second)
    assert trend(settings, LAB_BIOLOGIST, nguyens) == {elsewhere, new}  # the lab: its own file's import too
    assert trend(settings, DR_NGUYEN, nguyens) == {new}  # the prescriber: his prescription's results only
    with pytest.raises(FhirError) as unknown:
        trend(settings, DR_NGUYEN, file)  # the lab's file is not his to name
    assert isinstance(unknown.value, NotFound)


# --- what a link never does ------------------------------------------------------------------

def test_a_prescriber_cannot_link_his_patient_to_another_prescribers(fhir, nguyen, desk, web_root, rng) -> None:
    person = random_person(rng)
    lamberts_order = imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=person))
    lamberts = subject(fhir, lamberts_order)
    nguyens = subject(nguyen, nguyens_order(nguyen, desk, web_root, rng, random_person(rng)))

    response = nguyen.put(nguyens, json=with_link(nguyen.get(nguyens).json(), lamberts))
    after = {**refusal(response, "Patient.link[0].other"), "link": nguyen.get(nguyens).json().get("link"),
             "lambert's results": results(nguyen, patient=lamberts)}
    assert after == {**REFUSED, "link": None, "lambert's results": set()}, response.text[:300]


def test_the_lab_cannot_link_a_prescribers_patient(fhir, lab_api, desk, web_root, rng) -> None:
    """The prescriber's Patient is the prescriber's: the lab links its own file only."""
    one = subject(fhir, imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=random_person(rng))))
    other = subject(fhir, imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE],
                                                                       patient=random_person(rng))))
    response = lab_api.put(one, json=with_link(lab_api.get(one).json(), other))
    after = {**refusal(response, "Patient.link"), "link": fhir.get(one).json().get("link")}
    assert after == {**REFUSED, "link": None}, response.text[:300]


def test_a_link_someone_else_wrote_is_not_followed(
        nguyen, lab_middleware, desk, biologist, web_root, rng) -> None:
    """Dr Nguyen links two patients of his (he may: they are his) who are not one person; the
    lab sees both orders, but believes only the links its own imports wrote."""
    her, him = random_person(rng), random_person(rng)
    his_order = nguyens_order(nguyen, desk, web_root, rng, him)
    glucose_of(nguyen, lab_middleware, his_order, 5.0, EARLIER, status="final")
    her_order = nguyens_order(nguyen, desk, web_root, rng, her)
    glucose_of(nguyen, lab_middleware, her_order, 12.5, LATER)
    hers, his = subject(nguyen, her_order), subject(nguyen, his_order)

    linked = nguyen.put(hers, json=with_link(nguyen.get(hers).json(), his))
    assert linked.status_code == 200, linked.text  # his own Patient, pointing at his own Patient
    page = desk_page(biologist, web_root, her_order)
    assert "12,5 mmol/L" in page and "5,0 mmol/L" not in page and "Variation inhabituelle" not in page


def test_a_second_lab_sees_none_of_the_first_labs_history(
        fhir, lab_api, lab_middleware, other_lab, other_biologist, desk, web_root, rng, settings) -> None:
    """Dr Lambert's patient has an order at the demo lab, then one at a second lab: one
    Patient, two lab files, each linked to it by its lab's import. Each lab's desk and trend
    show its own results only; the second lab linking its file to the first lab's is refused."""
    person = random_person(rng)
    first = imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=person))
    earlier = glucose_of(fhir, lab_middleware, first, 5.0, EARLIER, status="final")
    spec = addressed(rng, exams=[GLUCOSE], patient=person)
    spec.lab = OTHER_LAB
    send(fhir, spec)
    second = task_of(fhir, spec.requisition)["id"]
    in_service(settings, lambda records: Reception(records).import_prescription(OTHER_RECEPTION, second, NEW_FILE))
    theirs = glucose_of(fhir, other_lab, second, 12.5, LATER)
    in_service(settings, lambda records: ResultsDesk(records).decide(OTHER_BIOLOGIST, second, "biologique",
                                                                    [theirs], ""))

    shared, our_file, their_file = subject(fhir, second), lab_file(lab_api, first), lab_file(other_biologist, second)
    assert shared == subject(fhir, first) and their_file != our_file  # one prescriber's Patient, two labs
    assert previous_on_desk(settings, OTHER_BIOLOGIST, second) == {theirs: None}
    assert trend(settings, OTHER_BIOLOGIST, shared) == {theirs}
    assert trend(settings, LAB_BIOLOGIST, shared) == {earlier}
    with pytest.raises(FhirError) as unknown:
        trend(settings, OTHER_BIOLOGIST, our_file)
    assert isinstance(unknown.value, NotFound)

    file = other_biologist.get(their_file).json()
    response = other_biologist.put(their_file, json=with_link(file, our_file))
    after = {**refusal(response, "Patient.link[1].other"),
             "link": [link["other"]["reference"] for link in other_biologist.get(their_file).json()["link"]],
             "desk": previous_on_desk(settings, OTHER_BIOLOGIST, second),
             "trend": trend(settings, OTHER_BIOLOGIST, shared)}
    assert after == {**REFUSED, "link": [shared], "desk": {theirs: None}, "trend": {theirs}}, response.text[:300]
