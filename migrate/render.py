"""Turn results into rich tables for people and canonical JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from migrate.errors import printable

if TYPE_CHECKING:  # a command that prints JSON loads none of these
    from rich.console import Console
    from rich.table import Table

    from migrate.demo import DemoResult
    from migrate.dryrun import DryRunReport
    from migrate.inventory import InventorySummary
    from migrate.ledger import PhaseCounts, PhaseState, RouteUse, SiteRouteUse
    from migrate.plan import Plan
    from migrate.policy import Verdict
    from migrate.projection import Projection
    from migrate.sitecheck import SiteCheck
    from migrate.summary import PhaseSummary
    from providers.catalog import Certification


def _table(title: str, **options: Any) -> Table:
    from rich.table import Table

    return Table(title=_lit(title), **options)  # titles name plans, sites, phases


def _lit(value: object) -> str:
    """Data (object keys, dataset and site names, messages) as literal text in a table cell,
    which rich reads as markup: `[x]` in a key is shown, and `[/x]` does not crash."""
    from rich.markup import escape

    # A cell's own line breaks stay (verdict reasons, a fact's values): a newline does not
    # act on a terminal beyond the cell; ESC and the rest do.
    return escape(printable(str(value), newlines=True))


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def about(seconds: float) -> str:
    """`~40 s`, `~12 min`, `~3 h 20 min`: a projection, to the unit it can be trusted to."""
    if seconds < 60:
        return f"~{max(1, round(seconds))} s"
    if seconds < 3600:
        return f"~{round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"~{hours} h" + (f" {minutes} min" if minutes else "")


def human_duration(seconds: float) -> str:
    """`45 s`, `2 min`, `5 min 30 s`: a wait, as a person reads it."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def run_answer(
    summary: PhaseSummary,
    delta: object | None,
    cutover: tuple[bool | None, bool] | None = None,
    checklist: Sequence[str] = (),
) -> dict[str, Any]:
    """`run --json`: one shape for every phase, so that `.failed` or `.copied` reads the
    same of a pilot and of a delta. The copy's figures at the top; `delta`, what the
    re-list found (null for a copy phase); a cutover's `verified` and `ready` (null for
    the other phases) and, once ready, the plan's `checklist` for switching over (else
    empty). A failure is named as `status --failed` names it."""
    answer: dict[str, Any] = _plain(summary)
    answer["seconds"] = round(summary.seconds, 3)  # a clock's digits past 1 ms say nothing
    answer["failures"] = [
        {"container": container, "key": key, "reason": why}
        for container, key, why in summary.failures
    ]
    answer["delta"] = _plain(delta)
    answer["verified"], answer["ready"] = cutover if cutover is not None else (None, None)
    answer["checklist"] = list(checklist) if cutover is not None and cutover[1] else []
    return answer


def dry_run_answer(report: DryRunReport) -> dict[str, Any]:
    """`run --dry-run --json`: the report, and its datasets' counts summed (`totals`, each
    count of a dataset's), so that a script need not add them up."""
    from migrate.dryrun import DatasetDryRun

    answer: dict[str, Any] = _plain(report)
    # Every count, 0 where no dataset has one (a plan without datasets too).
    totals = {f.name: 0 for f in dataclasses.fields(DatasetDryRun) if f.type in ("int", int)}
    for dataset in answer["datasets"]:
        for name in totals:
            totals[name] += dataset[name]
    answer["totals"] = totals
    return answer


_NOT_IN_DEMO = frozenset({"delta", "verified", "ready", "checklist"})


def demo_answer(result: DemoResult) -> dict[str, Any]:
    """`demo --json`: its phases' figures and failures as `run --json` gives them (not what
    a delta's re-list found, nor the cutover's verdict: the demo keeps them apart)."""
    answer: dict[str, Any] = _plain(result)
    # `plan` is its name, as run, verify and status name it (its file is named after it)
    answer["plan"], answer["plan_file"] = result.plan.stem, str(result.plan)
    answer["phases"] = [
        {k: v for k, v in run_answer(summary, None).items() if k not in _NOT_IN_DEMO}
        for summary in result.phases
    ]
    return answer


def to_json(value: Any) -> str:
    """Stable JSON: sorted keys, so scripts and diffs see the same text for the same data."""
    return json.dumps(_plain(value), sort_keys=True, indent=2, ensure_ascii=False)


