"""An issued or received report, for whoever may see it (prescriber, lab, patient): its human
view through the ANS stylesheet, its PDF and its CDA. Every read is access-checked and audited
by the records service."""

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Response

from bilan.fhir.outcomes import Issue, NotFound
from bilan.records.service import Records
from bilan.results.document import display
from bilan.results.issuing import CDA_TYPE, PDF_TYPE
from bilan.results.issuing.documents import embedded_pdf
from bilan.settings import Settings
from bilan.web.session import logged_in

AnyRequest = Request[Any, Any, Any]


class DocumentsController(Controller):
    path = "/documents"

    @get("/{document_id:str}")
    async def view(self, request: AnyRequest, document_id: FromPath[str], settings: NamedDependency[Settings],
                   records: NamedDependency[Records]) -> Response[str]:
        cda = await _content(request, document_id, settings, records, CDA_TYPE)
        # The stylesheet's page is self-contained; it may not load anything from elsewhere.
        return Response(display.html(cda), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:"})

    @get("/{document_id:str}/compte-rendu.pdf")
    async def pdf(self, request: AnyRequest, document_id: FromPath[str], settings: NamedDependency[Settings],
                  records: NamedDependency[Records]) -> Response[bytes]:
        data = await _content(request, document_id, settings, records, PDF_TYPE)
        return Response(data, media_type=PDF_TYPE,
                        headers={"Content-Disposition": 'inline; filename="compte-rendu.pdf"'})

    @get("/{document_id:str}/CR-BIO.xml")
    async def cda(self, request: AnyRequest, document_id: FromPath[str], settings: NamedDependency[Settings],
                  records: NamedDependency[Records]) -> Response[bytes]:
        data = await _content(request, document_id, settings, records, CDA_TYPE)
        return Response(data, media_type=CDA_TYPE,
                        headers={"Content-Disposition": 'attachment; filename="CR-BIO.xml"'})


async def _content(request: AnyRequest, document_id: str, settings: Settings, records: Records,
                   kind: str) -> bytes:
    _, caller = logged_in(request, settings, "Connectez-vous pour consulter ce compte rendu.")
    document = await records.read(caller, "DocumentReference", document_id)
    for wanted in (kind, CDA_TYPE) if kind == PDF_TYPE else (kind,):
        for content in document.content.get("content", []):
            attachment = content.get("attachment") or {}
            if attachment.get("contentType") in (wanted, "text/xml" if wanted == CDA_TYPE else wanted):
                data = await records.attachment(caller, attachment)
                # The lab's CR-BIO carries its PDF copy (one content per DocumentReference).
                found = data if wanted == kind else embedded_pdf(data)
                if found is not None:
                    return found
    raise NotFound([Issue("Ce document n'a pas de copie dans ce format.", "not-found")])
