"""The patient's space, Mon espace santé-style: their reports, their results as trends over
time across labs, and who accessed their data. Mobile first; every page works without
JavaScript, htmx only narrows the list of analyses as the patient types."""

from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Template
from markupsafe import Markup

from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Forbidden, Issue
from bilan.results.views import Analyte, PatientSpace, Trends, point_label, trend_svg
from bilan.settings import Settings
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


class PatientController(Controller):
    path = "/patient"

    @get("/")
    async def home(self, request: AnyRequest, settings: NamedDependency[Settings],
                   space: NamedDependency[PatientSpace], trends: NamedDependency[Trends]) -> Template:
        user, caller = patient(request, settings)
        return Template("patient/home.html", context={
            "user": user, "reports": await space.reports(caller), "awaiting": await space.awaiting(caller),
            "chapters": by_chapter(await trends.analytes(caller)), "q": ""})

    @get("/analyses")
    async def analyses(self, request: AnyRequest, settings: NamedDependency[Settings],
                       trends: NamedDependency[Trends], q: FromQuery[str] = "") -> Template:
        user, caller = patient(request, settings)
        context = {"user": user, "chapters": by_chapter(await trends.analytes(caller, q)), "q": q}
        if request.headers.get("hx-request"):
            return HTMXBlockTemplate(template_name="patient/_search.html", block_name="list", context=context)
        return Template("patient/analyses.html", context=context)

    @get("/analyses/{key:str}")
    async def trend(self, request: AnyRequest, key: FromPath[str], settings: NamedDependency[Settings],
                    trends: NamedDependency[Trends]) -> Template:
        user, caller = patient(request, settings)
        series = await trends.series(caller, key)
        return Template("patient/trend.html", context={
            "user": user, "series": series, "chart": Markup(trend_svg(series)), "label": point_label})

    @get("/acces")
    async def trail(self, request: AnyRequest, settings: NamedDependency[Settings],
                    space: NamedDependency[PatientSpace]) -> Template:
        user, caller = patient(request, settings)
        return Template("patient/trail.html", context={"user": user, "lines": await space.trail(caller)})
