"""What a page says after an action went through: the handler redirects with `?fait=<what>`
and base.html shows the sentence in a role="status" box at the top of the page it lands on
(a reload says it again, as the patient's `?enregistre=adresse` does)."""

from typing import Any

from jinja2 import Environment
from litestar import Request
from litestar.response import Redirect

DONE = {
    "import": "Prescription importée.",
    "prelevement": "Prélèvements enregistrés.",
    "adaptation": "Adaptation proposée au prescripteur.",
    "message": "Message envoyé.",
    "reponse": "Réponse envoyée au laboratoire.",
    "validation-technique": "Validation technique enregistrée.",
    "validation-biologique": "Validation biologique enregistrée.",
    "repasser": "Résultats renvoyés pour une nouvelle analyse.",
    "annuler": "Résultats enregistrés comme non réalisés.",
    "corriger": "Résultat corrigé.",
    "appel": "Appel au prescripteur enregistré.",
    "compte-rendu": "Compte rendu validé et envoyé.",
    "levee": "Masquage levé : le patient voit ses résultats.",
}
ACTIONS = {"technique": "validation-technique", "biologique": "validation-biologique", "repasser": "repasser",
           "annuler": "annuler", "corriger": "corriger"}  # the results page's buttons


def done(path: str, what: str, anchor: str = "") -> Redirect:
    """To `path` (then `#anchor`), saying that `what` (a key of DONE) is done."""
    return Redirect(f"{path}?fait={what}" + (f"#{anchor}" if anchor else ""))


def confirmation(request: Request[Any, Any, Any]) -> str:
    """The sentence for the page's `?fait=`, "" when there is none (or an unknown one)."""
    return DONE.get(request.query_params.get("fait", ""), "")


def register(environment: Environment) -> None:
    environment.globals["confirmation"] = confirmation
