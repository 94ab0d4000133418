"""The `migrate` command line: parse, call the core, render. Errors become one line and an
exit code here, in `main`, and nowhere else."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.exceptions import TyperException

from migrate import os_user, render, rerun
from migrate.bounds import MAX_CONCURRENCY, MAX_PART_SIZE_MIB
from migrate.errors import (
    EXIT_CODES,
    INTERRUPTED,
    INTERRUPTED_HINT,
    INTERRUPTED_KIND,
    INTERRUPTED_LINE,
    INTERRUPTED_MESSAGE,
    UNEXPECTED,
    USAGE,
    ConfigError,
    IntegrityError,
    MigrateError,
    PlanError,
    PlanTampered,
    PolicyViolation,
    SecretInConfig,
    TransferError,
    UsageError,
    as_store_failure,
    error_json,
    error_object,
    kind_of,
    printable,
    redact,
    wants_json,
)
from migrate.ledger import Approval, Ledger, NotCopiedRow, PhaseCounts
from migrate.output import drop_stdout
from migrate.output import install as install_reader_may_leave
from migrate.plan import (
    PhaseKind,
    Plan,
    check_approved,
    check_as_written,
    check_inventory_held,
    check_same_routes,
    check_sources_listed,
    compute_digest,
    holds_inventory,
    load_plan,
    moved_route,
    save_plan,
)
from migrate.planlock import holder as plan_holder
from migrate.planlock import left_behind, parse_holder
from migrate.policy import POLICIES, get_policy
from migrate.projection import projected
from migrate.session import open_session
from migrate.sites import SitesConfig, load_sites
from migrate.summary import Subscriber

# What only some commands need is imported in them: a command's start-up time is the
# import of what it uses (a finished phase run again is answered in a fraction of a second).
if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console
    from rich.progress import Progress

    from migrate.executor import TransferConfig
    from migrate.inventory import Progress as ListingProgress
    from providers.catalog import Catalog


def _version() -> str:
    from migrate import tool_version

    return tool_version()


EPILOG = "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="migrate",
    help=(
        "Move object-storage estates off US hyperscalers onto European S3-compatible "
        "clouds: inventory, plan, run, verify, report.\n\n"
        "Example: migrate sites check --sites sites.toml"
    ),
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
sites_app = typer.Typer(
    help="Check the sites of the sites file.\n\nExample: migrate sites check --json",
    no_args_is_help=True,
)
app.add_typer(sites_app, name="sites")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"migrate {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # The options before the command; the group's help is the Typer's help= above.
    pass


SitesOpt = Annotated[
    Path | None,
    typer.Option("--sites", help="Sites file (default: $MIGRATE_SITES, else ./sites.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


@functools.cache
def _console() -> Console:
    from rich.console import Console

    # A reader gone from stdout (`| head`) never reaches rich: migrate.output drops it.
    return Console(file=_Stdout())  # type: ignore[arg-type]


class _OutputUnwritable(OSError):
    """Standard output could not be written (a full disk under a redirection)."""


class _Stdout:
    """Standard output for the human output: its write errors say they are the output's,
    so that only they are told as such (another OSError is the command's own)."""

    def write(self, text: str) -> int:
        if sys.stdout is None:  # started with it closed (`>&-`): said at the end (main)
            _stdout_closed[:] = [True]
            return len(text)
        try:
            return sys.stdout.write(text)
        except OSError as exc:
            raise _OutputUnwritable(exc.errno, exc.strerror) from None

    def flush(self) -> None:
        if sys.stdout is None:
            return
        try:
            sys.stdout.flush()
        except OSError as exc:
            raise _OutputUnwritable(exc.errno, exc.strerror) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.stdout, name)


@functools.cache
def _stderr() -> Console:
    from rich.console import Console

    class _Gone(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 ("unexpected error"): stderr's reader went away (`2>&1 | head`);
            # what is left to say is dropped, and the command's own exit code stands.
            self.quiet = True
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stderr.fileno())  # and Python's own last flush
                os.close(devnull)

    return _Gone(stderr=True)


PolicyOpt = Annotated[
    str | None,
    typer.Option("--policy", help="Policy: " + ", ".join(POLICIES) + "."),
]


