"""The SearchParameter resources of bilan's own search parameters (those R4 does not define),
built from the same rows as the searches, so that each definition URL the
CapabilityStatement declares resolves: GET [base]/SearchParameter/{id} or ?url=."""

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from bilan.fhir.searchparams import OWN_DEFINITIONS, PARAMS, SearchParam

DEFINITION_TYPE = "SearchParameter"
# The searches served on the definitions themselves (R4's conformance-url, Resource-id).
SEARCHES = ("url", "_id")
PUBLISHED = datetime(2026, 12, 7, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Definition:
    """A definition as a search entry (bilan/fhir/bundles.py StoredLike): never stored, one version."""

    content: dict[str, Any]
    resource_type: str = DEFINITION_TYPE
    version_id: int = 1
    last_updated: datetime = PUBLISHED
    deleted: bool = False

    @property
    def id(self) -> str:
        return str(self.content["id"])


def search_parameter(param: SearchParam) -> dict[str, Any]:
    resource_id = param.definition.removeprefix(OWN_DEFINITIONS)
    resource: dict[str, Any] = {
        "resourceType": DEFINITION_TYPE,
        "id": resource_id,
        "url": param.definition,
        "name": f"{param.resource}_{param.name}".replace("-", "_"),
        "status": "active",
        "publisher": "bilan",
        "description": param.documentation or f"{param.resource} by {' or '.join(param.paths)}",
        "code": param.name,
        "base": [param.resource],
        "type": param.type,
        "expression": " | ".join(f"{param.resource}.{path}" for path in param.paths),
        "xpathUsage": "normal",
    }
    if param.targets:
        resource["target"] = list(param.targets)
    return resource


def own_definitions() -> dict[str, dict[str, Any]]:
    """bilan's SearchParameter resources, by id."""
    built = (search_parameter(p) for p in PARAMS if p.own)
    return {resource["id"]: resource for resource in built}


def matching(params: Iterable[tuple[str, str]]) -> tuple[list[Definition], list[str]]:
    """The definitions a search selects (url and _id, each OR-ing its comma-separated values,
    AND-ed together), and the parameters it ignored."""
    found = list(own_definitions().values())
    ignored: list[str] = []
    for key, value in params:
        if key not in SEARCHES:
            ignored.append(key)
            continue
        wanted = set(value.split(","))
        element = "url" if key == "url" else "id"
        found = [resource for resource in found if resource[element] in wanted]
    return [Definition(resource) for resource in found], ignored
