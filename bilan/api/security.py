"""Who is calling the API: the bearer token, verified, turned into a Caller."""

from typing import Any

import httpx
from litestar import Request
from litestar.di import NamedDependency

from bilan.auth.caller import Caller, caller_from_claims
from bilan.auth.tokens import InvalidToken, TokenVerifier
from bilan.fhir.outcomes import Issue, Unauthenticated, Unavailable

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bilan"'}


def unauthenticated(diagnostics: str) -> Unauthenticated:
    """No usable token: said with the Bearer challenge."""
    return Unauthenticated([Issue(diagnostics, "login")], headers=CHALLENGE)


async def bearer_caller(request: Request[Any, Any, Any], verifier: NamedDependency[TokenVerifier]) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Authentication required: send an access token "
                              "(Authorization: Bearer ...)")
    try:
        claims = await verifier.verify(token.strip())
    except InvalidToken as exc:
        raise unauthenticated(f"Invalid access token: {exc}") from None
    except httpx.HTTPError:
        raise Unavailable([Issue("The identity provider cannot be reached to check the token; "
                                    "try again shortly", "transient")]) from None
    address = request.client.host if request.client else None
    return caller_from_claims(claims, address)
