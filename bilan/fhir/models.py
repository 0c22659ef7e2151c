"""The one import point for FHIR model classes: fhir.resources R4B, served as FHIR 4.0.1."""

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.resource import Resource

FHIR_VERSION = "4.0.1"

__all__ = [
    "FHIR_VERSION",
    "Bundle",
    "CapabilityStatement",
    "OperationOutcome",
    "Resource",
    "model_class",
]


def model_class(resource_type: str) -> type[Resource]:
    """The R4B model class for a resource type; KeyError when FHIR has no such resource."""
    try:
        cls = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ModuleNotFoundError) as exc:
        raise KeyError(resource_type) from exc
    if not issubclass(cls, Resource):
        raise KeyError(resource_type)
    return cls
