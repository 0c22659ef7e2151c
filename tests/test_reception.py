"""The lab's front desk: worklist, identity check, import as the lab's order, samples, and the
Task the prescriber's software follows."""

import html
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pypdfium2
import zxingcpp

from bilan.demo.load import LAB_FINESS
from bilan.demo.prescriptions import EXAMS, patient_resource, random_person
from bilan.prescription.identity import LAB_PATIENT
from tests.helpers import search
from tests.orders import addressed, imported_for, listed, open_by_number, prescribed, send, task_of, worklist
from tests.results import GLUCOSE, decide, issue, posted, result
from tests.web import log_in, submit

CATALOGUE_LABELS = {"58410-2": "Numération formule sanguine (hémogramme)", "40193-5": "Glycémie à jeun",
                    "57698-3": "Bilan lipidique (EAL)", "24326-1": "Ionogramme sanguin",
                    "2458-8": "Immunoglobulines A"}  # not in the catalogue: the prescription's name
ACCESSION = re.compile(r"Dossier de prélèvement n° (\d{6}-\d{4})")


def test_the_worklist_finds_a_prescription_by_what_the_desk_types(fhir, desk, web_root, rng) -> None:
    spec = addressed(rng, urgent={EXAMS[0][0]}, exams=EXAMS[:3])
    spec.patient.family = "Lefèvre-Hébert"
    send(fhir, spec)
    person, number = spec.patient, spec.requisition
    birth = person.birth.strftime("%d/%m/%Y")

    for typed in (number, number[:7].lower(), "lefevre", "HEB", f"lefèvre {person.given[0][:2]}",
                  birth, person.ins, "10003456786", f"{person.given[0]} {birth}"):
        page = worklist(desk, web_root, typed)
        assert page.status_code == 200 and listed(number, page), typed
        assert "<html" not in page.text  # htmx gets the table alone
    row = worklist(desk, web_root, number).text
    assert "Urgent" in row and "LEFÈVRE-HÉBERT" in row and "Dr " in row
    assert not listed(number, worklist(desk, web_root, f"lefevre {birth[:2]}/13"))
    # What is typed is looked for in every state; the filter narrows the list when nothing is.
    assert listed(number, worklist(desk, web_root, number, statut="imported"))
    assert not listed(number, worklist(desk, web_root, "", statut="imported"))
    assert listed(number, worklist(desk, web_root, "", statut="received"))


def test_the_desk_sees_only_its_labs_prescriptions_and_unaddressed_ones_by_number(fhir, desk, web_root, rng) -> None:
    elsewhere = addressed(rng, lab=("urn:oid:1.2.250.1.71.4.2.2", "1750999998"))
    unaddressed = addressed(rng, lab=None)
    fhir.post("Organization", json={"resourceType": "Organization", "name": "Autre laboratoire",
                                    "identifier": [{"system": elsewhere.lab[0], "value": elsewhere.lab[1]}]},
              headers={"If-None-Exist": f"identifier={elsewhere.lab[0]}|{elsewhere.lab[1]}"})
    send(fhir, elsewhere)
    send(fhir, unaddressed)

    assert not listed(elsewhere.requisition, worklist(desk, web_root, elsewhere.requisition))
    assert not listed(unaddressed.requisition, worklist(desk, web_root, unaddressed.patient.family))
    assert listed(unaddressed.requisition, worklist(desk, web_root, unaddressed.requisition))
    page = open_by_number(desk, web_root, unaddressed.requisition)
    imported = submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    assert ACCESSION.search(imported.text)
    # Imported, it is the lab's: the lab's software now sees the prescribed exams too.
    assert listed(unaddressed.requisition, worklist(desk, web_root, unaddressed.patient.family, "imported"))
    assert listed(unaddressed.requisition, worklist(desk, web_root, unaddressed.patient.family, "received"))
    # Scanned again once imported, the number opens it (a search looks in every state).
    assert ACCESSION.search(open_by_number(desk, web_root, unaddressed.requisition).text)