@contextlib.contextmanager
def _writing(what: str, path: Path) -> Iterator[None]:
    """A file the command writes where it was told (-o): a place it cannot write is the
    user's to change, said in one line."""
    try:
        yield
    except OSError as exc:
        why = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            # mkdir's "File exists" said nothing of which: the first non-directory on the way.
            blocking = next(
                (p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None
            )
            if blocking is not None:
                why = f"{blocking} is a file, where a directory is needed"
        raise ConfigError(
            f"cannot write {what} to {path} ({why})",
            hint="choose a path you can write to with -o",
        ) from None


def _load(sites: Path | None) -> tuple[SitesConfig, Catalog]:
    """The sites file and the catalog with the user's own files merged in."""
    config = load_sites(sites)
    return config, _catalog_of(config)


def _catalog_of(config: SitesConfig) -> Catalog:
    from providers.catalog import load_catalog, set_active_catalog

    catalog = load_catalog(config.catalog)
    set_active_catalog(catalog)
    return catalog


def _warn(line: str) -> None:
    """A problem that does not fail the command, on stderr (never in --json output)."""
    _stderr().print(f"migrate: warning: {line}", markup=False, soft_wrap=True)


def _warn_if_state_unaware(plan: Plan, ledger: Ledger, config: SitesConfig) -> None:
    """A state without the plan's inventory: holding nothing of it (never approved nor run),
    its progress and report read as a plan with nothing done, exit 0; holding another plan
    of the same name, as that plan's. The sites file is most likely not the plan's (two
    walkthroughs); said, as run says it."""
    if holds_inventory(plan, ledger):
        return  # the plan's own inventory: its state (approved or not yet)
    if ledger.approvals(plan.name) or ledger.runs(plan.name, 1)[1]:
        # Another plan of the same name (a rehearsal's state, another workdir): what is
        # shown is its progress, not this plan's (a walkthrough read it as this one's).
        _warn(
            f"the state {ledger.path} does not hold the inventory plan {plan.name} was made "
            "from: what it holds under that name is another plan's (another sites file's "
            "state?); name the plan's sites file with --sites"
        )
        return
    missing = [s for s in (plan.source, plan.destination) if s not in config.sites]
    _warn(
        f"the state {ledger.path} holds nothing of plan {plan.name} (never approved nor run "
        "with it)"
        + (f", and {config.path} declares no site {' nor '.join(missing)}" if missing else "")
        + ": if the plan was made with another sites file, name it with --sites"
    )


# Set once a command printed its JSON: a failure after it (verify's findings, a run's
# failed objects) prints no second object under --json; `main` clears it.
_json_printed: list[bool] = []
# Output was dropped: standard output was closed when migrate started (`>&-`). A command
# that succeeded then exits 3 saying so; one that failed keeps its own line and code.
_stdout_closed: list[bool] = []


def _out(json_mode: bool, value: object) -> None:
    """The command's one JSON object on stdout (under --json; nothing otherwise)."""
    if json_mode:
        # Plain print: no rich markup or wrapping in machine output.
        _print_out(render.to_json(value))
        _json_printed.append(True)


def _print_out(text: str) -> None:
    """Print to stdout (a reader gone, `| head`, is migrate.output's to drop)."""
    if sys.stdout is None:  # started with it closed (`>&-`): print() drops it silently
        _stdout_closed[:] = [True]  # said at the end, unless the command failed (main)
        return
    try:
        print(text, flush=True)
    except OSError as exc:  # a full disk under a redirection: said, not a traceback
        drop_stdout()
        raise ConfigError(
            f"the output could not be written to standard output ({exc.strerror or exc})",
            hint="free space where the output goes, then run the command again",
        ) from None


def _option_as_value(command: Any, args: list[str]) -> tuple[str, str] | None:
    """An option of `command` (the CLI's click command) given another option as its value
    (`--reason --json`): click would take `--json` as the reason, record it, and print no
    JSON. (option, what it was given)."""
    i = 0
    while i < len(args) and (commands := getattr(command, "commands", None)) is not None:
        sub = commands.get(args[i])
        i += 1
        if sub is not None:
            command = sub
        elif not args[i - 1].startswith("-"):
            return None  # not a command: click says so
    valued = {
        name
        for p in command.params
        if p.param_type_name == "option" and not getattr(p, "is_flag", True)
        and not getattr(p, "count", False)
        for name in p.opts
    }  # fmt: skip
    for arg, value in zip(args[i:], args[i + 1 :], strict=False):
        if arg in valued and value.startswith("--"):
            return arg, value
    return None


@sites_app.command("check")
def sites_check(
    site: Annotated[str | None, typer.Argument(help="Only this site.")] = None,
    fail_on_policy: Annotated[
        bool,
        typer.Option(
            "--fail-on-policy",
            help="Exit 8 when the policy blocks a site checked or the runner (runner.location): "
            "name the destination, as the source being left usually fails it.",
        ),
    ] = False,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Check every site: reachable, credentials accepted, buckets present; with the
    policy's verdict for each, and for the machine running migrate (runner.location).

    Example: migrate sites check scw-par --fail-on-policy --json
    """
    from migrate.policy import evaluate, evaluate_runner
    from migrate.session import site_reads
    from migrate.sitecheck import check_sites, exit_code_of, first_problem
    from providers.factory import endpoint_as_built

    config, catalog = _load(sites)
    if not config.sites:  # an empty table would read as "all is well"
        raise ConfigError(
            f"{config.path}: no site to check",
            hint="add a [sites.NAME] section per store; see README 'Configuration'",
        )
    with site_reads(config, catalog, "sites check", warn=_warn) as reads:
        results = check_sites(
            config,
            lambda s: reads.adapter(s, s.buckets),
            only=site,
            endpoint_of=lambda s: endpoint_as_built(s, catalog),
        )
    verdicts = []
    if config.policy:
        names = [site] if site else sorted(config.sites)
        verdicts = [evaluate(config.site(n), config.policy, catalog, date.today()) for n in names]
        # The bytes pass through the machine running migrate: a run judges it too.
        verdicts.append(evaluate_runner(config.runner.location, config.policy))
    code, first = exit_code_of(results), first_problem(results)
    blocked = [v for v in verdicts if v.blocking]
    if not code and blocked and fail_on_policy:
        code = PolicyViolation.exit_code  # reachable, but not where the policy allows
        what = blocked[0]
        todo = (
            'declare where migrate runs, runner = { location = "FR" } (runner.location), '
            "on a machine the policy allows"
            if what.subject == "runner"
            else "the verdict's reasons say why (above, or --json); choose a site the policy "
            "allows, or correct the site's declarations in the sites file or a fact with a "
            "catalog file (README 'Correcting or adding a fact')"
        )
        first = f"{what.subject}: {what.status} under policy {config.policy} ({todo})"
    if json_out:
        _out(
            True,
            {
                # the command's outcome, as its exit code says it (a script need not walk
                # each site's containers: a site's `error` is only a set-up failure's)
                "ok": not code,
                "exit_code": code,
                "sites": [{**asdict(r), "ok": r.ok} for r in results],
                "policy": config.policy,
                "verdicts": [v.to_dict() for v in verdicts],
            },
        )
    else:
        render.print_site_checks(_console(), results)
        if verdicts:
            render.print_verdicts(_console(), verdicts, title=f"Policy {config.policy}")
    if code:
        # The table (or the JSON) says it all; stderr says it in one line, for logs.
        _stderr().print(f"migrate: error: {first}", markup=False, soft_wrap=True)
        raise typer.Exit(code)


@app.command()
def inventory(
    site: Annotated[str, typer.Argument(help="Name of the site to list (from the sites file).")],
    prefix: Annotated[
        str,
        typer.Option(
            help="Only keys under this prefix, within each container (without the "
            "container's name: cepidc/ for dataset snds/cepidc/)."
        ),
    ] = "",
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Stream a site's listing into the local state and summarise it by dataset.

    Interrupted? Run the same command again: it resumes from the last stored page.
    Run it again later: it records what was added, changed or deleted.

    Example: migrate inventory azure-hdh --json
    """
    from migrate.inventory import run_inventory
    from migrate.session import site_reads

    config, catalog = _load(sites)
    chosen = config.site(site)
    with site_reads(config, catalog, "inventory", warn=_warn) as reads:
        adapter = reads.adapter(chosen, chosen.buckets)
        try:
            summary = run_inventory(
                config, site, adapter, prefix=prefix, progress=_progress_printer(json_out)
            )
        finally:
            adapter.close()
    if prefix and not summary.listed and not summary.resumed:
        # Exit 0 and "0 added" read as a listing that found nothing new (a walkthrough
        # gave `snds/`, a dataset's name, where the container's keys start `cepidc/`).
        _warn(
            f"no object under --prefix {prefix!r} in any container of site {site} "
            f"({', '.join(chosen.buckets)}): the prefix is the start of a key within each "
            "container, without the container's name"
        )
    if json_out:
        _out(True, summary)
    else:
        render.print_inventory(_console(), summary)


def _progress_printer(quiet: bool) -> ListingProgress:
    """One line per few seconds on stderr: terminals and logs alike can follow it."""
    last = [0.0]

    def show(container: str, objects: int, size: int) -> None:
        now = time.monotonic()
        if quiet or now - last[0] < 2:
            return
        last[0] = now
        # The console (rich) is imported on the first line printed: never under --json.
        _stderr().print(
            f"listing {container}: {objects:,} objects, {render.human_bytes(size)}", markup=False
        )

    return show


# The groups' help is their callback's docstring (with its example), not a help= here.
plan_app = typer.Typer(invoke_without_command=True)
app.add_typer(plan_app, name="plan")


@plan_app.callback()
def plan(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--from", help="Source site.")] = None,
    destination: Annotated[str | None, typer.Option("--to", help="Destination site.")] = None,
    policy: PolicyOpt = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Plan file to write.")] = None,
    bandwidth: Annotated[
        str,
        typer.Option(
            help="Declared bandwidth for estimates, e.g. 1Gbit/s or 1Gbps (bits), 200MB/s "
            "(bytes): B is bytes, b bits."
        ),
    ] = "1Gbit/s",
    pilot_share: Annotated[
        str,
        typer.Option(
            help="Share of the objects in the pilot, sampled by key hash (about that share "
            "of the bytes), e.g. 2% or 0.02; ignored with --no-pilot."
        ),
    ] = "2%",
    pilot: Annotated[
        bool,
        typer.Option(
            "--pilot/--no-pilot",
            help="--no-pilot: no pilot phase, so bulk-1 waits for no verified pilot (a "
            "NO_PILOT warning in the plan). Only for data of a kind already tried on "
            "this destination.",
        ),
    ] = True,
    wave_cap_gib: Annotated[
        float,
        typer.Option(
            help="About how many GiB per bulk wave: the number of waves is the bytes "
            "divided by it, and objects go to waves by key hash, so a wave's size varies "
            "around it (a fraction too: 0.5 for a rehearsal).",
        ),
    ] = 2048,
    decommission: Annotated[
        bool,
        typer.Option(
            help="Add a decommission phase: the plan records that the source is to be "
            "deleted after the move (done by you: `migrate run` refuses that phase, exit 9)."
        ),
    ] = False,
    large_sha256: Annotated[
        bool,
        typer.Option(
            "--large-object-sha256/--no-large-object-sha256",
            help="Write migrate-sha256 on multipart objects too, with one server-side "
            "request each after the upload (no bytes sent again). Off: their SHA-256 is "
            "in the ledger and the manifest only.",
        ),
    ] = True,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="DATASET",
            help="Leave a dataset of the inventory out of the plan, on purpose (repeat for "
            "more), named as `migrate inventory` shows it, e.g. --exclude snds/archive-2012/, "
            "or a pattern, 'archive/*'. The plan records each dataset left out, and its "
            "report lists them; the cutover does not wait for them.",
        ),
    ] = None,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Make a phased plan from the source's inventory (pilot, bulk waves, delta, cutover,
    with estimates, findings and a verdict for every site); `plan show` and `plan approve`
    review and approve it. Deterministic: the same inventory and options give the same file.

    Example: migrate plan --from azure-hdh --to scw-par --policy fr-health -o plans/hdh.yaml
    """
    if ctx.invoked_subcommand is not None:
        return
    if not (source and destination and out):
        raise UsageError(
            "migrate plan needs --from SITE --to SITE -o plans/NAME.yaml",
            hint="or use `migrate plan show|approve PLAN`",
        )
    from migrate.planner import parse_bandwidth
    from migrate.replication import plan_from_sites

    config, catalog = _load(sites)
    chosen = policy or config.policy
    if not chosen:
        raise ConfigError("no policy: pass --policy or set `policy` in the sites file")
    # Names first, before any store is read: a typo is a configuration error (exit 3).
    config.site(source), config.site(destination), get_policy(chosen)
    share = _share_of(pilot_share, "--pilot-share")
    if not 0 <= share < 1:  # said as typed: "200%", not the 2 it converts to
        bare = "%" not in pilot_share and share >= 1  # "5": 500%, not 5%
        raise ConfigError(
            f"--pilot-share {pilot_share}: give a share from 0% to below 100%"
            + (f" ({pilot_share} without % is {share:.0%})" if bare else ""),
            hint="e.g. --pilot-share 2% or 0.02",
        )
    if not 1 / 1024**3 <= wave_cap_gib <= 2**40:  # nan and inf too: no comparison holds
        raise ConfigError(
            f"--wave-cap-gib {wave_cap_gib:g}: give a positive number of GiB",
            hint="e.g. --wave-cap-gib 1024, or 0.5 for a rehearsal",
        )
    made = plan_from_sites(
        config,
        catalog,
        name=out.stem,
        source=source,
        destination=destination,
        policy=chosen,
        today=date.today(),
        bandwidth_bytes_per_second=parse_bandwidth(bandwidth, "--bandwidth"),
        pilot_share=share,
        pilot=pilot,
        wave_cap_bytes=int(wave_cap_gib * 1024**3),
        include_decommission=decommission,
        sha256_on_large_objects=large_sha256,
        exclude=exclude or (),
        warn=_warn,
        keep_waves=_waves_begun(out, config.state_dir),
    )
    with Ledger.for_reading(config.state_dir) as ledger:
        # Written over a plan of that name with progress elsewhere, the file the state's
        # progress was approved as would be gone, and every run refused (a walkthrough).
        check_same_routes(made, ledger)
        approvals = ledger.approvals(made.name)
    with _writing("the plan", out):
        save_plan(made, out)
    if approvals and approvals[0].digest != made.digest and not made.blocking:
        # The file approved is replaced by another version: said, not left to the run.
        _warn(
            f"{out} holds a new version of plan {made.name}, not the one approved (by "
            f"{approvals[0].approved_by} at {approvals[0].approved_at}): review it, then "
            f"`migrate plan approve {out}`"
        )
    if json_out:
        # `plan` is its name, as run, verify and status name it; `file`, where it is
        answer = {"plan": made.name, "file": str(out), "digest": made.digest}
        _out(True, {**answer, "blocking": len(made.blocking)})
    else:
        render.print_plan(_console(), made)
        if made.blocking:
            codes = ", ".join(sorted({f.code for f in made.blocking}))
            n = len(made.blocking)
            _console().print(
                f"Plan written to {out}. It cannot be approved: {n} blocking "
                f"finding{'s' if n > 1 else ''} ({codes}); fix what each says, then make the "
                "plan again.",
                markup=False,
            )
        else:
            _console().print(
                f"Plan written to {out}. Review it, then: migrate plan approve {out}",
                markup=False,
            )


@plan_app.command("show")
def plan_show(
    plan: PlanArg,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a plan: sites and verdicts, phases with estimates, findings, allowed hosts,
    and (when a sites file is found) whether `migrate run` takes it as approved.

    Example: migrate plan show plans/hdh.yaml
    """
    loaded = load_plan(plan, check_digest=False)
    try:
        check_as_written(loaded, plan)
    except PlanError:
        # A reviewer sees the plan edited by hand too, then why it is refused (exit 9); a
        # script (--json) is told it is refused, as run would.
        if not json_out:
            render.print_plan(_console(), loaded)
        raise
    approval = _approval(loaded, sites)
    if json_out:
        shown = loaded.model_dump(mode="json")
        # Always there, for scripts: unknown (null) away from any sites file too.
        approved, detail = approval or (None, "not known: no sites file (--sites, MIGRATE_SITES)")
        # status --json's object where the state can be read (the run's own check, its
        # `why_not` line), with `detail`, the line shown here
        shown["approval"] = {
            "approved": approved,
            "why_not": None if approved else detail,
            **(_status_approval(loaded, sites) or {}),
            "detail": detail,
        }
        _out(True, shown)
        return
    render.print_plan(_console(), loaded)
    if approval is not None:
        from rich.markup import escape

        style = {True: "green", False: "yellow", None: "red"}[approval[0]]
        _console().print(f"Approval: [{style}]{escape(approval[1])}[/]")


