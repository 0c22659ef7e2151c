"""The archive's Bundle as a transaction another server can take (`fhir/import.json`): the
patient (created, or found by her INS) and each report as a DocumentReference carrying its CDA
inline, as an MHD document source sends one. The receiving bilan reads each CR-BIO's results
into her history (bilan/results/elsewhere/imported.py), so the results travel with the
documents that vouch for them instead of as loose Observations; and a report is sent once,
however many of her records it was filed under."""

import hashlib
import uuid
from typing import Any

from bilan.fhir.terminology import INS_SYSTEMS
from bilan.results.export.report_files import CDA_MEDIA, media_of

# What a new server may take of her identity: nothing that points into this server.
PATIENT_ELEMENTS = ("identifier", "name", "gender", "birthDate", "telecom", "address", "extension")
DOCUMENT_ELEMENTS = ("type", "category", "description")


def import_transaction(collection: dict[str, Any]) -> dict[str, Any]:
    """A transaction Bundle from the archive's collection Bundle."""
    resources = [e["resource"] for e in collection.get("entry", [])]
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if not patients:
        return {"resourceType": "Bundle", "type": "transaction", "entry": []}
    patient = max(patients, key=lambda p: (_ins(p) is not None, len(p)))
    patient_url = _urn(f"Patient/{patient.get('id', '')}")
    entries = [_patient_entry(patient, patient_url)]
    seen: set[str] = set()
    for resource in resources:
        if resource.get("resourceType") != "DocumentReference":
            continue
        cda = _cda(resource)
        if cda is None or cda["data"] in seen:
            continue
        seen.add(cda["data"])
        entries.append({
            "fullUrl": _urn(hashlib.sha256(cda["data"].encode()).hexdigest()),
            "resource": {"resourceType": "DocumentReference", "status": "current",
                         **{k: resource[k] for k in DOCUMENT_ELEMENTS if k in resource},
                         "subject": {"reference": patient_url}, "content": [{"attachment": cda}]},
            "request": {"method": "POST", "url": "DocumentReference"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _patient_entry(patient: dict[str, Any], full_url: str) -> dict[str, Any]:
    request: dict[str, str] = {"method": "POST", "url": "Patient"}
    ins = _ins(patient)
    if ins is not None:
        request["ifNoneExist"] = f"identifier={ins['system']}|{ins['value']}"
    resource = {"resourceType": "Patient", **{k: patient[k] for k in PATIENT_ELEMENTS if k in patient}}
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _ins(patient: dict[str, Any]) -> dict[str, Any] | None:
    return next((i for i in patient.get("identifier", []) if i.get("system") in INS_SYSTEMS and i.get("value")),
                None)


def _cda(document: dict[str, Any]) -> dict[str, Any] | None:
    for content in document.get("content", []):
        attachment = content.get("attachment") or {}
        if media_of(attachment) in CDA_MEDIA and attachment.get("data"):
            return {"contentType": attachment["contentType"], "data": attachment["data"]}
    return None


def _urn(seed: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"
