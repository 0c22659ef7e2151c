"""Results typed by hand in the lab's pages: per exam, from the catalogue's unit and reference
range, through the same guard as the analysers' results."""

import re

import httpx

from bilan.demo.prescriptions import EXAMS
from tests.helpers import search
from tests.orders import adapt, addressed, collected, imported, prescribed, send, task_of
from tests.results import entry_path, line, patient_aged, results_of
from tests.web import submit

NFS, GLUCOSE, FERRITIN = EXAMS[0], EXAMS[1], EXAMS[9]
IGA = ("2458-8", "Immunoglobulines A")  # not in the lab's catalogue
LEUKOCYTES, HEMOGLOBIN, PLATELETS = "6690-2", "718-7", "777-3"
CRP = "1988-5"


def field(page: httpx.Response, name: str) -> str | None:
    """The value of the page's input `name`, None when the page has no such input."""
    found = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*value="([^"]*)"', page.text)
    return found.group(1) if found else None


def results_row(page: httpx.Response, label: str) -> str:
    """The results page's row of an analyte."""
    return next(row for row in page.text.split("<tr") if f">{label}</label>" in row)


def test_typed_results_start_from_the_catalogue_and_get_their_flag(fhir, biologist, desk, web_root, rng) -> None:
    woman = patient_aged(rng, "female", 40)  # haemoglobin's range is by sex and age (12 - 16 g/dL for her)
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[NFS, GLUCOSE, IGA], patient=woman))
    nfs, glucose = prescribed(fhir, task_id, NFS[0]), prescribed(fhir, task_id, GLUCOSE[0])
    submit(desk, desk.get(f"{web_root}/reception/prescriptions/{task_id}"),
           f"/reception/prescriptions/{task_id}/prelevement", {})

    page = biologist.get(f"{web_root}{entry_path(task_id)}")
    assert page.status_code == 200, page.text
    key = f"{glucose['id']}-{GLUCOSE[0]}"
    assert [field(page, f"{name}-{key}") for name in ("unite", "bas", "haut")] == ["mmol/L", "3,9", "6,1"]
    assert field(page, f"unite-{nfs['id']}-{LEUKOCYTES}") == "10*9/L"  # the panel, one line per result
    assert field(page, f"bas-{nfs['id']}-{HEMOGLOBIN}") == "12"
    assert f'<label for="valeur-{key}">Glycémie à jeun (mmol/L)</label>' in page.text
    assert "Immunoglobulines A" in page.text and "À transmettre" in page.text

    typed = {**line(glucose, GLUCOSE[0], "7,2", "mmol/L", "3,9", "6,1"),
             **line(nfs, LEUKOCYTES, "3,1", "10*9/L", "5", "10"),
             **line(nfs, HEMOGLOBIN, "13", "g/dL", "11,5", "14,5")}
    results = submit(biologist, page, entry_path(task_id), typed)
    assert results.url.path == f"/reception/prescriptions/{task_id}/resultats"
    glycemia, leukocytes = results_row(results, "Glycémie à jeun"), results_row(results, "Leucocytes")
    assert "7,2 mmol/L" in glycemia and ">H</span>" in glycemia
    assert "3,1 G/L" in leukocytes and ">L</span>" in leukocytes  # typed in UCUM, shown as a lab prints it
    assert ">N</span>" in results_row(results, "Hémoglobine")

    [stored] = results_of(fhir, glucose)
    task = fhir.get(f"Task/{task_id}").json()
    lab_file = next(i["valueReference"]["reference"] for i in task["input"])
    assert stored["status"] == "registered" and stored["valueQuantity"] == {
        "value": 7.2, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    assert stored["subject"]["reference"] == lab_file and stored["performer"] == [task["owner"]]
    assert stored["code"]["coding"][0]["code"] == GLUCOSE[0] and stored["code"]["text"] == "Glycémie à jeun"
    specimen = fhir.get(stored["specimen"]["reference"]).json()
    assert "fluorure" in specimen["container"][0]["type"]["text"]
    assert stored["effectiveDateTime"] == specimen["collection"]["collectedDateTime"]
    assert stored["referenceRange"][0]["low"]["value"] == 3.9

    again = biologist.get(f"{web_root}{entry_path(task_id)}")
    assert field(again, f"valeur-{key}") == "7,2"  # still open: shown, may be corrected
    submit(biologist, again, entry_path(task_id),
           {**typed, **line(glucose, GLUCOSE[0], "7,4", "mmol/L", "3,9", "6,1")})
    [corrected] = results_of(fhir, glucose)
    assert corrected["id"] == stored["id"] and corrected["meta"]["versionId"] == "2"
    assert corrected["valueQuantity"]["value"] == 7.4
    assert [r["meta"]["versionId"] for r in results_of(fhir, nfs)] == ["1", "1"]  # unchanged lines untouched

    submit(biologist, again, f"/reception/prescriptions/{task_id}/resultats",
           {"action": "biologique", "resultats": stored["id"]})
    validated = biologist.get(f"{web_root}{entry_path(task_id)}")
    assert field(validated, f"valeur-{key}") is None and "Validé biologiquement" in validated.text


def test_a_refused_line_stores_nothing_and_says_why_next_to_its_field(fhir, biologist, desk, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[NFS, GLUCOSE]))
    collected(desk, web_root, task_id)
    nfs, glucose = prescribed(fhir, task_id, NFS[0]), prescribed(fhir, task_id, GLUCOSE[0])
    page = biologist.get(f"{web_root}{entry_path(task_id)}")
    good = line(glucose, GLUCOSE[0], "5,0", "mmol/L", "3,9", "6,1")

    for typed, name, message in (
            (line(nfs, PLATELETS, "beaucoup", "10*9/L"), f"valeur-{nfs['id']}-{PLATELETS}", "Saisissez un nombre"),
            (line(nfs, PLATELETS, "250", "10^9/L"), f"unite-{nfs['id']}-{PLATELETS}", "écrivez « 10*9/L »"),
            (line(nfs, PLATELETS, "250", "mmol/L"), f"unite-{nfs['id']}-{PLATELETS}", "ne se mesure pas en mmol/L"),
            (line(nfs, PLATELETS, "250", "10*9/L", "400", "150"), f"bas-{nfs['id']}-{PLATELETS}", "basse dépasse")):
        refused = submit(biologist, page, entry_path(task_id), {**good, **typed})
        assert refused.status_code == 422, refused.text
        error = re.search(rf'id="{re.escape(name)}-erreur"[^>]*>([^<]*)<', refused.text)
        assert error and message in error.group(1), (message, refused.text)
        assert f'aria-describedby="{name}-erreur"' in refused.text
        assert field(refused, name) == typed[name]  # what was typed is kept
        assert field(refused, f"valeur-{glucose['id']}-{GLUCOSE[0]}") == "5,0"
    assert results_of(fhir, glucose) == [] and results_of(fhir, nfs) == []

    nothing = submit(biologist, page, entry_path(task_id), {})
    assert nothing.status_code == 422 and "rien n&#39;a été enregistré" in nothing.text