def _sites_at_hand(sites: Path | None) -> bool:
    """--sites given, or a file at $MIGRATE_SITES or ./sites.toml: the user's, to be used
    (and refused where it is wrong) by the commands that can do without one."""
    from migrate.locations import sites_path

    return sites is not None or sites_path(None).is_file()


def _approval(plan: Plan, sites: Path | None) -> tuple[bool | None, str] | None:
    """Whether the plan is approved, by the state of the sites file; None without a sites
    file (a plan read away from its sites). Nothing is created: no state, no approval. A
    sites file or state that cannot be read leaves it unknown (None, why): the plan is
    still shown."""
    from migrate.locations import STATE_FILE
    from migrate.plan import approval_of

    if not _sites_at_hand(sites):
        return None
    try:
        config = load_sites(sites)
        if not (config.state_dir / STATE_FILE).is_file():
            return False, f"plan {plan.name} is not approved (no state in {config.state_dir})"
        with Ledger.for_reading(config.state_dir) as ledger:  # as `status` reads it
            approval, detail = approval_of(plan, ledger)
        if approval is not None and (refused := _refused_now(plan, config)):
            return False, f"{detail}, but {refused}"
    except SecretInConfig:
        raise  # a secret written in the file is refused wherever the file is read
    except MigrateError as exc:
        return None, f"not known: {exc.one_line()}"
    return approval is not None, detail


def _status_approval(plan: Plan, sites: Path | None) -> dict[str, Any] | None:
    """`status --json`'s approval object, where a sites file and its state can be read
    (None otherwise: `plan show` still shows the plan)."""
    from migrate.locations import STATE_FILE

    if not _sites_at_hand(sites):
        return None
    try:
        config = load_sites(sites)
        if not (config.state_dir / STATE_FILE).is_file():
            return None
        with Ledger.for_reading(config.state_dir) as ledger:
            return _approval_state(plan, ledger, False, config)
    except MigrateError:
        return None


def _refused_now(plan: Plan, config: SitesConfig) -> str | None:
    """Why a run would refuse an approved plan now, the sites and the catalog as they are
    (a destination or runner the policy blocks today, a site sent off its allowlist); None
    if it would not: `plan show` and `status` said "approved" of one (a walkthrough)."""
    from migrate.session import guard_for, refuse_blocked_now

    try:
        catalog = _catalog_of(config)
        refuse_blocked_now(plan, config.site(plan.destination), config, catalog)
        guard_for(plan, config, catalog)
    except MigrateError as refused:
        return f"a run refuses it now: {refused.one_line()}"
    return None


def _record_text(option: str, value: str) -> str:
    """A value kept in the audit record (who approved, why a gate was forced): one line of
    text, its edges trimmed. A newline in it printed a made-up second line in every output
    that shows it (exit 3, a value not understood); blank, it recorded nothing (exit 2, as
    when it is missing) (a walkthrough)."""
    text = value.strip()
    if not text:
        raise UsageError(f"{option} is blank: it is recorded, so it must say something")
    if printable(text) != text:  # a control character in it
        raise ConfigError(
            f"{option}: one line of text, without control characters (a newline, a tab): "
            "it is recorded and shown as one line",
            hint=f"give {option} again on one line",
        )
    return text


