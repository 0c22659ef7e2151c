"""Whether a CDA document conforms, checked as the ANS checks it with its test kit
TestContenuCDA-3-0 (the parts bilan uses ship in bilan/data):

1. the CDA schema, `CDA_extended.xsd` (lxml);
2. the kit's schematrons, in the order of its `moteur/compilverif` script: the five profiles
   every document goes through (IHE, terminologie, ModelesDeContenusCDA, StructurationMinimale,
   Modeles_ANS), then the volet's own: CR-BIO 2024.01 for a lab report, eP-BIO 2022.01 for a
   lab prescription. They are XSLT 2.0 schematrons, compiled by the kit's own pipeline
   (`iso_dsdl_include` → `iso_abstract_expand` → `iso_svrl_for_xslt2`) and run with
   Saxon-HE (saxonche), as the kit runs them with its Saxon jar.

The kit has no root schematron for eP-BIO, only its parts (header, section, entries): bilan
assembles one in memory (`EP_BIO_SCHEMATRON`), as the kit's CR-BIO root does for its volet.

Compiling takes seconds, so it is done once a process: the five profiles once (about 1 GB in
memory, shared by every volet), each volet's own schematron the first time a document of that
volet is checked (`warm`, or the first check). A check then runs each compiled schematron on
the document and reads its SVRL report. An assert whose role is "warning" (or "info") is a
warning; any other failed assert is an error, like a schema error. bilan's documents must give
neither (tests/test_ans_pipeline.py, tests/test_ep_bio.py); issuing refuses a document with
errors (`check(...).errors`)."""

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lxml import etree
from saxonche import PySaxonApiError, PySaxonProcessor, PyXdmNode, PyXsltExecutable

from bilan import data

CDA_KIT = data.CDA_KIT  # the parts of the kit bilan uses, in its own layout
CDA_SCHEMA = CDA_KIT / "infrastructure" / "cda" / "CDA_extended.xsd"
SCHEMATRONS = CDA_KIT / "schematrons"
CR_BIO_SCHEMATRON = SCHEMATRONS / "CI-SIS_BIO-CR-BIO_2024.01.sch"
_ENGINE = SCHEMATRONS / "moteur"  # the kit's schematron compiler (ISO reference XSLTs)
# The profiles every CDA document goes through, as the problems name them, in the order
# compilverif runs them.
PROFILES = (
    ("IHE", SCHEMATRONS / "profils" / "IHE.sch"),
    ("terminologie", SCHEMATRONS / "profils" / "terminologies" / "schematron" / "terminologie.sch"),
    ("ModelesDeContenusCDA", SCHEMATRONS / "profils" / "CI-SIS_ModelesDeContenusCDA.sch"),
    ("StructurationMinimale", SCHEMATRONS / "profils" / "structurationMinimale" / "ASIP-STRUCT-MIN-StrucMin.sch"),
    ("Modeles_ANS", SCHEMATRONS / "profils" / "CI-SIS_Modeles_ANS.sch"),
)
Volet = Literal["CR-BIO", "eP-BIO"]
CR_BIO: Volet = "CR-BIO"
EP_BIO: Volet = "eP-BIO"
PIPELINE = (*PROFILES, (CR_BIO, CR_BIO_SCHEMATRON))  # a lab report's six

