"""What a user sees from the command line: help with examples, one-line errors with distinct
exit codes, and never a secret."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate import errors
from migrate.cli import app, main
from migrate.errors import EXIT_CODES, INTERRUPTED_LINE, PlanError
from migrate.ledger import Ledger
from migrate.localservers import SeaweedFS, free_port
from migrate.plan import Phase, PhaseKind, Selector, load_plan
from migrate.routing import endpoint_host
from migrate.sites import load_sites
from tests.helpers import finished_local_copy, two_local_sites, wait_for_rows

CANARY = "CANARY-secret-9f8e7d6c5b4a"
ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            if path:  # a group (plan, sites, providers) teaches too
                found.append(path)
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            found.append(path)

    walk(group, [])
    return found


@pytest.mark.parametrize("command", commands(), ids=lambda c: " ".join(c))
def test_every_command_teaches_its_use_with_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example: migrate " in out


def test_the_version_is_printed_for_bug_reports_and_audits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"migrate {version('migrate')}\n"


def test_the_readme_documents_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, flags=re.MULTILINE))
    assert {int(k): v for k, v in table.items()} == EXIT_CODES
    # and every --json kind of error and of inventory issue, which scripts match on
    from migrate.inventory import Flag

    said = " ".join(readme.split())
    for cls in _subclasses(errors.MigrateError)[1:]:
        kind = errors.kind_of(cls("x"))
        assert f"`{kind}` ({cls.exit_code})" in said, kind
    assert all(f"`{flag.name}`" in readme for flag in Flag)


def write_sites(tmp_path: Path, endpoint: str, bucket: str) -> Path:
    path = tmp_path / "sites.toml"
    path.write_text(
        f"""
[sites.dest]
provider = "self-hosted"
software = "seaweedfs"
country = "FR"
region = "local"
endpoint = "{endpoint}"
addressing = "path"
buckets = ["{bucket}"]
credentials = {{ access_key_env = "T_KEY", secret_key_env = "T_SECRET" }}
""",
        encoding="utf-8",
    )
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def local_move(tmp_path: Path, files: dict[str, bytes], *destinations: str) -> list[str]:
    """A local source site `s` (container `data`) holding `files` (paths under it) and an
    empty local site for each of `destinations` (default `d`): the `--sites` arguments."""
    for name, data in files.items():
        path = tmp_path / "src" / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    text = f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "src"}"\nbuckets = ["data"]\n'
    for name in destinations or ("d",):
        (tmp_path / name).mkdir()
        text += f'[sites.{name}]\nprovider = "local"\npath = "{tmp_path / name}"\n'
    (tmp_path / "sites.toml").write_text(text)
    return ["--sites", str(tmp_path / "sites.toml")]


def approved_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: list[str], to: str = "d"
) -> str:
    """Inventory of `s`, a plan without a pilot to `to` (plans `p.yaml`), approved."""
    plan = str(tmp_path / "p.yaml")
    assert run(["inventory", "s", *where], capsys)[0] == 0
    assert run(["plan", "--from", "s", "--to", to, "--policy", "eu-residency", "--no-pilot",
                "-o", plan, *where], capsys)[0] == 0  # fmt: skip
    assert run(["plan", "approve", plan, *where], capsys)[0] == 0
    return plan


def test_a_lost_copy_of_a_key_with_a_backslash_is_copied_again_where_the_store_keeps_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store that keeps `w\\in` as it is (a local directory, plain S3): its copy lost at
    the destination is marked and copied again as any other (a review: treating every
    backslash key as renamed left it missing for good)."""
    where = local_move(tmp_path, {"w\\in": b"backslash", "plain": b"plain"})
    plan = approved_plan(tmp_path, capsys, where)
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    for name in ("w\\in", "plain"):
        (tmp_path / "d" / "data" / name).unlink()
    code, out, err = run(["verify", plan, *where], capsys)
    assert code == 12 and out.count("missing") == 2, out
    code, out, err = run(["run", plan, "--phase", "bulk-1", "--json", *where], capsys)
    assert code == 0 and json.loads(out)["copied"] == 2, err
    assert (tmp_path / "d" / "data" / "w\\in").read_bytes() == b"backslash"
    assert run(["verify", plan, *where], capsys)[0] == 0


def test_a_decommission_phase_is_refused_by_its_run_and_its_dry_run_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its dry run said what it would copy, exit 0, and never that the run refuses it (a
    walkthrough): both refuse it, one line, exit 9; nothing is deleted at the source."""
    where = local_move(tmp_path, {"a.txt": b"a", "b.txt": b"b"})
    plan = str(tmp_path / "p.yaml")
    assert run(["inventory", "s", *where], capsys)[0] == 0
    assert run(["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "--no-pilot",
                "--decommission", "-o", plan, *where], capsys)[0] == 0  # fmt: skip
    assert run(["plan", "approve", plan, *where], capsys)[0] == 0
    for dry in ([], ["--dry-run"]):
        command = ["run", plan, "--phase", "decommission", "--force", "--reason", "t", *dry]
        code, out, err = run([*command, "--json", *where], capsys)
        assert code == 9 and "`migrate run` only copies" in err, (dry, out, err)
        assert "not implemented in this version" in err
        assert error_object(out)["exit_code"] == 9
        assert_one_line_without_secret(out, err)
    assert sorted(p.name for p in (tmp_path / "src" / "data").iterdir()) == ["a.txt", "b.txt"]
    code, out, _ = run(["status", plan, "--json", *where], capsys)  # no forced start recorded
    assert json.loads(out)["phases"]["decommission"]["started_at"] is None, out


def test_a_dataset_copied_already_cannot_be_left_out_of_the_plan_made_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Made again with --exclude on a dataset its runs copied, the plan was approved, and
    verify failed from then on, its copies neither verified nor reported (a walkthrough).
    The plan is refused (exit 9), nothing written."""
    where = local_move(tmp_path, {"a/1.txt": b"1", "b/2.txt": b"2"})
    plan = approved_plan(tmp_path, capsys, where)
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    before = Path(plan).read_bytes()
    again = ["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "--no-pilot",
             "-o", plan, "--exclude", "data/a/", "--json", *where]  # fmt: skip
    code, out, err = run(again, capsys)
    assert code == 9 and "--exclude data/a/: this plan's runs took it already" in err, err
    assert error_object(out)["exit_code"] == 9 and Path(plan).read_bytes() == before
    assert_one_line_without_secret(out, err)


def test_a_dataset_no_phase_took_yet_may_be_left_out_of_the_plan_made_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mapped, in a wave not run yet: no copy of it to lose track of (a review found it
    refused as one the runs took)."""
    import sqlite3

    where = local_move(tmp_path, {f"d{n}/x.bin": bytes(1000) for n in range(8)})
    plan = str(tmp_path / "p.yaml")
    make = ["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "--no-pilot",
            "--wave-cap-gib", f"{1000 / 1024**3:.12f}", "-o", plan, *where]  # fmt: skip
    for step in (["inventory", "s", *where], make, ["plan", "approve", plan, *where],
                 ["run", plan, "--phase", "bulk-1", *where]):  # fmt: skip
        assert run(step, capsys)[0] == 0, step
    with sqlite3.connect(tmp_path / ".migrate" / "state.db") as db:
        taken = {d for (d,) in db.execute("SELECT DISTINCT dataset FROM transfers")}
    db.close()
    untaken = sorted({f"data/d{n}/" for n in range(8)} - taken)
    assert untaken and taken, taken  # the keys' hashes put some in bulk-1, not all
    code, _, err = run([*make, "--exclude", untaken[0]], capsys)
    assert code == 0, err
    assert untaken[0] in load_plan(Path(plan)).excluded


@pytest.mark.parametrize("files", [["a/1.txt", "b/2.txt"], ["a/1.txt", "top.txt"]])
def test_a_dataset_gone_from_the_source_stays_in_the_plan_made_again_with_its_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: list[str]
) -> None:
    """Made again, the plan dropped a dataset gone from the source: its copies were found
    missing for good (a review); then, with the ledger's rows left out, found unexpected
    under a prefix still listed (`top.txt`: the container's root), or not checked at all
    while the report attested them (a review of that). The plan keeps it, with no object:
    its copies stay the plan's, verified (a lost one is found) and reported."""
    import shutil

    where = local_move(tmp_path, {name: name.encode() for name in files})
    plan = approved_plan(tmp_path, capsys, where)
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    shutil.rmtree(tmp_path / "src" / "data" / "a")  # the whole dataset, deleted there
    for step in (["inventory", "s"], ["plan", "--from", "s", "--to", "d", "--policy",
                 "eu-residency", "--no-pilot", "-o", plan], ["plan", "approve", plan]):  # fmt: skip
        assert run([*step, *where], capsys)[0] == 0, step
    assert "data/a/" in [m.dataset for m in load_plan(Path(plan)).mappings]
    code, out, err = run(["verify", plan, *where], capsys)
    assert code == 0 and "missing" not in out and "unexpected" not in out, (out, err)
    (tmp_path / "d" / "data" / "a" / "1.txt").unlink()  # its copy lost: found
    code, out, err = run(["verify", plan, *where], capsys)
    assert code == 12 and "missing: data/a/1.txt" in out, (out, err)


def test_the_cutover_waits_for_every_phase_that_copies_to_have_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its gate asked for the delta alone: a phase never run (a wave of a plan made again)
    left the report incomplete after a cutover that passed (a walkthrough). It names the
    phase and the command (exit 9); once run, the cutover goes."""
    plan, where = finished_local_copy(tmp_path, capsys)  # bulk-1 copied; the pilot never ran
    for step in (["verify", plan, "--phase", "bulk-1"], ["run", plan, "--phase", "delta"],
                 ["verify", plan, "--phase", "delta"]):  # fmt: skip
        assert run([*step, *where], capsys)[0] == 0, step
    code, out, err = run(["run", plan, "--phase", "cutover", "--json", *where], capsys)
    assert code == 9 and "phase cutover switches over, and pilot never ran" in err, err
    assert f"run `migrate run {plan} --phase pilot` first" in err, err
    assert_one_line_without_secret(out, err)
    assert run(["run", plan, "--phase", "pilot", *where], capsys)[0] == 0
    assert run(["run", plan, "--phase", "cutover", *where], capsys)[0] == 0


def test_a_plan_made_again_does_not_warn_of_its_own_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Made again after a run, the plan warned that its destination bucket already held
    objects (its own copies), asking the operator to confirm them; for another plan
    those objects are still a warning."""
    plan, where = finished_local_copy(tmp_path, capsys)
    again = ["plan", "--from", "src", "--to", "dst", "--policy", "eu-residency", *where]
    assert run([*again, "-o", plan], capsys)[0] == 0
    codes = [f.code for f in load_plan(Path(plan)).findings]
    assert "DESTINATION_BUCKET_IN_USE" not in codes, codes
    other = tmp_path / "other.yaml"  # another plan's name: those copies are not its own
    assert run([*again, "-o", str(other)], capsys)[0] == 0
    [used] = [f for f in load_plan(other).findings if f.code == "DESTINATION_BUCKET_IN_USE"]
    assert used.datasets == ("data",)


def test_a_plan_made_again_mid_move_keeps_its_waves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wave is a key hash modulo the number of waves: a plan made again over one whose
    runs began counted another number from the bytes now, and objects of waves not run
    fell to no wave and went to the delta (a walkthrough). It keeps the number, says so."""
    where = local_move(tmp_path, {f"f{n}.bin": bytes(1000) for n in range(3)})
    plan = str(tmp_path / "p.yaml")
    cap = f"{1000 / 1024**3:.12f}"  # 1,000 bytes a wave
    make = ["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "--no-pilot",
            "--wave-cap-gib", cap, "-o", plan, *where]  # fmt: skip
    assert run(["inventory", "s", *where], capsys)[0] == 0
    assert run(make, capsys)[0] == 0

    def waves(path: str) -> list[str]:
        return [p.name for p in load_plan(Path(path)).phases if p.kind.value == "bulk"]

    assert waves(plan) == ["bulk-1", "bulk-2", "bulk-3"]
    assert run(["plan", "approve", plan, *where], capsys)[0] == 0
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    for n in range(3, 6):
        (tmp_path / "src" / "data" / f"f{n}.bin").write_bytes(bytes(1000))
    assert run(["inventory", "s", *where], capsys)[0] == 0
    assert run(make, capsys)[0] == 0
    assert waves(plan) == ["bulk-1", "bulk-2", "bulk-3"]
    [kept] = [f for f in load_plan(Path(plan)).findings if f.code == "WAVES_KEPT"]
    assert "3 bulk waves kept from this plan's runs" in kept.message, kept.message
    assert "would make 6" in kept.message
    # A wave of another split is refused at its run (a plan not made by `migrate plan`).
    loaded = load_plan(Path(plan))
    six = loaded.model_copy(update={"phases": tuple(
        p.model_copy(update={"selector": p.selector.model_copy(update={"waves": 6})})
        if p.kind.value == "bulk" else p for p in loaded.phases)})  # fmt: skip
    with Ledger(tmp_path / ".migrate") as ledger, pytest.raises(PlanError, match="began with 3"):
        ledger.resolve_phase(six, "bulk-2")
    # The same name elsewhere (the file moved): the state says how its runs began.
    (tmp_path / "plans").mkdir()
    moved = str(tmp_path / "plans" / "p.yaml")
    assert run([*make[:-4], "-o", moved, *where], capsys)[0] == 0
    assert waves(moved) == ["bulk-1", "bulk-2", "bulk-3"]
    # Another file, no run of it: split afresh.
    other = str(tmp_path / "q.yaml")
    assert run([*make[:-4], "-o", other, *where], capsys)[0] == 0
    assert len(waves(other)) == 6


def test_a_key_holding_terminal_controls_is_shown_escaped_never_acting_on_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key holding ESC and a line-erasing sequence reached the terminal raw in verify's
    findings: the line read "FAKE: all good" over the finding; a newline split one finding
    over two lines (a walkthrough). Shown escaped; --json keeps the name as it is."""
    evil = "esc\x1b[2K\rFAKE: all good\nsecond.txt"
    where = local_move(tmp_path, {evil: b"evil", "plain.txt": b"plain"})
    plan = approved_plan(tmp_path, capsys, where)
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    (tmp_path / "d" / "data" / evil).unlink()  # the copy goes missing
    code, out, err = run(["verify", plan, *where], capsys)
    assert code == 12, err
    assert "\x1b" not in out + err and "\r" not in out + err, out
    (line,) = [x for x in out.splitlines() if "missing" in x and "FAKE" in x]
    assert "esc\\x1b[2K\\x0dFAKE: all good\\x0asecond.txt" in line, line
    code, out, _ = run(["verify", plan, "--json", *where], capsys)
    assert code == 12 and evil in [f["key"] for f in json.loads(out)["findings"]]
    # The source object apart, as status --failed names it: a script joins on them.
    (finding,) = json.loads(out)["findings"]
    assert (finding["source_container"], finding["source_key"]) == ("data", evil), finding
    # An error's one line naming such a key: one line, and no control acts either.
    said = errors.TransferError(f"data/{evil}: failed", hint="x").one_line()
    assert said == "data/esc\\x1b[2K FAKE: all good second.txt: failed (x)", said
    # A right-to-left override shows `report\u202efdp.exe` as `reportexe.pdf`: the marks
    # that reorder what follows are shown as what they are too.
    said = errors.TransferError("data/report\u202efdp.exe\u2066: failed").one_line()
    assert said == "data/report\\u202efdp.exe\\u2066: failed", said


def assert_one_line_without_secret(out: str, err: str) -> None:
    assert CANARY not in out and CANARY not in err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("migrate: error:")]
    assert len(lines) == 1, err


@pytest.fixture
def bucket(seaweed: SeaweedFS) -> str:
    import boto3

    name = f"cli-{int(time.time() * 1000) % 10**9}"
    boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint,
        region_name="us-east-1",
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
    ).create_bucket(Bucket=name)
    return name


def test_wrong_credentials_give_exit_5_and_never_show_the_secret(
    seaweed: SeaweedFS,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("T_KEY", seaweed.access_key)
    monkeypatch.setenv("T_SECRET", CANARY)
    sites = write_sites(tmp_path, seaweed.endpoint, bucket)
    code, out, err = run(["inventory", "dest", "--sites", str(sites)], capsys)
    assert code == 5, err
    assert_one_line_without_secret(out, err)
    code, out, err = run(["sites", "check", "--sites", str(sites), "--json"], capsys)
    assert code == 5 and CANARY not in out + err
    (site,) = json.loads(out)["sites"]
    (checked,) = site["containers"]
    # the kind of error --json's error objects give for it, from any command; the site's too
    assert (checked["exit_code"], checked["kind"]) == (5, "CredentialsRejected"), checked
    assert (site["exit_code"], site["kind"]) == (5, "CredentialsRejected"), site
    # A site whose containers failed has no set-up `error`: `ok` says it failed, at the
    # site and for the command (an automation walkthrough tested `.error != null`).
    assert site["error"] is None and site["ok"] is False
    assert (json.loads(out)["ok"], json.loads(out)["exit_code"]) == (False, 5)
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f


@pytest.mark.parametrize("flaw", ["\r", "\n", " "])
def test_a_credential_saved_with_a_carriage_return_is_named_before_any_request(
    seaweed: SeaweedFS,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flaw: str,
) -> None:
    """An env file saved with Windows line endings: the key sent in a header failed far
    away, as an unexpected ValueError (exit 1), a dropped connection (exit 11) or an
    unreachable endpoint (exit 6), by command (a walkthrough)."""
    monkeypatch.setenv("T_KEY", seaweed.access_key + flaw)
    monkeypatch.setenv("T_SECRET", CANARY)
    sites = write_sites(tmp_path, seaweed.endpoint, bucket)
    for command in (["inventory", "dest"], ["sites", "check"]):
        code, out, err = run([*command, "--sites", str(sites)], capsys)
        assert code == 3, err
        assert_one_line_without_secret(out, err)
        assert seaweed.access_key not in err
        assert "T_KEY (credentials.access_key_env)" in err, err
        said = {"\r": "a carriage return at its end", "\n": "a newline at its end"}
        assert said.get(flaw, "begins or ends with a space") in err, err
        assert ("Windows line endings" in err) == (flaw == "\r"), err


@pytest.mark.parametrize(
    ("endpoint", "said", "hint"),
    [
        ("127.0.0.1:8333", "is not an http(s) URL", 'endpoint = "https://127.0.0.1:8333"'),
        ("http//127.0.0.1:8333", "its scheme is mistyped", "write it as https://HOST or"),
        # read as a host named "https", its port missing: "has no valid port" (a review)
        ("https:/s3.example.eu", "its scheme is mistyped", "write it as https://HOST or"),
    ],
)
def test_an_endpoint_without_a_readable_scheme_says_how_to_write_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    endpoint: str,
    said: str,
    hint: str,
) -> None:
    """A scheme missing gets one in the hint; one mistyped got another in front of it,
    `https://http//127.0.0.1:8333` (a walkthrough)."""
    monkeypatch.setenv("T_KEY", "k")
    monkeypatch.setenv("T_SECRET", CANARY)
    sites = write_sites(tmp_path, endpoint, "b")
    code, _, err = run(["sites", "check", "--sites", str(sites)], capsys)
    assert code == 3 and said in err and hint in err, err
    assert "https://http" not in err and "no valid port" not in err


def test_an_unreachable_endpoint_gives_exit_6_within_30_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("T_KEY", "k")
    monkeypatch.setenv("T_SECRET", CANARY)
    sites = write_sites(tmp_path, f"http://127.0.0.1:{free_port()}", "nothing")
    start = time.monotonic()
    code, out, err = run(["inventory", "dest", "--sites", str(sites)], capsys)
    assert code == 6
    assert time.monotonic() - start < 30
    assert_one_line_without_secret(out, err)


