"""Bearer access tokens: JWTs from the configured OpenID provider, checked against its JWKS."""

import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
JWKS_MIN_REFRESH_S = 30.0


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (never echoes the token)."""


@dataclass
class _Cached:
    value: KeySet
    fetched_at: float


class TokenVerifier:
    """Verifies signature, issuer, audience and lifetime of access tokens.

    Reads the provider's discovery document and JWKS once, and again when a token names a key
    it does not know (key rotation), at most every JWKS_MIN_REFRESH_S seconds.
    """

    def __init__(self, issuer: str, audience: str, http: httpx.AsyncClient):
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.http = http
        self._discovery: dict[str, Any] | None = None
        self._jwks: _Cached | None = None

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            response = await self.http.get(f"{self.issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            self._discovery = response.json()
        return self._discovery

    async def keys(self, refresh: bool = False) -> KeySet:
        stale = self._jwks is None or (
            refresh and time.monotonic() - self._jwks.fetched_at > JWKS_MIN_REFRESH_S)
        if stale:
            response = await self.http.get((await self.discovery())["jwks_uri"])
            response.raise_for_status()
            self._jwks = _Cached(KeySet.import_key_set(response.json()), time.monotonic())
        assert self._jwks is not None  # fetched above when there was none
        return self._jwks.value

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; InvalidToken when it is not a valid access token for bilan."""
        try:
            decoded = await self._decode(token)
        except (JoseError, ValueError) as exc:
            raise InvalidToken(f"the token cannot be read or its signature is wrong ({type(exc).__name__})") from None
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise InvalidToken(_reason(exc)) from None
        return decoded.claims

    async def _decode(self, token: str) -> jwt.Token:
        try:
            return jwt.decode(token, await self.keys(), algorithms=ALGORITHMS)
        except JoseError:
            # Perhaps a key the provider rotated in since we last looked.
            return jwt.decode(token, await self.keys(refresh=True), algorithms=ALGORITHMS)


def _reason(exc: JoseError) -> str:
    name = type(exc).__name__
    if "Expired" in name:
        return "the token has expired"
    claim = getattr(exc, "claim", None)
    if claim == "aud":
        return "the token is not meant for this service (audience)"
    if claim == "iss":
        return "the token comes from an unknown issuer"
    return f"the token's claims are not acceptable ({claim or name})"
