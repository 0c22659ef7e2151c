"""The Litestar application: wiring of settings, storage, services and routes."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from litestar import Litestar, get
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import File
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.api.errors import handlers
from bilan.api.fhir import FhirController
from bilan.api.nul_bytes import NulGuard
from bilan.api.security import bearer_caller
from bilan.api.security_headers import security_headers
from bilan.api.smart import smart_configuration
from bilan.auth.oidc import OidcClient
from bilan.auth.tokens import TokenVerifier
from bilan.notifications.delivery import DeliveryWorker
from bilan.notifications.matching import Notifier
from bilan.notifications.mhd import MhdClient
from bilan.notifications.patient_notices import PatientNotices
from bilan.notifications.subscriptions import activate, check_subscription
from bilan.prescription.exams import check_request
from bilan.prescription.ins import check_patient
from bilan.prescription.intake import PrescriptionIntake
from bilan.prescription.messaging import Messaging
from bilan.prescription.practitioners import check_practitioner
from bilan.prescription.reception import Reception
from bilan.records.service import Records
from bilan.records.transaction import Transactions
from bilan.records.validation import Rule, Validator
from bilan.results.desk import ResultsDesk, ResultsIntake, calculations
from bilan.results.elsewhere import ImportedReports, SharedRecord
from bilan.results.issuing import DMP, RELEASE, DmpFeed, Issuing
from bilan.results.queues import LabQueues
from bilan.results.views import AccessTrail, PatientSpace, PrescriberView, Trends
from bilan.settings import Settings, audience, get_settings, web_root
from bilan.storage.database import create_engine, create_reads_engine
from bilan.storage.sessions import WebSessions
from bilan.web import filters
from bilan.web.auth import AuthController
from bilan.web.catalogue import CatalogueController
from bilan.web.documents import DocumentsController
from bilan.web.entry import EntryController
from bilan.web.errors import error_page
from bilan.web.patient import PatientController
from bilan.web.patient_archive import PatientArchiveController
from bilan.web.prescriber import PrescriberController
from bilan.web.reception import ReceptionController
from bilan.web.session import ServerSessionConfig
from bilan.web.shared_record import SharedRecordController

TEMPLATES = Path(__file__).parent / "web" / "templates"
STATIC = Path(__file__).parent / "web" / "static"


@get("/favicon.ico", include_in_schema=False, sync_to_thread=False)
def favicon() -> File:  # what browsers ask for before reading the page's <link rel="icon">
    return File(STATIC / "favicon.ico", media_type="image/x-icon", content_disposition_type="inline")


API_PATHS = ["^/fhir", "^/.well-known"]  # bearer-token clients: no cookies, no CSRF

RULES: dict[str, list[Rule]] = {
    "Patient": [check_patient],
    "Practitioner": [check_practitioner],
    "ServiceRequest": [check_request],
    "Subscription": [check_subscription],
}
AMENDMENTS = {
    "Subscription": [activate],
}


class Services(NamedTuple):
    records: Records
    transactions: Transactions
    messaging: Messaging
    dmp_feed: DmpFeed


def dmp_client(settings: Settings) -> MhdClient:
    """The shared record's (DMP) MHD interface, with the lab's credentials."""
    return MhdClient(settings.dmp_url, settings.dmp_username, settings.dmp_password, settings.dmp_token)


def build_services(engine: AsyncEngine, settings: Settings, reads: AsyncEngine | None = None) -> Services:
    base_url = settings.base_url.rstrip("/")
    records = Records(engine, Validator(RULES, AMENDMENTS), base_url,
                      observers=[Notifier(base_url).on_saved], reads=reads)
    messaging = Messaging(records, web_root(settings), settings.prescriber_notice_seconds)
    records.observers.append(messaging.on_saved)
    records.guards.setdefault("Observation", []).append(ResultsIntake().guard)
    records.observers.append(calculations.on_saved)  # eGFR, LDL: written again with their inputs
    ImportedReports(base_url).attach(records)  # CR-BIOs from elsewhere: DocumentReference -> results
    feed = DmpFeed(records, dmp_client(settings), settings.dmp_history_months)
    records.observers.append(feed.on_saved)  # an INS qualified, an opposition changed: the DMP follows
    records.observers.append(PatientNotices(web_root(settings)).on_saved)  # a report she may now read
    transactions = Transactions(records, [PrescriptionIntake()], settings.default_page_size,
                                settings.max_page_size)
    return Services(records, transactions, messaging, feed)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    services: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        engine, reads = create_engine(settings), create_reads_engine(settings)
        built = build_services(engine, settings, reads)
        services.update(records=built.records, transactions=built.transactions,
                        messaging=built.messaging, reception=Reception(built.records, settings.partner_lab_finess),
                        desk=ResultsDesk(built.records),
                        issuing=Issuing(built.records, settings.dmp_url, web_root(settings), built.dmp_feed,
                                        settings.prescriber_notice_seconds),
                        shared_record=SharedRecord(built.records, dmp_client(settings)),
                        space=PatientSpace(built.records), trends=Trends(built.records),
                        access_trail=AccessTrail(built.records), prescriber_view=PrescriberView(built.records),
                        queues=LabQueues(built.records))
        services["sessions"] = WebSessions(engine, settings)
        async with httpx.AsyncClient(timeout=10) as http:
            verifier = TokenVerifier(settings.oidc_issuer, audience(settings), http)
            services["verifier"] = verifier
            services["oidc"] = OidcClient(verifier, settings.oidc_client_id,
                                          settings.oidc_client_secret,
                                          f"{web_root(settings)}/auth/callback")
            delivery = DeliveryWorker(engine, settings, jobs={RELEASE: services["issuing"].release_due,
                                                            DMP: built.dmp_feed.send})
            delivery.start()
            try:
                yield
            finally:
                await delivery.stop()
                await engine.dispose()
                if reads is not None:
                    await reads.dispose()

    def service(name: str) -> Provide:
        return Provide(lambda: services[name], sync_to_thread=False)

    secure = web_root(settings).startswith("https://")
    return Litestar(
        route_handlers=[FhirController, smart_configuration, AuthController, ReceptionController, PrescriberController,
                        EntryController, CatalogueController, DocumentsController, PatientController,
                        SharedRecordController, PatientArchiveController,
                        create_static_files_router("/static", [STATIC], send_as_attachment=False), favicon],
        lifespan=[lifespan],
        state=State({"settings": settings}),
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "records": service("records"),
            "transactions": service("transactions"),
            "reception": service("reception"),
            "messaging": service("messaging"),
            "desk": service("desk"),
            "issuing": service("issuing"),
            "shared_record": service("shared_record"),
            "space": service("space"),
            "trends": service("trends"),
            "access_trail": service("access_trail"),
            "prescriber_view": service("prescriber_view"),
            "queues": service("queues"),
            "verifier": service("verifier"),
            "oidc": service("oidc"),
            "caller": Provide(bearer_caller),
        },
        middleware=[ServerSessionConfig(  # static files need no session: no database round trip
            sessions=lambda: services["sessions"], key="bilan_session", max_age=settings.session_max_age,
            secure=secure, httponly=True, samesite="lax", exclude=[*API_PATHS, "^/static/", "^/favicon.ico$"]).middleware,
            NulGuard(settings.max_body_bytes)],
        before_send=[security_headers],
        csrf_config=CSRFConfig(secret=settings.session_secret, cookie_name="bilan_csrf",
                               cookie_secure=secure, cookie_samesite="lax", exclude=API_PATHS),
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine,
                                       engine_callback=filters.engine_callback),
        exception_handlers=handlers(error_page),
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
    )
