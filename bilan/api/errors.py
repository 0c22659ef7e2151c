"""One place that turns errors into answers: an OperationOutcome, with the right status."""

import logging
import uuid
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Template

from bilan.api.negotiation import fhir_response
from bilan.fhir.outcomes import FhirError, Issue, operation_outcome
from bilan.web.session import current_user

log = logging.getLogger("bilan.api")

_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
          409: "conflict", 413: "too-costly", 415: "not-supported", 429: "throttled"}


WEB_TITLES = {400: "Demande incorrecte", 401: "Connexion requise", 403: "Accès refusé",
              404: "Page introuvable", 405: "Action impossible", 413: "Envoi trop volumineux",
              500: "Erreur inattendue"}


def _is_api(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith(("/fhir", "/.well-known"))


def web_error(request: Request[Any, Any, Any], status: int, message: str) -> Template:
    """The French page a person sees instead of an OperationOutcome."""
    user = current_user(request, request.app.state["settings"]) if status != 401 else None
    return Template("error.html", status_code=status, context={
        "title": WEB_TITLES.get(status, "Erreur"), "message": message, "user": user})


def fhir_error(request: Request[Any, Any, Any], exc: FhirError) -> Response[Any]:
    if not _is_api(request):
        return web_error(request, exc.status, str(exc))
    return fhir_response(request, exc.outcome(), exc.status, headers=getattr(exc, "headers", None))


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
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


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    incident = uuid.uuid4().hex[:12]
    # The route template and the error type only: URLs and messages may carry personal data.
    route = request.scope.get("path_template") or "?"
    log.error("incident %s on %s %s: %s", incident, request.method, route, type(exc).__name__,
              exc_info=exc if log.isEnabledFor(logging.DEBUG) else None)
    if not _is_api(request):
        return web_error(request, 500, f"Une erreur inattendue est survenue (incident {incident}).")
    issue = Issue(f"Internal error (incident {incident})", "exception", "fatal")
    return fhir_response(request, operation_outcome([issue]), 500)


HANDLERS = {FhirError: fhir_error, HTTPException: http_error, Exception: unexpected_error}
