"""A prescription's way to the lab's order: posted by the practice software, found and imported
at the front desk, its Task followed, its exams adapted by the biologist."""

import random
import re
from typing import Any

import httpx

from bilan.demo.load import LAB_IDENTIFIER
from bilan.demo.prescriptions import REQUISITION_SYSTEM, PrescriptionSpec, bundle
from bilan.prescription.adaptation import ADAPTATION
from tests.helpers import post_bundle, prescription_spec, search
from tests.web import follow, submit


def addressed(rng: random.Random, **changes: Any) -> PrescriptionSpec:
    """A random prescription by Dr Lambert to the demo lab, with `changes` made to it."""
    spec = prescription_spec(rng)
    spec.lab = LAB_IDENTIFIER
    for name, value in changes.items():
        setattr(spec, name, value)
    return spec


def send(fhir: httpx.Client, spec: PrescriptionSpec) -> None:
    response = post_bundle(fhir, bundle(spec))
    assert response.status_code == 200, response.text


def worklist(desk: httpx.Client, web_root: str, q: str, statut: str = "") -> httpx.Response:
    return desk.get(f"{web_root}/reception", params={"q": q, "statut": statut},
                    headers={"HX-Request": "true"})


def listed(number: str, page: httpx.Response) -> bool:
    return f">{number}</a>" in page.text


def open_by_number(desk: httpx.Client, web_root: str, number: str) -> httpx.Response:
    """What a barcode scan does: the whole number, then Enter (a plain form submission)."""
    page = follow(desk, desk.get(f"{web_root}/reception", params={"q": number, "statut": "received"}))
    assert f"Prescription n° {number}" in page.text, page.text[:2000]
    return page


def task_of(fhir: httpx.Client, number: str) -> dict[str, Any]:
    found = search(fhir, "Task", requisition=f"{REQUISITION_SYSTEM}|{number}")
    assert found["total"] == 1
    return found["entry"][0]["resource"]


def imported(fhir: httpx.Client, desk: httpx.Client, web_root: str, spec: Any) -> str:
    """Post the prescription, import it at the lab into a new lab file; its Task id."""
    send(fhir, spec)
    page = open_by_number(desk, web_root, spec.requisition)
    submit(desk, page, page.url.path + "/import", {"dossier": "new"})
    return task_of(fhir, spec.requisition)["id"]


def imported_for(fhir: httpx.Client, desk: httpx.Client, web_root: str, spec: Any) -> str:
    """Post and import the prescription into the patient's lab file if the lab has one."""
    send(fhir, spec)
    page = open_by_number(desk, web_root, spec.requisition)
    files = [v for v in re.findall(r'name="dossier" value="([^"]+)"', page.text) if v != "new"]
    submit(desk, page, page.url.path + "/import", {"dossier": files[0] if files else "new"})
    return task_of(fhir, spec.requisition)["id"]


def prescribed(fhir: httpx.Client, task_id: str, code: str) -> dict[str, Any]:
    """The order's ServiceRequest for this exam code."""
    task = fhir.get(f"Task/{task_id}").json()
    for ref in task["basedOn"]:
        request = fhir.get(ref["reference"]).json()
        if request["code"]["coding"][0]["code"] == code:
            return request
    raise AssertionError(code)


def adapt(biologist: httpx.Client, web_root: str, task_id: str, **form: str) -> httpx.Response:
    page = biologist.get(f"{web_root}/reception/prescriptions/{task_id}")
    return submit(biologist, page, f"/reception/prescriptions/{task_id}/adaptation", form)


def adaptations(fhir: httpx.Client, original: dict[str, Any]) -> list[dict[str, Any]]:
    found = search(fhir, "ServiceRequest", **{"based-on": f"ServiceRequest/{original['id']}"})
    return [e["resource"] for e in found["entry"] if e["resource"].get("intent") == "filler-order"]


def answer_of(request: dict[str, Any]) -> str:
    parts = next(e["extension"] for e in request["extension"] if e["url"] == ADAPTATION)
    return next(p["valueCode"] for p in parts if p["url"] == "answer")


def collected(desk: httpx.Client, web_root: str, task_id: str) -> None:
    """The desk records the order's tubes as collected (its "Prélèvement effectué" button)."""
    page = desk.get(f"{web_root}/reception/prescriptions/{task_id}")
    done = submit(desk, page, f"/reception/prescriptions/{task_id}/prelevement", {})
    assert done.status_code == 200, done.text
