"""The prescriber's small web view: their prescriptions and where each stands at the lab,
the conversation with the lab, and their answer to each adaptation."""

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from bilan.api.statuses import status_of
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import FhirError, Forbidden, Issue
from bilan.fhir.query import parse_search
from bilan.prescription import tracking
from bilan.prescription.identity import traits
from bilan.prescription.messaging import Messaging
from bilan.records.service import Records
from bilan.results.issuing import Issuing
from bilan.settings import Settings
from bilan.web.reception import field_errors, shown_on_page
from bilan.web.session import WebUser, logged_in

AnyRequest = Request[Any, Any, Any]
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


def prescriber(request: AnyRequest, settings: Settings) -> tuple[WebUser, Caller]:
    user, caller = logged_in(request, settings, "Connectez-vous pour voir vos prescriptions.")
    if not caller.for_prescriber:
        raise Forbidden([Issue("Cette page est celle des prescripteurs.", "forbidden")])
    return user, caller


class PrescriberController(Controller):
    path = "/prescripteur"

    @get("/")
    async def prescriptions(self, request: AnyRequest, settings: NamedDependency[Settings],
                            records: NamedDependency[Records]) -> Template:
        user, caller = prescriber(request, settings)
        query = parse_search("Task", [("_sort", "-modified"), ("_include", "Task:patient")],
                             default_count=50, max_count=50)
        found = await records.search(caller, query, "_sort=-modified&_include=Task:patient")
        patients = {f"Patient/{p.id}": traits(p.content) for p in found.included}
        tasks = [t.content for t in found.matches]
        rows = [{"task": t, "patient": patients.get((t.get("for") or {}).get("reference", "")),
                 "label": tracking.LABELS.get(t.get("status", ""), "")} for t in tasks]
        return Template("prescriber/list.html", context={"user": user, "rows": rows})

    @get("/prescriptions/{task_id:str}")
    async def prescription(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                           messaging: NamedDependency[Messaging], issuing: NamedDependency[Issuing]) -> Template:
        user, caller = prescriber(request, settings)
        return await self._page(user, caller, messaging, issuing, task_id)

    @post("/prescriptions/{task_id:str}/levee-masquage")
    async def release(self, request: AnyRequest, task_id: FromPath[str], settings: NamedDependency[Settings],
                      messaging: NamedDependency[Messaging], issuing: NamedDependency[Issuing]) -> Template | Redirect:
        user, caller = prescriber(request, settings)
        try:
            await issuing.release(caller, task_id)
        except FhirError as error:
            return await self._page(user, caller, messaging, issuing, task_id, error)
        return Redirect(f"/prescripteur/prescriptions/{task_id}#compte-rendu")

    @post("/prescriptions/{task_id:str}/reponse")
    async def answer(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                     settings: NamedDependency[Settings], messaging: NamedDependency[Messaging],
                     issuing: NamedDependency[Issuing]) -> Template | Redirect:
        user, caller = prescriber(request, settings)
        try:
            await messaging.answer(caller, task_id, data.get("adaptation", ""), data.get("accord") == "oui",
                                   data.get("texte", ""))
        except FhirError as error:
            return await self._page(user, caller, messaging, issuing, task_id, error)
        return Redirect(f"/prescripteur/prescriptions/{task_id}#echanges")

    @post("/prescriptions/{task_id:str}/message")
    async def message(self, request: AnyRequest, task_id: FromPath[str], data: Form,
                      settings: NamedDependency[Settings], messaging: NamedDependency[Messaging],
                      issuing: NamedDependency[Issuing]) -> Template | Redirect:
        user, caller = prescriber(request, settings)
        try:
            await messaging.send(caller, task_id, data.get("texte", ""))
        except FhirError as error:
            return await self._page(user, caller, messaging, issuing, task_id, error)
        return Redirect(f"/prescripteur/prescriptions/{task_id}#echanges")

    async def _page(self, user: WebUser, caller: Caller, messaging: Messaging, issuing: Issuing, task_id: str,
                    error: FhirError | None = None) -> Template:
        shown_on_page(error)
        thread = await messaging.conversation(caller, task_id)
        overview = await issuing.overview(caller, task_id)
        return Template("prescriber/prescription.html", status_code=status_of(error) if error else 200,
                        context={"user": user, "thread": thread, "overview": overview,
                                 "errors": field_errors(error)})
