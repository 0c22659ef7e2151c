"""One place that turns errors into answers: an OperationOutcome, with the right status, on the
API; elsewhere the French page a person sees, which the web side renders (bilan/web/errors.py)
and app.py hands to `handlers`, so that the API never imports the web pages."""

import logging
import uuid
from typing import Any, Callable, Protocol, Type

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap
from sqlalchemy import exc as sql

from bilan.api.negotiation import fhir_response
from bilan.api.statuses import status_of
from bilan.fhir.outcomes import FhirError, Issue, operation_outcome

log = logging.getLogger("bilan.api")

_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
          409: "conflict", 413: "too-costly", 415: "not-supported", 429: "throttled", 503: "transient"}
RETRY_AFTER = "5"  # seconds: a database restart or a failover usually takes about that
# PostgreSQL SQLSTATE classes meaning "not now" rather than "wrong": connection exception,
# insufficient resources, operator intervention (which includes statement_timeout's 57014).
_TRANSIENT_SQLSTATES = ("08", "53", "57")


class WebPage(Protocol):
    """The page a person sees: its status, a French message, and headers (Retry-After)."""
    def __call__(self, request: Request[Any, Any, Any], status: int, message: str,
                 headers: dict[str, str] | None = None) -> Response[Any]: ...


def _is_api(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(("/fhir", "/.well-known"))


def fhir_error(request: Request[Any, Any, Any], exc: FhirError, web_error: WebPage) -> Response[Any]:
    if not _is_api(request):
        return web_error(request, status_of(exc), str(exc))
    return fhir_response(request, exc.outcome(), status_of(exc), headers=exc.headers)


def http_error(request: Request[Any, Any, Any], exc: HTTPException, web_error: WebPage) -> Response[Any]:
    status = exc.status_code
    if not _is_api(request):
        messages = {403: "Cette action n'est pas autorisée (jeton de sécurité du formulaire absent "
                         "ou périmé : rechargez la page).",
                    404: "Cette page n'existe pas.", 405: "Cette action n'est pas possible ici."}
        return web_error(request, status, messages.get(status, "La demande n'a pas pu être traitée."))
    detail = exc.detail
    if status == 413:
        detail = "The request body is too large"
    elif status == 404:
        detail = f"Nothing is served at {request.url.path}"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    issue = Issue(str(detail), _CODES.get(status, "exception"))
    return fhir_response(request, operation_outcome([issue]), status,
                        headers=getattr(exc, "headers", None) or {})


def unexpected_error(request: Request[Any, Any, Any], exc: Exception, web_error: WebPage) -> Response[Any]:
    incident = uuid.uuid4().hex[:12]
    # The route template and the error type only: URLs and messages may carry personal data.
    route = request.scope.get("path_template") or "?"
    log.error("incident %s on %s %s: %s", incident, request.method, route, type(exc).__name__,
              exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
    if not _is_api(request):
        return web_error(request, 500, f"Une erreur inattendue est survenue (incident {incident}).")
    issue = Issue(f"Internal error (incident {incident})", "exception", "fatal")
    return fhir_response(request, operation_outcome([issue]), 500)


def storage_error(request: Request[Any, Any, Any], exc: Exception, web_error: WebPage) -> Response[Any]:
    """A database that is down, stalled or cancelled a slow statement: 503, come back soon."""
    if not _unavailable(exc):
        return unexpected_error(request, exc, web_error)
    route = request.scope.get("path_template") or "?"
    log.warning("database unavailable on %s %s: %s", request.method, route, type(exc).__name__)
    headers = {"Retry-After": RETRY_AFTER}
    if not _is_api(request):
        return web_error(request, 503, "Le service est momentanément indisponible. "
                                       "Réessayez dans quelques instants.", headers)
    issue = Issue("The database is not answering right now; try again in a few seconds", "transient")
    return fhir_response(request, operation_outcome([issue]), 503, headers=headers)


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, sql.TimeoutError, sql.OperationalError,
                        sql.InterfaceError)):
        return True
    if isinstance(exc, sql.DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or ""
        return exc.connection_invalidated or str(state).startswith(_TRANSIENT_SQLSTATES)
    return False


def handlers(web_error: WebPage) -> ExceptionHandlersMap:
    """The exception handlers of the app, with `web_error` as the page for people."""
    def with_page(handler: Callable[[Request[Any, Any, Any], Any, WebPage], Response[Any]]
                  ) -> Callable[[Request[Any, Any, Any], Any], Response[Any]]:
        return lambda request, exc: handler(request, exc, web_error)
    table: dict[Type[Exception], Callable[[Request[Any, Any, Any], Any, WebPage], Response[Any]]] = {
        FhirError: fhir_error, HTTPException: http_error, sql.SQLAlchemyError: storage_error,
        OSError: storage_error, Exception: unexpected_error}
    return {kind: with_page(handler) for kind, handler in table.items()}
