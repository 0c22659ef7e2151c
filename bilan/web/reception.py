"""The lab reception's pages: worklist, prescription, identity check, import, labels, sheet."""

from datetime import date, datetime
from typing import Annotated, Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Response, Template

from bilan.api.statuses import status_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import utc_now
from bilan.fhir.outcomes import Conflict, FhirError, Invalid, Issue
from bilan.french import in_paris
from bilan.prescription import adaptation
from bilan.prescription.labels import labels_pdf
from bilan.prescription.messaging import Messaging
from bilan.prescription.reception import NEW_FILE, Reception, is_lab_number
from bilan.prescription.transfer import transfer_pdf
from bilan.results.desk import ResultsDesk, critical
from bilan.results.issuing import Choices, Issuing
from bilan.results.queues import ANSWERS, CRITICAL, ISSUE, PARTNER, REPRINT, TITLES, VALIDATE, LabQueues
from bilan.settings import Settings
from bilan.web.confirmations import ACTIONS, done
from bilan.web.session import WebUser, logged_in

AnyRequest = Request[Any, Any, Any]
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
# Where each queue is worked, from the order's page.
QUEUE_PAGES = {CRITICAL: "resultats#valeurs-critiques", VALIDATE: "resultats", ISSUE: "resultats#compte-rendu",
               ANSWERS: "#echanges", PARTNER: "#commande", REPRINT: "#commande"}
FILTERS = {"received": "À importer", "imported": "Importées", "cancelled": "Refusées ou annulées",
           "": "Toutes"}


def signed_in(request: AnyRequest, settings: Settings) -> tuple[WebUser, Caller]:
    return logged_in(request, settings, "Connectez-vous pour accéder à la réception du laboratoire.")