def test_import_makes_the_labs_order_and_the_prescriber_follows_it(fhir, lab_middleware, desk, web_root, rng) -> None:
    spec = addressed(rng, exams=[e for e in EXAMS if e[0] in ("58410-2", "40193-5", "57698-3", "24326-1")]
                     + [("2458-8", "Immunoglobulines A")])
    send(fhir, spec)
    assert task_of(fhir, spec.requisition)["status"] == "requested"

    page = open_by_number(desk, web_root, spec.requisition)
    assert "Identité qualifiée" in page.text and "À transmettre" in page.text
    assert "Aucun dossier du laboratoire ne porte cet INS" in page.text
    imported = submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    accession = ACCESSION.search(imported.text).group(1)
    assert "Immunoglobulines A" in imported.text.split("Examens à transmettre")[1]

    task = task_of(fhir, spec.requisition)
    assert task["status"] == "accepted" and task["identifier"][0]["value"] == accession
    assert task["owner"]["reference"].startswith("Organization/")
    requests = [b["reference"] for b in task["basedOn"]]
    assert len(requests) == 5
    assert search(fhir, "Task", **{"based-on": requests[0]})["entry"][0]["resource"]["id"] == task["id"]
    versions = fhir.get(f"Task/{task['id']}/_history").json()
    assert [e["resource"]["status"] for e in versions["entry"]] == ["accepted", "requested"]

    specimens = search(lab_middleware, "Specimen", request=",".join(requests))["entry"]
    # IgA, which the lab does not perform, has a tube of its own: it travels to the partner lab.
    [sent] = [s["resource"] for s in specimens if s["resource"].get("extension")]
    assert sent["container"][0]["type"]["text"] == "Tube sec avec gel (bouchon jaune)"
    assert "Immunoglobulines A" in sent["note"][0]["text"]
    tubes = {s["resource"]["container"][0]["type"]["text"]: s["resource"] for s in specimens
             if s["resource"] is not sent and not s["resource"].get("extension")}
    assert set(tubes) == {"Tube EDTA (bouchon violet)", "Tube fluorure (bouchon gris)",
                          "Tube sec avec gel (bouchon jaune)"}  # lipids and ions share one tube
    tubes["sent"] = sent
    assert all(t["accessionIdentifier"]["value"].startswith(accession + "-") for t in tubes.values())
    lab_file = next(i["valueReference"]["reference"] for i in task["input"])
    assert {t["subject"]["reference"] for t in tubes.values()} == {lab_file}

    pdf = desk.get(f"{web_root}{page.url.path}/etiquettes.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert sorted(_barcodes(pdf.content)) == sorted(t["accessionIdentifier"]["value"] for t in tubes.values())

    # A tube's exams are the requests it was drawn for, not its note (text for people): with
    # the notes rewritten, the sheet and the labels still list each tube's own exams.
    expected = {t["accessionIdentifier"]["value"]: [CATALOGUE_LABELS[c] for c in _requested(lab_middleware, t)]
                for t in tubes.values()}
    assert sorted(map(sorted, expected.values())) == [
        ["Bilan lipidique (EAL)", "Ionogramme sanguin"], ["Glycémie à jeun"], ["Immunoglobulines A"],
        ["Numération formule sanguine (hémogramme)"]]
    for specimen in specimens:
        rewritten = {**specimen["resource"], "note": [{"text": "Hémolysé ?"}]}
        put = lab_middleware.put(f"Specimen/{rewritten['id']}", json=rewritten)
        assert put.status_code == 200, put.text
    sheet = html.unescape(desk.get(f"{web_root}{page.url.path}/fiche").text)
    for barcode, labels in expected.items():
        assert re.search(rf"{barcode}</td><td>[^<]*</td><td>{re.escape(', '.join(labels))}</td>", sheet), barcode
    pdf = desk.get(f"{web_root}{page.url.path}/etiquettes.pdf")
    printed = {lines[1]: lines[-1] for lines in _label_lines(pdf.content)}  # barcode: exams (cut with …)
    assert set(printed) == set(expected)
    assert all(", ".join(expected[barcode]).startswith(line.removesuffix("…")) for barcode, line in printed.items())

    collected = submit(desk, imported, page.url.path + "/prelevement", {})
    assert "Prélèvements effectués" in collected.text
    assert task_of(fhir, spec.requisition)["status"] == "in-progress"
    assert all(s["resource"]["status"] == "available" and s["resource"]["collection"]["collectedDateTime"]
               for s in search(lab_middleware, "Specimen", request=requests[0])["entry"])


def test_importing_twice_at_once_makes_one_order(fhir, lab_middleware, as_user, web_root, server, rng) -> None:
    spec = addressed(rng)
    send(fhir, spec)
    agents = [log_in(web_root, name)[0] for name in ("accueil.martin", "bio.durand")]
    pages = [open_by_number(agent, web_root, spec.requisition) for agent in agents]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda ap: submit(ap[0], ap[1], ap[1].url.path + "/import", {"dossier": "new"}),
                                zip(agents, pages)))

    assert [ACCESSION.search(r.text).group(1) for r in results] == [ACCESSION.search(results[0].text).group(1)] * 2
    task = task_of(fhir, spec.requisition)
    assert fhir.get(f"Task/{task['id']}/_history").json()["total"] == 2  # requested, accepted: once
    requests = ",".join(b["reference"] for b in task["basedOn"])
    specimens = search(lab_middleware, "Specimen", request=requests)["entry"]
    assert len({s["resource"]["accessionIdentifier"]["value"] for s in specimens}) == len(specimens) > 0
    files = search(as_user("bio.durand"), "Patient", identifier=spec.patient.ins)
    assert len([p for p in files["entry"] if "lab-patient" in str(p["resource"]["identifier"])]) == 1


