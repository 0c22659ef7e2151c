"""Writes that would widen someone's view (issue 12): each test has one actor try a write on
another actor's data, and checks both the refusal (status, and the element the OperationOutcome
names) and that nobody's view changed, by reading back what attacker and victim can see.

Actors: Dr Lambert (his practice software, `fhir`) and Dr Nguyen (`as_user("dr.nguyen")`), two
prescribers; the demo lab (reception, biologist, middleware); a second lab's middleware (a token
signed by the local provider's key: the provider has no client for a second FINESS); the
patients Marie Dupont and Jean Lefèvre.

Shared resources an attack may change (Lambert's Practitioner, the lab's Organization, a
patient) are put back after the test when the attack got through, so that one failing rule
does not make the next tests fail for the wrong reason."""

import copy
import random
import re
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import httpx
import pytest

from bilan.demo.load import LAB_IDENTIFIER
from bilan.demo.prescriptions import (
    EXAMS,
    Person,
    PrescriptionSpec,
    bundle,
    make_ins,
    patient_resource,
    random_person,
)
from bilan.prescription.practitioners import RPPS
from bilan.results.masking import (
    CONFIDENTIALITY,
    INVISIBLE_PATIENT,
    PATIENT_SPACE,
    SEEN_BY_PATIENT,
    SHARING,
)
from tests.helpers import (
    DEMO_PRESCRIBER_RPPS,
    ids,
    issues,
    locations,
    number_from,
    search,
    uuid_from,
)
from tests.orders import imported, imported_for, prescribed, task_of
from tests.people import DUPONT, LAMBERT, LEFEVRE, NGUYEN, OTHER_LAB
from tests.results import decide, documents, posted, result
from tests.web import csrf_token, follow, log_in

NGUYEN_RPPS = NGUYEN.rpps
LOINC = "http://loinc.org"
GLUCOSE, NFS = EXAMS[1], EXAMS[0]
REFUSED_READ = (403, 404)


# --- actors and their data ---------------------------------------------------------------

@pytest.fixture(scope="module")
def nguyen(as_user) -> httpx.Client:
    return as_user("dr.nguyen")


def sent(api: httpx.Client, spec: PrescriptionSpec) -> dict[str, Any]:
    """Send a prescription; what it made: patient, requests, context, spec."""
    response = api.post("", json=bundle(spec))
    assert response.status_code == 200, response.text
    locs = locations(response)
    return {"spec": spec, "patient": locs[0], "requests": [loc for loc in locs if loc.startswith("ServiceRequest/")],
            "context": [loc for loc in locs if loc.startswith("Observation/")]}


def lamberts(fhir: httpx.Client, rng: random.Random, person: Person | None = None,
             lab: tuple[str, str] | None = None) -> dict[str, Any]:
    """A prescription of Dr Lambert's for a patient of his own (addressed to `lab`, or to none)."""
    spec = PrescriptionSpec(person or random_person(rng), LAMBERT, number_from(rng, "ESC"),
                            EXAMS[:2], lab=lab)
    return sent(fhir, spec)


def nguyens(nguyen: httpx.Client, rng: random.Random) -> dict[str, Any]:
    spec = PrescriptionSpec(random_person(rng), NGUYEN, number_from(rng, "ESC"), EXAMS[2:4])
    return sent(nguyen, spec)


def practitioner(api: httpx.Client, rpps: str) -> dict[str, Any]:
    [found] = [e["resource"] for e in search(api, "Practitioner", identifier=f"{RPPS}|{rpps}")["entry"]]
    return found


def lab_organization(api: httpx.Client) -> dict[str, Any]:
    found = search(api, "Organization", identifier=f"{LAB_IDENTIFIER[0]}|{LAB_IDENTIFIER[1]}")
    [lab] = [e["resource"] for e in found["entry"]]
    return lab


# --- what to assert ------------------------------------------------------------------------

def named(response: httpx.Response, *elements: str) -> bool:
    """Whether the first issue names one of `elements` (or a part of one, e.g. identifier[1])."""
    if not elements:
        return True
    try:
        first = issues(response)[0].get("expression", [])
    except (AssertionError, ValueError, KeyError):
        return False
    return any(e == want or e.startswith(want + "[") or e.startswith(want + ".")
               for e in first for want in elements)


def refusal(response: httpx.Response, *elements: str) -> dict[str, Any]:
    """What a refusal looked like, to compare with refused(...)."""
    return {"status": response.status_code, "names the element": named(response, *elements)}


def refused(status: int = 403) -> dict[str, Any]:
    return {"status": status, "names the element": True}


def reads(api: httpx.Client, references: list[str]) -> set[int]:
    return {api.get(ref).status_code for ref in references}


def found_requests(api: httpx.Client, prescription: dict[str, Any]) -> set[str]:
    return ids(search(api, "ServiceRequest", requisition=prescription["spec"].requisition))