def test_the_exams_are_those_in_effect_after_the_biologists_adaptation(
        fhir, lab_middleware, biologist, desk, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE, FERRITIN]))
    collected(desk, web_root, task_id)
    ferritin = prescribed(fhir, task_id, FERRITIN[0])
    adapt(biologist, web_root, task_id, change="replace", original=f"ServiceRequest/{ferritin['id']}",
          code="CRP", reason="clinical-context", proceed="oui")

    page = biologist.get(f"{web_root}{entry_path(task_id)}")
    assert ">Protéine C réactive (CRP)" in page.text and "Ferritine" not in page.text
    [crp] = [e["resource"] for e in
             search(fhir, "ServiceRequest", **{"based-on": f"ServiceRequest/{ferritin['id']}"})["entry"]]
    submit(biologist, page, entry_path(task_id), line(crp, CRP, "12", "mg/L", "", "5"))
    [stored] = results_of(lab_middleware, crp)
    assert stored["interpretation"][0]["coding"][0]["code"] == "H" and stored["valueQuantity"]["value"] == 12


def test_only_the_labs_result_writers_type_results_of_an_open_order(
        fhir, biologist, desk, doctor, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    glucose = prescribed(fhir, task_id, GLUCOSE[0])
    page = biologist.get(f"{web_root}{entry_path(task_id)}")

    assert doctor.get(f"{web_root}{entry_path(task_id)}").status_code == 403
    home = doctor.get(f"{web_root}/")
    assert submit(doctor, home, entry_path(task_id), line(glucose, GLUCOSE[0], "5", "mmol/L")).status_code == 403
    refused = desk.get(f"{web_root}{entry_path(task_id)}")  # the front desk does not write results
    assert refused.status_code == 403 and "enregistrer des résultats" in refused.text
    assert httpx.get(f"{web_root}{entry_path(task_id)}").status_code == 401
    assert results_of(fhir, glucose) == []

    elsewhere = addressed(rng, exams=[GLUCOSE], lab=("urn:oid:1.2.250.1.71.4.2.2", "1750999998"))
    fhir.post("Organization", json={"resourceType": "Organization", "name": "Autre laboratoire",
                                    "identifier": [{"system": elsewhere.lab[0], "value": elsewhere.lab[1]}]},
              headers={"If-None-Exist": f"identifier={elsewhere.lab[0]}|{elsewhere.lab[1]}"})
    send(fhir, elsewhere)
    other = biologist.get(f"{web_root}{entry_path(task_of(fhir, elsewhere.requisition)['id'])}")
    assert other.status_code == 403 and "autre laboratoire" in other.text

    waiting = addressed(rng, exams=[GLUCOSE])
    send(fhir, waiting)
    assert biologist.get(f"{web_root}{entry_path(task_of(fhir, waiting.requisition)['id'])}").status_code == 409

    submit(desk, desk.get(f"{web_root}/reception/prescriptions/{task_id}"),
           f"/reception/prescriptions/{task_id}/cloture", {"statut": "cancelled", "motif": "Patient absent"})
    closed = submit(biologist, page, entry_path(task_id), line(glucose, GLUCOSE[0], "5", "mmol/L"))
    assert closed.status_code == 409 and results_of(fhir, glucose) == []



def test_results_wait_for_the_tubes_to_be_collected_or_for_a_reason(fhir, desk, biologist, web_root, rng) -> None:
    task_id = imported(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE]))
    glucose = prescribed(fhir, task_id, GLUCOSE[0])
    page = biologist.get(f"{web_root}{entry_path(task_id)}")
    assert "Motif de saisie sans prélèvement enregistré" in page.text

    refused = submit(biologist, page, entry_path(task_id), line(glucose, GLUCOSE[0], "5,2", "mmol/L"))
    assert refused.status_code == 422
    assert re.search(rf'id="valeur-{glucose["id"]}-{GLUCOSE[0]}-erreur"[^>]*>Prélèvement non enregistré', refused.text)
    assert field(refused, f"valeur-{glucose['id']}-{GLUCOSE[0]}") == "5,2"  # what was typed is kept
    assert results_of(fhir, glucose) == []

    kept = submit(biologist, page, entry_path(task_id), {**line(glucose, GLUCOSE[0], "5,2", "mmol/L"),
                                                         "motif_sans_prelevement": "Tube apporté par l'infirmière"})
    assert kept.url.path.endswith("/resultats"), kept.text
    [stored] = results_of(fhir, glucose)
    assert stored["note"][0]["text"] == "Saisi sans prélèvement enregistré : Tube apporté par l'infirmière"