def test_identity_check_never_merges_and_keeps_a_provisional_identity(fhir, desk, web_root, rng) -> None:
    first = addressed(rng)
    send(fhir, first)
    page = open_by_number(desk, web_root, first.requisition)
    imported = submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    file_number = re.search(r"n° (P\d{7})", imported.text).group(1)

    second = addressed(rng, patient=first.patient)
    send(fhir, second)
    page = open_by_number(desk, web_root, second.requisition)
    assert f"Rattacher au dossier n° {file_number}" in page.text and "Traits identiques" in page.text
    refused = submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    assert refused.status_code == 409
    assert re.search(rf'id="dossier-erreur"[^>]*>Le dossier n° {file_number} porte déjà cet INS',
                     refused.text)
    chosen = re.search(r'name="dossier" value="(Patient/[^"]+)"', page.text).group(1)
    imported = submit(desk, refused, page.url.path + "/import", {"dossier": chosen})
    assert f"n° {file_number}" in imported.text.split('id="commande-titre"')[1]

    provisional = addressed(rng)
    provisional.patient.status = "PROV"
    send(fhir, provisional)
    page = open_by_number(desk, web_root, provisional.requisition)
    assert "Identité provisoire" in page.text and "il restera en identité provisoire" in page.text
    imported = submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    assert "Identité provisoire" in imported.text.split('id="commande-titre"')[1]


def test_a_refusal_needs_its_reason_and_reaches_the_prescriber(fhir, desk, web_root, rng) -> None:
    spec = addressed(rng)
    send(fhir, spec)
    page = open_by_number(desk, web_root, spec.requisition)

    missing = submit(desk, page, page.url.path + "/cloture", {"statut": "rejected", "motif": " "})
    assert missing.status_code == 422 and 'id="motif-erreur"' in missing.text and "Indiquez le motif." in missing.text
    assert task_of(fhir, spec.requisition)["status"] == "requested"

    submit(desk, page, page.url.path + "/cloture", {"statut": "rejected", "motif": "Ordonnance illisible"})
    task = task_of(fhir, spec.requisition)
    assert task["status"] == "rejected" and task["statusReason"]["text"] == "Ordonnance illisible"
    again = submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    assert again.status_code == 409 and "annulée" in again.text


