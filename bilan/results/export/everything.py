"""Everything of a patient's that the caller may see: her Patient records, her current reports
(DocumentReference), the DiagnosticReports and the results (Observation) — what
Patient/$everything answers and what her archive holds (bilan/results/export/archive.py).

A patient's own data spans every Patient record with her INS (one per lab or practice that
knows her): whichever of her records she names, she gets all of it, as in her space. A
professional gets what the access rules let them read of the named record (a prescriber: the
results of the prescriptions he wrote). Masked reports are absent, as everywhere
(bilan/auth/access.py). Read through the records service, in one transaction, audited."""

from dataclasses import dataclass
from typing import Any

from bilan.auth import access
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.auth.policy import forbidden
from bilan.fhir.bundles import searchset
from bilan.fhir.outcomes import not_found
from bilan.fhir.query import parse_search
from bilan.records.service import Records
from bilan.storage import search as store_search
from bilan.storage.repository import Repository, Stored

TYPES = ("DocumentReference", "DiagnosticReport", "Observation")
MOST = 5000  # of each type: more than any one patient's history holds
WITHDRAWN = ("entered-in-error",)


@dataclass(frozen=True)
class Everything:
    patients: list[Stored]
    documents: list[Stored]  # current DocumentReferences: her reports
    reports: list[Stored]  # DiagnosticReports
    observations: list[Stored]

    @property
    def resources(self) -> list[Stored]:
        return [*self.patients, *self.documents, *self.reports, *self.observations]


async def everything(records: Records, caller: Caller, patient_id: str | None = None) -> Everything:
    """What the caller may see of the patient `patient_id` (None: the patient caller herself);
    403 or 404 when the caller may not see that Patient."""
    async with records.work(caller) as work:
        repo = work.repo
        named = None
        if patient_id is not None:
            named = await records.read_for(repo, caller, "read", "Patient", patient_id)
            if named is None:
                raise not_found("Patient", patient_id)
        if caller.kind == "patient":  # hers, whichever of her records she named
            about: list[tuple[str, str]] = []
            patients = await _search(repo, records, caller, "Patient", [])
        elif named is not None:
            about = [("patient", f"Patient/{named.id}")]
            patients = [named]
        else:
            raise forbidden("Only a patient has data of her own to export.")
        documents = await _search(repo, records, caller, "DocumentReference", [*about, ("status", "current")])
        reports = await _search(repo, records, caller, "DiagnosticReport", about)
        observations = [o for o in await _search(repo, records, caller, "Observation", about)
                        if o.content.get("status") not in WITHDRAWN]
        found = Everything(patients, documents, reports, observations)
        work.note("search-type", touched=[f"{s.resource_type}/{s.id}" for s in found.resources],
                  patients={p for s in found.resources for p in patients_of(s.content)},
                  query=f"Patient/{patient_id or ''}/$everything")
    return found


def everything_bundle(base_url: str, patient_id: str, found: Everything) -> dict[str, Any]:
    """Patient/$everything's answer: a searchset of every resource found."""
    matches = found.resources
    return searchset(base_url, f"Patient/{patient_id}/$everything", [], len(matches), 0, len(matches),
                     matches, [])


async def _search(repo: Repository, records: Records, caller: Caller, resource_type: str,
                  params: list[tuple[str, str]]) -> list[Stored]:
    query = parse_search(resource_type, params, default_count=MOST, max_count=MOST)
    result = await store_search.search(repo.conn, query, records.base_url,
                                       lambda t: access.readable(caller, t))
    return result.matches
