"""An independent FHIR client (fhirpy) uses bilan as a prescriber's software would."""

import httpx
from fhirpy import SyncFHIRClient

from bilan.demo.prescriptions import bundle
from bilan.prescription.ins import INS_NIR_TEST


def test_fhirpy_posts_a_prescription_and_finds_it(server: str, spec) -> None:
    client = SyncFHIRClient(server, extra_headers={"Accept": "application/fhir+json"})

    response = httpx.post(server, json=bundle(spec), headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200
    patient = client.resources("Patient").search(identifier=f"{INS_NIR_TEST}|{spec.patient.ins}").first()
    requests = client.resources("ServiceRequest").search(
        requisition=spec.requisition, patient=patient.id).fetch_all()

    assert patient["birthDate"] == spec.patient.birth.isoformat()
    assert sorted(r["code"]["coding"][0]["code"] for r in requests) == sorted(c for c, _ in spec.exams)
    assert client.resources("ServiceRequest").search(requisition=spec.requisition).count() == len(spec.exams)


def test_fhirpy_creates_updates_and_reads_back(server: str, spec) -> None:
    client = SyncFHIRClient(server)
    practitioner = client.resource("Practitioner", identifier=[
        {"system": "https://rpps.esante.gouv.fr", "value": spec.prescriber.rpps}],
        name=[{"family": spec.prescriber.family}])
    practitioner.save()
    practitioner["name"][0]["given"] = ["Anne"]
    practitioner.save()

    fetched = client.reference("Practitioner", practitioner.id).to_resource()
    assert fetched["name"][0]["given"] == ["Anne"]
    assert fetched["meta"]["versionId"] == "2"
