"""eP-BIO documents in and out: a prescriber's software posts one (alone, or carried by a
DocumentReference) and it goes through the very intake of the FHIR transaction; a stored
prescription is served as one.

In: the caller must be a prescriber (or software acting for one); the document must pass the
ANS checks (XSD, the five profiles and the eP-BIO schematron), else nothing is stored and the
OperationOutcome names each problem's element in the document (`issue.location`, an XPath);
then it is read into the FHIR transaction and processed as one (bilan/prescription/intake.py):
the same rules and refusals, each refusal naming both the Bundle element (`expression`) and
the document element it was read from (`location`)."""

import asyncio
import base64
import binascii
import dataclasses
from typing import Any
from urllib.parse import urlencode

from bilan.auth.caller import Caller
from bilan.fhir.outcomes import FhirError, Forbidden, Invalid, Issue, Malformed, Unsupported, not_found
from bilan.fhir.parsing import parse_body
from bilan.fhir.query import parse_search
from bilan.prescription.ep_bio import CDA_MEDIA_TYPES
from bilan.prescription.ep_bio_reading import transaction
from bilan.prescription.ep_bio_writing import NotExportable, Prescription, ep_bio_document
from bilan.prescription.exams import loinc_codes
from bilan.records.service import Records
from bilan.records.transaction import Transactions
from bilan.results.document import conformance

ORDER_INTENTS = ("order", "original-order")
FHIR_TYPES = ("application/fhir+json", "application/json", "application/fhir+xml")


async def submit(transactions: Transactions, caller: Caller, body: bytes,
                 content_type: str | None) -> dict[str, Any]:
    """The transaction-response of the prescription an eP-BIO document carries."""
    if not caller.for_prescriber:
        raise Forbidden([Issue("Only a prescriber, or software acting for one, sends a prescription",
                               "forbidden")])
    document, where = _document(body, content_type)
    found = await asyncio.to_thread(conformance.check, document, conformance.EP_BIO)
    if found.errors:
        structural = any(f.check == "XML" for f in found.errors)
        issues = [Issue(f"{f.check}: {f.message}", "structure" if structural else "invalid",
                        expression=where, location=f.path) for f in found.errors]
        raise Malformed(issues) if structural else Invalid(issues)
    read = transaction(document)
    try:
        return await transactions.process(caller, read.bundle)
    except FhirError as error:
        error.issues = [_located(issue, read.sources) for issue in error.issues]
        raise


async def document_of(records: Records, caller: Caller, request_id: str) -> bytes:
    """The eP-BIO document of the prescription a ServiceRequest belongs to."""
    request = (await records.read(caller, "ServiceRequest", request_id)).content
    if request.get("intent") not in ORDER_INTENTS:
        raise not_found("ServiceRequest", f"{request_id}/$ep-bio")
    requests = await _prescription_requests(records, caller, request)
    patient = await _read(records, caller, request["subject"].get("reference", ""))
    requester = await _read(records, caller, request["requester"].get("reference", ""))
    role, practitioner = (requester, await _read(records, caller, (requester.get("practitioner") or {}).get("reference", ""))) \
        if requester.get("resourceType") == "PractitionerRole" else (None, requester)
    practice = await _read(records, caller, ((role or {}).get("organization") or {}).get("reference", "")) if role else None
    performer = next((p.get("reference", "") for p in request.get("performer", [])), "")
    lab = await _read(records, caller, performer) if performer.startswith("Organization/") else None
    context = [await _read(records, caller, s.get("reference", "")) for s in request.get("supportingInfo", [])]
    try:
        return ep_bio_document(Prescription(requests, patient, practitioner, role, practice or None, lab or None,
                                            [c for c in context if c.get("resourceType") == "Observation"]))
    except NotExportable as error:
        raise Invalid([Issue(str(error), "business-rule", expression="ServiceRequest.requisition")]) from None


def _document(body: bytes, content_type: str | None) -> tuple[bytes, str | None]:
    """The CDA bytes a body is or carries, and where they sit in it (None: the body itself)."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in CDA_MEDIA_TYPES:
        return body, None
    if mime not in FHIR_TYPES:
        raise Unsupported([Issue(f"Content-Type {content_type or '(none)'} is not an eP-BIO document: send "
                                 f"{' or '.join(CDA_MEDIA_TYPES[:2])}, or a DocumentReference carrying it",
                                 "not-supported")])
    resource = parse_body(body, content_type)
    if resource.get("resourceType") != "DocumentReference":
        raise Malformed([Issue(f"A {resource.get('resourceType')} is not an eP-BIO document: send the CDA "
                               "itself or a DocumentReference carrying it", "invalid", expression="resourceType")])
    for index, content in enumerate(resource.get("content", [])):
        attachment = content.get("attachment") or {}
        if attachment.get("contentType") in CDA_MEDIA_TYPES and attachment.get("data"):
            where = f"DocumentReference.content[{index}].attachment.data"
            try:
                return base64.b64decode(attachment["data"], validate=True), where
            except (binascii.Error, ValueError):
                raise Malformed([Issue("The attachment's data is not base64", "invalid", expression=where)]) from None
    raise Malformed([Issue("The DocumentReference carries no eP-BIO document: an attachment with contentType "
                           f"{CDA_MEDIA_TYPES[0]} and its data is needed", "required",
                           expression="DocumentReference.content")])


def _located(issue: Issue, sources: dict[int, str]) -> Issue:
    """The issue, naming also the document element its Bundle entry was read from."""
    expression = issue.expression or ""
    if not expression.startswith("Bundle.entry["):
        return issue
    index = expression.removeprefix("Bundle.entry[").split("]", 1)[0]
    source = sources.get(int(index)) if index.isdigit() else None
    return dataclasses.replace(issue, location=source) if source else issue


async def _prescription_requests(records: Records, caller: Caller, request: dict[str, Any]) -> list[dict[str, Any]]:
    """The exams of the prescription, by their LOINC codes: same number, same requester."""
    requisition = request.get("requisition") or {}
    params = [("requisition", f"{requisition.get('system', '')}|{requisition.get('value', '')}"), ("_count", "500")]
    found = await records.search(caller, parse_search("ServiceRequest", params, default_count=500, max_count=500),
                                 urlencode(params))
    requests = [s.content for s in found.matches
                if s.content.get("intent") in ORDER_INTENTS and s.content.get("status") != "entered-in-error"
                and s.content.get("requester") == request.get("requester")]
    return sorted(requests, key=lambda r: (loinc_codes(r) or [""])[0])


async def _read(records: Records, caller: Caller, reference: str) -> dict[str, Any]:
    """The resource a reference names ({} for none): one the caller may not read refuses the
    whole document rather than leave a part out."""
    resource_type, _, resource_id = reference.partition("/")
    if not resource_id:
        return {}
    return (await records.read(caller, resource_type, resource_id)).content