# The eP-BIO root, assembled from the kit's parts for that volet: where the kit's own roots
# sit, so that their relative includes resolve. Nothing is read from it on disk.
EP_BIO_SCHEMATRON = SCHEMATRONS / "CI-SIS_BIO-EP-BIO_2022.01.sch"
_EP_BIO_PARTS = (
    "include/specificationsVolets/BIO-EP-BIO_2022.01/Entete/Entete_BIO-EP-BIO_2022.01.sch",
    "include/sections/S_planDeSoinsBiologie_ANS.sch",
    "include/entrees/E_acteBiologiePrescrit_ANS.sch",
    # The two flags of a prescribed act that Modeles_ANS does not check (it checks the
    # work-accident and not-reimbursable ones).
    "include/entrees/E_horsNomenclature_ANS.sch",
    "include/entrees/E_en-rapport-avec-la-prevention_ANS.sch",
)
EP_BIO_ROOT = f"""<?xml version="1.0" encoding="UTF-8"?>
<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2"
        schemaVersion="CI-SIS_BIO-EP-BIO_2022.01 (bilan)">
  <title>BIO-EP-BIO 2022.01 (prescription d'actes de biologie médicale)</title>
  <ns prefix="cda" uri="urn:hl7-org:v3"/>
  <ns prefix="xsi" uri="http://www.w3.org/2001/XMLSchema-instance"/>
  <ns prefix="jdv" uri="http://esante.gouv.fr"/>
  <ns prefix="svs" uri="urn:ihe:iti:svs:2008"/>
  {"".join(f'<include href="{part}"/>' for part in _EP_BIO_PARTS)}
</schema>
"""

# The kit's defects (its MANIFEST names the first two), worked around on the copy in memory; the
# files themselves are never edited.
# - IHE.sch includes a file under another case than its name: a Windows-only kit.
_IHE_INCLUDE = ("E_directiveAnticipee_int.sch", "E_directiveanticipee_int.sch")
# - StructurationMinimale reads the XDS type codes from a file the kit does not ship; the same
#   value set is in jeuxDeValeurs/, in the IHE SVS layout instead of ART-DECOR's.
_XDS_TYPE_CODES = "doc('include/voc-1.2.250.1.213.1.1.5.471-DYNAMIC.xml')/*/valueSet/conceptList/concept/@code"
_XDS_TYPE_CODES_FILE = CDA_KIT / "jeuxDeValeurs" / "JDV_J07_XdsTypeCode_CISIS.xml"
# - S_planDeSoinsBiologie_ANS.sch (eP-BIO) has a bracket too many in an assert, which no XPath
#   engine compiles.
_PLAN_ASSERT = ("templateId[@root='1.2.250.1.213.1.1.3.27.2']])", "templateId[@root='1.2.250.1.213.1.1.3.27.2'])")

# Saxon reads the kit's files and nothing from a network.
_ALLOWED_PROTOCOLS = "http://saxon.sf.net/feature/allowedProtocols"
_SVRL = "http://purl.oclc.org/dsdl/svrl"
_WARNING_ROLES = {"warning", "info"}

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str  # XSD, or the schematron's name in PIPELINE
    where: str  # "line N /ClinicalDocument/component/..."
    message: str

    def __str__(self) -> str:
        return f"{self.severity} {self.check} {self.where}: {self.message}"

    @property
    def path(self) -> str | None:
        """The element's path (/ClinicalDocument/...), when the finding names one."""
        parts = self.where.split(" ", 2)
        return parts[2] if len(parts) == 3 and parts[2].startswith("/") else None


@dataclass(frozen=True)
class Conformance:
    errors: tuple[Finding, ...]
    warnings: tuple[Finding, ...]

    @property
    def conforms(self) -> bool:
        """No error and no warning: what every document bilan makes must give."""
        return not self.errors and not self.warnings


def problems(document: bytes, volet: Volet = CR_BIO) -> list[str]:
    """Every error, then every warning, each as one line of text; [] when the document conforms."""
    found = check(document, volet)
    return [str(f) for f in (*found.errors, *found.warnings)]


def check(document: bytes, volet: Volet = CR_BIO) -> Conformance:
    """The schema's, the five profiles' and the volet's schematron's findings on a document."""
    # huge_tree: the PDF copy is a single base64 text node, which may pass libxml2's 10 MB limit.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        tree = etree.fromstring(document, parser).getroottree()
    except etree.XMLSyntaxError as error:
        return _only(Finding("error", "XML", f"line {error.lineno}", f"not well-formed XML: {error.msg}"))
    if tree.docinfo.doctype:  # entity declarations are how XML bombs and file reads get in
        return _only(Finding("error", "XML", "line 1", "a CDA document has no DOCTYPE"))
    findings = _schema_findings(tree) + _pipeline().findings(tree, volet)
    return Conformance(tuple(f for f in findings if f.severity == "error"),
                       tuple(f for f in findings if f.severity == "warning"))


