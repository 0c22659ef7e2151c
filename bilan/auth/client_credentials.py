"""The client side of SMART Backend Services: a signed JWT client assertion exchanged for an
access token (OAuth 2.0 client credentials, private_key_jwt). Used by `bilan dev-token`,
the tests and the benchmarks, exactly as practice software would do it."""

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from bilan.settings import ROOT

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEMO_KEYS = ROOT / "deploy" / "idp" / "keys"
# What the demo clients of deploy/idp may ask for.
DEMO_SCOPES = {
    "practice-software-demo": " ".join(
        f"system/{t}.{mode}" for t in ("ServiceRequest", "Patient", "Practitioner", "PractitionerRole",
                                       "Organization", "Observation", "Condition", "Communication",
                                       "Subscription", "DocumentReference", "List", "Encounter", "Location")
        for mode in ("read", "write")) + " system/*.read",
    "lab-middleware-demo": " ".join(
        ["system/ServiceRequest.read"] + [f"system/{t}.{mode}" for t in
                                          ("Observation", "Specimen", "Task", "DiagnosticReport",
                                           "Communication", "Subscription", "DocumentReference", "List")
                                          for mode in ("read", "write")]
        + ["system/Binary.read", "system/Encounter.read", "system/Location.read"]),
}


def demo_key_path(client_id: str) -> Path:
    return DEMO_KEYS / f"{client_id}.private.jwk.json"


def client_assertion(client_id: str, token_endpoint: str, key: dict[str, Any]) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_endpoint, "jti": uuid.uuid4().hex,
              "iat": now, "exp": now + 300}
    header = {"alg": key.get("alg", "RS384"), "kid": key.get("kid"), "typ": "JWT"}
    return jwt.encode(header, claims, RSAKey.import_key(key), algorithms=[header["alg"]])


def request_token(issuer: str, client_id: str, scope: str | None = None,
                  key_path: Path | None = None, timeout: float = 10) -> str:
    """An access token for `client_id`, asked for with a signed assertion (default scopes: all
    a demo client may have)."""
    scope = scope if scope is not None else DEMO_SCOPES.get(client_id, "")
    key = json.loads((key_path or demo_key_path(client_id)).read_text())
    with httpx.Client(timeout=timeout) as http:
        discovery = http.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
        discovery.raise_for_status()
        endpoint = discovery.json()["token_endpoint"]
        response = http.post(endpoint, data={
            "grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(client_id, endpoint, key),
        })
    if response.status_code != 200:
        raise RuntimeError(f"the provider refused: {response.status_code} {response.text}")
    return str(response.json()["access_token"])
