"""The lab's catalogue to download, for its staff (bilan/prescription/lab_catalogue.py): the two
files `bilan catalogue` loads, as `bilan catalogue --export` writes them."""

from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.response import Response

from bilan.prescription.catalogue import RANGES_FILE
from bilan.prescription.lab_catalogue import CATALOGUE_FILE, CatalogueFiles, LabCatalogue
from bilan.records.service import Records
from bilan.settings import Settings
from bilan.web.reception import AnyRequest, signed_in


def provide_catalogue(records: NamedDependency[Records]) -> LabCatalogue:
    return LabCatalogue(records)


class CatalogueController(Controller):
    path = "/reception"
    dependencies = {"lab_catalogue": Provide(provide_catalogue, sync_to_thread=False)}

    @get(f"/{CATALOGUE_FILE}")
    async def entries(self, request: AnyRequest, settings: NamedDependency[Settings],
                      lab_catalogue: NamedDependency[LabCatalogue]) -> Response[bytes]:
        return _download(await _files(request, settings, lab_catalogue), CATALOGUE_FILE)

    @get(f"/{RANGES_FILE}")
    async def ranges(self, request: AnyRequest, settings: NamedDependency[Settings],
                     lab_catalogue: NamedDependency[LabCatalogue]) -> Response[bytes]:
        return _download(await _files(request, settings, lab_catalogue), RANGES_FILE)


async def _files(request: AnyRequest, settings: Settings, lab_catalogue: LabCatalogue) -> CatalogueFiles:
    _, caller = signed_in(request, settings)
    return await lab_catalogue.export(caller)


def _download(files: CatalogueFiles, name: str) -> Response[bytes]:
    return Response(files.named()[name].encode(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
