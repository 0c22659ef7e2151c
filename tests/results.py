"""Results and reports: what the analysers post, what the lab types, the biologist's validation
and the issued report (its versions, its CDA and PDF, where it was sent)."""

import base64
import json
import random
import re
from datetime import date, timedelta
from typing import Any

import httpx
import pypdfium2 as pdfium

from bilan.demo.prescriptions import EXAMS, GIVEN_F, GIVEN_M, Person, make_ins
from bilan.results.issuing.documents import embedded_pdf
from tests.helpers import search
from tests.orders import addressed, imported_for, prescribed
from tests.people import DUPONT
from tests.web import submit

UCUM = "http://unitsofmeasure.org"
GLUCOSE = EXAMS[1]  # fasting glucose: catalogue range 3.9 - 6.1 mmol/L


def result(request: dict[str, Any], code: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    """An analyser's Observation of `code` for the ServiceRequest `request`."""
    return {
        "resourceType": "Observation", "status": "preliminary",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": request["subject"], "basedOn": [{"reference": f"ServiceRequest/{request['id']}"}],
        "effectiveDateTime": "2026-11-24T08:10:00+01:00",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}, **extra,
    }


def glucose_result(request: dict[str, Any], value: float, unit: str, **extra: Any) -> dict[str, Any]:
    """An analyser's fasting glucose, with its category and display and no time of its own."""
    return {
        "resourceType": "Observation", "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": GLUCOSE[0], "display": GLUCOSE[1]}]},
        "subject": request["subject"], "basedOn": [{"reference": f"ServiceRequest/{request['id']}"}],
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        **extra,
    }


def posted(lab_middleware: httpx.Client, observation: dict[str, Any]) -> str:
    response = lab_middleware.post("Observation", json=observation)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def results_of(fhir: httpx.Client, request: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in search(fhir, "Observation", **{"based-on": f"ServiceRequest/{request['id']}"})
            .get("entry", [])]


def entry_path(task_id: str) -> str:
    """The lab's page for typing results by hand."""
    return f"/reception/prescriptions/{task_id}/saisie"


def line(request: dict[str, Any], loinc: str, value: str, unit: str, low: str = "",
         high: str = "") -> dict[str, str]:
    """The fields of one typed result on the entry page."""
    key = f"{request['id']}-{loinc}"
    return {f"valeur-{key}": value, f"unite-{key}": unit, f"bas-{key}": low, f"haut-{key}": high}


def decide(biologist: httpx.Client, web_root: str, task_id: str, action: str, ids: list[str],
           **form: str) -> httpx.Response:
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    return submit(biologist, page, f"/reception/prescriptions/{task_id}/resultats",
                  {"action": action, "resultats": ids, **form})


def issue(biologist: httpx.Client, web_root: str, task_id: str, **form: Any) -> httpx.Response:
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}/resultats")
    return submit(biologist, page, f"/reception/prescriptions/{task_id}/compte-rendu", form)


def documents(api: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    """The order's issued versions, first to last."""
    found = search(api, "DocumentReference", related=f"Task/{task_id}")
    return sorted((e["resource"] for e in found.get("entry", [])),
                  key=lambda d: int(d["description"].split("version ")[1].split()[0]))


def binary(api: httpx.Client, attachment: dict[str, Any]) -> bytes:
    response = api.get(attachment["url"], headers={"Accept": attachment["contentType"]})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(attachment["contentType"])
    return response.content


def report_files(api: httpx.Client, document: dict[str, Any]) -> tuple[bytes, bytes]:
    """The CDA of an issued report's DocumentReference (its one content) and the PDF copy the
    CDA carries, as bilan's pages serve it."""
    [content] = document["content"]
    cda = binary(api, content["attachment"])
    pdf = embedded_pdf(cda)
    assert pdf is not None and pdf.startswith(b"%PDF-")
    return cda, pdf


def cda_in(body: bytes) -> bytes:
    """The CDA inside an MHD provide-document bundle, as the shared record receives it (nothing
    for the DMP's other calls: a metadata update carries no document)."""
    bundle = json.loads(body)
    return base64.b64decode(next((e["resource"]["data"] for e in bundle.get("entry", [])
                                  if e["resource"]["resourceType"] == "Binary"), ""))


def prescriber_mail(api: httpx.Client, request: dict[str, Any]) -> str:
    """The address bilan mails: the stored prescriber's (created once per RPPS)."""
    who = api.get(request["requester"]["reference"]).json()
    if "telecom" not in who:  # a PractitionerRole without its own address: the practitioner's
        who = api.get(who["practitioner"]["reference"]).json()
    return next(t["value"] for t in who["telecom"] if t["system"] == "email")


def report_of(api: httpx.Client, task_id: str) -> dict[str, Any]:
    task = api.get(f"Task/{task_id}").json()
    ref = next(o["valueReference"]["reference"] for o in task["output"]
               if o["valueReference"]["reference"].startswith("DiagnosticReport/"))
    return api.get(ref).json()


def reported(fhir, lab_middleware, desk, biologist, web_root, rng, exams: list[tuple[str, str]],
             values: dict[str, dict[str, Any]], when: str, hidden: tuple[str, ...] = (),
             **choices: Any) -> tuple[str, dict[str, str]]:
    """A report for Marie Dupont: prescription imported, results posted and validated, issued.
    The Task id, and the result ids by LOINC code."""
    spec = addressed(rng, exams=exams, patient=DUPONT)
    task_id = imported_for(fhir, desk, web_root, spec)
    ids = {}
    for code, body in values.items():
        request = prescribed(fhir, task_id, code)
        observation = {**result(request, code, 0, "1"), "effectiveDateTime": when, **body}
        if "valueCodeableConcept" in body:
            observation.pop("valueQuantity")
        ids[code] = posted(lab_middleware, observation)
    decide(biologist, web_root, task_id, "biologique", list(ids.values()))
    issued = issue(biologist, web_root, task_id, masquer=[ids[c] for c in hidden], **choices)
    assert issued.status_code == 200, re.findall(r'<li[^>]*>([^<]*)</li>|role="alert">([^<]*)<', issued.text)
    return task_id, ids


def glucose(value: float) -> dict[str, Any]:
    """A glucose value in mmol/L, as `reported` takes it."""
    return {"valueQuantity": {"value": value, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}}


def pdf_text(pdf: bytes) -> str:
    """The text of a PDF, page after page."""
    document = pdfium.PdfDocument(pdf)
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


def patient_aged(rng: random.Random, gender: str, years: float, on: date = date(2026, 11, 24)) -> Person:
    """A patient of their own (name and INS from the test's `rng`) of this sex, aged `years` and
    a few days on the day `on` (results.py's samples are taken on 24/11/2026): for ranges by sex
    and age."""
    born = on - timedelta(days=int(years * 365.25) + rng.randint(1, 25))
    given = rng.sample(GIVEN_F if gender == "female" else GIVEN_M, 2)
    return Person(rng.choice(["Martin", "Bernard", "Dubois", "Moreau", "Laurent"]), given, gender, born,
                  make_ins(rng, gender, born))
