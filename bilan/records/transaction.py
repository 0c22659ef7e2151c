"""FHIR transaction Bundles: every write entry is checked, then all are stored at once, or
none; the read entries are answered after them (bilan/records/bundle_entries.py, which also
takes batch Bundles)."""

from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError

from bilan.auth import access
from bilan.auth.audit import patients_of
from bilan.auth.caller import Caller
from bilan.fhir.bundles import response_entry, transaction_response, version_of_etag
from bilan.fhir.outcomes import (
    Invalid,
    Issue,
    Stale,
    bad_request,
    conflict,
    errors_only,
    not_supported,
)
from bilan.fhir.references import ID
from bilan.records.bundle_entries import BundleEntries, is_read
from bilan.records.linking import Linker
from bilan.records.pipeline import Work, invalid
from bilan.records.service import Records, new_id
from bilan.storage.repository import Method, Repository, Stored, Write

METHODS = ("POST", "PUT", "DELETE")


@dataclass
class Entry:
    """One request of the Bundle and, once processed, what became of it."""

    index: int
    method: Method
    resource_type: str
    full_url: str | None
    resource: dict[str, Any] | None
    id: str | None = None
    if_none_exist: str | None = None
    if_match: int | None = None
    existing: Stored | None = None
    stored: Stored | None = None
    warnings: list[Issue] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"


class BundleRule(Protocol):
    """Domain rules over a whole transaction (e.g. one prescription)."""

    def check(self, entries: list[Entry]) -> list[Issue]:
        """Issues found without the database, before anything is stored."""

    async def before_write(self, repo: Repository, caller: Caller | None,
                           entries: list[Entry]) -> dict[str, Any] | None:
        """With references resolved, before storing: may amend entries, or return the stored
        answer of an identical Bundle received before (then nothing is written)."""

    async def after_write(self, work: Work, entries: list[Entry],
                          response: dict[str, Any]) -> None:
        """In the same unit of work, once every entry is stored."""