def print_site_checks(console: Console, results: list[SiteCheck]) -> None:
    table = _table("Sites")
    for column in ("site", "provider", "region", "container", "result"):
        table.add_column(column, overflow="fold")  # an error's hint is read whole
    for r in results:
        if r.not_checked:
            row = (_lit(r.site), _lit(r.provider), _lit(r.region or "-"), "-")
            table.add_row(*row, f"[yellow]{_lit(r.not_checked)}[/]")
            continue
        if r.error:
            table.add_row(
                _lit(r.site),
                _lit(r.provider),
                _lit(r.region or "-"),
                "-",
                f"[red]{_lit(r.error)}[/]",
            )
            continue
        for c in r.containers or []:
            result = "[green]ok[/]" if c.ok else f"[red]{_lit(c.error)}[/]"
            if c.ok and c.detail:
                result += f": {_lit(c.detail)}"
            table.add_row(
                _lit(r.site), _lit(r.provider), _lit(r.region or "-"), _lit(c.container), result
            )
    console.print(table)


# Datasets a terminal table shows: one of thousands of rows is read by nobody, and took a
# minute to draw. The ones that matter most are kept; --json lists every one.
DATASET_ROWS = 50
# The delta's deleted and kept objects shown by name in the terminal (--json has more).
DELTA_EXAMPLES = 20

_T = TypeVar("_T")


def _shown(items: Sequence[_T], first: Callable[[_T], Any]) -> tuple[list[_T], int]:
    """At most DATASET_ROWS of `items`, in their order: those `first` sorts first. Returns
    them and how many are left out."""
    if len(items) <= DATASET_ROWS:
        return list(items), 0
    keep = sorted(range(len(items)), key=lambda i: first(items[i]))[:DATASET_ROWS]
    return [items[i] for i in sorted(keep)], len(items) - DATASET_ROWS


def _more_row(table: Table, hidden: int, columns: int) -> None:
    if hidden:
        text = f"[dim]... {hidden:,} more datasets (--json lists every one)[/]"
        table.add_row(text, *([""] * (columns - 1)))


def print_inventory(console: Console, summary: InventorySummary) -> None:
    table = _table(f"Inventory of {summary.site}")
    for column in ("dataset", "objects", "bytes", "size classes", "tiers", "will not move as is"):
        table.add_column(column, overflow="fold")

    # Those with the most kinds of objects that will not move as they are (a checksum
    # computed in flight is no problem), then the largest.
    from migrate.inventory import FLAG_LABELS, Flag

    def problems(d: Any) -> int:
        return sum(1 for k in d.issues if k != Flag.NO_CHECKSUM.name)

    shown, hidden = _shown(summary.datasets, lambda d: (-problems(d), -d.bytes))
    for d in shown:
        classes = ", ".join(f"{k}: {v}" for k, v in d.size_classes.items() if v)
        tiers = ", ".join(f"{k}: {v}" for k, v in d.tiers.items())
        issues = "\n".join(f"{FLAG_LABELS[Flag[k]]}: {v}" for k, v in d.issues.items()) or "-"
        table.add_row(
            _lit(d.dataset) + (" [dim](whole container)[/]" if d.whole_container else ""),
            f"{d.objects:,}",
            human_bytes(d.bytes),
            classes,
            _lit(tiers),
            _lit(issues),
        )
    _more_row(table, hidden, 6)
    table.add_row(
        "[bold]total[/]",
        f"[bold]{summary.objects:,}[/]",
        f"[bold]{human_bytes(summary.bytes)}[/]",
        "",
        "",
        "",
    )
    console.print(table)
    if summary.first:
        change = "first inventory of this site"
    else:
        change = (
            f"since the last inventory: {summary.added} added, {summary.changed} changed, "
            f"{summary.deleted} deleted"
        )
    resumed = " (resumed an interrupted listing)" if summary.resumed else ""
    console.print(f"{change}{resumed}. State: {summary.state}", markup=False)
    if summary.prefix:
        console.print(
            f"This run listed only under {summary.prefix!r} in each container; the table is "
            "the site's whole inventory as the state holds it.",
            markup=False,
        )
    whole = [d.container for d in summary.datasets if d.whole_container]
    if whole:
        from migrate.inventory import WHOLE_CONTAINER_AFTER

        console.print(
            f"One dataset each (whole container): {', '.join(whole)}. Their first listing "
            f"found more than {WHOLE_CONTAINER_AFTER:,} top-level prefixes, too many to "
            "plan and report one by one; kept so in every later inventory.",
            markup=False,
        )
    if summary.unlisted:
        names = ", ".join(summary.unlisted_containers)
        console.print(
            f"Left out: {summary.unlisted:,} objects of containers the sites file no longer "
            f"lists ({names}); not counted as deleted. A plan made before that still "
            "copies them is refused by run until they are listed again.",
            markup=False,
        )