def blind_to(api: httpx.Client, prescription: dict[str, Any]) -> dict[str, Any]:
    """What `api` sees of a prescription: read statuses, search matches, its patient."""
    return {"reads": reads(api, prescription["requests"]) <= set(REFUSED_READ),
            "found": found_requests(api, prescription),
            "patient": api.get(prescription["patient"]).status_code in REFUSED_READ}


BLIND = {"reads": True, "found": set(), "patient": True}


@contextmanager
def put_back(owner: httpx.Client, original: dict[str, Any]) -> Iterator[None]:
    """Whatever the test does to `original`, it is as it was afterwards (written by its owner)."""
    ref = f"{original['resourceType']}/{original['id']}"
    try:
        yield
    finally:
        now = owner.get(ref)
        unchanged = now.status_code == 200 and now.json()["meta"]["versionId"] == original["meta"]["versionId"]
        if not unchanged:
            restored = owner.put(ref, json={k: v for k, v in original.items() if k != "meta"})
            assert restored.status_code in (200, 201), f"could not put {ref} back: {restored.text}"


def body_and_headers(response: httpx.Response) -> str:
    return response.text + " " + " ".join(f"{k}: {v}" for k, v in response.headers.items())


# --- 1. access never follows from data the caller can edit -------------------------------

def test_a_prescriber_adding_his_rpps_to_another_prescribers_practitioner_is_refused(
        fhir, nguyen, rng) -> None:
    theirs = lamberts(fhir, rng)
    original = practitioner(fhir, DEMO_PRESCRIBER_RPPS)
    claimed = {**copy.deepcopy(original), "identifier": [*original["identifier"],
                                                          {"system": RPPS, "value": NGUYEN_RPPS}]}
    with put_back(fhir, original):
        response = nguyen.put(f"Practitioner/{original['id']}", json=claimed)
        after = {**refusal(response, "Practitioner.identifier"), "nguyen": blind_to(nguyen, theirs),
                 "identifiers": fhir.get(f"Practitioner/{original['id']}").json()["identifier"]}
    assert after == {**refused(), "nguyen": BLIND, "identifiers": original["identifier"]}, response.text[:300]


def test_the_same_practitioner_change_inside_a_transaction_is_refused(fhir, nguyen, server, rng) -> None:
    theirs = lamberts(fhir, rng)
    original = practitioner(fhir, DEMO_PRESCRIBER_RPPS)
    claimed = {**copy.deepcopy(original), "identifier": [*original["identifier"],
                                                          {"system": RPPS, "value": NGUYEN_RPPS}]}
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": f"{server}/Practitioner/{original['id']}", "resource": claimed,
        "request": {"method": "PUT", "url": f"Practitioner/{original['id']}"}}]}
    with put_back(fhir, original):
        response = nguyen.post("", json=transaction)
        after = {**refusal(response, "Bundle.entry[0].resource.identifier", "Practitioner.identifier"),
                 "nguyen": blind_to(nguyen, theirs),
                 "identifiers": fhir.get(f"Practitioner/{original['id']}").json()["identifier"]}
    assert after == {**refused(), "nguyen": BLIND, "identifiers": original["identifier"]}, response.text[:300]


def test_a_practitioner_of_his_own_carrying_another_prescribers_rpps_gives_nothing(
        fhir, nguyen, rng) -> None:
    """Whether bilan stores it or not, Lambert keeps prescribing and Nguyen sees none of it."""
    before = lamberts(fhir, rng)
    impostor = {"resourceType": "Practitioner", "name": [{"family": "Nguyen", "given": ["Paul"]}],
                "identifier": [{"system": RPPS, "value": NGUYEN_RPPS},
                               {"system": RPPS, "value": DEMO_PRESCRIBER_RPPS}]}
    created = nguyen.post("Practitioner", json=impostor)
    try:
        after = fhir.post("", json=bundle(PrescriptionSpec(random_person(rng), LAMBERT,
                                                           number_from(rng, "ESC"), EXAMS[:2])))
        later = {"spec": None, "patient": "", "requests": []}
        if after.status_code == 200:
            locs = locations(after)
            later = {"patient": locs[0], "requests": [loc for loc in locs if loc.startswith("ServiceRequest/")]}
        seen = {"lambert still prescribes": after.status_code, "nguyen, earlier one": blind_to(nguyen, before),
                "nguyen reads the new one": reads(nguyen, later["requests"]) <= set(REFUSED_READ),
                "nguyen's search": {r for r in ids(search(nguyen, "ServiceRequest", _count=500))
                                    if r in set(before["requests"]) | set(later["requests"])}}
    finally:
        if created.status_code == 201:
            gone = nguyen.delete(f"Practitioner/{created.json()['id']}")
            if gone.status_code >= 300:
                fhir.delete(f"Practitioner/{created.json()['id']}")
    assert seen == {"lambert still prescribes": 200, "nguyen, earlier one": BLIND,
                    "nguyen reads the new one": True, "nguyen's search": set()}, created.status_code