class Transactions:
    """POST [base]: transaction and batch Bundles."""

    def __init__(self, records: Records, rules: list[BundleRule], default_count: int = 20,
                 max_count: int = 500):
        self.records = records
        self.rules = rules
        self.one_by_one = BundleEntries(records, default_count, max_count)

    async def process(self, caller: Caller | None, bundle: dict[str, Any]) -> dict[str, Any]:
        if bundle.get("resourceType") != "Bundle":
            raise bad_request("POST /fhir takes a Bundle", "resourceType")
        if bundle.get("type") == "batch":
            return await self.one_by_one.batch(caller, bundle)
        if bundle.get("type") != "transaction":
            raise not_supported(f"Bundle.type is {bundle.get('type')!r}: this endpoint takes "
                                "type 'transaction' (all or nothing) or 'batch' (each entry on its own)")
        raw = bundle.get("entry") or []
        if not isinstance(raw, list) or not raw:
            raise bad_request("The transaction has no entry", "Bundle.entry")
        writes = [index for index, item in enumerate(raw) if not is_read(item)]
        written = await self._transaction(caller, bundle) if writes else transaction_response([])
        if len(writes) == len(raw):
            return written
        # FHIR's order: the reads come after every write, and see them.
        answers = dict(zip(writes, written["entry"]))
        for index, item in enumerate(raw):
            if index not in answers:
                answers[index] = await self.one_by_one.read(caller, index, item)
        return dict(written, entry=[answers[index] for index in range(len(raw))])

    async def _transaction(self, caller: Caller | None, bundle: dict[str, Any]) -> dict[str, Any]:
        """The writes of a transaction, all or nothing."""
        entries = self._read(bundle)
        for resource_type in sorted({e.resource_type for e in entries}):
            await self.records.check_write(caller, "transaction", resource_type)
        issues: list[Issue] = []
        for entry in entries:
            if entry.resource is not None:
                entry_issues = self.records.validator.check(entry.resource, f"{entry.path}.resource")
                issues.extend(entry_issues)
                entry.warnings.extend(i for i in entry_issues if i.severity == "warning")
        if not errors_only(issues):
            for rule in self.rules:
                issues.extend(rule.check(entries))
        if errors_only(issues):
            raise invalid(errors_only(issues))
        try:
            return await self._store(caller, entries)
        except IntegrityError:
            pass
        # A concurrent twin (the same prescription sent twice at once) committed first: start
        # again from the Bundle as sent; this time it finds what the twin stored.
        try:
            return await self._store(caller, self._read(bundle))
        except IntegrityError:
            raise conflict("The transaction collided with concurrent changes; send it again") from None

    def _read(self, bundle: dict[str, Any]) -> list[Entry]:
        """The write entries of a transaction (its reads are answered after them)."""
        raw = bundle["entry"]
        entries = [self._entry(index, item) for index, item in enumerate(raw) if not is_read(item)]
        for entry in entries:
            if isinstance(entry.resource, dict):
                entry.resource = self.records.validator.amend(entry.resource)
        full_urls = [e.full_url for e in entries if e.full_url]
        if len(full_urls) != len(set(full_urls)):
            raise bad_request("Two entries share a fullUrl", "Bundle.entry.fullUrl")
        targets: set[str] = set()
        for entry in entries:
            if entry.id is not None:
                if entry.reference in targets:
                    raise bad_request(f"Two entries write {entry.reference}", f"{entry.path}.request.url")
                targets.add(entry.reference)
        return entries

    def _entry(self, index: int, item: Any) -> Entry:
        path = f"Bundle.entry[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            raise bad_request("Each transaction entry needs a request (method and url)",
                              f"{path}.request")
        request = item["request"]
        method, url = request.get("method"), request.get("url")
        if method not in METHODS:
            raise not_supported(f"request.method {method!r} is not supported in a transaction; "
                                f"use GET, {', '.join(METHODS)}")
        if not isinstance(url, str) or not url:
            raise bad_request("request.url is required", f"{path}.request.url")
        parts = urlsplit(url).path.strip("/").split("/")
        resource = item.get("resource")
        entry = Entry(index, method, parts[0], item.get("fullUrl"), resource,
                      if_none_exist=request.get("ifNoneExist"),
                      if_match=_version(request.get("ifMatch"), f"{path}.request.ifMatch"))
        if method in ("POST", "PUT"):
            if not isinstance(resource, dict):
                raise bad_request(f"A {method} entry needs a resource", f"{path}.resource")
            if resource.get("resourceType") != entry.resource_type:
                raise bad_request(f"request.url names {entry.resource_type} but the resource is "
                                  f"a {resource.get('resourceType')}", f"{path}.request.url")
        if method in ("PUT", "DELETE"):
            if len(parts) != 2 or not ID.match(parts[1]):
                raise bad_request(f"A {method} entry's url must be Type/id", f"{path}.request.url")
            entry.id = parts[1]
            if method == "PUT" and isinstance(resource, dict) and resource.get("id") != entry.id:
                raise bad_request("The resource id must equal the id in request.url",
                                  f"{path}.resource.id")
        return entry

    async def _store(self, caller: Caller | None, entries: list[Entry]) -> dict[str, Any]:
        async with self.records.work(caller, "transaction") as work:
            repo = work.repo
            await self._resolve_identities(repo, caller, entries)
            await self._link(repo, caller, entries)
            for rule in self.rules:
                replayed = await rule.before_write(repo, caller, entries)
                if replayed is not None:
                    _note_found(work, entries)
                    return replayed
            writes = [_write(entry) for entry in entries if _writes(entry)]
            stored = iter(await work.write(writes))
            for entry in entries:
                if _writes(entry):
                    entry.stored = next(stored)
            _note_found(work, [e for e in entries if not _writes(e)])
            response = transaction_response([_response(e) for e in entries])
            for rule in self.rules:
                await rule.after_write(work, entries, response)
            return response

    async def _resolve_identities(self, repo: Repository, caller: Caller | None,
                                  entries: list[Entry]) -> None:
        conditional = [e for e in entries if e.method == "POST" and e.if_none_exist]
        found = await self.records.find_existing_many(
            repo, caller, [(e.resource_type, e.if_none_exist) for e in conditional if e.if_none_exist])
        for entry, existing in zip(conditional, found):
            entry.existing = existing
            entry.id = existing.id if existing else new_id()
        for entry in entries:
            if entry.method == "POST" and not entry.if_none_exist:
                entry.id = new_id()
            elif entry.method != "POST":
                assert entry.id is not None  # PUT and DELETE entries take theirs from request.url
                entry.existing = await repo.read(entry.resource_type, entry.id)
                if entry.existing is not None and not entry.existing.deleted:
                    await self.records.check_read(repo, caller, "transaction", entry.existing)
                _check_match(entry)

    async def _link(self, repo: Repository, caller: Caller | None, entries: list[Entry]) -> None:
        """Point every reference of the entries to write at its stored target."""
        local = {e.full_url: e.reference for e in entries if e.full_url and e.id}
        pending = {(e.resource_type, e.id) for e in entries if e.method != "DELETE" and e.id}
        linker = Linker(repo, self.records.base_url, local, pending,
                        findable=lambda t: access.findable(caller, t))
        issues: list[Issue] = []
        to_write = [e for e in entries if e.method != "DELETE" and _writes(e)]
        for entry in to_write:
            assert entry.resource is not None  # POST and PUT entries carry one (checked in _entry)
            issues.extend(await linker.check(entry.resource, f"{entry.path}.resource"))
        if issues:
            raise Invalid(issues)
        for entry in to_write:
            assert entry.resource is not None  # as above
            entry.resource = linker.apply({k: v for k, v in entry.resource.items() if k != "id"})


