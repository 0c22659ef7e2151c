"""The directory bilan holds: practitioners by RPPS, labs and practices by FINESS, and the
practitioner behind a requester (a Practitioner, or a PractitionerRole and then its
Practitioner)."""

from typing import Any

from bilan.auth.access import ORGANIZATION_ID
from bilan.fhir.query import parse_search
from bilan.fhir.terminology import FINESS
from bilan.prescription.practitioners import RPPS
from bilan.storage import search as store_search
from bilan.storage.repository import Repository, Stored


async def practitioner_by_rpps(repo: Repository, base_url: str, rpps: str) -> Stored | None:
    return await _one(repo, base_url, "Practitioner", f"{RPPS}|{rpps}")


async def organization_by_finess(repo: Repository, base_url: str, finess: str) -> Stored | None:
    """The Organization with this FINESS, as its national structure id ("1" + FINESS) or as
    the FINESS itself."""
    return (await _one(repo, base_url, "Organization", f"{ORGANIZATION_ID}|1{finess}")
            or await _one(repo, base_url, "Organization", f"{FINESS}|{finess}"))


async def practitioner_of(repo: Repository, reference: str) -> dict[str, Any]:
    """The Practitioner a requester reference stands for ({} when unknown)."""
    found = await repo.read_reference(reference)
    content = found.content if found and found.content else {}
    if content.get("resourceType") == "PractitionerRole":
        return await practitioner_of(repo, (content.get("practitioner") or {}).get("reference", ""))
    return content


async def _one(repo: Repository, base_url: str, resource_type: str, identifier: str) -> Stored | None:
    query = parse_search(resource_type, [("identifier", identifier)], default_count=1, max_count=1)
    found = await store_search.first_matches(repo.conn, query, base_url)
    return found[0] if found and found[0].content else None
