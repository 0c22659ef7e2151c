"""FHIR interactions on stored resources: validate, then store in one transaction."""

import base64
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan.auth import access, policy
from bilan.auth.audit import OUTCOME_DENIED, OUTCOME_SUCCESS, audit_events, patients_of
from bilan.auth.caller import Caller
from bilan.fhir.dates import utc_now
from bilan.fhir.outcomes import (
    FhirError,
    Invalid,
    Issue,
    NotFound,
    bad_request,
    conflict,
    errors_only,
    gone,
    not_found,
    precondition_failed,
)
from bilan.fhir.query import SearchQuery
from bilan.records.linking import Linker, conditional_query
from bilan.records.pipeline import Denied, Observer, Work, invalid
from bilan.records.validation import Validator
from bilan.storage import audit_log
from bilan.storage import search as store_search
from bilan.storage.read_audit import ReadAudit
from bilan.storage.repository import Repository, StaleVersion, Stored, Write
from bilan.storage.search import SearchResult


@dataclass(frozen=True)
class Saved:
    stored: Stored
    created: bool
    warnings: tuple[Issue, ...] = ()


# A guard sees a resource about to be written (references resolved) with its caller and the
# open transaction: it refuses it (FhirError, Denied) or returns it, possibly completed.
Guard = Callable[[Repository, Caller | None, dict[str, Any]], Awaitable[dict[str, Any]]]


AUDIT = "AuditEvent"  # served from the audit trail's own tables (bilan/storage/audit_log.py)


def new_id() -> str:
    return str(uuid.uuid4())


def _identified_events(caller: Caller, interaction: str, outcome: str, patients: Iterable[str],
                       touched: Iterable[str], query: str | None,
                       detail: str | None) -> tuple[list[dict[str, Any]], datetime]:
    """The AuditEvents of an access happening now, each with its id, and that moment."""
    now = utc_now()
    events = audit_events(caller, interaction, outcome, now, patients, touched, query, detail)
    return [dict(event, id=new_id()) for event in events], now


