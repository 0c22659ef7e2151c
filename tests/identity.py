"""Getting real tokens from the local OpenID provider, as software and people do."""

import base64
import hashlib
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from html import unescape
from typing import Any, Generator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from bilan.auth.client_credentials import DEMO_SCOPES, request_token
from bilan.settings import ROOT

IDP_DIR = ROOT / "deploy" / "idp"
PRACTICE_SCOPES = DEMO_SCOPES["practice-software-demo"]
LAB_SCOPES = DEMO_SCOPES["lab-middleware-demo"]
WEB_CLIENT = ("bilan-web", "bilan-web-demo-secret")


def start_idp(port: int, audience: str, redirect_uri: str, post_logout_uri: str) -> subprocess.Popen[str]:
    env = dict(os.environ, IDP_PORT=str(port), BILAN_AUDIENCE=audience,
               BILAN_WEB_REDIRECT_URIS=redirect_uri, BILAN_POST_LOGOUT_URIS=post_logout_uri)
    process = subprocess.Popen(["node", str(IDP_DIR / "server.mjs")], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("idp ready at"):
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError("the local OpenID provider did not start (npm ci in deploy/idp?)")


class BearerAuth(httpx.Auth):
    """Adds a token to each request, and fetches a new one before it expires."""

    def __init__(self, fetch: Any, lifetime_s: float = 240):
        self.fetch, self.lifetime_s = fetch, lifetime_s
        self.token, self.fetched = "", None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # The monotonic clock starts near zero on a freshly booted machine: never compare to 0.
        if self.fetched is None or time.monotonic() - self.fetched > self.lifetime_s:
            self.token, self.fetched = self.fetch(), time.monotonic()
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def machine_auth(issuer: str, client_id: str, scope: str) -> BearerAuth:
    return BearerAuth(lambda: request_token(issuer, client_id, scope))


@dataclass
class Login:
    """The outcome of a person's login: tokens, and the browser's cookies at the provider."""

    access_token: str
    id_token: str
    claims: dict[str, Any] = field(default_factory=dict)
    browser: httpx.Client | None = None


def login(issuer: str, username: str, password: str, redirect_uri: str) -> Login:
    """Authorization code + PKCE, posting the provider's login form as a browser would."""
    browser = httpx.Client(timeout=10)
    discovery = browser.get(f"{issuer}/.well-known/openid-configuration").json()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = {"response_type": "code", "client_id": WEB_CLIENT[0], "redirect_uri": redirect_uri,
             "scope": "openid profile bilan", "state": state, "nonce": nonce,
             "code_challenge": challenge, "code_challenge_method": "S256"}
    page = _follow(browser, browser.get(f"{discovery['authorization_endpoint']}?{urlencode(query)}"),
                   redirect_uri)
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    if action is None:
        raise AssertionError(f"no login form: {page.text[:300]}")
    answer = browser.post(str(page.url.join(unescape(action.group(1)))),
                          data={"login": username, "password": password})
    final = _follow(browser, answer, redirect_uri)
    params = parse_qs(urlsplit(final.headers.get("location", "")).query)
    if "code" not in params:
        raise PermissionError(f"login refused for {username}: {final.status_code} {final.text[:200]}")
    assert params["state"] == [state]
    tokens = browser.post(discovery["token_endpoint"], auth=WEB_CLIENT, data={
        "grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": redirect_uri,
        "code_verifier": verifier}).json()
    keys = KeySet.import_key_set(browser.get(discovery["jwks_uri"]).json())
    claims = jwt.decode(tokens["id_token"], keys).claims
    assert claims["nonce"] == nonce
    return Login(tokens["access_token"], tokens["id_token"], claims, browser)


def _follow(browser: httpx.Client, response: httpx.Response, stop_at: str) -> httpx.Response:
    """Follow redirects, but not into bilan's callback (the test reads the code from there)."""
    while response.is_redirect and not response.headers["location"].startswith(stop_at):
        response = browser.get(str(response.url.join(response.headers["location"])))
    return response


def user_auth(issuer: str, username: str, redirect_uri: str) -> BearerAuth:
    return BearerAuth(lambda: login(issuer, username, "demo", redirect_uri).access_token)


def signed_auth(issuer: str, audience: str, claims: dict[str, Any]) -> BearerAuth:
    """Tokens for an actor the local provider has no client for (a second lab's middleware):
    signed with the provider's own key, so bilan checks them exactly as the provider's."""
    import json

    from joserfc.jwk import RSAKey

    key = json.loads((IDP_DIR / "keys" / "idp-signing.private.jwk.json").read_text())

    def fetch() -> str:
        now = int(time.time())
        full = {"iss": issuer, "aud": audience, "iat": now, "exp": now + 300, **claims}
        return jwt.encode({"alg": "RS256", "kid": key.get("kid")}, full, RSAKey.import_key(key),
                          algorithms=["RS256"])

    return BearerAuth(fetch)


def patient_auth(issuer: str, audience: str, subject: str, ins: str) -> BearerAuth:
    """A patient's token, with the claims the provider gives after her login (role, INS), for a
    person it has no account for: a test's own patient, whom no other test's data reaches."""
    return signed_auth(issuer, audience, {"sub": subject, "client_id": WEB_CLIENT[0], "scope": "openid profile bilan",
                                          "role": "patient", "ins": ins})


def other_lab_auth(issuer: str, audience: str, finess: str) -> BearerAuth:
    """The middleware of another lab (FINESS `finess`), with the demo middleware's scopes."""
    return signed_auth(issuer, audience, {
        "sub": f"lab-middleware-{finess}", "client_id": f"lab-middleware-{finess}",
        "client_kind": "lab-middleware", "acting_finess": finess, "scope": LAB_SCOPES})
