"""A finished copy phase run again is answered from its receipt, without loading the CLI,
and only while nothing it was derived from has changed: the plan, the sites file, the
state, the code. Anything else is answered by the full command."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import migrate.cli
from migrate import rerun
from migrate.ledger import Ledger
from migrate.main import main
from tests.helpers import finished_local_copy

HEAVY = ("typer", "click", "pydantic", "yaml", "rich", "migrate.cli", "migrate.ledger")


class Answers:
    """Calls to `migrate.main.main`, noting which ones reached the full CLI."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.capsys = capsys
        self.by_cli = False
        full = migrate.cli.main

        def cli(args: list[str] | None = None) -> int:
            self.by_cli = True
            return full(args)

        monkeypatch.setattr(migrate.cli, "main", cli)

    def __call__(self, args: list[str]) -> tuple[int, str, str, bool]:
        self.by_cli = False
        code = main(args)
        out, err = self.capsys.readouterr()
        return code, out, err, self.by_cli


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = migrate.cli.main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_a_finished_phase_run_again_answers_as_the_full_command_without_loading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    full_json = run_cli(["run", plan, "--phase", "bulk-1", "--json", *where], capsys)
    full_text = run_cli(["run", plan, "--phase", "bulk-1", *where], capsys)
    by_env = {**os.environ, "MIGRATE_SITES": where[1]}

    # The bench's and a shell history's shapes of the same command.
    for args, env, full in (
        (["run", plan, "--phase", "bulk-1", "--json", *where], None, full_json),
        (
            ["run", plan, "--phase=bulk-1", "--json", "--concurrency=8", "--part-size-mib",
             "16", "--force", "--reason=re-run", f"--sites={where[1]}"],
            None,
            full_json,
        ),
        (["run", *where, "--phase", "bulk-1", plan], None, full_text),
        (["run", plan, "--phase", "bulk-1"], by_env, full_text),
    ):  # fmt: skip
        code = (
            "import sys, json\n"
            "from migrate.main import main\n"
            f"code = main({args!r})\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
            "sys.exit(code)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stderr.splitlines()[-1]) == [], "the CLI was loaded"
        assert done.stdout == full
    summary = json.loads(full_json)
    # 29: the pilot phase holds the thirtieth object.
    assert summary["copied"] == 0 and summary["already_done"] == summary["objects"] == 29
    assert (
        full_text == "Phase bulk-1: nothing to do: all 29 objects were already copied and proven.\n"
    )


def test_a_change_of_state_since_sends_the_re_run_to_the_full_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    answers = Answers(monkeypatch, capsys)
    rerun_args = ["run", plan, "--phase", "bulk-1", "--json", "--force", "--reason=test", *where]
    code, _, err, by_cli = answers(rerun_args)
    assert code == 0 and not by_cli, err

    # Recorded as failed since, by whatever writes the state (another version of migrate,
    # a hand repair): it must be copied again.
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        db.execute("UPDATE transfers SET state = 'failed' WHERE key = 'f7.txt'")
    db.close()
    code, out, err, by_cli = answers(rerun_args)
    assert code == 0 and by_cli, err
    assert json.loads(out)["copied"] == 1

    # That run stored a new receipt; a command that writes to the state voids it.
    assert answers(rerun_args)[3] is False
    code, _, err, _ = answers(["verify", plan, "--phase", "bulk-1", *where])
    assert code == 0, err
    assert answers(rerun_args)[3] is True
    assert answers(rerun_args)[3] is False  # and the full command stored it again


def test_every_table_a_finished_answer_is_read_from_voids_the_receipts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The receipts' triggers cover what the full command reads to answer: a change to
    any of it, by whatever writes it, deletes the receipts."""
    plan, where = finished_local_copy(tmp_path, capsys)
    read: set[str] = set()

    def note(action: int, table: str | None, *_: object) -> int:
        if action == sqlite3.SQLITE_READ and table:
            read.add(table)
        return sqlite3.SQLITE_OK

    opened = Ledger.__init__

    def watched(self: Ledger, state_dir: Path) -> None:
        opened(self, state_dir)
        self._db.set_authorizer(note)  # every query of the command, on every connection

    monkeypatch.setattr(Ledger, "__init__", watched)
    code = migrate.cli.main(["run", plan, "--phase", "bulk-1", *where])
    assert code == 0, capsys.readouterr().err
    monkeypatch.undo()
    # Not the answer's: the schema, the receipts themselves, the routes the session records.
    answer = {t for t in read if not t.startswith("sqlite_")} - {
        "schema_migrations", "receipts", "routes"
    }  # fmt: skip
    assert answer == {"transfers", "phases", "approvals", "plan_routes"}  # what it knows of
    with Ledger(tmp_path / "state") as ledger:
        triggers = ledger._db.execute(
            "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall()
    voiding = {
        (table, event)
        for table, sql in triggers
        for event in ("INSERT", "UPDATE", "DELETE")
        if f"AFTER {event} ON {table}" in sql and "DELETE FROM receipts" in sql
    }
    assert voiding == {(t, e) for t in answer for e in ("INSERT", "UPDATE", "DELETE")}


@pytest.mark.parametrize(
    "change, exit_code",
    [
        ("an edited plan", 9),
        ("an edited sites file", 3),
        ("an empty --sites", 3),
        ("--force without --reason", 2),  # a usage error
        ("--reason without --force", 2),  # so is a reason for nothing
        ("other code", 0),
        ("--debug", 0),
        ("--dry-run", 0),
        ("--concurrency=257", 3),  # beyond the CLI's bound: refused there, so not answered
        ("--part-size-mib=5121", 3),
        # What the run's checks read besides the files (a review: the receipt said 0).
        ("a proxy variable set", 10),
        ("a user catalog file edited", 0),
    ],
)
def test_what_the_receipt_was_not_written_for_is_answered_by_the_full_command(
    change: str,
    exit_code: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    answers = Answers(monkeypatch, capsys)
    args = ["run", plan, "--phase", "bulk-1", *where]
    assert answers(args)[3] is False
    if change == "an edited plan":
        text = Path(plan).read_text(encoding="utf-8")
        Path(plan).write_text(text.replace("name: plan", "name: plan2"), encoding="utf-8")
    elif change == "an edited sites file":
        sites = Path(where[1])
        sites.write_text(sites.read_text().replace("[sites.dst]", "[sites.elsewhere]"))
    elif change == "an empty --sites":  # `--sites "$UNSET"`: typer reads it as `.`
        monkeypatch.setenv("MIGRATE_SITES", where[1])
        args[-1] = ""
    elif change == "--force without --reason":
        args.append("--force")
    elif change == "--reason without --force":
        args += ["--reason", "why"]
    elif change == "other code":
        monkeypatch.setattr("migrate.rerun._code", lambda: b"migrate 0.2")
    elif change == "a proxy variable set":
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    elif change == "a user catalog file edited":
        catalog = Path(where[1]).parent / "mine.yaml"
        catalog.write_text("name: scaleway\nnotes: [one]\n")
        sites = Path(where[1])
        sites.write_text('catalog = ["mine.yaml"]\n' + sites.read_text())
        assert answers(args)[3] is True  # a full run, whose receipt names the catalog file
        assert answers(args)[3] is False
        catalog.write_text("name: scaleway\nnotes: [two]\n")
    else:
        args.append(change)
    code, _, err, by_cli = answers(args)
    assert by_cli
    assert code == exit_code, err


@pytest.mark.parametrize(
    "args",
    [
        ["run", "p.yaml", "--phase", "bulk-1", "--concurrency", "abc"],
        ["run", "p.yaml", "--phase", "bulk-1", "--concurrency=0"],
        ["run", "p.yaml", "--phase", "bulk-1", "--phase", "pilot"],
        ["run", "p.yaml", "--phase", "bulk-1", "--json=1"],
        ["run", "p.yaml", "--phase", "bulk-1", "--json", "--json"],
        ["run", "p.yaml", "--phase", "bulk-1", "--no-force"],
        ["run", "p.yaml", "--phase", "bulk-1", "--force"],
        ["run", "p.yaml", "--phase", "bulk-1", "--reason", "-x"],
        ["run", "p.yaml", "--phase", "bulk-1", "--"],
        ["run", "p.yaml", "other.yaml", "--phase", "bulk-1"],
        ["run", "p.yaml", "--phase"],
        ["run", "p.yaml"],
        ["--debug", "run", "p.yaml", "--phase", "bulk-1"],
        ["status", "p.yaml"],
    ],
)
def test_a_command_the_receipt_is_not_sure_of_goes_to_the_cli(args: list[str]) -> None:
    assert rerun._parse(args) is None


def test_the_command_lines_a_receipt_answers() -> None:
    for args in (
        ["run", "p.yaml", "--phase", "bulk-1"],
        ["run", "--phase=bulk-1", "p.yaml", "--json", "--sites", "s.toml"],
        ["run", "p.yaml", "--phase", "bulk-1", "--force", "--reason", "why", "--concurrency=16"],
    ):
        assert rerun._parse(args) is not None, args


def test_a_file_changed_while_the_command_ran_stores_no_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    main(["verify", plan, "--phase", "bulk-1", *where])  # voids the copy's receipt
    capsys.readouterr()
    readings = iter(["as read", "changed"])  # the files' digest before the run, after it
    real = migrate.cli._receipt_inputs

    def changing(*args: object) -> rerun.Inputs | None:
        found = real(*args)  # type: ignore[arg-type]
        changed = next(readings) == "changed"
        return found._replace(digest="other bytes") if found and changed else found

    monkeypatch.setattr(migrate.cli, "_receipt_inputs", changing)
    assert migrate.cli.main(["run", plan, "--phase", "bulk-1", *where]) == 0
    monkeypatch.undo()
    answers = Answers(monkeypatch, capsys)
    assert answers(["run", plan, "--phase", "bulk-1", *where])[3] is True


def test_an_edit_to_migrate_or_an_installed_package_is_other_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "migrate").mkdir()
    (tmp_path / "migrate" / "rerun.py").write_text("# one version\n")
    packages = tmp_path / "site-packages"
    packages.mkdir()
    monkeypatch.setattr(rerun, "__file__", str(tmp_path / "migrate" / "rerun.py"))
    monkeypatch.setattr(sys, "path", [str(packages)])
    before = rerun._code()
    (tmp_path / "migrate" / "rerun.py").write_text("# another version\n")
    edited = rerun._code()
    (packages / "newlib").mkdir()
    os.utime(packages, ns=(0, 1))  # a different time, whatever the clock's resolution
    installed = rerun._code()
    assert len({before, edited, installed}) == 3


@pytest.mark.timeout(60)  # read twice, the pipe would keep the command waiting for bytes
def test_a_sites_file_given_as_a_pipe_is_read_once_by_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    # No receipt (verify voids the copy's): the command itself reads the pipe, so a digest
    # read before it would leave the command nothing to read.
    main(["verify", plan, "--phase", "bulk-1", *where])
    capsys.readouterr()
    pipe = tmp_path / "sites.pipe"
    os.mkfifo(pipe)
    content = Path(where[1]).read_text()

    def write() -> None:
        with open(pipe, "w") as f:
            f.write(content)

    threading.Thread(target=write, daemon=True).start()
    assert main(["run", plan, "--phase", "bulk-1", "--sites", str(pipe)]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_the_options_a_receipt_accepts_are_read_by_the_command_as_it_reads_them() -> None:
    """What `rerun` accepts, the CLI takes as given: no environment variable, callback,
    range or existence check of its own that the receipt would not know of."""
    import typer.main

    command = typer.main.get_command(migrate.cli.app)
    params = {opt: p for p in command.commands["run"].params for opt in p.opts}
    for name in (*rerun._FLAGS, *rerun._VALUE_OPTIONS):
        p = params[name]
        kind = p.type_descriptor.annotation
        assert (p.callback, p.envvar, p.min, p.max, p.multiple) == (None, None, None, None, False)
        assert not getattr(p.type_descriptor.parameter_info, "exists", False)
        if name in rerun._FLAGS:
            assert p.is_flag and kind is bool
        else:
            assert not p.is_flag and p.nargs == 1
            assert kind in ((int,) if name in rerun._NUMBER_OPTIONS else (str, Path))


def test_delta_and_cutover_are_never_answered_from_a_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    answers = Answers(monkeypatch, capsys)
    args = ["run", plan, "--phase", "delta", "--force", "--reason=test", *where]
    for _ in range(2):  # they re-list their source every time
        code, _, err, by_cli = answers(args)
        assert code == 0 and by_cli, err


def test_a_state_removed_while_the_command_ran_is_not_made_anew_for_a_receipt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state directory removed (or moved away) while `migrate run` answered: no
    receipt, and no new empty state file made to hold one."""
    import shutil

    from migrate.locations import STATE_FILE
    from migrate.plan import load_plan

    plan, where = finished_local_copy(tmp_path, capsys)
    inputs = rerun.inputs_of(Path(plan), "bulk-1", Path(where[where.index("--sites") + 1]))
    shutil.rmtree(inputs.state_dir)
    assert not rerun.remember(load_plan(Path(plan)), "bulk-1", inputs, inputs)
    assert not (inputs.state_dir / STATE_FILE).exists()
