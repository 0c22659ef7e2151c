"""The shared record's (DMP) stand-in for the demo and the tests: sekmet-fhir (PyPI), an
independent FHIR R4 server on SQLite, run as a process of its own on a port of its own, with
HTTP Basic credentials. bilan talks to it as to the DMP's MHD interface (docs/dmp.md); it is
loaded with documents through its own FHIR API, as another lab would feed the DMP.

Also here: a CR-BIO "from another lab" for a patient (a fasting glucose), made with bilan's
own CDA writer, so that the demo and the tests have a report whose glucose becomes a previous
value once imported."""

import base64
import hashlib
import io
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bilan.demo.processes import stop
from bilan.fhir.terminology import LOINC
from bilan.french import PARIS
from bilan.results.document import (
    MEDICAL_BIOLOGY,
    Address,
    Chapter,
    Code,
    Identifier,
    LabReport,
    Organization,
    Patient,
    Practitioner,
    Quantity,
    Result,
    Specimen,
    cda_document,
    report_pdf,
)
from bilan.results.elsewhere import document_identifier, read_cr_bio

USERNAME, PASSWORD = "labo-bilan", "dmp-demo"  # the stand-in's credentials (HTTP Basic)
START_TIMEOUT = 60  # seconds for the server to answer its first request
CLASS = {"system": "urn:oid:1.2.250.1.213.1.1.4.1", "code": "10", "display": "Compte rendu"}
FORMATS = {"application/xml": {"system": "urn:oid:1.3.6.1.4.1.19376.1.2.3", "code": "urn:ihe:lab:xd-lab:2008",
                               "display": "CR d'examens biologiques"},
           "application/pdf": {"system": "urn:oid:1.3.6.1.4.1.19376.1.2.3", "code": "urn:ihe:iti:xds-sd:pdf:2008",
                               "display": "Document à corps non structuré en PDF"}}


@dataclass(frozen=True)
class StandIn:
    url: str  # FHIR base
    username: str
    password: str
    process: "subprocess.Popen[bytes] | None" = None

    def stop(self) -> None:
        """Take the server down (a DMP outage, in the tests)."""
        if self.process is not None:
            stop(self.process)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(self.username, self.password), timeout=30,
                            headers={"Accept": "application/fhir+json"})


@contextmanager
def stand_in(port: int, host: str = "127.0.0.1", folder: Path | None = None) -> Iterator[StandIn]:
    """sekmet-fhir serving a FHIR R4 base at http://host:port/fhir until the block ends, its
    database in `folder` (a temporary one by default)."""
    with tempfile.TemporaryDirectory(prefix="bilan-dmp-") as scratch:
        where = folder or Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        base = f"http://{host}:{port}/fhir"
        (where / "settings.yaml").write_text("\n".join([
            f"base_url: {base}", f"host: {host}", f"port: {port}", f"data_dir: {where / 'data'}",
            "server_auth:", "  types: [basic]", f"  users: {{{USERNAME}: {PASSWORD}}}",
            "simulator: {enabled: false}", "log_inbound: false", "validation: {inbound: warn}",
            f"own_private_key_path: {where / 'keys' / 'sekmet.pem'}", ""]), encoding="utf-8")
        log = open(where / "sekmet.log", "w", encoding="utf-8")
        process = subprocess.Popen([sys.executable, "-c", "from sekmet.cli import app; app()", "serve",
                                    "-c", str(where / "settings.yaml")], cwd=where, stdout=log, stderr=subprocess.STDOUT)
        try:
            found = StandIn(base, USERNAME, PASSWORD, process)
            _wait(found, process, where / "sekmet.log")
            yield found
        finally:
            stop(process)
            log.close()


