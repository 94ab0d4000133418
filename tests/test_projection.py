"""After a run has copied something, status says how long each phase still to run would
take at the rates the plan's own runs measured, not at --bandwidth alone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from migrate.cli import main
from migrate.ledger import PhaseCounts, RunCounts, RunRecord
from migrate.plan import Estimate, Phase, PhaseKind, Plan, load_plan
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


def _plan(tmp_path: Path, capsys: pytest.CaptureFixture[str], bandwidth: float) -> Plan:
    plan, _ = finished_local_copy(tmp_path, capsys, run=False)
    loaded = load_plan(Path(plan))
    return loaded.model_copy(
        update={
            "options": loaded.options.model_copy(update={"bandwidth_bytes_per_second": bandwidth})
        }
    )


def _run(phase: str, seconds: int, copied: int, size: int, *, finished: bool = True) -> RunRecord:
    start = "2026-12-05T10:00:00+00:00"
    end = f"2026-12-05T10:{seconds // 60:02d}:{seconds % 60:02d}+00:00"
    return RunRecord(
        1, "p", phase, start, end if finished else None, "ops", "0", "{}",
        "completed" if finished else None, RunCounts(copied=copied, bytes_copied=size),
    )  # fmt: skip


def test_many_small_objects_cost_their_round_trips_not_their_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The walkthrough's pilot: 8,538 small objects, 152 MiB in 51 s on a link the plan
    # declared at 125 MB/s (1.2 s of bytes): ~5.8 ms an object beyond its bytes.
    plan = _plan(tmp_path, capsys, bandwidth=125e6)
    runs = [_run("pilot", 51, 8_538, 152 * MiB)]
    counts = [PhaseCounts("bulk-1", "pending", 100_000, 1_800 * MiB)]
    projection = project(plan, runs, counts)
    assert projection is not None
    m = projection.measured
    assert m.bytes_per_second == 125e6
    assert m.seconds_per_object == pytest.approx((51 - 152 * MiB / 125e6) / 8_538)
    bulk = {p.phase: p for p in projection.phases}["bulk-1"]
    assert bulk.counted_from == "state"
    # 100,000 objects at ~5.8 ms each, plus 1,800 MiB at the bandwidth: ~10 min, where
    # the bytes alone say 15 s.
    assert bulk.seconds == pytest.approx(1_800 * MiB / 125e6 + 100_000 * m.seconds_per_object, 0.01)
    assert 560 < bulk.seconds < 620


def test_a_link_faster_than_declared_prices_bytes_at_the_measured_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path, capsys, bandwidth=1e6)  # declared 1 MB/s; 400 MiB took 20 s
    runs = [_run("pilot", 20, 40, 400 * MiB), _run("bulk-1", 30, 10, 1, finished=False)]
    counts = [
        PhaseCounts("bulk-1", "done", 5, 50 * MiB),
        PhaseCounts("bulk-1", "failed", 2, 20 * MiB),
        PhaseCounts("bulk-1", "pending", 8, 80 * MiB),
    ]
    projection = project(plan, runs, counts)
    assert projection is not None
    assert projection.measured.runs == 1  # a run with no end (killed) measures nothing
    assert projection.measured.seconds_per_object == 0
    bulk = {p.phase: p for p in projection.phases}["bulk-1"]
    # What is left: the failed and the pending, at 20 MiB/s.
    assert (bulk.objects, bulk.bytes) == (10, 100 * MiB)
    assert bulk.seconds == pytest.approx(5.0)


def test_no_finished_run_that_copied_means_no_projection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path, capsys, bandwidth=1e6)
    assert project(plan, [_run("bulk-1", 5, 0, 0)], []) is None
    # A delta's run lists the whole source again for its few copies: not a copy's rate.
    assert project(plan, [_run("delta", 50, 2, 2 * MiB)], []) is None
    # A phase whose estimate has no objects (none left to take) is not projected.
    empty = plan.model_copy(
        update={"phases": tuple(p.model_copy(update={"estimate": Estimate()}) for p in plan.phases)}
    )
    projection = project(empty, [_run("pilot", 5, 3, 3 * MiB)], [])
    assert projection is not None and projection.phases == ()


def test_a_phase_run_with_nothing_left_or_only_the_deltas_changes_is_not_projected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wave run with no object kept its plan estimate, and one whose only objects left
    had changed at the source (the delta's) was timed too (a walkthrough)."""
    plan = _plan(tmp_path, capsys, bandwidth=1e6)
    runs = [_run("pilot", 20, 40, 400 * MiB)]
    counts = [
        PhaseCounts("pilot", "done", 40, 400 * MiB),
        PhaseCounts("pilot", "changed", 2, 2 * MiB),
    ]
    projection = project(plan, runs, counts, resolved=["pilot", "bulk-1"])
    assert projection is not None
    names = {p.phase for p in projection.phases}
    assert "pilot" not in names and "bulk-1" not in names, projection.phases
    # Not said run: the plan's estimate, as before.
    again = project(plan, runs, counts)
    assert again is not None and "bulk-1" in {p.phase for p in again.phases}


def test_what_a_killed_run_left_in_progress_and_the_deltas_changes_are_projected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every object a run took its time over counts for the per-object cost (its copies,
    its failures and the changed ones alike); what is left includes the objects a killed
    run left in progress, and, for the delta, those changed at the source since. The
    decommission, whose estimate counts the whole estate's deletes, copies nothing: not
    projected."""
    plan = _plan(tmp_path, capsys, bandwidth=1e6)
    decommission = Phase(name="decommission", kind=PhaseKind.DECOMMISSION,
                         estimate=Estimate(objects=1_000, bytes=1_000 * MiB))  # fmt: skip
    plan = plan.model_copy(update={"phases": (*plan.phases, decommission)})
    run = replace(
        _run("pilot", 40, 10, MiB),
        counts=RunCounts(copied=10, bytes_copied=MiB, failed=6, changed=4),
    )
    counts = [
        PhaseCounts("bulk-1", "in_progress", 3, 3 * MiB),
        PhaseCounts("bulk-1", "pending", 2, 2 * MiB),
        PhaseCounts("delta", "changed", 5, 5 * MiB),
        PhaseCounts("delta", "done", 7, 7 * MiB),
    ]
    projection = project(plan, [run], counts)
    assert projection is not None
    m = projection.measured
    assert m.objects == 20
    assert m.seconds_per_object == pytest.approx((40 - MiB / 1e6) / 20)
    left = {p.phase: (p.objects, p.bytes) for p in projection.phases}
    assert left["bulk-1"] == (5, 5 * MiB)
    assert left["delta"] == (5, 5 * MiB)
    assert "decommission" not in left