class Records:
    """Every interaction takes the caller: `None` only for bilan's own code (demo loader,
    migrations of data), never for a request."""

    def __init__(self, engine: AsyncEngine, validator: Validator, base_url: str,
                 observers: Iterable[Observer] = (), reads: AsyncEngine | None = None):
        self.engine = engine
        self.reads = reads  # bilan/storage/database.py create_reads_engine; None: reads in a unit
        self.read_audit = ReadAudit(reads or engine, transactions=reads is None)
        self.validator = validator
        self.base_url = base_url
        self.observers = list(observers)  # told of every write, in its transaction
        self.guards: dict[str, list[Guard]] = {}  # per resource type, see Guard

    async def guarded(self, repo: Repository, caller: Caller | None,
                      resource: dict[str, Any]) -> dict[str, Any]:
        for guard in self.guards.get(resource["resourceType"], ()):
            resource = await guard(repo, caller, resource)
        return resource

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Repository]:
        """One database transaction; storage conflicts become FHIR errors here, and a refusal
        is recorded once the refused transaction has rolled back."""
        try:
            async with self.engine.begin() as conn:
                yield Repository(conn)
        except StaleVersion as exc:
            raise conflict(f"{exc.resource_type}/{exc.resource_id} was changed by someone else: "
                           "read it again and retry") from None
        except Denied as denial:
            raise await self.denied(denial.caller, denial.interaction, denial.error,
                                    denial.touched, denial.patients) from None

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Repository]:
        """A read, through the reads engine (each statement its own transaction) or in a unit.
        Its audit rows follow it (audit_read) before its answer leaves."""
        if self.reads is None:
            async with self.unit() as repo:
                yield repo
            return
        try:
            async with self.reads.connect() as conn:
                yield Repository(conn)
        except Denied as denial:
            raise await self.denied(denial.caller, denial.interaction, denial.error,
                                    denial.touched, denial.patients) from None

    @asynccontextmanager
    async def work(self, caller: Caller | None, interaction: str | None = None) -> AsyncIterator[Work]:
        """One unit of work (bilan/records/pipeline.py): its writes go through the pipeline,
        and what it noted is audited in its transaction when it ends (its writes as
        `interaction` when given, e.g. "transaction")."""
        async with self.unit() as repo:
            work = Work(self, repo, caller, utc_now(), interaction)
            yield work
            for noted in work.audited():
                await self.audit(repo, caller, noted.interaction, patients=noted.patients,
                                 touched=noted.touched, query=noted.query, detail=noted.detail)

    async def audit(self, repo: Repository, caller: Caller | None, interaction: str, *,
                    patients: Iterable[str] = (), touched: Iterable[str] = (),
                    query: str | None = None, outcome: str = OUTCOME_SUCCESS,
                    detail: str | None = None) -> None:
        """Record the access in the caller's transaction, so it is stored with what it
        describes: an event per patient, that names no other (bilan/auth/audit.py)."""
        if caller is None:
            return
        events, now = _identified_events(caller, interaction, outcome, patients, touched, query, detail)
        await audit_log.append(repo.conn, [(event, now) for event in events])

    async def audit_read(self, caller: Caller | None, interaction: str, *,
                         patients: Iterable[str] = (), touched: Iterable[str] = (),
                         query: str | None = None) -> None:
        """Record a read once it is done, committed with the other reads' of the moment
        (bilan/storage/read_audit.py); the read is answered after this returns."""
        if caller is None:
            return
        await self.read_audit.append(*_identified_events(caller, interaction, OUTCOME_SUCCESS, patients,
                                                         touched, query, None))

    async def denied(self, caller: Caller | None, interaction: str, error: FhirError,
                     touched: Iterable[str] = (), patients: Iterable[str] = ()) -> FhirError:
        """Record a refused access (in its own transaction: the refused one rolls back)."""
        async with self.unit() as repo:
            await self.audit(repo, caller, interaction, touched=touched, patients=patients,
                             outcome=OUTCOME_DENIED, detail=str(error))
        return error

    async def record_session(self, caller: Caller, interaction: str) -> None:
        """Audit a login or logout; a patient's lands in their own trail."""
        async with self.unit() as repo:
            patients: set[str] = set()
            if caller.kind == "patient":
                found = await store_search.search(repo.conn, SearchQuery("Patient", count=5),
                                                  self.base_url, lambda t: access.visible(caller, t))
                patients = {f"Patient/{s.id}" for s in found.matches}
            await self.audit(repo, caller, interaction, patients=patients)

    async def read(self, caller: Caller | None, resource_type: str, resource_id: str) -> Stored:
        if resource_type == AUDIT:
            return await self._read_event(caller, resource_id)
        async with self.reading() as repo:
            allowed = access.visible(caller, resource_type) if caller else None
            stored, seen = await repo.read_seen(resource_type, resource_id, allowed)
            found = _live(stored, resource_type, resource_id)
            self.refuse_unseen(caller, "read", found, seen)
        await self.audit_read(caller, "read", patients=patients_of(found.content),
                              touched=[f"{resource_type}/{resource_id}"])
        return found

    async def attachment(self, caller: Caller | None, attachment: dict[str, Any]) -> bytes:
        """An Attachment's bytes: inline, or in the Binary its url names (read as the caller)."""
        if attachment.get("data"):
            return base64.b64decode(attachment["data"])
        url = str(attachment.get("url", ""))
        if not url.startswith("Binary/"):
            raise NotFound([Issue("This attachment is neither inline nor a Binary of bilan's",
                                        "not-found")])
        binary = await self.read(caller, "Binary", url.removeprefix("Binary/"))
        return base64.b64decode(binary.content.get("data", ""))

    async def vread(self, caller: Caller | None, resource_type: str, resource_id: str,
                    version: str) -> Stored:
        if not version.isdigit() or (resource_type == AUDIT and version != "1"):
            raise not_found(resource_type, f"{resource_id}/_history/{version}")
        if resource_type == AUDIT:  # an event has one version
            return await self._read_event(caller, resource_id, "vread")
        async with self.reading() as repo:
            found = await repo.read_version(resource_type, resource_id, int(version))
            if found is None:
                raise not_found(resource_type, f"{resource_id}/_history/{version}")
            await self.check_read(repo, caller, "vread", found)
        await self.audit_read(caller, "vread", patients=patients_of(found.content),
                              touched=[f"{resource_type}/{resource_id}"])
        if found.deleted:
            raise gone(resource_type, f"{resource_id}/_history/{version}")
        return found

    async def history(self, caller: Caller | None, resource_type: str, resource_id: str | None,
                      count: int, offset: int) -> tuple[int, list[Stored]]:
        interaction = "history-instance" if resource_id else "history-type"
        if resource_type == AUDIT:  # never changed: its history is itself, or the trail
            if resource_id is not None:
                return 1, [await self._read_event(caller, resource_id, interaction)]
            found = await self.search(caller, SearchQuery(AUDIT, count=count, offset=offset))
            return found.total, found.matches
        async with self.reading() as repo:
            if resource_id is not None:
                current = await repo.read(resource_type, resource_id)
                if current is None:
                    raise not_found(resource_type, resource_id)
                await self.check_read(repo, caller, interaction, current)
            elif caller is not None:
                _require_read_scope(caller, interaction, resource_type)
            allowed = access.readable(caller, resource_type) if caller else None
            total, versions = await repo.history(resource_type, resource_id, count, offset, allowed)
        await self.audit_read(caller, interaction,
                              patients={p for v in versions for p in patients_of(v.content)},
                              touched={f"{v.resource_type}/{v.id}" for v in versions})
        return total, versions

    async def search(self, caller: Caller | None, query: SearchQuery,
                     query_text: str = "") -> SearchResult:
        restrict = (lambda t: access.readable(caller, t)) if caller else store_search.everything
        async with self.reading() as repo:
            if caller is not None:
                _require_read_scope(caller, "search-type", query.resource_type)
            if query.resource_type == AUDIT:
                trail = access.trail_of(caller) if caller else None
                result = await audit_log.search(repo.conn, query, self.base_url, trail)
            else:
                result = await store_search.search(repo.conn, query, self.base_url, restrict)
        found = result.matches + result.included
        await self.audit_read(caller, "search-type",
                              patients={p for s in found for p in patients_of(s.content)},
                              query=f"{query.resource_type}?{query_text}")
        return result

    async def _read_event(self, caller: Caller | None, event_id: str,
                          interaction: str = "read") -> Stored:
        """An AuditEvent of the trail, if the caller may read it (a 403 otherwise, itself
        recorded)."""
        reference = f"{AUDIT}/{event_id}"
        async with self.reading() as repo:
            found = await audit_log.read(repo.conn, event_id, None)
            if found is None:
                raise not_found(AUDIT, event_id)
            patients = {f"Patient/{p}" for p in audit_log.patients_named(found.content)}
            if caller is not None:
                _require_read_scope(caller, interaction, AUDIT, [reference], patients)
                if await audit_log.read(repo.conn, event_id, access.trail_of(caller)) is None:
                    raise Denied(caller, interaction, policy.forbidden(f"{reference} is not yours to see"),
                                 [reference], patients)
        await self.audit_read(caller, interaction, patients=patients, touched=[reference])
        return found

    async def create(self, caller: Caller | None, resource: dict[str, Any],
                     if_none_exist: str | None = None) -> Saved:
        resource = {k: v for k, v in resource.items() if k != "id"}
        resource_type = resource["resourceType"]
        await self.check_write(caller, "create", resource_type)
        issues = self.validator.check(resource)
        if errors_only(issues):
            raise invalid(issues)
        resource = self.validator.amend(resource)
        async with self.work(caller) as work:
            if if_none_exist:
                existing = await self.find_existing(work.repo, caller, resource_type, if_none_exist)
                if existing is not None:
                    work.note("create", patients=patients_of(existing.content),
                              touched=[f"{resource_type}/{existing.id}"])
                    return Saved(existing, created=False)
            resource = await self._linked(work.repo, caller, resource)
            [stored] = await work.write([Write(resource_type, new_id(), resource, "POST",
                                               validated=True)])
        return Saved(stored, created=True, warnings=tuple(issues))

    async def update(self, caller: Caller | None, resource_type: str, resource_id: str,
                     resource: dict[str, Any], if_match: int | None = None) -> Saved:
        if resource.get("resourceType") != resource_type:
            raise bad_request(f"The body is a {resource.get('resourceType')}, the URL names "
                              f"{resource_type}", "resourceType")
        if resource.get("id") != resource_id:
            raise bad_request(f"The body's id ({resource.get('id')}) must equal the URL's "
                              f"({resource_id})", f"{resource_type}.id")
        await self.check_write(caller, "update", resource_type)
        issues = self.validator.check(resource)
        if errors_only(issues):
            raise invalid(issues)
        resource = self.validator.amend(resource)
        try:
            async with self.work(caller) as work:
                current = await work.repo.read(resource_type, resource_id)
                if current is not None and not current.deleted:
                    await self.check_read(work.repo, caller, "update", current)
                _check_version(current, if_match, resource_type, resource_id)
                resource = await self._linked(work.repo, caller, resource)
                expected = current.version_id if current else None
                [stored] = await work.write([Write(resource_type, resource_id, resource, "PUT",
                                                   expected, validated=True)])
        except IntegrityError:
            raise conflict(f"{resource_type}/{resource_id} was created concurrently") from None
        return Saved(stored, created=current is None or current.deleted, warnings=tuple(issues))

    async def delete(self, caller: Caller | None, resource_type: str, resource_id: str) -> None:
        await self.check_write(caller, "delete", resource_type)
        async with self.work(caller) as work:
            current = await work.repo.read(resource_type, resource_id)
            if current is None or current.deleted:
                return  # deleting nothing, or twice, succeeds (FHIR: idempotent)
            await self.check_read(work.repo, caller, "delete", current)
            await work.write([Write(resource_type, resource_id, None, "DELETE", current.version_id)])

    async def check_write(self, caller: Caller | None, interaction: str, resource_type: str) -> None:
        if caller is None:
            return
        try:
            policy.check_type(caller, resource_type)
        except FhirError as error:
            raise await self.denied(caller, interaction, error) from None

    async def check_read(self, repo: Repository, caller: Caller | None, interaction: str,
                         stored: Stored, expression: str | None = None) -> None:
        """The caller may see this resource, or a 403 (naming `expression`, the element that
        points to it, if any; recorded in the audit trail of the patient concerned) stops the
        interaction."""
        if caller is None:
            return
        seen = await repo.can_see(stored.resource_type, stored.id,
                                  access.visible(caller, stored.resource_type))
        self.refuse_unseen(caller, interaction, stored, seen, expression)

    @staticmethod
    def refuse_unseen(caller: Caller | None, interaction: str, stored: Stored, seen: bool,
                      expression: str | None = None) -> None:
        """check_read, once whether the caller can see the resource is known."""
        if caller is None:
            return
        reference = f"{stored.resource_type}/{stored.id}"
        patients = patients_of(stored.content)
        _require_read_scope(caller, interaction, stored.resource_type, [reference], patients)
        if not seen:
            error = policy.forbidden(f"{reference} is not yours to see", expression)
            raise Denied(caller, interaction, error, [reference], patients)

    async def read_for(self, repo: Repository, caller: Caller | None, interaction: str,
                       resource_type: str, resource_id: str) -> Stored | None:
        """A live resource inside the caller's transaction, once check_read let it through;
        None when it does not exist or was deleted."""
        found = await repo.read(resource_type, resource_id)
        if found is None or found.deleted:
            return None
        await self.check_read(repo, caller, interaction, found)
        return found

    async def find_existing(self, repo: Repository, caller: Caller | None, resource_type: str,
                            criteria: str) -> Stored | None:
        """The one resource If-None-Exist criteria select, None if none; 412 if several."""
        [found] = await self.find_existing_many(repo, caller, [(resource_type, criteria)])
        return found

    async def find_existing_many(self, repo: Repository, caller: Caller | None,
                                 wanted: list[tuple[str, str]]) -> list[Stored | None]:
        """find_existing for several (type, criteria) at once.

        What is found needs no lock. For what is not, a lock on its criteria, held until
        commit, then a second look: two requests creating the same new resource at once make
        one resource, while requests naming a known one (the same prescriber, again and again)
        never wait for each other. Only what the caller may read matches (access.findable):
        a hidden resource is never returned, nor its id.
        """
        if not wanted:
            return []
        queries = [conditional_query(rtype, criteria) for rtype, criteria in wanted]
        findable = lambda t: access.findable(caller, t)  # noqa: E731
        results = await store_search.first_matches_many(repo.conn, queries, self.base_url, findable)
        missing = [n for n, found in enumerate(results) if not found]
        if missing:
            await repo.lock_many([f"{wanted[n][0]}?{wanted[n][1]}" for n in missing])
            again = await store_search.first_matches_many(
                repo.conn, [queries[n] for n in missing], self.base_url, findable)
            for n, found in zip(missing, again):
                results[n] = found
        for (rtype, criteria), found in zip(wanted, results):
            if len(found) > 1:
                raise precondition_failed(f"If-None-Exist {rtype}?{criteria} matches several "
                                          "resources")
        return [found[0] if found else None for found in results]

    async def _linked(self, repo: Repository, caller: Caller | None,
                      resource: dict[str, Any]) -> dict[str, Any]:
        linker = Linker(repo, self.base_url, findable=lambda t: access.findable(caller, t))
        issues = await linker.check(resource, resource["resourceType"])
        if issues:
            raise Invalid(issues)
        return linker.apply(resource)


def _require_read_scope(caller: Caller, interaction: str, resource_type: str,
                        touched: list[str] | None = None, patients: Iterable[str] = ()) -> None:
    try:
        policy.check_scope(caller, resource_type, "read")
    except FhirError as error:
        raise Denied(caller, interaction, error, touched or [], patients) from None


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
