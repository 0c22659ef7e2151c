"""The CapabilityStatement, built from the search declarations and the served interactions:
it claims only what answers (each interaction of each type is asked of the write policy)."""

from typing import Any, Callable, Iterable, Sequence

from bilan.fhir.definitions import DEFINITION_TYPE
from bilan.fhir.definitions import SEARCHES as DEFINITION_SEARCHES
from bilan.fhir.models import FHIR_VERSION
from bilan.fhir.searchparams import COMMON_PARAMS, RESOURCE_TYPES, SearchParam, params_for

WRITES = ("create", "update", "delete")
# Served from the audit trail's own tables (bilan/storage/audit_log.py), which take no
# _include or _revinclude.
NO_INCLUDES = ("AuditEvent",)
# The (FR Core) profiles every stored resource of a type is checked against, and only those:
# none yet. What bilan stores of a Patient, an Encounter... is what its sender sent, unchecked
# against FR Core, and FR Core profiles nothing bilan writes itself (docs/api.md).
SUPPORTED_PROFILES: dict[str, tuple[str, ...]] = {}


def capability_statement(base_url: str, type_interactions: Iterable[str],
                         system_interactions: Iterable[str], software_version: str,
                         security: dict[str, Any] | None = None,
                         operations: Sequence[tuple[str, str, str]] = (),
                         writable: Callable[[str], bool] = lambda _type: True) -> dict[str, Any]:
    """`operations`: (resource type, name, definition URL) of each operation served;
    `writable`: whether anyone may write a type (the others are read-only)."""
    type_interactions = sorted(set(type_interactions))
    resources = [_resource(t, [i for i in type_interactions if writable(t) or i not in WRITES],
                           operations) for t in RESOURCE_TYPES]
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [*resources, _definitions()],
        "interaction": [{"code": code} for code in sorted(set(system_interactions))],
    }
    if security:
        rest["security"] = security
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "publisher": "bilan",
        "kind": "instance",
        "software": {"name": "bilan", "version": software_version},
        "implementation": {"description": "bilan: lab prescriptions and results", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/fhir+xml"],
        "rest": [rest],
    }


def _resource(resource_type: str, interactions: list[str],
              operations: Sequence[tuple[str, str, str]] = ()) -> dict[str, Any]:
    params = [*COMMON_PARAMS, *params_for(resource_type).values()]
    references = sorted(f"{resource_type}:{p.name}" for p in params if p.type == "reference")
    if resource_type in NO_INCLUDES:
        references = []
    served = [{"name": name, "definition": definition}
              for rtype, name, definition in operations if rtype == resource_type]
    writes = "update" in interactions
    profiles = SUPPORTED_PROFILES.get(resource_type, ())
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        **({"supportedProfile": list(profiles)} if profiles else {}),
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned-update" if writes else "versioned",
        "readHistory": True,
        "updateCreate": writes,
        "conditionalCreate": "create" in interactions,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchInclude": references,
        "searchRevInclude": _revincludes(resource_type),
        "searchParam": [_search_param(p) for p in params],
        **({"operation": served} if served else {}),
    }


def _search_param(param: SearchParam) -> dict[str, Any]:
    return {"name": param.name, "type": param.type, "definition": param.definition,
            **({"documentation": param.documentation} if param.documentation else {})}


def _revincludes(resource_type: str) -> list[str]:
    return sorted(
        f"{source}:{p.name}"
        for source in RESOURCE_TYPES if source not in NO_INCLUDES
        for p in params_for(source).values()
        if p.type == "reference" and resource_type in p.targets
    )


def _definitions() -> dict[str, Any]:
    """bilan's own SearchParameter definitions, read-only (bilan/fhir/definitions.py)."""
    common = {p.name: p for p in COMMON_PARAMS}
    url = SearchParam(DEFINITION_TYPE, "url", "uri", ("url",))
    params = {"url": url, "_id": common["_id"]}
    return {
        "type": DEFINITION_TYPE,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{DEFINITION_TYPE}",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [_search_param(params[name]) for name in DEFINITION_SEARCHES],
    }
