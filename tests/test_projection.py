"""After a run has copied something, status says how long each phase still to run would
take at the rates the plan's own runs measured, not at --bandwidth alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrate.cli import main
from migrate.ledger import PhaseCounts, RunCounts, RunRecord
from migrate.plan import Estimate, Plan, load_plan
from migrate.projection import project
from tests.helpers import finished_local_copy

MiB = 1024 * 1024


def status(plan: str, where: list[str], capsys: pytest.CaptureFixture[str], *json_out: str) -> str:
    code = main(["status", plan, *where, *json_out])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_status_projects_the_phases_left_from_the_pilots_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    # Nothing copied yet: the plan's durations are all there is.
    assert json.loads(status(plan, where, capsys, "--json"))["projection"] is None
    assert "time left" not in status(plan, where, capsys)

    assert main(["run", plan, "--phase", "pilot", *where]) == 0
    said = " ".join(capsys.readouterr().out.split())
    # The run's own summary says it too, once it has measured.
    assert "Time left at the rates this plan's runs measured: bulk-1 ~" in said, said
    answer = json.loads(status(plan, where, capsys, "--json"))
    measured, phases = answer["projection"]["measured"], answer["projection"]["phases"]
    assert (measured["runs"], measured["objects"]) == (1, 1), measured  # the pilot's one file
    assert measured["seconds"] >= 1
    bulk = load_plan(Path(plan)).phase("bulk-1").estimate
    # bulk-1 never ran: its objects are the plan's; the pilot's is not projected (done).
    by_name = {p["phase"]: p for p in phases}
    assert "pilot" not in by_name
    assert by_name["bulk-1"]["counted_from"] == "plan"
    assert (by_name["bulk-1"]["objects"], by_name["bulk-1"]["bytes"]) == (bulk.objects, bulk.bytes)
    assert by_name["bulk-1"]["seconds"] > 0

    text = " ".join(status(plan, where, capsys).split())
    assert "Time left at the rates this plan's runs measured: bulk-1 ~" in text, text
    assert "(measured: 1 finished pilot or bulk run(s), 1 object(s)," in text, text
