"""FHIR date, dateTime and instant values as half-open UTC ranges [start, end).

Every time in bilan's code is an aware UTC datetime; Paris time is for display only
(bilan/french.py)."""

import re
from datetime import datetime, timedelta, timezone

_DATE = re.compile(
    r"^(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The instants a FHIR date/dateTime covers, e.g. '2024' -> [2024-01-01, 2025-01-01).

    Values without a time zone are read as UTC. Returned datetimes are aware UTC.
    Raises ValueError on a value that is not a FHIR date.
    """
    start, end = _naive_range(text)
    return start.replace(tzinfo=timezone.utc), end.replace(tzinfo=timezone.utc)


def _naive_range(text: str) -> tuple[datetime, datetime]:
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


OLDEST = datetime.min.replace(tzinfo=timezone.utc)  # sorts before any real moment


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def instant(moment: datetime) -> str:
    """An aware datetime as a FHIR instant, in UTC."""
    if moment.tzinfo is None:
        raise ValueError(f"an instant needs a time zone: {moment!r}")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
