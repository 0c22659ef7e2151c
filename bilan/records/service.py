"""FHIR interactions on stored resources: validate, then store in one transaction."""

import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.fhir.dates import utc_now
from bilan.fhir.outcomes import (
    FhirError, Issue, bad_request, conflict, errors_only, gone, not_found, precondition_failed,
)
from bilan.fhir.query import SearchQuery
from bilan.records.linking import Linker, conditional_query
from bilan.records.validation import Validator, is_structural
from bilan.storage import search as store_search
from bilan.storage.repository import Repository, StaleVersion, Stored, Write
from bilan.storage.search import SearchResult


@dataclass(frozen=True)
class Saved:
    stored: Stored
    created: bool
    warnings: tuple[Issue, ...] = ()


def new_id() -> str:
    return str(uuid.uuid4())


def invalid(issues: list[Issue]) -> FhirError:
    """400 for a resource that is not well-formed FHIR, 422 for one that breaks a rule."""
    return FhirError(400 if is_structural(issues) else 422, issues)


class Records:
    def __init__(self, engine: AsyncEngine, validator: Validator, base_url: str):
        self.engine = engine
        self.validator = validator
        self.base_url = base_url

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Repository]:
        """One database transaction; storage conflicts become FHIR errors here."""
        try:
            async with self.engine.begin() as conn:
                yield Repository(conn)
        except StaleVersion as exc:
            raise conflict(f"{exc.resource_type}/{exc.resource_id} was changed by someone else: "
                           "read it again and retry") from None

    async def read(self, resource_type: str, resource_id: str) -> Stored:
        async with self.unit() as repo:
            found = await repo.read(resource_type, resource_id)
        return _live(found, resource_type, resource_id)

    async def vread(self, resource_type: str, resource_id: str, version: str) -> Stored:
        if not version.isdigit():
            raise not_found(resource_type, f"{resource_id}/_history/{version}")
        async with self.unit() as repo:
            found = await repo.read_version(resource_type, resource_id, int(version))
        if found is None:
            raise not_found(resource_type, f"{resource_id}/_history/{version}")
        if found.deleted:
            raise gone(resource_type, f"{resource_id}/_history/{version}")
        return found

    async def history(self, resource_type: str, resource_id: str | None, count: int,
                      offset: int) -> tuple[int, list[Stored]]:
        async with self.unit() as repo:
            if resource_id is not None and await repo.read(resource_type, resource_id) is None:
                raise not_found(resource_type, resource_id)
            return await repo.history(resource_type, resource_id, count, offset)

    async def search(self, query: SearchQuery) -> SearchResult:
        async with self.unit() as repo:
            return await store_search.search(repo.conn, query, self.base_url)

    async def create(self, resource: dict[str, Any], if_none_exist: str | None = None) -> Saved:
        resource = {k: v for k, v in resource.items() if k != "id"}
        issues = self.validator.check(resource)
        if errors_only(issues):
            raise invalid(issues)
        resource_type = resource["resourceType"]
        async with self.unit() as repo:
            if if_none_exist:
                existing = await self.find_existing(repo, resource_type, if_none_exist)
                if existing is not None:
                    return Saved(existing, created=False)
            resource = await self._linked(repo, resource)
            [stored] = await repo.save([Write(resource_type, new_id(), resource, "POST")], utc_now())
        return Saved(stored, created=True, warnings=tuple(issues))

    async def update(self, resource_type: str, resource_id: str, resource: dict[str, Any],
                     if_match: int | None = None) -> Saved:
        if resource.get("resourceType") != resource_type:
            raise bad_request(f"The body is a {resource.get('resourceType')}, the URL names "
                              f"{resource_type}", "resourceType")
        if resource.get("id") != resource_id:
            raise bad_request(f"The body's id ({resource.get('id')}) must equal the URL's "
                              f"({resource_id})", f"{resource_type}.id")
        issues = self.validator.check(resource)
        if errors_only(issues):
            raise invalid(issues)
        async with self.unit() as repo:
            current = await repo.read(resource_type, resource_id)
            _check_version(current, if_match, resource_type, resource_id)
            resource = await self._linked(repo, resource)
            expected = current.version_id if current else None
            try:
                [stored] = await repo.save(
                    [Write(resource_type, resource_id, resource, "PUT", expected)], utc_now())
            except IntegrityError:
                raise conflict(f"{resource_type}/{resource_id} was created concurrently") from None
        return Saved(stored, created=current is None or current.deleted, warnings=tuple(issues))

    async def delete(self, resource_type: str, resource_id: str) -> None:
        async with self.unit() as repo:
            current = await repo.read(resource_type, resource_id)
            if current is None or current.deleted:
                return  # deleting nothing, or twice, succeeds (FHIR: idempotent)
            await repo.save([Write(resource_type, resource_id, None, "DELETE",
                                   current.version_id)], utc_now())

    async def find_existing(self, repo: Repository, resource_type: str, criteria: str) -> Stored | None:
        """The one resource If-None-Exist criteria select, None if none; 412 if several."""
        [found] = await self.find_existing_many(repo, [(resource_type, criteria)])
        return found

    async def find_existing_many(self, repo: Repository,
                                 wanted: list[tuple[str, str]]) -> list[Stored | None]:
        """find_existing for several (type, criteria) at once: one lock and one query.

        The lock on each criteria is held until commit, so two requests creating the same new
        resource at once make one resource.
        """
        if not wanted:
            return []
        await repo.lock_many([f"{rtype}?{criteria}" for rtype, criteria in wanted])
        queries = [conditional_query(rtype, criteria) for rtype, criteria in wanted]
        results = await store_search.first_matches_many(repo.conn, queries, self.base_url)
        for (rtype, criteria), found in zip(wanted, results):
            if len(found) > 1:
                raise precondition_failed(f"If-None-Exist {rtype}?{criteria} matches several "
                                          "resources")
        return [found[0] if found else None for found in results]

    async def _linked(self, repo: Repository, resource: dict[str, Any]) -> dict[str, Any]:
        linker = Linker(repo, self.base_url)
        issues = await linker.check(resource, resource["resourceType"])
        if issues:
            raise FhirError(422, issues)
        return linker.apply(resource)


def _live(found: Stored | None, resource_type: str, resource_id: str) -> Stored:
    if found is None:
        raise not_found(resource_type, resource_id)
    if found.deleted:
        raise gone(resource_type, resource_id)
    return found


def _check_version(current: Stored | None, if_match: int | None, resource_type: str,
                   resource_id: str) -> None:
    if if_match is None:
        return
    if current is None or current.deleted:
        raise precondition_failed(f"If-Match names version {if_match} of {resource_type}/"
                                  f"{resource_id}, which does not exist")
    if current.version_id != if_match:
        raise precondition_failed(f"{resource_type}/{resource_id} is at version "
                                  f"{current.version_id}, not {if_match}: read it again")
