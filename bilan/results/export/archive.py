"""A patient's archive ("Télécharger toutes mes données", data portability): one zip holding
every report she may see, each as a PDF and as its CDA, her data as a FHIR R4 Bundle, a
transaction to import it into another FHIR server, and a README in French.

The Bundle (`fhir/dossier.json`, type collection) is complete on its own: the reports'
attachments are inline (data), not links to this server's Binaries. `fhir/import.json` is
the same reports as a transaction any bilan (or FHIR server taking CR-BIOs) accepts: her
Patient and each report's CDA, whose results the receiving server reads from the document
(bilan/results/export/reimport.py)."""

import base64
import io
import zipfile
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from bilan.auth.caller import Caller
from bilan.fhir.outcomes import NotFound
from bilan.fhir.parsing import to_json
from bilan.records.service import Records
from bilan.results.export.everything import Everything, everything
from bilan.results.export.reimport import import_transaction
from bilan.results.export.report_files import CDA_MEDIA, attachments, media_of, pdf_of_cda, report_cda
from bilan.results.issuing import PDF_TYPE
from bilan.storage.repository import Stored

BUNDLE = "fhir/dossier.json"
IMPORT = "fhir/import.json"
README = "LISEZMOI.txt"
REPORTS = "comptes-rendus"
# A fixed time for every member: the same data always gives the same archive.
STAMP = (2026, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ReportFiles:
    document: Stored
    name: str  # the files' name without extension: day and id
    cda: bytes | None
    pdf: bytes | None


async def patient_archive(records: Records, caller: Caller) -> bytes:
    """The zip of everything the patient caller may see of hers."""
    found = await everything(records, caller)
    files = [await _files(records, caller, d) for d in found.documents]
    bundle = collection(records.base_url, found, {f.document.id: f for f in files})
    members = {README: readme(files).encode("utf-8"),
               BUNDLE: _json(bundle), IMPORT: _json(import_transaction(bundle))}
    for f in files:
        if f.pdf is not None:
            members[f"{REPORTS}/{f.name}.pdf"] = f.pdf
        if f.cda is not None:
            members[f"{REPORTS}/{f.name}.xml"] = f.cda
    return _zip(members)


def collection(base_url: str, found: Everything, files: dict[str, ReportFiles]) -> dict[str, Any]:
    """The FHIR Bundle of the archive: each resource as stored, reports with their files inline."""
    entries = []
    for stored in found.resources:
        resource = stored.content
        if stored.resource_type == "DocumentReference" and stored.id in files:
            resource = _inline(resource, files[stored.id])
        entries.append({"fullUrl": f"{base_url}/{stored.resource_type}/{stored.id}", "resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def readme(files: list[ReportFiles]) -> str:
    lines = [
        "Vos données de biologie médicale",
        "================================",
        "",
        "Cette archive contient tous les comptes rendus d'analyses que vous pouvez consulter dans",
        "votre espace, y compris ceux reçus d'autres laboratoires.",
        "",
        f"{REPORTS}/ : chaque compte rendu, sous deux formes portant le même nom :",
        "  - .pdf : la version imprimable, à lire ou à montrer à votre médecin ;",
        "  - .xml : le document structuré (CDA, format CR-BIO du CI-SIS), lisible par les logiciels",
        "    de santé et par Mon espace santé.",
        "  Quand un laboratoire n'a pas joint de version imprimable, bilan l'a établie à partir du",
        "  document structuré, qui seul fait foi.",
        f"{BUNDLE} : toutes vos données (identité, comptes rendus, résultats) au format FHIR R4",
        "  (un Bundle de type collection), pour les logiciels qui lisent ce standard.",
        f"{IMPORT} : les mêmes comptes rendus, prêts à être importés dans un autre serveur FHIR",
        "  (un Bundle de type transaction, à envoyer par POST à sa racine) : les résultats y sont",
        "  relus depuis chaque document.",
        "",
        f"Comptes rendus : {len(files)}",
    ]
    for f in files:
        kinds = [k for k, data in (("PDF", f.pdf), ("CDA", f.cda)) if data is not None]
        lines.append(f"  {f.name} ({', '.join(kinds) or 'aucun fichier'})")
    return "\n".join(lines) + "\n"


async def _files(records: Records, caller: Caller, document: Stored) -> ReportFiles:
    """Its CDA, read once, and its PDF: the one it carries, else from the CDA. A file the
    report does not have (a level-1 report's other formats) is left out."""
    cda = await _or_none(report_cda(records, caller, document))
    carried = attachments(document, frozenset({PDF_TYPE}))
    pdf = await _or_none(records.attachment(caller, carried[0])) if carried else _from(cda)
    return ReportFiles(document, _name(document), cda, pdf)


async def _or_none(file: Awaitable[bytes]) -> bytes | None:
    try:
        return await file
    except NotFound:
        return None


def _from(cda: bytes | None) -> bytes | None:
    try:
        return pdf_of_cda(cda) if cda is not None else None
    except NotFound:
        return None


def _inline(document: dict[str, Any], files: ReportFiles) -> dict[str, Any]:
    """The document with its CDA as data, in place of a link to this server's Binary, and its
    PDF beside it when it had none."""
    contents = []
    for content in document.get("content", []):
        attachment = content.get("attachment") or {}
        if media_of(attachment) in CDA_MEDIA and not attachment.get("data") and files.cda is not None:
            attachment = {k: v for k, v in attachment.items() if k != "url"} | {"data": _base64(files.cda)}
        contents.append({**content, "attachment": attachment})
    if files.pdf is not None and not any(media_of(c.get("attachment") or {}) == PDF_TYPE for c in contents):
        contents.append({"attachment": {"contentType": PDF_TYPE, "data": _base64(files.pdf),
                                        "size": len(files.pdf), "title": f"{files.name}.pdf"}})
    return {**document, "content": contents}


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _name(document: Stored) -> str:
    content = document.content
    moment = ((content.get("context") or {}).get("period") or {}).get("start") or content.get("date") or ""
    day = str(moment)[:10] if moment else "sans-date"
    return f"{day}_{document.id}"


def _json(resource: dict[str, Any]) -> bytes:
    return to_json(resource)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()
