"""The web login kept in bilan's session cookie (encrypted, HttpOnly, SameSite=Lax, Secure on
https): who is logged in, since when, and when they were last seen."""

import time
from dataclasses import dataclass
from typing import Any

from litestar import Request

from bilan.auth.caller import Caller, caller_from_claims
from bilan.fhir.outcomes import FhirError, Issue
from bilan.settings import Settings

ROLE_LABELS = {"prescriber": "prescripteur", "reception": "accueil du laboratoire",
               "biologist": "biologiste", "patient": "patient"}


@dataclass(frozen=True)
class WebUser:
    name: str
    role: str
    claims: dict[str, Any]
    id_token: str

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


def open_session(request: Request[Any, Any, Any], claims: dict[str, Any], id_token: str) -> None:
    """Start a login from the verified ID token's claims."""
    now = time.time()
    request.set_session({
        "user": {"name": claims.get("name") or claims.get("sub"), "role": claims.get("role"),
                 "claims": {k: claims[k] for k in ("sub", "role", "rpps", "ins", "lab_finess")
                            if k in claims}},
        "id_token": id_token, "started": now, "seen": now,
    })


def current_user(request: Request[Any, Any, Any], settings: Settings) -> WebUser | None:
    """The logged-in user, or None (and the session is cleared) once it has expired."""
    session = request.session if request.scope.get("session") is not None else {}
    user = session.get("user")
    if not user:
        return None
    now = time.time()
    if now - session.get("started", 0) > settings.session_max_age or \
            now - session.get("seen", 0) > settings.session_idle:
        request.clear_session()
        return None
    session["seen"] = now
    request.set_session(session)
    return WebUser(user["name"], user["role"], user["claims"], session.get("id_token", ""))


def logged_in(request: Request[Any, Any, Any], settings: Settings, why: str) -> tuple[WebUser, Caller]:
    """The logged-in user and the caller they are, or a 401 saying `why` logging in is needed."""
    user = current_user(request, settings)
    if user is None:
        raise FhirError(401, [Issue(why, "login")])
    return user, web_caller(request, user)


def web_caller(request: Request[Any, Any, Any], user: WebUser) -> Caller:
    address = request.client.host if request.client else None
    return caller_from_claims({**user.claims, "scope": ""}, address)
