"""The lab's catalogue goes out as it came in (issue 13): `bilan catalogue --export DIR` and the
reception's download write catalogue.csv and ranges.csv with every column the load reads, in
the catalogue's order, numbers with their digits; loading them into a fresh database gives the
same catalogue."""

import csv
import io
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bilan import data
from bilan.prescription.catalogue import RANGES_FILE, read_csv
from bilan.prescription.lab_catalogue import CATALOGUE_FILE, CatalogueFiles, catalogue_files
from bilan.settings import ROOT, Settings
from bilan.storage import catalogue
from bilan.storage.database import create_engine
from bilan.storage.migrate import upgrade
from tests.helpers import run

RANGES = data.CATALOGUE.with_name(RANGES_FILE)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _lab_catalogue(rng: random.Random, folder: Path) -> Path:
    """A lab's own catalogue.csv and ranges.csv in `folder`: bilan's, with the NFS in another
    clinical order, digits a float would lose, notes that need quoting, a sensitive exam and an
    entry of the lab's own with its ranges."""
    entries = _rows(data.CATALOGUE.read_text(encoding="utf-8"))
    bands = _rows(RANGES.read_text(encoding="utf-8"))
    nfs = entries[1:21]
    rng.shuffle(nfs)
    entries[1:21] = nfs
    potassium = next(e for e in entries if e["local_code"] == "K")
    potassium.update(ref_low="3.50", ref_high="5.00", critical_low="2.80")
    noted = rng.choice(entries)
    noted["notes"] = f'Revu le {rng.randint(1, 28)}/11, "méthode B" ; voir\nla fiche {rng.randint(1, 99)}'
    rng.choice([e for e in entries if e["sensitive"] == "no"])["sensitive"] = "yes"
    own = f"IGA{rng.randint(10, 99)}"
    entries.insert(rng.randint(22, len(entries)), {
        **{column: "" for column in entries[0]}, "local_code": own, "label_fr": "Immunoglobulines A",
        "kind": "test", "loinc": "2458-8", "loinc_display": "IgA [Mass/volume] in Serum or Plasma",
        "chapter_loinc": "18719-5", "specimen": "Sérum", "ucum": "g/L", "ref_low": "0.70", "ref_high": "4.00",
        "plausible_low": "0", "plausible_high": "50.0", "sensitive": "no", "source": "le laboratoire",
        "notes": "Néphélémétrie, adulte"})
    bands.append({"local_code": own, "sex": "any", "age_min_years": "0", "age_max_years": "1",
                  "ref_low": "0.010", "ref_high": "0.50", "notes": "Nourrisson, d'après le fournisseur, 2024"})
    folder.mkdir()
    _write(folder / CATALOGUE_FILE, entries)
    _write(folder / RANGES_FILE, bands)
    return folder / CATALOGUE_FILE


def _in_catalogue_order(catalogue_text: str, ranges_text: str) -> list[dict[str, str]]:
    """The range rows as the export writes them: entry by entry in the catalogue's order, an
    entry's rows as in its file."""
    place = {row["local_code"]: n for n, row in enumerate(_rows(catalogue_text))}
    return sorted(_rows(ranges_text), key=lambda row: place[row["local_code"]])