def _wait(found: StandIn, process: "subprocess.Popen[bytes]", log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with found.client() as api:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the DMP stand-in (sekmet-fhir) stopped: {log.read_text()[-500:]}")
            try:
                if api.get("metadata").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the DMP stand-in (sekmet-fhir) did not answer in time")
            time.sleep(0.2)


def put_document(api: httpx.Client, content: bytes, content_type: str, ins: dict[str, str],
                 metadata: dict[str, Any]) -> str:
    """File a document in the stand-in as a feeding lab would (a transaction of its own: the
    DocumentReference and its Binary); the DocumentReference's id."""
    document_id, binary_id = str(uuid.uuid4()), str(uuid.uuid4())
    reference = {
        "resourceType": "DocumentReference", "id": document_id, "status": "current",
        "category": [{"coding": [CLASS]}], "subject": {"identifier": ins},
        "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                       "code": "N", "display": "Normal"}]}],
        **metadata,
        "content": [{"attachment": {"contentType": content_type, "url": f"Binary/{binary_id}", "language": "fr-FR",
                                    "size": len(content), "title": metadata.get("description", ""),
                                    "hash": base64.b64encode(hashlib.sha1(content).digest()).decode("ascii")},
                     "format": FORMATS.get(content_type, FORMATS["application/pdf"])}],
    }
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Binary", "id": binary_id, "contentType": content_type,
                      "data": base64.b64encode(content).decode("ascii")},
         "request": {"method": "PUT", "url": f"Binary/{binary_id}"}},
        {"resource": reference, "request": {"method": "PUT", "url": f"DocumentReference/{document_id}"}}]}
    answer = api.post("", json=bundle)
    answer.raise_for_status()
    return document_id


