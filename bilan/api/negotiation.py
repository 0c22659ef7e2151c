"""Answering in the format the client asked for: FHIR JSON by default, XML on request."""

import base64
from email.utils import format_datetime
from typing import Any, Mapping

from litestar import Request, Response

from bilan.fhir.bundles import etag
from bilan.fhir.parsing import to_json, to_xml
from bilan.storage.repository import Stored

JSON = "application/fhir+json"
XML = "application/fhir+xml"

_FORMATS = {"json": JSON, "xml": XML, "application/json": JSON, "application/fhir+json": JSON,
            "application/xml": XML, "application/fhir+xml": XML, "text/xml": XML}


def wanted_format(request: Request[Any, Any, Any]) -> str:
    """_format wins over Accept; JSON when neither names XML."""
    asked = request.query_params.get("_format")
    if asked:
        return _FORMATS.get(asked.strip().lower(), JSON)
    accept = request.headers.get("accept", "")
    for part in accept.split(","):
        mime = part.split(";")[0].strip().lower()
        if mime in _FORMATS:
            return _FORMATS[mime]
    return JSON


def asks_for_fhir(request: Request[Any, Any, Any]) -> bool:
    """Whether the client asked for a FHIR format (a Binary is otherwise served as itself)."""
    if request.query_params.get("_format"):
        return True
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() in (JSON, XML) for part in accept.split(","))


def binary_response(stored: Stored) -> Response[bytes]:
    """A Binary's content in its own media type (FHIR R4 3.1.0.1.2, Binary read)."""
    content = stored.content
    return Response(base64.b64decode(content.get("data", "")), status_code=200,
                    media_type=content.get("contentType", "application/octet-stream"),
                    headers=version_headers(stored))


def fhir_response(request: Request[Any, Any, Any], body: dict[str, Any] | None, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response[bytes]:
    media = wanted_format(request)
    if body is None:
        content = b""
    else:
        content = to_xml(body) if media == XML else to_json(body)
    return Response(content, status_code=status, media_type=f"{media}; charset=utf-8",
                    headers=dict(headers or {}))


def version_headers(stored: Stored, base_url: str | None = None) -> dict[str, str]:
    headers = {
        "ETag": etag(stored),
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
    }
    if base_url is not None:
        headers["Location"] = (f"{base_url}/{stored.resource_type}/{stored.id}"
                               f"/_history/{stored.version_id}")
    return headers
