"""A report's files as whoever may see it gets them: its CDA, and a PDF for every report. The
lab's own CR-BIO embeds its PDF; a level-1 report from elsewhere carries one; a structured
report from elsewhere without a copy gets one made from its results
(bilan/results/document/received_pdf.py). Attachments are read through the records service."""

from typing import Any

from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Issue, NotFound
from bilan.records.service import Records
from bilan.results.document.received_pdf import received_pdf
from bilan.results.elsewhere.cda_reading import UnreadableReport, read_cr_bio
from bilan.results.elsewhere.imported import DOCUMENT_MEDIA
from bilan.results.issuing import CDA_TYPE, PDF_TYPE
from bilan.results.issuing.documents import embedded_pdf
from bilan.storage.repository import Stored

CDA_MEDIA = frozenset({CDA_TYPE, *DOCUMENT_MEDIA})


def media_of(attachment: dict[str, Any]) -> str:
    return str(attachment.get("contentType", "")).split(";")[0].strip().lower()


def attachments(document: Stored, media: frozenset[str]) -> list[dict[str, Any]]:
    """The document's attachments of these media types, in order."""
    found = [c.get("attachment") or {} for c in document.content.get("content", [])]
    return [a for a in found if media_of(a) in media]


async def report_cda(records: Records, caller: Caller, document: Stored) -> bytes:
    for attachment in attachments(document, CDA_MEDIA):
        return await records.attachment(caller, attachment)
    raise _missing()


async def report_pdf(records: Records, caller: Caller, document: Stored) -> bytes:
    """The PDF the report carries, else the one its CDA embeds, else one made from its CDA."""
    for attachment in attachments(document, frozenset({PDF_TYPE})):
        return await records.attachment(caller, attachment)
    return pdf_of_cda(await report_cda(records, caller, document))


def pdf_of_cda(cda: bytes) -> bytes:
    """The PDF a CDA embeds, else one made from its results; NotFound for a level-1 report
    whose file is not a PDF, or a document bilan cannot read."""
    embedded = embedded_pdf(cda)
    if embedded is not None:
        return embedded
    try:
        read = read_cr_bio(cda, check=False)
    except UnreadableReport:
        raise _missing() from None
    if read.unstructured is not None:
        if read.unstructured.media_type == PDF_TYPE:
            return read.unstructured.data
        raise _missing()
    return received_pdf(read)


def _missing() -> NotFound:
    return NotFound([Issue("Ce document n'a pas de copie dans ce format.", "not-found")])
