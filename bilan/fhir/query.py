"""A FHIR search URL read into criteria and result controls, checked against the declarations."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable
from urllib.parse import parse_qsl

from bilan.fhir.dates import date_range
from bilan.fhir.outcomes import FhirError, Issue, Malformed, bad_request
from bilan.fhir.searchparams import (
    COMMON_PARAMS,
    RESOURCE_TYPES,
    SearchParam,
    params_for,
)
from bilan.fhir.text import normalise

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
STRING_MODIFIERS = ("exact", "contains")
CONTROL_PARAMS = ("_count", "_offset", "_sort", "_include", "_revinclude", "_total", "_summary",
                  "_format", "_pretty")
SORTABLE = ("_lastUpdated", "_id")
INCLUDE_MODIFIERS = ("iterate",)  # _include:iterate, _revinclude:iterate

# What one search URL may ask, so that no request costs minutes: each criterion adds a join.
MAX_PARAMETERS = 50  # name=value pairs in all
MAX_REPEATS = 20  # times one parameter (name and modifier) may appear
MAX_VALUES = 20  # comma-separated values (OR-ed) of one parameter
MAX_VALUE_LENGTH = 500  # characters of one value
MAX_OFFSET = 1_000_000  # beyond, narrow the search instead of paging through it


@dataclass(frozen=True)
class Criterion:
    """One search parameter of the URL; its values are OR-ed, criteria are AND-ed."""

    param: SearchParam
    values: tuple[str, ...]
    modifier: str | None = None
    target_type: str | None = None
    chain: "Criterion | None" = None


@dataclass(frozen=True)
class Include:
    source_type: str
    param: SearchParam
    target_type: str | None = None
    iterate: bool = False  # also from what was included, not only from the matches


@dataclass
class SearchQuery:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = 20
    offset: int = 0
    sort: list[tuple[SearchParam, bool]] = field(default_factory=list)  # (param, descending)
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    summary_count: bool = False
    ignored: list[str] = field(default_factory=list)


def parse_search(resource_type: str, params: Iterable[tuple[str, str]], *,
                 default_count: int, max_count: int, strict: bool = True) -> SearchQuery:
    """Read search parameters. Unknown parameter names are an error when `strict`, else they
    are set aside in `ignored` (FHIR's lenient handling, the default for HTTP searches)."""
    query = SearchQuery(resource_type, count=default_count)
    for key, value in params:
        if key.startswith("_") and key.split(":")[0] in CONTROL_PARAMS:
            _control(query, key, value, max_count)
        elif not strict and not _known(resource_type, key):
            query.ignored.append(key)
        else:
            query.criteria.append(_criterion(resource_type, key, value))
    return query


def check_bounds(params: Iterable[tuple[str, str]]) -> None:
    """Refuse a search from outside (a URL, a criteria string) that asks more than the limits
    above; bilan's own searches may list more values and are not checked."""
    params = list(params)
    if len(params) > MAX_PARAMETERS:
        raise too_costly(f"A search may have at most {MAX_PARAMETERS} parameters, not "
                         f"{len(params)}", params[MAX_PARAMETERS][0])
    repeats: dict[str, int] = {}
    for key, value in params:
        repeats[key] = repeats.get(key, 0) + 1
        if repeats[key] > MAX_REPEATS:
            raise too_costly(f"{key} may appear at most {MAX_REPEATS} times in a search", key)
        if len(value) > MAX_VALUE_LENGTH:
            raise too_costly(f"A value of {key} may have at most {MAX_VALUE_LENGTH} characters, "
                             f"not {len(value)}", key)
        if value.count(",") >= MAX_VALUES:
            raise too_costly(f"{key} may list at most {MAX_VALUES} values (separated by commas)", key)
        if "\x00" in key or "\x00" in value:
            raise bad_request(f"{key} contains a NUL character (U+0000), which is never accepted", key)


def check_embedded_searches(resource: dict[str, Any]) -> None:
    """The searches a body carries (a transaction's conditional create or update, a conditional
    reference) are held to the same limits as a search URL, and named by their element."""
    pending: list[tuple[str, Any]] = [(str(resource.get("resourceType")), resource)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        if not isinstance(value, dict):
            continue
        for key, item in value.items():
            where = f"{path}.{key}"
            conditional = key == "reference" or (key == "url" and path.endswith(".request"))
            if isinstance(item, str) and (key == "ifNoneExist" or (conditional and "?" in item)):
                _check_embedded(item, where)
            else:
                pending.append((where, item))


def _check_embedded(text: str, where: str) -> None:
    try:
        check_bounds(parse_qsl(text.partition("?")[2] if "?" in text else text, keep_blank_values=True))
    except FhirError as error:
        raise type(error)([Issue(f"{where}: {issue.diagnostics}", issue.code, expression=where)
                                       for issue in error.issues]) from None


def too_costly(diagnostics: str, expression: str) -> FhirError:
    return Malformed([Issue(diagnostics, "too-costly", expression=expression)])


def whole_number(key: str, value: str, ceiling: int | None = None) -> int:
    """A count or an offset: ASCII digits only (int() would take "٣" as 3) and within 64 bits;
    capped at `ceiling` when one is given, else refused beyond MAX_OFFSET."""
    if not (value.isascii() and value.isdigit()):
        raise bad_request(f"{key} must be a whole number written with digits 0-9, not {value!r}", key)
    digits = value.lstrip("0") or "0"
    if len(digits) > 18:  # beyond 64 bits (and never int() of 5000 digits)
        raise bad_request(f"{key} is too large a number", key)
    number = int(digits)
    if ceiling is not None:
        return min(number, ceiling)
    if number > MAX_OFFSET:
        raise too_costly(f"{key} may be at most {MAX_OFFSET}: narrow the search instead", key)
    return number


def _known(resource_type: str, key: str) -> bool:
    name = key.split(".")[0].split(":")[0]
    return name in params_for(resource_type) or any(p.name == name for p in COMMON_PARAMS)


def _control(query: SearchQuery, key: str, value: str, max_count: int) -> None:
    name, _, modifier = key.partition(":")
    if modifier and not (name in ("_include", "_revinclude") and modifier in INCLUDE_MODIFIERS):
        allowed = ":iterate only" if name in ("_include", "_revinclude") else "no modifier"
        raise bad_request(f"{key}: modifier :{modifier} is not supported ({name} takes {allowed})", key)
    if key == "_count":
        query.count = whole_number(key, value, max_count)
    elif key == "_offset":
        query.offset = whole_number(key, value)
    elif key == "_sort":
        for name in value.split(","):
            descending = name.startswith("-")
            query.sort.append((_sort_param(query.resource_type, name.lstrip("-")), descending))
    elif name in ("_include", "_revinclude"):
        include = _include(key, value, iterate=bool(modifier))
        if key == "_include" and include.source_type != query.resource_type:
            raise bad_request(f"_include must start with {query.resource_type}: {value!r} "
                              "(_include:iterate follows what was included)", key)
        (query.includes if name == "_include" else query.revincludes).append(include)
    elif key == "_summary":
        if value != "count":
            raise bad_request("Only _summary=count is supported", key)
        query.summary_count = True


def _sort_param(resource_type: str, name: str) -> SearchParam:
    common = {p.name: p for p in COMMON_PARAMS}
    if name in common and name in SORTABLE:
        return common[name]
    param = params_for(resource_type).get(name)
    if param is None or param.type != "date":
        raise bad_request(f"Cannot sort {resource_type} by {name!r}: use _lastUpdated, _id "
                          "or a date parameter", "_sort")
    return param


def _include(key: str, value: str, iterate: bool = False) -> Include:
    parts = value.split(":")
    if len(parts) not in (2, 3) or parts[0] not in RESOURCE_TYPES:
        raise bad_request(f"{key} must read Type:parameter[:targetType], not {value!r}", key)
    param = params_for(parts[0]).get(parts[1])
    if param is None or param.type != "reference":
        raise bad_request(f"{parts[0]} has no reference parameter {parts[1]!r}", key)
    target = parts[2] if len(parts) == 3 else None
    if target is not None and target not in param.targets:
        raise bad_request(f"{parts[0]}:{parts[1]} cannot point to {target}", key)
    return Include(parts[0], param, target, iterate)


def _criterion(resource_type: str, key: str, value: str) -> Criterion:
    name, _, chain = key.partition(".")
    name, _, modifier = name.partition(":")
    param = _param(resource_type, name)
    values = tuple(v for v in value.split(",") if v != "")
    if not values:
        raise bad_request(f"Search parameter {key!r} has no value", key)
    if chain:
        return _chained(param, modifier or None, chain, value, key)
    if modifier:
        _check_modifier(param, modifier, key)
    if param.type == "reference" and modifier:
        return Criterion(param, values, target_type=modifier)
    for v in values:
        _check_value(param, v, key)
    return Criterion(param, values, modifier=modifier or None)


def _param(resource_type: str, name: str) -> SearchParam:
    for common in COMMON_PARAMS:
        if common.name == name:
            return common
    param = params_for(resource_type).get(name)
    if param is None:
        known = ", ".join(sorted(params_for(resource_type)))
        raise bad_request(
            f"{resource_type} has no search parameter {name!r}; supported: _id, _lastUpdated, {known}",
            name,
        )
    return param


def _chained(param: SearchParam, target: str | None, chain: str, value: str, key: str) -> Criterion:
    if param.type != "reference":
        raise bad_request(f"{param.name} is not a reference: it cannot be chained", key)
    targets = (target,) if target else param.targets
    if target and target not in param.targets:
        raise bad_request(f"{param.name} cannot point to {target}", key)
    if len(targets) != 1:
        raise bad_request(f"{param.name} may point to {', '.join(targets)}: name the type, "
                          f"e.g. {param.name}:{targets[0]}.{chain}", key)
    inner = _criterion(targets[0], chain, value)
    return Criterion(param, inner.values, target_type=targets[0], chain=inner)


def _check_modifier(param: SearchParam, modifier: str, key: str) -> None:
    allowed = {"string": STRING_MODIFIERS, "reference": param.targets, "token": (), "date": (),
               "uri": ()}
    if modifier not in allowed[param.type]:
        raise bad_request(f"Modifier :{modifier} is not supported on {param.name}", key)


def _check_value(param: SearchParam, value: str, key: str) -> None:
    if param.type == "date":
        parse_date_value(value, key)


def parse_date_value(value: str, key: str = "date") -> tuple[str, datetime, datetime]:
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    try:
        start, end = date_range(text)
    except ValueError:
        raise bad_request(f"{key}: {value!r} is not a date (e.g. ge2024-01-31)", key) from None
    return prefix, start, end


def parse_token_value(value: str) -> tuple[str | None, str | None]:
    """(system, code): 'code' -> (None, code); '|code' -> ('', code); 'sys|' -> (sys, None)."""
    if "|" not in value:
        return None, value
    system, _, code = value.partition("|")
    return system, (code or None)


def parse_reference_value(value: str, targets: tuple[str, ...], base_url: str) -> tuple[tuple[str, ...], str]:
    """(possible target types, id) of a reference search value: id, Type/id or an absolute URL."""
    if value.startswith(base_url.rstrip("/") + "/"):
        value = value[len(base_url.rstrip("/")) + 1:]
    if "/" in value:
        rtype, _, rid = value.rpartition("/")
        return (rtype.rsplit("/", 1)[-1],), rid
    return targets, value


def string_search_value(value: str) -> str:
    return normalise(value)
