"""The one table from the kinds of refusal the domain raises (bilan/fhir/outcomes.py) to the
HTTP status they answer with, for the API and the web pages alike."""

from bilan.fhir.outcomes import (
    Conflict,
    FhirError,
    Forbidden,
    Gone,
    Invalid,
    Malformed,
    NotFound,
    Stale,
    TooLarge,
    Unauthenticated,
    Unavailable,
    Unsupported,
)

STATUS: dict[type[FhirError], int] = {
    Malformed: 400,
    Unsupported: 415,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    Stale: 412,
    TooLarge: 413,
    Invalid: 422,
    Unavailable: 503,
}


def status_of(error: FhirError) -> int:
    """The status of a refusal, by the first of its classes the table names."""
    return next((STATUS[kind] for kind in type(error).__mro__ if kind in STATUS), 400)
