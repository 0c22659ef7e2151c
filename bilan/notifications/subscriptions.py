"""What bilan accepts as a FHIR R4 Subscription, and what it sets on one it accepts.

bilan supports the rest-hook channel only: a change matching `criteria` is announced to
`channel.endpoint` (see matching.py for what is sent).
"""

import re
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from bilan.fhir.outcomes import FhirError, Issue
from bilan.fhir.query import CONTROL_PARAMS, SearchQuery, check_bounds, parse_search
from bilan.fhir.searchparams import RESOURCE_TYPES

STATUSES = ("requested", "active", "off")  # "error" is the server's to set
PAYLOADS = ("application/fhir+json", "application/json")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
UNNOTIFIED = ("AuditEvent", "Subscription")  # changes bilan never announces
NOTIFIED_TYPES = tuple(t for t in RESOURCE_TYPES if t not in UNNOTIFIED)
HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)$")
RESERVED_HEADERS = ("host", "content-type", "content-length", "transfer-encoding")


def split_criteria(criteria: str) -> tuple[str, list[tuple[str, str]]]:
    """`Type?a=1&b=2` as ("Type", [("a", "1"), ("b", "2")])."""
    resource_type, _, query = criteria.partition("?")
    return resource_type, parse_qsl(query, keep_blank_values=True)


def criteria_query(criteria: str, extra: Iterable[tuple[str, str]] = ()) -> SearchQuery:
    """The search a criteria string stands for (with `extra` parameters AND-ed); raises
    FhirError if bilan cannot run it."""
    resource_type, params = split_criteria(criteria)
    return parse_search(resource_type, [*params, *extra], default_count=1, max_count=1,
                        strict=True)


def headers(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """channel.header as (name, value) pairs; check_subscription has vouched for their form."""
    pairs = []
    for line in (resource.get("channel") or {}).get("header") or []:
        match = HEADER.match(line)
        if match:
            pairs.append((match.group(1), match.group(2).strip()))
    return pairs


def check_subscription(resource: dict[str, Any], prefix: str) -> list[Issue]:
    # The structure has been checked before; types are checked again here all the same, so
    # that a rule never fails on a value of the wrong JSON type (a 500 instead of a 422).
    channel = resource.get("channel")
    if not isinstance(channel, dict):
        return [Issue("A subscription needs a channel (an object)", "required", expression=f"{prefix}.channel")]
    criteria = resource.get("criteria")
    issues = _check_criteria(criteria if isinstance(criteria, str) else "", f"{prefix}.criteria")
    if not isinstance(resource.get("status"), str) or resource["status"] not in STATUSES:
        issues.append(Issue(f"A client may set status {', '.join(STATUSES)}, not "
                            f"{resource.get('status')!r}", "value", expression=f"{prefix}.status"))
    if channel.get("type") != "rest-hook":
        issues.append(Issue(f"bilan delivers rest-hook subscriptions only, not "
                            f"{channel.get('type')!r}", "not-supported",
                            expression=f"{prefix}.channel.type"))
    problem = endpoint_problem(channel.get("endpoint"))
    if problem:
        issues.append(Issue(problem, "value", expression=f"{prefix}.channel.endpoint"))
    payload = channel.get("payload")
    if payload is not None and (not isinstance(payload, str) or payload.split(";")[0].strip() not in PAYLOADS):
        issues.append(Issue(f"The payload may be {' or '.join(PAYLOADS)} (or absent: a "
                            f"notification without content), not {payload!r}", "not-supported",
                            expression=f"{prefix}.channel.payload"))
    lines = channel.get("header") or []
    for index, line in enumerate(lines if isinstance(lines, list) else [lines]):
        match = HEADER.match(line) if isinstance(line, str) else None
        if match is None or match.group(1).lower() in RESERVED_HEADERS:
            issues.append(Issue(f"A header reads 'Name: value' and may not set "
                                f"{', '.join(RESERVED_HEADERS)}", "value",
                                expression=f"{prefix}.channel.header[{index}]"))
    return issues


def activate(resource: dict[str, Any]) -> dict[str, Any]:
    """R4: the server, not the client, turns a requested subscription on."""
    if resource.get("status") == "requested":
        return dict(resource, status="active")
    return resource


def endpoint_problem(endpoint: Any) -> str | None:
    """Why bilan will not call this endpoint, or None: absolute http(s), plain http only to
    this machine (a notification says what changed about a patient)."""
    if not isinstance(endpoint, str) or not endpoint:
        return "A rest-hook subscription needs an endpoint"
    try:
        url = urlsplit(endpoint)
        host, _port = url.hostname, url.port  # .port raises on a port that is not a number
    except ValueError:
        return f"{endpoint!r} is not a URL"
    if url.scheme not in ("http", "https") or not host:
        return "The endpoint must be an absolute https:// URL"
    if url.scheme == "http" and host not in LOOPBACK:
        return "The endpoint must use https (plain http only to 127.0.0.1, ::1 or localhost)"
    if url.username is not None or url.fragment:
        return "The endpoint may carry no user name, password or #fragment (use channel.header)"
    return None


def _check_criteria(criteria: str, path: str) -> list[Issue]:
    resource_type, params = split_criteria(criteria)
    if "?" not in criteria or not params:
        return [Issue("criteria is a search, Type?parameters, e.g. "
                      "Task?requisition=system|number", "value", expression=path)]
    if resource_type not in NOTIFIED_TYPES:
        return [Issue(f"bilan notifies changes of {', '.join(NOTIFIED_TYPES)}, not "
                      f"{resource_type!r}", "not-supported", expression=path)]
    controls = [key for key, _ in params if key.split(":")[0] in CONTROL_PARAMS]
    if controls:
        return [Issue(f"criteria selects resources: {', '.join(controls)} has no meaning there",
                      "value", expression=path)]
    try:
        check_bounds(params)
        criteria_query(criteria)
    except FhirError as error:
        return [Issue(f"criteria: {error}", "value", expression=path)]
    return []
