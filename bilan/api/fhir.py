"""The FHIR REST API under /fhir. Each handler names the interaction it serves (opt), and the
CapabilityStatement is built from those names."""

from typing import Any, Sequence
from urllib.parse import parse_qsl, urlencode

import httpx
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from bilan import __version__
from bilan.api.negotiation import (
    asks_for_fhir,
    binary_response,
    fhir_response,
    version_headers,
)
from bilan.api.smart import capability_security, smart_configuration_document
from bilan.auth import policy
from bilan.auth.caller import Caller
from bilan.auth.tokens import TokenVerifier
from bilan.fhir.bundles import history as history_bundle
from bilan.fhir.bundles import searchset, version_of_etag
from bilan.fhir.capability import capability_statement
from bilan.fhir.definitions import DEFINITION_TYPE, matching, own_definitions
from bilan.fhir.outcomes import (
    Issue,
    NotFound,
    Unsupported,
    bad_request,
    not_found,
    operation_outcome,
)
from bilan.fhir.parsing import parse_body
from bilan.fhir.query import (
    check_bounds,
    check_embedded_searches,
    parse_search,
    whole_number,
)
from bilan.fhir.searchparams import RESOURCE_TYPES
from bilan.prescription import ep_bio_documents
from bilan.records.service import Records, Saved
from bilan.records.transaction import Transactions
from bilan.results.export import everything, everything_bundle
from bilan.results.views import last_n
from bilan.settings import Settings

AnyRequest = Request[Any, Any, State]


def _type(resource_type: FromPath[str]) -> str:
    if resource_type not in RESOURCE_TYPES:
        raise NotFound([Issue(f"bilan does not serve {resource_type!r}; it serves "
                                    f"{', '.join(RESOURCE_TYPES)}", "not-supported")])
    return resource_type


async def _body(request: AnyRequest) -> dict[str, Any]:
    resource = parse_body(await request.body(), request.headers.get("content-type"))
    check_embedded_searches(resource)
    return resource


def _if_match(request: AnyRequest) -> int | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    version = version_of_etag(value) if value.isascii() and len(value) <= 24 else None
    if version is None:
        raise bad_request(f"If-Match {value!r} is not an ETag such as W/\"3\"")
    return version


def _saved_response(request: AnyRequest, saved: Saved, base_url: str) -> Response[bytes]:
    status = 201 if saved.created else 200
    headers = version_headers(saved.stored, base_url)
    prefer = request.headers.get("prefer", "")
    if "return=minimal" in prefer:
        return fhir_response(request, None, status, headers)
    if "return=OperationOutcome" in prefer:
        issues = list(saved.warnings) or [Issue("Stored", "informational", "information")]
        return fhir_response(request, operation_outcome(issues), status, headers)
    return fhir_response(request, saved.stored.content, status, headers)