_STATUS_STYLE = {"PASS": "green", "FAIL": "red", "UNKNOWN": "yellow"}


# Below this width a verdicts table leaves its reasons a column of a few letters (a site's
# reasons ran to ~220 lines at 80 columns): each verdict is printed as a block instead.
_VERDICT_TABLE_WIDTH = 120


def print_verdicts(console: Console, verdicts: list[Verdict], title: str) -> None:
    if console.width < _VERDICT_TABLE_WIDTH:
        console.print(f"{title}:", markup=False)
        for v in verdicts:
            style = _STATUS_STYLE.get(str(v.status), "white")
            blocking = " (blocking)" if v.blocking else ""
            console.print(f"{_lit(v.subject)}: [{style}]{v.status}[/]{blocking}", soft_wrap=True)
            for r in v.reasons:
                console.print(f"  {r.outcome}: {r.text}", markup=False, soft_wrap=True)
            for w in v.warnings[:3]:
                console.print(f"  warning: {w.message}", markup=False, soft_wrap=True)
            if len(v.warnings) > 3:
                console.print(f"  (+{len(v.warnings) - 3} more warnings; --json lists all)")
        return
    table = _table(title, show_lines=True)
    table.add_column("subject", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("reasons", overflow="fold", ratio=3)
    table.add_column("warnings", overflow="fold", ratio=2)
    for v in verdicts:
        style = _STATUS_STYLE.get(str(v.status), "white")
        status = f"[{style}]{v.status}[/]" + (" (blocking)" if v.blocking else "")
        reasons = "\n".join(f"{r.outcome}: {r.text}" for r in v.reasons)
        warnings = "\n".join(w.message for w in v.warnings[:3])
        if len(v.warnings) > 3:
            warnings += f"\n(+{len(v.warnings) - 3} more; --json lists all)"
        table.add_row(_lit(v.subject), status, _lit(reasons), _lit(warnings or "-"))
    console.print(table)


def print_provider(
    console: Console,
    title: str,
    facts: list[tuple[str, Any]],
    certifications: Sequence[Certification] = (),
    notes: Sequence[str] = (),
) -> None:
    """Every fact with its source and date, and what the catalog says of it (the source's
    own words, a note: why it is unknown, what it rests on); then the certifications, each
    with its scope; then the provider's notes."""
    table = _table(title)
    for column in ("fact", "value", "source", "as of"):
        table.add_column(column, overflow="fold")
    for path, fact in facts:
        value = "unknown" if fact.value is None else _fact_text(fact.value)
        if fact.stated:
            value += f'\nstated: "{fact.stated}"'
        if fact.note:
            value += f"\n({fact.note})"
        table.add_row(_lit(path), _lit(value), _lit(fact.source or "-"), str(fact.as_of or "-"))
    console.print(table)
    if certifications:
        # As blocks, as the verdicts are: a table of six columns left each a few letters
        # wide at 80 columns.
        console.print("Certifications:", markup=False)
    for cert in certifications:
        regions = "unknown" if cert.regions is None else ", ".join(cert.regions) or "none"
        texts = [t for t in (cert.scope, cert.conditions, cert.note) if t]
        if cert.source:
            texts.append(f"source: {cert.source} ({cert.as_of or 'no date'})")
        head = f"{cert.name}: {cert.status}; object storage: {cert.object_storage}; "
        _print_block(console, head + f"regions: {regions}", texts)
    if notes:
        console.print("Notes:", markup=False)
    for note in notes:
        _print_block(console, note, [])


def _print_block(console: Console, head: str, texts: Sequence[str]) -> None:
    """`head` indented, then each text under it, one line a line of theirs (a note written
    on several lines), every control character escaped."""
    lines = [f"  {line}" for line in printable(head, newlines=True).splitlines()]
    for text in texts:
        lines += [f"    {line}" for line in printable(text, newlines=True).splitlines()]
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)


