"""What a resource must satisfy before it is stored: structure, value sets, domain rules."""

from typing import Any, Callable, Mapping, Sequence

from bilan.fhir.outcomes import Issue
from bilan.fhir.parsing import validate
from bilan.fhir.references import ID
from bilan.fhir.searchparams import RESOURCE_TYPES
from bilan.fhir.valuesets import check_required_codes

# A domain rule reads a resource (and the FHIRPath prefix to report at) and returns its issues.
Rule = Callable[[dict[str, Any], str], list[Issue]]
# An amendment is what the server itself sets on a resource it accepts (e.g. a Subscription
# becomes active); it runs once the resource passed its rules.
Amendment = Callable[[dict[str, Any]], dict[str, Any]]


class Validator:
    def __init__(self, rules: Mapping[str, Sequence[Rule]],
                 amendments: Mapping[str, Sequence[Amendment]] | None = None):
        self.rules = rules
        self.amendments = amendments or {}

    def amend(self, resource: dict[str, Any]) -> dict[str, Any]:
        for amendment in self.amendments.get(str(resource.get("resourceType")), ()):
            resource = amendment(resource)
        return resource

    def check(self, resource: dict[str, Any], prefix: str | None = None) -> list[Issue]:
        """Every issue of a resource; structural ones first. Empty when it may be stored."""
        resource_type = resource.get("resourceType")
        prefix = prefix or str(resource_type)
        if resource_type not in RESOURCE_TYPES:
            return [Issue(f"bilan does not store {resource_type} resources; it stores "
                          f"{', '.join(RESOURCE_TYPES)}", "not-supported",
                          expression=f"{prefix}.resourceType")]
        issues = validate(resource, prefix)
        if issues:
            return issues
        if "id" in resource and not ID.match(str(resource["id"])):
            issues.append(Issue(f"id {resource['id']!r} is not a valid FHIR id", "value",
                                expression=f"{prefix}.id"))
        issues.extend(check_required_codes(resource, prefix))
        for rule in self.rules.get(resource_type, ()):
            issues.extend(rule(resource, prefix))
        return issues


def is_structural(issues: list[Issue]) -> bool:
    """Whether the resource is not even well-formed FHIR (as opposed to breaking a rule)."""
    return any(i.code == "structure" for i in issues)
