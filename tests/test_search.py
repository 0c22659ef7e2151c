"""Search, as the lab and the prescriber's software use it to find prescriptions."""

from datetime import datetime, timezone

import httpx
import pytest

from bilan.demo.prescriptions import PrescriptionSpec, bundle
from bilan.prescription.ins import INS_NIR_TEST
from bilan.prescription.practitioners import RPPS
from tests.helpers import ids, locations, post_bundle, prescription_spec, search


@pytest.fixture
def stored(fhir: httpx.Client, rng) -> tuple[PrescriptionSpec, list[str]]:
    spec = prescription_spec(rng)
    spec.authored = datetime(2031, 2, rng.randint(1, 28), 10, 0, tzinfo=timezone.utc)
    spec.patient.family = f"Éléonore-{rng.randint(0, 10**9)}"
    response = post_bundle(fhir, bundle(spec))
    assert response.status_code == 200, response.text
    return spec, locations(response)


def _requests(locs: list[str]) -> set[str]:
    return {loc for loc in locs if loc.startswith("ServiceRequest/")}


def test_by_prescription_number(fhir, stored) -> None:
    spec, locs = stored
    found = search(fhir, "ServiceRequest", requisition=spec.requisition)
    assert found["total"] == len(spec.exams)
    assert ids(found) == _requests(locs)
    system_and_value = search(fhir, "ServiceRequest",
                              requisition=f"https://bilan.sante.fr/fhir/sid/prescription|{spec.requisition}")
    assert system_and_value["total"] == len(spec.exams)


def test_by_patient_reference_and_by_patient_ins(fhir, stored) -> None:
    spec, locs = stored
    patient = locs[0]
    ins = f"{INS_NIR_TEST}|{spec.patient.ins}"
    for params in ({"patient": patient}, {"patient": patient.split("/")[1]}, {"subject": patient},
                   {"subject:Patient.identifier": ins}, {"patient.identifier": ins}):
        assert ids(search(fhir, "ServiceRequest", **params)) == _requests(locs), params


def test_by_requester_status_code_and_date(fhir, stored) -> None:
    spec, locs = stored
    request = fhir.get(sorted(_requests(locs))[0]).json()
    requester = request["requester"]["reference"]
    code = request["code"]["coding"][0]["code"]
    day = spec.authored.date().isoformat()

    assert ids(search(fhir, "ServiceRequest", requester=requester)) == _requests(locs)
    assert request["id"] in {i.split("/")[1] for i in ids(search(
        fhir, "ServiceRequest", requester=requester, code=f"http://loinc.org|{code}"))}
    assert search(fhir, "ServiceRequest", requester=requester, code="http://loinc.org|",
                  status="active")["total"] == len(spec.exams)
    assert search(fhir, "ServiceRequest", requester=requester, status="completed")["total"] == 0
    assert search(fhir, "ServiceRequest", requester=requester, authored=day)["total"] == len(spec.exams)
    assert search(fhir, "ServiceRequest", requester=requester, authored=f"ge{day}",
                  **{"_count": 1})["total"] == len(spec.exams)
    assert search(fhir, "ServiceRequest", requester=requester, authored="lt2031-02-01")["total"] == 0
    between = fhir.get("ServiceRequest", params=[("requester", requester), ("authored", "ge2031-02"),
                                                 ("authored", "le2031-02")]).json()
    assert between["total"] == len(spec.exams)


def test_patient_by_identifier_name_and_birthdate(fhir, stored) -> None:
    spec, locs = stored
    patient = locs[0]
    folded = spec.patient.family.lower().replace("é", "e")[:8]
    assert ids(search(fhir, "Patient", identifier=f"{INS_NIR_TEST}|{spec.patient.ins}")) == {patient}
    assert patient in ids(search(fhir, "Patient", family=folded))
    assert ids(search(fhir, "Patient", family=folded, birthdate=spec.patient.birth.isoformat())) == {patient}
    assert search(fhir, "Patient", family=folded, birthdate="1800-01-01")["total"] == 0
    assert ids(search(fhir, "Patient", **{"family:exact": spec.patient.family})) == {patient}
    assert search(fhir, "Patient", **{"family:exact": folded})["total"] == 0


def test_practitioner_by_rpps(fhir, stored) -> None:
    spec, _ = stored
    found = search(fhir, "Practitioner", identifier=f"{RPPS}|{spec.prescriber.rpps}")
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["identifier"][0]["value"] == spec.prescriber.rpps


def test_paging_with_total_and_links(fhir, stored) -> None:
    spec, locs = stored
    seen: set[str] = set()
    page = search(fhir, "ServiceRequest", requisition=spec.requisition, _count=2)
    pages = 0
    while True:
        pages += 1
        assert page["total"] == len(spec.exams)
        assert len(page.get("entry", [])) <= 2
        seen |= ids(page)
        links = {link["relation"]: link["url"] for link in page["link"]}
        if "next" not in links:
            break
        page = fhir.get(links["next"]).json()
    assert seen == _requests(locs)
    assert pages == (len(spec.exams) + 1) // 2
    assert "previous" in links
    count_only = search(fhir, "ServiceRequest", requisition=spec.requisition, _summary="count")
    assert count_only["total"] == len(spec.exams) and "entry" not in count_only


def test_include_and_revinclude(fhir, stored) -> None:
    spec, locs = stored
    with_patient = search(fhir, "ServiceRequest", requisition=spec.requisition,
                          _include=["ServiceRequest:patient", "ServiceRequest:requester"])
    assert ids(with_patient, "include") >= {locs[0]}
    assert any(i.startswith("PractitionerRole/") for i in ids(with_patient, "include"))
    assert with_patient["total"] == len(spec.exams)  # included resources are not counted

    patient_with_requests = search(fhir, "Patient", _id=locs[0].split("/")[1],
                                   _revinclude="ServiceRequest:patient")
    assert ids(patient_with_requests) == {locs[0]}
    assert ids(patient_with_requests, "include") == _requests(locs)


def test_sort_by_authored(fhir, rng) -> None:
    base = prescription_spec(rng)
    dates = [datetime(2032, 3, day, tzinfo=timezone.utc) for day in (5, 1, 9)]
    for number, when in enumerate(dates):
        spec = prescription_spec(rng)
        spec.patient, spec.prescriber, spec.authored = base.patient, base.prescriber, when
        spec.requisition = f"{base.requisition}-{number}"
        spec.exams = spec.exams[:1]
        assert post_bundle(fhir, bundle(spec)).status_code == 200
    patient = search(fhir, "Patient", identifier=f"{INS_NIR_TEST}|{base.patient.ins}")["entry"][0]["resource"]
    found = search(fhir, "ServiceRequest", patient=f"Patient/{patient['id']}", _sort="-authored")
    authored = [e["resource"]["authoredOn"][:10] for e in found["entry"]]
    assert authored == ["2032-03-09", "2032-03-05", "2032-03-01"]
