"""The patient's shared record (DMP) from an order, for the lab's biologist: the list of their
documents, one opened (a CR-BIO through the ANS stylesheet, a PDF as a PDF), a CR-BIO imported
into the patient's history; and the patient's opposition to sharing, recorded or withdrawn.
The rules are bilan/results/elsewhere/shared_record.py's."""

from typing import Annotated, Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from bilan.api.statuses import status_of
from bilan.fhir.outcomes import FhirError, Issue, NotFound
from bilan.results.document import display
from bilan.results.elsewhere import Listing, SharedRecord
from bilan.results.issuing.documents import embedded_pdf
from bilan.settings import Settings
from bilan.web.session import logged_in

AnyRequest = Request[Any, Any, Any]
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
VIEW_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"  # the stylesheet's page


class SharedRecordController(Controller):
    path = "/reception/prescriptions/{task_id:str}/dmp"

    @get("/")
    async def listing(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                      shared_record: NamedDependency[SharedRecord], biologie: FromQuery[str] = "") -> Template:
        user, caller = logged_in(request, settings, "Connectez-vous pour consulter le DMP du patient.")
        found = await shared_record.listing(caller, task_id, lab_reports_only=bool(biologie))
        context = {"user": user, "task_id": task_id, "listing": found, "biologie": bool(biologie)}
        if request.headers.get("hx-request"):
            return HTMXBlockTemplate(template_name="reception/dmp.html", block_name="documents", context=context)
        return Template("reception/dmp.html", context=context)

    @get("/{document_id:str}")
    async def open(self, request: AnyRequest, task_id: FromPath[str], document_id: FromPath[str],
                   settings: NamedDependency[Settings], shared_record: NamedDependency[SharedRecord]) -> Response[Any]:
        user, caller = logged_in(request, settings, "Connectez-vous pour consulter le DMP du patient.")
        try:
            opened = await shared_record.open(caller, task_id, document_id)
            if opened.document.lab_report:
                copy = f"/reception/prescriptions/{task_id}/dmp/{document_id}/copie.pdf"
                page = display.page(opened.content, back=f"/reception/prescriptions/{task_id}/dmp/",
                                    pdf=copy if embedded_pdf(opened.content) is not None else None)
                return Response(page, media_type="text/html; charset=utf-8",
                                headers={"Content-Security-Policy": VIEW_POLICY})
        except FhirError as error:
            return await self._page(request, user, caller, shared_record, task_id, error)
        if opened.document.pdf:
            return Response(opened.content, media_type="application/pdf",
                            headers={"Content-Disposition": 'inline; filename="document-dmp.pdf"'})
        return Response(opened.content, media_type="application/octet-stream",  # never shown as a page of bilan
                        headers={"Content-Disposition": 'attachment; filename="document-dmp"'})

    @get("/{document_id:str}/copie.pdf")
    async def embedded_copy(self, request: AnyRequest, task_id: FromPath[str], document_id: FromPath[str],
                            settings: NamedDependency[Settings],
                            shared_record: NamedDependency[SharedRecord]) -> Response[bytes]:
        """The PDF copy a CR-BIO of the shared record carries, which its page links to."""
        _, caller = logged_in(request, settings, "Connectez-vous pour consulter le DMP du patient.")
        opened = await shared_record.open(caller, task_id, document_id)
        copy = embedded_pdf(opened.content) if opened.document.lab_report else None
        if copy is None:
            raise NotFound([Issue("Ce document du DMP ne porte pas de copie PDF.", "not-found")])
        return Response(copy, media_type="application/pdf",
                        headers={"Content-Disposition": 'inline; filename="document-dmp.pdf"'})

    @post("/{document_id:str}/import")
    async def import_(self, request: AnyRequest, task_id: FromPath[str], document_id: FromPath[str],
                      settings: NamedDependency[Settings], shared_record: NamedDependency[SharedRecord]) -> Template:
        user, caller = logged_in(request, settings, "Connectez-vous pour consulter le DMP du patient.")
        try:
            await shared_record.import_report(caller, task_id, document_id)
        except FhirError as error:
            return await self._page(request, user, caller, shared_record, task_id, error)
        return await self._page(request, user, caller, shared_record, task_id, message=(
            "Compte rendu importé : ses résultats sont dans l'historique du patient (résultats antérieurs, "
            "courbes)."))

    @post("/opposition")
    async def opposition(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                         settings: NamedDependency[Settings], shared_record: NamedDependency[SharedRecord]) -> Redirect:
        _, caller = logged_in(request, settings, "Connectez-vous pour accéder à la réception du laboratoire.")
        await shared_record.record_opposition(caller, task_id, data.get("opposition") == "oui")
        return Redirect(f"/reception/prescriptions/{task_id}/resultats#partage")

    async def _page(self, request: AnyRequest, user: Any, caller: Any, shared_record: SharedRecord, task_id: str,
                    error: FhirError | None = None, message: str = "") -> Template:
        found: Listing = await shared_record.listing(caller, task_id)
        problem = error.issues[0].diagnostics if error and error.issues else ""
        return Template("reception/dmp.html", status_code=status_of(error) if error else 200,
                        context={"user": user, "task_id": task_id, "listing": found, "problem": problem,
                                 "message": message, "biologie": False})
