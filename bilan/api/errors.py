"""One place that turns errors into answers: an OperationOutcome, with the right status."""

import logging
import uuid
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from bilan.api.negotiation import fhir_response
from bilan.fhir.outcomes import FhirError, Issue, operation_outcome

log = logging.getLogger("bilan.api")

_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
          409: "conflict", 413: "too-costly", 415: "not-supported", 429: "throttled"}


def fhir_error(request: Request[Any, Any, Any], exc: FhirError) -> Response[bytes]:
    return fhir_response(request, exc.outcome(), exc.status)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
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


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    incident = uuid.uuid4().hex[:12]
    # The route template and the error type only: URLs and messages may carry personal data.
    route = request.scope.get("path_template") or "?"
    log.error("incident %s on %s %s: %s", incident, request.method, route, type(exc).__name__,
              exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
    issue = Issue(f"Internal error (incident {incident})", "exception", "fatal")
    return fhir_response(request, operation_outcome([issue]), 500)


HANDLERS = {FhirError: fhir_error, HTTPException: http_error, Exception: unexpected_error}
