"""OperationOutcome as a value: issues, and the refusals that carry them, by kind."""

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue; `code` is from http://hl7.org/fhir/issue-type."""

    diagnostics: str
    code: str = "invalid"
    severity: Severity = "error"
    expression: str | None = None
    location: str | None = None  # an XPath, for what came from an XML document (eP-BIO CDA)

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        if self.location:
            issue["location"] = [self.location]
        return issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


class FhirError(Exception):
    """Something bilan will not do, raised where the problem is understood: its issues. What
    kind of refusal it is is its class; one table in bilan/api/errors.py gives each kind its
    HTTP status."""

    def __init__(self, issues: list[Issue] | None = None, headers: dict[str, str] | None = None):
        super().__init__()
        self.issues = list(issues or [])
        self.headers = headers

    def __str__(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class Malformed(FhirError):
    """Not well-formed: unreadable, or a parameter or element of the wrong shape."""


class Unsupported(FhirError):
    """A body in a media type bilan does not read."""


class Unauthenticated(FhirError):
    """No caller, or one whose credentials do not hold."""


class Forbidden(FhirError):
    """The caller may not do this."""


class NotFound(FhirError):
    """Nothing of that name, or nothing the caller may know of."""


class Conflict(FhirError):
    """It collides with what is stored, or with the state of the work."""


class Gone(FhirError):
    """It was deleted."""


class Stale(FhirError):
    """A version or a condition the request relies on does not hold."""


class TooLarge(FhirError):
    """Beyond what bilan accepts in one request."""


class Invalid(FhirError):
    """Well-formed, but it breaks a rule."""


class Unavailable(FhirError):
    """Not now: try again later."""


def bad_request(diagnostics: str, expression: str | None = None) -> FhirError:
    return Malformed([Issue(diagnostics, "invalid", expression=expression)])


def unprocessable(issues: list[Issue]) -> FhirError:
    return Invalid(issues)


def not_found(resource_type: str, resource_id: str) -> FhirError:
    return NotFound([Issue(f"{resource_type}/{resource_id} is not known", "not-found")])


def gone(resource_type: str, resource_id: str) -> FhirError:
    return Gone([Issue(f"{resource_type}/{resource_id} has been deleted", "deleted")])


def not_supported(diagnostics: str) -> FhirError:
    """A request for something bilan does not do (a Bundle type, a transaction method)."""
    return Malformed([Issue(diagnostics, "not-supported")])


def conflict(diagnostics: str, expression: str | None = None) -> FhirError:
    return Conflict([Issue(diagnostics, "conflict", expression=expression)])


def precondition_failed(diagnostics: str) -> FhirError:
    return Stale([Issue(diagnostics, "conflict")])


def errors_only(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]
