"""Login and logout pages: OpenID Connect with the configured provider. A page that needs a
login sends the browser to `/auth/login?next=<its path>`; the path is kept in the server
session with the login under way and opened after it, when it is a path of bilan's own."""

from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from bilan.auth.oidc import OidcClient
from bilan.auth.tokens import InvalidToken
from bilan.fhir.outcomes import FhirError, Forbidden, Issue, Unauthenticated
from bilan.records.service import Records
from bilan.results.queues import TITLES, LabQueues
from bilan.settings import Settings, web_root
from bilan.web.session import current_user, open_session, web_caller

AnyRequest = Request[Any, Any, Any]


def login_failed(message: str) -> FhirError:
    return Unauthenticated([Issue(message, "login")])


def local_path(text: str | None) -> str | None:
    """`text` when it is a path on this site ("/prescripteur/..."), None for anything a browser
    could read as another site (an absolute URL, "//host", "/\\host") or an odd character."""
    if not text or not text.startswith("/") or text.startswith("//") or "\\" in text:
        return None
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        return None
    parts = urlsplit(text)
    return text if not parts.scheme and not parts.netloc else None


def login_then(request: AnyRequest) -> Redirect:
    """To the login, and back to this page after it."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/auth/login?next={quote(here, safe='')}")


class AuthController(Controller):
    path = "/"

    @get("/")
    async def home(self, request: AnyRequest, settings: NamedDependency[Settings],
                   queues: NamedDependency[LabQueues]) -> Template:
        user = current_user(request, settings)
        waiting = await queues.queues(web_caller(request, user)) if user and user.may("results-desk") else None
        return Template("home.html", context={"user": user, "queues": waiting, "titles": TITLES})

    @get("/auth/login")
    async def login(self, request: AnyRequest, oidc: NamedDependency[OidcClient]) -> Redirect:
        started = await oidc.start()
        request.set_session({"login": {"state": started.state, "nonce": started.nonce,
                                       "code_verifier": started.code_verifier,
                                       "next": local_path(request.query_params.get("next")) or "/"}})
        return Redirect(started.url)

    @get("/auth/callback")
    async def callback(self, request: AnyRequest, oidc: NamedDependency[OidcClient],
                       records: NamedDependency[Records], settings: NamedDependency[Settings]) -> Redirect:
        pending = (request.session or {}).get("login")
        params = request.query_params
        if "error" in params:
            raise login_failed("La connexion a été refusée par le fournisseur d'identité.")
        if not pending or params.get("state") != pending["state"] or "code" not in params:
            raise login_failed("Cette demande de connexion n'est plus valable : recommencez.")
        try:
            done = await oidc.finish(params["code"], pending["code_verifier"], pending["nonce"])
        except InvalidToken:
            raise login_failed("L'identité transmise n'a pas pu être vérifiée.") from None
        open_session(request, done.claims, done.id_token)  # a new session token: no fixation
        user = current_user(request, settings)
        assert user is not None  # open_session has just stored her in the session
        try:
            caller = web_caller(request, user)
        except FhirError:
            request.clear_session()
            raise Forbidden([Issue("Votre compte n'a aucun rôle dans bilan (prescripteur, "
                                        "laboratoire ou patient).", "forbidden")]) from None
        await records.record_session(caller, "login")
        return Redirect(local_path(pending.get("next")) or "/")

    @post("/auth/logout")
    async def logout(self, request: AnyRequest, oidc: NamedDependency[OidcClient],
                     records: NamedDependency[Records], settings: NamedDependency[Settings]) -> Redirect:
        user = current_user(request, settings)
        request.clear_session()  # the server's row is revoked: a copy of the cookie is refused
        if user is None:
            return Redirect("/")
        await records.record_session(web_caller(request, user), "logout")
        at_provider = await oidc.logout_url(user.id_token, f"{web_root(settings)}/")
        return Redirect(at_provider or "/")