def _fact_text(value: Any) -> str:
    """A fact's value for a reader: a record as `key: value; ...` (unset keys left out), a
    list one item a line, an empty list `none`. Not Python's reprs."""
    plain = _plain(value)
    if isinstance(plain, list):
        return "\n".join(_fact_text(v) for v in plain) or "none"
    if isinstance(plain, dict):
        return "; ".join(f"{k}: {_fact_text(v)}" for k, v in plain.items() if v is not None)
    return str(plain)


def nothing_to_do_line(s: PhaseSummary) -> str:
    # Deleted at the source since: no longer moved, and said so (else "done" fell unsaid).
    n = s.deleted_at_source
    gone = f", {n:,} deleted at the source since, no longer moved" if n else ""
    if s.left_changed:
        return (
            f"Phase {s.phase}: nothing to do: {s.already_done:,} objects copied and proven, "
            f"{s.left_changed:,} changed at the source during their copy left for a delta or "
            f"cutover run{gone}."
        )
    if not s.already_done:
        return f"Phase {s.phase}: nothing to do: it has no objects to copy{gone}."
    return (
        f"Phase {s.phase}: nothing to do: all {s.already_done:,} "
        + ("object was" if s.already_done == 1 else "objects were")
        + f" already copied and proven{gone}."
    )


def print_phase_summary(console: Console, s: PhaseSummary) -> None:
    if s.nothing_to_do:  # as is (no wrap, emoji or tabs): the bytes a re-run receipt prints
        print(nothing_to_do_line(s), file=console.file)
        return
    rate = s.bytes_copied / s.seconds if s.seconds else 0
    # Objects a second too: what the plan's durations (bytes alone) leave out, measured.
    per_second = s.copied / s.seconds if s.seconds else 0
    console.print(
        f"Phase {s.phase}: {s.copied:,} copied ({human_bytes(s.bytes_copied)}, "
        f"{human_bytes(int(rate))}/s, {per_second:,.1f} objects/s), {s.already_done:,} already "
        f"done, {s.failed:,} failed, "
        f"{s.changed:,} changed at the source during the copy (a delta run copies them), "
        f"{s.retries:,} retries."
    )
    if s.conflicts:
        console.print(
            f"  {s.conflicts:,} of the failed were not copied: the destination already holds "
            "another object under their key (run with --overwrite to copy over them)",
            markup=False,
        )
    if s.overwriting:
        console.print(
            f"  --overwrite: {s.overwriting:,} objects this plan did not write were let be "
            "replaced by their copy (the report lists each copied over, with what was there)",
            markup=False,
        )
    if s.same_bytes_replaced:
        console.print(
            f"  {s.same_bytes_replaced:,} objects this plan did not write held the same bytes: "
            "let be replaced by their copy, which gives them the source's content type and "
            "metadata (the report lists each copied over, with what was there)",
            markup=False,
        )
    if s.unguarded:
        console.print(
            "  warning: the destination refused conditional writes (If-None-Match, If-Match): "
            "this run wrote without them, so an object another writer put under a key after "
            "the conflict check may have been overwritten",
            markup=False,
        )
    for unswept in s.unswept:
        console.print(
            f"  warning: unfinished uploads not swept in {unswept}; an upload a killed run "
            "began may be left there, holding storage (each run tries again; a lifecycle "
            "rule aborting incomplete uploads removes it too)",
            markup=False,
        )
    if s.throttled:
        console.print(
            f"  the stores asked to slow down, or did not answer in time, {s.throttled:,} "
            f"times (requests in flight to a store went down to {s.lowest_requests_in_flight}; "
            "they grow back as requests succeed)"
        )
    for container, key, why in s.failures:
        console.print(printable(f"  {container}/{key}: {why}"), markup=False)


def resume_command(plan: Plan, phase: str, gated: Collection[str]) -> str:
    """The command that copies what a phase has left; with --force where the phase's gate
    would refuse it (the run that left them was forced past it)."""
    forced = " --force --reason '...'" if phase in gated else ""
    return f"migrate run {plan.command_path} --phase {phase}{forced}"


