"""The patient's space, Mon espace santé-style: their reports, their results as trends over
time across labs, and who accessed their data. Mobile first; every page works without
JavaScript, htmx only narrows the list of analyses as the patient types."""

from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from markupsafe import Markup

from bilan.api.statuses import status_of
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import FhirError, Forbidden, Issue
from bilan.notifications.patient_address import FIELD, NoticeAddress
from bilan.records.service import Records
from bilan.results.views import AccessTrail, Analyte, PatientReport, PatientSpace, Trends, point_label, trend_svg
from bilan.settings import Settings
from bilan.web.reception import Form, field_errors, shown_on_page
from bilan.web.session import WebUser, logged_in

AnyRequest = Request[Any, Any, Any]


def patient(request: AnyRequest, settings: Settings) -> tuple[WebUser, Caller]:
    user, caller = logged_in(request, settings, "Connectez-vous pour voir vos résultats.")
    if caller.kind != "patient":
        raise Forbidden([Issue("Cet espace est celui des patients.", "forbidden")])
    return user, caller


def by_chapter(analytes: list[Analyte]) -> list[tuple[str, list[Analyte]]]:
    chapters: dict[str, list[Analyte]] = {}
    for analyte in analytes:
        chapters.setdefault(analyte.chapter_label, []).append(analyte)
    return list(chapters.items())


def provide_address(records: NamedDependency[Records]) -> NoticeAddress:
    return NoticeAddress(records)


def provide_report(records: NamedDependency[Records]) -> PatientReport:
    return PatientReport(records)


async def home_page(user: WebUser, caller: Caller, space: PatientSpace, trends: Trends, address: NoticeAddress,
                    *, error: FhirError | None = None, typed: str | None = None, saved: bool = False) -> Template:
    """Her space; after a refused address, the reason next to the field and what she typed kept."""
    shown_on_page(error)
    return Template("patient/home.html", status_code=status_of(error) if error else 200, context={
        "user": user, "reports": await space.reports(caller), "awaiting": await space.awaiting(caller),
        "orders": await space.in_progress(caller), "chapters": by_chapter(await trends.analytes(caller)), "q": "",
        "microbiology": await trends.microbiology(caller),
        "email": typed if typed is not None else await address.get(caller), "errors": field_errors(error),
        "email_field": FIELD, "saved": saved})


class PatientController(Controller):
    path = "/patient"
    dependencies = {"address": Provide(provide_address, sync_to_thread=False),
                    "patient_report": Provide(provide_report, sync_to_thread=False)}

    @get("/")
    async def home(self, request: AnyRequest, settings: NamedDependency[Settings],
                   space: NamedDependency[PatientSpace], trends: NamedDependency[Trends],
                   address: NamedDependency[NoticeAddress], enregistre: FromQuery[str] = "") -> Template:
        user, caller = patient(request, settings)
        return await home_page(user, caller, space, trends, address, saved=enregistre == "adresse")

    @post("/adresse")
    async def set_address(self, request: AnyRequest, data: Form, settings: NamedDependency[Settings],
                          space: NamedDependency[PatientSpace], trends: NamedDependency[Trends],
                          address: NamedDependency[NoticeAddress]) -> Template | Redirect:
        """The e-mail address where she is told a report is available ("" removes it)."""
        user, caller = patient(request, settings)
        typed = str(data.get(FIELD, ""))
        try:
            await address.set(caller, typed)
        except FhirError as error:
            return await home_page(user, caller, space, trends, address, error=error, typed=typed)
        return Redirect("/patient/?enregistre=adresse#avis")

    @get("/comptes-rendus/{document_id:str}")
    async def report(self, request: AnyRequest, document_id: FromPath[str], settings: NamedDependency[Settings],
                     patient_report: NamedDependency[PatientReport]) -> Template:
        """One of her reports, on bilan's own page (opening it takes its "Nouveau" mark away)."""
        user, caller = patient(request, settings)
        return Template("patient/report.html", context={"user": user,
                                                        "report": await patient_report.page(caller, document_id)})

    @get("/analyses")
    async def analyses(self, request: AnyRequest, settings: NamedDependency[Settings],
                       trends: NamedDependency[Trends], q: FromQuery[str] = "") -> Template:
        user, caller = patient(request, settings)
        context = {"user": user, "chapters": by_chapter(await trends.analytes(caller, q)), "q": q}
        if request.headers.get("hx-request"):
            return HTMXBlockTemplate(template_name="patient/_search.html", block_name="list", context=context)
        return Template("patient/analyses.html", context={**context, "microbiology": await trends.microbiology(caller)})

    @get("/analyses/{key:str}")
    async def trend(self, request: AnyRequest, key: FromPath[str], settings: NamedDependency[Settings],
                    trends: NamedDependency[Trends]) -> Template:
        user, caller = patient(request, settings)
        series = await trends.series(caller, key)
        return Template("patient/trend.html", context={
            "user": user, "series": series, "chart": Markup(trend_svg(series)), "label": point_label})

    @get("/acces")
    async def trail(self, request: AnyRequest, settings: NamedDependency[Settings],
                    access_trail: NamedDependency[AccessTrail], qui: FromQuery[str] = "tous",
                    page: FromQuery[str] = "1") -> Template:
        user, caller = patient(request, settings)
        number = int(page) if page.isascii() and page.isdigit() and len(page) < 7 else 1
        found = await access_trail.page(caller, qui, number)
        return Template("patient/trail.html", context={"user": user, "trail": found})