def test_a_missing_bucket_gives_exit_7(
    seaweed: SeaweedFS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("T_KEY", seaweed.access_key)
    monkeypatch.setenv("T_SECRET", seaweed.secret_key)
    sites = write_sites(tmp_path, seaweed.endpoint, "no-such-bucket")
    code, out, err = run(["inventory", "dest", "--sites", str(sites)], capsys)
    assert code == 7
    # What is missing, where it was looked for, and what to check next.
    said = " ".join(err.split())
    assert f"bucket 'no-such-bucket' not found at {seaweed.endpoint}" in said, said
    assert "`migrate sites check dest` tries each bucket" in said, said
    assert_one_line_without_secret(out, err)


def test_a_malformed_file_gives_exit_3_and_a_secret_in_it_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[sites.x\n")
    code, out, err = run(["inventory", "x", "--sites", str(bad)], capsys)
    assert code == 3
    assert_one_line_without_secret(out, err)
    for written in (
        f'credentials = {{ secret_key = "{CANARY}" }}',
        # In the site itself, the README's own example of what not to do: a secret too,
        # not a key to spell again.
        f'secret_key = "{CANARY}"',
        f'password = "{CANARY}"',
    ):
        bad.write_text(f'[sites.x]\nprovider = "scaleway"\n{written}\n')
        code, out, err = run(["inventory", "x", "--sites", str(bad)], capsys)
        assert code == 4, (written, err)
        assert "holds a credential value" in err
        assert_one_line_without_secret(out, err)


@pytest.mark.parametrize("key", ["CANARYsecret9f8e7d6c5b4", "CANARYsecret9f8e7d6c5"])
def test_a_malformed_azure_account_key_gives_exit_3_without_showing_it(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key that is not base64 (a character lost in a copy and paste) is a configuration
    error, named as such before any request, not an unexpected one."""
    monkeypatch.setenv(
        "T_AZ",
        f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};"
        f"BlobEndpoint=http://127.0.0.1:{free_port()}/acct;",
    )
    sites = tmp_path / "sites.toml"
    sites.write_text(
        '[sites.az]\nprovider = "azure"\nregion = "francecentral"\naccount = "acct"\n'
        'buckets = ["cases"]\ncredentials = { connection_string_env = "T_AZ" }\n'
    )
    code, out, err = run(["inventory", "az", "--sites", str(sites)], capsys)
    assert code == 3, err
    assert "account key is not valid base64" in err
    assert_one_line_without_secret(out, err)
    assert "CANARY" not in out + err
    # Not a connection string at all: said, rather than asking to set what is set.
    monkeypatch.setenv("T_AZ", key)
    code, out, err = run(["inventory", "az", "--sites", str(sites)], capsys)
    assert code == 3 and "the connection string in $T_AZ holds no AccountKey=" in err, err
    assert "CANARY" not in out + err


@pytest.mark.parametrize("option", ["--concurrency=0", "--part-size-mib=-1", "--max-rps=0"])
def test_run_options_that_would_copy_nothing_or_limit_nothing_give_exit_3(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything is read: a finished phase would otherwise answer "nothing to
    do" and a real one fail with an unexpected error, or (--max-rps 0) run unlimited."""
    sites = tmp_path / "sites.toml"
    sites.write_text(f'[sites.s]\nprovider = "local"\npath = "{tmp_path}"\nbuckets = ["d"]\n')
    code, out, err = run(
        ["run", str(tmp_path / "plan.yaml"), "--phase", "pilot", option, "--sites", str(sites)],
        capsys,
    )
    assert code == 3, err
    name, value = option.split("=")
    assert f"{name} {value}: must be above 0" in err, err  # which of them, as given
    assert_one_line_without_secret(out, err)


def test_paths_that_cannot_be_written_give_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state directory, the plan and the report go where the user says; where nothing
    can be written (here: under a file), the error names the path, in one line."""
    (tmp_path / "src" / "data").mkdir(parents=True)
    (tmp_path / "src" / "data" / "one.csv").write_bytes(b"1,2,3\n")
    (tmp_path / "dst").mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    body = (
        f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "src"}"\nbuckets = ["data"]\n'
        f'[sites.d]\nprovider = "local"\npath = "{tmp_path / "dst"}"\n'
    )
    sites = tmp_path / "sites.toml"
    sites.write_text(f'state_dir = "{blocker / "state"}"\n' + body)
    code, out, err = run(["inventory", "s", "--sites", str(sites)], capsys)
    assert code == 3 and "state cannot be opened" in err, err
    assert_one_line_without_secret(out, err)

    sites.write_text(body)
    assert run(["inventory", "s", "--sites", str(sites)], capsys)[0] == 0
    plan_args = ["plan", "--from", "s", "--to", "d", "--policy", "eu-residency"]
    code, out, err = run([*plan_args, "-o", str(blocker / "p.yaml"), "--sites", str(sites)], capsys)
    assert code == 3 and "cannot write the plan" in err, err
    assert_one_line_without_secret(out, err)

    plan = tmp_path / "p.yaml"
    assert run([*plan_args, "-o", str(plan), "--sites", str(sites)], capsys)[0] == 0
    code, out, err = run(
        ["report", str(plan), "-o", str(blocker / "r"), "--sites", str(sites)], capsys
    )
    assert code == 3 and "cannot write the report" in err, err
    assert_one_line_without_secret(out, err)
    code, out, err = run(["demo", "--workdir", str(blocker), "--small", "5"], capsys)
    assert code == 3 and f"--workdir {blocker} is a file" in err, err
    assert_one_line_without_secret(out, err)


def _as_a_user(args: list[str]) -> list[str]:
    """`args` run without root's power to read and write anything (the test is skipped
    where that power cannot be dropped)."""
    import shutil

    if os.geteuid() != 0:
        return args
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv to drop the power to read anything")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *args]


def test_status_and_report_read_a_state_that_may_not_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy of the state handed over read-only (to an auditor, say): status and report
    read it as it is, and say the same as on the state itself."""
    import shutil
    import subprocess
    import sys

    plan, where = finished_local_copy(tmp_path, capsys)
    code, expected, _ = run(["status", plan, *where, "--json"], capsys)
    assert code == 0
    copy = tmp_path / "handed-over"
    shutil.copytree(tmp_path / "state", copy)
    sites = Path(where[1])
    ro_sites = tmp_path / "ro-sites.toml"
    ro_sites.write_text(sites.read_text().replace(str(tmp_path / "state"), str(copy)))
    handed = sorted(p.name for p in copy.iterdir())
    for f in copy.iterdir():
        f.chmod(0o444 if f.is_file() else 0o555)
    copy.chmod(0o555)
    migrate_bin = str(Path(sys.executable).parent / "migrate")
    try:
        status = subprocess.run(
            _as_a_user([migrate_bin, "status", plan, "--sites", str(ro_sites), "--json"]),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        got, want = json.loads(status.stdout), json.loads(expected)
        # Each names the state it read; the rest is the same.
        assert got.pop("state") == str(copy.resolve() / "state.db"), got
        assert want.pop("state") == str((tmp_path / "state").resolve() / "state.db"), want
        assert got == want
        report = subprocess.run(
            _as_a_user([migrate_bin, "report", plan, "--sites", str(ro_sites),
                        "-o", str(tmp_path / "r"), "--json"]),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr
        assert (tmp_path / "r" / "report.json").is_file()
        # plan show reads it as status does (it opened it for writing: "not known" beside
        # status's approved, in the same JSON: a review)
        shown = subprocess.run(
            _as_a_user([migrate_bin, "plan", "show", plan, "--sites", str(ro_sites), "--json"]),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        approval = json.loads(shown.stdout)["approval"]
        assert approval["approved"] is True and approval["detail"].startswith("approved by")
        assert sorted(p.name for p in copy.iterdir()) == handed, "nothing written there"
    finally:
        copy.chmod(0o755)


def test_a_local_directory_migrate_may_not_read_gives_exit_5_naming_it(tmp_path: Path) -> None:
    """As a store's AccessDenied: sites check and the inventory say which directory."""
    import subprocess
    import sys

    sites = local_sites(tmp_path, "")
    sites.write_text(sites.read_text() + 'buckets = ["data"]\n')
    data = tmp_path / "store" / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "one.csv").write_bytes(b"1\n")
    data.chmod(0)
    migrate_bin = str(Path(sys.executable).parent / "migrate")
    try:
        for args in (["inventory", "s"], ["sites", "check", "s"]):
            done = subprocess.run(
                _as_a_user([migrate_bin, *args, "--sites", str(sites), "--json"]),
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 5, (args, done.stderr)
            assert f"{data}: permission denied" in done.stdout + done.stderr, done
            assert "Traceback" not in done.stderr
    finally:
        data.chmod(0o755)


def test_inventory_and_sites_check_pass_the_routing_guard_before_any_plan(
    tmp_path: Path,
    seaweed: SeaweedFS,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before a plan exists, a command that reads a site (the inventory, the check, the
    plan's own reads) is held to the hosts a plan would allow for it, under the same rules:
    an undeclared proxy in the environment or a global endpoint is refused (exit 10)
    before any request, not tried."""
    monkeypatch.setenv("T_KEY", seaweed.access_key)
    monkeypatch.setenv("T_SECRET", seaweed.secret_key)
    sites = write_sites(tmp_path, seaweed.endpoint, bucket)
    (tmp_path / "copy").mkdir()
    sites.write_text(
        sites.read_text() + f'[sites.d]\nprovider = "local"\npath = "{tmp_path / "copy"}"\n'
    )
    assert run(["inventory", "dest", "--sites", str(sites)], capsys)[0] == 0
    # What it contacted is recorded for the report's route attestation.
    with Ledger(load_sites(sites).state_dir) as ledger:
        (listed,) = ledger.site_routes(["dest"])
    assert (listed.command, listed.route.host) == ("inventory", endpoint_host(seaweed.endpoint))
    assert listed.route.requests > 0
    # A command that fails after contacting the store records what it contacted too.
    gone = tmp_path / "gone.toml"
    gone.write_text(sites.read_text().replace(f'["{bucket}"]', '["no-such-bucket-here"]'))
    assert run(["inventory", "dest", "--sites", str(gone)], capsys)[0] != 0
    with Ledger(load_sites(gone).state_dir) as ledger:
        (again,) = ledger.site_routes(["dest"])
    assert again.route.requests > listed.route.requests

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    plan = ["plan", "--from", "dest", "--to", "d", "--policy", "eu-residency", "-o"]
    plan.append(str(tmp_path / "p.yaml"))
    for args in (["inventory", "dest"], ["sites", "check", "dest"], plan):
        code, out, err = run([*args, "--sites", str(sites)], capsys)
        assert code == 10, (args, out, err)
        assert "HTTP_PROXY" in out + err and "not declared" in out + err
    monkeypatch.delenv("HTTP_PROXY")

    global_site = tmp_path / "global.toml"
    global_site.write_text(
        '[sites.us]\nprovider = "aws"\nregion = "eu-west-3"\n'
        'endpoint = "https://s3.amazonaws.com"\nbuckets = ["data"]\n'
        'credentials = { access_key_env = "T_KEY", secret_key_env = "T_SECRET" }\n'
    )
    code, out, err = run(["inventory", "us", "--sites", str(global_site)], capsys)
    assert code == 10 and "global endpoint" in err, err
    assert_one_line_without_secret(out, err)

    # An Azure site whose account is only in its connection string: the sites file does
    # not say where the data is, so nothing can be allowed (a plan would block it too).
    monkeypatch.setenv(
        "T_CONN",
        "DefaultEndpointsProtocol=https;AccountName=hdh;EndpointSuffix=core.windows.net;"
        f"AccountKey={base64.b64encode(CANARY.encode()).decode()}",
    )
    hidden = tmp_path / "hidden.toml"
    hidden.write_text(
        '[sites.az]\nprovider = "azure"\nregion = "francecentral"\nbuckets = ["data"]\n'
        'credentials = { connection_string_env = "T_CONN" }\n'
    )
    code, out, err = run(["inventory", "az", "--sites", str(hidden)], capsys)
    assert code == 3 and "no endpoint" in err, err
    assert_one_line_without_secret(out, err)
    assert base64.b64encode(CANARY.encode()).decode() not in out + err

    # The account is declared, but its connection string points at another host (a
    # private endpoint, say): refused before any request, with the line to write.
    # (A realistic account name and endpoint: what says where is not hidden as a secret.)
    monkeypatch.setenv(
        "T_CONN",
        "DefaultEndpointsProtocol=https;AccountName=hdhstorage;EndpointSuffix=core.windows.net;"
        "BlobEndpoint=https://hdhstorage.privatelink.example.org;"
        f"AccountKey={base64.b64encode(CANARY.encode()).decode()}",
    )
    hidden.write_text(hidden.read_text().replace("buckets", 'account = "hdhstorage"\nbuckets'))
    for args in (["inventory", "az"], ["sites", "check", "az", "--json"]):
        code, out, err = run([*args, "--sites", str(hidden)], capsys)
        assert code == 3, (args, out, err)
        said = (out + err).replace('\\"', '"')  # `sites check` says it in its JSON
        assert "points at hdhstorage.privatelink.example.org, not at" in said, said
        assert "not at hdhstorage.blob.core.windows.net" in said, said
        assert 'endpoint = "https://hdhstorage.privatelink.example.org"' in said, said
        assert base64.b64encode(CANARY.encode()).decode() not in out + err
    # Declared, the site's endpoint was used and the connection string's host ignored,
    # silently (a newcomer walkthrough): refused too.
    hidden.write_text(
        hidden.read_text().replace(
            "buckets", 'endpoint = "https://hdhstorage.blob.core.windows.net"\nbuckets'
        )
    )
    code, out, err = run(["inventory", "az", "--sites", str(hidden)], capsys)
    assert code == 3, (out, err)
    assert "points at hdhstorage.privatelink.example.org, the site's endpoint at" in err, err
    assert_one_line_without_secret(out, err)
    # A BlobEndpoint that is no URL with a host: said so (an unclosed `[` was an
    # unexpected error, exit 1; an empty one read "points at , the site's endpoint").
    for blob_endpoint in (
        "http://[::1:54799/x",
        "http://",
        "127.0.0.1:54799",
        "https://hdhstorage.blob.core.windows.net:99999",
        "http://h:abc",
    ):
        monkeypatch.setenv(
            "T_CONN",
            f"AccountName=hdhstorage;BlobEndpoint={blob_endpoint};"
            f"AccountKey={base64.b64encode(CANARY.encode()).decode()}",
        )
        code, out, err = run(["inventory", "az", "--sites", str(hidden)], capsys)
        assert code == 3 and "BlobEndpoint is not a URL with a host" in err, (blob_endpoint, err)
        assert_one_line_without_secret(out, err)


def test_a_plan_made_with_no_pilot_warns_and_its_bulk_wave_runs_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src" / "data").mkdir(parents=True)
    for i in range(5):
        (tmp_path / "src" / "data" / f"{i}.csv").write_bytes(b"1,2,3\n" * (i + 1))
    (tmp_path / "dst").mkdir()
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "src"}"\nbuckets = ["data"]\n'
        f'[sites.d]\nprovider = "local"\npath = "{tmp_path / "dst"}"\n'
    )
    where = ["--sites", str(sites)]
    plan = str(tmp_path / "p.yaml")
    assert run(["inventory", "s", *where], capsys)[0] == 0
    code, out, err = run(
        ["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "--no-pilot",
         "-o", plan, *where], capsys,
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run(["plan", "show", plan, "--json", *where], capsys)
    assert "NO_PILOT" in [f["code"] for f in json.loads(out)["findings"]], err
    approval = json.loads(out)["approval"]
    assert approval["approved"] is False
    # Naming the state it read: another sites file's state says "not approved" too.
    assert approval["detail"].startswith("plan p is not approved in the state ")
    assert approval["detail"].endswith("state.db")
    code, out, err = run(["plan", "show", plan, *where], capsys)  # read before cutover
    assert "Checklist of phase cutover:" in out and "1. Announce the freeze" in out, out
    # A small estate's estimates at their scale: not "0.0 h".
    assert "< 1 min" in out and "0.0 h" not in out, out
    # bytes alone: a reviewer is told so, with what the objects average (a walkthrough's
    # 8,538 small objects were estimated at 4.6 s and took 51)
    assert "Durations are the bytes at --bandwidth (" in " ".join(out.split()), out
    code, out, err = run(["plan", "approve", plan, "--by", "dpo", "--json", *where], capsys)
    approved = json.loads(out)
    assert code == 0 and approved["approved_by"] == "dpo" and approved["approved_at"], err
    assert approved["recorded"] is True
    # `plan` is the plan's name, as run, verify and status name it; `file`, its path
    assert (approved["plan"], approved["file"]) == (load_plan(Path(plan)).name, plan)
    # Approved again by someone else: the first approval is the one kept, and said so.
    code, out, err = run(["plan", "approve", plan, "--by", "other", "--json", *where], capsys)
    assert code == 0 and json.loads(out) == {**approved, "recorded": False}, err
    code, out, err = run(["plan", "approve", plan, "--by", "other", *where], capsys)
    said = " ".join(out.split())
    assert "by dpo at " in said and "approved already" in said, said
    assert "this one is in the plan's approval history" in said, said
    code, out, err = run(["plan", "show", plan, *where], capsys)
    assert code == 0 and "Approval: approved by dpo at " in out, out
    # To a script, the approval status names: the same fields, the same why_not.
    shown = json.loads(run(["plan", "show", plan, "--json", *where], capsys)[1])["approval"]
    status = json.loads(run(["status", plan, "--json", *where], capsys)[1])["approval"]
    assert shown.pop("detail").startswith("approved by dpo at ") and shown == status, shown
    # Read away from its sites file (none here): the plan alone; to a script, an approval
    # not known (the same shape every time).
    monkeypatch.chdir(tmp_path / "dst")
    monkeypatch.delenv("MIGRATE_SITES", raising=False)
    code, out, err = run(["plan", "show", plan], capsys)
    assert code == 0 and "Approval" not in out, out
    code, out, err = run(["plan", "show", plan, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["approval"] == {
        "approved": None,
        "detail": "not known: no sites file (--sites, MIGRATE_SITES)",
        "why_not": "not known: no sites file (--sites, MIGRATE_SITES)",  # as status names it
    }
    # A sites file that cannot be read: the plan is still shown, its approval unknown.
    broken = tmp_path / "broken.toml"
    broken.write_text("[sites.s\n")
    code, out, err = run(["plan", "show", plan, "--sites", str(broken), "--json"], capsys)
    assert code == 0, err
    approval = json.loads(out)["approval"]
    assert approval["approved"] is None and approval["detail"].startswith("not known: "), out
    # But a secret written in it is refused, as by every command that reads the file.
    broken.write_text('[sites.s]\nprovider = "scaleway"\ncredentials = { secret_key = "x" }\n')
    code, out, err = run(["plan", "show", plan, "--sites", str(broken)], capsys)
    assert code == 4, err
    code, out, err = run(["run", plan, "--phase", "pilot", *where], capsys)
    assert code != 0 and "no phase 'pilot'" in err and "bulk-1" in err, err
    assert_one_line_without_secret(out, err)
    code, out, err = run(["run", plan, "--phase", "bulk-1", "--json", *where], capsys)
    assert code == 0, err
    assert json.loads(out)["copied"] == 5


def test_a_file_name_that_is_not_utf8_is_listed_and_blocks_the_plan_with_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local file whose name is not UTF-8 cannot be copied to S3 or Azure under that
    name: the inventory lists it with the others (it crashed, storing the name), the state
    keeps the name exactly, and the plan has a blocking finding showing it escaped, so it
    cannot be approved."""
    data = tmp_path / "src" / "c1" / "data"
    data.mkdir(parents=True)
    for name in ("ok.txt", "zz.txt", "\U0001f600.txt"):
        (data / name).write_bytes(b"fine")
    with open(os.fsencode(data) + b"/bad\xff\xfename.txt", "wb") as f:
        f.write(b"bad")
    (tmp_path / "src" / "c1" / "top.csv").write_bytes(b"1,2\n")
    (tmp_path / "dst").mkdir()
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "src"}"\nbuckets = ["c1"]\n'
        f'[sites.d]\nprovider = "local"\npath = "{tmp_path / "dst"}"\n'
    )
    where = ["--sites", str(sites)]
    code, out, err = run(["inventory", "s", "--json", *where], capsys)
    assert code == 0, err
    datasets = {d["dataset"]: d for d in json.loads(out)["datasets"]}
    assert {d: v["objects"] for d, v in datasets.items()} == {"c1/": 1, "c1/data/": 4}
    assert datasets["c1/data/"]["issues"]["KEY_NOT_UTF8"] == 1  # a code, stable for scripts
    code, out, err = run(["inventory", "s", *where], capsys)
    said = " ".join(out.replace("│", " ").split())  # the table folds its cells
    assert code == 0 and "name not valid UTF-8" in said, out  # in words for a person
    from migrate.inventory import source_key  # the state's key back as the source names it

    with Ledger(tmp_path / ".migrate") as ledger:
        stored = {source_key(r.key, r.flags): r.key for r in ledger.inventory_objects("s")}
    bad = "data/bad\udcff\udcfename.txt"  # as the local adapter lists it (surrogateescape)
    assert stored[bad] == "data/bad\\xff\\xfename.txt"

    plan = str(tmp_path / "p.yaml")
    code, out, err = run(
        ["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "-o", plan, *where],
        capsys,
    )
    assert code == 0, err
    # Its last line does not invite an approval that would be refused (a newcomer's review).
    said = " ".join(out.split())
    assert "It cannot be approved: 1 blocking finding (KEY_NOT_UTF8)" in said, said
    assert "migrate plan approve" not in said
    code, out, err = run(["plan", "show", plan, "--json", *where], capsys)
    assert code == 0, err
    finding = next(f for f in json.loads(out)["findings"] if f["code"] == "KEY_NOT_UTF8")
    assert finding["severity"] == "blocking" and finding["objects"] == 1
    assert finding["datasets"] == ["c1/data/"]
    assert finding["examples"] == ["c1/data/bad\\xff\\xfename.txt"]
    assert "rename them at the source" in finding["action"]
    code, out, err = run(["plan", "show", plan, *where], capsys)
    assert code == 0 and "KEY_NOT_UTF8" in out, err  # its code, which --json names too
    code, out, err = run(["plan", "approve", plan, "--by", "dpo", *where], capsys)
    assert code == 9 and "KEY_NOT_UTF8" in err, err
    assert_one_line_without_secret(out, err)


def test_an_inventory_prefix_that_matches_nothing_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--prefix data/sub/` (the dataset's name, container included) listed nothing, exit
    0, "0 added": read as nothing new (a walkthrough). Said, with how a prefix is read."""
    where = local_move(tmp_path, {"sub/a.csv": b"a\n", "sub/b.csv": b"b\n"})
    code, out, err = run(["inventory", "s", "--prefix", "data/sub/", "--json", *where], capsys)
    assert code == 0 and json.loads(out)["listed"] == 0, err
    assert "no object under --prefix 'data/sub/' in any container of site s (data)" in err, err
    assert "without the container's name" in err
    code, out, err = run(["inventory", "s", "--prefix", "sub/", "--json", *where], capsys)
    assert code == 0 and json.loads(out)["listed"] == 2 and "no object" not in err, err


def test_a_plan_from_a_site_listing_no_bucket_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--from a destination's site (no bucket listed) said "run `migrate inventory d`
    first", which then refused it (a walkthrough)."""
    where = local_move(tmp_path, {"a.csv": b"a\n"})
    code, out, err = run(["plan", "--from", "d", "--to", "s", "--policy", "eu-residency",
                          "-o", str(tmp_path / "p.yaml"), *where], capsys)  # fmt: skip
    assert code == 3, err
    assert "sites.d: no buckets/containers listed" in err and "--from and --to" in err, err
    assert_one_line_without_secret(out, err)


def test_a_site_whose_endpoint_the_catalog_places_elsewhere_is_never_contacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-hosted destination pointed at an AWS US host: the plan read it (replication,
    buckets in use) before judging it, and failed on its DNS, no finding written; `sites
    check` and `inventory` contacted it too (a walkthrough). Nothing is sent: the plan is
    written, blocked, saying why; the others refuse, exit 10."""
    monkeypatch.setenv("T_KEY", "AKIDEXAMPLE")
    monkeypatch.setenv("T_SECRET", "not-a-real-secret")
    where = local_move(tmp_path, {"a.csv": b"a\n"})
    sites = Path(where[1])
    sites.write_text(
        sites.read_text() + '[sites.us]\nprovider = "self-hosted"\nsoftware = "ceph-rgw"\n'
        'endpoint = "https://s3.us-east-2.amazonaws.com"\nbuckets = ["b"]\ncountry = "FR"\n'
        'credentials = { access_key_env = "T_KEY", secret_key_env = "T_SECRET" }\n'
    )
    assert run(["inventory", "s", *where], capsys)[0] == 0
    plan = str(tmp_path / "p.yaml")
    code, out, err = run(["plan", "--from", "s", "--to", "us", "--policy", "eu-residency",
                          "-o", plan, *where], capsys)  # fmt: skip
    assert Path(plan).exists(), (code, err)
    codes = {f.code: f for f in load_plan(Path(plan)).findings}
    assert codes["DESTINATION_ENDPOINT_ELSEWHERE"].severity.value == "blocking"
    for args in (["sites", "check", "us"], ["inventory", "us"]):
        code, out, err = run([*args, *where], capsys)
        assert code == 10 and "nothing sent" in out + err, (args, out, err)
    with Ledger(tmp_path / ".migrate") as ledger:
        assert not [r for r in ledger.site_routes(["us"])], "a request was sent"


def test_a_plan_file_not_made_by_migrate_plan_is_not_approved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan's blocking findings cut out and its digest computed again (it is no seal):
    approved and run (a walkthrough). Approval takes only a digest `migrate plan` made."""
    from migrate.plan import save_plan, with_digest

    where = local_move(tmp_path, {"a.csv": b"a\n"})
    plan = str(tmp_path / "p.yaml")
    assert run(["inventory", "s", *where], capsys)[0] == 0
    make = ["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "-o", plan, *where]
    assert run(make, capsys)[0] == 0
    made = load_plan(Path(plan))
    save_plan(with_digest(made.model_copy(update={"findings": ()})), Path(plan))
    code, out, err = run(["plan", "approve", plan, *where], capsys)
    assert code == 9 and "was not made by `migrate plan` with this state" in err, err
    assert_one_line_without_secret(out, err)
    assert run(make, capsys)[0] == 0  # made again: the same file, approved
    assert run(["plan", "approve", plan, *where], capsys)[0] == 0
    # A state upgraded to record what `plan` makes holds none of it: an approved digest
    # was made (a review: approving it again was refused).
    with sqlite3.connect(tmp_path / ".migrate" / "state.db") as db:
        db.execute("DELETE FROM plans_made")
    assert run(["plan", "approve", plan, *where], capsys)[0] == 0
    # A plan with blocking findings says so first, exit 9 (a review: the policy's exit 8
    # came first, "made under other facts").
    blocked = str(tmp_path / "b.yaml")
    strict = ["plan", "--from", "s", "--to", "d", "--policy", "fr-health", "-o", blocked]
    assert run([*strict, *where], capsys)[0] == 0
    code, out, err = run(["plan", "approve", blocked, *where], capsys)
    assert code == 9 and "cannot be approved" in err, err


def test_only_the_latest_approval_of_a_plan_is_taken(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """v1 approved, v2 made (a dataset left out) and approved, v1's file copied back: it
    ran, the dataset v2 left out with it (a walkthrough)."""
    where = local_move(tmp_path, {"keep/a.csv": b"a\n", "drop/b.csv": b"b\n"})
    plan = str(tmp_path / "p.yaml")
    make = ["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "-o", plan, *where]
    assert run(["inventory", "s", *where], capsys)[0] == 0
    assert run(make, capsys)[0] == 0
    assert run(["plan", "approve", plan, "--by", "dpo", *where], capsys)[0] == 0
    first = Path(plan).read_bytes()
    code, _, err = run([*make, "--exclude", "data/drop/"], capsys)
    assert code == 0 and "holds a new version of plan p, not the one approved (by dpo" in err
    assert run(["plan", "approve", plan, "--by", "ciso", *where], capsys)[0] == 0
    Path(plan).write_bytes(first)
    code, out, err = run(["run", plan, "--phase", "pilot", "--dry-run", *where], capsys)
    assert code == 9 and "superseded by a later version's (approved by ciso" in err, err
    assert_one_line_without_secret(out, err)
    # Approved again after review: the latest, taken.
    assert run(["plan", "approve", plan, "--by", "dpo2", *where], capsys)[0] == 0
    assert run(["run", plan, "--phase", "pilot", "--dry-run", *where], capsys)[0] == 0
    # A second approver of the standing approval: it stands, the call is on the record.
    assert run(["plan", "approve", plan, "--by", "ciso", *where], capsys)[0] == 0
    # The report keeps every approval as it was made: dpo's first one of v1 too, which
    # approving v1 again replaced among the standing approvals (an auditor's history).
    assert main(["report", plan, "-o", str(tmp_path / "rep"), *where]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    history = [
        (e["approved_by"], e["current"], e["took_effect"]) for e in report["approval_history"]
    ]
    assert history == [
        ("dpo", True, True), ("ciso", False, True), ("dpo2", True, True), ("ciso", True, False)
    ]  # fmt: skip
    assert [(a["approved_by"], a["current"]) for a in report["approvals"]] == [
        ("dpo2", True), ("ciso", False)
    ]  # fmt: skip
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "approval history" in page and "by dpo at " in page
    # ciso's approval is of v2, a later version than the one reported on: not "earlier"
    assert "earlier digest" not in page and "another version of the plan" in page


def test_a_name_not_utf8_that_appears_after_the_plan_stops_the_delta_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan's finding cannot block what was not there yet: the phase that would take it
    refuses, saying why (not a 'not found' from reading its escaped name)."""
    files = {f"sub/{i}.csv": b"1,2,3\n" * (i + 1) for i in range(3)}
    where = local_move(tmp_path, {**files, "other/a.csv": b"a\n"})
    data = tmp_path / "src" / "data" / "sub"
    plan = approved_plan(tmp_path, capsys, where)
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    assert run(["verify", plan, *where], capsys)[0] == 0
    with open(os.fsencode(data) + b"/caf\xe9.csv", "wb") as f:
        f.write(b"x,y\n")
    (tmp_path / "src" / "data" / "other" / "b.csv").write_bytes(b"b\n")
    # A phase that does not take it is not held up by it: here, one of the other dataset.
    assert run(["inventory", "s", *where], capsys)[0] == 0
    base = load_plan(Path(plan))
    others = base.model_copy(update={"phases": (*base.phases, Phase(
        name="others", kind=PhaseKind.DELTA, selector=Selector(
            datasets=("data/other/",), changed_since_copy=True)))})  # fmt: skip
    with Ledger(tmp_path / ".migrate") as ledger:
        assert ledger.resolve_phase(others, "others") == 1
    code, out, err = run(["run", plan, "--phase", "delta", *where], capsys)
    assert code == 9, err
    assert_one_line_without_secret(out, err)
    assert "1 object at s named in bytes that are not UTF-8 (e.g. data/sub/caf\\xe9.csv)" in err
    assert "rename them at the source" in err
    # Renamed: the delta re-lists and copies it.
    os.rename(os.fsencode(data) + b"/caf\xe9.csv", data / "cafe.csv")
    code, out, err = run(["run", plan, "--phase", "delta", "--json", *where], capsys)
    assert code == 0 and json.loads(out)["copied"] == 1, err  # b.csv is others'
    assert (tmp_path / "d" / "data" / "sub" / "cafe.csv").read_bytes() == b"x,y\n"


def test_a_plan_another_process_runs_or_verifies_is_refused_until_it_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from migrate.planlock import plan_lock

    where = local_move(tmp_path, {f"{i}.csv": b"1,2,3\n" * (i + 1) for i in range(3)})
    plan = approved_plan(tmp_path, capsys, where)

    # Another process (an open file of its own: flock does not tell them apart) copies.
    with plan_lock(tmp_path / ".migrate", "p", "run --phase bulk-1"):
        for args in (["run", plan, "--phase", "bulk-1"], ["verify", plan]):
            code, out, err = run([*args, *where], capsys)
            assert code == 14, err
            assert_one_line_without_secret(out, err)
            assert "plan p is in use by another process (pid " in err, err
            assert ": run --phase bulk-1, since " in err, err
        code, out, _ = run(["run", plan, "--phase", "bulk-1", "--json", *where], capsys)
        assert json.loads(out)["error"]["exit_code"] == 14
        # Reading and trying are not refused.
        assert run(["status", plan, *where], capsys)[0] == 0
        assert run(["run", plan, "--phase", "bulk-1", "--dry-run", *where], capsys)[0] == 0
        assert not any((tmp_path / "d").iterdir())
    # It ended (a crash would end it as well: the kernel drops the lock).
    code, out, err = run(["run", plan, "--phase", "bulk-1", "--json", *where], capsys)
    assert code == 0 and json.loads(out)["copied"] == 3, err
    assert run(["verify", plan, *where], capsys)[0] == 0


def test_a_plan_made_again_under_its_name_with_another_destination_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan is named by its file: made again into the same file with another destination,
    it would take the first one's progress (done, verified) for its own. `plan` refuses to
    write it; a copy over the file is refused by every command."""
    files = {f"{i}.csv": b"1,2,3\n" * (i + 1) for i in range(3)}
    where = local_move(tmp_path, files, "d1", "d2")
    plan = approved_plan(tmp_path, capsys, where, to="d1")

    def make(to: str, out: str = plan) -> int:
        return run(["plan", "--from", "s", "--to", to, "--policy", "eu-residency",
                    "--no-pilot", "-o", out, *where], capsys)[0]  # fmt: skip

    # Another plan of that name, made before the first one's progress (or by hand):
    (tmp_path / "elsewhere").mkdir()
    assert make("d2", str(tmp_path / "elsewhere" / Path(plan).name)) == 0
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    assert run(["verify", plan, *where], capsys)[0] == 0
    approved = Path(plan).read_bytes()
    # `plan -o` over it now: refused, unwritten (the approved, run file was replaced and
    # every run refused: a walkthrough)
    assert make("d2") == 9
    assert Path(plan).read_bytes() == approved
    shutil.copy(tmp_path / "elsewhere" / Path(plan).name, plan)  # copied over it
    for args in (
        ["plan", "approve", plan],
        ["run", plan, "--phase", "bulk-1"],
        # Read-only, yet they would report, or verify (and mark to copy again against d2),
        # the first plan's transfers as this one's.
        ["verify", plan],
        ["status", plan],
        ["report", plan, "-o", str(tmp_path / "report")],
    ):
        code, out, err = run([*args, *where], capsys)
        assert code == 9, err
        assert_one_line_without_secret(out, err)
        assert "already holds the progress of another plan of that name" in err, err
        assert "d1:data/ (this one: s:data/ -> d2:data/)" in err, err
    assert not any((tmp_path / "d2").iterdir()) and not (tmp_path / "report").exists()
    # Made again with the same destination (after a new inventory, say): the same move, its
    # progress untouched by the refused commands.
    assert make("d1") == 0
    assert run(["plan", "approve", plan, *where], capsys)[0] == 0
    code, out, err = run(["run", plan, "--phase", "bulk-1", "--json", *where], capsys)
    assert code == 0 and json.loads(out)["copied"] == 0, err
    # No copy ran: no limit to tell of (0 read as throttled to nothing: a walkthrough).
    assert json.loads(out)["lowest_requests_in_flight"] is None
    assert run(["verify", plan, *where], capsys)[0] == 0


def approved_seaweed_to_local(
    tmp_path: Path,
    seaweed: SeaweedFS,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[str, Path]:
    """One object in `bucket` of SeaweedFS (site `dest`), a local site `d`, and the plan
    from one to the other, approved (no pilot): the plan file and the sites file."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint,
        region_name="us-east-1",
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
    ).put_object(Bucket=bucket, Key="data/a.csv", Body=b"id\n1\n")
    monkeypatch.setenv("T_KEY", seaweed.access_key)
    monkeypatch.setenv("T_SECRET", seaweed.secret_key)
    sites = write_sites(tmp_path, seaweed.endpoint, bucket)
    (tmp_path / "copy").mkdir()
    sites.write_text(
        sites.read_text() + f'[sites.d]\nprovider = "local"\npath = "{tmp_path / "copy"}"\n'
    )
    where = ["--sites", str(sites)]
    plan = str(tmp_path / "p.yaml")
    for args in (
        ["inventory", "dest"],
        ["plan", "--from", "dest", "--to", "d", "--policy", "eu-residency", "--no-pilot",
         "-o", plan],
        ["plan", "approve", plan],
    ):  # fmt: skip
        assert run([*args, *where], capsys)[0] == 0
    return plan, sites


def test_a_plain_verify_needs_the_destinations_credentials_only(
    tmp_path: Path,
    seaweed: SeaweedFS,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A plain verification never contacts the source, yet asked for its credentials (exit
    3 without them: a walkthrough): an auditor given the destination's alone could not
    verify. Re-reading the source asks for them."""
    plan, sites = approved_seaweed_to_local(tmp_path, seaweed, bucket, monkeypatch, capsys)
    where = ["--sites", str(sites)]
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    monkeypatch.delenv("T_KEY")
    monkeypatch.delenv("T_SECRET")
    code, out, err = run(["verify", plan, *where], capsys)
    assert code == 0, (out, err)
    code, out, err = run(["verify", plan, "--deep=both", *where], capsys)
    assert code == 3 and "T_KEY" in err, (out, err)
    assert_one_line_without_secret(out, err)
    monkeypatch.setenv("T_KEY", seaweed.access_key)
    monkeypatch.setenv("T_SECRET", seaweed.secret_key)
    code, out, err = run(["verify", plan, "--deep=both", *where], capsys)
    assert code == 0 and "1 re-read (1 at the source too)" in " ".join(out.split()), out


def test_a_proxy_the_plan_does_not_name_is_refused_before_any_request(
    tmp_path: Path,
    seaweed: SeaweedFS,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every request of a site goes through its declared proxy: the plan names it with the
    hosts it allows, and a proxy added to the sites file after approval stops the run."""
    from tests.faultproxy import fault_proxy

    plan, sites = approved_seaweed_to_local(tmp_path, seaweed, bucket, monkeypatch, capsys)
    where = ["--sites", str(sites)]
    make = ["plan", "--from", "dest", "--to", "d", "--policy", "eu-residency", "--no-pilot",
            "-o", plan, *where]  # fmt: skip
    with fault_proxy(seaweed.endpoint) as proxy:
        text = sites.read_text()
        sites.write_text(text.replace("[sites.d]", f'proxy = "{proxy.endpoint}"\n[sites.d]'))
        address = proxy.endpoint.removeprefix("http://")
        code, out, err = run(["run", plan, "--phase", "bulk-1", *where], capsys)
        assert code == 10, err
        assert_one_line_without_secret(out, err)
        assert f"site dest declares proxy {address}, which plan p does not allow" in err, err
        assert proxy.faults.requests == 0
        # Made again, the plan names it; approved, the run goes through it.
        assert run(make, capsys)[0] == 0
        assert address in load_plan(Path(plan)).allowlist
        assert run(["plan", "approve", plan, *where], capsys)[0] == 0
        code, out, err = run(["run", plan, "--phase", "bulk-1", *where], capsys)
        assert code == 0, err
        assert proxy.faults.forwarded > 0
    assert (tmp_path / "copy").joinpath(bucket, "data", "a.csv").read_bytes() == b"id\n1\n"


def test_a_container_with_no_object_is_named_by_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It has no dataset, so no mapping and no bucket: the plan says so, lest an
    application that expects it find nothing after the switch."""
    (tmp_path / "src" / "data").mkdir(parents=True)
    (tmp_path / "src" / "data" / "a.csv").write_bytes(b"1,2\n")
    (tmp_path / "src" / "uploads").mkdir()
    (tmp_path / "dst").mkdir()
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "src"}"\n'
        'buckets = ["data", "uploads"]\n'
        f'[sites.d]\nprovider = "local"\npath = "{tmp_path / "dst"}"\n'
    )
    where = ["--sites", str(sites)]
    plan = str(tmp_path / "p.yaml")
    assert run(["inventory", "s", *where], capsys)[0] == 0
    assert run(["plan", "--from", "s", "--to", "d", "--policy", "eu-residency", "-o", plan,
                *where], capsys)[0] == 0  # fmt: skip
    code, out, err = run(["plan", "show", plan, "--json", *where], capsys)
    assert code == 0, err
    (finding,) = [f for f in json.loads(out)["findings"] if f["code"] == "EMPTY_CONTAINERS"]
    assert finding["severity"] == "warning"
    assert finding["message"] == (
        "1 container of s has no object in its inventory (none under an inventory's --prefix, "
        "maybe) and gets no bucket at d: uploads"
    )


def test_the_inventory_table_shows_the_datasets_that_matter_and_json_shows_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Thousands of rows in a terminal are read by nobody (20,000 took a minute to draw):
    the table keeps those that will not move as they are, then the largest."""
    from migrate.render import DATASET_ROWS

    root = tmp_path / "src" / "data"
    for i in range(DATASET_ROWS + 10):
        (root / f"set{i:03d}").mkdir(parents=True)
        (root / f"set{i:03d}" / "a.csv").write_bytes(b"x" * (i + 1))
    with open(os.fsencode(root / "set000") + b"/bad\xff.csv", "wb") as f:
        f.write(b"x")  # a name that is not UTF-8: will not move as it is
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "src"}"\nbuckets = ["data"]\n'
    )
    code, out, err = run(["inventory", "s", "--sites", str(sites)], capsys)
    assert code == 0, err
    assert "... 10 more" in out, out  # the rest of the line folds in its narrow column
    assert "data/set000/" in out  # the smallest, kept: it holds objects that will not move
    assert "data/set001/" not in out and "data/set059/" in out  # then the largest
    code, out, err = run(["inventory", "s", "--sites", str(sites), "--json"], capsys)
    assert code == 0 and len(json.loads(out)["datasets"]) == DATASET_ROWS + 10


def test_inventory_json_is_machine_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    store = tmp_path / "store" / "data" / "a"
    store.mkdir(parents=True)
    (store / "one.csv").write_bytes(b"1,2,3\n")
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "store"}"\nbuckets = ["data"]\n'
    )
    code, out, _ = run(["inventory", "s", "--sites", str(sites), "--json"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["datasets"][0]["dataset"] == "data/a/"
    assert summary["datasets"][0]["bytes"] == 6


def test_providers_json_is_stable_and_explains_each_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.chdir(tmp_path)  # no sites file here: the built-in catalog
    code, first, _ = run(["providers", "--policy", "fr-health", "--json"], capsys)
    assert code == 0
    _, second, _ = run(["providers", "--policy", "fr-health", "--json"], capsys)
    assert first == second
    verdicts = {v["provider"]: v for v in json.loads(first)}
    assert verdicts["scaleway"]["status"] == "PASS"
    assert verdicts["azure"]["status"] == "FAIL" and verdicts["azure"]["blocking"]
    for v in verdicts.values():
        for r in v["reasons"]:
            assert r["source"] or r["outcome"] == "UNKNOWN", r
    # A sites file named by $MIGRATE_SITES is the user's: one holding a secret is refused
    # (exit 4), not set aside for the built-in catalog and another policy.
    leaky = tmp_path / "leaky.toml"
    leaky.write_text('policy = "fr-health"\n[sites.a]\nprovider = "scaleway"\n'
                     'credentials = { secret_key = "written-here-canary" }\n')  # fmt: skip
    monkeypatch.setenv("MIGRATE_SITES", str(leaky))
    code, out, err = run(["providers"], capsys)
    assert code == 4, err
    assert "written-here-canary" not in out + err


def test_providers_show_lists_facts_with_sources(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["providers", "show", "scaleway", "--json"], capsys)
    assert code == 0
    assert "s3.fr-par.scw.cloud" in out
    # For a reader: records and lists as text, never Python's reprs.
    # At 80 columns, verdicts as blocks: each reason on a line of its own, whole (a table
    # left reasons a column of a few letters, hundreds of lines long).
    code, out, _ = run(["providers", "--policy", "eu-residency"], capsys)
    assert code == 0 and "\n  PASS: region fsn1 is in Germany (DE), in the EU/EEA\n" in out, out
    assert len(out.splitlines()) < 60, out
    code, out, _ = run(["providers", "show", "gcs"], capsys)
    assert code == 0 and "{'" not in out and "None" not in out, out
    assert "law:" in out and "country: US" in out, out
    # A cell's own line breaks are lines, not escapes (keys' controls are escaped: a
    # review found every multi-line cell shown with \x0a)
    code, out, _ = run(["providers", "show", "scaleway"], capsys)
    assert code == 0 and "\\x0a" not in out and "crc32" in out, out
    code, _, err = run(["providers", "show", "nosuch"], capsys)
    assert code == 3 and "scaleway" in err
    assert "sites file" not in err, err  # the name was typed here, not read from a file


def test_providers_show_says_each_certification_and_why_a_fact_is_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The certifications are facts a reviewer reads first (what a verdict rests on): each
    with its status, its object-storage coverage, its regions, its scope and its source;
    and an unknown fact says why it is unknown (`providers show` printed neither)."""
    code, out, _ = run(["providers", "show", "s3ns"], capsys)
    text = " ".join(out.split())
    assert code == 0
    assert "SecNumCloud: yes; object storage: unknown; regions: unknown" in text, out
    assert "PREMI3NS" in text and "itforbusiness.fr" in text and "(2026-01-05)" in text, out
    assert "HDS: unknown; object storage: unknown" in text, out
    # ultimate_parent is unknown, and the catalog's note says why; a known fact's note and
    # the source's own words are shown too (in the table's cells: words may be cut apart)
    table = "".join(out.split("Certifications:")[0].split())
    assert "cappedminoritystake" in table.replace("│", ""), out
    assert "third-partycard" in table.replace("│", ""), out
    assert 'stated: "French-law' in out, out
    code, out, _ = run(["providers", "show", "bleu"], capsys)
    assert code == 0 and "Notes:\n  technology from Microsoft" in out, out
    code, out, _ = run(["providers", "show", "ovhcloud"], capsys)
    text = " ".join(out.split())
    assert code == 0 and "SecNumCloud: yes; object storage: no" in text, out


def test_providers_show_escapes_what_a_catalog_file_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A note in the user's catalog file holding a terminal sequence or several lines: each
    line of it shown as a line, the sequence as text, never acted on."""
    (tmp_path / "mine.yaml").write_text(
        "name: s3ns\ncertifications:\n  - name: HDS\n    status: unknown\n"
        '    note: "line one\\nline two \\e[2J"\n',
        encoding="utf-8",
    )
    sites = tmp_path / "sites.toml"
    sites.write_text('catalog = ["mine.yaml"]\n', encoding="utf-8")
    code, out, err = run(["providers", "show", "s3ns", "--sites", str(sites)], capsys)
    assert code == 0, err
    assert "\x1b" not in out and "    line one\n    line two \\x1b[2J" in out, out


def test_sites_check_of_no_site_or_of_a_path_that_is_a_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sites = tmp_path / "sites.toml"
    sites.write_text('policy = "eu-residency"\n')  # an empty table read as "all is well"
    code, out, err = run(["sites", "check", "--sites", str(sites)], capsys)
    assert code == 3 and "no site to check" in err, err
    (tmp_path / "afile").write_text("not a directory")
    sites.write_text(f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "afile"}"\n'
                     'buckets = ["b"]\n')  # fmt: skip
    code, out, err = run(["sites", "check", "--sites", str(sites), "--json"], capsys)
    assert code == 7 and f"directory {tmp_path / 'afile'} is not a directory" in out, out


def test_sites_check_gives_each_site_its_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("T_KEY", "k")
    monkeypatch.setenv("T_SECRET", "s")
    (tmp_path / "store" / "b").mkdir(parents=True)
    sites = tmp_path / "sites.toml"
    sites.write_text(
        'policy = "eu-sovereign"\n'
        f'[sites.rehearsal]\nprovider = "local"\npath = "{tmp_path / "store"}"\n'
        'buckets = ["b"]\ncountry = "FR"\noperator = "Us"\nparent_country = "FR"\n'
        "non_eu_law = []\n"
        '[sites.nowhere]\nprovider = "self-hosted"\nendpoint = "https://s3.example.org"\n'
        'credentials = { access_key_env = "T_KEY", secret_key_env = "T_SECRET" }\n'
    )
    code, out, _ = run(["sites", "check", "--sites", str(sites), "--json"], capsys)
    verdicts = {v["site"]: v for v in json.loads(out)["verdicts"]}
    assert verdicts["nowhere"]["status"] == "UNKNOWN"  # no declared country
    assert verdicts["nowhere"]["blocking"]  # shown; exit 8 if asked
    # Contacted though it names no bucket: s3.example.org answers nothing (exit 6); the
    # verdicts are given all the same.
    assert code == 6
    assert verdicts["rehearsal"]["status"] == "PASS"


@pytest.fixture
def web_page() -> Iterator[str]:
    """A web server on 127.0.0.1 that answers every request with 200 and an HTML page:
    an endpoint mistyped to a site's web front, say. Its URL."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = b"<html><body>Welcome</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_endpoint_that_is_no_store_fails_the_check_and_the_inventory_with_exit_6(
    web_page: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A web page answering 200 to everything: sites check said `ok`, the inventory exit 11
    ("objects failed to transfer", though nothing transfers) and an Azure site crashed."""
    monkeypatch.setenv("T_KEY", "k")
    monkeypatch.setenv("T_SECRET", "s")
    key = base64.b64encode(b"k" * 64).decode()
    monkeypatch.setenv("T_AZ", f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key};"
                       f"BlobEndpoint={web_page}/acct;")  # fmt: skip
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'[sites.page]\nprovider = "self-hosted"\nendpoint = "{web_page}"\nbuckets = ["b"]\n'
        'credentials = { access_key_env = "T_KEY", secret_key_env = "T_SECRET" }\n'
        f'[sites.azpage]\nprovider = "azure"\nendpoint = "{web_page}/acct"\n'
        'buckets = ["snds"]\ncredentials = { connection_string_env = "T_AZ" }\n'
    )
    for site, said in (("page", "does not list it as an S3 store does"),
                       ("azpage", "does not answer as Azure Blob storage does")):  # fmt: skip
        code, out, err = run(["sites", "check", site, "--sites", str(sites), "--json"], capsys)
        assert code == 6, (site, out)
        (checked,) = json.loads(out)["sites"]
        assert checked["containers"][0]["exit_code"] == 6 and said in out, out
        assert checked["containers"][0]["kind"] == checked["kind"] == "EndpointUnreachable"
        assert checked["exit_code"] == 6  # the site's too, for a script reading that level
        code, out, err = run(["inventory", site, "--sites", str(sites), "--json"], capsys)
        assert code == 6, (site, err)
        assert error_object(out)["kind"] == "EndpointUnreachable"
        assert_one_line_without_secret(out, err)


def test_a_finished_phase_run_again_is_answered_from_the_ledger_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No store is contacted (the catalog is read: the sites are checked against the
    plan's allowlist first, as for any run)."""
    plan, where = finished_local_copy(tmp_path, capsys)

    def no_store(*args: object, **kwargs: object) -> None:
        raise AssertionError("a store was contacted")

    monkeypatch.setattr("providers.factory.build_adapter", no_store)
    code, out, err = run(["run", plan, "--phase", "bulk-1", "--json", *where], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["copied"] == 0 and summary["already_done"] == summary["objects"] > 0


def test_a_bandwidth_limit_is_read_before_the_phase_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)  # bulk-1 done, the pilot not yet
    for phase in ("pilot", "bulk-1"):  # a phase to run, a finished one
        code, _, err = run(["run", plan, "--phase", phase, "--bwlimit", "fast", *where], capsys)
        assert code == 3, err
        assert "--bwlimit 'fast' not understood" in err and "Traceback" not in err
    code, out, err = run(
        ["run", plan, "--phase", "pilot", "--bwlimit", "10MB/s", "--json", *where], capsys
    )
    assert code == 0, err
    assert json.loads(out)["copied"] > 0


def as_of_schema(state: Path, migrations: list[tuple[str, str]]) -> None:
    """Rewrite a state file as a version knowing only `migrations` would have written it:
    those tables and columns, with the rows they hold."""
    import sqlite3

    with sqlite3.connect(state) as db:  # one file: no write-ahead log beside it
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
    newer = state.with_name("newer.db")
    state.rename(newer)
    db = sqlite3.connect(state)
    try:
        for _, sql in migrations:
            db.executescript(sql)
        db.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        for version, (name, _) in enumerate(migrations, start=1):
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, '2026-11-24')", (version, name))
        db.execute("ATTACH DATABASE ? AS newer", (str(newer),))
        tables = db.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' "
            "AND name != 'schema_migrations'"
        ).fetchall()
        for (table,) in tables:
            have = {r[1] for r in db.execute(f"PRAGMA newer.table_info({table})")}
            columns = ", ".join(
                r[1] for r in db.execute(f"PRAGMA main.table_info({table})") if r[1] in have
            )
            db.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM newer.{table}")
        db.commit()
    finally:
        db.close()
    newer.unlink()


def test_a_state_written_by_an_earlier_version_is_upgraded_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    import migrate.ledger

    latest = migrate.ledger._MIGRATIONS
    plan, where = finished_local_copy(tmp_path, capsys)
    code, before, _ = run(["status", plan, "--json", *where], capsys)
    assert code == 0
    as_of_schema(tmp_path / "state" / "state.db", latest[:2])  # the schema of 2026-11
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        assert [v for (v,) in db.execute("SELECT version FROM schema_migrations")] == [1, 2]

    code, after, err = run(["status", plan, "--json", *where], capsys)
    assert code == 0, err
    before_json, after_json = json.loads(before), json.loads(after)
    # The schema of 2026-11 kept no run history: nothing to time the phases left by.
    assert before_json.pop("projection") is not None and after_json.pop("projection") is None
    # Its approval is there still, and taken as a run takes it (`check_approved`: an
    # approval of its digest; the inventory the upgrade names anew is asked of a plan
    # approved nowhere only).
    assert before_json.pop("approval")["approved"] and after_json.pop("approval")["approved"]
    assert after_json == before_json  # everything recorded is still there
    code, out, err = run(["run", plan, "--phase", "bulk-1", "--json", *where], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["copied"] == 0 and summary["already_done"] == summary["objects"] > 0
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        versions = [v for (v,) in db.execute("SELECT version FROM schema_migrations")]
        counting = db.execute(
            "EXPLAIN QUERY PLAN SELECT phase, state, COUNT(*), SUM(size) FROM transfers "
            "WHERE plan=? GROUP BY phase, state", ("plan",)
        ).fetchall()  # fmt: skip
    assert versions == list(range(1, len(latest) + 1))
    # every inventory run named, those listed before too: a plan made from one names it
    # (and every approval recorded before is in the approval history)
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        unnamed = db.execute("SELECT COUNT(*) FROM inventory_runs WHERE token IS NULL")
        assert unnamed.fetchone()[0] == 0
        events = db.execute("SELECT plan, approved_by, took_effect FROM approval_events")
        assert events.fetchall() == [("plan", migrate.os_user(), 1)]
    assert "COVERING INDEX" in str(counting)  # a phase is counted without reading its rows


def test_names_in_tables_are_shown_as_they_are_not_read_as_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keys are the users' data: a prefix such as `[archive]` is shown in the inventory's
    table (rich would read it as a style and drop it), and a site named `[/x]` (a closing
    tag) does not crash the check's table."""
    for key in ("[archive]/2019/a.txt", "[bold]/b.txt"):
        path = tmp_path / "store" / "data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'[sites."[/x]"]\nprovider = "local"\npath = "{tmp_path / "store"}"\nbuckets = ["data"]\n'
    )
    code, out, err = run(["inventory", "[/x]", "--sites", str(sites)], capsys)
    assert code == 0, err
    assert "data/[archive]/" in out and "data/[bold]/" in out, out
    code, out, err = run(["sites", "check", "--sites", str(sites)], capsys)
    assert code == 0, err
    assert "[/x]" in out, out


def test_a_state_that_cannot_record_routes_costs_sites_check_a_warning_not_its_result(
    tmp_path: Path, seaweed: SeaweedFS, bucket: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`sites check` contacts the store, then cannot write what it contacted (the state
    directory is under a file): the check's table and exit code stand, with one warning."""
    monkeypatch.setenv("T_KEY", seaweed.access_key)
    monkeypatch.setenv("T_SECRET", seaweed.secret_key)
    sites = write_sites(tmp_path, seaweed.endpoint, bucket)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    sites.write_text(f'state_dir = "{blocker / "state"}"\n' + sites.read_text())
    code, out, err = run(["sites", "check", "--json", "--sites", str(sites)], capsys)
    assert code == 0, err
    assert json.loads(out)["sites"][0]["containers"][0]["ok"] is True
    assert err.startswith("migrate: warning: the hosts `sites check` contacted could not be")
    assert "state cannot be opened" in err and len(err.strip().splitlines()) == 1, err


def test_sites_check_shows_the_endpoint_a_site_takes_from_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A site that declares its region, not its endpoint: the check's JSON says where its
    requests go (it said null), whatever came of the check (here: no credentials set)."""
    sites = tmp_path / "sites.toml"
    sites.write_text(
        '[sites.scw]\nprovider = "scaleway"\nregion = "fr-par"\nbuckets = ["hdh-data"]\n'
        'credentials = { access_key_env = "UNSET_KEY_1", secret_key_env = "UNSET_KEY_2" }\n'
    )
    code, out, err = run(["sites", "check", "--json", "--sites", str(sites)], capsys)
    (checked,) = json.loads(out)["sites"]
    assert code == 3 and "UNSET_KEY_1" in checked["error"], (out, err)
    assert checked["endpoint"] == "https://s3.fr-par.scw.cloud", checked


def test_sites_check_of_a_provider_whose_endpoints_are_unknown_says_what_is_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3NS (the facts file's section 9): no endpoint, so no region, in the catalog; the site
    gives its own. `sites check` shows it and judges it, neither crashing nor passing it:
    where the data is, unknown (and what to do), its exposure to non-EU law unknown (never
    taken as none), its SecNumCloud qualification's object-storage scope unknown."""
    for name in ("UNSET_KEY_1", "UNSET_KEY_2"):
        monkeypatch.delenv(name, raising=False)
    sites = tmp_path / "sites.toml"
    sites.write_text(
        'policy = "secnumcloud"\nrunner = { location = "FR" }\n'
        '[sites.s3ns]\nprovider = "s3ns"\nendpoint = "https://s3.example-region.s3ns.fr"\n'
        'credentials = { access_key_env = "UNSET_KEY_1", secret_key_env = "UNSET_KEY_2" }\n'
    )
    code, out, err = run(["sites", "check", "--json", "--sites", str(sites)], capsys)
    (checked,) = json.loads(out)["sites"]
    assert code == 3 and "UNSET_KEY_1" in checked["error"], (out, err)  # nothing sent
    assert checked["endpoint"] == "https://s3.example-region.s3ns.fr", checked
    verdict = json.loads(out)["verdicts"][0]
    assert (verdict["site"], verdict["status"], verdict["blocking"]) == ("s3ns", "UNKNOWN", True)
    reasons = {r["rule"]: r for r in verdict["reasons"]}
    assert reasons["operator-in-eu-eea"]["outcome"] == "PASS"
    assert (
        reasons["operator-in-eu-eea"]["source"]
        == "https://csf.hop3.abilian.com/providers/s3ns.html"
    )
    for rule in ("region-in-eu-eea", "no-non-eu-law", "secnumcloud-qualified"):
        assert reasons[rule]["outcome"] == "UNKNOWN", reasons[rule]
    assert reasons["no-non-eu-law"]["value"] is None  # unknown, not "none"
    snc = reasons["secnumcloud-qualified"]
    assert snc["value"] == "yes" and snc["as_of"] == "2026-01-05", snc
    code, out, err = run(["sites", "check", "--sites", str(sites)], capsys)
    said = " ".join(out.split())
    assert code == 3 and "site s3ns (s3ns): UNKNOWN (blocking)" in said, out
    assert (
        "UNKNOWN: no region given for s3ns, and the catalog lists none for it: where the data "
        "is cannot be known (add the region the site uses, with its country and their source, "
        "in your own catalog file, and declare it as the site's `region`)"
    ) in said, out
    assert "UNKNOWN: exposure of S3NS to non-EU extraterritorial law is unknown" in said, out
    assert (
        "UNKNOWN: SecNumCloud held, but whether it covers the object-storage service is "
        "unknown [the PREMI3NS offer, qualified SecNumCloud 3.2"
    ) in said, out


def test_sites_check_proves_a_site_without_buckets_and_fails_on_policy_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A site listing no bucket (a destination whose buckets the run makes) is contacted
    all the same, with a request that needs no bucket (it was not: a wrong secret showed
    only at the run, a newcomer's review). A blocking verdict is shown; it gives exit 8
    with --fail-on-policy only: the source being left usually fails the policy, and is no
    error. A site whose requests' host cannot be checked (AWS us-east-1: a global
    endpoint) is not contacted, and says why."""
    monkeypatch.setenv("T_KEY", "AKIDEXAMPLE")
    monkeypatch.setenv("T_SECRET", "not-a-real-secret")
    sites = tmp_path / "sites.toml"
    sites.write_text(
        'policy = "eu-residency"\n'
        f'[sites.here]\nprovider = "local"\npath = "{tmp_path}"\n'
        '[sites.us]\nprovider = "aws"\nregion = "us-east-1"\n'
        'credentials = { access_key_env = "T_KEY", secret_key_env = "T_SECRET" }\n'
    )
    # One listing buckets, too (it was refused, exit 10: a newcomer walkthrough).
    listed = tmp_path / "listed.toml"
    listed.write_text(sites.read_text().replace('"us-east-1"\n', '"us-east-1"\nbuckets = ["b"]\n'))
    code, out, err = run(["sites", "check", "us", "--json", "--sites", str(listed)], capsys)
    assert code == 0, (out, err)
    assert json.loads(out)["sites"][0]["not_checked"].startswith("set up, not contacted: ")
    # One the site declares is its mistake, as `inventory` says (a review: exit 0).
    declared = tmp_path / "declared.toml"
    global_endpoint = 'region = "eu-west-3"\nendpoint = "https://s3.amazonaws.com"\n'
    declared.write_text(listed.read_text().replace('region = "us-east-1"\n', global_endpoint))
    code, out, err = run(["sites", "check", "us", "--json", "--sites", str(declared)], capsys)
    assert code == 10 and json.loads(out)["sites"][0]["exit_code"] == 10, (out, err)
    code, out, err = run(["sites", "check", "--json", "--sites", str(sites)], capsys)
    assert code == 0, (out, err)
    # The machine running migrate is judged too, as a run judges it.
    runner = json.loads(out)["verdicts"][-1]
    assert (runner["subject"], runner["status"]) == ("runner", "UNKNOWN"), runner
    assert "does not declare where migrate runs" in runner["reasons"][0]["text"]
    # A runner the policy blocks fails --fail-on-policy, as it would fail the run.
    abroad = tmp_path / "abroad.toml"
    abroad.write_text('runner = { location = "US" }\n' + sites.read_text())
    blocked = run(["sites", "check", "here", "--fail-on-policy", "--sites", str(abroad)], capsys)
    assert blocked[0] == 8 and "runner: FAIL under policy eu-residency" in blocked[2], blocked
    assert "runner.location" in blocked[2], blocked  # what to do, in the same line
    checked = {s["site"]: s for s in json.loads(out)["sites"]}
    assert set(checked) == {"here", "us"}
    assert json.loads(out)["ok"] is True and checked["here"]["ok"] is True
    here = checked["here"]
    assert [(c["container"], c["ok"]) for c in here["containers"]] == [("(account)", True)]
    assert "readable and writable" in here["containers"][0]["detail"]
    assert checked["us"]["not_checked"].startswith("set up, not contacted: ")
    assert "global endpoint" in checked["us"]["not_checked"]
    assert checked["us"]["endpoint"] is None  # botocore's choice, the global one: not shown
    code, out, err = run(["sites", "check", "--sites", str(sites)], capsys)
    assert code == 0 and "(account)" in out and "not contacted" in out, out
    # `127.0.0.l`, a typo: a name, not loopback. Plain HTTP to it was let through the
    # site's set-up ("127." taken for loopback) and refused at each request, which the
    # check took for a global endpoint's, not contacted: exit 0 (a walkthrough).
    plain = tmp_path / "plain.toml"
    plain.write_text(
        '[sites.typo]\nprovider = "self-hosted"\nsoftware = "seaweedfs"\n'
        'endpoint = "http://127.0.0.l:8333"\n'
        'credentials = { access_key_env = "T_KEY", secret_key_env = "T_SECRET" }\n'
    )
    code, out, err = run(["sites", "check", "--json", "--sites", str(plain)], capsys)
    (typo,) = json.loads(out)["sites"]
    assert code == 3 and typo["exit_code"] == 3 and "uses plain HTTP" in typo["error"], typo

    code, out, err = run(
        ["sites", "check", "us", "--fail-on-policy", "--sites", str(sites)], capsys
    )
    assert code == 8, (out, err)
    assert err.startswith("migrate: error: ") and "eu-residency" in err, err
    assert "a site the policy allows" in err, err
    assert len(err.strip().splitlines()) == 1
    # Not contacted is not unchecked: credentials it cannot resolve are still an error.
    monkeypatch.delenv("T_SECRET")
    code, out, err = run(["sites", "check", "us", "--sites", str(sites)], capsys)
    assert code == 3 and "T_SECRET" in out + err, (out, err)


def test_plan_options_and_names_are_checked_before_any_store_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt site or policy, or a share out of range, is a configuration error
    (exit 3) named as such, before the plan's reads (the destination here is unreachable:
    a read would give exit 6); the pilot share may be written as a percentage."""
    monkeypatch.setenv("T_KEY", "AKIDEXAMPLE")
    monkeypatch.setenv("T_SECRET", "not-a-real-secret")
    (tmp_path / "src" / "data").mkdir(parents=True)
    (tmp_path / "src" / "data" / "one.csv").write_bytes(b"1,2,3\n")
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "src"}"\nbuckets = ["data"]\n'
        '[sites.d]\nprovider = "self-hosted"\nsoftware = "seaweedfs"\ncountry = "FR"\n'
        f'region = "local"\nendpoint = "http://127.0.0.1:{free_port()}"\n'
        'credentials = { access_key_env = "T_KEY", secret_key_env = "T_SECRET" }\n'
    )
    s = ["--sites", str(sites)]
    assert run(["inventory", "s", *s], capsys)[0] == 0
    plan = ["plan", "--from", "s", "--to", "d", "-o", str(tmp_path / "p.yaml"), *s]
    for extra, said in (
        (["--policy", "eu-residency", "--from", "nosuch"], "no site named 'nosuch'"),
        (["--policy", "no-such-policy"], "unknown policy 'no-such-policy'"),
        (["--policy", "eu-residency", "--pilot-share", "5"], "(5 without % is 500%)"),
        # as typed, not the 2 it converts to
        (["--policy", "eu-residency", "--pilot-share", "200%"], "--pilot-share 200%: give a"),
        (["--policy", "eu-residency", "--pilot-share", "two"], "give a share such as"),
        (["--policy", "eu-residency", "--wave-cap-gib", "nan"], "--wave-cap-gib nan: give a"),
        (["--policy", "eu-residency", "--wave-cap-gib", "0"], "--wave-cap-gib 0: give a"),
    ):
        code, out, err = run([*plan, *extra], capsys)
        assert code == 3 and said in err, (extra, code, err)
        assert_one_line_without_secret(out, err)
    code, _, err = run([*plan, "--policy", "eu-residency", "--pilot-share", "2%"], capsys)
    assert code == 6, err  # accepted; then the plan's reads find the destination unreachable


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_ctrl_c_stops_a_run_between_parts_says_so_and_the_same_command_resumes(
    tmp_path: Path, seaweed: SeaweedFS, bucket: str, stop: str
) -> None:
    """Ctrl-C (or a service manager's SIGTERM) during large objects: the run stops before
    their next part (not after whole objects: hours, for large ones), says so in one line,
    exits 130, records no failure and the hosts it contacted; the same command then
    finishes the copy. Killed outright (SIGKILL), the hosts it contacted until a moment
    before are recorded too."""
    import os
    import signal
    import subprocess
    import sys

    (tmp_path / "src" / "data").mkdir(parents=True)
    for i in range(3):  # 3 x 40 MiB, parts of 5 MiB, at 4 MB/s: 30 s to copy them all
        (tmp_path / "src" / "data" / f"big-{i}.bin").write_bytes(os.urandom(40 * 1024**2))
    sites = write_sites(tmp_path, seaweed.endpoint, bucket)
    text = sites.read_text().replace("[sites.dest]", "[sites.dst]")
    text = text.replace(f'buckets = ["{bucket}"]', f'bucket_prefix = "{bucket}-"')
    sites.write_text(
        text + f'[sites.src]\nprovider = "local"\npath = "{tmp_path / "src"}"\nbuckets = ["data"]\n'
    )
    env = {**os.environ, "T_KEY": seaweed.access_key, "T_SECRET": seaweed.secret_key}

    def migrate(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "migrate", *args, "--sites", str(sites)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # A shell that ran pytest in the background leaves SIGINT ignored: not here.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip

    plan = str(tmp_path / "p.yaml")
    for args in (["inventory", "src"],
                 ["plan", "--from", "src", "--to", "dst", "--policy", "eu-residency",
                  "--no-pilot", "-o", plan],
                 ["plan", "approve", plan, "--by", "test"]):  # fmt: skip
        proc = migrate(*args)
        assert proc.wait() == 0, proc.communicate()
    run_args = ["run", plan, "--phase", "bulk-1", "--part-size-mib", "5", "--concurrency", "2"]
    proc = migrate(*run_args, "--bwlimit", "4MB/s")
    # Started, and into the first two objects (their uploads begun), with the hosts it
    # contacted recorded once (every 2 s), then a moment more.
    state_dir = load_sites(sites).state_dir
    wait_for_rows(state_dir, lambda s: "in_progress" in s.values())
    wait_for_rows(state_dir, bool, "SELECT host, requests FROM routes")
    time.sleep(0.5)
    proc.send_signal(getattr(signal, stop))
    interrupted = time.monotonic()
    out, err = proc.communicate(timeout=60)
    waited = time.monotonic() - interrupted
    if stop == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130, (out, err)
        assert INTERRUPTED_LINE in err, err
        # Said at once, before the wait (a newcomer's review: silence, then Ctrl-C again).
        assert "migrate: stopping: the requests under way finish first" in err, err
        # The parts under way finish (2 x 5 MiB at 4 MB/s: under 3 s), then the process
        # exits; the rest of their objects (some 60 MiB: 15 s) is left for the next run.
        # 4.3 s measured, 7.4 s on a loaded machine (load 17 on 2 cores: 9 s was too
        # near); 17.6 s before.
        assert waited < 12, f"{waited:.1f} s after Ctrl-C"
    with Ledger(load_sites(sites).state_dir) as ledger:
        counts = {c.state: c.objects for c in ledger.phase_counts("p")}
        routes = ledger.routes("p")
    assert "failed" not in counts and counts.get("done", 0) < 3, counts
    assert [r.host for r in routes] == [endpoint_host(seaweed.endpoint)], routes
    assert routes[0].requests > 0

    proc = migrate(*run_args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    with Ledger(load_sites(sites).state_dir) as ledger:
        assert {c.state: c.objects for c in ledger.phase_counts("p")} == {"done": 3}


@pytest.mark.slow
@pytest.mark.parametrize("signals", [1, 2])
def test_a_copy_whose_every_part_is_under_way_at_ctrl_c_finishes_and_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], signals: int
) -> None:
    """SIGTERM while the last parts of an object are under way: they finish, the object is
    completed and recorded done, the run's history counts it, and only then does the
    process exit 130 (the objects not begun are left for the next run). A join cut short
    by the interrupt let the process exit with the copy under way: completed at the
    destination, `in_progress` in the ledger, its upload left. A second SIGTERM while
    they finish changes nothing (it cut that wait short the same way)."""
    import os
    import signal
    import subprocess
    import sys

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    big = os.urandom(20 * 1024**2)  # 4 parts of 5 MiB, all read at once, sent at 2 MB/s
    (tmp_path / "src" / "data" / "big.bin").write_bytes(big)
    # Another writer's object under one of the plan's keys: a conflict found before the
    # copy, which the interrupted run's counts said nothing of (a review).
    taken = min(p.name for p in (tmp_path / "src" / "data").iterdir() if p.name != "big.bin")
    (tmp_path / "dst" / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "dst" / "data" / taken).write_bytes(b"another writer's bytes")
    for args in (["inventory", "src"],
                 ["plan", "--from", "src", "--to", "dst", "--policy", "eu-residency",
                  "--no-pilot", "-o", plan],
                 ["plan", "approve", plan]):  # fmt: skip
        assert main([*args, *where]) == 0, capsys.readouterr().err
    capsys.readouterr()
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrate", "run", plan, "--phase", "bulk-1", "--part-size-mib",
         "5", "--bwlimit", "2MB/s", "--json", *where],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # The small objects done (some of them at least), the big one's 4 parts under way.
    wait_for_rows(
        tmp_path / "state",
        lambda s: s.get("big.bin") == "in_progress" and list(s.values()).count("done") > 1,
    )
    # And a first part received, its 4 parts having waited their turn at 2 MB/s since
    # they were read: the others, read meanwhile, are then under way (a part not yet read
    # when the signal comes is rightly left for the next run: 0.5 s after the upload began
    # was too short on a loaded CI machine, where small objects' buffers held them back).
    deadline = time.monotonic() + 60
    while not list((tmp_path / "dst").glob(".migrate-uploads/*/*/0000?")):
        assert time.monotonic() < deadline and proc.poll() is None, "no part was received"
        time.sleep(0.05)
    for _ in range(signals):
        proc.send_signal(signal.SIGTERM)
        time.sleep(1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    with Ledger(tmp_path / "state") as ledger:
        states = {c.state: c.objects for c in ledger.phase_counts("plan", "bulk-1")}
        (history,), _ = ledger.runs("plan", 10)
    assert (tmp_path / "dst" / "data" / "big.bin").read_bytes() == big
    # Nothing left under way: done, or not begun (the objects no thread had taken yet),
    # or failed as the conflict.
    assert set(states) <= {"done", "pending", "failed"} and states["done"] > 1, states
    assert states["failed"] == 1, states
    assert history.counts.copied == states["done"], (history, states)
    assert (history.counts.failed, history.counts.conflicts) == (1, 1), history
    # --json: the interruption's error, with what the run did (a script need not ask
    # status: an automation walkthrough)
    answer = json.loads(out)
    assert answer["error"]["exit_code"] == 130, answer
    assert answer["run"]["copied"] == states["done"] and answer["run"]["phase"] == "bulk-1"
    assert answer["run"]["bytes_copied"] >= len(big), answer
    assert (answer["run"]["failed"], answer["run"]["conflicts"]) == (1, 1), answer
    assert not list((tmp_path / "dst").glob(".migrate-uploads/*/*"))


@pytest.mark.slow
def test_a_run_killed_outright_shows_in_its_record_what_it_had_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9: no end is recorded, but the run's record holds what it had copied up to a
    few seconds before (the report showed 0 copied for a run that had copied 106 objects:
    an ops walkthrough)."""
    import signal
    import subprocess
    import sys

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrate", "run", plan, "--phase", "bulk-1", "--force",
         "--reason", "t", "--max-rps", "4", *where],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_rows(
            tmp_path / "state",
            lambda rows: bool(rows) and min(int(c) for c in rows.values()) >= 6,
            "SELECT id, copied FROM runs",
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    with Ledger(tmp_path / "state") as ledger:
        (record,), _ = ledger.runs("plan", 10)
        done = {c.state: c.objects for c in ledger.phase_counts("plan", "bulk-1")}.get("done", 0)
    assert record.outcome is None and record.finished_at is None, record
    assert 6 <= record.counts.copied <= done < 29, (record, done)


def test_objects_found_wrong_in_two_phases_are_told_the_order_that_passes_the_gates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copies lost in the pilot and in bulk-1: the hint named `run --phase pilot` and
    `run --phase bulk-1`, and the second was refused by its gate (the pilot verified
    first): a newcomer's review. The hint gives the order that passes."""
    import sqlite3

    plan, where = finished_local_copy(tmp_path, capsys)
    code, out, _ = run(["run", plan, "--phase", "pilot", *where], capsys)
    # the rate in objects too: what the plan's durations, bytes alone, leave out
    assert code == 0 and re.search(r"Phase pilot: 1 copied \(.*/s, [\d,.]+ objects/s\)", out)
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        keys = dict(db.execute("SELECT phase, MIN(key) FROM transfers GROUP BY phase"))
    db.close()
    for key in keys.values():
        (tmp_path / "dst" / "data" / key).unlink()
    code, _, err = run(["verify", plan, *where], capsys)
    assert code == 12, err
    said = " ".join(err.split())
    assert (
        f"copied again by `migrate run {plan} --phase pilot`, then `migrate verify {plan} "
        f"--phase pilot`, then `migrate run {plan} --phase bulk-1`, then verify again" in said
    ), said
    for step in (["run", plan, "--phase", "pilot"], ["verify", plan, "--phase", "pilot"],
                 ["run", plan, "--phase", "bulk-1"], ["verify", plan]):  # fmt: skip
        assert run([*step, *where], capsys)[0] == 0, step


def test_verifying_an_unfinished_phase_says_first_that_it_is_unfinished_and_how_to_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the cause (a run stopped, objects that failed) was buried under one
    `not_done` line an object and a hint to "fix what the findings name"."""
    import sqlite3

    plan, where = finished_local_copy(tmp_path, capsys)
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        db.execute("UPDATE transfers SET state='pending' WHERE key IN ('f3.txt', 'f4.txt')")
        db.execute("UPDATE transfers SET state='failed', error='refused' WHERE key = 'f5.txt'")
    db.close()
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(["verify", plan, "--phase", "bulk-1", *where], capsys)
    assert code == 12, err
    first = out.splitlines()[1]  # under the verdict, before the findings
    assert "3 object(s) not copied and proven yet: phase bulk-1 is unfinished" in first, out
    assert f"`migrate status {plan} --failed` says why" in first, out
    assert err.startswith("migrate: error: verification of phase bulk-1 failed (3 not_done)")
    assert f"finish the phase first: `migrate run {plan} --phase bulk-1` (objects that " in err
    # a failure a run again cannot mend fails again: what to mend is named first
    assert f"failed: mend what `migrate status {plan} --failed` names first), then verify" in err
    assert "fix what the findings name" not in err, err
    assert_one_line_without_secret(out, err)


def test_a_failed_verification_says_so_in_one_line_and_the_phase_is_no_longer_verified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    assert run(["verify", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    copied = sorted((tmp_path / "dst").rglob("*.txt"))
    copied[0].unlink()  # lost at the destination after its verification
    code, out, err = run(["verify", plan, "--phase", "bulk-1", *where], capsys)
    assert code == 12 and "missing" in out, out
    assert err.startswith("migrate: error: verification of phase bulk-1 failed (1 missing)")
    assert_one_line_without_secret(out, err)
    # The hint names the plan file as typed: a command to paste, not a template.
    assert f"will be copied again by `migrate run {plan} --phase bulk-1`" in err, err
    code, out, _ = run(["status", plan, "--json", *where], capsys)
    answer = json.loads(out)
    assert answer["phases"]["bulk-1"]["verified_at"] is None
    assert {c["state"]: c["objects"] for c in answer["counts"] if c["phase"] == "bulk-1"} == {
        "done": 28,
        "pending": 1,
    }
    # status --failed lists it, found wrong and why: a script reads it as it reads failures
    # (it saw no line, only a count on stderr).
    code, out, err = run(["status", plan, "--failed", "--phase", "bulk-1", *where], capsys)
    name = f"data/{copied[0].name}"
    assert code == 0 and err == "", err
    [line] = out.splitlines()
    assert line.startswith(f"bulk-1\tfound_wrong\t{name}\t") and "missing" in line, line
    code, out, _ = run(["status", plan, "--failed", "--json", *where], capsys)
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["state"], row["container"] + "/" + row["key"]) == ("found_wrong", name), row
    assert code == 0 and "missing" in row["reason"], row
    # The same run again copies back what was lost (and only that), and it verifies.
    again = ["run", plan, "--phase", "bulk-1", "--force", "--reason", "lost copy", "--json"]
    code, out, err = run([*again, *where], capsys)  # forced: the fixture's pilot has not run
    assert code == 0, err
    assert json.loads(out)["copied"] == 1
    code, out, _ = run(["status", plan, "--json", *where], capsys)
    forced = json.loads(out)["phases"]["bulk-1"]["forced_reason"]
    assert forced == "test; then: lost copy"  # each reason kept, the fixture's first
    assert copied[0].read_bytes() == (tmp_path / "src" / "data" / copied[0].name).read_bytes()
    assert run(["verify", plan, "--phase", "bulk-1", *where], capsys)[0] == 0


def test_verify_says_its_mode_and_a_sample_its_share_and_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A seed is said where it decided something (a sample), with the sample's share."""
    plan, where = finished_local_copy(tmp_path, capsys)
    code, out, _ = run(["verify", plan, "--phase", "bulk-1", "--sample", "50%", "--seed", "3",
                        *where], capsys)  # fmt: skip
    assert code == 0 and "(stored, a 50% sample, seed 3): passed" in out, out
    code, out, _ = run(["verify", plan, "--phase", "bulk-1", "--deep", *where], capsys)
    assert code == 0 and "(deep): passed" in out and "seed" not in out, out


def test_deep_takes_both_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["verify", str(tmp_path / "p.yaml"), "--deep=all"], capsys)
    assert code == 3 and "--deep takes no value but `both`" in err, err
    assert_one_line_without_secret(out, err)
    # `--deep both`, as one would type it, is told the one spelling that works.
    code, out, err = run(["verify", str(tmp_path / "p.yaml"), "--deep", "both"], capsys)
    assert code == 2 and "write --deep=both, in one word" in err, err
    assert_one_line_without_secret(out, err)


def test_an_option_before_the_command_is_told_where_it_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate --debug run ...` said only "No such option: --debug" (a walkthrough)."""
    code, out, err = run(["--debug", "run", str(tmp_path / "p.yaml")], capsys)
    assert code == 2, err
    assert "options go after the command's name: migrate run ... --debug" in err, err
    assert_one_line_without_secret(out, err)


def test_a_run_with_failed_objects_says_so_in_one_line_and_exits_11(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)  # the pilot holds one object
    for f in (tmp_path / "src" / "data").glob("*.txt"):
        f.unlink()  # gone at the source since the inventory: the pilot's copy fails
    code, out, err = run(["run", plan, "--phase", "pilot", *where], capsys)
    assert code == 11, (out, err)
    assert err.startswith("migrate: error: phase pilot: 1 of 1 objects failed"), err
    assert_one_line_without_secret(out, err)
    code, out, _ = run(["status", plan, "--json", *where], capsys)
    assert {c["state"] for c in json.loads(out)["counts"] if c["phase"] == "pilot"} == {"failed"}


def test_a_usage_error_is_one_line_that_says_where_to_look(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for args, where in (
        (["run", "p.yaml", "--phase", "pilot", "--concurrency", "abc"], "migrate run --help"),
        (["verify", "p.yaml", "--bogus"], "migrate verify --help"),
        (["runn"], "migrate --help"),
    ):
        code, out, err = run(args, capsys)
        assert code == 2, err
        assert err.startswith("migrate: error: ") and f"(see `{where}`)" in err, err
        assert_one_line_without_secret(out, err)


def test_an_option_value_out_of_range_is_a_configuration_error_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Usage (exit 2) is a command's shape: an unknown option, a value of the wrong type.
    A value of the right type that cannot be used is a configuration error (exit 3), the
    same for every option (--seed and --small were 2, the others 3: found by a review)."""
    for args, named in (
        (["verify", "p.yaml", "--sample", "5%", "--seed", "-1"], "--seed -1"),
        # Beyond what the state records: refused before the verification, not after it.
        (["verify", "p.yaml", "--sample", "5%", "--seed", "9" * 23], "--seed 999"),
        (["demo", "--small", "0"], "--small 0"),
        (["verify", "p.yaml", "--sample", "500%"], "--sample '500%': a share is above 0%"),
    ):
        code, out, err = run(args, capsys)
        assert code == 3, (args, err)
        assert err.startswith("migrate: error: ") and named in err, err
        assert_one_line_without_secret(out, err)


def test_an_option_given_as_another_options_value_is_refused_and_recorded_nowhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--reason --json` made click take `--json` as the reason: a forced cutover ran,
    the audit record said it was forced for "--json", and no JSON was printed."""
    plan, where = finished_local_copy(tmp_path, capsys)
    for args in (
        ["plan", "approve", plan, "--by", "--json"],
        ["run", plan, "--phase", "cutover", "--force", "--reason", "--json"],
        ["verify", plan, "--phase", "--json"],
    ):
        code, out, err = run([*args, *where], capsys)
        assert code == 2, (args, err)
        assert "needs a value, and was given the option --json" in err, err
        assert error_object(out)["kind"] == "UsageError"
        assert_one_line_without_secret(out, err)
    code, out, _ = run(["plan", "show", plan, *where, "--json"], capsys)
    assert code == 0 and "--json" not in json.dumps(json.loads(out)["approval"])
    code, out, _ = run(["status", plan, *where, "--json"], capsys)
    answer = json.loads(out)
    assert code == 0 and answer["phases"]["cutover"]["forced_reason"] is None
    assert not [c for c in answer["counts"] if c["phase"] == "cutover"]


def test_a_failure_whose_reader_went_away_keeps_its_exit_code_without_a_traceback(
    tmp_path: Path,
) -> None:
    """`migrate ... --json | head -1`: the error object cannot be written; the exit code
    is still the failure's, and stderr still one line."""
    import subprocess
    import sys

    migrate_bin = Path(sys.executable).parent / "migrate"
    sites = local_sites(tmp_path)
    shell = f"{migrate_bin} status {tmp_path / 'nope.yaml'} --sites {sites} --json | true"
    done = subprocess.run(
        ["bash", "-c", shell + '; echo "rc=${PIPESTATUS[0]}" >&2'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stderr.endswith("rc=9\n"), done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 2, done.stderr


def test_a_command_whose_reader_left_goes_on_to_its_own_end_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate ... | head -1`, the reader gone before the output is written: the rest of
    the output is dropped and the command goes on as if it were read. rich exited 1 (an
    unexpected error, by the README); then every command stopped at once, 130: a run
    stopped copying, recorded as an unexpected BrokenPipeError, and a failure's own code
    and line were lost (a tampered plan shown as if nothing were wrong)."""
    import subprocess
    import sys

    plan, where = finished_local_copy(tmp_path, capsys)
    migrate_bin = str(Path(sys.executable).parent / "migrate")

    def unread(*args: str, unbuffered: bool = False) -> tuple[int, str]:
        read, write = os.pipe()
        os.close(read)  # `| head -1` gone
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        env |= {"PYTHONUNBUFFERED": "1"} if unbuffered else {}
        try:
            done = subprocess.run(
                [migrate_bin, *args], stdout=write, stderr=subprocess.PIPE, text=True,
                timeout=120, cwd=tmp_path, env=env,
            )  # fmt: skip
        finally:
            os.close(write)
        return done.returncode, done.stderr

    assert unread("providers") == (0, "")
    assert unread("--help") == (0, "")  # click's own output
    assert unread("plan", "show", plan, *where) == (0, "")
    # A finished phase run again: the receipt's answer (before the CLI loads), and the
    # CLI's "nothing to do" (an option the receipt does not answer for).
    for unbuffered in (False, True):  # the broken pipe met at exit, or at once
        assert unread("run", plan, "--phase", "bulk-1", *where, unbuffered=unbuffered) == (0, "")
        again = ["run", plan, "--phase", "bulk-1", "--max-rps", "50", *where]
        assert unread(*again, unbuffered=unbuffered) == (0, "")
    # A run keeps copying to its end (a delta's first line is printed before it copies),
    # and is recorded as any other.
    (tmp_path / "src" / "data" / "f3.txt").write_text("changed since the copy\n")
    code, err = unread("run", plan, "--phase", "delta", "--force", "--reason", "t", *where)
    assert (code, err) == (0, ""), err
    assert (tmp_path / "dst" / "data" / "f3.txt").read_text() == "changed since the copy\n"
    with Ledger(tmp_path / "state") as ledger:
        history, _ = ledger.runs("plan", 10)
    assert [(r.phase, r.outcome) for r in history][-1:] == [("delta", "completed")], history
    # A failure after some output: its own code, and its line on stderr.
    edited = Path(plan).read_text().replace("    GET: 30\n", "    GET: 3\n")
    assert edited != Path(plan).read_text()
    Path(plan).write_text(edited)
    code, err = unread("plan", "show", plan, *where)
    assert code == 9 and "does not match its digest" in err, (code, err)


def test_ctrl_c_while_the_cli_loads_is_an_interruption_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys
    import types

    from migrate.main import main as entry

    class Loading(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise KeyboardInterrupt  # Ctrl-C while `migrate.cli` is imported

    monkeypatch.setitem(sys.modules, "migrate.cli", Loading("migrate.cli"))
    code = entry(["status", "p.yaml", "--json"])
    captured = capsys.readouterr()
    assert code == 130 and "interrupted" in captured.err
    assert json.loads(captured.out)["error"]["exit_code"] == 130


def local_sites(tmp_path: Path, extra: str = "") -> Path:
    """A sites file with one local site, its state under tmp_path/state."""
    (tmp_path / "store").mkdir(exist_ok=True)
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'state_dir = "{tmp_path / "state"}"\n{extra}'
        f'[sites.s]\nprovider = "local"\npath = "{tmp_path / "store"}"\n'
    )
    return sites


def error_object(out: str) -> dict[str, object]:
    """The one JSON object --json prints for a failure (json.loads fails on two)."""
    assert len(out.splitlines()) == 1, out  # one line, as the failure's stderr line
    answer = json.loads(out)
    assert set(answer) == {"error"}, answer
    error = answer["error"]
    assert isinstance(error, dict) and set(error) == {"exit_code", "kind", "message", "hint"}
    return error


def test_under_json_every_failure_is_also_one_json_object_on_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script reading --json gets an object it can read for a failure too: the exit code,
    the kind, the message and the hint of the stderr line (kept), redacted as it is."""
    sites = local_sites(tmp_path)
    missing = str(tmp_path / "nope.yaml")
    code, out, err = run(["plan", "show", missing, "--json"], capsys)
    assert code == 9
    error = error_object(out)
    assert (error["exit_code"], error["kind"]) == (9, "PlanError")
    assert error["message"] == f"plan {missing} not found"
    assert error["hint"] == "create one with `migrate plan`"
    assert_one_line_without_secret(out, err)

    code, out, err = run(["inventory", "nosuch", "--sites", str(sites), "--json"], capsys)
    assert code == 3 and error_object(out)["kind"] == "ConfigError", (out, err)
    assert_one_line_without_secret(out, err)

    # A usage error, when --json can be read on the command line.
    code, out, err = run(["run", missing, "--phase", "p", "--concurrency", "x", "--json"], capsys)
    assert code == 2, err
    error = error_object(out)
    assert (error["exit_code"], error["kind"]) == (2, "UsageError")
    assert error["hint"] == "see `migrate run --help`"
    assert err.startswith("migrate: error: ") and "(see `migrate run --help`)" in err

    # An unexpected error: the same, its text redacted as on stderr.
    key_id = "AKIA" + "IOSFODNN7EXAMPLE"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"boom near {key_id}")

    monkeypatch.setattr("migrate.cli.load_plan", broken)
    code, out, err = run(["plan", "show", missing, "--json"], capsys)
    assert code == 1
    error = error_object(out)
    assert (error["exit_code"], error["kind"]) == (1, "UnexpectedError")
    assert error["message"] == "RuntimeError: boom near AKIA***"
    assert key_id not in out + err and "Traceback" not in err
    # Without --json, stdout stays empty.
    code, out, err = run(["plan", "show", missing], capsys)
    assert code == 1 and out == "" and err.startswith("migrate: unexpected error: RuntimeError")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("migrate.cli.load_plan", interrupted)
    code, out, err = run(["plan", "show", missing, "--json"], capsys)
    assert code == 130 and err == INTERRUPTED_LINE + "\n"
    assert "(run the same command again: a run or an inventory resumes" in err  # not verify
    assert error_object(out) == {
        "exit_code": 130,
        "kind": "Interrupted",
        "message": "interrupted",
        "hint": "run the same command again: a run or an inventory resumes where it stopped",
    }
    # The same when Ctrl-C comes before the CLI loads (the re-run receipt's look-up).
    import migrate.main

    monkeypatch.setattr("migrate.rerun.answer", interrupted)
    assert migrate.main.main(["run", missing, "--phase", "p", "--json"]) == 130
    assert error_object(capsys.readouterr().out)["kind"] == "Interrupted"


@pytest.mark.parametrize("raised", ["store", "oserror"])
def test_a_secret_in_a_stores_answer_is_written_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: str,
) -> None:
    """A store's error that repeats a credential (a secret read from the environment, an
    Azure key or SAS, a SigV4 signature): neither the failure's line, nor --json, nor the
    state, nor the report, nor --debug's traceback carries it. Redaction is the second
    guard (messages are written without secrets); nothing tested it (a mutation audit)."""
    from migrate.errors import Permanent, register_secret

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    secrets = [
        CANARY,  # a value the sites file's variables gave (registered as they are read)
        "AccountKey=" + "Zm9vYmFyYmF6cXV4" * 4,
        "SharedAccessSignature=sv=2024&sig=" + "c2lnbmF0dXJl" * 3,
        "Signature=" + "ab12" * 16,
        "Credential=" + "AKIA" + "IOSFODNN7EXAMPLE/20261205/eu-west-3/s3/aws4_request",
    ]
    register_secret(CANARY)
    said = "; ".join(secrets)

    def refused(*args: object, **kwargs: object) -> None:
        raise Permanent(f"the store answered 403: {said}", hint=f"it also said {said}")

    def broken(*args: object, **kwargs: object) -> None:
        # Not one of migrate's errors: recorded as an I/O error, from its own text.
        raise OSError(f"the store answered 403: {said}")

    monkeypatch.setattr(
        "providers.local.LocalAdapter.open_range", refused if raised == "store" else broken
    )
    code, out, err = run(["run", plan, "--phase", "bulk-1", "--force", "--reason", "t",
                          "--json", *where], capsys)  # fmt: skip
    assert code == 11 and "the store answered 403" in out, out
    assert main(["report", plan, "-o", str(tmp_path / "rep"), *where]) == 0
    monkeypatch.setattr("migrate.cli.load_plan", refused)
    code, debug_out, debug_err = run(["plan", "show", plan, "--debug"], capsys)
    assert code == 6 and "Traceback" in debug_err, debug_err  # a store failing: 6
    written = b"".join(f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())
    for secret in (CANARY, *(s.split("=", 1)[1][:20] for s in secrets[1:])):
        assert secret not in out + err + debug_out + debug_err, secret
        assert secret.encode() not in written, secret


def test_an_errors_kind_is_its_family_one_per_exit_code() -> None:
    """A script matching on --json's `kind` sees the same kind for the same failure whatever
    the command that met it, and however precisely it was told (a wrong key was
    KeyRejected from one command, CredentialsRejected from another: a walkthrough)."""
    assert errors.kind_of(errors.KeyRejected("k")) == "CredentialsRejected"
    assert errors.kind_of(errors.PlanTampered("t")) == "PlanError"
    assert errors.kind_of(errors.StateUnwritable("s")) == "ConfigError"
    assert errors.kind_of(errors.DemoBusy("d")) == "PlanBusy"
    assert errors.kind_of(errors.ChecksumMismatch("c")) == "IntegrityError"
    # a subclass with a code of its own is a family of its own
    assert errors.kind_of(errors.SecretInConfig("s")) == "SecretInConfig"
    kinds: dict[int, set[str]] = {}
    for cls in _subclasses(errors.MigrateError):
        kinds.setdefault(cls.exit_code, set()).add(errors.kind_of(cls("x")))
    assert all(len(names) == 1 for names in kinds.values()), kinds


def _subclasses(cls: type[errors.MigrateError]) -> list[type[errors.MigrateError]]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_a_command_whose_json_says_what_failed_prints_no_second_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify with findings (12) and run with failed objects (11) print their result under
    --json: that object alone, not followed by an error object."""
    plan, where = finished_local_copy(tmp_path, capsys)
    sorted((tmp_path / "dst").rglob("*.txt"))[0].unlink()
    code, out, err = run(["verify", plan, "--phase", "bulk-1", "--json", *where], capsys)
    assert code == 12, err
    assert json.loads(out)["passed"] is False  # one object: its result
    assert_one_line_without_secret(out, err)
    for f in (tmp_path / "src" / "data").glob("*.txt"):
        f.unlink()  # the pilot's object is gone at the source: its copy fails
    code, out, err = run(["run", plan, "--phase", "pilot", "--json", *where], capsys)
    assert code == 11, err
    answer = json.loads(out)
    # The shape of every phase's answer (a delta's adds what it found in `delta`), and a
    # failure named as `status --failed --json` names it.
    assert answer["failed"] == 1 and answer["delta"] is None, answer
    assert (answer["verified"], answer["ready"], answer["checklist"]) == (None, None, [])
    (failure,) = answer["failures"]
    assert set(failure) == {"container", "key", "reason"} and failure["container"] == "data"
    assert_one_line_without_secret(out, err)


def test_status_shows_a_plan_edited_by_hand_with_a_warning_and_bad_yaml_says_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    code, out, err = run(["status", plan, *where, "--json"], capsys)
    assert code == 0 and json.loads(out)["edited"] is False
    text = Path(plan).read_text()
    assert "policy: eu-residency" in text
    Path(plan).write_text(text.replace("policy: eu-residency", "policy: fr-health"))
    code, out, err = run(["status", plan, *where, "--json"], capsys)
    assert code == 0 and json.loads(out)["edited"] is True  # a script is told too
    assert "was edited after it was made" in err and "run and verify refuse it" in err
    # The reviewer sees it too, then why it is refused.
    code, out, err = run(["plan", "show", plan, *where], capsys)
    assert code == 9 and "policy fr-health" in out and "edited by hand?" in err, err
    # An edit that sends a dataset elsewhere: said so, not "save it under another name".
    bucket = load_plan(Path(plan), check_digest=False).mappings[0].destination_bucket
    Path(plan).write_text(text.replace(f"destination_bucket: {bucket}", "destination_bucket: zz"))
    code, out, err = run(["status", plan, *where], capsys)
    assert code == 9 and "was edited after it was made" in err and f"dst:{bucket}/" in err, err
    assert "another name" not in err and "put the file back" in err
    assert_one_line_without_secret(out, err)
    Path(plan).write_text(text + "phases: [\n")
    code, out, err = run(["status", plan, *where], capsys)
    lines = text.count("\n")
    assert code == 9 and f"not valid YAML (ParserError, line {lines + 2})" in err, err
    assert "generate the plan again" in err
    assert_one_line_without_secret(out, err)


def test_a_plan_path_that_is_a_directory_or_not_text_gives_one_line_and_exit_9(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sites = local_sites(tmp_path)
    code, out, err = run(["plan", "show", str(tmp_path)], capsys)
    assert code == 9 and f"plan {tmp_path} is a directory" in err, err
    assert_one_line_without_secret(out, err)
    bad = tmp_path / "badplan.yaml"
    bad.write_bytes(b"name: p\n\xff\xfe\x00binary")
    code, out, err = run(["status", str(bad), "--sites", str(sites)], capsys)
    assert code == 9 and f"{bad}: not a plan (not UTF-8 text" in err, err
    assert_one_line_without_secret(out, err)


def test_a_plan_of_another_schema_version_is_refused_by_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its digest made again to match does not help: show, approve, run and status refuse
    it (exit 9), naming both versions. A plan without schema_version is not taken for
    version 1."""
    import yaml

    from migrate.plan import SCHEMA_VERSION, Plan, save_plan, with_digest

    plan, where = finished_local_copy(tmp_path, capsys)
    raw = yaml.safe_load(Path(plan).read_text(encoding="utf-8"))
    future = tmp_path / "future.yaml"
    save_plan(
        with_digest(Plan.model_validate(raw).model_copy(update={"schema_version": 99})), future
    )
    for args in (
        ["plan", "show", str(future)],
        ["plan", "approve", str(future), *where],
        ["run", str(future), "--phase", "pilot", *where],
        ["status", str(future), *where],
    ):
        code, out, err = run(args, capsys)
        assert code == 9, (args, err)
        assert f"plan schema version 99, this migrate reads schema version {SCHEMA_VERSION}" in err
        assert "use the migrate version that wrote it" in err
        assert_one_line_without_secret(out, err)
    unversioned = tmp_path / "unversioned.yaml"
    text = Path(plan).read_text(encoding="utf-8")
    assert f"\nschema_version: {SCHEMA_VERSION}\n" in text
    unversioned.write_text(text.replace(f"\nschema_version: {SCHEMA_VERSION}\n", "\n"))
    code, out, err = run(["plan", "show", str(unversioned)], capsys)
    assert code == 9 and "no schema_version" in err, err
    assert_one_line_without_secret(out, err)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('state_dir = ["a", "b"]\n', "state_dir: should be the path of a directory"),
        ("state_dir = 5\n", "state_dir: should be the path of a directory"),
        ("catalog = 5\n", "catalog: should be a list of file paths"),
        ('catalog = "nofile.yaml"\n', "catalog: should be a list of file paths"),
    ],
)
def test_a_state_dir_or_catalog_of_the_wrong_type_gives_exit_3_and_makes_nothing(
    line: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "store").mkdir()
    sites = tmp_path / "sites.toml"
    sites.write_text(f'{line}[sites.s]\nprovider = "local"\npath = "{tmp_path / "store"}"\n')
    code, out, err = run(["inventory", "s", "--sites", str(sites)], capsys)
    assert code == 3 and said in err and str(sites) in err, err
    assert_one_line_without_secret(out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sites.toml", "store"]


def test_an_access_key_id_written_as_a_toml_key_is_refused_and_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_id = "AKIA" + "IOSFODNN7EXAMPLE"
    sites = tmp_path / "sites.toml"
    for text in (
        f'[sites.a]\nprovider = "scaleway"\n[sites.a.credentials]\n{key_id} = "x"\n',
        f'[sites.{key_id}]\nprovider = "scaleway"\n',
    ):
        sites.write_text(text)
        for args in (["inventory", "a"], ["sites", "check", "--json"]):
            code, out, err = run([*args, "--sites", str(sites)], capsys)
            assert code == 4, (text, out, err)
            assert key_id not in out + err, (out, err)
            assert_one_line_without_secret(out, err)


def damage_state(state: Path, how: str) -> None:
    import sqlite3

    if how in ("not a database", "truncated to nothing"):
        for leftover in state.parent.glob("state.db-*"):  # the write-ahead log beside it
            leftover.unlink()
        # SQLite reads an empty file as a new database: it was taken for a state holding
        # nothing of the plan (a walkthrough)
        state.write_bytes(b"not a database at all\n" * 200 if how == "not a database" else b"")
        return
    if how == "another tool's database":
        for leftover in state.parent.glob("state.db*"):
            leftover.unlink()
        with sqlite3.connect(state) as db:
            db.execute("CREATE TABLE foo (x)")
        return
    with sqlite3.connect(state) as db:
        if how == "a table dropped":
            db.execute("DROP TABLE transfers")
        else:  # another tool's file, whose approvals table is not migrate's
            db.execute("DROP TABLE schema_migrations")
            db.execute("DROP TABLE approvals")
            db.execute("CREATE TABLE approvals (id INTEGER PRIMARY KEY, ticket TEXT)")


@pytest.mark.parametrize(
    "how",
    [
        "a table dropped",
        "another tool's file",
        "another tool's database",
        "not a database",
        "truncated to nothing",
    ],
)
def test_a_damaged_state_or_another_tools_is_one_line_naming_the_file_exit_3(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    state = tmp_path / "state" / "state.db"
    damage_state(state, how)
    for args in (["status", plan], ["plan", "approve", plan], ["run", plan, "--phase", "pilot"]):
        code, out, err = run([*args, *where, "--json"], capsys)
        assert code == 3, (args, err)
        assert f"state file {state} is damaged or not migrate's" in err, err
        assert "move it aside" in err and "restore it" in err
        assert "directory you can write to" not in err
        assert error_object(out)["kind"] == "ConfigError"
        assert_one_line_without_secret(out, err)


def test_a_state_damaged_in_its_middle_is_not_reported_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A page overwritten mid-file opens well: `report` failed deep in its reads with an
    unexpected error, exit 1 (an audit). It checks the whole file first: exit 3, naming it."""
    plan, where = finished_local_copy(tmp_path, capsys)
    state = tmp_path / "state" / "state.db"
    size = state.stat().st_size
    page = 4096
    assert size >= 6 * page, size
    with state.open("r+b") as f:  # a page well past the header and the schema's
        f.seek((size // page // 2) * page)
        f.write(bytes(range(256)) * (page // 256))
    code, out, err = run(["report", plan, "-o", str(tmp_path / "rep"), *where, "--json"], capsys)
    assert code == 3, (out, err)
    assert f"state file {state} is damaged" in err and "restore it from a backup" in err, err
    assert error_object(out)["kind"] == "ConfigError"
    assert_one_line_without_secret(out, err)
    assert not (tmp_path / "rep" / "report.json").exists()


def test_a_missing_state_is_said_and_not_made_again_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status and report on a state directory removed made a new empty state, and read it
    as one holding nothing of the plan, pointing at another sites file (a walkthrough)."""
    import shutil

    plan, where = finished_local_copy(tmp_path, capsys)
    shutil.rmtree(tmp_path / "state")
    state = tmp_path / "state" / "state.db"
    for args in (["status", plan], ["report", plan, "-o", str(tmp_path / "rep")]):
        code, out, err = run([*args, *where, "--json"], capsys)
        assert code == 3 and f"no state file at {state}" in err, (args, err)
        assert error_object(out)["kind"] == "ConfigError"
        assert_one_line_without_secret(out, err)
        assert not (tmp_path / "state").exists()
    # A state_dir that is a file: said so, not "no state file at FILE/state.db" (a review).
    (tmp_path / "state").write_text("not a directory")
    code, out, err = run(["status", plan, *where], capsys)
    assert code == 3 and f"state directory {tmp_path / 'state'} is a file" in err, err


def test_a_plan_lock_on_a_file_system_without_locks_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOLCK (some NFS mounts) was an unexpected error, exit 1 (a review): said as the
    state directory's, exit 3, before anything is copied."""
    import errno
    import fcntl

    plan, where = finished_local_copy(tmp_path, capsys, run=False)

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    code, out, err = run(["run", plan, "--phase", "bulk-1", "--force", "--reason", "t",
                          *where], capsys)  # fmt: skip
    assert code == 3 and "cannot be taken there (No locks available)" in err, err
    assert_one_line_without_secret(out, err)
    assert not list((tmp_path / "dst").rglob("*.txt"))


def test_a_state_whose_write_lock_another_process_holds_is_one_line_exit_14_and_reads_go_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command opened the state with a write transaction and failed after 5 s as an
    unexpected error (exit 1) while another process held its write lock, status and
    report too (a walkthrough): those read on; a write waits, then says so (exit 14)."""
    import sqlite3

    import migrate.ledger

    plan, where = finished_local_copy(tmp_path, capsys)
    monkeypatch.setattr(migrate.ledger, "BUSY_SECONDS", 0.2)
    state = tmp_path / "state" / "state.db"
    holder = sqlite3.connect(state, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        code, out, err = run(["status", plan, "--json", *where], capsys)
        assert code == 0 and json.loads(out)["plan"] == "plan", err
        code, out, err = run(["plan", "approve", plan, "--json", *where], capsys)
        assert code == 14, err
        assert f"state file {state} is held by another process's write" in err, err
        assert error_object(out)["kind"] == "PlanBusy"
        assert_one_line_without_secret(out, err)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run(["plan", "approve", plan, *where], capsys)[0] == 0


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("--max-rps=nan", "--max-rps nan: give a finite number"),
        ("--max-rps=inf", "--max-rps inf: give a finite number"),
        ("--concurrency=99999999", "--concurrency 99999999: at most 256"),
        ("--concurrency=257", "--concurrency 257: at most 256"),
        ("--part-size-mib=100000", "--part-size-mib 100000: at most 5,120"),
        # A request a day, or a byte a minute, ran and printed nothing: it looked hung.
        ("--max-rps=1e-9", "--max-rps 1e-09: at least 0.1 requests per second"),
        ("--bwlimit=0.0000001B/s", "--bwlimit 0.0000001B/s: at least 1,000 bytes per second"),
    ],
)
def test_run_options_without_a_real_limit_or_beyond_the_bound_give_exit_3(
    option: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """NaN passed the `<= 0` check and limited nothing; a concurrency of 99,999,999 built
    that many threads. Both are refused before anything is read."""
    sites = local_sites(tmp_path)
    code, out, err = run(
        ["run", str(tmp_path / "plan.yaml"), "--phase", "pilot", option, "--sites", str(sites)],
        capsys,
    )
    assert code == 3 and said in err, err
    assert_one_line_without_secret(out, err)


def test_run_help_gives_the_concurrency_bound(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    assert "1 to 256" in " ".join(capsys.readouterr().out.split())


def test_an_endpoint_with_an_invalid_port_is_refused_when_the_sites_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("T_KEY", "k")
    monkeypatch.setenv("T_SECRET", CANARY)
    sites = write_sites(tmp_path, "http://127.0.0.1:99999", "b")
    for args in (["inventory", "dest"], ["sites", "check"]):
        code, out, err = run([*args, "--sites", str(sites)], capsys)
        assert code == 3, (args, out, err)
        assert "sites.dest.endpoint: 'http://127.0.0.1:99999' has no valid port" in err, err
        assert_one_line_without_secret(out, err)


def test_a_destination_the_policy_blocks_now_gets_no_request_though_the_plan_is_approved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan was approved under the facts of its day; the sites file now says the
    destination (or the runner) is in the US (a fact corrected). Run and dry run refuse it
    (exit 8, what and why), nothing is copied; put back, the run copies."""
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    sites = Path(where[1])
    approved = sites.read_text()
    sites.write_text(approved.replace("[sites.dst]\n", '[sites.dst]\ncountry = "US"\n'))
    run = ["run", plan, "--phase", "bulk-1", "--force", "--reason", "test", *where]
    for dry in ([], ["--dry-run"]):
        assert main([*run, *dry]) == 8
        err = capsys.readouterr().err
        assert "destination dst is FAIL under policy eu-residency now" in err, err
        assert "made under other facts; no request is sent to the stores" in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert list((tmp_path / "dst").rglob("*.txt")) == []
    # Nor is the plan approved under these facts (a walkthrough: approved, only the run
    # refused), as it stands or made again.
    assert main(["plan", "approve", plan, "--by", "someone", *where]) == 8
    err = capsys.readouterr().err
    assert "made under other facts; it is not approved" in err, err
    # `plan show` says a run refuses it (it said "approved by ...": a walkthrough).
    assert main(["plan", "show", plan, "--json", *where]) == 0
    approval = json.loads(capsys.readouterr().out)["approval"]
    assert approval["approved"] is False and "but a run refuses it now" in approval["detail"]
    # The same for the machine that runs migrate, whose bytes stream through it.
    sites.write_text(approved + '[runner]\nlocation = "US"\n')
    assert main(run) == 8
    err = capsys.readouterr().err
    assert "the runner (runner.location) is FAIL under policy eu-residency now" in err, err
    sites.write_text(approved)
    assert main(run) == 0
    assert len(list((tmp_path / "dst").rglob("*.txt"))) == 29


def test_a_site_whose_endpoint_changed_after_approval_gets_no_request(
    tmp_path: Path,
    seaweed: SeaweedFS,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The allowlist is the approved plan's: a site's endpoint edited in the sites file
    since (another host, the same store behind it) gets nothing, from a run, a dry run or
    a verify, and the run stops at once, naming the site and the host (exit 10; every
    object failed at its first request: a mutation audit)."""
    from tests.faultproxy import fault_proxy

    plan, sites = approved_seaweed_to_local(tmp_path, seaweed, bucket, monkeypatch, capsys)
    where = ["--sites", str(sites)]
    with fault_proxy(seaweed.endpoint) as other:  # another host:port, the same store behind
        sites.write_text(sites.read_text().replace(seaweed.endpoint, other.endpoint))
        refused = f"site dest's requests would go to {endpoint_host(other.endpoint)}, which "
        for command in (["run", plan, "--phase", "bulk-1"], ["run", plan, "--phase", "bulk-1",
                        "--dry-run"], ["verify", plan]):  # fmt: skip
            code, _, err = run([*command, *where], capsys)
            said = " ".join(err.split())
            assert code == 10 and refused + "plan p does not allow" in said, (command, err)
            assert err.count("\n") == 1, err
        assert other.faults.requests == 0
    assert list((tmp_path / "copy").rglob("*.csv")) == []
    # A finished phase too: it answered "nothing to do", exit 0 (a walkthrough).
    sites.write_text(sites.read_text().replace(other.endpoint, seaweed.endpoint))
    assert run(["run", plan, "--phase", "bulk-1", *where], capsys)[0] == 0
    sites.write_text(sites.read_text().replace(seaweed.endpoint, "http://localhost:9"))
    code, _, err = run(["run", plan, "--phase", "bulk-1", *where], capsys)
    assert code == 10 and "plan p does not allow" in " ".join(err.split()), err


def test_a_site_pointed_at_the_other_sites_host_gets_no_request(
    tmp_path: Path,
    seaweed: SeaweedFS,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Both hosts of the plan are on its allowlist; the source's endpoint edited to the
    destination's sent the source's requests, and its credentials, to the destination's
    operator (a secrets and routing review). Each site is bound to its own host."""
    from tests.faultproxy import fault_proxy

    plan, sites = approved_seaweed_to_local(tmp_path, seaweed, bucket, monkeypatch, capsys)
    where = ["--sites", str(sites)]
    with fault_proxy(seaweed.endpoint) as other:  # the destination's host: another port
        # A second S3 site at the other host, the plan's destination: made, approved.
        (tmp_path / "far").mkdir()
        far_site = write_sites(tmp_path / "far", other.endpoint, bucket).read_text()
        far_site = far_site.replace("[sites.dest]", "[sites.far]").replace(
            f'buckets = ["{bucket}"]', f'bucket_prefix = "far-{bucket[:20]}-"'
        )
        sites.write_text(sites.read_text() + far_site)
        plan = str(tmp_path / "p2.yaml")
        for args in (["plan", "--from", "dest", "--to", "far", "--policy", "eu-residency",
                      "--no-pilot", "-o", plan], ["plan", "approve", plan]):  # fmt: skip
            assert run([*args, *where], capsys)[0] == 0
        allowed = load_plan(Path(plan)).allowlist
        assert {endpoint_host(seaweed.endpoint), endpoint_host(other.endpoint)} <= set(allowed)
        before = other.faults.requests
        # The source now names the destination's host: on the allowlist, not the source's.
        sites.write_text(sites.read_text().replace(seaweed.endpoint, other.endpoint))
        refused = (
            f"site dest's requests would go to {endpoint_host(other.endpoint)}, where plan p2 "
            f"sends that site's to {endpoint_host(seaweed.endpoint)}"
        )
        for command in (["run", plan, "--phase", "bulk-1"], ["run", plan, "--phase", "bulk-1",
                        "--dry-run"], ["verify", plan]):  # fmt: skip
            code, _, err = run([*command, *where], capsys)
            said = " ".join(err.split())
            assert code == 10 and refused in said, (command, err)
        assert other.faults.requests == before


def test_a_run_of_a_plan_whose_container_the_sites_file_no_longer_lists_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The inventory leaves out a container taken out of the sites file: a phase not run
    yet would take none of its objects, a delta see none of its changes. Every run and dry
    run of a plan that copies it is refused, naming it (exit 3), before any request (not
    verify: it checks the copies made)."""
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    sites = Path(where[1])
    sites.write_text(sites.read_text().replace('buckets = ["data"]', 'buckets = ["other"]'))
    run = ["run", plan, "--phase", "bulk-1", "--force", "--reason", "test", *where]
    for dry in ([], ["--dry-run"]):
        assert main([*run, *dry]) == 3
        err = capsys.readouterr().err
        assert "no longer lists 'data', which plan" in err and "add it back" in err, err
    assert list((tmp_path / "dst").rglob("*.txt")) == []
    # Verify compares what was copied: not refused for it.
    main(["verify", plan, *where])
    assert "no longer lists" not in capsys.readouterr().err


def test_status_failed_lists_every_object_not_copied_with_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report names 100 failures a phase; `status --failed` lists them all, one a line
    (JSON Lines with --json), from the ledger alone, for a script to act on."""
    import sqlite3

    plan, where = finished_local_copy(tmp_path, capsys)
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        db.execute("UPDATE transfers SET state='failed', error='no room left' "
                   "WHERE key GLOB 'f1*' AND phase = 'bulk-1'")  # fmt: skip
        db.execute("UPDATE transfers SET state='changed', error='changed at the source' "
                   "WHERE key = 'f2.txt' AND phase = 'bulk-1'")  # fmt: skip
        bulk = {k for (k,) in db.execute("SELECT key FROM transfers WHERE phase = 'bulk-1'")}
    db.close()
    assert main(["status", plan, "--failed", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = sorted({"f1.txt", *(f"f1{n}.txt" for n in range(10)), "f2.txt"} & bulk)
    assert len(expected) >= 10
    assert [line.split("\t")[2] for line in lines] == [f"data/{k}" for k in expected]
    assert lines[0].split("\t") == ["bulk-1", "failed", "data/f1.txt", "no room left"]
    assert main(["status", plan, "--failed", "--json", "--phase", "bulk-1", *where]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["key"] for r in rows] == expected
    assert rows[-1] == {"phase": "bulk-1", "container": "data", "key": "f2.txt",
                        "destination_bucket": rows[-1]["destination_bucket"],
                        "destination_key": "f2.txt", "state": "changed",
                        "reason": "changed at the source", "attempts": 1}  # fmt: skip
    with Ledger(tmp_path / "state") as ledger:  # read a page at a time: all, in order
        assert [r.key for r in ledger.not_copied(load_plan(Path(plan)).name, page=3)] == expected
    # A key may hold a newline or a tab: still one line, four columns.
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        db.execute("UPDATE transfers SET key = 'a\\b\nc\td.txt' WHERE key = 'f2.txt'")
    db.close()
    assert main(["status", plan, "--failed", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(expected) and all(len(x.split("\t")) == 4 for x in lines)
    assert "data/a\\\\b\\x0ac\\x09d.txt" in [x.split("\t")[2] for x in lines]
    assert main(["status", plan, "--failed", "--phase", "nope", *where]) == 9
    assert main(["status", plan, "--phase", "bulk-1", *where]) == 2  # a usage error
    capsys.readouterr()
    # None left: no line for a script; a person is told so.
    assert main(["status", plan, "--failed", "--phase", "pilot", *where]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "No object of plan" in err and "phase pilot" in err, err
    assert "Not copied yet" not in err, err
    # To a script, nothing at all: no line on stdout, no sentence on stderr.
    assert main(["status", plan, "--failed", "--phase", "pilot", "--json", *where]) == 0
    assert capsys.readouterr() == ("", "")
    # A run stopped under way (Ctrl-C) leaves its object in progress: not "nothing left".
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:
        db.execute("UPDATE transfers SET state='done' WHERE phase = 'bulk-1'")
        db.execute("UPDATE transfers SET state='in_progress' WHERE key = 'f3.txt'")
    db.close()
    assert main(["status", plan, "--failed", "--phase", "bulk-1", *where]) == 0
    out, err = capsys.readouterr()
    err = " ".join(err.split())
    assert out == "" and "Not copied yet: 0 pending, 1 in progress:" in err, err
    # bulk-1 was run past its gate (the pilot is not verified): so is the command offered.
    assert f"`migrate run {plan} --phase bulk-1 --force --reason '...'` copies them" in err, err


def test_status_names_its_state_and_says_whether_in_progress_is_a_live_run_or_a_stopped_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator reading "in progress" after a Ctrl-C must not wait for a run that is not
    there: status names the state it read, a live run (the plan's lock holder) by what it
    does, and otherwise says the objects were left by a stopped run and how to finish."""
    import sqlite3

    from migrate.planlock import lock_path, plan_lock

    plan, where = finished_local_copy(tmp_path, capsys)
    state = (tmp_path / "state").resolve()
    assert main(["status", plan, *where]) == 0
    assert "No run is under way." in capsys.readouterr().out  # said, not left to guess
    with sqlite3.connect(state / "state.db") as db:
        db.execute("UPDATE transfers SET state='in_progress' WHERE key IN ('f3.txt', 'f4.txt')")
    db.close()
    monkeypatch.setenv("COLUMNS", "200")  # the table and its lines unfolded
    assert main(["status", plan, *where]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"State: {state / 'state.db'}" in out, out
    assert "No run is under way: the 2 object(s) in progress were left by a run" in out
    # The command that passes the phase's gate (bulk-1 was forced: the pilot not verified).
    assert f"migrate run {plan} --phase bulk-1 --force --reason '...'" in out, out
    assert main(["status", plan, "--json", *where]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == str(state / "state.db") and shown["running"] is None

    plan_name = shown["plan"]
    with plan_lock(state, plan_name, "run --phase bulk-1"):  # a live holder: this process
        assert main(["status", plan, *where]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"Under way now: pid {os.getpid()}: run --phase bulk-1, since" in out, out
        assert "No run is under way" not in out
        assert main(["status", plan, "--json", *where]) == 0
        answer = json.loads(capsys.readouterr().out)
        running = answer["running"]
        assert running.startswith(f"pid {os.getpid()}: run --phase bulk-1"), running
        # The same in fields, for a script: no parsing of the line.
        process = answer["running_process"]
        assert (process["pid"], process["command"], process["phase"]) == (
            os.getpid(),
            "run",
            "bulk-1",
        ), process
        assert process["since"].startswith("20") and process["line"] == running
        assert main(["status", plan, "--failed", "--phase", "bulk-1", *where]) == 0
        err = " ".join(capsys.readouterr().err.split())
        assert f"2 in progress (under way now: pid {os.getpid()}" in err, err
        assert "copies them" not in err, err
    # A verification copies nothing: the objects in progress are still a stopped run's.
    with plan_lock(state, plan_name, "verify"):
        assert main(["status", plan, *where]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"Under way now: pid {os.getpid()}: verify, since" in out, out
        assert "No run of these phases is under way: the 2 object(s) in progress" in out, out
        assert main(["status", plan, "--json", *where]) == 0
        process = json.loads(capsys.readouterr().out)["running_process"]
        assert (process["command"], process["phase"]) == ("verify", None), process
    # A holder killed with kill -9 leaves its line in the lock file, not its lock (and its
    # pid may be another process's by now: here, this one's).
    lock_path(state, plan_name).write_text(f"pid {os.getpid()}: run --phase bulk-1, since x")
    assert main(["status", plan, "--json", *where]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["running"] is None and answer["running_process"] is None


def _steps_to_list_not_copied(tmp_path: Path, n: int, phase: str | None) -> int:
    """SQLite VM steps (thousands) for `status --failed`'s reading of `n` failed objects."""
    import sqlite3

    d = tmp_path / f"s{n}-{phase}"
    with Ledger(d):
        pass
    db = sqlite3.connect(d / "state.db")
    db.executemany(
        "INSERT INTO transfers (plan, container, key, phase, dataset, size, "
        "destination_bucket, destination_key, state, error) "
        "VALUES ('p', 'c', ?, 'bulk-1', 'd', 1, 'b', ?, 'failed', 'x')",
        ((f"k{i:08d}", f"k{i:08d}") for i in range(n)),
    )
    db.commit()
    db.close()
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    with Ledger(d) as ledger:
        ledger._db.set_progress_handler(tick, 1000)
        assert sum(1 for _ in ledger.not_copied("p", phase)) == n
        ledger._db.set_progress_handler(None, 0)
    return steps[0]


@pytest.mark.parametrize("phase", [None, "bulk-1"])
def test_status_failed_reads_each_page_without_reading_again_what_came_before(
    tmp_path: Path, phase: str | None
) -> None:
    """Four times the failed objects, about four times the work (not sixteen: each page
    re-read, and re-sorted, all before it; found by a review helper). Counted in SQLite's
    steps, not timed."""
    small = _steps_to_list_not_copied(tmp_path, 10_000, phase)
    large = _steps_to_list_not_copied(tmp_path, 40_000, phase)
    assert large / small < 6, f"10,000 failed: {small}k steps; 40,000: {large}k steps"


def test_a_plan_run_with_a_state_that_lacks_its_inventory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state moved aside (as its damaged-state hint suggests), or another sites file:
    the plan's phases would take nothing from it and pass, opening each gate on nothing
    (found by a black-box review). Approve, run and its dry run refuse it, exit 9, saying
    which inventory and which state; nothing is created at the destination."""
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    (tmp_path / "state").rename(tmp_path / "state-aside")
    assert main(["plan", "approve", plan, *where]) == 9
    assert "was made from inventory #1 of src" in capsys.readouterr().err
    # Approved in that state all the same (a version before this check): run refuses it.
    approved = load_plan(Path(plan))
    with Ledger(tmp_path / "state") as ledger:
        ledger.record_approval(approved.name, approved.digest, "someone", plan)
    for args in (
        ["run", plan, "--phase", "pilot"],
        ["run", plan, "--phase", "pilot", "--dry-run"],
        ["run", plan, "--phase", "bulk-1", "--force", "--reason", "t"],
    ):
        code = main([*args, *where])
        err = capsys.readouterr().err
        assert code == 9, (args, err)
        assert "was made from inventory #1 of src, which the state" in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert list((tmp_path / "dst").iterdir()) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_output_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """`--json > file` on a full disk: one line saying so, exit 3 (it was exit 1 and two
    chained tracebacks: found by a black-box review)."""
    import subprocess
    import sys

    migrate_bin = str(Path(sys.executable).parent / "migrate")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [migrate_bin, "providers", "--json"], stdout=full, stderr=subprocess.PIPE,
            text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "could not be written to standard output (No space left on device)" in done.stderr
    # The human output too (it was exit 1, "unexpected error": found by a review).
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [migrate_bin, "providers"], stdout=full, stderr=subprocess.PIPE,
            text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "the output could not be written (No space left on device)" in done.stderr
    # A command failing, its JSON error unwritable: its own line and code, still.
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [migrate_bin, "run", "no-such-plan.yaml", "--phase", "pilot", "--json"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
            cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "MIGRATE_SITES"},
        )  # fmt: skip
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    # Named with the directory it was looked for in.
    said = f"sites file sites.toml ({tmp_path.resolve() / 'sites.toml'}) not found"
    assert done.returncode == 3 and said in " ".join(done.stderr.split()), done.stderr


def test_output_to_a_closed_stdout_is_said_not_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate ... >&-`: print() drops what it is given when Python starts without a
    stdout: exit 0, the output lost (a review); the human output was an unexpected error."""
    import subprocess
    import sys

    migrate_bin = str(Path(sys.executable).parent / "migrate")
    for args in (["providers", "--json"], ["providers"]):
        done = subprocess.run(
            [migrate_bin, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            timeout=120, check=False, preexec_fn=lambda: os.close(1),
        )  # fmt: skip
        assert done.returncode == 3, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert "could not be written to standard output (it is closed)" in done.stderr
    # A command that failed keeps its own line and code (a review: its result, printed
    # first, turned exit 12 into 3 and its line was never said).
    plan, where = finished_local_copy(tmp_path, capsys)
    # A finished phase's answer, from its receipt (printed without the CLI): said too.
    for json_out in ([], ["--json"]):
        done = subprocess.run(
            [migrate_bin, "run", plan, "--phase", "bulk-1", *json_out, *where],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
            check=False, preexec_fn=lambda: os.close(1),
        )  # fmt: skip
        assert done.returncode == 3 and "(it is closed)" in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        if Path("/dev/full").exists():  # a full disk: the same line, not the command again
            with open("/dev/full", "w") as full:
                done = subprocess.run(
                    [migrate_bin, "run", plan, "--phase", "bulk-1", *json_out, *where],
                    stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
                )  # fmt: skip
            assert done.returncode == 3 and "(No space left on device)" in done.stderr
            assert done.stderr.count("\n") == 1, done.stderr
    for json_out in ([], ["--json"]):
        done = subprocess.run(
            [migrate_bin, "report", plan, "-o", str(tmp_path / "r"), "--require-verified",
             *json_out, *where],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
            check=False, preexec_fn=lambda: os.close(1),
        )  # fmt: skip
        assert done.returncode == 12 and "not verified" in done.stderr, done.stderr
        assert "standard output" not in done.stderr, done.stderr


def test_a_failure_whose_stderr_reader_went_away_keeps_its_exit_code(tmp_path: Path) -> None:
    """`migrate ... 2>&1 | head -1`: the error line meets a closed pipe. rich exited 1
    ("unexpected error", a newcomer's review); the command's own code stands."""
    import subprocess
    import sys

    migrate_bin = str(Path(sys.executable).parent / "migrate")
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [migrate_bin, "inventory", "x", "--sites", str(tmp_path / "none.toml")],
            stdout=subprocess.DEVNULL, stderr=write, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert done.returncode == 3  # the missing sites file's code, not 1


def test_a_run_refused_at_its_gate_is_on_the_record_and_copied_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attempt is part of the history an auditor reads (the report's `runs`): who tried
    bulk-1 before the pilot was verified, and that the gate stopped it."""
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    code, _, err = run(["run", plan, "--phase", "bulk-1", *where], capsys)
    assert code == 9 and "requires pilot to be verified first" in err, err
    with Ledger(tmp_path / "state") as ledger:
        (record,), count = ledger.runs("plan", 10)
        counts = {c.state for c in ledger.phase_counts("plan", "bulk-1")}
    assert count == 1 and record.phase == "bulk-1", record
    assert (record.outcome or "").startswith("stopped: phase bulk-1 requires pilot"), record
    assert record.counts.copied == 0 and "done" not in counts


def test_a_dry_run_says_when_the_phases_gate_would_refuse_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bulk-1 before the pilot is verified: the dry run shows what the run would copy and
    says the run would refuse to start (it showed a full table, and nothing else: found by
    a black-box review); with --force it would not. Nothing is written by either."""
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    dry = ["run", plan, "--phase", "bulk-1", "--dry-run", *where]
    assert main([*dry, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    refused = answer["gate_refused"]
    assert refused.startswith("phase bulk-1 requires pilot to be verified first"), refused
    # and the run's own error object, for a script to match (an automation walkthrough)
    gate = answer["gate_error"]
    assert (gate["exit_code"], gate["kind"]) == (9, "PlanError"), gate
    assert gate["message"].startswith("phase bulk-1 requires pilot") and gate["hint"], gate
    # The pilot has not run: the way through starts with running it, not verifying it.
    assert f"(run `migrate run {plan} --phase pilot` then `migrate verify {plan}" in refused
    assert main(dry) == 0
    assert "The run would refuse to start: phase bulk-1 requires pilot" in capsys.readouterr().out
    assert main([*dry, "--json", "--force", "--reason", "t"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert forced["gate_refused"] is None and forced["gate_error"] is None
    with Ledger(tmp_path / "state") as ledger:
        assert ledger.phase_state(load_plan(Path(plan)).name, "bulk-1").started_at is None


def test_an_option_missing_that_another_needs_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, as the README's table says of a missing argument (they exited 3, a
    configuration error: a newcomer's review)."""
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    for args, said in (
        (["run", plan, "--phase", "bulk-1", "--force"], "--force needs --reason"),
        (["status", plan, "--phase", "bulk-1"], "--phase is for --failed"),
        (["status", plan, "--failed", "--routes"], "--routes and --failed show different"),
        (["plan", "--from", "src"], "migrate plan needs --from SITE --to SITE"),
        # an option that does nothing as given was taken without a word (a walkthrough)
        (["verify", plan, "--deep", "--sample", "5%"], "--deep re-reads every object"),
        (["verify", plan, "--deep=both", "--sample", "5%"], "--deep re-reads every object"),
        (["verify", plan, "--seed", "3"], "--seed is the seed of --sample"),
    ):
        code, out, err = run([*args, *where, "--json"], capsys)
        assert code == 2, (args, err)
        assert said in err and err.count("\n") == 1, err
        assert json.loads(out)["error"]["kind"] == "UsageError"


def test_status_and_report_say_when_the_state_holds_nothing_of_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With another sites file (another state, without the plan's sites) status showed a
    plan with nothing done and report wrote one, exit 0, without a word; run said why it
    refused (a walkthrough). They still answer (an auditor's copy may be read so), and
    warn, naming the state and the sites missing."""
    plan, where = finished_local_copy(tmp_path, capsys)
    other = tmp_path / "other.toml"
    other.write_text(f'state_dir = "{tmp_path / "other-state"}"\n[sites.x]\nprovider = "local"\n'
                     f'path = "{tmp_path}"\n')  # fmt: skip
    Ledger(tmp_path / "other-state").close()  # a state of its own (none at all: exit 3)
    for args in (["status", plan], ["report", plan, "-o", str(tmp_path / "r")]):
        code, _, err = run([*args, "--sites", str(other)], capsys)
        assert code == 0, err
        assert "warning: the state " in err and "holds nothing of plan plan" in err, err
        assert "declares no site src nor dst" in err and "--sites" in err, err
        code, _, err = run([*args, *where], capsys)  # its own: nothing to warn of
        assert code == 0 and "warning" not in err, err
    # A plan made and not approved yet: its inventory is the state's, nothing to warn of
    # (a review found the warning given to every fresh plan).
    fresh = tmp_path / "fresh"
    (fresh / "src" / "data").mkdir(parents=True)
    (fresh / "src" / "data" / "a.txt").write_text("a")
    mine = two_local_sites(fresh)
    made = str(fresh / "made.yaml")
    assert main(["inventory", "src", *mine]) == 0
    assert main(["plan", "--from", "src", "--to", "dst", "--policy", "eu-residency", "-o", made,
                 *mine]) == 0  # fmt: skip
    capsys.readouterr()
    code, _, err = run(["status", made, *mine], capsys)
    assert code == 0 and "warning" not in err, err
    # Another state whose inventory #1 is of a site of the same name (its own sites file,
    # the same names): not the plan's inventory. status warned of nothing, exit 0 and no
    # progress (an automation walkthrough), and a run would take its phases from it.
    twin = tmp_path / "twin"
    (twin / "src" / "data").mkdir(parents=True)
    (twin / "src" / "data" / "b.txt").write_text("b")
    theirs = two_local_sites(twin)
    # (in the same second as the plan's own inventory: a plan named it by its start, to
    # the second, which two states made at once shared; a review)
    assert main(["inventory", "src", *theirs]) == 0
    capsys.readouterr()
    code, _, err = run(["status", made, *theirs], capsys)
    assert code == 0 and "holds nothing of plan" in err, err
    # Nor is it approved there: the approval would have let a run take its phases from
    # that other inventory.
    code, _, err = run(["plan", "approve", made, *theirs], capsys)
    assert code == 9 and "which the state" in err and "does not hold" in err, err
    # That state with a plan of the same name of its own, approved (a rehearsal's state):
    # status showed its progress as this plan's without a word, and run sent the user to
    # approve this one there (a README check).
    twins = str(twin / "made.yaml")
    assert main(["plan", "--from", "src", "--to", "dst", "--policy", "eu-residency", "-o",
                 twins, *theirs]) == 0  # fmt: skip
    assert main(["plan", "approve", twins, *theirs]) == 0
    capsys.readouterr()
    code, _, err = run(["status", made, *theirs], capsys)
    assert code == 0 and "does not hold the inventory plan made was made from" in err, err
    code, _, err = run(["run", made, "--phase", "bulk-1", "--force", "--reason", "t", *theirs],
                       capsys)  # fmt: skip
    assert code == 9 and "which the state" in err and "does not hold" in err, err


def test_a_local_destination_whose_directory_is_missing_is_not_made_by_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in a local site's path: `sites check` said not found, and the run made the
    whole path and copied there, onto another disk perhaps (a walkthrough). Exit 7, the
    path named, nothing made."""
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    (tmp_path / "dst").rmdir()
    forced = ["run", plan, "--phase", "bulk-1", "--force", "--reason", "t", *where]
    # its dry run too: it said "Buckets to be created", then the run refused (a review)
    for dry in (["--dry-run"], []):
        code, _, err = run([*forced, *dry], capsys)
        assert code == 7, (dry, err)
        assert f"directory {tmp_path / 'dst'} does not exist" in err and "mkdir -p" in err, err
    assert not (tmp_path / "dst").exists()


def test_a_destination_with_no_space_left_stops_the_run_and_the_same_command_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full local disk failed every object left one by one (210 failures) and left its
    partial files under .migrate-tmp (a walkthrough). The run stops at the first (exit 6,
    saying so), nothing is recorded failed, no partial file stays, and the same command
    copies the rest once there is room."""
    import errno

    import providers.local

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    stored = providers.local._stored
    writes = [0]

    def filling(attrs: object) -> object:
        # The disk fills once an object's bytes are in its temporary file, as its
        # attributes are written beside it.
        writes[0] += 1
        if writes[0] > 5:  # room for five objects
            raise OSError(errno.ENOSPC, "No space left on device")
        return stored(attrs)  # type: ignore[arg-type]

    monkeypatch.setattr(providers.local, "_stored", filling)
    forced = ["run", plan, "--phase", "bulk-1", "--force", "--reason", "t", *where]
    code, _, err = run(forced, capsys)
    assert code == 6 and "no space left" in err and err.count("\n") == 1, err
    assert "then run the phase again" in err
    with Ledger(tmp_path / "state") as ledger:
        states = {c.state: c.objects for c in ledger.phase_counts("plan", "bulk-1")}
    assert "failed" not in states and 0 < states.get("done", 0) <= 5, states
    assert not any(p.is_file() for p in (tmp_path / "dst" / ".migrate-tmp").rglob("*"))
    monkeypatch.setattr(providers.local, "_stored", stored)  # room made
    code, out, err = run([*forced, "--json"], capsys)
    assert code == 0 and json.loads(out)["failed"] == 0, err


def test_an_output_path_through_a_file_names_that_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report -o` an existing file, `plan -o /dev/null/x.yaml`: "(File exists)" named no
    file (a walkthrough)."""
    plan, where = finished_local_copy(tmp_path, capsys)
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    for args, blocking in (
        (["report", plan, "-o", str(taken)], taken),
        (["report", plan, "-o", str(taken / "r")], taken),
        (["plan", "--from", "src", "--to", "dst", "--policy", "eu-residency", "-o",
          str(taken / "p.yaml")], taken),
    ):  # fmt: skip
        code, _, err = run([*args, *where], capsys)
        assert code == 3, err
        assert f"({blocking} is a file, where a directory is needed)" in err, err
    assert taken.read_text() == "mine"


def test_a_report_cut_by_a_full_disk_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`manifest.jsonl.gz.tmp` stayed behind a report the disk could not take (a
    walkthrough); a plan written in place would be left cut, over the good one."""
    import errno

    import migrate.manifest

    plan, where = finished_local_copy(tmp_path, capsys)
    out = tmp_path / "r"

    build = migrate.manifest._build

    def full(plan: object, ledger: object, out: object, path: object) -> object:
        if out is not None:  # the file's write, not the report's figures
            out.write(b"half a line")  # type: ignore[attr-defined]
            raise OSError(errno.ENOSPC, "No space left on device")
        return build(plan, ledger, out, path)  # type: ignore[arg-type]

    monkeypatch.setattr(migrate.manifest, "_build", full)
    code, _, err = run(["report", plan, "-o", str(out), *where], capsys)
    assert code == 3 and "No space left on device" in err, err
    assert [p.name for p in out.iterdir()] == []


def test_a_plan_path_that_reads_on_without_end_is_refused_not_read_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan show /dev/zero` read until the kernel killed it (exit 137, no word): a walkthrough."""
    import migrate.plan

    monkeypatch.setattr(migrate.plan, "MAX_PLAN_BYTES", 1024**2)
    code, _, err = run(["plan", "show", "/dev/zero"], capsys)
    assert code == 9 and "/dev/zero: not a plan (more than 1 MiB)" in err, err


def test_what_the_audit_record_keeps_is_one_line_that_says_something(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blank --reason passed the gate and was recorded; an approver's name holding a
    newline printed a made-up line under it wherever shown (a walkthrough). Refused, and
    nothing recorded; a value's edges are trimmed."""
    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    forced = ["run", plan, "--phase", "bulk-1", "--force", *where]
    for args, code, said in (
        ([*forced, "--reason", "   "], 2, "--force needs --reason"),
        ([*forced, "--reason", "ok\nInjected: line"], 3, "--reason: one line of text"),
        (["plan", "approve", plan, "--by", "ops\nInjected: line", *where], 3, "--by: one line"),
        (["plan", "approve", plan, "--by", " ", *where], 2, "--by is blank"),
    ):
        got, _, err = run(args, capsys)
        assert got == code and said in err and err.count("\n") == 1, (args, err)
    name = load_plan(Path(plan)).name
    with Ledger(tmp_path / "state") as ledger:
        assert ledger.phase_state(name, "bulk-1").started_at is None
        (approval,) = ledger.approvals(name)  # the helper's own, alone
        assert "Injected" not in approval.approved_by
    assert main([*forced, "--reason", "  pilot verified by hand  "]) == 0
    with Ledger(tmp_path / "state") as ledger:
        assert ledger.phase_state(name, "bulk-1").forced_reason == "pilot verified by hand"


def test_a_disk_error_that_is_not_the_outputs_is_not_told_as_the_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An I/O error reading a file is the command's own: not "the output could not be
    written" (a review found every ENOSPC or EIO told so)."""
    import errno

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("migrate.cli.load_plan", failing)
    code, _, err = run(["plan", "show", str(tmp_path / "p.yaml")], capsys)
    assert code == 1 and "output could not be written" not in err, err


@pytest.mark.parametrize(
    ("site", "said"),
    [
        ('provider = "scaleway"\nregion = "fr-xyz"',
         "site scw: region 'fr-xyz' is not one of Scaleway's regions the catalog knows (fr-par, "),
        ('provider = "scalewai"\nregion = "fr-par"', "site scw: unknown provider 'scalewai'"),
    ],
)  # fmt: skip
def test_a_region_or_provider_the_catalog_does_not_know_is_said_with_its_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], site: str, said: str
) -> None:
    sites = tmp_path / "sites.toml"
    sites.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[sites.scw]\n{site}\nbuckets = ["b"]\n'
        'credentials = { access_key_env = "K", secret_key_env = "S" }\n'
    )
    code, out, err = run(["inventory", "scw", "--sites", str(sites)], capsys)
    assert code == 3 and said in err, err
    assert_one_line_without_secret(out, err)


def test_an_inventory_under_a_prefix_says_the_table_is_the_whole_sites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        (tmp_path / "src" / "data" / name).mkdir(parents=True)
        (tmp_path / "src" / "data" / name / "x.txt").write_text(name)
    where = two_local_sites(tmp_path)
    assert run(["inventory", "src", *where], capsys)[0] == 0
    (tmp_path / "src" / "data" / "a" / "y.txt").write_text("new")
    code, out, _ = run(["inventory", "src", "--prefix", "a/", *where], capsys)
    said = " ".join(out.split())
    assert code == 0 and "1 added, 0 changed, 0 deleted" in said, said
    assert "This run listed only under 'a/' in each container; the table is the site's" in said


def test_a_plan_naming_a_site_its_review_did_not_judge_or_the_sites_file_lacks_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from migrate.plan import compute_digest, save_plan

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    made = load_plan(Path(plan))
    # Edited, its digest made again: the destination is not the site whose verdict the
    # approver saw.
    forged = made.model_copy(update={"destination": "nosuchsite"})
    save_plan(forged.model_copy(update={"digest": compute_digest(forged)}), Path(plan))
    for args in (["plan", "approve", plan], ["plan", "show", plan]):
        code, out, err = run([*args, *where], capsys)
        assert code == 9 and "its destination is 'nosuchsite', but its sites list no" in err
        assert_one_line_without_secret(out, err)
    assert "-> nosuchsite" in out  # shown to the reviewer, then refused
    # As made, but the sites file no longer has its destination: refused before approval.
    save_plan(made, Path(plan))
    sites = Path(where[1])
    sites.write_text(sites.read_text().replace("[sites.dst]", "[sites.dst2]"))
    code, out, err = run(["plan", "approve", plan, *where], capsys)
    assert code == 3 and "dst" in err, err
    assert_one_line_without_secret(out, err)


def test_a_state_removed_while_a_run_copies_is_said_and_no_empty_state_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every write of the run went to the file removed with its directory: the run does
    not end in success as if recorded (a walkthrough: exit 0, then a new empty state)."""
    (tmp_path / "src" / "data").mkdir(parents=True)
    (tmp_path / "src" / "data" / "big.bin").write_bytes(os.urandom(3 * 1024**2))
    where = two_local_sites(tmp_path)
    plan = str(tmp_path / "plan.yaml")
    for args in (["inventory", "src"], ["plan", "--from", "src", "--to", "dst", "--policy",
                 "eu-residency", "--no-pilot", "-o", plan], ["plan", "approve", plan]):  # fmt: skip
        assert run([*args, *where], capsys)[0] == 0
    migrate_bin = str(Path(sys.executable).parent / "migrate")
    copying = subprocess.Popen(
        [migrate_bin, "run", plan, "--phase", "bulk-1", "--bwlimit", "1MB/s", *where],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Removed once the run has its phase's objects in the state (it then copies for ~3 s
    # more at 1 MB/s): not before the run opened it, however slow the machine.
    db, deadline = tmp_path / "state" / "state.db", time.monotonic() + 60
    while time.monotonic() < deadline and copying.poll() is None:
        with (
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as ro,
        ):
            if ro.execute("SELECT COUNT(*) FROM transfers").fetchone()[0]:
                break
        time.sleep(0.05)
    shutil.rmtree(tmp_path / "state")
    out, err = copying.communicate(timeout=120)
    assert copying.returncode == 3, (out, err)
    assert "was removed or replaced while this command worked" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "state" / "state.db").exists()


def test_verify_says_a_rewritten_copy_needs_overwrite_before_the_run_refuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    copy = sorted((tmp_path / "dst").rglob("*.txt"))[0]
    copy.write_bytes(b"X" * copy.stat().st_size)  # same size, other bytes, no metadata
    code, _, err = run(["verify", plan, "--phase", "bulk-1", "--deep", *where], capsys)
    said = " ".join(err.split())
    assert code == 12 and "checksum_mismatch" in said, said
    assert "a conflict until that run is given --overwrite" in said, said


def test_verify_says_a_copy_found_wrong_whose_source_is_gone_cannot_be_copied_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, where = finished_local_copy(tmp_path, capsys)
    copy = sorted((tmp_path / "dst").rglob("*.txt"))[0]
    (tmp_path / "src" / "data" / copy.name).unlink()  # deleted at the source since
    assert run(["inventory", "src", *where], capsys)[0] == 0
    copy.write_bytes(b"X" * copy.stat().st_size)
    code, _, err = run(["verify", plan, "--phase", "bulk-1", "--deep", *where], capsys)
    said = " ".join(err.split())
    assert code == 12 and "1 of them deleted at the source since cannot be" in said, said


def test_a_dry_runs_table_gives_its_totals_and_leaves_out_datasets_without_objects() -> None:
    """192 datasets, 50 rows shown: the totals were in --json alone, and a delta's rows were
    mostly datasets it has nothing of (a walkthrough)."""
    from rich.console import Console

    from migrate import render
    from migrate.dryrun import DatasetDryRun, DryRunReport

    datasets = [DatasetDryRun(f"c/p{i:03d}/", "c", objects=2, bytes=20, would_copy=2,
                              would_copy_bytes=2048) for i in range(60)]  # fmt: skip
    datasets += [DatasetDryRun(f"c/z{i}/", "c") for i in range(7)]
    report = DryRunReport("p", "delta", "src", True, datasets, [])
    console = Console(record=True, width=200)
    render.print_dry_run(console, report)
    said = " ".join(console.export_text().replace("│", " ").split())
    assert "... 10 more datasets" in said and "total 120 120 (120.0 KiB) 0 0" in said, said
    assert "c/z" not in said and "7 datasets of the plan have no object in this phase" in said


def test_a_deltas_list_of_objects_deleted_at_the_source_says_how_many_more() -> None:
    """30 deleted, 20 named: the other 10 were not said to exist (a walkthrough)."""
    from rich.console import Console

    from migrate import render
    from migrate.delta import DeltaSummary
    from migrate.ledger import DeletedRow

    rows = [DeletedRow("c", f"k{i:02d}", "c", f"k{i:02d}", 1) for i in range(30)]
    console = Console(record=True, width=200)
    render.print_delta(console, DeltaSummary(0, 0, 30, rows))
    said = console.export_text()
    assert said.count("deleted at the source: c/k") == 20
    assert "... and 10 more deleted at the source (the report lists them" in said, said


def test_the_eta_of_many_small_objects_counts_the_objects_left() -> None:
    """The longer of what the bytes and the objects left take at their rates so far: 19
    of 8,499 small objects done with two thirds of the bytes (a large one among them) is
    most of the run to go, not 3 s of it (a walkthrough's run took 51 s)."""
    from migrate.cli import _eta

    assert _eta(412, 620, 19, 8_499, elapsed=5.0) == pytest.approx((8_499 - 19) * 5.0 / 19)
    assert _eta(600, 1_200, 5, 6, elapsed=10.0) == pytest.approx(10.0)  # one large left
    assert _eta(0, 1_200, 0, 6, elapsed=10.0) == 0.0  # nothing to go by yet


def test_a_copy_that_moves_nothing_says_so_while_it_waits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run waiting on a store that does not answer: its log says so each minute (here,
    each 0.5 s), rather than falling silent until the watchdog stops it; once bytes move,
    it stops saying so. The same under --json (no progress lines: stdout is the JSON, and
    a CI job may kill one silent too long); nothing for a phase answered from the ledger
    (quiet)."""
    from migrate.cli import _ProgressSubscriber

    with _ProgressSubscriber(False, stall_notice=0.5) as progress:
        progress.on_start(2, 200)
        # Two notices (at 0.5 s and 1 s), however late a loaded machine's watcher says them:
        # a fixed 1.8 s assumed it had woken in two of those spans meanwhile.
        waiting, deadline = "", time.monotonic() + 10
        while waiting.count("migrate: nothing moved for") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            waiting += capsys.readouterr().err
        progress.on_bytes(100)
        moved = time.monotonic()
        progress.on_object("a", "done")
        time.sleep(0.1)  # a notice the watcher was printing as the bytes came
        waiting += capsys.readouterr().err
        time.sleep(0.3)  # less than the notice's span, counted from the bytes
    paused = time.monotonic() - moved > 0.45  # a loaded machine's pause: no conclusion
    assert waiting.count("migrate: nothing moved for") >= 2, waiting
    assert "waiting on the stores" in waiting and "exit 6" in waiting, waiting
    assert paused or "nothing moved" not in capsys.readouterr().err
    with _ProgressSubscriber(False, stall_notice=0.2, lines=False) as json_out:
        json_out.on_start(2, 200)
        said, deadline = "", time.monotonic() + 10  # a loaded machine may be slow to say it
        while "nothing moved for" not in said and time.monotonic() < deadline:
            time.sleep(0.1)
            said += capsys.readouterr().err
        json_out._last -= 10  # a progress line would be due now
        json_out.on_bytes(100)
    said += capsys.readouterr().err
    assert "nothing moved for" in said and "objects" not in said, said
    with _ProgressSubscriber(True, stall_notice=0.2) as quiet:
        quiet.on_start(2, 200)
        time.sleep(0.5)
    assert capsys.readouterr().err == ""


_SELF_HOSTED = (
    'provider = "self-hosted"\nsoftware = "ceph-rgw"\nregion = "local"\ncountry = "FR"\n'
    'endpoint = "{}"\ncredentials = {{ access_key_env = "T_KEY", secret_key_env = "T_SECRET" }}\n'
)
_AZURE = (
    'provider = "azure"\nregion = "francecentral"\naccount = "nosuchaccount"\n'
    'endpoint = "{}"\ncredentials = {{ account_key_env = "T_SECRET" }}\n'
)


@pytest.mark.parametrize(
    ("site", "code", "said"),
    [
        # Without its scheme: how to write it.
        (_SELF_HOSTED.format("s3.example.fr"), 3, 'endpoint = "https://s3.example.fr"'),
        (_AZURE.format("s3.example.fr"), 3, 'endpoint = "https://s3.example.fr"'),
        # A host name mistyped, or a DNS that does not know it: said so (exit 6), not "no
        # answer", which sends one looking at a store that is up.
        (_SELF_HOSTED.format("https://s3.no-such-host.invalid"), 6, "does not resolve (DNS)"),
        (
            _AZURE.format("https://nosuchaccount.blob.no-such-host.invalid"),
            6,
            "does not resolve (DNS)",
        ),
    ],
    ids=["s3-no-scheme", "azure-no-scheme", "s3-dns", "azure-dns"],
)
def test_a_mistyped_endpoint_is_said_with_what_to_do(
    site: str, code: int, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("T_KEY", "key-id")
    monkeypatch.setenv("T_SECRET", "c2VjcmV0LWZvci10ZXN0cw==")
    sites = tmp_path / "sites.toml"
    sites.write_text(f'state_dir = "{tmp_path / "state"}"\n[sites.x]\n{site}buckets = ["bkt"]\n')
    got, out, err = run(["inventory", "x", "--sites", str(sites)], capsys)
    assert got == code and said in " ".join(err.split()), err
    assert_one_line_without_secret(out, err)


def test_status_json_says_whether_the_plan_is_approved_and_routes_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script reads from status whether run would take the plan as approved (a plan
    edited and digested again looked approved until run refused it), and routes only when
    asked: an empty list read as "no host contacted" (an automation walkthrough)."""
    from migrate import os_user
    from migrate.plan import save_plan, with_digest

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    code, out, _ = run(["status", plan, "--json", *where], capsys)
    answer = json.loads(out)
    assert code == 0 and answer["routes"] is None and answer["routes_outside_runs"] is None
    approval = answer["approval"]
    assert approval["approved"] is True and approval["approved_by"] == os_user()
    assert approval["digest"] == load_plan(Path(plan)).digest and approval["latest"] is None
    code, out, _ = run(["status", plan, "--json", "--routes", *where], capsys)
    answer = json.loads(out)
    # asked: lists (empty: a local site is no host)
    assert answer["routes"] == answer["routes_outside_runs"] == [], answer
    approved = load_plan(Path(plan)).digest

    # Edited, then given a digest of its own again: not the version approved.
    loaded = load_plan(Path(plan))
    options = loaded.options.model_copy(update={"bandwidth_bytes_per_second": 1e6})
    save_plan(with_digest(loaded.model_copy(update={"options": options})), Path(plan))
    code, out, _ = run(["status", plan, "--json", *where], capsys)
    approval = json.loads(out)["approval"]
    assert approval["approved"] is False and approval["latest"] == approved
    assert (approval["approved_by"], approval["approved_at"]) == (None, None)
    code, out, _ = run(["status", plan, *where], capsys)
    # The run's own line (one check, `check_approved`, for both).
    said = " ".join(out.split())
    assert code == 0 and "A run refuses this plan: plan plan is not the version that" in said
    assert json.loads(run(["status", plan, "--json", *where], capsys)[1])["approval"][
        "why_not"
    ].startswith("plan plan is not the version that was approved")
    code, _, err = run(["run", plan, "--phase", "bulk-1", *where], capsys)
    assert code == 9 and "not the version that was approved" in err, err
    # Nor does verify contact a store for it: the hosts it would reach are the edit's (a
    # secrets-and-routing review sent signed requests where an edited allowlist said).
    code, _, err = run(["verify", plan, *where], capsys)
    assert code == 9 and "not the version that was approved" in err, err
