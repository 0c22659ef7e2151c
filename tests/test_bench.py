"""bench/reads.py runs end to end (a smoke run with --quick): the same prescriptions in bilan and
in sekmet-fhir, every answer checked, the figures of both printed, nothing left behind. The
figures themselves are for the 2-core reference machine, not for a test."""

import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.helpers import run

ROOT = Path(__file__).resolve().parent.parent


def _schema_exists(url: str, schema: str) -> bool:
    async def query() -> bool:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return bool(await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema))
        finally:
            await conn.close()
    return run(query())  # in a thread: the browser tests keep a loop in this one


def test_the_read_benchmark_measures_both_servers_on_checked_answers(tmp_path: Path) -> None:
    url = os.environ.get("BILAN_TEST_DATABASE_URL") or ""
    if not url.startswith("postgresql"):
        url = f"sqlite+aiosqlite:///{tmp_path}/reads.db"
    done = subprocess.run([sys.executable, "bench/reads.py", "--quick", "--workers", "1", "--database-url", url],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    checked = re.search(r"answers checked: (\d+), errors: (\d+), errors in bilan's log: (\d+)", output)
    assert checked and int(checked[1]) > 0 and checked.groups()[1:] == ("0", "0"), output[-4000:]
    for measure in ("reads/s, concurrency 16", "searches/s, concurrency 16",
                    "one read, idle server, p50", "one search, idle server, p50"):
        row = re.search(rf"{re.escape(measure)}\s+([\d,.]+)(?: ms)?\s+([\d,.]+)(?: ms)?\s+([\d.]+)x", output)
        assert row, f"no {measure!r} row in:\n{output[-4000:]}"
        bilan, peer = (float(value.replace(",", "")) for value in row.groups()[:2])
        assert bilan > 0 and peer > 0, row[0]
    loaded = re.search(r"(\d+) prescriptions of as many patients", output)
    assert loaded and 90 <= int(loaded[1]) <= 100, output[-4000:]  # --quick: 100, a patient drawn twice kept once
    schema = re.search(r"\(schema (bench_reads_\d+)\)", output)
    if url.startswith("postgresql"):
        assert schema and not _schema_exists(url, schema[1]), "the benchmark's schema is left behind"
    else:
        assert not (tmp_path / "reads.db").exists(), "the benchmark's SQLite file is left behind"
