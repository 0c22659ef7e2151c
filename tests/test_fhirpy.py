"""An independent FHIR client (fhirpy) uses bilan as a prescriber's software would."""

from fhirpy import SyncFHIRClient

from bilan.auth.client_credentials import request_token
from bilan.demo.prescriptions import bundle, make_rpps
from bilan.prescription.ins import INS_NIR_TEST
from tests.identity import PRACTICE_SCOPES


def _client(server: str, issuer: str) -> SyncFHIRClient:
    token = request_token(issuer, "practice-software-demo", PRACTICE_SCOPES)
    return SyncFHIRClient(server, authorization=f"Bearer {token}",
                          extra_headers={"Accept": "application/fhir+json"})


def test_fhirpy_posts_a_prescription_and_finds_it(server: str, issuer: str, spec, fhir) -> None:
    client = _client(server, issuer)

    response = fhir.post("", json=bundle(spec))
    assert response.status_code == 200
    patient = client.resources("Patient").search(identifier=f"{INS_NIR_TEST}|{spec.patient.ins}").first()
    requests = client.resources("ServiceRequest").search(
        requisition=spec.requisition, patient=patient.id).fetch_all()

    assert patient["birthDate"] == spec.patient.birth.isoformat()
    assert sorted(r["code"]["coding"][0]["code"] for r in requests) == sorted(c for c, _ in spec.exams)
    assert client.resources("ServiceRequest").search(requisition=spec.requisition).count() == len(spec.exams)


def test_fhirpy_creates_updates_and_reads_back(server: str, issuer: str, rng) -> None:
    client = _client(server, issuer)
    practitioner = client.resource("Practitioner", identifier=[
        {"system": "https://rpps.esante.gouv.fr", "value": make_rpps(rng)}],
        name=[{"family": "Fontaine"}])
    practitioner.save()
    practitioner["name"][0]["given"] = ["Anne"]
    practitioner.save()

    fetched = client.reference("Practitioner", practitioner.id).to_resource()
    assert fetched["name"][0]["given"] == ["Anne"]
    assert fetched["meta"]["versionId"] == "2"