def test_only_lab_staff_reach_the_front_desk(web_root, server, fhir, rng) -> None:
    spec = addressed(rng)
    send(fhir, spec)
    page = f"{web_root}/reception/prescriptions/{task_of(fhir, spec.requisition)['id']}"
    assert httpx.get(f"{web_root}/reception").status_code == 401
    assert httpx.get(page).status_code == 401
    doctor, _ = log_in(web_root, "dr.lambert")
    refused = doctor.get(f"{web_root}/reception")
    assert refused.status_code == 403 and "Seul le personnel du laboratoire" in refused.text
    assert doctor.get(page).status_code == 403
    patient, _ = log_in(web_root, "patient.dupont")
    assert patient.get(page).status_code == 403


def test_a_prescription_for_no_lab_cannot_be_refused_before_its_import(fhir, desk, web_root, rng) -> None:
    spec = addressed(rng, lab=None)
    send(fhir, spec)
    page = open_by_number(desk, web_root, spec.requisition)
    assert "Refuser ou annuler" not in page.text
    refused = submit(desk, page, page.url.path + "/cloture", {"statut": "rejected", "motif": "Hors délai"})
    assert refused.status_code == 409 and "Importez-la avant de l" in refused.text
    assert task_of(fhir, spec.requisition)["status"] == "requested"


def _requested(api: httpx.Client, specimen: dict[str, Any]) -> list[str]:
    """The LOINC codes of the requests a tube was drawn for, in the tube's order."""
    return [api.get(r["reference"]).json()["code"]["coding"][0]["code"] for r in specimen["request"]]


def _label_lines(pdf: bytes) -> list[list[str]]:
    return [page.get_textpage().get_text_range().splitlines() for page in pypdfium2.PdfDocument(pdf)]


def _barcodes(pdf: bytes) -> list[str]:
    document = pypdfium2.PdfDocument(pdf)
    found = []
    for page in document:
        image = page.render(scale=10).to_pil().convert("L")
        found += [b.text for b in zxingcpp.read_barcodes(image)]
    return found


def test_an_order_imported_into_a_file_the_lab_made_through_its_api_numbers_that_file_and_reports(
        fhir: httpx.Client, lab_middleware: httpx.Client, desk: httpx.Client, biologist: httpx.Client,
        as_user: Any, web_root: str, rng) -> None:
    """The lab's biologist filed someone through the FHIR API (a report from elsewhere, say): that
    file has no number of the lab's. Importing her next prescription into it gives it one, which
    the report needs (its CDA names the patient by it): the report issues."""
    person = random_person(rng)
    lab = as_user("bio.durand")
    made = lab.post("Patient", json=patient_resource(person))
    assert made.status_code == 201, made.text
    assert not any(i["system"].startswith(LAB_PATIENT) for i in made.json()["identifier"])
    task_id = imported_for(fhir, desk, web_root, addressed(rng, exams=[GLUCOSE], patient=person))

    lab_file = lab.get(f"Patient/{made.json()['id']}").json()
    [number] = [i["value"] for i in lab_file["identifier"] if i["system"] == f"{LAB_PATIENT}/{LAB_FINESS}"]
    assert re.fullmatch(r"P\d{7}", number)
    observation = posted(lab_middleware, result(prescribed(fhir, task_id, GLUCOSE[0]), GLUCOSE[0], 5.1, "mmol/L"))
    assert decide(biologist, web_root, task_id, "biologique", [observation]).status_code == 200
    issued = issue(biologist, web_root, task_id)
    assert issued.status_code == 200 and "non conforme" not in issued.text