def print_status(
    console: Console,
    plan: Plan,
    counts: list[PhaseCounts],
    phases: dict[str, PhaseState],
    *,
    state_file: Path,
    running: str | None,
    gated: Collection[str] = (),
    projection: Projection | None = None,
) -> None:
    """The table, then what it was read from and whether a run is under way: "in progress"
    after a run stopped (Ctrl-C, a kill, a crash) means left half-done, not being copied.
    With a projection, the phases' time left at the rates the plan's runs measured."""
    from migrate.planlock import left_behind

    table = _table(f"Plan {plan.name}")
    states = ["done", "pending", "in_progress", "failed", "changed"]
    # Objects deleted at the source after their copy left the move (their copy removed at
    # the destination, or left there unproven: the report tells which): their own column,
    # once there are any, so "done" falling is explained.
    if any(c.state == "removed" and c.objects for c in counts):
        states.append("removed")
    # Not every object deleted at the source: those taken out of the move (their copy
    # removed by --delete-removed, gone, or left there unproven); a delta without
    # --delete-removed keeps the others' copies, still done.
    named = {"in_progress": "in progress", "removed": "out of the move (deleted at source)"}
    for column in ("phase", *(named.get(s, s) for s in states), "verified"):
        table.add_column(column, overflow="fold")  # a narrow terminal: the whole time, folded
    by_phase: dict[str, dict[str, int]] = {}
    for c in counts:
        by_phase.setdefault(c.phase, {})[c.state] = c.objects
    for phase in plan.phases:
        n = by_phase.get(phase.name, {})
        state = phases.get(phase.name)
        table.add_row(
            _lit(phase.name),
            *(f"{n.get(k, 0):,}" for k in states),
            (state.verified_at or "-") if state else "-",
        )
    console.print(table)
    if projection and projection.phases:
        print_time_left(console, projection, figures=True)
    console.print(f"State: {_lit(state_file)}", soft_wrap=True)
    if running:
        console.print(f"Under way now: {_lit(running)}", soft_wrap=True)
    halted = left_behind(
        running,
        [p.name for p in plan.phases],
        (c.phase for c in counts if c.state == "in_progress" and c.objects),
    )
    if not running and not halted:
        console.print("No run is under way.")
    if halted:
        left = sum(c.objects for c in counts if c.state == "in_progress" and c.phase in halted)
        console.print(
            f"{'No run' if not running else 'No run of these phases'} is under way: the "
            f"{left:,} object(s) in progress were left by a run that stopped before finishing "
            "them (interrupted, killed or crashed). Running the phase again copies them: "
            + "; ".join(_lit(resume_command(plan, name, gated)) for name in halted),
            soft_wrap=True,
        )


def print_time_left(console: Console, projection: Projection, *, figures: bool = False) -> None:
    """The phases left, timed at the rates the plan's runs measured: after a pilot or bulk
    run (pointing at `status`), and in `status` (`figures`: what was measured)."""
    left = ", ".join(
        f"{p.phase} {about(p.seconds)}" + ("*" if p.counted_from == "plan" else "")
        for p in projection.phases
    )
    m = projection.measured
    said = (
        f"measured: {m.runs:,} finished pilot or bulk run(s), {m.objects:,} object(s), "
        f"{human_bytes(m.bytes)} in {human_duration(m.seconds)}: "
        f"{human_bytes(int(m.bytes_per_second))}/s plus {m.seconds_per_object * 1000:,.1f} ms "
        "an object"
        if figures
        else "`migrate status` shows the figures"
    )
    if any(p.counted_from == "plan" for p in projection.phases):
        said += "; * counted from the plan's estimate of the phase's objects"
    console.print(
        f"Time left at the rates this plan's runs measured: {left} ({said}).",
        markup=False,
        soft_wrap=True,
    )


def print_routes(console: Console, routes: list[RouteUse]) -> None:
    table = _table("Hosts contacted (route attestation)")
    # The host is read whole, even in an 80-column log; the rest folds around it.
    table.add_column("host", no_wrap=True)
    for column in ("scheme", "requests", "bytes sent", "first", "last"):
        table.add_column(column, overflow="fold")
    for r in routes:
        table.add_row(
            _lit(r.host),
            r.scheme,
            f"{r.requests:,}",
            human_bytes(r.bytes_sent),
            r.first_seen,
            r.last_seen,
        )
    console.print(table)


def print_site_routes(console: Console, uses: list[SiteRouteUse]) -> None:
    table = _table("Outside the runs: hosts contacted for its sites (inventory, check, plan)")
    table.add_column("site", overflow="fold")
    table.add_column("command", overflow="fold")
    table.add_column("host", no_wrap=True)
    for column in ("scheme", "requests", "last"):  # --json: bytes sent, first seen too
        table.add_column(column, overflow="fold")
    for u in uses:
        r = u.route
        table.add_row(
            _lit(u.site),
            u.command,
            _lit(r.host),
            r.scheme,
            f"{r.requests:,}",
            r.last_seen,
        )
    console.print(table)


