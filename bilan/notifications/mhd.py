"""The shared record's (DMP) MHD interface, as a client: find a patient's documents by INS
(ITI-67), retrieve one (ITI-68), and send (ITI-65 Provide Document Bundle, and the metadata
update that follows a release or an opposition). Configured by BILAN_DMP_URL and its
credentials (docs/dmp.md).

Sends go through the outbox (the DMP channel of bilan/results/issuing/dmp_feed.py); finds and
retrievals are a person's consultation, made while they wait, with a short timeout. Whatever
goes wrong is raised once, in French, as `DmpUnavailable` (no answer, or a 5xx) or
`DmpRefused` (the DMP's own refusal, with its reason), for the page to show."""

import base64
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from bilan.fhir.parsing import to_json

LAB_REPORT = "11502-2"  # LOINC: Compte rendu d'examens de biologie médicale (CR-BIO)
XD_LAB = "urn:ihe:lab:xd-lab:2008"  # the format code of a CR-BIO
TIMEOUT = 10.0  # seconds for each step of a call (connect, send, each read)
MOST_DOCUMENTS = 200  # a patient's documents listed at once
MOST_BYTES = 20 * 1024 * 1024  # a retrieved document larger than this is refused


class DmpError(Exception):
    """The DMP could not serve a request; the message is French, for the lab's page."""


class DmpUnavailable(DmpError):
    """The DMP did not answer, or answered with a server error: try again later."""


class DmpRefused(DmpError):
    """The DMP answered with a refusal (4xx), whose reason is in the message."""


@dataclass(frozen=True)
class SharedDocument:
    """A document of the patient's DMP as its metadata (DocumentReference) describes it."""
    id: str
    title: str
    type_code: str
    type_label: str
    date: datetime | None
    author: str
    lab: str
    url: str  # where the content is retrieved (absolute)
    content_type: str
    master_identifier: dict[str, str]
    security: frozenset[str]
    subject: dict[str, str]  # the patient's INS (system, value) as the DMP files it

    @property
    def lab_report(self) -> bool:
        """A CR-BIO, which bilan can show with the ANS stylesheet and import."""
        return self.type_code == LAB_REPORT and "xml" in self.content_type

    @property
    def pdf(self) -> bool:
        return self.content_type == "application/pdf"


