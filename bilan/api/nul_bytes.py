"""NUL characters (U+0000) refused at the door: PostgreSQL cannot store them in text, and no
FHIR string, search value, id or French form field ever needs one. The URL path, the query
string and urlencoded form bodies are read here, once for every route; JSON bodies are
checked where they are parsed (bilan/fhir/parsing.py), which can name the element."""

from urllib.parse import parse_qsl, unquote_to_bytes

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from bilan.fhir.outcomes import FhirError, bad_request

FORM = b"application/x-www-form-urlencoded"


class NulGuard(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, max_body_bytes: int):
        self.max_body_bytes = max_body_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        api = scope["path"].startswith(("/fhir", "/.well-known"))
        if "\x00" in scope["path"]:
            raise _refusal(api, _path_element(scope["path"]), "l'adresse de la page")
        _check_pairs(scope.get("query_string", b""), api)
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if content_type.split(b";")[0].strip().lower() == FORM:
            receive = await self._checked_form(receive, api)
        await next_app(scope, receive, send)

    async def _checked_form(self, receive: Receive, api: bool) -> Receive:
        """The form body read (up to the size limit, which litestar enforces itself) and checked,
        then handed on unchanged."""
        read: list[ReceiveMessage] = []
        body, more = b"", True
        while more and len(body) <= self.max_body_bytes:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if not more:
            _check_pairs(body, api)

        async def replay() -> ReceiveMessage:
            return read.pop(0) if read else await receive()

        return replay


def _check_pairs(encoded: bytes, api: bool) -> None:
    if b"%00" not in encoded and b"\x00" not in encoded:
        return
    for name, value in parse_qsl(encoded.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            raise _refusal(api, name.replace("\x00", "") or "?", f"le champ « {name} »")
    if b"\x00" in unquote_to_bytes(encoded):  # not in a name=value pair: still refused
        raise _refusal(api, "?", "la demande")


def _path_element(path: str) -> str:
    """What a NUL in a /fhir path stands in: the resource id, the version, or the type."""
    parts = path.split("/")[2:]  # "", "fhir", Type, id, "_history", version
    if len(parts) >= 2 and "\x00" in parts[1]:
        return f"{parts[0]}.id"
    if len(parts) >= 4 and "\x00" in parts[3]:
        return f"{parts[0]}.meta.versionId"
    return "url"


def _refusal(api: bool, element: str, where_fr: str) -> FhirError:
    if api:
        return bad_request(f"{element} contains a NUL character (U+0000), which is never "
                           "accepted", element)
    return bad_request(f"Le caractère nul (U+0000) n'est pas accepté dans {where_fr} : "
                       "retirez-le et recommencez.", element)