def _write(entry: Entry) -> Write:
    assert entry.id is not None  # every entry has one once identities are resolved
    current = entry.existing
    expected = current.version_id if current else None
    path = f"{entry.path}.resource"
    if entry.method == "DELETE":
        return Write(entry.resource_type, entry.id, None, "DELETE", expected, path=path)
    return Write(entry.resource_type, entry.id, entry.resource, entry.method, expected,
                 validated=True, path=path)


def _note_found(work: Work, entries: list[Entry]) -> None:
    """What the transaction matched without writing it (ifNoneExist), for the audit trail."""
    found = [e.existing for e in entries if e.existing is not None]
    if found:
        work.note("transaction", patients={p for s in found for p in patients_of(s.content)},
                  touched={f"{s.resource_type}/{s.id}" for s in found})


def _response(entry: Entry) -> dict[str, Any]:
    if entry.method == "DELETE":
        return response_entry("204 No Content")
    stored = entry.stored or entry.existing
    status = "201 Created" if entry.stored and entry.stored.version_id == 1 else "200 OK"
    return response_entry(status, stored, full_url=entry.full_url, warnings=entry.warnings)


def _writes(entry: Entry) -> bool:
    """Whether an entry stores a new version (a matched ifNoneExist or a no-op delete does not)."""
    if entry.method == "POST":
        return entry.existing is None
    if entry.method == "DELETE":
        return entry.existing is not None and not entry.existing.deleted
    return True


def _check_match(entry: Entry) -> None:
    if entry.if_match is None:
        return
    current = entry.existing
    if current is None or current.deleted or current.version_id != entry.if_match:
        raise Stale([Issue(
            f"{entry.reference} is not at version {entry.if_match}", "conflict",
            expression=f"{entry.path}.request.ifMatch")])


def _version(etag: Any, path: str) -> int | None:
    if etag is None:
        return None
    version = version_of_etag(etag)
    if version is None:
        raise bad_request(f"ifMatch {etag!r} is not an ETag such as W/\"3\"", path)
    return version