def print_dry_run(console: Console, report: Any) -> None:
    table = _table(f"Dry run of {report.plan} phase {report.phase} (nothing written)")
    for column in ("dataset", "destination", "objects", "would copy", "identical", "conflicts"):
        table.add_column(column, overflow="fold")
    # Those with conflicts or copies not as recorded, then those with the most to copy;
    # not those the phase has no object of (a delta's, most of them).
    with_objects = [d for d in report.datasets if d.objects]
    shown, hidden = _shown(
        with_objects,
        lambda d: (-(d.conflicts + d.done_not_as_recorded), -d.would_copy_bytes),
    )
    for d in shown:
        table.add_row(
            _lit(d.dataset),
            _lit(d.destination_bucket),
            f"{d.objects:,}",
            f"{d.would_copy:,} ({human_bytes(d.would_copy_bytes)})",
            f"{d.identical:,}",
            f"{d.conflicts:,}",
        )
    _more_row(table, hidden, 6)
    if len(with_objects) > 1:
        bytes_ = sum(d.would_copy_bytes for d in report.datasets)
        table.add_section()
        table.add_row(
            "total",
            "",
            f"{report.objects:,}",
            f"{report.would_copy:,} ({human_bytes(bytes_)})",
            f"{report.identical:,}",
            f"{report.conflicts:,}",
        )
    console.print(table)
    if empty := len(report.datasets) - len(with_objects):
        one = empty == 1
        console.print(
            f"{empty:,} dataset{'' if one else 's'} of the plan {'has' if one else 'have'} no "
            "object in this phase (not shown).",
            markup=False,
        )
    wrong = sum(d.done_not_as_recorded for d in report.datasets)
    done = sum(d.done_in_ledger for d in report.datasets) - wrong
    again = report.identical - done
    if wrong:
        console.print(
            f"{wrong:,} objects this plan copied are not at the destination as recorded: the "
            "run skips them; `migrate verify` finds them and marks them to copy again.",
            markup=False,
        )
    theirs = sum(d.identical_not_ours for d in report.datasets)
    if report.identical:
        # "identical" spoke as if the run skipped them all: it skips only its own done ones.
        console.print(
            f"Identical: {done:,} copied by this plan already (the run skips them)"
            + (
                f"; the run copies the other {again:,} again, to record checksums of the "
                "bytes it reads"
                + (
                    f" ({theirs:,} of them objects this plan did not write, another "
                    "writer's or another plan's copy: the copy gives them the source's "
                    "content type and metadata, and the report lists each)"
                    if theirs
                    else ""
                )
                + "."
                if again
                else "."
            ),
            markup=False,
            soft_wrap=True,
        )
    if report.would_remove is not None:
        console.print(
            f"--delete-removed: {report.would_remove:,} copies whose source object the latest "
            "inventory no longer has would be removed at the destination, each checked just "
            "before (the run's re-list of the source decides; see them with `migrate run "
            "--phase delta` without it, which only reports them)",
            markup=False,
        )
    if report.gate_refused is not None:
        console.print(f"The run would refuse to start: {report.gate_refused}", markup=False)
    if report.removal_refused is not None:
        console.print(f"The run would refuse: {report.removal_refused}", markup=False)
    if report.conflicts:
        console.print(
            f"Conflicts: the run leaves these {report.conflicts:,} as they are and fails their "
            "copy (exit 11); --overwrite copies over them.",
            markup=False,
        )
    for d in report.datasets:
        for example in d.conflict_examples:
            console.print(printable(f"  conflict: {example}"), markup=False)
    if report.not_copied:
        console.print(
            f"Not copied: {report.not_copied:,} objects changed at the source during their "
            "copy, removed since, or gone from the source (a delta phase takes what changed; "
            "the run settles what is gone).",
            markup=False,
        )
    if report.missing_buckets and report.buckets_made_as_required:
        console.print(
            f"Buckets missing, which the run does not create (the plan's policy needs them made "
            f"as a certification requires: CERTIFICATION_CONDITION): "
            f"{', '.join(report.missing_buckets)}; the run refuses until they exist",
            markup=False,
        )
    elif report.missing_buckets:
        console.print(f"Buckets to be created: {', '.join(report.missing_buckets)}", markup=False)
    if report.outside_plan:
        n = len(report.outside_plan)
        console.print(
            f"NOT IN THE PLAN: {n:,} dataset{'s' if n > 1 else ''} of the source that no "
            f"phase copies: {', '.join(report.outside_plan[:DELTA_EXAMPLES])}"
            + (" ..." if n > DELTA_EXAMPLES else ""),
            markup=False,
            soft_wrap=True,
        )
    since = ", ".join(report.inventory_prefixes_since)
    if report.inventory_listed_at:
        listed = f"the inventory listed at {report.inventory_listed_at}" + (
            f" (parts listed again since, under --prefix: {since})" if since else ""
        )
    elif since:
        listed = f"the inventory listed under --prefix only ({since}): the rest of the site unseen"
    else:
        listed = "the inventory listed at (none finished)"
    if report.run_lists_again:
        console.print(
            f"From {listed}: the run lists the source again first and takes what changed "
            f"since, which this dry run does not see (`migrate inventory {report.source}` "
            "first shows it).",
            markup=False,
        )
    elif report.inventory_listed_at or since:
        console.print(f"From {listed}.", markup=False)