def test_another_prescribers_rpps_on_his_own_practitioner_gives_nothing(fhir, nguyen, rng) -> None:
    """Nguyen may own his Practitioner; whether bilan stores the extra RPPS or refuses it,
    Lambert neither sees Nguyen's prescriptions nor stops prescribing, and Nguyen does not see
    what Lambert sends next."""
    his = nguyens(nguyen, rng)
    original = practitioner(nguyen, NGUYEN_RPPS)
    claimed = {**copy.deepcopy(original), "identifier": [*original["identifier"],
                                                          {"system": RPPS, "value": DEMO_PRESCRIBER_RPPS}]}
    with put_back(nguyen, original):
        response = nguyen.put(f"Practitioner/{original['id']}", json=claimed)
        spec = PrescriptionSpec(random_person(rng), LAMBERT, number_from(rng, "ESC"), EXAMS[:1])
        next_one = fhir.post("", json=bundle(spec))
        after = {"lambert": blind_to(fhir, his), "lambert still prescribes": next_one.status_code}
        if next_one.status_code == 200:
            locs = locations(next_one)
            after["nguyen"] = blind_to(nguyen, {"spec": spec, "patient": locs[0],
                                                "requests": [loc for loc in locs if loc.startswith("ServiceRequest/")]})
    assert after == {"lambert": BLIND, "lambert still prescribes": 200, "nguyen": BLIND}, response.status_code


def test_a_prescriber_cannot_delete_another_prescribers_practitioner_and_bring_it_back_as_his(
        fhir, nguyen, rng) -> None:
    """A delete, then a PUT of the same id, would make it a new resource, his."""
    his = nguyens(nguyen, rng)
    original = practitioner(fhir, NGUYEN_RPPS)
    ref = f"Practitioner/{original['id']}"
    taken = {k: v for k, v in original.items() if k != "meta"}
    taken["identifier"] = [{"system": RPPS, "value": DEMO_PRESCRIBER_RPPS}]
    deleted = fhir.delete(ref)
    revived = fhir.put(ref, json=taken)
    try:
        after = {"delete": deleted.status_code, "put back as his": revived.status_code,
                 "identifiers": nguyen.get(ref).json().get("identifier"),
                 "nguyen sees his": found_requests(nguyen, his), "lambert": blind_to(fhir, his)}
    finally:
        if nguyen.get(ref).json().get("meta", {}).get("versionId") != original["meta"]["versionId"]:
            body = {k: v for k, v in original.items() if k != "meta"}
            if nguyen.put(ref, json=body).status_code >= 300 and fhir.delete(ref).status_code < 300:
                nguyen.put(ref, json=body)  # the same hole, to undo what it did
    assert after == {"delete": 403, "put back as his": 403, "identifiers": original["identifier"],
                     "nguyen sees his": set(his["requests"]), "lambert": BLIND}


# --- 2. shared directory and identity resources --------------------------------------------

def test_a_prescriber_changing_the_labs_identifier_is_refused_and_the_lab_keeps_its_orders(
        fhir, nguyen, lab_middleware, rng) -> None:
    lamberts(fhir, rng, lab=LAB_IDENTIFIER)
    original = lab_organization(fhir)
    count_before = search(lab_middleware, "ServiceRequest", _count=1)["total"]
    moved = {**copy.deepcopy(original),
             "identifier": [{"system": LAB_IDENTIFIER[0], "value": "1759999990"}]}
    with put_back(fhir, original):
        response = nguyen.put(f"Organization/{original['id']}", json=moved)
        after = {**refusal(response, "Organization.identifier"),
                 "lab's orders": search(lab_middleware, "ServiceRequest", _count=1)["total"]}
    assert after == {**refused(), "lab's orders": count_before}, response.text[:300]


@pytest.mark.parametrize("element", ["identifier", "name", "birthDate"])
def test_the_lab_changing_a_prescribers_patient_is_refused(fhir, as_user, rng, element: str) -> None:
    ordered = lamberts(fhir, rng, lab=LAB_IDENTIFIER)
    original = fhir.get(ordered["patient"]).json()
    changed = copy.deepcopy(original)
    if element == "identifier":
        birth = datetime.strptime(original["birthDate"], "%Y-%m-%d").date()
        changed["identifier"][0]["value"] = make_ins(rng, original["gender"], birth)
    elif element == "name":
        changed["name"] = [{"use": "official", "family": "Intrus", "given": ["Autre"]}]
    else:
        day = int(original["birthDate"][8:])
        changed["birthDate"] = original["birthDate"][:8] + f"{day % 28 + 1:02d}"  # the INS keeps the month
    desk = as_user("accueil.martin")
    assert desk.get(ordered["patient"]).status_code == 200  # the lab sees it: its prescription
    with put_back(fhir, original):
        response = desk.put(ordered["patient"], json=changed)
        stored = fhir.get(ordered["patient"]).json()
        after = {**refusal(response, f"Patient.{element}"), element: stored.get(element)}
    assert after == {**refused(), element: original.get(element)}, response.text[:300]


