"""The prescriber's web view: his prescriptions (search, filters, paging, "nouveau"), each one's
results and where it stands at the lab, the conversation with the lab and his answer to each
adaptation, and his patients' results over time. Logged out, a page sends him to the login
and back (a link from a mail)."""

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from markupsafe import Markup

from bilan.api.statuses import status_of
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import FhirError, Forbidden, Issue
from bilan.prescription.messaging import Messaging
from bilan.results.issuing import Issuing
from bilan.results.views import PrescriberView, Trends, point_label, trend_svg
from bilan.results.views.prescriber_view import FILTERS
from bilan.settings import Settings
from bilan.web.auth import login_then
from bilan.web.confirmations import done
from bilan.web.reception import field_errors, shown_on_page
from bilan.web.session import WebUser, current_user, logged_in

AnyRequest = Request[Any, Any, Any]
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def prescriber(request: AnyRequest, settings: Settings) -> tuple[WebUser, Caller]:
    user, caller = logged_in(request, settings, "Connectez-vous pour voir vos prescriptions.")
    if not caller.for_prescriber:
        raise Forbidden([Issue("Cette page est celle des prescripteurs.", "forbidden")])
    return user, caller


def page_number(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 7 else 1


class PrescriberController(Controller):
    path = "/prescripteur"

    @get("/")
    async def prescriptions(self, request: AnyRequest, settings: NamedDependency[Settings],
                            prescriber_view: NamedDependency[PrescriberView], q: FromQuery[str] = "",
                            filtre: FromQuery[str] = "", page: FromQuery[str] = "1") -> Template | Redirect:
        if current_user(request, settings) is None:
            return login_then(request)
        user, caller = prescriber(request, settings)
        listing = await prescriber_view.prescriptions(caller, q, filtre, page_number(page))
        return Template("prescriber/list.html", context={"user": user, "listing": listing, "filters": FILTERS})

    @get("/prescriptions/{task_id:str}")
    async def prescription(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                           messaging: NamedDependency[Messaging], issuing: NamedDependency[Issuing],
                           prescriber_view: NamedDependency[PrescriberView]) -> Template | Redirect:
        if current_user(request, settings) is None:
            return login_then(request)
        user, caller = prescriber(request, settings)
        return await self._page(user, caller, messaging, issuing, prescriber_view, task_id)

    @get("/patients/{patient_id:str}")
    async def patient(self, request: AnyRequest, patient_id: FromPath[str], settings: NamedDependency[Settings],
                      prescriber_view: NamedDependency[PrescriberView],
                      trends: NamedDependency[Trends]) -> Template | Redirect:
        if current_user(request, settings) is None:
            return login_then(request)
        user, caller = prescriber(request, settings)
        person = await prescriber_view.patient(caller, patient_id)
        analytes = await trends.analytes(caller, patient=f"Patient/{patient_id}")
        return Template("prescriber/patient.html", context={
            "user": user, "patient_id": patient_id, "person": person, "analytes": analytes})

    @get("/patients/{patient_id:str}/analyses/{key:str}")
    async def trend(self, request: AnyRequest, patient_id: FromPath[str], key: FromPath[str],
                    settings: NamedDependency[Settings], prescriber_view: NamedDependency[PrescriberView],
                    trends: NamedDependency[Trends]) -> Template | Redirect:
        if current_user(request, settings) is None:
            return login_then(request)
        user, caller = prescriber(request, settings)
        person = await prescriber_view.patient(caller, patient_id)
        series = await trends.series(caller, key, patient=f"Patient/{patient_id}")
        return Template("prescriber/trend.html", context={
            "user": user, "patient_id": patient_id, "person": person, "series": series,
            "chart": Markup(trend_svg(series)), "label": point_label})

    @post("/prescriptions/{task_id:str}/levee-masquage")
    async def release(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                      messaging: NamedDependency[Messaging], issuing: NamedDependency[Issuing],
                      prescriber_view: NamedDependency[PrescriberView]) -> Template | Redirect:
        user, caller = prescriber(request, settings)
        try:
            await issuing.release(caller, task_id)
        except FhirError as error:
            return await self._page(user, caller, messaging, issuing, prescriber_view, task_id, error)
        return done(f"/prescripteur/prescriptions/{task_id}", "levee", "compte-rendu")

    @post("/prescriptions/{task_id:str}/reponse")
    async def answer(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                     settings: NamedDependency[Settings], messaging: NamedDependency[Messaging],
                     issuing: NamedDependency[Issuing],
                     prescriber_view: NamedDependency[PrescriberView]) -> Template | Redirect:
        user, caller = prescriber(request, settings)
        try:
            await messaging.answer(caller, task_id, data.get("adaptation", ""), data.get("accord") == "oui",
                                   data.get("texte", ""))
        except FhirError as error:
            return await self._page(user, caller, messaging, issuing, prescriber_view, task_id, error)
        return done(f"/prescripteur/prescriptions/{task_id}", "reponse", "echanges")

    @post("/prescriptions/{task_id:str}/message")
    async def message(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                      settings: NamedDependency[Settings], messaging: NamedDependency[Messaging],
                      issuing: NamedDependency[Issuing],
                      prescriber_view: NamedDependency[PrescriberView]) -> Template | Redirect:
        user, caller = prescriber(request, settings)
        try:
            await messaging.send(caller, task_id, data.get("texte", ""))
        except FhirError as error:
            return await self._page(user, caller, messaging, issuing, prescriber_view, task_id, error)
        return done(f"/prescripteur/prescriptions/{task_id}", "message", "echanges")

    async def _page(self, user: WebUser, caller: Caller, messaging: Messaging, issuing: Issuing,
                    prescriber_view: PrescriberView, task_id: str, error: FhirError | None = None) -> Template:
        shown_on_page(error)
        results = await prescriber_view.order_results(caller, task_id)
        thread = await messaging.conversation(caller, task_id)
        overview = await issuing.overview(caller, task_id)
        return Template("prescriber/prescription.html", status_code=status_of(error) if error else 200,
                        context={"user": user, "thread": thread, "overview": overview, "results": results,
                                 "errors": field_errors(error)})