async def _stored(engine: AsyncEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with engine.connect() as conn:
        entries, bands = await catalogue.everything(conn)
    return entries, [{k: v for k, v in band.items() if k != "id"} for band in bands]


async def _exported(engine: AsyncEngine) -> CatalogueFiles:
    async with engine.connect() as conn:
        return await catalogue_files(conn)


def test_the_demo_catalogue_comes_out_as_its_files(own_database: Settings) -> None:
    async def scenario() -> CatalogueFiles:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            await catalogue.load(engine, read_csv(data.CATALOGUE))
            return await _exported(engine)
        finally:
            await engine.dispose()

    files = run(scenario())
    shipped = data.CATALOGUE.read_text(encoding="utf-8")
    assert files.catalogue == shipped  # byte for byte: same columns, order, digits and quoting
    assert files.count == 82
    assert "GR,Hématies,result,NFS,789-8,Erythrocytes [#/volume] in Blood by Automated count,18723-7," \
           "Sang total,10*12/L,4.50,6.00,0.05,15," in files.catalogue  # "4.50" is not 4.5
    # ranges.csv: the same rows and values (quotes only where needed), entry by entry.
    assert _rows(files.ranges) == _in_catalogue_order(shipped, RANGES.read_text(encoding="utf-8"))
    assert list(_rows(files.ranges)[0]) == ["local_code", "sex", "age_min_years", "age_max_years",
                                            "ref_low", "ref_high", "notes"]


def test_a_lab_s_catalogue_exported_then_loaded_again_is_the_same(own_database: Settings, tmp_path, rng) -> None:
    lab = _lab_catalogue(rng, tmp_path / "lab")
    out = tmp_path / "export"

    async def scenario() -> None:
        engine = create_engine(own_database)
        try:
            await upgrade(engine)
            await catalogue.load(engine, read_csv(lab))
            before = await _stored(engine)
            files = await _exported(engine)
            out.mkdir()
            for name, text in files.named().items():
                (out / name).write_text(text, encoding="utf-8")
            await catalogue.load(engine, [])  # emptied: the export is all there is
            assert await _stored(engine) == ([], [])
            await catalogue.load(engine, read_csv(out / CATALOGUE_FILE))
            assert await _stored(engine) == before
            assert await _exported(engine) == files
        finally:
            await engine.dispose()

    run(scenario())
    written = (out / CATALOGUE_FILE).read_text(encoding="utf-8")
    assert written == lab.read_text(encoding="utf-8")  # the lab's order, digits, quotes, line breaks
    assert _rows((out / RANGES_FILE).read_text(encoding="utf-8")) == _in_catalogue_order(
        written, (lab.parent / RANGES_FILE).read_text(encoding="utf-8"))


def _bilan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bilan", *args], check=False, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILAN_")}
    env["BILAN_DATABASE_URL"] = settings.database_url
    if settings.database_schema:
        env["BILAN_DATABASE_SCHEMA"] = settings.database_schema
    return env


def test_bilan_catalogue_export_gives_files_another_bilan_loads_as_they_were(
        own_database: Settings, tmp_path, rng) -> None:
    lab = _lab_catalogue(rng, tmp_path / "lab")
    here, fresh = _env(own_database), _env(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/fresh.db"))
    loaded = _bilan("catalogue", str(lab), env=here)
    assert loaded.returncode == 0, loaded.stderr
    exported = _bilan("catalogue", "--export", str(tmp_path / "out"), env=here)
    assert exported.returncode == 0, exported.stderr
    assert "83 catalogue entries exported to" in exported.stdout
    again = _bilan("catalogue", str(tmp_path / "out" / CATALOGUE_FILE), env=fresh)  # ranges.csv beside it
    assert again.returncode == 0, again.stderr
    assert _bilan("catalogue", "--export", str(tmp_path / "back"), env=fresh).returncode == 0
    for name in (CATALOGUE_FILE, RANGES_FILE):
        assert (tmp_path / "back" / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
    assert (tmp_path / "out" / CATALOGUE_FILE).read_bytes() == lab.read_bytes()

    refused = _bilan("catalogue", "--export", str(tmp_path / "out"), env=here)  # never over files
    assert refused.returncode == 1 and "already exist" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    mixed = _bilan("catalogue", str(lab), "--export", str(tmp_path / "elsewhere"), env=here)
    assert mixed.returncode == 1 and "takes no CSV" in mixed.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_the_lab_downloads_its_catalogue_and_no_one_else_does(desk, biologist, doctor, web_root, server) -> None:
    for name in (CATALOGUE_FILE, RANGES_FILE):
        response = desk.get(f"{web_root}/reception/{name}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert biologist.get(f"{web_root}/reception/{name}").content == response.content
        refused = doctor.get(f"{web_root}/reception/{name}")
        assert refused.status_code == 403 and "personnel du laboratoire" in refused.text
        assert httpx.get(f"{web_root}/reception/{name}").status_code == 401
    shipped = data.CATALOGUE.read_text(encoding="utf-8")
    assert desk.get(f"{web_root}/reception/{CATALOGUE_FILE}").text == shipped  # the session's catalogue
    assert 'href="/reception/catalogue.csv"' in desk.get(f"{web_root}/").text
    assert 'href="/reception/catalogue.csv"' not in doctor.get(f"{web_root}/").text
