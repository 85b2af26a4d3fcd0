"""`make chaos` at CI size: the same fault mix, burst and checks, 200 keys and one database kill.

The fault sequence of the embedding API is drawn from a fixed seed, one draw per request in
arrival order, and every fault kind is served once on every other one of the first requests, so
each kind is met whatever the threads' timing (a run of 25-document batches makes about 20
requests besides the outage).
"""

from __future__ import annotations

import io
from pathlib import Path

from benchmarks.chaos import ChaosConfig, run_chaos


def test_a_small_chaos_run_loses_nothing(database_url: str, tmp_path: Path) -> None:
    progress = io.StringIO()

    result = run_chaos(ChaosConfig(uploads=200, db_kills=1), tmp_path / "chaos", progress, database_url=database_url)

    assert result.passed, "\n" + result.table()
    actual = {check.name: check.actual for check in result.checks}
    # The checks compare with the bucket; these say the run was the intended one.
    assert actual["objects in the bucket (as planned)"] == "187"
    assert actual["database kills mid-batch"] == "1"
    assert int(actual["reprocess: redriven from the DLQs"]) > 0
    assert "one reprocessing pass" in progress.getvalue()