def _estimated_time(seconds: float | None) -> str:
    """An estimate's duration at the scale it has: under a minute, minutes, hours."""
    if seconds is None:
        return "unknown"
    if seconds < 60:
        return "< 1 min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


_MAPPINGS_SHOWN = 50  # a plan of thousands of datasets lists the first, in name order


def print_plan(console: Console, plan: Plan) -> None:
    console.print(
        f"Plan {plan.name}: {plan.source} -> {plan.destination}, policy "
        f"{plan.policy}, digest {plan.digest}",
        markup=False,
    )
    sites = _table("Sites")
    for column in ("site", "role", "provider", "region", "endpoint", "verdict"):
        sites.add_column(column, overflow="fold")
    for site in plan.sites:
        style = _STATUS_STYLE.get(site.verdict, "white")
        sites.add_row(
            _lit(site.name),
            site.role,
            _lit(site.provider),
            _lit(site.region or "-"),
            _lit(site.endpoint or "-"),
            f"[{style}]{site.verdict}[/]",
        )
    console.print(sites)
    # Why each verdict is what it is: what a reviewer approves (a walkthrough found only the
    # verdicts shown, their reasons, conditions and re-check warnings in the YAML alone).
    for site in plan.sites:
        for reason in site.reasons:
            console.print(printable(f"  {site.name}: {reason}"), markup=False, soft_wrap=True)
    console.print(
        f"Runner (the machine running migrate): {plan.runner_location or 'not declared'}",
        markup=False,
    )
    mappings = _table("Where each dataset goes")
    for column in ("dataset", "destination", "storage classes"):
        mappings.add_column(column, overflow="fold")
    for m in plan.mappings[:_MAPPINGS_SHOWN]:
        classes = ", ".join(f"{k} -> {v}" for k, v in sorted(m.storage_classes.items()))
        where = f"{m.destination_bucket}/{m.destination_prefix}"
        renamed = f" (renamed: {m.renamed_because})" if m.renamed_because else ""
        mappings.add_row(_lit(m.dataset), _lit(where + renamed), _lit(classes or "-"))
    console.print(mappings)
    if len(plan.mappings) > _MAPPINGS_SHOWN:
        console.print(
            f"... and {len(plan.mappings) - _MAPPINGS_SHOWN:,} more datasets (--json, or the "
            "plan file's mappings)",
            markup=False,
        )
    phases = _table("Phases")
    for column in (
        "phase", "requires", "objects", "bytes", "duration", "egress cost", "storage / month"
    ):  # fmt: skip
        phases.add_column(column)
    for phase in (*plan.phases, None):
        e = plan.totals if phase is None else phase.estimate
        cost = "unknown" if e.egress_cost is None else f"{e.egress_cost:,.2f} {e.currency}"
        stored = (
            "unknown"
            if e.storage_cost_per_month is None
            else f"{e.storage_cost_per_month:,.2f} {e.storage_currency}"
        )
        phases.add_row(
            "total" if phase is None else _lit(phase.name),
            "" if phase is None else _lit(", ".join(phase.requires) or "-"),
            # A projection of a few bytes may round to no whole object: "<1", not "0".
            f"{e.objects:,}" if e.objects or not e.bytes else "<1",
            human_bytes(e.bytes),
            _estimated_time(e.duration_seconds),
            cost,
            stored,
        )
    console.print(phases)
    t = plan.totals
    console.print(
        f"Durations are the bytes at --bandwidth "
        f"({human_bytes(int(plan.options.bandwidth_bytes_per_second))}/s) alone: each object "
        "adds its requests' round trips, which the pilot's run measures (many small objects "
        f"take longer than their bytes: these average {human_bytes(t.bytes // max(t.objects, 1))}"
        "); once a run has copied, `migrate status` times the phases left at its rates.",
        markup=False,
    )
    if plan.findings:
        findings = _table("Findings")
        for column in ("severity", "finding", "objects", "what to do"):
            findings.add_column(column, overflow="fold")
        for f in plan.findings:
            style = "red" if f.severity == "blocking" else "yellow"
            findings.add_row(
                f"[{style}]{f.severity}[/]",
                _lit(f"{f.code}: {f.message}"),  # the code: what --json and the README name
                f"{f.objects:,}",
                _lit(f.action),
            )
        console.print(findings)
    if plan.excluded:
        console.print(
            f"Left out on purpose (--exclude), not moved: {', '.join(plan.excluded)}",
            markup=False,
            soft_wrap=True,
        )
    for phase in plan.phases:
        if phase.checklist:  # reviewed with the plan, before the phase is run
            console.print(f"Checklist of phase {phase.name}:", markup=False)
            for n, step in enumerate(phase.checklist, start=1):
                console.print(f"  {n}. {step}", markup=False)
    console.print("Hosts the run may contact: " + ", ".join(plan.allowlist), markup=False)


