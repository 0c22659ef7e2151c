"""Bytes in, resource dicts out (and back): JSON and XML, checked against the R4B models."""

import json
import math
import re
import sys
from decimal import Decimal
from typing import Any, cast

import orjson
import pydantic
from lxml import etree

from bilan.fhir.models import Resource, model_class
from bilan.fhir.outcomes import (
    FhirError,
    Invalid,
    Issue,
    Malformed,
    Unsupported,
    bad_request,
)

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
XML_TYPES = ("application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")

_SAFE_XML = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True,
    remove_pis=True,
)
FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"  # the narrative's div, and what is inside it
XINCLUDE_NS = "http://www.w3.org/2001/XInclude"
LARGEST_INTEGER = 2**63 - 1  # what every store and serialiser can hold
# A decimal keeps its digits as a Decimal (FHIR: 1.950 is not 1.95); one beyond a double's range
# would still break any float arithmetic on it, so it is refused as an infinity is.
LARGEST_DECIMAL = Decimal(sys.float_info.max)


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
        raise Unsupported(
            [Issue(f"Content-Type {content_type or '(none)'} is not supported: send "
                   "application/fhir+json or application/fhir+xml", "not-supported")],
        )
    if not body.strip():
        raise bad_request("The request body is empty: a FHIR resource is expected")
    resource = _parse_json(body) if kind == "json" else _parse_xml(body)
    check_values(resource, resource["resourceType"])
    return resource


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # A number beyond a double, or JavaScript's NaN and Infinity (not JSON, but what a
        # faulty instrument's software writes): say which element holds it.
        if "infinity" in str(exc) or _NOT_FINITE.search(body):
            _locate_infinity(body)
        raise bad_request(f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise bad_request("The body must be a JSON object with a resourceType", "resourceType")
    # orjson checked the body (and says best what is wrong with it); read again, its decimals
    # keep the digits they were sent with, which a float loses ("1.950" would become 1.95).
    exact: dict[str, Any] = json.loads(body, parse_float=Decimal)
    return exact


_NOT_FINITE = re.compile(rb"[:\[,]\s*-?(NaN|Infinity)\s*[,\]}]")


def _locate_infinity(body: bytes) -> None:
    try:
        data = json.loads(body)  # the standard library reads 1e309 as inf, where orjson stops
    except (ValueError, RecursionError):
        return
    check_values(data, "")


def check_values(data: Any, prefix: str) -> None:
    """Refuse what no element may hold: a NUL character (PostgreSQL cannot store it), a number
    that is not finite or beyond 64 bits. Iterative: bodies may nest deeply."""
    pending: list[tuple[str, Any]] = [(prefix or str(_get(data, "resourceType") or ""), data)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise bad_request(f"{path} has an element name with a NUL character (U+0000)", path)
                pending.append((f"{path}.{key}", item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, str):
            if "\x00" in value:
                raise bad_request(f"{path} contains a NUL character (U+0000), which is never accepted", path)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and abs(value) > LARGEST_INTEGER:
            raise _out_of_range(path)
        elif isinstance(value, float) and not math.isfinite(value):
            raise _out_of_range(path)
        elif isinstance(value, Decimal) and not (value.is_finite() and abs(value) <= LARGEST_DECIMAL):
            raise _out_of_range(path)


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None


def _out_of_range(path: str) -> FhirError:
    return Invalid([Issue(f"{path} is not a number bilan can hold (too large, or not "
                                 "finite)", "value", expression=path)])


def _parse_xml(body: bytes) -> dict[str, Any]:
    try:
        root = etree.fromstring(body, _SAFE_XML)
    except etree.XMLSyntaxError as exc:
        raise bad_request(f"The body is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise bad_request("XML documents with a DOCTYPE are refused")
    name = etree.QName(root)
    if name.namespace != FHIR_NS:
        raise bad_request(f"The XML root element must be in the {FHIR_NS} namespace")
    _check_namespaces(root)
    cls = _known_class(name.localname, "resourceType")
    try:
        model = cls.model_validate_xml(etree.tostring(root))
    except pydantic.ValidationError as exc:
        raise Malformed(validation_issues(exc, name.localname)) from None
    except (ValueError, TypeError) as exc:
        raise bad_request(f"The XML could not be read as a {name.localname}: {exc}") from None
    resource: dict[str, Any] = _large_as_decimals(to_dict(model))
    return resource


def _large_as_decimals(node: Any) -> Any:
    """An XML decimal such as -1.0E+245 reads back as an integer no store or serialiser holds;
    FHIR integers are 32-bit, so such a number is a decimal: a float, as JSON would give it."""
    if isinstance(node, dict):
        return {key: _large_as_decimals(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_large_as_decimals(item) for item in node]
    if isinstance(node, int) and not isinstance(node, bool) and abs(node) > LARGEST_INTEGER:
        try:
            return float(node)
        except OverflowError:
            return math.inf  # refused by check_values, naming the element
    return node


def _check_namespaces(root: etree._Element) -> None:
    """Only FHIR elements, and XHTML inside a narrative's div: anything else (XInclude, another
    vocabulary) is refused by name, never resolved nor silently dropped."""
    for element in root.iter(etree.Element):
        name = etree.QName(element)
        in_narrative = any(etree.QName(a).namespace == XHTML_NS for a in element.iterancestors())
        if name.namespace == XHTML_NS and (in_narrative or name.localname == "div"):
            continue
        if name.namespace == FHIR_NS and not in_narrative:
            continue
        where = _xml_path(element)
        why = "XInclude is never resolved" if name.namespace == XINCLUDE_NS else "it is not FHIR"
        raise bad_request(f"{where}: the element {{{name.namespace or ''}}}{name.localname} is "
                          f"refused ({why}): a FHIR body holds only {FHIR_NS} elements, and XHTML "
                          "in a narrative div", where)


def _xml_path(element: etree._Element) -> str:
    names = [etree.QName(e).localname for e in reversed(list(element.iterancestors()))]
    return ".".join([*names, etree.QName(element).localname])


def _known_class(resource_type: str, expression: str) -> type[Resource]:
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
    except (AttributeError, TypeError) as exc:
        return [_misplaced_non_string(cls, resource, prefix, exc)]
    except ValueError as exc:
        return [Issue(f"Not a valid {resource_type}: {exc}", "structure", expression=prefix)]
    return []


def _misplaced_non_string(cls: type[Resource], resource: dict[str, Any], prefix: str, exc: Exception) -> Issue:
    """fhir.resources' url type calls str methods on whatever it gets (false, 3, {}) instead of
    saying which element is wrong: find it by trying each non-string value, deepest first, as a
    string."""
    candidates: list[tuple[int, list[Any]]] = []
    pending: list[tuple[list[Any], Any]] = [([], resource)]
    while pending:
        path, value = pending.pop()
        if path and not isinstance(value, str):
            candidates.append((len(path), path))
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        pending.extend(([*path, key], item) for key, item in items)
    for _, path in sorted(candidates, key=lambda c: -c[0])[:200]:
        try:
            cls.model_validate(_replaced(resource, path, "x"))
        except (AttributeError, TypeError):
            continue
        except (pydantic.ValidationError, ValueError):
            pass
        where = _path(prefix, tuple(path))
        return Issue(f"{where} must be a string", "structure", expression=where)
    return Issue(f"Not a valid {resource.get('resourceType')}: {exc}", "structure", expression=prefix)


def _replaced(data: Any, path: list[Any], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        return {**data, head: _replaced(data[head], rest, new)}
    return [_replaced(item, rest, new) if index == head else item for index, item in enumerate(data)]


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
    return orjson.dumps(resource, default=json_decimal)


def json_decimal(value: Any) -> orjson.Fragment:
    """A Decimal as the JSON number it is, digits kept (orjson's `default`)."""
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def to_xml(resource: dict[str, Any]) -> bytes:
    cls = model_class(resource["resourceType"])
    try:
        xml = cls.model_validate(resource).model_dump_xml()
    except ValueError:
        # XML 1.0 cannot carry control characters, which an error may quote from its request.
        xml = cls.model_validate(_xml_safe(resource)).model_dump_xml()
    # fhir.resources annotates model_dump_xml as str, but lxml's serialiser gives it bytes.
    return _decimals_as_sent(cast(bytes, xml), resource)


def _decimals_as_sent(xml: bytes, resource: dict[str, Any]) -> bytes:
    """fhir.resources writes a decimal through a float (1.950 as 1.95): each Decimal of the
    resource is written again with its own digits, as the JSON form does."""
    if not _has_decimal(resource):
        return xml
    # bilan's own output, read back whole (its comments too): no entity to guard against.
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    _write_decimals(root, resource)
    written: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    return written


def _has_decimal(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_decimal(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_decimal(item) for item in value)
    return isinstance(value, Decimal)


def _write_decimals(element: etree._Element, content: dict[str, Any]) -> None:
    """The XML elements follow the JSON properties: one element per property, one per item of
    a list, in order; a resource inside (contained, entry.resource) sits one level down."""
    for key, value in content.items():
        if key.startswith("_") or key == "resourceType" or not _has_decimal(value):
            continue
        items = value if isinstance(value, list) else [value]
        for child, item in zip(element.findall(f"{{{FHIR_NS}}}{key}"), items, strict=False):
            if isinstance(item, Decimal):
                child.set("value", str(item))
            elif isinstance(item, dict) and "resourceType" in item:
                inner = child.find(f"{{{FHIR_NS}}}{item['resourceType']}")
                if inner is not None:
                    _write_decimals(inner, item)
            elif isinstance(item, dict):
                _write_decimals(child, item)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(value: Any) -> Any:
    if isinstance(value, str):
        return _NOT_XML.sub("\ufffd", value)
    if isinstance(value, dict):
        return {key: _xml_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_xml_safe(item) for item in value]
    return value
