"""The re-run receipt: `migrate run` for a copy phase that has finished answers again in a
few tens of milliseconds, before the CLI and its libraries (typer, pydantic, PyYAML) load.

When `migrate run` ends with its phase finished and nothing left to do, it stores in the
ledger the answer the same command would give again (its text and its JSON), under a
digest of what that answer is derived from: the phase's name, the plan file's bytes, the
sites file's bytes and the state directory it names, and the code that answers (migrate's
files, the interpreter, the libraries installed beside it). The answer is read from the
state in the same transaction that stores it, and a later change to the rows it is read
from deletes every receipt (triggers, migrate/ledger.py).

`answer` gives that stored answer when the command asks for the same phase with the same
inputs and the receipt is still there. Anything else goes to the CLI, which checks
everything again: a changed byte in either file, a change of state since, other code, a
plan or sites file that is not a regular file (a pipe is read once: by the CLI), an
option this module does not know or a value it is not sure of, `--debug`, or any error
here. So the receipt never says more than the full command said last, for the same inputs.
Delta and cutover never have one: they re-list their source each time.

Standard library only, and kept so: importing the rest of migrate would load what the
receipt is there to skip.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from migrate.bounds import MAX_CONCURRENCY, MAX_PART_SIZE_MIB
from migrate.locations import STATE_FILE, sites_path, state_dir_of

if TYPE_CHECKING:
    from migrate.plan import Plan

# The options of `migrate run` a receipt answers for: the phase and the sites file (both in
# the digest), and those a finished phase does not use, with a value the CLI is sure to
# accept (a test checks the CLI's side). Everything else (--dry-run, --bwlimit, --max-rps,
# --delete-removed, --debug, --help, ...) goes to the CLI.
_VALUE_OPTIONS = ("--phase", "--sites", "--reason", "--concurrency", "--part-size-mib")
_NUMBER_OPTIONS = ("--concurrency", "--part-size-mib")
# The CLI refuses more: so does the shortcut.
_MOST = {"--concurrency": MAX_CONCURRENCY, "--part-size-mib": MAX_PART_SIZE_MIB}
_FLAGS = ("--json", "--force")
_FORMAT = b"migrate re-run receipt 1\n"


class Inputs(NamedTuple):  # named tuples: `dataclasses` alone takes ~15 ms to import
    digest: str
    state_dir: Path


class _Request(NamedTuple):
    plan: Path
    phase: str
    sites: Path | None
    json: bool


def answer(args: list[str]) -> int | None:
    """Print the stored answer and return the exit code (0), or return None (printing
    nothing) for the CLI to answer."""
    try:
        request = _parse(args)
        if request is None:
            return None
        found = _lookup(request)
    except Exception:  # whatever it is, the CLI meets it again and reports it properly
        return None
    if found is None:
        return None
    text, json_text = found
    # Said as the CLI says it (exit 3, one line), the command not run again: a full run
    # met other errors first (the plan's lock held: exit 14; a store down: 6: a review).
    if sys.stdout is None:  # closed (`>&-`): print() would drop it
        return _unwritten("it is closed", "run the command with its output going somewhere")
    try:
        print(json_text if request.json else text, flush=True)
    except (OSError, UnicodeError) as exc:  # a reader gone is migrate.output's to drop
        why = getattr(exc, "strerror", None) or str(exc)
        return _unwritten(why, "free space where the output goes, then run the command again")
    return 0


def _unwritten(why: str, hint: str) -> int:
    print(
        f"migrate: error: the output could not be written to standard output ({why}) ({hint})",
        file=sys.stderr,
    )
    return 3


def inputs_of(plan: Path, phase: str, sites: Path | None) -> Inputs:
    """What a finished phase's answer is derived from, outside the ledger."""
    sites_file = sites_path(sites)
    sites_bytes = _file_bytes(sites_file)
    raw = tomllib.loads(sites_bytes.decode("utf-8"))
    state_dir = state_dir_of(raw, sites_file)
    # What the run's checks read besides: the user's catalog files (an endpoint moved by
    # one) and the proxy variables (an undeclared proxy is refused): a change to either is
    # a full run's to answer (a review: a receipt answered exit 0 where the run said 10).
    named = raw.get("catalog", [])
    if not isinstance(named, list) or not all(isinstance(p, str) for p in named):
        raise ValueError("catalog: not a list of paths")  # the CLI refuses it, exit 3
    catalogs = [_file_bytes((sites_file.parent / p).resolve()) for p in named]
    proxies = sorted(
        f"{name.lower()}={value.rpartition('@')[2]}"  # never a proxy's credentials
        for name, value in os.environ.items()
        if value and name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    )
    digest = hashlib.sha256(_FORMAT)
    for part in (
        phase.encode("utf-8"),
        _file_bytes(plan),
        sites_bytes,
        bytes(state_dir),
        *catalogs,
        "\n".join(proxies).encode("utf-8", "surrogateescape"),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    digest.update(_code())
    return Inputs(digest.hexdigest(), state_dir)


def _file_bytes(path: Path) -> bytes:
    # A pipe (`--sites <(...)`) yields its bytes once: to the CLI, not to a digest. (And
    # opening one would wait for its writer.)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"{path} is not a regular file")
    return path.read_bytes()


def remember(plan: Plan, phase: str, inputs: Inputs, recheck: Inputs | None) -> bool:
    """After `migrate run` answered: store the answer the same command gives again, if the
    phase is finished with nothing left to do. `recheck` is `inputs_of` computed again
    once the command's work is done: a file changed meanwhile stores nothing (the answer
    may have come from the bytes read before). Returns whether a receipt was stored."""
    if recheck != inputs:
        return False
    from migrate.locations import STATE_FILE

    if not (inputs.state_dir / STATE_FILE).is_file():
        return False  # a state removed meanwhile: no new empty one made for a receipt
    from migrate import render
    from migrate.errors import MigrateError
    from migrate.ledger import Ledger
    from migrate.plan import check_approved
    from migrate.summary import finished_already

    try:
        with Ledger(inputs.state_dir) as ledger:

            def finished() -> tuple[str, str] | None:
                # Everything the command checked, read again in the receipt's transaction.
                try:
                    check_approved(plan, ledger)
                except MigrateError:
                    return None
                summary = finished_already(plan, phase, ledger)
                if summary is None:
                    return None
                answer = render.run_answer(summary, None)  # as the CLI answers it
                return render.nothing_to_do_line(summary), render.to_json(answer)

            return ledger.record_receipt(inputs.digest, finished)
    except (sqlite3.Error, MigrateError):  # a busy or full state file, say: the command's
        return False  # answer stands without it


def _parse(args: list[str]) -> _Request | None:
    """`run PLAN --phase NAME` with the options above, as click reads them (`--opt value`
    or `--opt=value`, in any order); None for anything else."""
    if not args or args[0] != "run":
        return None
    values: dict[str, str] = {}
    flags: set[str] = set()
    positional: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in _FLAGS and not eq and name not in flags:
            flags.add(name)
            continue
        if name not in _VALUE_OPTIONS or name in values:
            return None
        if not eq:
            value = next(rest, "")
        if not value or value.startswith("-"):  # missing, empty (typer reads "" as "."), or
            return None  # a value like an option: the CLI answers those
        values[name] = value
    phase = values.get("--phase")
    if len(positional) != 1 or not phase:
        return None
    if any(not _count(values[n], _MOST.get(n)) for n in _NUMBER_OPTIONS if n in values):
        return None
    if ("--force" in flags) != ("--reason" in values):
        return None  # the CLI refuses it: --force needs --reason, and --reason --force
    sites = values.get("--sites")
    return _Request(Path(positional[0]), phase, Path(sites) if sites else None, "--json" in flags)


def _count(value: str, most: int | None = None) -> bool:
    return value.isascii() and value.isdigit() and 0 < int(value) <= (most or int(value))


def _lookup(request: _Request) -> tuple[str, str] | None:
    inputs = inputs_of(request.plan, request.phase, request.sites)
    db = inputs.state_dir / STATE_FILE
    if not db.is_file():
        return None
    # mode=rw: never create a state file; query_only: this lookup changes nothing.
    con = sqlite3.connect(f"{db.as_uri()}?mode=rw", uri=True)
    try:
        con.execute("PRAGMA query_only = ON")
        row = con.execute(
            "SELECT text, json FROM receipts WHERE inputs = ?", (inputs.digest,)
        ).fetchone()
    finally:
        con.close()
    return (str(row[0]), str(row[1])) if row else None


def _code() -> bytes:
    """The code that gives the answer: migrate's own files (an upgrade, an edit), the
    interpreter, and the libraries beside it (installing or removing a package changes
    its site-packages directory). A receipt holds only for the code that wrote it."""
    root = Path(__file__).resolve().parent.parent
    stamp = [sys.version, sys.prefix]
    for directory in sys.path:
        if directory.endswith("-packages"):
            try:
                stamp.append(f"{directory} {os.stat(directory).st_mtime_ns}")
            except OSError:
                continue
    for package in ("migrate", "providers"):
        try:
            entries = sorted(os.scandir(root / package), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith(".py"):
                info = entry.stat()
                stamp.append(f"{package}/{entry.name} {info.st_size} {info.st_mtime_ns}")
    return "\n".join(stamp).encode("utf-8", "surrogateescape")
