"""The web login, kept by the server: the browser's cookie (`bilan_session`: HttpOnly,
SameSite=Lax, Secure on https) holds only a random token naming a row of web_sessions
(bilan/storage/sessions.py). Logout revokes the row, so a copied cookie is refused afterwards;
idle and absolute timeouts are checked there too, and a login always gets a new token."""

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware.session.base import BaseBackendConfig, BaseSessionBackend
from litestar.types import Empty, Message, Scopes, ScopeSession

from bilan.auth import policy
from bilan.auth.caller import Caller, caller_from_claims
from bilan.fhir.outcomes import Issue, Unauthenticated
from bilan.settings import Settings
from bilan.storage.sessions import WebSessions

ROLE_LABELS = {"prescriber": "prescripteur", "reception": "accueil du laboratoire",
               "technician": "technicien de laboratoire",
               "biologist": "biologiste", "patient": "patient"}
_LOADED = "bilan.session"  # scope key: (token, data) of the live session the request came with


class ServerSessionBackend(BaseSessionBackend["ServerSessionConfig"]):
    """Litestar's session middleware on top of WebSessions. Unlike litestar's own server-side
    backend it never adopts a token the browser made up, gives a new token whenever a handler
    starts a session afresh (clear_session then set_session), and writes only on change."""

    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        token = connection.cookies.get(self.config.key)
        data = await self.config.sessions().resume(token) if token else None
        if data is None:
            return {}
        _scope(connection)[_LOADED] = (token, copy.deepcopy(data))
        return data

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
        loaded: tuple[str, dict[str, Any]] | None = _scope(connection).get(_LOADED)
        return loaded[0] if loaded else None

    async def store_in_message(self, scope_session: ScopeSession, message: Message,
                               connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        sessions = self.config.sessions()
        headers = MutableScopeHeaders.from_message(message)
        sent = connection.cookies.get(self.config.key)
        token = connection.get_session_id()  # None: no live session, or the handler cleared it
        if scope_session is Empty or not scope_session:
            if sent:  # logout, or a cookie the server no longer honours
                await sessions.revoke(sent)
                headers.add("Set-Cookie", self._cookie("", expires=0))
            return
        data = cast(dict[str, Any], scope_session)
        if token is not None:
            if data != _scope(connection)[_LOADED][1] and not await sessions.save(token, data):
                headers.add("Set-Cookie", self._cookie("", expires=0))
            return
        if sent:  # what the browser had before (a login under way) ends here
            await sessions.revoke(sent)
        headers.add("Set-Cookie", self._cookie(await sessions.open(data), max_age=self.config.max_age))

    def _cookie(self, value: str, *, max_age: int | None = None, expires: int | None = None) -> str:
        config = self.config
        return Cookie(key=config.key, value=value, path=config.path, domain=config.domain,
                      secure=config.secure, httponly=config.httponly, samesite=config.samesite,
                      max_age=max_age, expires=expires).to_header(header="")


def _scope(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
    """The ASGI scope as the open dict it is: litestar's TypedDict knows only its own keys."""
    return cast(dict[str, Any], connection.scope)


@dataclass
class ServerSessionConfig(BaseBackendConfig[ServerSessionBackend]):
    sessions: Callable[[], WebSessions]  # the application's, once it has started
    max_age: int
    secure: bool
    key: str = "bilan_session"
    exclude: str | list[str] | None = None
    path: str = "/"
    domain: str | None = None
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] = "lax"
    exclude_opt_key: str = "skip_session"
    scopes: Scopes = field(default_factory=lambda: {ScopeType.HTTP})

    _backend_class = ServerSessionBackend


@dataclass(frozen=True)
class WebUser:
    name: str
    role: str
    claims: dict[str, Any]
    id_token: str

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)

    def may(self, action: str) -> bool:
        """Whether the pages offer a domain action (policy.ACTIONS); the service decides anyway."""
        return self.role in policy.ACTIONS[action][0]


def open_session(request: Request[Any, Any, Any], claims: dict[str, Any], id_token: str) -> None:
    """Start a login from the verified ID token's claims, under a new session token: whatever
    session the browser came with (a login under way, someone else's planted token) ends."""
    request.clear_session()
    request.set_session({
        "user": {"name": claims.get("name") or claims.get("sub"), "role": claims.get("role"),
                 "claims": {k: claims[k] for k in ("sub", "role", "rpps", "ins", "lab_finess")
                            if k in claims}},
        "id_token": id_token,
    })


def current_user(request: Request[Any, Any, Any], settings: Settings) -> WebUser | None:
    """The logged-in user, or None. (The session middleware has already refused sessions that
    are revoked, idle or too old: `settings` is kept for the callers' sake.)"""
    session = request.scope.get("session")  # absent off the middleware's paths, Empty once cleared
    if not isinstance(session, dict):
        return None
    user = session.get("user")
    if not user:
        return None
    return WebUser(user["name"], user["role"], user["claims"], session.get("id_token", ""))


def logged_in(request: Request[Any, Any, Any], settings: Settings, why: str) -> tuple[WebUser, Caller]:
    """The logged-in user and the caller they are, or a 401 saying `why` logging in is needed."""
    user = current_user(request, settings)
    if user is None:
        raise Unauthenticated([Issue(why, "login")])
    return user, web_caller(request, user)


def web_caller(request: Request[Any, Any, Any], user: WebUser) -> Caller:
    address = request.client.host if request.client else None
    return caller_from_claims({**user.claims, "scope": ""}, address)