def print_delta(console: Console, delta: Any) -> None:
    console.print(
        f"Source re-listed: {delta.added:,} added, {delta.changed:,} changed since the last "
        f"inventory; {delta.deleted:,} "
        + ("copied object was" if delta.deleted == 1 else "copied objects were")
        + " deleted at the source"
        + (
            f", {delta.removed:,} removed at the destination"
            + (f" ({delta.already_gone:,} more found gone there)" if delta.already_gone else "")
            if delta.removed or delta.already_gone
            else " (none removed: more than --max-remove allows)"
            if delta.removal_refused
            else " (left at the destination; --delete-removed removes them)"
            if delta.deleted
            else ""
        )
    )
    for row in delta.deleted_examples[:DELTA_EXAMPLES]:
        console.print(
            printable(f"  deleted at the source: {row.container}/{row.key}"), markup=False
        )
    if delta.deleted > DELTA_EXAMPLES:
        console.print(
            f"  ... and {delta.deleted - DELTA_EXAMPLES:,} more deleted at the source (the "
            "report lists them: `migrate report`)",
            markup=False,
        )
    for line in delta.kept_at_destination[:DELTA_EXAMPLES]:
        console.print(f"  not removed: {line}", markup=False, soft_wrap=True)
    if delta.kept_count > DELTA_EXAMPLES:
        console.print(
            f"  ... and {delta.kept_count - DELTA_EXAMPLES:,} more copies not removed (--json "
            "gives "
            f"the first {len(delta.kept_at_destination):,} with why)",
            markup=False,
        )
    if delta.phase is not None:
        # "0 added" compares with the inventory just before: one run by hand counts too.
        console.print(
            f"Phase {delta.phase} has {delta.to_copy_new + delta.to_copy_changed:,} objects to "
            f"copy: {delta.to_copy_new:,} never copied, {delta.to_copy_changed:,} copied before "
            "(changed at the source since, or found wrong by a verification)",
            markup=False,
        )
    if delta.unplanned:
        names = ", ".join(d.dataset for d in delta.unplanned[:10])
        more = f" and {len(delta.unplanned) - 10} more" if len(delta.unplanned) > 10 else ""
        console.print(
            f"NOT IN THE PLAN: {delta.unplanned_objects:,} objects "
            f"({human_bytes(sum(d.bytes for d in delta.unplanned))}) in "
            f"{len(delta.unplanned)} dataset(s) that appeared after the plan was made: "
            f"{names}{more}. No phase of this plan copies them: make a plan that includes "
            "them (`migrate plan`) before switching over, or leaves them out on purpose "
            "(`--exclude`).",
            markup=False,
        )