def put_lab_report(api: httpx.Client, cda: bytes) -> str:
    """A CR-BIO filed with the metadata its header gives (type, date, lab, biologist, INS)."""
    read = read_cr_bio(cda, check=False)
    if read.patient.ins is None:
        raise ValueError("a CR-BIO for the DMP names the patient's INS")
    lab: dict[str, Any] = {"display": read.lab.name if read.lab else ""}
    if read.lab and read.lab.finess:
        lab["identifier"] = {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": f"1{read.lab.finess}"}
    biologist = {"display": f"{read.biologist.given or ''} {read.biologist.family or ''}".strip()
                 if read.biologist else ""}
    ins = {"system": f"urn:oid:{read.patient.ins_root or '1.2.250.1.213.1.4.8'}", "value": read.patient.ins}
    return put_document(api, cda, "application/xml", ins, {
        "masterIdentifier": document_identifier(read.document_id),
        "type": {"coding": [{"system": LOINC, "code": "11502-2",
                             "display": "CR d'examens biologiques"}], "text": "Compte rendu de biologie"},
        "date": read.effective_time.isoformat(), "description": "Compte rendu d'examens biologiques",
        "author": [lab, biologist], "custodian": lab})


def put_pdf(api: httpx.Client, pdf: bytes, ins: dict[str, str], when: datetime, title: str, author: str,
            structure: str) -> str:
    """A document in PDF (e.g. an imaging report), which bilan shows as a PDF."""
    return put_document(api, pdf, "application/pdf", ins, {
        "type": {"coding": [{"system": LOINC, "code": "18748-4", "display": "Compte rendu d'imagerie médicale"}],
                 "text": "Compte rendu d'imagerie"},
        "date": when.isoformat(), "description": title,
        "author": [{"display": structure}, {"display": author}], "custodian": {"display": structure}})


def other_lab_report(family: str, given: tuple[str, ...], sex: str, birth: date, ins: str, ins_system: str,
                     glucose: str, when: datetime) -> bytes:
    """A CR-BIO of another lab (Laboratoire des Calanques, Marseille) with a fasting glucose in
    mmol/L, for a patient with a qualified INS; made with bilan's CDA writer."""
    lab = Organization("130012345", "Laboratoire des Calanques", Address(("4 quai du Port",), "13002", "MARSEILLE"),
                       ("tel:0491000000",))
    serum = Specimen(Code("SER", "Sérum", "2.16.840.1.113883.18.311"), when, when + timedelta(minutes=30))
    chapter = Chapter("18719-5", "Biochimie", (
        Result("40193-5", "Glycémie à jeun", Quantity(Decimal(glucose), "mmol/L"),
               "H" if Decimal(glucose) > Decimal("6.1") else "N", Decimal("3.9"), Decimal("6.1")),),
        specimens=(serum,))
    document = str(uuid.uuid4()).upper()
    report = LabReport(
        document_id=Identifier(document), set_id=Identifier(str(uuid.uuid4()).upper()), version=1,
        effective_time=when + timedelta(hours=6),
        patient=Patient(file_id=Identifier("1.2.250.1.999.13", document[:8]), birth_family=family.upper(),
                        birth_given=tuple(g.upper() for g in given), sex="F" if sex == "female" else "M",
                        birth_date=birth, identity_status="QUAL", ins=ins, ins_system=ins_system),
        lab=lab, biologist=Practitioner("10000001015", "ROUSSEL", "Hélène", MEDICAL_BIOLOGY),
        validated_at=when + timedelta(hours=5),
        prescriber=Practitioner("10003456786", "LAMBERT", "Claire",
                                Code("G15_10/SM54", "Médecin - Médecine générale (SM)", "1.2.250.1.213.1.1.4.5")),
        order_id=Identifier("1.2.250.1.999.13.1", document[:12]), received_at=when + timedelta(minutes=30),
        chapters=(chapter,), pdf=b"%PDF-")
    return cda_document(replace(report, pdf=report_pdf(report)))


def one_page_pdf(lines: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    for number, line in enumerate(lines):
        page.drawString(72, 760 - 20 * number, line)
    page.showPage()
    page.save()
    return buffer.getvalue()


def demo_documents(api: httpx.Client, family: str, given: tuple[str, ...], sex: str, birth: date, ins: str,
                   ins_system: str, examples: list[Path]) -> int:
    """The demo patient's DMP: the ANS's example CR-BIOs (their INS is hers), a glucose from
    another lab and an imaging report in PDF; how many documents."""
    count = 0
    for path in examples:
        put_lab_report(api, path.read_bytes())
        count += 1
    when = datetime(2026, 5, 12, 8, 10, tzinfo=PARIS)
    put_lab_report(api, other_lab_report(family, given, sex, birth, ins, ins_system, "6.4", when))
    pdf = one_page_pdf(["Cabinet de radiologie du Parc", f"Échographie abdominale — {given[0]} {family}",
                        "Conclusion : examen normal."])
    put_pdf(api, pdf, {"system": ins_system, "value": ins}, when - timedelta(days=40), "Échographie abdominale",
            "Dr Martin Léa", "Cabinet de radiologie du Parc")
    return count + 2


@contextmanager
def demo_stand_in(host: str, port: int) -> Iterator[StandIn | None]:
    """The demo's DMP: the stand-in with Marie Dupont's documents, bilan's settings pointed at
    it (unless BILAN_DMP_URL names a DMP already)."""
    import os

    from bilan.demo.load import QUALIFIED
    from bilan.demo.results import EXAMPLES
    from bilan.settings import get_settings

    if os.environ.get("BILAN_DMP_URL"):
        yield None
        return
    with stand_in(port, host) as found:
        os.environ.update(BILAN_DMP_URL=found.url, BILAN_DMP_USERNAME=found.username,
                          BILAN_DMP_PASSWORD=found.password)
        get_settings.cache_clear()
        person = QUALIFIED[0]
        with found.client() as api:
            count = demo_documents(api, person.family, tuple(person.given), person.gender, person.birth,
                                   person.ins, person.ins_system, EXAMPLES)
        print(f"DMP stand-in (sekmet-fhir) at {found.url}: {count} documents in "
              f"{person.given[0]} {person.family}'s DMP", flush=True)
        yield found
