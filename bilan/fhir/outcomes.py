"""OperationOutcome as a value: issues, the error that carries them, and its HTTP status."""

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue; `code` is from http://hl7.org/fhir/issue-type."""

    diagnostics: str
    code: str = "invalid"
    severity: Severity = "error"
    expression: str | None = None

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FhirError(Exception):
    """A request that cannot be served; raised where the problem is understood."""

    status: int
    issues: list[Issue] = field(default_factory=list)

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def bad_request(diagnostics: str, expression: str | None = None) -> FhirError:
    return FhirError(400, [Issue(diagnostics, "invalid", expression=expression)])


def unprocessable(issues: list[Issue]) -> FhirError:
    return FhirError(422, issues)


def not_found(resource_type: str, resource_id: str) -> FhirError:
    return FhirError(404, [Issue(f"{resource_type}/{resource_id} is not known", "not-found")])


def gone(resource_type: str, resource_id: str) -> FhirError:
    return FhirError(410, [Issue(f"{resource_type}/{resource_id} has been deleted", "deleted")])


def not_supported(diagnostics: str) -> FhirError:
    return FhirError(400, [Issue(diagnostics, "not-supported")])


def conflict(diagnostics: str, expression: str | None = None) -> FhirError:
    return FhirError(409, [Issue(diagnostics, "conflict", expression=expression)])


def precondition_failed(diagnostics: str) -> FhirError:
    return FhirError(412, [Issue(diagnostics, "conflict")])


def errors_only(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]
