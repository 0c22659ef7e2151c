"""Whether a CR-BIO document conforms, checked as the ANS checks it with its test kit
TestContenuCDA-3-0 (the parts bilan uses ship in bilan/data):

1. the CDA schema, `CDA_extended.xsd` (lxml);
2. the kit's six schematrons, in the order of its `moteur/compilverif` script: IHE,
   terminologie, ModelesDeContenusCDA, StructurationMinimale, Modeles_ANS and the volet's own
   CR-BIO 2024.01. They are XSLT 2.0 schematrons, compiled by the kit's own pipeline
   (`iso_dsdl_include` → `iso_abstract_expand` → `iso_svrl_for_xslt2`) and run with
   Saxon-HE (saxonche), as the kit runs them with its Saxon jar.

Compiling takes seconds, so it is done once a process (`warm`, or the first check); a check
then runs each compiled schematron on the document and reads its SVRL report. An assert whose
role is "warning" (or "info") is a warning; any other failed assert is an error, like a schema
error. bilan's documents must give neither (tests/test_ans_pipeline.py); issuing refuses a
document with errors (`check(...).errors`)."""

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
# Each schematron as the problems name it, in the order compilverif runs them.
PIPELINE = (
    ("IHE", SCHEMATRONS / "profils" / "IHE.sch"),
    ("terminologie", SCHEMATRONS / "profils" / "terminologies" / "schematron" / "terminologie.sch"),
    ("ModelesDeContenusCDA", SCHEMATRONS / "profils" / "CI-SIS_ModelesDeContenusCDA.sch"),
    ("StructurationMinimale", SCHEMATRONS / "profils" / "structurationMinimale" / "ASIP-STRUCT-MIN-StrucMin.sch"),
    ("Modeles_ANS", SCHEMATRONS / "profils" / "CI-SIS_Modeles_ANS.sch"),
    ("CR-BIO", CR_BIO_SCHEMATRON),
)

# The kit's two defects (its MANIFEST names them), worked around on the copy in memory; the
# files themselves are never edited.
# - IHE.sch includes a file under another case than its name: a Windows-only kit.
_IHE_INCLUDE = ("E_directiveAnticipee_int.sch", "E_directiveanticipee_int.sch")
# - StructurationMinimale reads the XDS type codes from a file the kit does not ship; the same
#   value set is in jeuxDeValeurs/, in the IHE SVS layout instead of ART-DECOR's.
_XDS_TYPE_CODES = "doc('include/voc-1.2.250.1.213.1.1.5.471-DYNAMIC.xml')/*/valueSet/conceptList/concept/@code"
_XDS_TYPE_CODES_FILE = CDA_KIT / "jeuxDeValeurs" / "JDV_J07_XdsTypeCode_CISIS.xml"

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


@dataclass(frozen=True)
class Conformance:
    errors: tuple[Finding, ...]
    warnings: tuple[Finding, ...]

    @property
    def conforms(self) -> bool:
        """No error and no warning: what every document bilan makes must give."""
        return not self.errors and not self.warnings


def problems(document: bytes) -> list[str]:
    """Every error, then every warning, each as one line of text; [] when the document conforms."""
    found = check(document)
    return [str(f) for f in (*found.errors, *found.warnings)]


def check(document: bytes) -> Conformance:
    """The schema's and the six schematrons' findings on a document."""
    # huge_tree: the PDF copy is a single base64 text node, which may pass libxml2's 10 MB limit.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        tree = etree.fromstring(document, parser).getroottree()
    except etree.XMLSyntaxError as error:
        return _only(Finding("error", "XML", f"line {error.lineno}", f"not well-formed XML: {error.msg}"))
    if tree.docinfo.doctype:  # entity declarations are how XML bombs and file reads get in
        return _only(Finding("error", "XML", "line 1", "a CDA document has no DOCTYPE"))
    findings = _schema_findings(tree) + _pipeline().findings(tree)
    return Conformance(tuple(f for f in findings if f.severity == "error"),
                       tuple(f for f in findings if f.severity == "warning"))


def warm() -> float:
    """Compile the pipeline now rather than at the first check; the seconds it took (0 when
    already compiled)."""
    started = time.perf_counter()
    compiled = _pipeline.compiled
    _pipeline()
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
    """The six schematrons compiled to XSLT 2 by the kit's own compiler, and run by Saxon."""

    def __init__(self) -> None:
        self.saxon = PySaxonProcessor(license=False)
        self.saxon.set_configuration_property(_ALLOWED_PROTOCOLS, "file")
        compiler = self.saxon.new_xslt30_processor()
        include, expand, to_xslt = (compiler.compile_stylesheet(stylesheet_file=str(_ENGINE / name)) for name in (
            "iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl"))
        self.schematrons: list[tuple[str, PyXsltExecutable]] = []
        for name, path in PIPELINE:
            source = path.read_text(encoding="utf-8")
            if name == "IHE":
                source = _fixed(source, *_IHE_INCLUDE)
            whole = include.transform_to_string(xdm_node=self._parse(source, path))
            if name == "StructurationMinimale":
                whole = _fixed(whole, _XDS_TYPE_CODES, f"doc('{_XDS_TYPE_CODES_FILE.as_uri()}')//*:Concept/@code")
            concrete = expand.transform_to_string(xdm_node=self._parse(whole, path))
            xslt = to_xslt.transform_to_string(xdm_node=self._parse(concrete, path))
            # Where compilverif writes it, beside the schematron: the value sets it reads are
            # relative to it.
            stylesheet = self._parse(xslt, path.with_suffix(".xsl"))
            self.schematrons.append((name, compiler.compile_stylesheet(stylesheet_node=stylesheet)))
        # A compiled stylesheet is not thread-safe: one check at a time.
        self.lock = threading.Lock()

    def _parse(self, text: str, location: Path) -> PyXdmNode:
        builder = self.saxon.new_document_builder()
        builder.set_base_uri(location.as_uri())
        node: PyXdmNode = builder.parse_xml(xml_text=text, encoding="UTF-8")
        return node

    def findings(self, tree: etree._ElementTree) -> list[Finding]:
        text = etree.tostring(tree, encoding="unicode")
        found = []
        with self.lock:
            document = self.saxon.parse_xml(xml_text=text, encoding="UTF-8")
            reports = [(name, _run(xslt, document)) for name, xslt in self.schematrons]
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
    return f"line {line or element.sourceline} {_path(element)}"


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


def _path(element: etree._Element) -> str:
    steps = []
    while element is not None:
        name = etree.QName(element).localname
        parent = element.getparent()
        same = [e for e in parent if e.tag == element.tag] if parent is not None else [element]
        steps.append(f"{name}[{same.index(element) + 1}]" if len(same) > 1 else name)
        element = parent
    return "/" + "/".join(reversed(steps))
