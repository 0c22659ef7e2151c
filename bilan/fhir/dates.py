"""FHIR date, dateTime and instant values as half-open UTC ranges [start, end)."""

import re
from datetime import datetime, timedelta, timezone

_DATE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The instants a FHIR date/dateTime covers, e.g. '2024' -> [2024-01-01, 2025-01-01).

    Values without a time zone are read as UTC. Returned datetimes are naive UTC.
    Raises ValueError on a value that is not a FHIR date.
    """
    match = _DATE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a FHIR date or dateTime")
    g = match.groupdict()
    year = int(g["y"])
    if g["m"] is None:
        start = datetime(year, 1, 1)
        return start, datetime(year + 1, 1, 1)
    month = int(g["m"])
    if g["d"] is None:
        start = datetime(year, month, 1)
        return start, (datetime(year + 1, 1, 1) if month == 12 else datetime(year, month + 1, 1))
    day = int(g["d"])
    if g["H"] is None:
        start = datetime(year, month, day)
        return start, start + timedelta(days=1)
    seconds = int(g["S"] or 0)
    micro = int((g["f"] or ".0")[1:7].ljust(6, "0"))
    start = datetime(year, month, day, int(g["H"]), int(g["M"]), seconds, micro)
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hours, minutes = g["tz"][1:].split(":")
        start -= sign * timedelta(hours=int(hours), minutes=int(minutes))
    if g["f"]:
        step = timedelta(microseconds=1)
    elif g["S"]:
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    return start, start + step


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def instant(moment: datetime) -> str:
    """A naive UTC datetime as a FHIR instant."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
