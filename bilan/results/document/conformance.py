"""Whether a CR-BIO document conforms: the CDA schema (CDA_extended.xsd) and the CI-SIS
CR-BIO 2024.01 schematron, both from the ANS test kit (TestContenuCDA-3-0), whose parts bilan
uses ship in bilan/data."""

import threading
from functools import cache
from pathlib import Path

from lxml import etree, isoschematron

from bilan import data

CDA_KIT = data.CDA_KIT  # the parts of the kit bilan uses, in its own layout
CDA_SCHEMA = CDA_KIT / "infrastructure" / "cda" / "CDA_extended.xsd"
CR_BIO_SCHEMATRON = CDA_KIT / "schematrons" / "CI-SIS_BIO-CR-BIO_2024.01.sch"

_SCH = "http://purl.oclc.org/dsdl/schematron"
_SVRL = "http://purl.oclc.org/dsdl/svrl"
# A compiled schema keeps the last validation's errors on itself (error_log): one validation at
# a time, which costs little at ~10 ms a document.
_VALIDATING = threading.Lock()


def problems(document: bytes) -> list[str]:
    """Schema errors then failed schematron asserts, each with its line and XPath; [] if none."""
    # huge_tree: the PDF copy is a single base64 text node, which may pass libxml2's 10 MB limit.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        tree = etree.fromstring(document, parser).getroottree()
    except etree.XMLSyntaxError as error:
        return [f"line {error.lineno}: not well-formed XML: {error.msg}"]
    with _VALIDATING:
        return _schema_problems(tree) + _schematron_problems(tree)


def _schema_problems(tree: etree._ElementTree) -> list[str]:
    schema = _schema()
    if schema.validate(tree):
        return []
    return [f"XSD {_where(tree, e.path, e.line)}: {e.message}" for e in schema.error_log]


def _schematron_problems(tree: etree._ElementTree) -> list[str]:
    report = _schematron()(tree)
    found = []
    for failed in report.getroot().iter(f"{{{_SVRL}}}failed-assert", f"{{{_SVRL}}}successful-report"):
        text = " ".join(failed.findtext(f"{{{_SVRL}}}text", "").split())
        found.append(f"schematron {_where(tree, failed.get('location', ''))}: {text}")
    return found


def _where(tree: etree._ElementTree, xpath: str, line: int | None = None) -> str:
    """'line N /ClinicalDocument/component/...' from the validator's XPath, which names
    elements by position or by local-name() tests."""
    try:
        nodes = tree.xpath(xpath) if xpath else []
    except etree.XPathError:
        nodes = []
    node = nodes[0] if isinstance(nodes, list) and nodes else None
    if isinstance(node, etree._Element):
        return f"line {line or node.sourceline} {_path(node)}"
    return f"line {line or '?'} {xpath}"


def _path(element: etree._Element) -> str:
    steps = []
    while element is not None:
        name = etree.QName(element).localname
        parent = element.getparent()
        same = [e for e in parent if e.tag == element.tag] if parent is not None else [element]
        steps.append(f"{name}[{same.index(element) + 1}]" if len(same) > 1 else name)
        element = parent
    return "/" + "/".join(reversed(steps))


@cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(CDA_SCHEMA)))


@cache
def _schematron() -> etree.XSLT:
    """The schematron compiled to XSLT once; each call returns its own SVRL report, with the
    failed asserts' text and location (a Schematron object keeps only the last report)."""
    sch = etree.parse(str(CR_BIO_SCHEMATRON))
    root = sch.getroot()
    # It declares xslt2 but uses nothing beyond XSLT 1, which is all libxslt runs.
    root.set("queryBinding", "xslt")
    for let in root.iter(f"{{{_SCH}}}let"):
        _absolute_value_set_path(let, CR_BIO_SCHEMATRON.parent)
    compiled = isoschematron.Schematron(sch, validate_schema=False, store_xslt=True)
    return etree.XSLT(compiled.validator_xslt)


def _absolute_value_set_path(let: etree._Element, base: Path) -> None:
    """A value-set path such as '../jeuxDeValeurs/X.xml' is relative to the schematron file,
    but document() in the compiled XSLT would resolve it against the XSLT, which has no file."""
    value = let.get("value", "")
    if len(value) > 2 and value[0] == value[-1] == "'" and value.endswith(".xml'"):
        let.set("value", f"'{(base / value[1:-1]).resolve().as_uri()}'")