def test_even_its_owner_cannot_move_a_patient_record_to_another_ins(fhir, rng) -> None:
    """The INS says whose record it is (the patient's own space reads by it): once stored, a
    changed INS would show one person's prescriptions and results to another."""
    ordered = lamberts(fhir, rng, lab=LAB_IDENTIFIER)
    original = fhir.get(ordered["patient"]).json()
    changed = copy.deepcopy(original)
    birth = datetime.strptime(original["birthDate"], "%Y-%m-%d").date()
    changed["identifier"][0]["value"] = make_ins(rng, original["gender"], birth)
    with put_back(fhir, original):
        response = fhir.put(ordered["patient"], json=changed)
        stored = fhir.get(ordered["patient"]).json()
        after = {**refusal(response, "Patient.identifier"), "identifier": stored["identifier"]}
    assert after == {**refused(), "identifier": original["identifier"]}, response.text[:300]


def test_a_prescriber_cannot_delete_a_patient_others_data_refers_to(fhir, lab_middleware, as_user, rng) -> None:
    ordered = sent(fhir, PrescriptionSpec(DUPONT, LAMBERT, number_from(rng, "ESC"), [GLUCOSE],
                                          lab=LAB_IDENTIFIER))
    request = lab_middleware.get(ordered["requests"][0]).json()
    posted(lab_middleware, result(request, GLUCOSE[0], 5.2, "mmol/L"))
    patient = as_user("patient.dupont")
    original = fhir.get(ordered["patient"]).json()
    with put_back(fhir, original):
        response = fhir.delete(ordered["patient"])
        after = {"status": response.status_code,
                 "patient reads themself": ordered["patient"] in ids(search(
                     patient, "Patient", _id=ordered["patient"].split("/")[1])),
                 "patient's prescription": found_requests(patient, ordered),
                 "the lab's order": lab_middleware.get(ordered["requests"][0]).status_code}
    assert after == {"status": 403, "patient reads themself": True,
                     "patient's prescription": set(ordered["requests"]), "the lab's order": 200}


# --- 3. every reference of a write points at something the writer may read ----------------