def warm(volet: Volet = CR_BIO) -> float:
    """Compile the pipeline of a volet now rather than at the first check; the seconds it took
    (0 when already compiled)."""
    started = time.perf_counter()
    compiled = _pipeline.compiled and _pipeline().has(volet)
    _pipeline().volet(volet)
    return 0.0 if compiled else time.perf_counter() - started


def engine() -> str:
    """The XSLT engine that runs the schematrons, with its version."""
    return str(_pipeline().saxon.version)


def _only(finding: Finding) -> Conformance:
    return Conformance((finding,), ())


# The schema (lxml)

_SCHEMA_LOCK = threading.Lock()  # a compiled schema keeps the errors of its last run
_schema: etree.XMLSchema | None = None


def _schema_findings(tree: etree._ElementTree) -> list[Finding]:
    global _schema
    with _SCHEMA_LOCK:
        if _schema is None:
            _schema = etree.XMLSchema(etree.parse(str(CDA_SCHEMA)))
        if _schema.validate(tree):
            return []
        return [Finding("error", "XSD", _where(tree, e.path, e.line), e.message) for e in _schema.error_log]


# The schematrons (Saxon-HE)

class _Pipeline:
    """The schematrons compiled to XSLT 2 by the kit's own compiler, and run by Saxon: the five
    profiles at once, each volet's own when first asked for."""

    def __init__(self) -> None:
        self.saxon = PySaxonProcessor(license=False)
        self.saxon.set_configuration_property(_ALLOWED_PROTOCOLS, "file")
        self.compiler = self.saxon.new_xslt30_processor()
        self.steps = [self.compiler.compile_stylesheet(stylesheet_file=str(_ENGINE / name)) for name in (
            "iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl")]
        self.schematrons: list[tuple[str, PyXsltExecutable]] = [
            (name, self._compiled(name, path, path.read_text(encoding="utf-8"))) for name, path in PROFILES]
        self.volets: dict[str, PyXsltExecutable] = {}
        # A compiled stylesheet is not thread-safe: one check (or one compilation) at a time.
        self.lock = threading.Lock()

    def _compiled(self, name: str, path: Path, source: str) -> PyXsltExecutable:
        include, expand, to_xslt = self.steps
        if name == "IHE":
            source = _fixed(source, *_IHE_INCLUDE)
        whole = include.transform_to_string(xdm_node=self._parse(source, path))
        if name == "StructurationMinimale":
            whole = _fixed(whole, _XDS_TYPE_CODES, f"doc('{_XDS_TYPE_CODES_FILE.as_uri()}')//*:Concept/@code")
        if name == EP_BIO:
            whole = _fixed(whole, *_PLAN_ASSERT)
        concrete = expand.transform_to_string(xdm_node=self._parse(whole, path))
        xslt = to_xslt.transform_to_string(xdm_node=self._parse(concrete, path))
        # Where compilverif writes it, beside the schematron: the value sets it reads are
        # relative to it.
        stylesheet = self._parse(xslt, path.with_suffix(".xsl"))
        executable: PyXsltExecutable = self.compiler.compile_stylesheet(stylesheet_node=stylesheet)
        return executable

    def has(self, volet: Volet) -> bool:
        return volet in self.volets

    def volet(self, volet: Volet) -> PyXsltExecutable:
        """The volet's own schematron, compiled the first time it is asked for."""
        with self.lock:
            if volet not in self.volets:
                if volet == EP_BIO:
                    self.volets[volet] = self._compiled(volet, EP_BIO_SCHEMATRON, EP_BIO_ROOT)
                else:
                    self.volets[volet] = self._compiled(volet, CR_BIO_SCHEMATRON,
                                                        CR_BIO_SCHEMATRON.read_text(encoding="utf-8"))
            return self.volets[volet]

    def _parse(self, text: str, location: Path) -> PyXdmNode:
        builder = self.saxon.new_document_builder()
        builder.set_base_uri(location.as_uri())
        node: PyXdmNode = builder.parse_xml(xml_text=text, encoding="UTF-8")
        return node

    def findings(self, tree: etree._ElementTree, volet: Volet) -> list[Finding]:
        text = etree.tostring(tree, encoding="unicode")
        found = []
        own = self.volet(volet)
        with self.lock:
            document = self.saxon.parse_xml(xml_text=text, encoding="UTF-8")
            reports = [(name, _run(xslt, document)) for name, xslt in [*self.schematrons, (volet, own)]]
        for name, report in reports:
            if isinstance(report, PySaxonApiError):  # a document the schematron cannot even read
                found.append(Finding("error", name, "line ?", f"the schematron stopped: {report}"))
                continue
            svrl = etree.fromstring(report.encode("utf-8"))
            for failed in svrl.iter(f"{{{_SVRL}}}failed-assert", f"{{{_SVRL}}}successful-report"):
                severity: Severity = "warning" if failed.get("role") in _WARNING_ROLES else "error"
                message = " ".join(failed.findtext(f"{{{_SVRL}}}text", "").split())
                found.append(Finding(severity, name, _where(tree, failed.get("location", "")), message))
        return found