class ReceptionController(Controller):
    path = "/reception"

    @get("/")
    async def worklist(self, request: AnyRequest, settings: NamedDependency[Settings],
                       reception: NamedDependency[Reception], q: FromQuery[str] = "",
                       statut: FromQuery[str] = "received") -> Template | Redirect:
        user, caller = signed_in(request, settings)
        status = statut if statut in FILTERS else "received"
        # What is typed (a scanned number, a name) is looked for in every state: a prescription
        # already imported or cancelled must still be found. The filter narrows the bare list.
        rows = await reception.worklist(caller, q, None if q.strip() else status or None)
        scanned = rows if is_lab_number(q) else [r for r in rows if r.requisition_value == q.strip()]
        if len(scanned) == 1 and not request.headers.get("hx-request"):
            return Redirect(f"/reception/prescriptions/{scanned[0].task_id}")  # a scanned number + Enter
        context = {"user": user, "rows": rows, "q": q, "status": status, "filters": FILTERS}
        if request.headers.get("hx-request"):
            return HTMXBlockTemplate(template_name="reception/worklist.html", block_name="results",
                                     context=context)
        return Template("reception/worklist.html", context=context)

    @get("/a-traiter")
    async def queues(self, request: AnyRequest, settings: NamedDependency[Settings],
                     queues: NamedDependency[LabQueues]) -> Template:
        user, caller = signed_in(request, settings)
        return Template("reception/queues.html",
                        context={"user": user, "queues": await queues.queues(caller), "titles": TITLES,
                                 "pages": QUEUE_PAGES})

    @get("/prescriptions/{task_id:str}")
    async def prescription(self, request: AnyRequest, task_id: FromPath[str],
                           settings: NamedDependency[Settings], reception: NamedDependency[Reception],
                           messaging: NamedDependency[Messaging]) -> Template:
        user, caller = signed_in(request, settings)
        return await self._page(user, caller, reception, messaging, task_id)

    @post("/prescriptions/{task_id:str}/import")
    async def import_(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                      settings: NamedDependency[Settings],
                      reception: NamedDependency[Reception],
                      messaging: NamedDependency[Messaging]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        try:
            await reception.import_prescription(caller, task_id, data.get("dossier", ""),
                                                opposes=data.get("opposition") == "oui")
        except FhirError as error:
            return await self._page(user, caller, reception, messaging, task_id, error, data)
        return done(f"/reception/prescriptions/{task_id}", "import", "commande")

    @post("/prescriptions/{task_id:str}/prelevement")
    async def collect(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                      reception: NamedDependency[Reception],
                      messaging: NamedDependency[Messaging]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        try:
            await reception.collect(caller, task_id)
        except FhirError as error:
            return await self._page(user, caller, reception, messaging, task_id, error)
        return done(f"/reception/prescriptions/{task_id}", "prelevement", "commande")

    @post("/prescriptions/{task_id:str}/cloture")
    async def close(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                    settings: NamedDependency[Settings],
                    reception: NamedDependency[Reception],
                    messaging: NamedDependency[Messaging]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        try:
            await reception.close(caller, task_id, data.get("statut", ""), data.get("motif", ""))
        except FhirError as error:
            return await self._page(user, caller, reception, messaging, task_id, error, data)
        return Redirect(f"/reception/prescriptions/{task_id}")

    @post("/prescriptions/{task_id:str}/adaptation")
    async def adapt(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                    settings: NamedDependency[Settings], reception: NamedDependency[Reception],
                    messaging: NamedDependency[Messaging]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        try:
            await messaging.adapt(caller, task_id, data.get("change", ""), data.get("original", ""),
                                  data.get("code", ""), data.get("reason", ""), data.get("note", ""),
                                  data.get("proceed") == "oui")
        except FhirError as error:
            return await self._page(user, caller, reception, messaging, task_id, error, data)
        return done(f"/reception/prescriptions/{task_id}", "adaptation", "echanges")

    @post("/prescriptions/{task_id:str}/message")
    async def message(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                      settings: NamedDependency[Settings], reception: NamedDependency[Reception],
                      messaging: NamedDependency[Messaging]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        try:
            await messaging.send(caller, task_id, data.get("texte", ""),
                                 in_response_to=data.get("reponse_a") or None)
        except FhirError as error:
            return await self._page(user, caller, reception, messaging, task_id, error, data)
        return done(f"/reception/prescriptions/{task_id}", "message", "echanges")

    @get("/prescriptions/{task_id:str}/resultats")
    async def results(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                      desk: NamedDependency[ResultsDesk], reception: NamedDependency[Reception],
                      issuing: NamedDependency[Issuing]) -> Template:
        user, caller = signed_in(request, settings)
        return await self._results_page(user, caller, desk, reception, issuing, task_id)

    @post("/prescriptions/{task_id:str}/resultats")
    async def decide(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                     desk: NamedDependency[ResultsDesk], reception: NamedDependency[Reception],
                     issuing: NamedDependency[Issuing]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        form = await request.form()
        try:
            await desk.decide(caller, task_id, str(form.get("action", "")),
                              [str(v) for v in form.getall("resultats", [])], str(form.get("commentaire", "")),
                              str(form.get("valeur", "")))
        except FhirError as error:
            return await self._results_page(user, caller, desk, reception, issuing, task_id, error)
        return done(f"/reception/prescriptions/{task_id}/resultats", ACTIONS[str(form.get("action"))])

    @post("/prescriptions/{task_id:str}/resultats/appel")
    async def critical_call(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                            settings: NamedDependency[Settings], desk: NamedDependency[ResultsDesk],
                            reception: NamedDependency[Reception],
                            issuing: NamedDependency[Issuing]) -> Template | Redirect:
        """The biologist records the call to the prescriber about a critical result."""
        user, caller = signed_in(request, settings)
        try:
            await desk.call(caller, task_id, data.get("resultat", ""), data.get("qui", ""), data.get("quand", ""),
                            data.get("moyen", ""), data.get("propos", ""))
        except FhirError as error:
            return await self._results_page(user, caller, desk, reception, issuing, task_id, error, data)
        return done(f"/reception/prescriptions/{task_id}/resultats", "appel", "valeurs-critiques")

    @post("/prescriptions/{task_id:str}/compte-rendu")
    async def issue(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                    desk: NamedDependency[ResultsDesk], reception: NamedDependency[Reception],
                    issuing: NamedDependency[Issuing]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        form = await request.form()
        try:
            await issuing.issue(caller, task_id, issue_choices(form))
        except FhirError as error:
            return await self._results_page(user, caller, desk, reception, issuing, task_id, error)
        return done(f"/reception/prescriptions/{task_id}/resultats", "compte-rendu", "compte-rendu")

    @post("/prescriptions/{task_id:str}/levee-masquage")
    async def release(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                      desk: NamedDependency[ResultsDesk], reception: NamedDependency[Reception],
                      issuing: NamedDependency[Issuing]) -> Template | Redirect:
        user, caller = signed_in(request, settings)
        form = await request.form()
        try:
            await issuing.release(caller, task_id, str(form.get("motif", "")))
        except FhirError as error:
            return await self._results_page(user, caller, desk, reception, issuing, task_id, error)
        return done(f"/reception/prescriptions/{task_id}/resultats", "levee", "compte-rendu")

    async def _results_page(self, user: WebUser, caller: Caller, desk: ResultsDesk, reception: Reception,
                            issuing: Issuing, task_id: str, error: FhirError | None = None,
                            call: dict[str, str] | None = None) -> Template:
        shown_on_page(error)
        found = await reception.open(caller, task_id)
        rows = await desk.results(caller, task_id)
        overview = await issuing.overview(caller, task_id)
        problems = [i.diagnostics for i in error.issues if i.expression == "compte-rendu"] if error else []
        return Template("reception/results.html", status_code=status_of(error) if error else 200,
                        context={"user": user, "file": found, "rows": rows, "overview": overview,
                                 "problems": problems, "errors": field_errors(error), "call": call or {},
                                 "now": in_paris(utc_now()).strftime("%Y-%m-%dT%H:%M"), "media": critical.MEDIA})

    @get("/prescriptions/{task_id:str}/etiquettes.pdf")
    async def labels(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                     reception: NamedDependency[Reception]) -> Response[bytes]:
        _, caller = signed_in(request, settings)
        labels = await reception.labels(caller, task_id)
        return Response(labels_pdf(labels), media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="etiquettes-{labels[0].accession}.pdf"',
            "Cache-Control": "no-store"})

    @get("/prescriptions/{task_id:str}/bordereau.pdf")
    async def transfer_slip(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                            reception: NamedDependency[Reception]) -> Response[bytes]:
        _, caller = signed_in(request, settings)
        slips = await reception.transfer_slips(caller, task_id)
        return Response(transfer_pdf(slips), media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="bordereau-{slips[0].accession}.pdf"',
            "Cache-Control": "no-store"})

    @get("/prescriptions/{task_id:str}/fiche")
    async def sheet(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                    reception: NamedDependency[Reception]) -> Template:
        user, caller = signed_in(request, settings)
        found = await reception.open(caller, task_id)
        if found.order is None:
            raise Conflict([Issue("Importez d'abord la prescription.", "business-rule")])
        return Template("reception/sheet.html", context={"user": user, "file": found})

    async def _page(self, user: WebUser, caller: Caller, reception: Reception, messaging: Messaging,
                    task_id: str, error: FhirError | None = None, data: dict[str, str] | None = None) -> Template:
        """The prescription's page; after a refused action, with the reason next to its field."""
        shown_on_page(error)
        found = await reception.open(caller, task_id)
        context: dict[str, Any] = {"user": user, "file": found, "errors": field_errors(error),
                                   "form": data or {}, "new_file": NEW_FILE}
        if found.row.lab_finess or found.order:  # no thread before the lab has the prescription
            context.update(thread=await messaging.conversation(caller, task_id),
                           deliveries=await messaging.deliveries(caller, task_id),
                           orderables=await messaging.orderables(), reasons=adaptation.REASONS,
                           changes=adaptation.CHANGES)
        return Template("reception/prescription.html", status_code=status_of(error) if error else 200,
                        context=context)


def issue_choices(form: Any) -> Choices:
    """The biologist's choices on the issue form; a French error next to a bad date."""
    text = str(form.get("liberation", "")).strip()
    try:
        release_on = date.fromisoformat(text) if "-" in text else (
            datetime.strptime(text, "%d/%m/%Y").date() if text else None)
    except ValueError:
        raise Invalid([Issue("Date de levée du masquage invalide : JJ/MM/AAAA.", "value",
                                    expression="liberation")]) from None
    return Choices(hidden=frozenset(str(v) for v in form.getall("masquer", [])),
                   hide_report=bool(form.get("masquer_tout")), release_on=release_on,
                   announce=bool(form.get("annonce")), hidden_from_professionals=bool(form.get("masque_ps")),
                   secret_connection=bool(form.get("connexion_secrete")), conclusion=form.get("conclusion", ""))


def shown_on_page(error: FhirError | None) -> None:
    """A refused action (409, 422) is shown on the page it came from; any other error goes
    to the error page (raised again)."""
    if error is not None and not isinstance(error, (Conflict, Invalid)):
        raise error


def field_errors(error: FhirError | None) -> dict[str, str]:
    """Each issue's message under the name of the form field it is about."""
    return {(issue.expression or "general").split(".")[-1]: issue.diagnostics
            for issue in (error.issues if error else [])}
