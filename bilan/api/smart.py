"""SMART discovery: where software gets its tokens (SMART App Launch / Backend Services)."""

from typing import Any

from litestar import get
from litestar.di import NamedDependency

from bilan.auth.tokens import TokenVerifier

CAPABILITIES = ["client-confidential-asymmetric", "client-confidential-symmetric",
                "launch-standalone", "permission-v1", "sso-openid-connect"]


async def smart_configuration_document(verifier: TokenVerifier) -> dict[str, Any]:
    provider = await verifier.discovery()
    return {
        "issuer": provider["issuer"],
        "jwks_uri": provider["jwks_uri"],
        "authorization_endpoint": provider["authorization_endpoint"],
        "token_endpoint": provider["token_endpoint"],
        "grant_types_supported": provider.get("grant_types_supported",
                                              ["authorization_code", "client_credentials"]),
        "token_endpoint_auth_methods_supported": provider.get(
            "token_endpoint_auth_methods_supported", ["private_key_jwt"]),
        "token_endpoint_auth_signing_alg_values_supported": provider.get(
            "token_endpoint_auth_signing_alg_values_supported", ["RS384", "ES384"]),
        "scopes_supported": provider.get("scopes_supported", []),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


@get(["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"])
async def smart_configuration(verifier: NamedDependency[TokenVerifier]) -> dict[str, Any]:
    return await smart_configuration_document(verifier)


def capability_security(document: dict[str, Any] | None) -> dict[str, Any]:
    """CapabilityStatement.rest.security for a SMART-protected server."""
    security: dict[str, Any] = {
        "cors": False,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}]}],
        "description": "OAuth 2.0 bearer tokens (SMART): OpenID Connect for people, client "
                       "credentials with private_key_jwt for practice software and lab middleware",
    }
    if document:
        security["extension"] = [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": document["token_endpoint"]},
                          {"url": "authorize", "valueUri": document["authorization_endpoint"]}],
        }]
    return security
