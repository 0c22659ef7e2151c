"""The patient's shared record (DMP), consulted by the biologist from an order: the list of
their documents (ITI-67, by their qualified INS), one document opened (ITI-68), and a CR-BIO
imported into the patient's history through the import of reports from elsewhere
(imported.py), after which its results are previous values on the desk.

Only with a qualified INS on the lab's patient file, and only when the patient did not oppose
sharing; otherwise the page says why and the DMP is not asked. Every consultation, opening
and import is audited for the patient (their "who accessed my data"). No database transaction
stays open over a call to the DMP: the checks, the call, then the write (the import is one
transaction: the document and its results, or nothing)."""

import base64
from dataclasses import dataclass, field

from bilan.auth.audit import DMP_CONSULTED, DMP_IMPORTED, DMP_OPENED
from bilan.auth.caller import Caller
from bilan.fhir.outcomes import Conflict, FhirError, Invalid, Issue
from bilan.fhir.query import parse_search
from bilan.notifications.mhd import LAB_REPORT, DmpError, MhdClient, SharedDocument
from bilan.prescription import identity, ins_identifiers, tracking
from bilan.records.pipeline import Work
from bilan.records.service import Records, new_id
from bilan.results.elsewhere.cda_reading import UnreadableReport, read_cr_bio
from bilan.results.elsewhere.imported import document_identifier
from bilan.storage import search as store_search
from bilan.storage.repository import Write


@dataclass(frozen=True)
class Patient:
    """Whose DMP an order opens, and why not when it may not."""
    task_id: str
    name: str
    lab_file: str  # Patient/id of the lab's file
    patients: frozenset[str]  # the Patients the audit names (the lab file, the order's)
    ins: dict[str, str] | None
    refusal: str | None  # in French


@dataclass(frozen=True)
class Listing:
    patient: Patient
    documents: list[SharedDocument] = field(default_factory=list)
    error: str | None = None  # the DMP could not answer, in French
    imported: frozenset[str] = frozenset()  # masterIdentifier values already in the history


@dataclass(frozen=True)
class Opened:
    document: SharedDocument
    content: bytes


