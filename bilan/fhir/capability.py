"""The CapabilityStatement, built from the search declarations and the served interactions."""

from typing import Any, Iterable, Sequence

from bilan.fhir.models import FHIR_VERSION
from bilan.fhir.searchparams import COMMON_PARAMS, RESOURCE_TYPES, params_for

PARAM_DEFINITION = "http://hl7.org/fhir/SearchParameter/{resource}-{name}"


def capability_statement(base_url: str, type_interactions: Iterable[str],
                         system_interactions: Iterable[str], software_version: str,
                         security: dict[str, Any] | None = None,
                         operations: Sequence[tuple[str, str, str]] = ()) -> dict[str, Any]:
    """`operations`: (resource type, name, definition URL) of each operation served."""
    type_interactions = sorted(set(type_interactions))
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [_resource(t, type_interactions, operations) for t in RESOURCE_TYPES],
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
    served = [{"name": name, "definition": definition}
              for rtype, name, definition in operations if rtype == resource_type]
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchInclude": references,
        "searchRevInclude": _revincludes(resource_type),
        "searchParam": [
            {"name": p.name, "type": p.type,
             "definition": PARAM_DEFINITION.format(resource=p.resource, name=p.name.lstrip("_")),
             **({"documentation": p.documentation} if p.documentation else {})}
            for p in params
        ],
        **({"operation": served} if served else {}),
    }


def _revincludes(resource_type: str) -> list[str]:
    return sorted(
        f"{source}:{p.name}"
        for source in RESOURCE_TYPES
        for p in params_for(source).values()
        if p.type == "reference" and resource_type in p.targets
    )
