"""The project stands alone: its wheel, installed in a fresh virtualenv in a folder with neither
the checkout nor ../shared beside it, migrates a database, loads the demo (which issues CR-BIO
reports: the catalogue, the CDA schema, the schematron and the stylesheet all come from inside
the package) and renders a report.

The wheel is built from a copy of what the Docker image copies (bilan/, pyproject.toml,
README.md), so a file the package needs but does not declare fails here. Its dependencies are
installed by pip as a user's would be, pinned to requirements.lock's versions."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("bilan", "pyproject.toml", "README.md")
PINNED = re.compile(r"^([A-Za-z0-9_.\-\[\]]+==[^\s\\;]+)")
EXTRAS = re.compile(r"\[[^]]*\]")

# Run by the fresh virtualenv's python, from an empty folder: the demo, then one issued report
# checked and rendered again by the installed package.
PROGRAM = """
import asyncio, base64, json, sqlite3, sys
from pathlib import Path

import bilan
from bilan.demo.load import load_demo
from bilan.results.document import conformance
from bilan.results.document import display
from bilan.results.issuing.documents import CDA_TYPE
from bilan.settings import Settings

settings = Settings()
inside = [Path(bilan.__file__), settings.catalogue_path, conformance.CDA_SCHEMA,
          conformance.CR_BIO_SCHEMATRON, display.STYLESHEET]
outside = [str(p) for p in inside if not p.resolve().is_relative_to(Path(sys.prefix).resolve())]
assert not outside, f"read from outside the installed package: {outside}"

asyncio.run(load_demo(settings))

db = sqlite3.connect(settings.database_url.split("///", 1)[1])
documents = db.execute("SELECT count(*) FROM resources WHERE resource_type = 'DocumentReference' "
                       "AND NOT deleted").fetchone()[0]
cdas = [json.loads(content) for (content,) in db.execute(
    "SELECT content FROM resources WHERE resource_type = 'Binary' AND NOT deleted")]
cdas = [base64.b64decode(c["data"]) for c in cdas if c.get("contentType") == CDA_TYPE]
assert cdas, "no CDA issued"
page = display.html(cdas[0])
print(json.dumps({"documents": documents, "cdas": len(cdas), "problems": conformance.problems(cdas[0]),
                  "page": len(page), "html": "<html" in page.lower()}))
"""


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode:
        pytest.fail(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def _copy_sources(to: Path) -> None:
    to.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, to / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.db"))
        else:
            shutil.copy2(source, to / name)


def _constraints(to: Path) -> Path:
    """requirements.lock's name==version lines, without the hashes and the extras
    ("uvicorn[standard]") a constraints file refuses."""
    lines = (PINNED.match(line) for line in (ROOT / "requirements.lock").read_text().splitlines())
    to.write_text("".join(EXTRAS.sub("", m.group(1)) + "\n" for m in lines if m))
    return to


def _without_checkout(env: dict[str, str]) -> dict[str, str]:
    """The caller's environment minus what would point back at the checkout or at its
    virtualenv, and minus its BILAN_* settings."""
    return {k: v for k, v in env.items()
            if not k.startswith(("BILAN_", "PYTHON")) and k not in ("VIRTUAL_ENV", "PYTEST_CURRENT_TEST")}


def test_the_installed_wheel_issues_reports_without_the_checkout(tmp_path: Path) -> None:
    env = _without_checkout(dict(os.environ))
    _copy_sources(tmp_path / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
          "-w", str(tmp_path / "dist"), str(tmp_path / "src")], tmp_path, env, 300)
    [wheel] = (tmp_path / "dist").glob("bilan-*.whl")
    shutil.rmtree(tmp_path / "src")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    python, bilan = venv / "bin" / "python", venv / "bin" / "bilan"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "-c", str(_constraints(tmp_path / "constraints.txt")), str(wheel)], tmp_path, env, 600)

    here = tmp_path / "elsewhere"
    here.mkdir()
    env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
           "BILAN_DATABASE_URL": f"sqlite+aiosqlite:///{here / 'bilan.db'}"}
    _run([str(bilan), "migrate"], here, env, 120)
    out = _run([str(python), "-I", "-c", PROGRAM], here, env, 300)
    summary = json.loads(out.strip().splitlines()[-1])  # the program's last line

    assert summary["documents"] >= 3, out  # Marie Dupont's three check-ups at the demo lab
    assert summary["problems"] == [], out
    assert summary["html"], out