def _run(xslt: PyXsltExecutable, document: PyXdmNode) -> str | PySaxonApiError:
    try:
        report: str = xslt.transform_to_string(xdm_node=document)
        return report
    except PySaxonApiError as error:
        return error


class _Once:
    """The pipeline, compiled by the first caller while the others wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipeline: _Pipeline | None = None

    @property
    def compiled(self) -> bool:
        return self._pipeline is not None

    def __call__(self) -> _Pipeline:
        with self._lock:
            if self._pipeline is None:
                self._pipeline = _Pipeline()
            return self._pipeline


_pipeline = _Once()


def _fixed(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced; a kit that no longer has `old` is a kit this code does not know."""
    if old not in text:
        raise RuntimeError(f"the ANS kit changed: {old!r} not found")
    return text.replace(old, new)


# Where a finding is

_STEP = re.compile(r"([\w.-]+)(?:\[(\d+)\])?")


def _where(tree: etree._ElementTree, location: str, line: int | None = None) -> str:
    """'line N /ClinicalDocument/component/...' from a validator's path to an element."""
    element = _element_at(tree, location)
    if element is None:
        element = _xpath_element(tree, location)
    if element is None:
        return f"line {line or '?'} {location}"
    return f"line {line or element.sourceline} {path_of(element)}"


def _element_at(tree: etree._ElementTree, location: str) -> etree._Element | None:
    """The element the SVRL's path (/ClinicalDocument/component[2]/section, local names and
    positions among same-name siblings) points at; for a path to an attribute, its element."""
    steps = location.split("/")
    first = _STEP.fullmatch(steps[1]) if location.startswith("/") and len(steps) > 1 else None
    element = tree.getroot()
    if first is None or etree.QName(element).localname != first[1]:
        return None
    for step in steps[2:]:
        match = _STEP.fullmatch(step)
        if match is None:  # @code, text()...
            break
        same = [e for e in element if isinstance(e.tag, str) and etree.QName(e).localname == match[1]]
        index = int(match[2] or 1) - 1
        if index >= len(same):
            break
        element = same[index]
    return element


def _xpath_element(tree: etree._ElementTree, xpath: str) -> etree._Element | None:
    """The element of libxml2's path (the schema's errors)."""
    try:
        nodes = tree.xpath(xpath) if xpath else []
    except etree.XPathError:
        return None
    node = nodes[0] if isinstance(nodes, list) and nodes else None
    return node if isinstance(node, etree._Element) else None


def path_of(element: etree._Element) -> str:
    """/ClinicalDocument/component/...: local names, a position among same-name siblings when
    there are several."""
    steps = []
    while element is not None:
        name = etree.QName(element).localname
        parent = element.getparent()
        same = [e for e in parent if e.tag == element.tag] if parent is not None else [element]
        steps.append(f"{name}[{same.index(element) + 1}]" if len(same) > 1 else name)
        element = parent
    return "/" + "/".join(reversed(steps))
