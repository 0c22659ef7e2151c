"""Bundle entries answered one by one: the reads (GET) of a batch or a transaction, and every
entry of a batch. Each is the REST interaction its request names, asked as the caller (the
same access rules and audit trail as over HTTP), and its answer, or its refusal, sits in its
own entry of the response."""

from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bilan.api.statuses import status_of
from bilan.auth.caller import Caller
from bilan.fhir.bundles import history, response_entry, searchset, version_of_etag
from bilan.fhir.outcomes import FhirError, Issue, NotFound, bad_request, operation_outcome
from bilan.fhir.query import check_bounds, parse_search, whole_number
from bilan.fhir.references import ID
from bilan.fhir.searchparams import RESOURCE_TYPES
from bilan.records.service import Records

READS = ("GET",)
FORMAT_PARAMS = ("_format", "_pretty")


@dataclass(frozen=True)
class Request:
    """One entry's request: where it sits, its method, and its url split into path and query."""

    index: int
    method: str
    path: list[str]
    query: str
    item: dict[str, Any]

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def is_read(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("request"), dict) \
        and item["request"].get("method") in READS


def failed(error: FhirError, where: str | None = None) -> dict[str, Any]:
    """The entry of a refused request: its status and OperationOutcome."""
    code = status_of(error)
    issues = [_placed(issue, where) for issue in error.issues] if where else error.issues
    return {"response": {"status": f"{code} {HTTPStatus(code).phrase}",
                         "outcome": operation_outcome(issues)}}


def _placed(issue: Issue, where: str) -> Issue:
    """An issue about "Patient.x" as "Bundle.entry[n].resource.x"."""
    expression = issue.expression or ""
    head, dot, rest = expression.partition(".")
    if not dot or head not in RESOURCE_TYPES:
        return issue
    return replace(issue, expression=f"{where}.resource.{rest}")


class BundleEntries:
    def __init__(self, records: Records, default_count: int, max_count: int):
        self.records = records
        self.default_count = default_count
        self.max_count = max_count

    def request(self, index: int, item: Any) -> Request:
        where = f"Bundle.entry[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            raise bad_request("Each entry needs a request (method and url)", f"{where}.request")
        method, url = item["request"].get("method"), item["request"].get("url")
        if not isinstance(url, str) or not url:
            raise bad_request("request.url is required", f"{where}.request.url")
        base = self.records.base_url.rstrip("/") + "/"
        split = urlsplit(url.removeprefix(base))
        return Request(index, str(method), split.path.strip("/").split("/"), split.query, item)

    async def read(self, caller: Caller | None, index: int, item: Any) -> dict[str, Any]:
        """The answer to a GET entry: read, vread, history or search."""
        try:
            return await self._read(caller, self.request(index, item))
        except FhirError as error:
            return failed(error)

    async def _read(self, caller: Caller | None, request: Request) -> dict[str, Any]:
        path, where = request.path, f"{request.where}.request.url"
        resource_type = path[0]
        if resource_type not in RESOURCE_TYPES:
            raise NotFound([Issue(f"bilan does not serve {resource_type!r}", "not-supported",
                                  expression=where)])
        if len(path) == 1:
            return await self._search(caller, resource_type, request.query, where)
        if len(path) == 2 and path[1] == "_history":
            return await self._history(caller, resource_type, None, request.query)
        if not ID.match(path[1]) or len(path) > 4 or (len(path) > 2 and path[2] != "_history"):
            raise bad_request("A read entry's url is Type/id, Type/id/_history[/version], "
                              "Type/_history or Type?search", where)
        if len(path) == 3:
            return await self._history(caller, resource_type, path[1], request.query)
        if len(path) == 4:
            stored = await self.records.vread(caller, resource_type, path[1], path[3])
        else:
            stored = await self.records.read(caller, resource_type, path[1])
        entry = response_entry("200 OK", stored, full_url=f"{self.records.base_url}/{resource_type}/{stored.id}")
        return {**entry, "resource": stored.content}

    async def _search(self, caller: Caller | None, resource_type: str, text: str, where: str) -> dict[str, Any]:
        params = [(k, v) for k, v in parse_qsl(text, keep_blank_values=True) if k not in FORMAT_PARAMS]
        check_bounds(params)
        query = parse_search(resource_type, params, default_count=self.default_count,
                             max_count=self.max_count, strict=False)
        result = await self.records.search(caller, query, text)
        applied = [(k, v) for k, v in params if k not in query.ignored]
        bundle = searchset(self.records.base_url, resource_type, applied, result.total, query.offset,
                           query.count, result.matches, result.included, query.ignored)
        return {"resource": bundle, "response": {"status": "200 OK"}}

    async def _history(self, caller: Caller | None, resource_type: str, resource_id: str | None,
                       text: str) -> dict[str, Any]:
        params = dict(parse_qsl(text))
        count = whole_number("_count", params["_count"], self.max_count) if "_count" in params \
            else self.default_count
        offset = whole_number("_offset", params["_offset"]) if "_offset" in params else 0
        total, versions = await self.records.history(caller, resource_type, resource_id, count, offset)
        path = f"{resource_type}/{resource_id}/_history" if resource_id else f"{resource_type}/_history"
        bundle = history(self.records.base_url, path, total, offset, count, versions)
        return {"resource": bundle, "response": {"status": "200 OK"}}

    async def batch(self, caller: Caller | None, bundle: dict[str, Any]) -> dict[str, Any]:
        """A batch: every entry on its own, in order; one failing does not stop the others."""
        raw = bundle.get("entry") or []
        if not isinstance(raw, list) or not raw:
            raise bad_request("The batch has no entry", "Bundle.entry")
        answers = []
        for index, item in enumerate(raw):
            if is_read(item):
                answers.append(await self.read(caller, index, item))
                continue
            try:
                answers.append(await self._write(caller, self.request(index, item)))
            except FhirError as error:
                answers.append(failed(error, f"Bundle.entry[{index}]"))
        return {"resourceType": "Bundle", "type": "batch-response", "entry": answers}

    async def _write(self, caller: Caller | None, request: Request) -> dict[str, Any]:
        path, where, item = request.path, request.where, request.item
        resource = item.get("resource")
        if request.method not in ("POST", "PUT", "DELETE"):
            raise bad_request(f"request.method {request.method!r} is not supported; use GET, POST, "
                              "PUT or DELETE", f"{where}.request.method")
        if len(path) != (1 if request.method == "POST" else 2) or path[0] not in RESOURCE_TYPES:
            raise bad_request(f"A {request.method} entry's url is "
                              f"{'Type' if request.method == 'POST' else 'Type/id'} of a type bilan "
                              "serves", f"{where}.request.url")
        if request.method == "DELETE":
            await self.records.delete(caller, path[0], path[1])
            return response_entry("204 No Content")
        if not isinstance(resource, dict) or resource.get("resourceType") != path[0]:
            raise bad_request(f"A {request.method} entry carries a {path[0]} resource", f"{where}.resource")
        if request.method == "POST":
            saved = await self.records.create(caller, resource, item["request"].get("ifNoneExist"))
        else:
            etag = item["request"].get("ifMatch")
            version = None if etag is None else version_of_etag(etag)
            if etag is not None and version is None:
                raise bad_request(f"ifMatch {etag!r} is not an ETag such as W/\"3\"", f"{where}.request.ifMatch")
            saved = await self.records.update(caller, path[0], path[1], resource, version)
        status = "201 Created" if saved.created else "200 OK"
        return response_entry(status, saved.stored, full_url=item.get("fullUrl"), warnings=saved.warnings)