def _written(rng: random.Random, resource_type: str, subject: str, requester: str, **more: Any) -> dict[str, Any]:
    """A minimal valid ServiceRequest, Observation or Condition about `subject`."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if resource_type == "ServiceRequest":
        return {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "requisition": {"system": "https://bilan.sante.fr/fhir/sid/prescription",
                                "value": number_from(rng, "ESC")},
                "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}],
                "code": {"coding": [{"system": LOINC, "code": GLUCOSE[0], "display": GLUCOSE[1]}]},
                "subject": {"reference": subject}, "requester": {"reference": requester},
                "authoredOn": now, **more}
    if resource_type == "Observation":
        return {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
                "subject": {"reference": subject}, "effectiveDateTime": now,
                "valueQuantity": {"value": 71, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}
    return {"resourceType": "Condition", "subject": {"reference": subject},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"text": "Asthme"}}


@pytest.mark.parametrize("resource_type", ["ServiceRequest", "Observation", "Condition"])
def test_a_write_about_a_patient_the_writer_cannot_see_is_refused(fhir, nguyen, rng, resource_type) -> None:
    theirs, mine = lamberts(fhir, rng), nguyens(nguyen, rng)
    me = f"Practitioner/{practitioner(nguyen, NGUYEN_RPPS)['id']}"
    control = nguyen.post(resource_type, json=_written(rng, resource_type, mine["patient"], me))
    assert control.status_code == 201, control.text  # the same write about his own patient is fine

    response = nguyen.post(resource_type, json=_written(rng, resource_type, theirs["patient"], me))
    after = {**refusal(response, f"{resource_type}.subject"), "nguyen": blind_to(nguyen, theirs)}
    assert after == {**refused(), "nguyen": BLIND}, response.text[:300]


@pytest.mark.parametrize("resource_type", ["Observation", "Condition"])
def test_supporting_info_the_prescriber_cannot_see_is_refused(fhir, nguyen, rng, resource_type) -> None:
    theirs, mine = lamberts(fhir, rng), nguyens(nguyen, rng)
    if resource_type == "Observation":
        target = theirs["context"][0]
    else:
        made = fhir.post("Condition", json=_written(rng, "Condition", theirs["patient"], ""))
        assert made.status_code == 201, made.text
        target = f"Condition/{made.json()['id']}"
    assert nguyen.get(target).status_code in REFUSED_READ
    me = f"Practitioner/{practitioner(nguyen, NGUYEN_RPPS)['id']}"
    request = _written(rng, "ServiceRequest", mine["patient"], me, supportingInfo=[{"reference": target}])

    response = nguyen.post("ServiceRequest", json=request)
    after = {**refusal(response, "ServiceRequest.supportingInfo[0]"),
             "nguyen reads it": nguyen.get(target).status_code in REFUSED_READ,
             "nguyen finds it": ids(search(nguyen, resource_type, _id=target.split("/")[1]))}
    assert after == {**refused(), "nguyen reads it": True, "nguyen finds it": set()}, response.text[:300]


def _nguyen_never_gets(nguyen: httpx.Client, theirs: dict[str, Any], person: Person,
                       responses: list[httpx.Response]) -> dict[str, Any]:
    hidden_id = theirs["patient"].split("/")[1]
    by_ins = search(nguyen, "Patient", identifier=f"{person.ins_system}|{person.ins}")
    return {"in a response": [r.status_code for r in responses if hidden_id in body_and_headers(r)],
            "nguyen reads it": nguyen.get(theirs["patient"]).status_code in REFUSED_READ,
            "nguyen finds it by INS": theirs["patient"] in ids(by_ins),
            "nguyen's patients": hidden_id in str(search(nguyen, "Patient", _count=500)),
            "nguyen": blind_to(nguyen, theirs)}


NEVER = {"in a response": [], "nguyen reads it": True, "nguyen finds it by INS": False,
         "nguyen's patients": False, "nguyen": BLIND}


def test_a_conditional_reference_never_resolves_to_another_prescribers_patient(fhir, nguyen, rng) -> None:
    person = random_person(rng)
    theirs = lamberts(fhir, rng, person)
    me = f"Practitioner/{practitioner(nguyen, NGUYEN_RPPS)['id']}"
    conditional = f"Patient?identifier={person.ins_system}|{person.ins}"
    alone = nguyen.post("ServiceRequest", json=_written(rng, "ServiceRequest", conditional, me))
    # His own prescription for the same person (same INS), as practice software sends it.
    whole = nguyen.post("", json=bundle(PrescriptionSpec(person, NGUYEN, number_from(rng, "ESC"),
                                                         EXAMS[2:4])))
    seen = _nguyen_never_gets(nguyen, theirs, person, [alone, whole])
    assert seen == NEVER, (alone.status_code, whole.status_code)


def test_if_none_exist_never_returns_a_hidden_resource(fhir, nguyen, rng) -> None:
    person = random_person(rng)
    theirs = lamberts(fhir, rng, person)
    criteria = f"identifier={person.ins_system}|{person.ins}"
    top = nguyen.post("Patient", json=patient_resource(person), headers={"If-None-Exist": criteria})
    inside = nguyen.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": f"urn:uuid:{uuid_from(rng)}", "resource": patient_resource(person),
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": criteria}}]})
    seen = _nguyen_never_gets(nguyen, theirs, person, [top, inside])
    assert seen == NEVER, (top.status_code, top.text[:200], inside.status_code, inside.text[:200])


# --- 4. Task, Specimen, Communication never attach a caller to an order it may not see ----

@pytest.mark.parametrize("resource_type", ["Task", "Specimen", "Communication"])
def test_lab_middleware_cannot_attach_itself_to_a_prescription_addressed_to_no_lab(
        fhir, lab_middleware, rng, resource_type) -> None:
    unaddressed, addressed = lamberts(fhir, rng), lamberts(fhir, rng, lab=LAB_IDENTIFIER)

    def body(prescription: dict[str, Any]) -> tuple[dict[str, Any], str]:
        request = prescription["requests"][0]
        if resource_type == "Task":
            return {"resourceType": "Task", "status": "requested", "intent": "order",
                    "basedOn": [{"reference": request}]}, "Task.basedOn[0]"
        if resource_type == "Specimen":
            return {"resourceType": "Specimen", "request": [{"reference": request}],
                    "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119297000",
                                         "display": "Blood specimen"}]}}, "Specimen.request[0]"
        task = task_of(fhir, prescription["spec"].requisition)["id"]
        return {"resourceType": "Communication", "status": "completed", "partOf": [{"reference": f"Task/{task}"}],
                "payload": [{"contentString": "Tube hémolysé, merci de renouveler."}]}, "Communication.partOf[0]"

    control, _ = body(addressed)
    assert lab_middleware.post(resource_type, json=control).status_code == 201  # on its own order: fine
    attack, element = body(unaddressed)

    response = lab_middleware.post(resource_type, json=attack)
    after = {**refusal(response, element), "lab": blind_to(lab_middleware, unaddressed)}
    assert after == {**refused(), "lab": BLIND}, response.text[:300]


def test_a_task_owned_by_another_lab_is_refused(fhir, lab_middleware, other_lab, rng) -> None:
    ordered = lamberts(fhir, rng, lab=LAB_IDENTIFIER)
    elsewhere = search(fhir, "Organization", identifier=f"{OTHER_LAB[0]}|{OTHER_LAB[1]}")
    [other] = [e["resource"]["id"] for e in elsewhere["entry"]]
    assert blind_to(other_lab, ordered) == BLIND
    task = {"resourceType": "Task", "status": "requested", "intent": "order",
            "basedOn": [{"reference": r} for r in ordered["requests"]],
            "owner": {"reference": f"Organization/{other}"}}

    response = lab_middleware.post("Task", json=task)
    after = {**refusal(response, "Task.owner"), "other lab": blind_to(other_lab, ordered)}
    assert after == {**refused(), "other lab": BLIND}, response.text[:300]


@pytest.mark.parametrize("owner", ["its own lab", "another lab"])
def test_a_task_owned_by_a_lab_cannot_import_an_order_the_caller_cannot_see(
        fhir, nguyen, lab_middleware, other_lab, rng, owner) -> None:
    """A Task owned by a lab is what an import makes (found by the property test): through the
    API it may not import an order addressed to no lab, whatever its owner and subject."""
    unaddressed, visible = nguyens(nguyen, rng), lamberts(fhir, rng, lab=LAB_IDENTIFIER)
    identifier = LAB_IDENTIFIER if owner == "its own lab" else OTHER_LAB
    [organization] = [e["resource"]["id"] for e in search(
        fhir, "Organization", identifier=f"{identifier[0]}|{identifier[1]}")["entry"]]
    task = {"resourceType": "Task", "status": "requested", "intent": "order",
            "basedOn": [{"reference": unaddressed["requests"][0]}],
            "for": {"reference": visible["patient"]}, "owner": {"reference": f"Organization/{organization}"}}

    response = lab_middleware.post("Task", json=task)
    elements = ("Task.basedOn[0]",) if owner == "its own lab" else ("Task.basedOn[0]", "Task.owner")
    after = {**refusal(response, *elements), "lab": blind_to(lab_middleware, unaddressed),
             "other lab": blind_to(other_lab, unaddressed)}
    assert after == {**refused(), "lab": BLIND, "other lab": BLIND}, response.text[:300]


# --- 5. derived elements are never taken from the caller ----------------------------------

def _labelled(observation: dict[str, Any]) -> dict[str, Any]:
    return {**observation, "meta": {
        "security": [{"system": CONFIDENTIALITY, "code": INVISIBLE_PATIENT}],
        "tag": [{"system": SHARING, "code": SEEN_BY_PATIENT}, {"system": SHARING, "code": PATIENT_SPACE}]}}


def _patient_sees(patient: httpx.Client, observation_id: str) -> dict[str, Any]:
    return {"read": patient.get(f"Observation/{observation_id}").status_code in REFUSED_READ,
            "found": ids(search(patient, "Observation", _id=observation_id))}


def _sharing_tags(stored: dict[str, Any]) -> set[str]:
    return {t.get("code") for t in stored.get("meta", {}).get("tag", []) if t.get("system") == SHARING}


def test_a_result_posted_with_sharing_tags_is_stored_without_them(fhir, lab_middleware, as_user, rng) -> None:
    ordered = sent(fhir, PrescriptionSpec(DUPONT, LAMBERT, number_from(rng, "ESC"), [GLUCOSE],
                                          lab=LAB_IDENTIFIER))
    request = lab_middleware.get(ordered["requests"][0]).json()
    response = lab_middleware.post("Observation", json=_labelled(result(request, GLUCOSE[0], 6.1, "mmol/L")))
    assert response.status_code == 201, response.text
    stored = lab_middleware.get(f"Observation/{response.json()['id']}").json()
    seen = {"tags": _sharing_tags(stored), "patient": _patient_sees(as_user("patient.dupont"), stored["id"])}
    assert seen == {"tags": set(), "patient": {"read": True, "found": set()}}


def test_a_result_updated_with_sharing_tags_is_stored_without_them(fhir, lab_middleware, as_user, rng) -> None:
    ordered = sent(fhir, PrescriptionSpec(DUPONT, LAMBERT, number_from(rng, "ESC"), [GLUCOSE],
                                          lab=LAB_IDENTIFIER))
    request = lab_middleware.get(ordered["requests"][0]).json()
    result_id = posted(lab_middleware, result(request, GLUCOSE[0], 6.3, "mmol/L"))
    current = lab_middleware.get(f"Observation/{result_id}").json()
    response = lab_middleware.put(f"Observation/{result_id}", json=_labelled(current))
    assert response.status_code == 200, response.text
    stored = lab_middleware.get(f"Observation/{result_id}").json()
    seen = {"tags": _sharing_tags(stored), "patient": _patient_sees(as_user("patient.dupont"), result_id)}
    assert seen == {"tags": set(), "patient": {"read": True, "found": set()}}


# --- 6. masking survives every new version ------------------------------------------------

def form_defaults(page: httpx.Response, action_end: str) -> dict[str, Any]:
    """What a browser sends for a form of the page left as it is: its text and hidden inputs,
    its checked boxes."""
    found = re.search(r'<form[^>]*action="[^"]*' + re.escape(action_end) + r'"[^>]*>(.*?)</form>', page.text, re.S)
    assert found, f"no form posting to {action_end}"
    values: dict[str, Any] = {}
    for tag in re.findall(r"<input[^>]*>", found.group(1)):
        name = re.search(r'name="([^"]+)"', tag)
        kind = (re.search(r'type="([^"]+)"', tag) or re.search(r"()", "")).group(1) or "text"
        value = re.search(r'value="([^"]*)"', tag)
        if not name or name.group(1) == "_csrf_token":
            continue
        if kind in ("checkbox", "radio") and not re.search(r"\schecked\b", tag):
            continue
        values.setdefault(name.group(1), []).append(value.group(1) if value else ("on" if kind == "checkbox" else ""))
    return values


def issue_with_defaults(biologist: httpx.Client, web_root: str, task_id: str) -> httpx.Response:
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    action = f"/reception/prescriptions/{task_id}/compte-rendu"
    data = {**form_defaults(page, action), "_csrf_token": csrf_token(page)}
    return follow(biologist, biologist.post(str(page.url.join(action)), data=data))


def test_a_masked_result_stays_masked_in_a_corrected_report_and_an_identical_one_is_refused(
        fhir, lab_middleware, desk, biologist, web_root, as_user, rng) -> None:
    spec = PrescriptionSpec(DUPONT, LAMBERT, number_from(rng, "ESC"), [NFS, GLUCOSE],
                            lab=LAB_IDENTIFIER)
    task_id = imported_for(fhir, desk, web_root, spec)
    nfs, glucose = prescribed(fhir, task_id, NFS[0]), prescribed(fhir, task_id, GLUCOSE[0])
    sugar = posted(lab_middleware, result(glucose, GLUCOSE[0], 6.7, "mmol/L"))
    haemoglobin = posted(lab_middleware, result(nfs, "718-7", 17.3, "g/dL"))  # masked below
    decide(biologist, web_root, task_id, "biologique", [sugar, haemoglobin])
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    first = follow(biologist, biologist.post(str(page.url.join(f"/reception/prescriptions/{task_id}/compte-rendu")),
                                             data={"masquer": [haemoglobin], "_csrf_token": csrf_token(page)}))
    assert first.status_code == 200, first.text[-2000:]
    patient = as_user("patient.dupont")
    assert _patient_sees(patient, haemoglobin) == {"read": True, "found": set()}  # masked in version 1

    corrected = decide(biologist, web_root, task_id, "corriger", [sugar], valeur="5,9", commentaire="Erreur de saisie")
    assert corrected.status_code == 200, corrected.text[-2000:]
    second = issue_with_defaults(biologist, web_root, task_id)
    assert second.status_code == 200, second.text[-2000:]
    assert len(documents(fhir, task_id)) == 2
    browser, _ = log_in(web_root, "patient.dupont")
    analyses = browser.get(f"{web_root}/patient/analyses", params={"q": "hemoglobine"}).text
    trends = [browser.get(f"{web_root}/patient/analyses/{key}").text
              for key in set(re.findall(r'href="/patient/analyses/([^"?]+)"', analyses))]
    masked = {"fhir": _patient_sees(patient, haemoglobin),
              "web": any("17,3" in text or haemoglobin in text for text in trends)}

    again = issue_with_defaults(biologist, web_root, task_id)
    identical = {"status 4xx": 400 <= again.status_code < 500, "said in French": "n'a pas été émis" in again.text,
                 "versions": len(documents(fhir, task_id))}
    assert (masked, identical) == ({"fhir": {"read": True, "found": set()}, "web": False},
                                   {"status 4xx": True, "said in French": True, "versions": 2}), again.status_code


# --- 7. an AuditEvent shown to a patient names only that patient --------------------------

def test_a_patients_access_trail_names_no_other_patient(fhir, lab_middleware, web_root, as_user, rng) -> None:
    """The lab's searches return both patients' data at once, their text naming both."""
    orders = {who: sent(fhir, PrescriptionSpec(person, LAMBERT, number_from(rng, "ESC"), [GLUCOSE],
                                               lab=LAB_IDENTIFIER))
              for who, person in (("dupont", DUPONT), ("lefevre", LEFEVRE))}
    people = {"dupont": DUPONT, "lefevre": LEFEVRE}
    both_ids = ",".join(o["patient"].split("/")[1] for o in orders.values())
    both_ins = ",".join(f"{p.ins_system}|{p.ins}" for p in people.values())
    desk = as_user("accueil.martin")  # the middleware has no Patient scope: the desk searches them
    theirs = {o["patient"] for o in orders.values()}
    assert ids(search(desk, "Patient", _id=both_ids)) == theirs
    assert ids(search(desk, "Patient", identifier=both_ins, _count=50)) >= theirs  # and the lab's own files
    both = search(lab_middleware, "ServiceRequest", requisition=",".join(o["spec"].requisition for o in orders.values()))
    assert len(ids(both)) == 2

    leaks = {}
    for who, other in (("dupont", "lefevre"), ("lefevre", "dupont")):
        api = as_user(f"patient.{who}")
        trail = search(api, "AuditEvent", patient=orders[who]["patient"], _sort="-date", _count=200)
        text = str(trail)
        browser, _ = log_in(web_root, f"patient.{who}")
        page = browser.get(f"{web_root}/patient/acces").text
        by_lab = [e for e in trail.get("entry", [])
                  if "750100001" in str(e["resource"]["agent"][0]["who"])]
        foreign = (orders[other]["patient"].split("/")[1], people[other].ins)
        leaks[who] = {"trail shows the lab": bool(by_lab),
                      "other patient in FHIR trail": [f for f in foreign if f in text],
                      "other patient in web trail": [f for f in foreign if f in page]}
    clean = {"trail shows the lab": True, "other patient in FHIR trail": [], "other patient in web trail": []}
    assert leaks == {"dupont": clean, "lefevre": clean}


# --- 8. every stored resource can be read and put back unchanged --------------------------

@pytest.fixture(scope="module")
def chain(fhir, lab_middleware, desk, biologist, web_root, rng_module) -> dict[str, Any]:
    """One prescription through its whole life: sent, imported, sampled, resulted, reported,
    discussed. Type -> one reference of each kind, by who owns it."""
    spec = PrescriptionSpec(random_person(rng_module), LAMBERT, number_from(rng_module, "ESC"), [GLUCOSE],
                            lab=LAB_IDENTIFIER)
    made = sent(fhir, spec)
    task_id = imported(fhir, desk, web_root, spec)
    glucose = prescribed(fhir, task_id, GLUCOSE[0])
    sugar = posted(lab_middleware, result(glucose, GLUCOSE[0], 5.5, "mmol/L"))
    decide(biologist, web_root, task_id, "biologique", [sugar])
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    issued = follow(biologist, biologist.post(str(page.url.join(f"/reception/prescriptions/{task_id}/compte-rendu")),
                                              data={"_csrf_token": csrf_token(page)}))
    assert issued.status_code == 200, issued.text[-2000:]
    message = lab_middleware.post("Communication", json={
        "resourceType": "Communication", "status": "completed", "partOf": [{"reference": f"Task/{task_id}"}],
        "payload": [{"contentString": "Prélèvement reçu."}]})
    assert message.status_code == 201, message.text
    task = fhir.get(f"Task/{task_id}").json()
    [document] = documents(fhir, task_id)
    report = next(o["valueReference"]["reference"] for o in task["output"]
                  if o["valueReference"]["reference"].startswith("DiagnosticReport/"))
    specimen = search(lab_middleware, "Specimen", request=glucose["id"])["entry"][0]["resource"]["id"]
    role = fhir.get(glucose["requester"]["reference"]).json()
    return {"prescriber": {"Patient": made["patient"], "ServiceRequest": made["requests"][0],
                           "Observation": made["context"][0], "Practitioner": role["practitioner"]["reference"],
                           "PractitionerRole": glucose["requester"]["reference"],
                           "Organization": role["organization"]["reference"]},
            "lab": {"Task": f"Task/{task_id}", "Specimen": f"Specimen/{specimen}", "Observation": f"Observation/{sugar}",
                    "DiagnosticReport": report, "DocumentReference": f"DocumentReference/{document['id']}",
                    "Communication": f"Communication/{message.json()['id']}",
                    "Binary": document["content"][0]["attachment"]["url"],
                    "Patient": next(i["valueReference"]["reference"] for i in task["input"])}}


# (who, whose resources, type, expected status of putting it back as read)
ROUND_TRIPS = [
    *[("practice software", "prescriber", t, 200) for t in
      ("Patient", "ServiceRequest", "Observation", "Practitioner", "PractitionerRole", "Organization")],
    *[("practice software", "lab", t, 403) for t in ("Task", "Specimen", "DiagnosticReport", "Binary")],
    *[("lab middleware", "lab", t, 200) for t in
      ("Task", "Specimen", "Observation", "DiagnosticReport", "DocumentReference", "Communication")],
    *[("lab middleware", "lab", t, 403) for t in ("Patient", "Binary")],
    ("lab middleware", "prescriber", "ServiceRequest", 403),
    ("reception", "lab", "Patient", 200),
    ("reception", "lab", "Task", 200),
    ("biologist", "lab", "Observation", 200),
]


@pytest.mark.parametrize("who,whose,resource_type,expected", ROUND_TRIPS,
                         ids=[f"{w}-{t}-of-{o}" for w, o, t, _ in ROUND_TRIPS])
def test_a_stored_resource_read_and_put_back_unchanged_is_accepted(
        chain, fhir, lab_middleware, as_user, who, whose, resource_type, expected) -> None:
    """Put back by an actor who may write it: 200; by one who may not: 403, never a 400."""
    people = {"reception": "accueil.martin", "biologist": "bio.durand"}
    api = {"practice software": fhir, "lab middleware": lab_middleware}.get(who) or as_user(people[who])
    # Read by the writer itself, or (for a type it may not write) by a reader on the owner's side.
    reader = api if expected == 200 else (fhir if whose == "prescriber" else as_user("bio.durand"))
    ref = chain[whose][resource_type]
    read = reader.get(ref, headers={"Accept": "application/fhir+json"})
    assert read.status_code == 200, read.text[:300]
    response = api.put(ref, json=read.json())
    assert response.status_code == expected, response.text[:400]
    if expected == 200:
        strip = lambda r: {k: v for k, v in r.items() if k != "meta"}  # noqa: E731
        assert strip(api.get(ref).json()) == strip(read.json())
