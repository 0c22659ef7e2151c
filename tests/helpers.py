"""What several tests share: where the test material is, API clients, seeded random data, and
how to read FHIR answers."""

import asyncio
import os
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Coroutine, TypeVar

import httpx

from bilan.demo.prescriptions import PrescriptionSpec, random_spec
from bilan.settings import ROOT

DEMO_PRESCRIBER_RPPS = "10003456786"  # the demo practice software acts for this prescriber
# Added to every test's seed when set, so that a run can be replayed or varied; pytest's header
# prints it.
RUN_SEED = os.environ.get("BILAN_TEST_SEED", "")

ANS_FIXTURES = ROOT.parent / "shared" / "fixtures" / "ansforge"
ANS_CDA_EXAMPLES = sorted((ANS_FIXTURES / "TestContenuCDA-3-0" / "ExemplesCDA").glob("*.xml"))
HL7_EXAMPLES = ROOT / "tests" / "fhir-examples" / "node_modules" / "hl7.fhir.r4.examples"


def client(base_url: str, auth: httpx.Auth | None) -> httpx.Client:
    """An API client speaking FHIR JSON to `base_url`, with a token from `auth`."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    return httpx.Client(base_url=base_url, headers=headers, timeout=30, auth=auth)


def post_bundle(fhir: httpx.Client, bundle: dict[str, Any]) -> httpx.Response:
    return fhir.post("", json=bundle)


def issues(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"]


def expressions(response: httpx.Response) -> set[str]:
    return {e for issue in issues(response) for e in issue.get("expression", [])}


def diagnostics(response: httpx.Response) -> str:
    return " | ".join(issue.get("diagnostics", "") for issue in issues(response))


def locations(response: httpx.Response) -> list[str]:
    """'Type/id' of each entry of a transaction-response."""
    body = response.json()
    assert body["type"] == "transaction-response", body
    return ["/".join(e["response"]["location"].split("/")[:2]) for e in body["entry"]]


def entry_index(bundle: dict[str, Any], resource_type: str, nth: int = 0) -> int:
    return [i for i, e in enumerate(bundle["entry"])
            if e["resource"]["resourceType"] == resource_type][nth]


def search(fhir: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = fhir.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "searchset"
    return body


def ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", []) if e["search"]["mode"] == mode}


def prescription_spec(rng: Any) -> PrescriptionSpec:
    """A random prescription signed by Dr Lambert, for whom the demo practice software acts."""
    spec = random_spec(rng)
    spec.prescriber.rpps = DEMO_PRESCRIBER_RPPS
    return spec


def seeded(node_id: str) -> random.Random:
    """Random data for one test (or module, by its node id): the same id and run seed give the
    same data, and two tests different data."""
    return random.Random(f"{node_id}|{RUN_SEED}" if RUN_SEED else node_id)


def uuid_from(rng: random.Random) -> uuid.UUID:
    """A UUID drawn from a test's seeded random (instead of uuid4): the same when the test is
    replayed, another in each test, so it stays unique in the session's database."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def number_from(rng: random.Random, prefix: str) -> str:
    """A prescription number (or any other business identifier) drawn like `uuid_from`."""
    return f"{prefix}-{uuid_from(rng).hex[:10].upper()}"


T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own: the browser tests keep a loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
