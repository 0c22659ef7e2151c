"""bilan as an OpenID Connect relying party: authorization code with PKCE, state and nonce.

The same code serves Pro Santé Connect, the patients' provider and the local deploy/idp
provider: only the issuer, client id and secret differ. bilan never sees a password.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError

from bilan.auth.tokens import ALGORITHMS, InvalidToken, TokenVerifier

SCOPES = "openid profile bilan"


@dataclass(frozen=True)
class LoginRequest:
    """What the browser must bring back: kept in the session between redirect and callback."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class LoggedIn:
    claims: dict[str, Any]  # from the verified ID token: who, and their role claims
    id_token: str


class OidcClient:
    def __init__(self, verifier: TokenVerifier, client_id: str, client_secret: str, redirect_uri: str):
        self.verifier = verifier
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri

    async def start(self) -> LoginRequest:
        provider = await self.verifier.discovery()
        state, nonce, code_verifier = generate_token(24), generate_token(24), generate_token(48)
        query = {"response_type": "code", "client_id": self.client_id,
                 "redirect_uri": self.redirect_uri, "scope": SCOPES, "state": state, "nonce": nonce,
                 "code_challenge": create_s256_code_challenge(code_verifier),
                 "code_challenge_method": "S256"}
        return LoginRequest(f"{provider['authorization_endpoint']}?{urlencode(query)}", state, nonce,
                            code_verifier)

    async def finish(self, code: str, code_verifier: str, nonce: str) -> LoggedIn:
        provider = await self.verifier.discovery()
        async with AsyncOAuth2Client(self.client_id, self.client_secret,
                                     token_endpoint_auth_method="client_secret_basic") as client:
            token = await client.fetch_token(provider["token_endpoint"], grant_type="authorization_code",
                                             code=code, redirect_uri=self.redirect_uri,
                                             code_verifier=code_verifier)
        # The person is who the ID token says; the access token is the provider's business.
        return LoggedIn(await self._id_token_claims(token["id_token"], nonce), token["id_token"])

    async def _id_token_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(id_token, await self.verifier.keys(), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.verifier.issuer},
                aud={"essential": True, "value": self.client_id},
                nonce={"essential": True, "value": nonce},
                exp={"essential": True},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise InvalidToken(f"the ID token is not acceptable ({type(exc).__name__})") from None
        return decoded.claims

    async def logout_url(self, id_token: str, after: str) -> str | None:
        """RP-initiated logout at the provider, coming back to `after`."""
        endpoint = (await self.verifier.discovery()).get("end_session_endpoint")
        if not endpoint:
            return None
        return f"{endpoint}?{urlencode({'id_token_hint': id_token, 'post_logout_redirect_uri': after})}"
