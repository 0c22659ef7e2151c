"""An issued or received report, for whoever may see it (prescriber, lab, patient): its human
view through the ANS stylesheet, its PDF and its CDA. Every read is access-checked and audited
by the records service."""

from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Response

from bilan.records.service import Records
from bilan.results.document import display
from bilan.results.export.report_files import report_cda, report_pdf
from bilan.results.issuing import CDA_TYPE, PDF_TYPE
from bilan.settings import Settings
from bilan.web.auth import local_path
from bilan.web.session import logged_in

AnyRequest = Request[Any, Any, Any]


class DocumentsController(Controller):
    path = "/documents"

    @get("/{document_id:str}")
    async def view(self, request: AnyRequest, document_id: FromPath[str], settings: NamedDependency[Settings],
                   records: NamedDependency[Records]) -> Response[str]:
        cda = await _content(request, document_id, settings, records, CDA_TYPE)
        # The stylesheet's page is self-contained; it may not load anything from elsewhere.
        shown = display.page(cda, back=_back(request), pdf=f"/documents/{document_id}/compte-rendu.pdf")
        return Response(shown, media_type="text/html; charset=utf-8",
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


def _back(request: AnyRequest) -> str:
    """The page of bilan the report was opened from, or the home page."""
    came_from = urlsplit(request.headers.get("referer", ""))
    if came_from.netloc != request.url.netloc:
        return "/"
    return local_path(came_from.path + (f"?{came_from.query}" if came_from.query else "")) or "/"


async def _content(request: AnyRequest, document_id: str, settings: Settings, records: Records,
                   kind: str) -> bytes:
    _, caller = logged_in(request, settings, "Connectez-vous pour consulter ce compte rendu.")
    document = await records.read(caller, "DocumentReference", document_id)
    if kind == PDF_TYPE:  # every report has one, made from its CDA when it came without
        return await report_pdf(records, caller, document)
    return await report_cda(records, caller, document)