class FhirController(Controller):
    path = "/fhir"

    @get("/metadata", opt={"interaction": "capabilities"})
    async def metadata(self, request: AnyRequest, settings: NamedDependency[Settings],
                       verifier: NamedDependency[TokenVerifier]) -> Response[bytes]:
        interactions = [h.opt["interaction"] for h in type_handlers()]
        system = [code for h in system_handlers() for code in h.opt.get("interactions", [h.opt["interaction"]])]
        operations = [(h.opt["resource"], h.opt["operation"], h.opt["definition"]) for h in operation_handlers()]
        try:
            security = capability_security(await smart_configuration_document(verifier))
        except httpx.HTTPError:
            security = capability_security(None)  # the provider is unreachable right now
        return fhir_response(request, capability_statement(
            settings.base_url, interactions, system, __version__, security, operations,
            writable=policy.writable))

    # bilan's own search parameter definitions: public, like the CapabilityStatement naming them.
    @get(f"/{DEFINITION_TYPE}", opt={"definitions": "search-type"})
    async def definitions(self, request: AnyRequest, settings: NamedDependency[Settings]) -> Response[bytes]:
        return _definitions(request, _search_params(request), settings)

    @post(f"/{DEFINITION_TYPE}/_search", status_code=200, opt={"definitions": "search-type"})
    async def definitions_by_post(self, request: AnyRequest, settings: NamedDependency[Settings]) -> Response[bytes]:
        return _definitions(request, _search_params(request, await _form(request)), settings)

    @get(f"/{DEFINITION_TYPE}/{{resource_id:str}}", opt={"definitions": "read"})
    async def definition(self, request: AnyRequest, resource_id: FromPath[str]) -> Response[bytes]:
        found = own_definitions().get(resource_id)
        if found is None:
            raise not_found(DEFINITION_TYPE, resource_id)
        return fhir_response(request, found)

    @post("/", opt={"interaction": "transaction", "interactions": ["transaction", "batch"], "level": "system"})
    async def transaction(self, request: AnyRequest, transactions: NamedDependency[Transactions],
                          caller: NamedDependency[Caller]) -> Response[bytes]:
        return fhir_response(request, await transactions.process(caller, await _body(request)))

    @post("/{resource_type:str}", opt={"interaction": "create", "level": "type"})
    async def create(self, request: AnyRequest, resource_type: FromPath[str], records: NamedDependency[Records],
                     settings: NamedDependency[Settings], caller: NamedDependency[Caller]) -> Response[bytes]:
        resource = await _body(request)
        if resource.get("resourceType") != _type(resource_type):
            raise bad_request(f"The body is a {resource.get('resourceType')}, the URL names "
                              f"{resource_type}", "resourceType")
        if_none_exist = request.headers.get("if-none-exist")
        if if_none_exist:
            check_bounds(parse_qsl(if_none_exist.partition("?")[2] or if_none_exist, keep_blank_values=True))
        saved = await records.create(caller, resource, if_none_exist)
        return _saved_response(request, saved, settings.base_url)

    @get("/{resource_type:str}", opt={"interaction": "search-type", "level": "type"})
    async def search(self, request: AnyRequest, resource_type: FromPath[str], records: NamedDependency[Records],
                     settings: NamedDependency[Settings], caller: NamedDependency[Caller]) -> Response[bytes]:
        return await _search(request, _type(resource_type), _search_params(request), records, settings, caller)

    @post("/{resource_type:str}/_search", opt={"interaction": "search-type", "level": "type"})
    async def search_by_post(self, request: AnyRequest, resource_type: FromPath[str],
                             records: NamedDependency[Records], settings: NamedDependency[Settings],
                             caller: NamedDependency[Caller]) -> Response[bytes]:
        params = _search_params(request, await _form(request))
        return await _search(request, _type(resource_type), params, records, settings, caller)

    # Trends: an operation's static path, so that the read route below never takes it for an id.
    @get("/Observation/$lastn", opt={"operation": "lastn", "resource": "Observation",
                                      "definition": "http://hl7.org/fhir/OperationDefinition/Observation-lastn"})
    async def lastn(self, request: AnyRequest, records: NamedDependency[Records], settings: NamedDependency[Settings],
                    caller: NamedDependency[Caller]) -> Response[bytes]:
        params = _search_params(request)
        for key, value in params:
            if key == "max":
                whole_number(key, value)  # digits 0-9 only, before $lastn reads them
        strict = "handling=strict" in request.headers.get("prefer", "")
        found, ignored = await last_n(records, caller, params, strict)
        applied = [(k, v) for k, v in params if k not in ignored]
        return fhir_response(request, searchset(settings.base_url, "Observation/$lastn", applied, len(found), 0,
                                                max(len(found), 1), found, [], ignored))

    # eP-BIO: a prescription as the CI-SIS CDA document (docs/api.md, "eP-BIO documents").
    @post("/ServiceRequest/$submit-ep-bio", opt={
        "operation": "submit-ep-bio", "resource": "ServiceRequest",
        "definition": "https://bilan.sante.fr/fhir/OperationDefinition/ServiceRequest-submit-ep-bio"})
    async def submit_ep_bio(self, request: AnyRequest, transactions: NamedDependency[Transactions],
                            caller: NamedDependency[Caller]) -> Response[bytes]:
        return fhir_response(request, await ep_bio_documents.submit(
            transactions, caller, await request.body(), request.headers.get("content-type")))

    # Under the generic path: a static /ServiceRequest/{id}/... route would hide the read,
    # update and delete of /{resource_type}/{resource_id} for ServiceRequest (litestar's
    # router does not fall back from a static segment to a parameter).
    @get("/{resource_type:str}/{resource_id:str}/$ep-bio", opt={
        "operation": "ep-bio", "resource": "ServiceRequest",
        "definition": "https://bilan.sante.fr/fhir/OperationDefinition/ServiceRequest-ep-bio"})
    async def ep_bio(self, resource_type: FromPath[str], resource_id: FromPath[str], records: NamedDependency[Records],
                     caller: NamedDependency[Caller]) -> Response[bytes]:
        if resource_type != "ServiceRequest":
            raise NotFound([Issue("$ep-bio is an operation on ServiceRequest", "not-supported")])
        document = await ep_bio_documents.document_of(records, caller, resource_id)
        return Response(document, media_type="application/hl7-cda+xml; charset=utf-8")

    # A patient's data (her own token: all of hers; a professional: what he may read of it).
    @get("/{resource_type:str}/{resource_id:str}/$everything", opt={
        "operation": "everything", "resource": "Patient",
        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"})
    async def everything(self, request: AnyRequest, resource_type: FromPath[str], resource_id: FromPath[str],
                         records: NamedDependency[Records], settings: NamedDependency[Settings],
                         caller: NamedDependency[Caller]) -> Response[bytes]:
        if resource_type != "Patient":
            raise NotFound([Issue("$everything is an operation on Patient", "not-supported")])
        found = await everything(records, caller, resource_id)
        return fhir_response(request, everything_bundle(settings.base_url, resource_id, found))

    @get("/{resource_type:str}/_history", opt={"interaction": "history-type", "level": "type"})
    async def type_history(self, request: AnyRequest, resource_type: FromPath[str], records: NamedDependency[Records],
                           settings: NamedDependency[Settings], caller: NamedDependency[Caller]) -> Response[bytes]:
        return await _history(request, caller, _type(resource_type), None, records, settings)

    @get("/{resource_type:str}/{resource_id:str}", opt={"interaction": "read", "level": "type"})
    async def read(self, request: AnyRequest, resource_type: FromPath[str], resource_id: FromPath[str],
                   records: NamedDependency[Records], caller: NamedDependency[Caller]) -> Response[bytes]:
        stored = await records.read(caller, _type(resource_type), resource_id)
        if resource_type == "Binary" and not asks_for_fhir(request):
            return binary_response(stored)
        return fhir_response(request, stored.content, headers=version_headers(stored))

    @put("/{resource_type:str}/{resource_id:str}", opt={"interaction": "update", "level": "type"})
    async def update(self, request: AnyRequest, resource_type: FromPath[str], resource_id: FromPath[str],
                     records: NamedDependency[Records], settings: NamedDependency[Settings],
                     caller: NamedDependency[Caller]) -> Response[bytes]:
        saved = await records.update(caller, _type(resource_type), resource_id, await _body(request),
                                     _if_match(request))
        return _saved_response(request, saved, settings.base_url)

    @delete("/{resource_type:str}/{resource_id:str}", status_code=204,
            opt={"interaction": "delete", "level": "type"})
    async def remove(self, resource_type: FromPath[str], resource_id: FromPath[str],
                     records: NamedDependency[Records], caller: NamedDependency[Caller]) -> None:
        await records.delete(caller, _type(resource_type), resource_id)

    @get("/{resource_type:str}/{resource_id:str}/_history",
         opt={"interaction": "history-instance", "level": "type"})
    async def instance_history(self, request: AnyRequest, resource_type: FromPath[str], resource_id: FromPath[str],
                               records: NamedDependency[Records], settings: NamedDependency[Settings],
                               caller: NamedDependency[Caller]) -> Response[bytes]:
        return await _history(request, caller, _type(resource_type), resource_id, records, settings)

    @get("/{resource_type:str}/{resource_id:str}/_history/{version_id:str}",
         opt={"interaction": "vread", "level": "type"})
    async def vread(self, request: AnyRequest, resource_type: FromPath[str], resource_id: FromPath[str],
                    version_id: FromPath[str], records: NamedDependency[Records],
                    caller: NamedDependency[Caller]) -> Response[bytes]:
        if not (version_id.isascii() and len(version_id) <= 18):  # never a version bilan made
            raise not_found(_type(resource_type), f"{resource_id}/_history/{version_id}")
        stored = await records.vread(caller, _type(resource_type), resource_id, version_id)
        return fhir_response(request, stored.content, headers=version_headers(stored))


async def _history(request: AnyRequest, caller: Caller, resource_type: str, resource_id: str | None,
                   records: Records, settings: Settings) -> Response[bytes]:
    count = _int_param(request, "_count", settings.default_page_size, settings.max_page_size)
    offset = _int_param(request, "_offset", 0, None)
    total, versions = await records.history(caller, resource_type, resource_id, count, offset)
    path = f"{resource_type}/{resource_id}/_history" if resource_id else f"{resource_type}/_history"
    return fhir_response(request, history_bundle(settings.base_url, path, total, offset, count, versions))


def _definitions(request: AnyRequest, params: list[tuple[str, str]], settings: Settings) -> Response[bytes]:
    found, ignored = matching(params)
    applied = [(k, v) for k, v in params if k not in ignored]
    return fhir_response(request, searchset(settings.base_url, DEFINITION_TYPE, applied, len(found), 0,
                                            max(len(found), 1), found, [], ignored))


async def _search(request: AnyRequest, resource_type: str, params: list[tuple[str, str]], records: Records,
                  settings: Settings, caller: Caller) -> Response[bytes]:
    strict = "handling=strict" in request.headers.get("prefer", "")
    query = parse_search(resource_type, params, default_count=settings.default_page_size,
                         max_count=settings.max_page_size, strict=strict)
    result = await records.search(caller, query, urlencode(params))
    applied = [(k, v) for k, v in params if k not in query.ignored]
    return fhir_response(request, searchset(
        settings.base_url, resource_type, applied, result.total, query.offset, query.count,
        result.matches, result.included, query.ignored))


async def _form(request: AnyRequest) -> list[tuple[str, str]]:
    """The parameters of a POST _search body (application/x-www-form-urlencoded)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = await request.body()
    if not body:
        return []
    if content_type != "application/x-www-form-urlencoded":
        raise Unsupported([Issue("POST [type]/_search takes its parameters as "
                                      "application/x-www-form-urlencoded", "not-supported")])
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise bad_request("The search parameters are not UTF-8") from None


def _int_param(request: AnyRequest, name: str, default: int, ceiling: int | None) -> int:
    raw = request.query_params.get(name)
    return default if raw is None else whole_number(name, raw, ceiling)


def _search_params(request: AnyRequest, form: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The URL's search parameters (not the format ones) and those of a POSTed form, within
    the limits of a search."""
    sent = [*request.query_params.multi_items(), *form]
    params = [(k, v) for k, v in sent if k not in ("_format", "_pretty")]
    check_bounds(params)
    return params


def _handlers(level: str) -> list[HTTPRouteHandler]:
    return [h for h in vars(FhirController).values()
            if isinstance(h, HTTPRouteHandler) and h.opt.get("level") == level]


def type_handlers() -> list[HTTPRouteHandler]:
    return _handlers("type")


def system_handlers() -> list[HTTPRouteHandler]:
    return _handlers("system")


def operation_handlers() -> list[HTTPRouteHandler]:
    return [h for h in vars(FhirController).values() if isinstance(h, HTTPRouteHandler) and "operation" in h.opt]
