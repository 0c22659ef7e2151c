"""The lab's catalogue given back as the two files it is loaded from (catalogue.csv and
ranges.csv, bilan/prescription/catalogue.py): `bilan catalogue --export` writes them for the
operator, the reception's pages offer them to the lab's staff. Loading them into another bilan
gives the same catalogue: the reversibility a lab changing software needs."""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from bilan.auth.caller import Caller
from bilan.prescription.catalogue import RANGES_FILE, write_csv, write_ranges
from bilan.records.service import Records
from bilan.storage import catalogue

CATALOGUE_FILE = "catalogue.csv"


@dataclass(frozen=True)
class CatalogueFiles:
    catalogue: str  # catalogue.csv's text
    ranges: str  # ranges.csv's text
    count: int  # entries

    def named(self) -> dict[str, str]:
        """Each file's text by its name."""
        return {CATALOGUE_FILE: self.catalogue, RANGES_FILE: self.ranges}


async def catalogue_files(conn: AsyncConnection) -> CatalogueFiles:
    entries, bands = await catalogue.everything(conn)
    return CatalogueFiles(write_csv(entries), write_ranges(bands), len(entries))


class LabCatalogue:
    def __init__(self, records: Records):
        self.records = records

    async def export(self, caller: Caller) -> CatalogueFiles:
        """The catalogue's files, for the lab's staff only (the reception rule)."""
        async with self.records.work(caller) as work:
            work.allow("reception")
            return await catalogue_files(work.repo.conn)
