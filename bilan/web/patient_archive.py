"""GET /patient/archive.zip: everything the logged-in patient may see, in one download
(bilan/results/export/archive.py holds what goes in it)."""

from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Response

from bilan.records.service import Records
from bilan.results.export import patient_archive
from bilan.settings import Settings
from bilan.web.patient import patient

AnyRequest = Request[Any, Any, Any]


class PatientArchiveController(Controller):
    path = "/patient"

    @get("/archive.zip")
    async def archive(self, request: AnyRequest, settings: NamedDependency[Settings],
                      records: NamedDependency[Records]) -> Response[bytes]:
        _, caller = patient(request, settings)
        return Response(await patient_archive(records, caller), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="mes-donnees-bilan.zip"',
                                 "Cache-Control": "no-store"})
