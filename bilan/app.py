"""The Litestar application: wiring of settings, storage, services and routes."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.api.errors import HANDLERS
from bilan.api.fhir import FhirController
from bilan.prescription.exams import check_request
from bilan.prescription.ins import check_patient
from bilan.prescription.intake import PrescriptionIntake
from bilan.prescription.practitioners import check_practitioner
from bilan.records.service import Records
from bilan.records.transaction import Transactions
from bilan.records.validation import Validator
from bilan.settings import Settings, get_settings
from bilan.storage.database import create_engine

RULES = {
    "Patient": [check_patient],
    "Practitioner": [check_practitioner],
    "ServiceRequest": [check_request],
}


def build_services(engine: AsyncEngine, settings: Settings) -> tuple[Records, Transactions]:
    records = Records(engine, Validator(RULES), settings.base_url.rstrip("/"))
    return records, Transactions(records, [PrescriptionIntake()])


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    services: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings)
        services["records"], services["transactions"] = build_services(engine, settings)
        try:
            yield
        finally:
            await engine.dispose()

    return Litestar(
        route_handlers=[FhirController],
        lifespan=[lifespan],
        dependencies={
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "records": Provide(lambda: services["records"], sync_to_thread=False),
            "transactions": Provide(lambda: services["transactions"], sync_to_thread=False),
        },
        exception_handlers=HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
    )
