"""Bearer access tokens: JWTs from the configured OpenID provider, checked against its JWKS."""

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
JWKS_MIN_REFRESH_S = 30.0
VERIFIED_KEPT = 10_000  # tokens whose verified claims are kept, least recently used dropped first


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (never echoes the token)."""


@dataclass
class _Cached:
    value: KeySet
    fetched_at: float


class TokenVerifier:
    """Verifies signature, issuer, audience and lifetime of access tokens.

    Reads the provider's discovery document and JWKS once, and again when a token names a key
    it does not know (key rotation), at most every JWKS_MIN_REFRESH_S seconds. A token is
    verified once: its claims are kept (by the token's SHA-256) until it expires, so the
    signature is not checked again on every request of the same client.
    """

    def __init__(self, issuer: str, audience: str, http: httpx.AsyncClient):
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.http = http
        self._discovery: dict[str, Any] | None = None
        self._jwks: _Cached | None = None
        self._verified: OrderedDict[bytes, dict[str, Any]] = OrderedDict()

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
        key = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(key)
        if known is not None:
            if known["exp"] > time.time():
                self._verified.move_to_end(key)
                return dict(known)
            del self._verified[key]
            raise InvalidToken("the token has expired")
        claims = await self._verified_claims(token)
        self._verified[key] = claims
        if len(self._verified) > VERIFIED_KEPT:
            self._verified.popitem(last=False)
        return dict(claims)

    async def _verified_claims(self, token: str) -> dict[str, Any]:
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
