"""The French page a person sees instead of an OperationOutcome when a page request fails
(bilan/api/errors.py decides the status; app.py hands it this page)."""

from typing import Any

from litestar import Request
from litestar.response import Template

from bilan.web.session import current_user

WEB_TITLES = {400: "Demande incorrecte", 401: "Connexion requise", 403: "Accès refusé",
              404: "Page introuvable", 405: "Action impossible", 413: "Envoi trop volumineux",
              500: "Erreur inattendue", 503: "Service momentanément indisponible"}


def error_page(request: Request[Any, Any, Any], status: int, message: str,
               headers: dict[str, str] | None = None) -> Template:
    user = current_user(request, request.app.state["settings"]) if status not in (401, 503) else None
    return Template("error.html", status_code=status, headers=headers, context={
        "title": WEB_TITLES.get(status, "Erreur"), "message": message, "user": user})