class SharedRecord:
    def __init__(self, records: Records, client: MhdClient):
        self.records = records
        self.client = client

    async def listing(self, caller: Caller, task_id: str, lab_reports_only: bool = False) -> Listing:
        """The patient's documents in the DMP, lab reports first; or why they are not shown."""
        patient = await self.patient(caller, task_id)
        if patient.refusal or patient.ins is None:
            return Listing(patient)
        error, documents = None, []
        try:
            documents = await self.client.find(patient.ins, types=(LAB_REPORT,) if lab_reports_only else ())
        except DmpError as failure:
            error = str(failure)
        async with self.records.work(caller) as work:
            work.note("search-type", patients=patient.patients, touched=[f"Task/{task_id}"],
                      detail=DMP_CONSULTED)
            imported = await self._imported(work, patient)
        return Listing(patient, documents, error, imported)

    async def open(self, caller: Caller, task_id: str, document_id: str) -> Opened:
        """One document of the patient's DMP, its content as the DMP gives it."""
        patient = await self._allowed(caller, task_id)
        document, content = await self._fetch(patient, document_id)
        async with self.records.work(caller) as work:
            work.note("read", patients=patient.patients, touched=[f"Task/{task_id}"], detail=DMP_OPENED)
        if document.lab_report:  # shown through the stylesheet: a CR-BIO, parsed safely first
            try:
                read_cr_bio(content, check=False)
            except UnreadableReport as error:
                raise Invalid([Issue(f"Ce document ne peut pas être affiché : {error.reason}", "invalid",
                                     expression="dmp")]) from None
        return Opened(document, content)

    async def record_opposition(self, caller: Caller, task_id: str, opposes: bool) -> None:
        """The patient opposes sharing (their space, the DMP), or withdraws their opposition:
        the DMP feed (bilan/results/issuing/dmp_feed.py) follows, by observing the order."""
        async with self.records.work(caller) as work:
            task = await tracking.order_task(work, task_id, "update", "sharing-opposition")
            if tracking.opposed(task.content) != opposes:
                await work.write([Write("Task", task.id, tracking.with_opposition(task.content, opposes), "PUT",
                                        task.version_id)])

    async def import_report(self, caller: Caller, task_id: str, document_id: str) -> str:
        """Import a CR-BIO of the patient's DMP into their history (onto the lab's file); the
        id of the DocumentReference bilan stores. Nothing is stored unless all of it is."""
        patient = await self._allowed(caller, task_id)
        document, content = await self._fetch(patient, document_id)
        if not document.lab_report:
            raise Invalid([Issue("Seul un compte rendu de biologie (CR-BIO) s'importe dans l'historique.",
                                 "business-rule", expression="dmp")])
        try:
            read = read_cr_bio(content, check=False)
        except UnreadableReport as error:
            raise Invalid([Issue(f"Ce compte rendu ne peut pas être importé : {error.reason}", "invalid",
                                 expression="dmp")]) from None
        if read.lab is not None and read.lab.finess and read.lab.finess == caller.lab_finess:
            raise Conflict([Issue("Ce compte rendu est celui du laboratoire : ses résultats sont déjà dans bilan.",
                                  "duplicate", expression="dmp")])
        identifier = document_identifier(read.document_id)
        async with self.records.work(caller) as work:
            work.allow("dmp", [f"Task/{task_id}"], "create")
            if identifier["value"] in await self._imported(work, patient):
                raise Conflict([Issue("Ce compte rendu est déjà dans l'historique du patient.", "duplicate",
                                      expression="dmp")])
            reference = {"resourceType": "DocumentReference", "status": "current",
                         "subject": {"reference": patient.lab_file},
                         "description": f"Importé du DMP : {document.title or document.type_label}",
                         "content": [{"attachment": {"contentType": "text/xml",
                                                     "data": base64.b64encode(content).decode("ascii")}}]}
            new = new_id()
            try:
                await work.write([Write("DocumentReference", new, reference, "POST")])
            except FhirError as error:
                raise Invalid([Issue(f"Ce compte rendu ne peut pas être importé : {error.issues[0].diagnostics}",
                                     "invalid", expression="dmp")]) from None
            work.note("create", patients=patient.patients, touched=[f"DocumentReference/{new}"],
                      detail=DMP_IMPORTED)
        return new

    async def patient(self, caller: Caller, task_id: str) -> Patient:
        """Whose DMP this order opens, once the caller may consult it; with the reason when
        the DMP may not be consulted."""
        async with self.records.work(caller) as work:
            task = await tracking.order_task(work, task_id, "read", "dmp")
            reference = tracking.lab_file_of(task.content)
            lab_file = await work.repo.read_reference(reference) if reference else None
            patients = frozenset(p for p in (reference, (task.content.get("for") or {}).get("reference", "")) if p)
            if lab_file is None or not lab_file.content:
                return Patient(task_id, "", "", patients, None, "La prescription n'est pas encore importée au "
                               "laboratoire : le DMP se consulte depuis le dossier patient du laboratoire.")
            traits = identity.traits(lab_file.content)
            ins = [i for _, i in ins_identifiers(lab_file.content)]
            refusal = None
            if not self.client.configured:
                refusal = "Le DMP n'est pas configuré pour ce laboratoire."
            elif tracking.opposed(task.content):
                refusal = ("Le patient s'est opposé au partage de ses données de santé (recueilli à l'accueil) : "
                           "son DMP n'est pas consulté.")
            elif traits.status != "QUAL" or not ins:
                refusal = (f"{traits.status_label} : le DMP ne se consulte qu'avec une INS qualifiée. "
                           "Qualifiez l'identité du patient (pièce d'identité et téléservice INSi) d'abord.")
            return Patient(task_id, traits.name, reference, patients,
                           {"system": ins[0]["system"], "value": ins[0]["value"]} if ins else None, refusal)

    async def _allowed(self, caller: Caller, task_id: str) -> Patient:
        patient = await self.patient(caller, task_id)
        if patient.refusal or patient.ins is None:
            raise Conflict([Issue(patient.refusal or "Le DMP ne peut pas être consulté.", "business-rule",
                                  expression="dmp")])
        return patient

    async def _fetch(self, patient: Patient, document_id: str) -> tuple[SharedDocument, bytes]:
        """The document's metadata and content, once it is this patient's (by INS)."""
        try:
            document = await self.client.document(document_id)
            if document.subject != patient.ins:
                raise Conflict([Issue("Ce document n'est pas dans le DMP de ce patient.", "business-rule",
                                      expression="dmp")])
            return document, await self.client.retrieve(document)
        except DmpError as error:
            raise Conflict([Issue(str(error), "transient", expression="dmp")]) from None

    async def _imported(self, work: Work, patient: Patient) -> frozenset[str]:
        """The documents (their masterIdentifier values) already imported onto the lab's file."""
        query = parse_search("DocumentReference", [("patient", patient.lab_file)], default_count=500, max_count=500)
        found = await store_search.search(work.repo.conn, query, self.records.base_url)
        return frozenset(str((s.content.get("masterIdentifier") or {}).get("value", ""))
                         for s in found.matches if s.content)
