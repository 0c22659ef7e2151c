"""The worklist row of a prescription never refuses it: what the row shows is cut to fit
(PostgreSQL enforces the column sizes that SQLite ignores). Any number of the lab's, scanned,
opens its order."""

from tests.helpers import search
from tests.orders import addressed, imported, listed, send, task_of, worklist
from tests.web import follow


def test_a_patient_name_longer_than_the_worklist_shows_is_received_and_listed(
        fhir, desk, web_root, rng) -> None:
    spec = addressed(rng)
    spec.patient.family = ("Delacroix-" + "Montmorency" * 30)[:300]
    assert len(spec.patient.family) == 300
    send(fhir, spec)  # 200, not a 500

    task = task_of(fhir, spec.requisition)
    patient = fhir.get(task["for"]["reference"]).json()
    assert patient["name"][0]["family"] == spec.patient.family  # stored whole
    for typed in (spec.requisition, "delacroix", f"montmorency {spec.patient.given[0]}"):
        page = worklist(desk, web_root, typed)
        assert page.status_code == 200 and listed(spec.requisition, page), typed
    assert "DELACROIX-MONTMORENCY" in worklist(desk, web_root, spec.requisition).text
    assert search(fhir, "ServiceRequest", requisition=spec.requisition)["total"] == len(spec.exams)


def test_any_number_of_the_labs_opens_its_order_whatever_the_filter(fhir, desk, web_root, rng) -> None:
    spec = addressed(rng)
    task_id = imported(fhir, desk, web_root, spec)
    accession = next(i["value"] for i in fhir.get(f"Task/{task_id}").json()["identifier"])
    for scanned in (accession, f"{accession}-01", spec.requisition):  # the order, a tube, the prescription
        page = follow(desk, desk.get(f"{web_root}/reception", params={"q": scanned, "statut": "received"}))
        assert page.url.path == f"/reception/prescriptions/{task_id}", scanned
    unknown = follow(desk, desk.get(f"{web_root}/reception", params={"q": "991231-9999", "statut": "received"}))
    assert unknown.url.path == "/reception" and "Aucune prescription ne correspond" in unknown.text