@plan_app.command("approve")
def plan_approve(
    plan: PlanArg,
    by: Annotated[str | None, typer.Option(help="Who approves (default: the OS user).")] = None,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Approve a plan: records its digest, who and when. A plan with a blocking finding
    cannot be approved; a plan edited after approval is refused by `migrate run`.

    Example: migrate plan approve plans/hdh.yaml
    """
    from migrate.planner import approve_plan

    config = load_sites(sites)
    who = os_user() if by is None else _record_text("--by", by)
    loaded = load_plan(plan)
    # Sites the sites file does not have: approved, the plan could never run (exit 3).
    config.site(loaded.source), config.site(loaded.destination)
    # Judged now, as a run judges it: a destination or runner the policy blocks under the
    # facts of today (a catalog file, the sites file) is not approved (a walkthrough: the
    # file's PASS was approved, and only the run refused).
    from migrate.planner import refuse_blocking
    from migrate.session import guard_for, refuse_blocked_now

    refuse_blocking(loaded, plan)  # said first: its findings say why (exit 9)
    catalog = _catalog_of(config)
    refuse_blocked_now(loaded, config.site(loaded.destination), config, catalog, approving=True)
    # The sites' hosts against its allowlist, as a run; not the proxy variables of this
    # shell: approving sends nothing, and may be done elsewhere than the run.
    guard_for(loaded, config, catalog, env={})
    with Ledger(config.state_dir) as ledger:
        kept = approve_plan(plan, ledger, who)  # the first approval of this digest
    if json_out:
        _out(
            True,
            {
                "plan": loaded.name,
                "file": str(plan),
                "digest": kept.digest,
                "approved_by": kept.approved_by,
                "approved_at": kept.approved_at,
                # False: approved already, that approval stands (this call is in the
                # plan's approval history, which the report shows).
                "recorded": kept.recorded_now,
            },
        )
    else:
        again = ""
        if not kept.recorded_now:
            again = (
                " (approved already: that approval stands; this one is in the plan's approval "
                "history, which `migrate report` shows)"
            )
        _console().print(
            f"Approved {plan} ({kept.digest}) by {kept.approved_by} at {kept.approved_at}{again}.",
            markup=False,
        )


providers_app = typer.Typer(invoke_without_command=True)
app.add_typer(providers_app, name="providers")


@providers_app.callback()
def providers(
    ctx: typer.Context,
    policy: PolicyOpt = None,
    per_region: Annotated[bool, typer.Option(help="One verdict per region.")] = False,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """The provider catalog: each provider's verdict under a policy (default: the sites
    file's policy, else eu-sovereign), with its reasons, sources and dates; `providers show
    NAME` lists one provider's facts.

    Example: migrate providers --policy fr-health --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from migrate.policy import evaluate_all

    catalog, policy = _catalog_and_policy(sites, policy)
    verdicts = evaluate_all(policy, catalog, date.today(), per_region=per_region)
    if json_out:
        _out(True, [v.to_dict() for v in verdicts])
    else:
        render.print_verdicts(_console(), verdicts, title=f"Providers under {policy}")


def _catalog_and_policy(sites: Path | None, policy: str | None) -> tuple[Catalog, str]:
    """The user's catalog when a sites file is at hand; the built-in one otherwise. A sites
    file found (--sites, $MIGRATE_SITES, ./sites.toml) that cannot be used is an error, not
    a silent fallback to another policy and catalog than the user's."""
    if not _sites_at_hand(sites):
        from providers.catalog import load_catalog

        return load_catalog(), policy or "eu-sovereign"
    config, catalog = _load(sites)
    return catalog, policy or config.policy or "eu-sovereign"


@providers_app.command("show")
def providers_show(
    name: Annotated[str, typer.Argument(help="Provider name, as `migrate providers` lists it.")],
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show every fact the catalog holds on a provider, each with its source and date.

    Example: migrate providers show scaleway
    """
    from providers.catalog import iter_facts

    catalog, _ = _catalog_and_policy(sites, None)
    if name not in catalog.providers:  # typed here, not read from a sites file
        raise ConfigError(
            f"unknown provider {name!r}",
            hint=f"known providers: {', '.join(catalog.names())} (`migrate providers` lists "
            "them; a catalog file adds one)",
        )
    provider = catalog.provider(name)
    if json_out:
        _out(True, provider.model_dump(mode="json"))
        return
    render.print_provider(
        _console(),
        provider.display_name,
        list(iter_facts(provider)),
        provider.certifications,
        provider.notes,
    )


PlanArg = Annotated[Path, typer.Argument(help="The plan file (plans/NAME.yaml).", metavar="PLAN")]


class _ProgressSubscriber(Subscriber):
    """Progress on stderr: rich bars (bytes, objects, rate, ETA) on a terminal, one line per
    interval otherwise, none with --json (`lines` False). A copy that moves nothing for
    `stall_notice` seconds says so, and again each such span, --json or not: a log must
    not fall silent while a run waits on a store (it stops by itself after STALL_AFTER
    without an answer), nor a CI job's, which may kill a job silent for too long. Nothing
    at all when `quiet` (a finished phase, answered from the ledger)."""

    def __init__(self, quiet: bool, stall_notice: float = 60.0, *, lines: bool = True) -> None:
        self._quiet = quiet
        self._lines = lines and not quiet
        self._stall_notice = stall_notice
        self._moved_at = time.monotonic()
        self._done = threading.Event()
        self._bars = self._lines and _stderr().is_terminal
        self._lock = threading.Lock()
        self._bytes = 0
        self._objects = 0
        self._total_objects = 0
        self._total_bytes = 0
        self._start = time.monotonic()
        self._last = self._start  # the first line 5 s in: a rate measured on more than a part
        self._progress: Progress | None = None
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> _ProgressSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join(5)  # a notice it was printing is printed before the summary
        if self._progress is not None:
            self._progress.stop()

    def _watch(self) -> None:
        from migrate.limits import STALL_AFTER

        told = 0
        while not self._done.wait(min(5.0, self._stall_notice / 4)):
            still = time.monotonic() - self._moved_at
            spans = int(still // self._stall_notice)
            if spans <= told:
                told = min(told, spans)
                continue
            told = spans
            line = (
                f"migrate: nothing moved for {render.human_duration(still)}: waiting on the "
                f"stores (a run stops by itself, exit 6, once a store has not answered for "
                f"{render.human_duration(STALL_AFTER)}, when its requests waiting then end: "
                "up to a minute or two later; Ctrl-C stops it now and it resumes)"
            )
            bars = self._progress  # read once: on_stopping may drop the bars meanwhile
            if self._done.is_set():
                return
            (bars.console if bars is not None else _stderr()).print(
                line, markup=False, soft_wrap=True
            )

    def on_start(self, objects: int, size: int) -> None:
        self._total_objects, self._total_bytes = objects, size
        self._start = self._last = time.monotonic()  # the rate of the copy, not its set-up
        self._moved_at = self._start
        if not self._quiet:
            self._watcher = threading.Thread(target=self._watch, name="stall-notice", daemon=True)
            self._watcher.start()
        if self._bars:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description:>8}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                TextColumn("{task.fields[unit]}"),
                TimeRemainingColumn(),
                console=_stderr(),
            )
            self._bytes_task = self._progress.add_task("bytes", total=size, unit="bytes")
            self._objects_task = self._progress.add_task("objects", total=objects, unit="")
            self._progress.start()

    def on_bytes(self, n: int) -> None:
        self._moved_at = time.monotonic()
        with self._lock:
            self._bytes += n
        if self._progress is not None:
            self._progress.advance(self._bytes_task, n)
        self._tick()

    def on_object(self, key: str, state: str) -> None:
        self._moved_at = time.monotonic()
        with self._lock:
            self._objects += 1
        if self._progress is not None:
            self._progress.advance(self._objects_task, 1)
        self._tick()

    def on_stopping(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        _stderr().print(
            "migrate: stopping: the requests under way finish first (up to a minute on a "
            "store that does not answer; under --bwlimit, as long as their bytes take at "
            "that rate; Ctrl-C again does not cut them)",
            markup=False,
            soft_wrap=True,
        )

    def _tick(self) -> None:
        now = time.monotonic()
        if not self._lines or self._bars or now - self._last < 5:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-6)
        rate = self._bytes / elapsed
        left = _eta(self._bytes, self._total_bytes, self._objects, self._total_objects, elapsed)
        eta = f"{left:.0f} s" if self._objects or self._bytes else "?"
        _stderr().print(
            f"{self._objects:,}/{self._total_objects:,} objects, "
            f"{render.human_bytes(self._bytes)}/{render.human_bytes(self._total_bytes)}, "
            f"{render.human_bytes(int(rate))}/s, ETA {eta}",
            markup=False,
        )


def _eta(done_bytes: int, bytes_: int, done_objects: int, objects: int, elapsed: float) -> float:
    """Seconds left: the longer of what the bytes and the objects left take at their rates
    so far (many small objects take their time by the object, not by the byte: an ETA by
    bytes alone said 3 s of a run that took 51)."""
    by_bytes = (bytes_ - done_bytes) * elapsed / done_bytes if done_bytes else 0.0
    by_objects = (objects - done_objects) * elapsed / done_objects if done_objects else 0.0
    return max(by_bytes, by_objects, 0.0)


MIN_RPS = 0.1  # one request each 10 s: below that, a limit looks like a hang
MIN_BANDWIDTH = 1000  # bytes per second


def _bandwidth(text: str | None) -> float | None:
    if not text:
        return None
    from migrate.planner import parse_bandwidth  # the planner's import only when asked

    return parse_bandwidth(text, "--bwlimit")


@app.command()
def run(
    plan: PlanArg,
    phase: Annotated[str, typer.Option(help="Phase to run: pilot, bulk-1, ..., delta, cutover.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and HEAD only: write nothing anywhere.")
    ] = False,
    concurrency: Annotated[
        int,
        typer.Option(
            help=f"Objects copied at once, 1 to {MAX_CONCURRENCY} (each holds a part buffer "
            "of --part-size-mib and up to three threads)."
        ),
    ] = 8,
    part_size_mib: Annotated[
        int,
        typer.Option(
            help=f"Preferred part size in MiB, at most {MAX_PART_SIZE_MIB} (raised where the "
            "store needs larger or fewer parts)."
        ),
    ] = 16,
    bwlimit: Annotated[
        str | None,
        typer.Option(
            help="Most bytes per second written, e.g. 200MB/s, or 1Gbit/s (B is bytes, b bits)."
        ),
    ] = None,
    max_rps: Annotated[
        float | None,
        typer.Option(
            help=f"Most requests per second to each endpoint (a finite number, at least {MIN_RPS})."
        ),
    ] = None,
    delete_removed: Annotated[
        bool,
        typer.Option(
            "--delete-removed",
            help="delta/cutover: delete at the destination what was deleted at the source.",
        ),
    ] = False,
    max_remove: Annotated[
        str | None,
        typer.Option(
            "--max-remove",
            help="With --delete-removed: the most copies one run may remove, a count (500) "
            "or a share of the plan's copies (25%). More, and the run removes and copies "
            "nothing. Default 10%.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Copy over objects at the destination that this plan did not write "
            "(by default they are left as they are, and their copy fails as a conflict).",
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="Start although a gate is not met.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why --force (recorded).")] = None,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run one phase of an approved plan. Interrupted? The same command resumes: finished
    objects are skipped and finished parts are not sent again. A finished phase run again
    answers at once, from its receipt. delta and cutover first re-list the source; cutover
    then verifies and prints the switch-over checklist.

    Example: migrate run plans/hdh.yaml --phase pilot
    """

    # Read before the command reads the files, and compared with a reading after it: a file
    # changed meanwhile stores no receipt.
    receipt = None if dry_run else _receipt_inputs(plan, phase, sites)
    config = load_sites(sites)
    if force and not (reason or "").strip():
        raise UsageError("--force needs --reason '...': the reason is recorded in the state")
    if force and reason is not None:
        reason = _record_text("--reason", reason)
    if reason is not None and not force:  # taken without a word, it looked recorded
        raise UsageError(
            "--reason is the reason for --force, which is not given",
            hint="add --force (past the phase's gate), or leave --reason out",
        )
    if max_remove is not None:
        if not delete_removed:
            raise UsageError(
                "--max-remove bounds --delete-removed, which is not given",
                hint="add --delete-removed, or leave --max-remove out",
            )
        from migrate.delta import removal_ceiling

        removal_ceiling(max_remove, 0)  # a wrong value is refused before any work
    if max_rps is not None and not math.isfinite(max_rps):
        # NaN compares false to everything (the check below would let it through) and
        # inf limits nothing: neither is a limit.
        raise ConfigError(
            f"--max-rps {max_rps}: give a finite number of requests per second",
            hint="e.g. --max-rps 100, or leave the option out for no limit",
        )
    # 0 would copy nothing (or, for --max-rps, silently not limit): never what was meant.
    for option, value, example in (
        ("--concurrency", concurrency, "8"),
        ("--part-size-mib", part_size_mib, "16"),
        ("--max-rps", 1 if max_rps is None else max_rps, "100"),
    ):
        if value <= 0:
            raise ConfigError(
                f"{option} {value:g}: must be above 0", hint=f"e.g. {option} {example}"
            )
    if part_size_mib > MAX_PART_SIZE_MIB:
        raise ConfigError(
            f"--part-size-mib {part_size_mib}: at most {MAX_PART_SIZE_MIB:,} (S3's largest "
            "part, 5 GiB)",
            hint="e.g. --part-size-mib 64; larger objects get larger parts by themselves",
        )
    if concurrency > MAX_CONCURRENCY:
        raise ConfigError(
            f"--concurrency {concurrency}: at most {MAX_CONCURRENCY} objects at once",
            hint=f"e.g. --concurrency 32 (each object copied at once holds a part buffer of "
            f"--part-size-mib: {MAX_CONCURRENCY} x 16 MiB is 4 GiB)",
        )
    if max_rps is not None and max_rps < MIN_RPS:
        # A request a day would look like a hang: a typo (1e-3 for 1e3), not a limit.
        raise ConfigError(
            f"--max-rps {max_rps:g}: at least {MIN_RPS} requests per second",
            hint="e.g. --max-rps 100, or leave the option out for no limit",
        )
    limit = _bandwidth(bwlimit)  # before anything is done: delta may delete at the destination
    if limit is not None and limit < MIN_BANDWIDTH:
        raise ConfigError(
            f"--bwlimit {bwlimit}: at least {MIN_BANDWIDTH:,} bytes per second (1 KB/s)",
            hint="e.g. --bwlimit 200MB/s, or leave the option out for no limit",
        )
    # The catalog is loaded with the guard (the allowlist's checks), before any adapter.
    doing = None if dry_run else f"run --phase {phase}"
    with open_session(plan, config, lambda: _catalog_of(config), lock=doing) as session:
        check_approved(session.plan, session.ledger)
        if dry_run:
            from migrate.dryrun import dry_run as do_dry_run
            from migrate.phaserun import check_removal_applies

            check_removal_applies(session.plan, phase, delete_removed)

            check_sources_listed(session.plan, config)
            check_inventory_held(session.plan, session.ledger, phase)

            report = do_dry_run(
                session.plan, phase, session.ledger, session.source, session.destination
            )
            gate: MigrateError | None = None
            if not force:
                from migrate.executor import gate_refusal

                gate = gate_refusal(session.plan, phase, session.ledger)
                report.gate_refused = None if gate is None else gate.one_line()
            if delete_removed and session.plan.phase(phase).kind in ("delta", "cutover"):
                # Announced before any run deletes what cannot be brought back.
                report.would_remove = session.ledger.deleted_at_source_count(
                    session.plan.name, session.plan.source, removable=True
                )
                from migrate.delta import DEFAULT_MAX_REMOVE, check_removal_ceiling

                try:
                    check_removal_ceiling(
                        session.plan,
                        session.ledger,
                        report.would_remove,
                        max_remove or DEFAULT_MAX_REMOVE,
                        session.source,
                        session.destination,
                    )
                except PlanError as refused:
                    report.removal_refused = refused.one_line()
            if json_out:
                answer = render.dry_run_answer(report)
                # The run's own error object, as the run would print it (a script matches
                # its `kind` and `exit_code`; `gate_refused` is its one line).
                answer["gate_error"] = (
                    None
                    if gate is None
                    else error_object(gate.exit_code, kind_of(gate), gate.message, gate.hint)
                )
                _out(True, answer)
            else:
                render.print_dry_run(_console(), report)
            return
        from migrate.phaserun import run_plan_phase

        def transfer_config() -> TransferConfig:
            from migrate.executor import TransferConfig  # only when there is a copy to make

            return TransferConfig(
                concurrency=concurrency,
                part_size=part_size_mib * 1024**2,
                bwlimit=limit,
                max_rps=max_rps,
            )

        # The sites as they stand against the plan's allowlist, before anything else: a
        # finished phase answered "nothing to do", exit 0, to a sites file its dry run and
        # verify refused (exit 10: a walkthrough). No request is made. (A phase the plan
        # does not have is said first.)
        session.plan.phase(phase)
        session.guard  # noqa: B018 (built for its checks)
        kind = session.plan.phase(phase).kind
        # The latest run record before this run's: an interruption names this run's alone.
        before = _last_run_id(session.ledger, session.plan.name) if json_out else 0
        try:
            outcome = run_plan_phase(
                session,
                phase,
                transfer_config,
                delete_removed=delete_removed,
                max_remove=max_remove,
                force_reason=reason if force else None,
                overwrite=overwrite,
                progress=lambda quiet: _ProgressSubscriber(quiet, lines=not json_out),
                on_delta=None if json_out else lambda d: render.print_delta(_console(), d),
            )
        except KeyboardInterrupt:
            if json_out:
                _interrupted_json(session.ledger, session.plan.name, phase, before)
            raise
        summary, delta, whole, passed = outcome.summary, outcome.delta, outcome.whole, outcome.ready
        checklist = outcome.checklist
        session.ledger.check_in_place()  # its records are in the state there is now
        ahead = None
        # Not after a finished phase's answer (nothing copied): a re-run reads no more of
        # the state than its receipt keeps (migrate/rerun.py).
        if not json_out and kind in ("pilot", "bulk") and outcome.summary.copied:
            ahead = projected(session.plan, session.ledger)
    if receipt and not summary.failed and kind not in ("delta", "cutover"):
        # The state is final (the session recorded its routes): the answer a re-run gives.
        rerun.remember(session.plan, phase, receipt, _receipt_inputs(plan, phase, sites))
    if json_out:
        cutover = (whole, passed) if kind == "cutover" else None
        _out(True, render.run_answer(summary, delta, cutover, checklist))
    else:
        render.print_phase_summary(_console(), summary)
        if ahead is not None and ahead.phases:
            render.print_time_left(_console(), ahead)
        if kind == "cutover":
            state = (
                "passed"
                if whole
                else "not run (the copy failed): do not switch over"
                if whole is None
                else "FAILED: do not switch over"
            )
            _console().print(f"Verification of the whole plan: {state}", markup=False)
            if passed:
                _console().print(
                    "Checklist for switching applications over (the plan's, also in `plan "
                    "show`; the steps up to this command are done already):",
                    markup=False,
                )
                for n, step in enumerate(checklist, start=1):
                    _console().print(f"  {n}. {step}", markup=False)
    if summary.failed:
        conflicts = (
            f", {summary.conflicts:,} of them conflicts (another object at the destination "
            "key, left as it is)"
            if summary.conflicts
            else ""
        )
        raise TransferError(
            f"phase {phase}: {summary.failed:,} of "
            f"{summary.objects - summary.deleted_at_source:,} objects failed "
            f"(not recorded as copied){conflicts}",
            hint="the summary above (or --json) names each and why: mend what it says (at "
            "the source, the destination or the sites file), then run the same command "
            "again, which copies those alone"
            + ("; --overwrite copies over the conflicts" if summary.conflicts else ""),
        )
    if not passed:
        if whole is False:
            raise IntegrityError(
                "cutover: the verification of the whole plan failed: do not switch over",
                hint=f"`migrate verify {session.plan.command_path}` names what is wrong",
            )
        raise IntegrityError(
            f"cutover: {delta.unplanned_objects if delta else 0:,} source objects are in "
            "datasets this plan does not have: do not switch over",
            hint="make a plan that includes them (`migrate plan`), run it, then cutover again; or "
            "leave them out on purpose (`migrate plan --exclude DATASET`, recorded in the plan)",
        )