class MhdClient:
    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 token: str | None = None, transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(username, password or "") if username else None
        self._headers = {"User-Agent": "bilan", **({"Authorization": f"Bearer {token}"} if token else {})}
        self._transport = transport

    @property
    def configured(self) -> bool:
        return bool(self.base_url)

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, auth=self._auth,
                                 headers=self._headers, transport=self._transport)

    async def find(self, ins: dict[str, str], *, types: tuple[str, ...] = (), since: date | None = None,
                   status: str = "current") -> list[SharedDocument]:
        """ITI-67: the patient's documents (by INS), lab reports first, newest first."""
        params = [("patient:identifier", f"{ins['system']}|{ins['value']}"), ("status", status),
                  ("_count", str(MOST_DOCUMENTS))]
        params += [("type", f"http://loinc.org|{t}") for t in types[:1]]
        if since is not None:
            params.append(("date", f"ge{since.isoformat()}"))
        bundle = (await self._call("GET", "DocumentReference", params=params)).json()
        found = [self._document(e["resource"]) for e in bundle.get("entry", [])
                 if (e.get("resource") or {}).get("resourceType") == "DocumentReference"]
        return sorted(found, key=lambda d: (not d.lab_report, -(d.date.timestamp() if d.date else 0)))

    async def document(self, document_id: str) -> SharedDocument:
        """One document's metadata."""
        return self._document((await self._call("GET", f"DocumentReference/{document_id}")).json())

    async def retrieve(self, document: SharedDocument) -> bytes:
        """ITI-68: the document's content, from the DMP only (never another host)."""
        if not self._ours(document.url):
            raise DmpRefused("Le document n'est pas servi par le DMP : il n'est pas récupéré.")
        # As a FHIR Binary (which every FHIR server serves), or as the document itself.
        response = await self._call("GET", document.url, headers={"Accept": "application/fhir+json"})
        content = response.content
        if len(content) > MOST_BYTES:
            raise DmpRefused("Le document du DMP est trop volumineux pour être ouvert ici.")
        if response.headers.get("content-type", "").startswith(("application/fhir+json", "application/json")):
            content = _binary_data(response.json())  # a Binary resource rather than its content
        return content

    async def send(self, method: str, path: str, body: dict[str, Any]) -> None:
        """A write to the DMP (ITI-65 transaction, metadata update), from the outbox."""
        await self._call(method, path, content=to_json(body),
                         headers={"Content-Type": "application/fhir+json"})

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if not self.configured:
            raise DmpUnavailable("Le DMP n'est pas configuré pour ce laboratoire (BILAN_DMP_URL).")
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path}".rstrip("/")
        headers = {"Accept": "application/fhir+json", **kwargs.pop("headers", {})}
        try:
            async with self._client() as http:
                response = await http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise DmpUnavailable(f"Le DMP ne répond pas ({type(error).__name__}) : réessayez plus tard. "
                                 "Rien n'a été importé.") from None
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise DmpUnavailable(f"Le DMP est indisponible (HTTP {response.status_code}) : réessayez plus "
                                 "tard. Rien n'a été importé.")
        if not response.is_success:
            raise DmpRefused(f"Le DMP a refusé la demande (HTTP {response.status_code}) : {_reason(response)}")
        return response

    def _ours(self, url: str) -> bool:
        base, there = urlsplit(self.base_url), urlsplit(url)
        return (there.scheme, there.netloc) == (base.scheme, base.netloc) and there.path.startswith(base.path)

    def _document(self, resource: dict[str, Any]) -> SharedDocument:
        content = (resource.get("content") or [{}])[0]
        attachment = content.get("attachment") or {}
        coding: dict[str, Any] = next(iter((resource.get("type") or {}).get("coding", [])), {})
        authors = [a.get("display") or (a.get("identifier") or {}).get("value", "") for a in resource.get("author", [])]
        custodian = resource.get("custodian") or {}
        url = str(attachment.get("url", ""))
        return SharedDocument(
            id=str(resource.get("id", "")),
            title=str(attachment.get("title") or resource.get("description") or coding.get("display") or ""),
            type_code=str(coding.get("code", "")),
            type_label=str((resource.get("type") or {}).get("text") or coding.get("display") or coding.get("code", "")),
            date=_moment(resource.get("date") or attachment.get("creation")),
            author=", ".join(a for a in authors[1:] or authors[:1] if a),
            lab=str(custodian.get("display") or (authors[0] if authors else "")),
            url=urljoin(f"{self.base_url}/", url) if url and not url.startswith("urn:") else "",
            content_type=str(attachment.get("contentType", "")).split(";")[0].strip().lower(),
            master_identifier={k: str(v) for k, v in (resource.get("masterIdentifier") or {}).items()
                               if k in ("system", "value")},
            security=frozenset(c.get("code", "") for label in resource.get("securityLabel", [])
                               for c in label.get("coding", [])),
            subject={k: str(v) for k, v in ((resource.get("subject") or {}).get("identifier") or {}).items()
                     if k in ("system", "value")})


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _binary_data(resource: dict[str, Any]) -> bytes:
    data = resource.get("data") if resource.get("resourceType") == "Binary" else None
    if not isinstance(data, str):
        raise DmpRefused("Le DMP n'a pas renvoyé le contenu du document.")
    return base64.b64decode(data)


def _reason(response: httpx.Response) -> str:
    """The DMP's reason, from its OperationOutcome, as it said it (shortened)."""
    try:
        outcome = response.json()
    except ValueError:
        return "sans motif lisible."
    texts = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code", ""))
             for i in outcome.get("issue", [])] if isinstance(outcome, dict) else []
    return ("; ".join(t for t in texts if t) or "sans motif lisible.")[:300]
