"""Bytes in, resource dicts out (and back): JSON and XML, checked against the R4B models."""

from typing import Any

import orjson
import pydantic
from lxml import etree

from bilan.fhir.models import model_class
from bilan.fhir.outcomes import FhirError, Issue, bad_request

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")

_SAFE_XML = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
)


def media_kind(content_type: str | None) -> str | None:
    """'json', 'xml' or None for a Content-Type header value."""
    if not content_type:
        return None
    mime = content_type.split(";")[0].strip().lower()
    if mime in JSON_TYPES:
        return "json"
    if mime in XML_TYPES:
        return "xml"
    return None


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The resource a request body carries, as a JSON-shaped dict."""
    kind = media_kind(content_type)
    if kind is None:
        raise FhirError(
            415,
            [Issue(f"Content-Type {content_type or '(none)'} is not supported: send "
                   "application/fhir+json or application/fhir+xml", "not-supported")],
        )
    if not body.strip():
        raise bad_request("The request body is empty: a FHIR resource is expected")
    return _parse_json(body) if kind == "json" else _parse_xml(body)


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise bad_request("The body must be a JSON object with a resourceType", "resourceType")
    return data


def _parse_xml(body: bytes) -> dict[str, Any]:
    try:
        root = etree.fromstring(body, _SAFE_XML)
    except etree.XMLSyntaxError as exc:
        raise bad_request(f"The body is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise bad_request("XML documents with a DOCTYPE are refused")
    name = etree.QName(root)
    if name.namespace != "http://hl7.org/fhir":
        raise bad_request("The XML root element must be in the http://hl7.org/fhir namespace")
    cls = _known_class(name.localname, "resourceType")
    try:
        model = cls.model_validate_xml(etree.tostring(root))
    except pydantic.ValidationError as exc:
        raise FhirError(400, validation_issues(exc, name.localname)) from None
    except (ValueError, TypeError) as exc:
        raise bad_request(f"The XML could not be read as a {name.localname}: {exc}") from None
    return to_dict(model)


def _known_class(resource_type: str, expression: str) -> type:
    try:
        return model_class(resource_type)
    except KeyError:
        raise bad_request(f"{resource_type!r} is not a FHIR R4 resource type", expression) from None


def validate(resource: dict[str, Any], expression: str | None = None) -> list[Issue]:
    """Structural problems of a resource against its R4B model; [] when it is well-formed."""
    prefix = expression or str(resource.get("resourceType"))
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return [Issue("resourceType is missing", "required", expression=prefix)]
    try:
        cls = model_class(resource_type)
    except KeyError:
        return [Issue(f"{resource_type!r} is not a FHIR R4 resource type", "invalid",
                      expression=f"{prefix}.resourceType")]
    try:
        cls.model_validate(resource)
    except pydantic.ValidationError as exc:
        return validation_issues(exc, prefix)
    except (ValueError, TypeError) as exc:
        return [Issue(f"Not a valid {resource_type}: {exc}", "structure", expression=prefix)]
    return []


_MESSAGES = {
    "extra_forbidden": "is not an element of this resource",
    "missing": "is required",
    "list_type": "must be a list (a JSON array)",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
}


def validation_issues(exc: pydantic.ValidationError, prefix: str) -> list[Issue]:
    issues = []
    for error in exc.errors():
        path = _path(prefix, error["loc"])
        message = _message(error)
        issues.append(Issue(f"{path} {message}", "structure", expression=path))
    return issues


def _message(error: Any) -> str:
    if error["type"] in _MESSAGES:
        return _MESSAGES[error["type"]]
    text = str(error["msg"]).removeprefix("Value error, ")
    if text.endswith("does not match spec regex."):
        kind = text.split(" ", 1)[0].lower()
        return f"is not a valid FHIR {kind}: {error.get('input')!r}"
    return text


def _path(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and not part.startswith("__") and not part[:1].isupper():
            path += f".{part}"
    return path


def to_dict(model: pydantic.BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


def to_json(resource: dict[str, Any]) -> bytes:
    return orjson.dumps(resource)


def to_xml(resource: dict[str, Any]) -> bytes:
    cls = model_class(resource["resourceType"])
    return cls.model_validate(resource).model_dump_xml()