def _receipt_inputs(plan: Path, phase: str, sites: Path | None) -> rerun.Inputs | None:
    try:
        return rerun.inputs_of(plan, phase, sites)
    except (OSError, ValueError, TypeError):  # the command itself says what is wrong
        return None  # unreadable, or a pipe: no receipt; the command reports what it cannot read


@app.command()
def status(
    plan: PlanArg,
    routes: Annotated[bool, typer.Option("--routes", help="Hosts contacted, with counts.")] = False,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed",
            help="Every object not copied (failed, changed at the source during its copy, "
            "or found_wrong: a verification sent it back to be copied again), with why, one "
            "per line: phase, state, container/key (a backslash, tab "
            "or newline in it escaped: \\\\, \\x09, \\x0a), reason, tab-separated; with "
            "--json, one JSON object per line, names as they are.",
        ),
    ] = False,
    phase: Annotated[
        str | None, typer.Option(help="With --failed: that phase's objects only.")
    ] = None,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show a plan's progress from the ledger only (no store is contacted): per phase,
    objects done, pending, failed and changed; with --routes, every host contacted, by
    the plan's runs and, outside them, by the reads of its sites (inventory, sites check,
    plan); with --failed, every object that failed, changed at the source or was found
    wrong by a verification, and why (the report names 100 a phase); with none, how many
    are still pending or in progress.

    Example: migrate status plans/hdh.yaml --routes

    Example: migrate status plans/hdh.yaml --failed --phase bulk-1 > failed.txt
    """
    if phase is not None and not failed:
        raise UsageError("--phase is for --failed", hint="add --failed, or leave --phase out")
    if routes and failed:
        raise UsageError(
            "--routes and --failed show different things", hint="ask for one, then the other"
        )
    config = load_sites(sites)
    loaded = load_plan(plan, check_digest=False)
    edited = compute_digest(loaded) != loaded.digest  # shown, but not taken as it stands
    # Asked before and after the counts: a run ending meanwhile is not a stopped one.
    running = plan_holder(config.state_dir, loaded.name)
    with Ledger.for_reading(config.state_dir) as ledger:
        _warn_if_state_unaware(loaded, ledger, config)
        moved = moved_route(loaded, ledger)
        if moved is not None and edited:
            # An edit moved a dataset: not another plan to save under another name.
            raise PlanTampered(
                f"{plan} was edited after it was made (its digest does not match): it "
                f"sends {moved[0]} as {moved[2]}, where the progress the state holds under "
                f"its name sent it as {moved[1]}",
                hint="put the file back as `migrate plan` wrote it, or make the plan again "
                "and approve it",
            )
        if moved is not None:
            check_same_routes(loaded, ledger)  # raises: another plan's progress, not this one's
        if edited:
            _stderr().print(
                f"migrate: warning: {plan} was edited after it was made (its digest does not "
                "match): approve, run and verify refuse it; the progress below is its name's",
                markup=False,
                soft_wrap=True,
            )
        if failed:
            if phase is not None:
                loaded.phase(phase)  # an unknown phase is a PlanError, not an empty list
            printed = _print_not_copied(ledger.not_copied(loaded.name, phase), json_out)
            if not printed and not json_out:
                # Nothing on stdout (a script reads no line); a person is told why, and of
                # what its phase has yet to copy (a stopped run's, one never run: no reason).
                waiting = [
                    c
                    for c in ledger.phase_counts(loaded.name, phase)
                    if c.state in ("pending", "in_progress") and c.objects
                ]
                running = plan_holder(config.state_dir, loaded.name) or running
                _stderr().print(
                    f"No object of plan {loaded.name}"
                    + (f", phase {phase}," if phase else "")
                    + " failed, changed at the source, or was found wrong by a verification."
                    + (
                        _not_copied_yet(
                            loaded,
                            waiting,
                            running,
                            _gated(loaded, ledger),
                        )
                        if waiting
                        else ""
                    ),
                    markup=False,
                    soft_wrap=True,
                )
            return
        counts = ledger.phase_counts(loaded.name)
        phases = {p.name: ledger.phase_state(loaded.name, p.name) for p in loaded.phases}
        projection = projected(loaded, ledger, counts)
        gated = _gated(loaded, ledger)
        state_file = ledger.path.resolve()
        running = plan_holder(config.state_dir, loaded.name) or running
        used = ledger.routes(loaded.name) if routes else []
        # The reads of its two sites outside its runs (inventory, sites check, plan).
        before = ledger.site_routes([loaded.source, loaded.destination]) if routes else []
        approval = _approval_state(loaded, ledger, edited, config)
    if json_out:
        _out(
            True,
            {
                "plan": loaded.name,
                # the file does not match its digest (see the warning): progress is its name's
                "edited": edited,
                "state": str(state_file),
                # what the process running or verifying the plan does, or null
                "running": running,
                # the same in fields (pid, command, phase, since, line), or null
                "running_process": parse_holder(running),
                "counts": counts,
                "phases": phases,
                # each phase's time left at the rates the plan's finished runs measured
                # (null before one has copied): see migrate/projection.py
                "projection": projection,
                # whether run would take this file as approved, and by whom, in this state
                "approval": approval,
                # null without --routes: not asked, which an empty list would read as "no
                # host contacted" (an automation walkthrough)
                "routes": used if routes else None,
                # flat, as in the report's JSON
                "routes_outside_runs": [
                    {"site": u.site, "command": u.command, **asdict(u.route)} for u in before
                ]
                if routes
                else None,
            },
        )
        return
    render.print_status(
        _console(),
        loaded,
        counts,
        phases,
        state_file=state_file,
        running=running,
        gated=gated,
        projection=projection,
    )
    if approval["why_not"] and not edited:  # an edited file has its warning already
        _console().print(f"A run refuses this plan: {approval['why_not']}.", markup=False,
                         soft_wrap=True)  # fmt: skip
    if routes:
        render.print_routes(_console(), used)
        render.print_site_routes(_console(), before)


def _approval_state(
    plan: Plan, ledger: Ledger, edited: bool, config: SitesConfig
) -> dict[str, Any]:
    """Whether a run would take this file, as it stands, as approved in the state (the
    run's own check, `check_approved`: `why_not` is its line), by whom and when; `latest`:
    the digest last approved under its name, when another."""
    approvals = ledger.approvals(plan.name)
    mine: Approval | None = None
    why_not = None
    try:
        mine = check_approved(plan, ledger)
    except PlanError as exc:  # PlanTampered too
        why_not = exc.one_line()
    else:
        why_not = _refused_now(plan, config)
    return {
        "approved": why_not is None,
        "why_not": why_not,
        "digest": plan.digest,
        "approved_by": mine.approved_by if mine and not edited else None,
        "approved_at": mine.approved_at if mine and not edited else None,
        "latest": approvals[0].digest if approvals and approvals[0].digest != plan.digest else None,
    }


def _last_run_id(ledger: Ledger, plan: str) -> int:
    records, _ = ledger.runs(plan, 1)
    return records[-1].id if records else 0


def _interrupted_json(ledger: Ledger, plan: str, phase: str, before: int) -> None:
    """Under --json, an interrupted run's error object with what the run did before it
    stopped (`run`: its record, as the report's history has it; null if it has none), so a
    script need not ask `status` (an automation walkthrough)."""
    done: dict[str, Any] | None = None
    with contextlib.suppress(MigrateError, sqlite3.Error):
        records, _ = ledger.runs(plan, 1)
        last = records[-1] if records else None
        if (
            last is not None
            and last.phase == phase
            and last.outcome == "interrupted"
            and last.id > before  # this command's run, not an earlier one's
        ):
            done = {"phase": phase, "started_at": last.started_at,
                    "finished_at": last.finished_at, **asdict(last.counts)}  # fmt: skip
    error = error_object(INTERRUPTED, INTERRUPTED_KIND, INTERRUPTED_MESSAGE, INTERRUPTED_HINT)
    answer = {"error": error, "run": done}
    _print_out(json.dumps(answer, sort_keys=True, ensure_ascii=False))
    _json_printed.append(True)


def _gated(plan: Plan, ledger: Ledger) -> set[str]:
    """The phases whose gate would refuse a run now (a command that copies what one left
    needs --force, as the run that left it had)."""
    from migrate.executor import gate_refusal

    return {p.name for p in plan.phases if gate_refusal(plan, p.name, ledger) is not None}


def _waves_begun(out: Path, state_dir: Path) -> int | None:
    """The number of bulk waves the runs of the plan named by `out` began with: a plan
    made again keeps them (see planner.make_plan). The state records it from a wave's
    first run; for runs before that was kept, the plan `out` holds, if the state holds
    runs of it. None otherwise (the new plan is split afresh)."""
    from migrate.locations import STATE_FILE

    if not (state_dir / STATE_FILE).is_file():
        return None
    with Ledger.for_reading(state_dir) as ledger:
        recorded = ledger.plan_waves(out.stem)
        if recorded is not None or not out.is_file():
            return recorded
        try:
            before = load_plan(out, check_digest=False)
        except MigrateError:
            return None
        waves = sum(1 for p in before.phases if p.kind == PhaseKind.BULK)
        if before.name != out.stem or not waves:
            return None
        began = any(ledger.phase_state(before.name, p.name).resolved_at for p in before.phases)
    return waves if began else None


def _not_copied_yet(
    plan: Plan,
    waiting: list[PhaseCounts],
    running: str | None,
    gated: Collection[str],
) -> str:
    """What is still to copy, for `status --failed` that found nothing failed or found
    wrong: whether a run is copying it now, else the commands that copy it (a stopped
    run's objects, or a phase never run)."""
    pending = sum(c.objects for c in waiting if c.state == "pending")
    in_progress = sum(c.objects for c in waiting if c.state == "in_progress")
    left = left_behind(running, [p.name for p in plan.phases], (c.phase for c in waiting))
    return (
        f" Not copied yet: {pending:,} pending, {in_progress:,} in progress"
        + (f" (under way now: {running})" if running else "")
        + (
            ": "
            + "; ".join(f"`{render.resume_command(plan, p, gated)}`" for p in left)
            + " copies them (a run stopped under way, or not run yet)."
            if left
            else "."
        )
    )


def _escaped(text: str) -> str:
    """A name on one line, its columns kept: backslashes and control characters (a key
    may hold a newline or a tab) written as backslash escapes."""
    return printable(text.replace("\\", "\\\\"))


def _print_not_copied(rows: Iterator[NotCopiedRow], json_out: bool) -> bool:
    """One line per object as it is read (memory does not grow with their number), until
    the reader goes away; whether there was any."""
    seen = False
    for row in rows:
        seen = True
        if json_out:
            if not _json_printed:  # a flag: not one entry per line printed
                _json_printed.append(True)
            line = json.dumps(asdict(row), sort_keys=True, ensure_ascii=False)
        else:
            where = _escaped(f"{row.container}/{row.key}")
            line = f"{row.phase}\t{row.state}\t{where}\t{' '.join(row.reason.split())}"
        _print_out(line)
    return seen


def _share(text: str | None) -> float | None:
    """--sample: '5%' or '0.05' -> 0.05, above 0 and at most 1 (named as typed)."""
    if text is None:
        return None
    share = _share_of(text, "--sample")
    if not 0 < share <= 1:
        raise ConfigError(
            f"--sample {text!r}: a share is above 0% and at most 100%", hint="e.g. --sample 5%"
        )
    return share


def _share_of(text: str, option: str) -> float:
    """'5%', '5 %' or '0.05' -> 0.05 (the callers check the range)."""
    try:
        return float(text.strip()[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: give a share such as 5% or 0.05", hint=f"e.g. {option} 5%"
        ) from None


def _random_seed() -> int:
    import secrets

    return secrets.randbelow(2**31)


@app.command()
def verify(
    plan: PlanArg,
    phase: Annotated[str | None, typer.Option(help="Verify one phase (default: all).")] = None,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Re-read and re-hash every destination object (--deep=both: the source too).",
        ),
    ] = False,
    deep_both: Annotated[bool, typer.Option("--deep-both", hidden=True)] = False,
    sample: Annotated[str | None, typer.Option(help="Re-read a seeded share, e.g. 5%.")] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of --sample (default: random; recorded either way)."),
    ] = None,
    metadata: Annotated[
        bool,
        typer.Option(
            "--metadata",
            help="HEAD every object to compare its metadata with the source's "
            "(an S3 source's read with a HEAD too).",
        ),
    ] = False,
    copy_again: Annotated[
        bool,
        typer.Option(
            "--copy-again",
            help="Mark to copy again even metadata found wrong again after a copy verify "
            "asked for (once the store that altered it is fixed).",
        ),
    ] = False,
    sites: SitesOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compare the destination with the ledger (and the source with --deep=both, its
    metadata with --metadata): missing, unexpected, size, checksum and metadata
    mismatches. Exit code 0 only when everything verifies; a passing verification opens
    the next phase's gate.

    Example: migrate verify plans/hdh.yaml --phase pilot --sample 5%
    """
    from migrate.verify import NON_FAILING, WRONG_CONTENT
    from migrate.verify import verify as do_verify

    # Options that would do nothing as given: refused, not taken without a word.
    if sample is not None and (deep or deep_both):
        raise UsageError(
            "--deep re-reads every object, --sample a share of them: give one",
            hint="e.g. --sample 5% for a seeded share, or --deep for all",
        )
    if seed is not None and sample is None:
        raise UsageError("--seed is the seed of --sample, which is not given", hint="add --sample")
    if seed is not None and not 0 <= seed < 2**63:  # the state keeps it as a 64-bit integer
        raise ConfigError(
            f"--seed {seed}: give a whole number from 0 to {2**63 - 1}", hint="e.g. --seed 2026"
        )
    share = _share(sample)  # the options first: no state is opened for a wrong one
    config = load_sites(sites)
    with open_session(plan, config, lambda: _catalog_of(config), lock="verify") as session:
        # The hosts a verification contacts with the sites' credentials are those the
        # approved plan names: a plan edited and digested again was verified against the
        # hosts it named (a review).
        check_approved(session.plan, session.ledger)
        result = do_verify(
            session.plan,
            session.ledger,
            session.deferred(session.plan.source),  # only --deep=both and --metadata read it
            session.destination,
            phase=phase,
            deep="both" if deep_both else deep,
            sample=share,
            seed=seed if seed is not None else _random_seed(),
            check_metadata=metadata,
            copy_again=copy_again,
        )
    shown = session.plan.command_path
    # An unfinished phase is the cause of every `not_done` line: said first, not buried.
    unfinished = result.unfinished
    if json_out:
        _out(True, {**result.summary(first=1000), "record_id": result.record_id})
    else:
        from rich.markup import escape

        state = "[green]passed[/]" if result.passed else "[red]FAILED[/]"
        _console().print(
            f"verify {escape(result.plan)} {escape(result.phase or 'all phases')} ({result.mode}"
            + (
                f", a {round(result.sample * 100, 3):g}% sample, seed {result.seed}"
                if result.sample is not None
                else ""
            )
            + f"): {state}; {result.objects:,} objects, {result.reread:,} re-read"
            + (
                f" ({result.source_reread:,} at the source too)"
                if result.mode == "deep-both"
                else ""
            )
            + (
                f", metadata compared for {result.metadata_compared:,} of {result.objects:,}"
                if result.metadata_asked
                else ""
            )
        )
        if result.metadata_asked and result.metadata_compared < result.objects:
            _console().print(
                f"  metadata of {result.objects - result.metadata_compared:,} object(s) not "
                "compared: changed at the source since their copy (a delta copies them), "
                "missing at the destination, or the source's could not be read (its "
                "credentials, or the object gone)",
                markup=False,
                soft_wrap=True,
            )
        if result.counts.get("not_done"):
            _console().print(
                f"  {result.counts['not_done']:,} object(s) not copied and proven yet: "
                + (f"phases {', '.join(unfinished)} are " if len(unfinished) > 1 else "")
                + (f"phase {unfinished[0]} is " if len(unfinished) == 1 else "")
                + f"unfinished (pending, failed, or left by a stopped run; `migrate status "
                f"{shown} --failed` says why each failed)",
                markup=False,
                soft_wrap=True,
            )
        for name in result.held_back:
            _console().print(
                f"  {name} not marked verified: the source holds datasets outside the plan "
                f"(`migrate run {session.plan.command_path} --phase {name}` names them; make a "
                "plan for them)",
                markup=False,
            )
        for f in result.findings[:50]:
            where = f"{f.bucket}/{f.key}" if f.bucket else f"source {f.source}"
            _console().print(printable(f"  {f.kind}: {where}: {f.detail}"), markup=False)
        if result.truncated or len(result.findings) > 50:
            _console().print(
                f"  ... {sum(result.counts.values()) - 50:,} more (--json lists the first 1,000)"
            )
    if not result.passed:
        kinds = ", ".join(
            f"{n:,} {kind}" for kind, n in sorted(result.counts.items()) if kind not in NON_FAILING
        )
        where = f"phase {result.phase}" if result.phase else "the whole plan"
        steps = []
        if unfinished:
            steps.append(
                "finish the phase first: "
                + " and ".join(f"`migrate run {shown} --phase {p}`" for p in unfinished[:3])
                # A failure a run again cannot mend (a key the store renames, a source gone)
                # fails again: its reason says what to mend first.
                + f" (objects that failed: mend what `migrate status {shown} --failed` names "
                "first)"
            )
        if result.to_copy_again:
            wrong = {f.phase for f in result.findings if f.kind in WRONG_CONTENT and f.phase}
            rewritten = any(
                f.kind in ("size_mismatch", "checksum_mismatch", "metadata_mismatch")
                for f in result.findings
            )
            phases = [p.name for p in session.plan.phases if p.name in wrong]  # plan order
            commands = []
            for name in phases[:3]:
                commands.append(f"`migrate run {shown} --phase {name}`")
                # A later one's gate needs this one verified again first.
                if any(name in session.plan.phase(q).requires for q in phases if q != name):
                    commands.append(f"`migrate verify {shown} --phase {name}`")
            steps.append(
                f"the {result.to_copy_again:,} object{'s' if result.to_copy_again > 1 else ''} "
                "found wrong will be copied again by "
                + ", then ".join(commands)
                + (
                    # What the run will not overwrite unasked: said before it refuses.
                    " (one rewritten there without this plan's migrate-sha256 is taken for "
                    "another writer's: a conflict until that run is given --overwrite)"
                    if rewritten
                    else ""
                )
                + (
                    f" ({result.gone_at_source:,} of them deleted at the source since cannot "
                    "be: the run leaves them at the destination, unproven; remove them by "
                    "hand if they are not wanted)"
                    if result.gone_at_source
                    else ""
                )
            )
        hint = (
            "; ".join(steps) + ", then verify again"
            if steps
            else "fix what the findings name (stdout, or --json), then verify again"
        )
        if result.unverified_phases:
            marks = f"not verified now: {', '.join(result.unverified_phases)}"
        else:  # an object this plan did not write, say: no copy of it found wrong
            marks = "no phase's verified mark removed (nothing it copied was found wrong)"
        raise IntegrityError(
            f"verification of {where} failed ({kinds or 'see the findings'}); {marks}",
            hint=hint,
        )


@app.command()
def report(
    plan: PlanArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory for the report files.")],
    sites: SitesOpt = None,
    require_verified: Annotated[
        bool,
        typer.Option(
            "--require-verified",
            help="Exit 12 (after writing the files) unless the report's status is verified.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write report.json, report.html (self-contained, opens offline), manifest.jsonl.gz,
    plan.yaml (the plan reported on) and SHA256SUMS (their SHA-256: record it with the
    hand-over; `sha256sum -c SHA256SUMS` then tells any later edit) from the ledger. No
    store is contacted.

    Example: migrate report plans/hdh.yaml -o reports/hdh/ --require-verified
    """
    from migrate.report import SUMS_FILE, build_report, write_report

    config, catalog = _load(sites)
    loaded = load_plan(plan)
    with Ledger.for_reading(config.state_dir) as ledger, ledger.snapshot():
        ledger.check_integrity()  # the auditor's record is not made from a damaged file
        _warn_if_state_unaware(loaded, ledger, config)
        built = build_report(loaded, ledger, catalog, date.today(), _version(), sites=config.sites)
        with _writing("the report", out):
            paths = write_report(built, out, plan=loaded, ledger=ledger)
    sums_file = out / SUMS_FILE
    sums = {
        name: digest
        for digest, _, name in (ln.partition("  ") for ln in sums_file.read_text().splitlines())
    }
    sums_digest = hashlib.sha256(sums_file.read_bytes()).hexdigest()
    refused: IntegrityError | None = None
    if require_verified and built.status != "verified":
        first = f": {built.open_items[0]}" if built.open_items else ""
        refused = IntegrityError(
            f"the report of plan {loaded.name} is {built.status}, not verified{first}",
            hint="its open items say what is left; the files were written all the same",
        )
    if json_out:
        _out(
            True,
            {
                # as `sites check` says it: the command's outcome (--require-verified)
                "ok": refused is None,
                "exit_code": 0 if refused is None else refused.exit_code,
                "error": None
                if refused is None
                else error_object(
                    refused.exit_code, kind_of(refused), refused.message, refused.hint
                ),
                "files": [str(p) for p in paths],
                "status": built.status,
                # what is left before the status is verified, as report.json says it
                "open_items": list(built.open_items),
                "phases_not_run": list(built.phases_not_run),
                "plan_root": built.manifest.plan_root,
                # the other files' hashes, then that of the file listing them: the one
                # to record with the hand-over
                "sha256": {**sums, SUMS_FILE: sums_digest},
            },
        )
    else:
        _console().print(
            f"report: {out / 'report.html'} ({built.status}"
            + (f"; not run yet: {', '.join(built.phases_not_run)}" if built.phases_not_run else "")
            + f"); manifest plan root {built.manifest.plan_root}; the files' SHA-256 in "
            f"{sums_file} (record it with the hand-over), SHA-256 of that file "
            f"{sums_digest}",
            markup=False,
        )
    if refused is not None:
        raise refused


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option(help="Where the demo keeps its servers' data and state.")
    ] = Path(".demo"),
    small: Annotated[int, typer.Option(help="Number of small files to seed.")] = 3000,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Keep the servers up after the flow, until Ctrl-C, to try the other "
            "commands on the demo's sites (it prints how).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run the whole flow on local servers: start SeaweedFS and Azurite on 127.0.0.1, seed a
    sample health-data estate in Azurite, then inventory, plan, approve, dry-run, run and
    verify each phase (pilot, bulk, delta, cutover), write the report, and print where it
    is. The servers stop at the end, unless --keep.

    Example: migrate demo --workdir /tmp/demo --keep
    """
    from migrate.demo import DemoResult, run_demo

    if small < 1:
        raise ConfigError(f"--small {small}: give at least 1 small file", hint="e.g. --small 200")

    def wait(result: DemoResult) -> None:
        if json_out:
            _out(True, render.demo_answer(result))
            # The document is the result; how to end the wait is said beside it, on stderr
            # (a script saw nothing, and the command waited: a review).
            _stderr().print(
                f"The servers stay up until Ctrl-C here (or `kill {os.getpid()}`); "
                f"their settings: . {result.env_file}",
                markup=False,
                soft_wrap=True,
            )
        else:
            _console().print(
                # SIGTERM, not -INT: a demo started in the background ignores SIGINT.
                f"The servers stay up until Ctrl-C here (or `kill {os.getpid()}`). In "
                "another terminal, from here:\n"
                f"  . {result.env_file}\n"
                f"  migrate status {result.plan} --routes\n"
                f"  migrate verify {result.plan} --deep=both\n"
                f"  migrate report {result.plan} -o {result.report}",
                markup=False,
            )
        _until_interrupted()
        if not json_out:  # the servers take a few seconds to stop
            _stderr().print("Stopping the servers ...", markup=False)

    result = run_demo(
        workdir,
        small_files=small,
        console=None if json_out else _console(),
        keep=wait if keep else None,
    )
    if json_out and not keep:
        _out(True, render.demo_answer(result))


def _until_interrupted() -> None:
    """Wait for Ctrl-C, the end `migrate demo --keep` is told to expect: no error."""
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit code (documented in the README). A failure is one line
    on stderr and, under --json, one JSON object on stdout (`errors.error_json`) unless
    the command printed its own JSON already (sites check, verify, run: their result
    says what failed)."""
    args = sys.argv[1:] if argv is None else argv
    # Typer options take no optional value: `--deep=both` becomes the hidden --deep-both.
    args = ["--deep-both" if a == "--deep=both" else a for a in args]
    debug = "--debug" in args
    _json_printed.clear()
    _stdout_closed.clear()
    install_reader_may_leave()  # called directly, not through migrate.main

    def fail_json(code: int, kind: str, message: str, hint: str | None = None) -> None:
        if wants_json(args) and not _json_printed:
            with contextlib.suppress(ConfigError):  # stdout unwritable: the line said it
                _print_out(error_json(code, kind, message, hint))

    try:
        if wrong := next((a for a in args if a.startswith("--deep=")), None):
            raise ConfigError(
                f"{wrong}: --deep takes no value but `both`", hint="--deep or --deep=both"
            )
        command = typer.main.get_command(app)  # built once: checked, then run
        if clash := _option_as_value(command, args):
            option, value = clash
            message = f"{option} needs a value, and was given the option {value}"
            hint = f'give {option} its value first, e.g. {option} "..." {value}'
            _stderr().print(f"migrate: error: {message} ({hint})", markup=False, soft_wrap=True)
            fail_json(2, USAGE, message, hint)
            return 2
        result = command(args=args, prog_name="migrate", standalone_mode=False)
        code = int(result) if isinstance(result, int) else 0
        if code == INTERRUPTED:  # typer turns Ctrl-C into this code, silently
            _stderr().print(INTERRUPTED_LINE, markup=False, soft_wrap=True)
            fail_json(INTERRUPTED, INTERRUPTED_KIND, INTERRUPTED_MESSAGE, INTERRUPTED_HINT)
        return _closed_stdout(code, fail_json)
    except MigrateError as raised:
        if debug:
            _stderr().print(redact(traceback.format_exc()), markup=False, soft_wrap=True)
        named = next((a for a in args if not a.startswith("-")), None)
        return _said(raised if named == "run" else as_store_failure(raised), fail_json)
    except typer.Exit as exc:  # the command said it (sites check: its table or JSON)
        return _closed_stdout(int(exc.exit_code), fail_json)
    except TyperException as exc:  # usage errors: one line too, and where to learn more
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as asked
            getattr(exc, "show")()  # noqa: B009 (typer types it without `show`)
            return int(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        where = f"see `{ctx.command_path} --help`" if ctx is not None else None
        message = " ".join(exc.format_message().split())
        if (
            next((a for a in args if not a.startswith("-")), None) == "verify"
            and any(a == "--deep" and b == "both" for a, b in itertools.pairwise(args))
            and "(both)" in message  # typer's "Got unexpected extra argument (both)"
        ):
            where = "write --deep=both, in one word, to re-read the source too"
        first = next((a for a in args if not a.startswith("-")), None)
        if (
            "No such option" in message
            and first in _command_names()
            and args.index(first) > 0
            and args[0] not in ("--help", "--version")
        ):
            # `migrate --debug run ...`: the option is the command's, written after it.
            where = f"options go after the command's name: migrate {first} ... {args[0]}"
        line = f"migrate: error: {message}" + (f" ({where})" if where else "")
        _stderr().print(line, markup=False, soft_wrap=True)
        fail_json(int(exc.exit_code), USAGE, message, where)
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _stderr().print(INTERRUPTED_LINE, markup=False, soft_wrap=True)
        fail_json(INTERRUPTED, INTERRUPTED_KIND, INTERRUPTED_MESSAGE, INTERRUPTED_HINT)
        return INTERRUPTED
    except _OutputUnwritable as exc:
        # The human output (rich) on a full disk: as `_print_out` says it for --json.
        try:
            if sys.stdout is not None:
                sys.stdout.flush()
        except OSError:
            drop_stdout()  # else Python fails again flushing it at exit
        return _said(
            ConfigError(
                f"the output could not be written ({exc.strerror or exc})",
                hint="free space where the output goes, then run the command again",
            ),
            fail_json,
        )
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if not name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return _unexpected(exc, debug, fail_json)
        # Damage a query reached mid-command (the file opened well): the file, not a bug.
        if debug:
            _stderr().print(redact(traceback.format_exc()), markup=False, soft_wrap=True)
        return _said(
            ConfigError(
                f"the state file (state.db in the sites file's state_dir) is damaged ({exc})",
                hint="restore it from a backup: what it records of the move cannot be trusted",
            ),
            fail_json,
        )
    except Exception as exc:  # a bug: still one line, unless --debug
        return _unexpected(exc, debug, fail_json)


def _closed_stdout(code: int, fail_json: Callable[[int, str, str, str | None], None]) -> int:
    """A command that succeeded while its output went nowhere (stdout closed): exit 3,
    saying so (print() drops it silently: exit 0, the output lost). A failure's own code
    stands: its line is on stderr."""
    if code != 0 or not _stdout_closed:
        return code
    return _said(
        ConfigError(
            "the output could not be written to standard output (it is closed)",
            hint="run the command with its output going somewhere (a file, a pipe)",
        ),
        fail_json,
    )


def _said(error: MigrateError, fail_json: Callable[[int, str, str, str | None], None]) -> int:
    """A failure's one line on stderr, its error object under --json, its exit code."""
    _stderr().print(f"migrate: error: {error.one_line()}", markup=False, soft_wrap=True)
    fail_json(error.exit_code, kind_of(error), error.message, error.hint)
    return error.exit_code


def _command_names() -> set[str]:
    """The top-level commands and groups (run, plan, sites...)."""
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return names | {g.name or "" for g in app.registered_groups}


def _unexpected(
    exc: Exception, debug: bool, fail_json: Callable[[int, str, str, str | None], None]
) -> int:
    """A bug: still one line, unless --debug."""
    if debug:
        _stderr().print(redact(traceback.format_exc()), markup=False, soft_wrap=True)
    message = f"{type(exc).__name__}: {redact(str(exc))}"
    hint = "run again with --debug and report it"
    _stderr().print(f"migrate: unexpected error: {message} ({hint})", markup=False, soft_wrap=True)
    fail_json(1, UNEXPECTED, message, hint)
    return 1
