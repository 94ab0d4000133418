"""The audit report and the manifest through real servers: the manifest is deterministic,
sorted and complete, and its Merkle roots follow RFC 6962; the standalone checker (the
standard library alone) passes on a good destination and fails, naming the object, on a
tampered one; report.json follows its checked-in schema and states what an auditor needs;
its status is "verified" only when the whole move is done and verified (a phase not run, a
failed latest verification, a dataset at the source outside the plan each leave it
"incomplete" and named in its open items); report.html renders in headless Chromium
offline, with no console message and no request leaving the file."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from migrate import os_user, tool_version
from migrate.delta import prepare_delta, remove_deleted
from migrate.errors import IntegrityError
from migrate.executor import run_phase
from migrate.inventory import run_inventory
from migrate.ledger import Ledger, RouteUse
from migrate.localservers import free_port
from migrate.manifest import MANIFEST_FILE, Merkle, manifest_info, write_manifest
from migrate.plan import Phase, PhaseKind, Plan, Selector, load_plan, with_digest
from migrate.report import (
    OutsidePlanDataset,
    Report,
    build_report,
    json_schema,
    render_html,
    to_json,
    write_report,
)
from migrate.verify import VerifyResult, verify
from providers.catalog import builtin_catalog
from tests.conftest import S3_KEY_ENV, S3_SECRET_ENV, SiteFactory
from tests.test_executor import ESTATE, SMALL_PARTS, Env, put

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT / "tools" / "check_manifest.py"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def env_for(site_for: SiteFactory, tmp_path: Path) -> Any:
    def make(source: str, destination: str) -> Env:
        return Env(site_for(source), site_for(destination), tmp_path)

    return make


# A delta phase after bulk-1, as the planner makes one.
DELTA = Phase(
    name="delta",
    kind=PhaseKind.DELTA,
    requires=("bulk-1",),
    selector=Selector(changed_since_copy=True),
)


def audited(env: Env, *later: Phase) -> Plan:
    """ESTATE copied, verified, approved, with a route recorded: what a report describes.
    `later`: phases the plan has after bulk-1 (not run here)."""
    env.seed(ESTATE)
    plan = env.plan()
    plan = with_digest(plan.model_copy(update={"phases": plan.phases + later}))
    assert env.run(plan).copied == len(ESTATE)
    with Ledger(env.state) as ledger:
        ledger.record_approval(plan.name, plan.digest, "dpo@example.org", "plans/t.yaml")
        result = verify(
            plan,
            ledger,
            env.source,
            env.destination,
            phase="bulk-1",
            deep=True,
            sample=None,
            seed=42,
        )
        assert result.passed, result.findings
        ledger.record_routes(
            plan.name,
            [
                RouteUse(
                    "127.0.0.1:8333",
                    "http",
                    12,
                    4096,
                    "2026-11-23T10:00:00+00:00",
                    "2026-11-23T10:00:05+00:00",
                )
            ],
        )
    return plan


def report_of(env: Env, plan: Plan) -> Report:
    with Ledger(env.state) as ledger:
        report = build_report(plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0")
    # Whatever state it describes, a report never contradicts itself by the checker's
    # cross-checks (which would then fail an honest report).
    data = json.loads(to_json(report))
    assert load_checker().contradictions(data, data["manifest"]) == []
    return report


def check(env: Env, plan: Plan, phase: str | None) -> VerifyResult:
    with Ledger(env.state) as ledger:
        return verify(plan, ledger, env.source, env.destination, phase=phase, deep=False,
                      sample=None, seed=7)  # fmt: skip


def run_checker(
    *args: str, env: dict[str, str] | None = None, unread: bool = False
) -> subprocess.CompletedProcess[str]:
    """`unread`: its stdout a pipe nobody reads any more (`| head -1` gone)."""
    # -I -S: isolated, no site-packages: proof that the script needs the standard library only.
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-I", "-S", str(CHECKER), *args],
            stdout=write if unread else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=env if env is not None else {"PATH": os.environ.get("PATH", "")},
        )
    finally:
        os.close(write)


def load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_manifest", CHECKER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checker_uses_nothing_newer_than_python_3_8() -> None:
    """The README promises an auditor's Python 3.8 runs it: its syntax parses as 3.8's, and
    it calls none of the methods 3.9 to 3.11 added that it could reach for (str.removeprefix crashed
    it under 3.8 on an unreachable store: a review)."""
    import ast

    source = CHECKER.read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 8))
    newer = {"removeprefix", "removesuffix", "file_digest", "bit_count", "cache", "lcm"}
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} & newer
    assert not used, used


# -- the Merkle construction -------------------------------------------------------------------


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962, section 2.1, written as the RFC states it (recursive)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = rfc6962_root(leaves[:k]), rfc6962_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_the_streaming_merkle_roots_are_rfc6962_in_both_implementations() -> None:
    checker = load_checker()
    for n in range(0, 40):
        leaves = [f'{{"n":{i}}}'.encode() for i in range(n)]
        ours, theirs = Merkle(), checker.Merkle()
        for leaf in leaves:
            ours.add(leaf)
            theirs.add(leaf)
        expected = rfc6962_root(leaves).hex()
        assert ours.root() == theirs.root() == expected, n


# -- the manifest ------------------------------------------------------------------------------


def test_the_manifest_is_deterministic_sorted_and_complete(env_for: Any, tmp_path: Path) -> None:
    env: Env = env_for("s3", "s3")
    plan = audited(env)
    with Ledger(env.state) as ledger:
        first = write_manifest(plan, ledger, tmp_path / "a" / MANIFEST_FILE)
        second = write_manifest(plan, ledger, tmp_path / "b" / MANIFEST_FILE)
        dry = manifest_info(plan, ledger)
    raw = (tmp_path / "a" / MANIFEST_FILE).read_bytes()
    assert raw == (tmp_path / "b" / MANIFEST_FILE).read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip MTIME zero
    assert first.sha256 == second.sha256 == dry.sha256 == hashlib.sha256(raw).hexdigest()

    lines = gzip.decompress(raw).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["destination_key"] for r in records} == set(ESTATE)
    order = [(r["dataset"], r["destination_bucket"], r["destination_key"]) for r in records]
    assert order == sorted(order)
    for line, record in zip(lines, records, strict=True):
        assert line == json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        data = ESTATE[record["source_key"]][0]
        assert record["size"] == len(data)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["source_container"] == env.container
        assert record["destination_bucket"] == env.bucket
        # A multipart source object has no native MD5: its proof is the bytes read.
        assert record["source_proof"] == ("none" if ESTATE[record["source_key"]][3] else "md5")
    assert first.objects == len(ESTATE)
    assert first.plan_root == rfc6962_root([line.encode() for line in lines]).hex()
    for d in first.datasets:
        mine = [
            ln.encode() for ln, r in zip(lines, records, strict=True) if r["dataset"] == d.dataset
        ]
        assert d.root == rfc6962_root(mine).hex() and d.objects == len(mine)


def test_the_standalone_check_passes_on_a_good_s3_destination_and_fails_on_a_tampered_one(
    env_for: Any, seaweed: Any, tmp_path: Path
) -> None:
    env: Env = env_for("s3", "s3")
    plan = audited(env)
    out = tmp_path / "report"
    with Ledger(env.state) as ledger:
        report = build_report(plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0")
        write_report(report, out, plan=plan, ledger=ledger)
    manifest, report_json = str(out / MANIFEST_FILE), str(out / "report.json")
    creds = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": os.environ[S3_KEY_ENV],
        "AWS_SECRET_ACCESS_KEY": os.environ[S3_SECRET_ENV],
    }
    s3 = ["--s3", seaweed.endpoint, "--region", "local"]

    good = run_checker(manifest, "--report", report_json, *s3, env=creds)
    assert good.returncode == 0, good.stdout + good.stderr
    assert f"plan root {report.manifest.plan_root}" in good.stdout
    assert good.stdout.strip().splitlines()[-1].startswith("OK: 5 objects")

    roots_only = run_checker(manifest, "--root", report.manifest.plan_root)
    assert roots_only.returncode == 0, roots_only.stdout

    key = "reports/2025/q1.csv"
    data = ESTATE[key][0]
    put(env.destination, env.bucket, key, bytes(b ^ 1 for b in data))
    bad = run_checker(manifest, "--report", report_json, *s3, env=creds)
    assert bad.returncode == 1
    failures = [ln for ln in bad.stdout.splitlines() if ln.startswith("FAIL ")]
    assert failures == [f"FAIL {env.bucket}/{key}: " + failures[0].split(": ", 1)[1]]
    assert "SHA-256" in failures[0]

    env.destination.delete(env.bucket, key)
    gone = run_checker(manifest, *s3, env=creds)
    assert gone.returncode == 1 and f"FAIL {env.bucket}/{key}: missing" in gone.stdout

    wrong = run_checker(manifest, *s3, env={**creds, "AWS_SECRET_ACCESS_KEY": "not-the-key"})
    # Stopped at the first refusal, in one line: not a FAIL line for every object.
    assert wrong.returncode == 2 and "FAIL" not in wrong.stdout, wrong.stdout
    assert wrong.stderr.count("\n") == 1 and "refused the credentials (HTTP 403" in wrong.stderr
    # A mistyped endpoint (nothing listens there): said once, never taken for tampering.
    nowhere = ["--s3", f"http://127.0.0.1:{free_port()}", "--region", "local"]
    astray = run_checker(manifest, *nowhere, env=creds)
    assert astray.returncode == 2 and "FAIL" not in astray.stdout, astray.stdout
    assert astray.stderr.count("\n") == 1 and "cannot reach the store at" in astray.stderr
    # A password typed in the endpoint: refused, not repeated (nor sent to a resolver).
    typed = ["--s3", f"http://u:QQPWDsecret@127.0.0.1:{free_port()}", "--region", "local"]
    leaked = run_checker(manifest, *typed, env=creds)
    assert leaked.returncode == 2 and "QQPWD" not in leaked.stderr + leaked.stdout
    assert "--s3 holds a user name or password" in leaked.stderr


def test_the_standalone_check_never_reads_another_file_than_the_key_names(
    tmp_path: Path,
) -> None:
    """In a directory, `a/../b` would read `b` (and `../x` a file outside it): such a key
    fails as one that cannot be checked there, and an object that cannot be checked for any
    reason fails alone, without stopping the check of the others."""
    data = b"the same bytes"
    (tmp_path / "d" / "bkt").mkdir(parents=True)
    (tmp_path / "d" / "bkt" / "b").write_bytes(data)
    (tmp_path / "d" / "bkt" / "ok").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    lines = [
        {"dataset": "x/", "destination_bucket": "bkt", "destination_key": key, "size": len(data),
         "sha256": sha}
        for key in ("a/../b", "nul\u0000", "ok", "p")
    ]  # fmt: skip
    del lines[3]["sha256"]  # a line cut or edited: a failure, not a traceback (an audit)
    text = "".join(
        json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        for r in lines
    )
    manifest = tmp_path / "manifest.jsonl.gz"
    manifest.write_bytes(gzip.compress(text.encode()))
    result = run_checker(str(manifest), "--dir", str(tmp_path / "d"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL bkt/a/../b: cannot be checked in a directory" in result.stdout
    assert "FAIL bkt/nul" in result.stdout
    assert "FAIL bkt/ok" not in result.stdout
    assert "FAIL bkt/p: the manifest line has no valid sha256" in result.stdout
    assert "Traceback" not in result.stderr
    assert "4 objects" in result.stdout
    assert "3 object problems and 0 manifest problems" in result.stdout


def test_the_standalone_check_reads_a_directory_and_catches_an_edited_manifest(
    env_for: Any, tmp_path: Path
) -> None:
    env: Env = env_for("s3", "local")
    plan = audited(env)
    out = tmp_path / "report"
    with Ledger(env.state) as ledger:
        report = build_report(plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0")
        write_report(report, out, plan=plan, ledger=ledger)
    manifest, report_json = out / MANIFEST_FILE, str(out / "report.json")
    root = str(env.destination_site.path)

    good = run_checker(str(manifest), "--report", report_json, "--dir", root)
    assert good.returncode == 0, good.stdout + good.stderr
    # What was copied checks out; whether the move is complete is the report's to say.
    assert "report status: verified" in good.stdout
    # Its reader gone (`| head -1`): the check goes on to its own code, with no traceback.
    unread = run_checker(str(manifest), "--report", report_json, "--dir", root, unread=True)
    assert (unread.returncode, unread.stderr) == (0, "")

    key = "imaging/medium.bin"
    path = Path(root, env.bucket, key)
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    bad = run_checker(str(manifest), "--report", report_json, "--dir", root)
    assert bad.returncode == 1
    unread = run_checker(str(manifest), "--report", report_json, "--dir", root, unread=True)
    assert (unread.returncode, unread.stderr) == (1, "")
    assert [ln.split(":")[0] for ln in bad.stdout.splitlines() if ln.startswith("FAIL ")] == [
        f"FAIL {env.bucket}/{key}"
    ]
    path.write_bytes(original)

    # A manifest line edited to match tampered bytes: the roots give it away.
    lines = gzip.decompress(manifest.read_bytes()).decode().splitlines()
    record = json.loads(lines[0])
    record["sha256"] = "0" * 64
    lines[0] = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    edited = tmp_path / "edited.jsonl.gz"
    edited.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    caught = run_checker(str(edited), "--report", report_json)
    assert caught.returncode == 1
    assert (
        "FAIL plan root" in caught.stdout and f"FAIL dataset {record['dataset']}" in caught.stdout
    )

    # A line dropped, and the report's roots forged to match the shorter manifest: its
    # count and the manifest file's hash, which the report names too, give it away.
    shorter = tmp_path / "shorter.jsonl.gz"
    shorter.write_bytes(gzip.compress(("\n".join(lines[1:]) + "\n").encode(), mtime=0))
    alone = run_checker(str(shorter))
    assert alone.returncode == 0 and "checked against itself only" in alone.stdout
    roots: dict[str | None, str] = {}
    for ln in alone.stdout.splitlines():
        if ln.startswith("plan root "):
            roots[None] = ln.split()[-1]
        elif ln.startswith("dataset "):
            roots[ln.removeprefix("dataset ").split(": ", 1)[0]] = ln.split()[-1]
    forged = json.loads(Path(report_json).read_text())
    forged["manifest"]["plan_root"] = roots[None]
    forged["manifest"]["datasets"] = [
        {**d, "root": roots[d["dataset"]]}
        for d in forged["manifest"]["datasets"]
        if d["dataset"] in roots
    ]
    forged_json = tmp_path / "forged.json"
    forged_json.write_text(json.dumps(forged))
    caught = run_checker(str(shorter), "--report", str(forged_json))
    assert caught.returncode == 1, caught.stdout
    fails = [ln for ln in caught.stdout.splitlines() if ln.startswith("FAIL ")]
    assert not [ln for ln in fails if " root " in ln], "the forged roots match"
    assert f"FAIL {len(lines) - 1} objects, the report says {len(lines)}" in fails
    assert "FAIL the manifest file's SHA-256 is not the one the report names" in fails
    # The manifest section's figures forged too: the report's totals still tell (an
    # auditor's review passed such a forgery).
    dropped = json.loads(lines[0])
    forged["manifest"].update(
        objects=len(lines) - 1,
        bytes=forged["manifest"]["bytes"] - dropped["size"],
        sha256=hashlib.sha256(shorter.read_bytes()).hexdigest(),
    )
    forged_json.write_text(json.dumps(forged))
    caught = run_checker(str(shorter), "--report", str(forged_json))
    assert caught.returncode == 1, caught.stdout
    fails = [ln for ln in caught.stdout.splitlines() if ln.startswith("FAIL ")]
    said = f"FAIL {len(lines) - 1} objects, the report's totals of what was copied say"
    assert [ln for ln in fails if ln.startswith(said)], fails
    # And the totals of what was copied forged too: the report's other figures (its totals'
    # parts, its phases, each dataset's copies) contradict them (an auditor's review
    # passed such a forgery).
    forged["totals"].update(done=len(lines) - 1, done_bytes=forged["manifest"]["bytes"])
    forged_json.write_text(json.dumps(forged))
    caught = run_checker(str(shorter), "--report", str(forged_json))
    assert caught.returncode == 1, caught.stdout
    fails = [ln for ln in caught.stdout.splitlines() if ln.startswith("FAIL ")]
    assert fails and all("the report contradicts itself" in ln for ln in fails), fails
    assert [ln for ln in fails if f"dataset {dropped['dataset']}: the report's phases" in ln]
    # A pipeline that takes only a verified move: the status is checked, not just echoed.
    assert run_checker(str(manifest), "--report", report_json, "--require-verified").returncode == 0
    unfinished = json.loads(Path(report_json).read_text())
    unfinished["status"] = "incomplete"
    forged_json.write_text(json.dumps(unfinished))
    refused = run_checker(str(manifest), "--report", str(forged_json), "--require-verified")
    assert refused.returncode == 1
    assert "FAIL the report's status is incomplete, not verified" in refused.stdout
    # The manifest itself is whole: its problems are not counted for the status.
    assert "0 object problems and 0 manifest problems; the report is not verified" in refused.stdout
    # The figures that would give a dropped line away taken out of the report, instead of
    # edited (an auditor's walkthrough passed it, exit 0): their absence fails the check.
    stripped = json.loads(forged_json.read_text())
    stripped["status"] = "verified"
    for key in ("sha256", "objects", "bytes"):
        del stripped["manifest"][key]
    del stripped["totals"], stripped["phases"]
    forged_json.write_text(json.dumps(stripped))
    caught = run_checker(str(shorter), "--report", str(forged_json))
    assert caught.returncode == 1, caught.stdout
    assert "the report lacks totals, phases (it): taken out?" in caught.stdout, caught.stdout
    assert "lacks objects, bytes, sha256 (its manifest section)" in caught.stdout
    # "verified" written over an incomplete report whose counts were made to agree: its
    # phases' verifications say otherwise (the same walkthrough).
    unverified = json.loads(Path(report_json).read_text())
    for phase in unverified["phases"]:
        phase["verified_at"] = None
    forged_json.write_text(json.dumps(unverified))
    caught = run_checker(str(manifest), "--report", str(forged_json), "--require-verified")
    assert caught.returncode == 1, caught.stdout
    assert "the report says verified, and phase bulk-1 is not run, not verified" in caught.stdout

    # "verified" over a report whose own figures say otherwise, each alone (a mutation
    # review: each check could go untested): a verification that failed, open items left,
    # objects not done (its totals' parts agreeing).
    def forged_verified(edit: Any) -> str:
        report = json.loads(Path(report_json).read_text())
        report["status"] = "verified"
        edit(report)
        forged_json.write_text(json.dumps(report))
        caught = run_checker(str(manifest), "--report", str(forged_json))
        assert caught.returncode == 1, caught.stdout
        return caught.stdout

    def failed_check(r: dict[str, Any]) -> None:
        next(p for p in r["phases"] if p.get("verification"))["verification"]["passed"] = False

    def not_done(r: dict[str, Any]) -> None:
        r["totals"].update(done=r["totals"]["done"] - 1, pending=r["totals"]["pending"] + 1)

    assert "its latest verification did not pass" in forged_verified(failed_check)
    said = forged_verified(lambda r: r.update(open_items=["something left"]))
    assert "lists open items or phases not run" in said
    assert "not every object of its totals is done" in forged_verified(not_done)
    # A dataset the manifest holds and the report does not name.
    said = forged_verified(lambda r: r["manifest"].update(datasets=r["manifest"]["datasets"][1:]))
    assert "is not in the report" in said, said
    # A manifest damaged in its compressed bytes or cut short: a mismatch (exit 1), said in
    # one line (a flipped byte was a zlib traceback; a cut file exit 2, a usage error).
    packed = manifest.read_bytes()
    for name, damaged in (
        ("flipped", packed[:40] + bytes([packed[40] ^ 0xFF]) + packed[41:]),
        ("cut", packed[: len(packed) // 2]),
    ):
        bad_file = tmp_path / f"{name}.jsonl.gz"
        bad_file.write_bytes(damaged)
        caught = run_checker(str(bad_file), "--report", report_json)
        assert caught.returncode == 1 and "Traceback" not in caught.stderr, caught
        assert "FAIL manifest: the file is damaged" in caught.stdout, caught.stdout


# -- report.json -------------------------------------------------------------------------------


def test_the_checked_in_schema_is_the_models_schema() -> None:
    checked_in = json.loads((ROOT / "reports" / "schema.json").read_text(encoding="utf-8"))
    assert checked_in == json_schema()


def conforms(value: Any, schema: dict[str, Any], defs: dict[str, Any], where: str = "$") -> None:
    """A small JSON Schema check (the keywords pydantic emits), so the schema is enforced
    without a third-party validator."""
    if "$ref" in schema:
        conforms(value, defs[schema["$ref"].rsplit("/", 1)[1]], defs, where)
        return
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                conforms(value, option, defs, where)
                return
            except AssertionError as exc:
                errors.append(str(exc))
        raise AssertionError(f"{where}: matches no option: {errors}")
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], where
    kind = schema.get("type")
    types = {
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "null": type(None),
        "array": list,
        "object": dict,
    }
    if kind is not None:
        assert isinstance(value, types[kind]), f"{where}: {value!r} is not {kind}"
        if kind in ("integer", "number"):
            assert not isinstance(value, bool), where
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            conforms(item, schema["items"], defs, f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            assert name in value, f"{where}: {name} missing"
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                conforms(item, props[name], defs, f"{where}.{name}")
            elif extra is False:
                raise AssertionError(f"{where}: unexpected {name}")
            elif isinstance(extra, dict):
                conforms(item, extra, defs, f"{where}.{name}")


def test_report_json_follows_its_schema_and_states_what_an_auditor_needs(
    env_for: Any, seaweed: Any, tmp_path: Path
) -> None:
    env: Env = env_for("s3", "s3")
    plan = audited(env)
    out = tmp_path / "report"
    with Ledger(env.state) as ledger:
        report = build_report(
            plan,
            ledger,
            builtin_catalog(),
            date(2026, 11, 23),
            "0.1.0",
            sites=env.config.sites,
            generated_by="auditor",
            now=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        )
        paths = write_report(report, out, plan=plan, ledger=ledger)
    assert sorted(p.name for p in paths) == [
        "SHA256SUMS", "manifest.jsonl.gz", "plan.yaml", "report.html", "report.json"]  # fmt: skip
    text = (out / "report.json").read_text(encoding="utf-8")
    data = json.loads(text)
    schema = json.loads((ROOT / "reports" / "schema.json").read_text(encoding="utf-8"))
    conforms(data, schema, schema["$defs"])
    try:
        import jsonschema
    except ImportError:
        pass
    else:
        jsonschema.validate(data, schema)

    assert data["plan"]["name"] == "t" and data["plan"]["digest"] == plan.digest
    assert (data["tool_version"], data["generated_by"]) == ("0.1.0", "auditor")
    assert data["generated_at"] == "2026-11-23T12:00:00+00:00"
    assert data["status"] == "verified"
    assert (data["open_items"], data["phases_not_run"], data["outside_plan"]) == ([], [], [])
    assert data["approvals"][0]["approved_by"] == "dpo@example.org"
    assert data["approvals"][0]["current"] is True

    sites = {s["role"]: s for s in data["sites"]}
    assert set(sites) == {"source", "destination", "runner"}
    assert sites["source"]["evaluated_from"] == "sites file"
    assert sites["source"]["reasons"], "a verdict explains itself"

    (phase,) = data["phases"]
    assert phase["name"] == "bulk-1" and phase["verified_at"]
    total = sum(len(v[0]) for v in ESTATE.values())
    assert phase["counts"]["done"] == phase["counts"]["objects"] == len(ESTATE)
    assert phase["counts"]["removed"] == 0
    assert phase["counts"]["done_bytes"] == total
    assert phase["counts"]["throughput_bytes_per_second"] > 0
    assert sum(d["counts"]["objects"] for d in phase["datasets"]) == len(ESTATE)
    # deep re-reads every object: no sample, so no seed (42 was given but picked nothing)
    assert phase["verification"]["passed"] is True and phase["verification"]["seed"] is None
    assert phase["verification"]["mode"] == "deep"
    # An S3 source's listing carries no metadata, and a deep verification reads only the
    # destination: nothing to compare metadata with, and the report says so.
    assert phase["verification"]["metadata_compared"] == 0
    assert data["verifications"][-1]["id"] == phase["verification"]["id"]

    manifest = data["manifest"]
    raw = (out / MANIFEST_FILE).read_bytes()
    assert manifest["sha256"] == hashlib.sha256(raw).hexdigest()
    assert manifest["objects"] == len(ESTATE) and manifest["bytes"] == total
    assert {d["dataset"] for d in manifest["datasets"]} == {d["dataset"] for d in phase["datasets"]}

    routes = [(r["host"], r["requests"], r["allowed_as"]) for r in data["routes"]]
    assert routes == [("127.0.0.1:8333", 12, "loopback")]
    # The page names the allowlist the contacted hosts are to be compared with (an
    # auditor's review found it in the JSON only).
    page = (out / "report.html").read_text()
    allowed = ", ".join(f"<code>{h}</code>" for h in plan.allowlist)
    assert "The plan's allowlist, the only hosts its runs" in page and allowed in page
    unproven = data["unproven_sources"]
    assert unproven["count"] == 1
    assert [o["source_key"] for o in unproven["objects"]] == ["imaging/big.tar"]
    assert sum(b["objects"] for b in data["timeline"]) == len(ESTATE)

    # No secret anywhere: the report names credentials by reference only.
    for secret in (seaweed.secret_key, seaweed.access_key):
        assert secret not in text
        assert secret not in (out / "report.html").read_text(encoding="utf-8")


def test_a_report_of_a_failed_phase_lists_failures_and_is_incomplete(
    env_for: Any, tmp_path: Path
) -> None:
    env: Env = env_for("s3", "s3")
    env.seed({k: v for k, v in ESTATE.items() if not v[3]})
    plan = with_digest(env.plan())
    with Ledger(env.state) as ledger:
        ledger.resolve_phase(plan, "bulk-1")
        ledger.transfer_not_done(
            plan.name, env.container, "top.txt", "failed", "Permanent: refused <b>(injected)</b>", 2
        )
        report = build_report(plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0")
    assert report.status == "incomplete"
    (phase,) = report.phases
    assert phase.counts.failed == 1 and phase.counts.pending == len(ESTATE) - 2
    assert [(f.key, f.reason) for f in phase.failures] == [
        ("top.txt", "Permanent: refused <b>(injected)</b>")
    ]
    assert report.open_items == (
        f"phase bulk-1: {len(ESTATE) - 1} of {len(ESTATE) - 1} objects not copied and proven "
        f"(1 failed, {len(ESTATE) - 2} still to copy)",
        "phase bulk-1 is not verified",
    )
    assert report.manifest.objects == 0
    assert report.manifest.plan_root == hashlib.sha256(b"").hexdigest()
    html = render_html(report)
    assert "never: no verification is recorded" in html
    assert "Permanent: refused &lt;b&gt;(injected)&lt;/b&gt;" in html
    assert "<b>(injected)" not in html  # every value is escaped


# -- the status: verified only when the whole move is ----------------------------------------


def test_an_object_found_wrong_after_its_copy_is_said_so_not_still_to_copy(
    env_for: Any,
) -> None:
    """A copy lost at the destination after its verification: the report says it was
    found wrong and will be copied again, not "still to copy" as if never copied."""
    env: Env = env_for("s3", "s3")
    plan = audited(env, DELTA)
    lost = "reports/2025/q1.csv"
    env.destination.delete(env.bucket, lost)
    result = check(env, plan, "bulk-1")
    assert result.counts == {"missing": 1}
    report = report_of(env, plan)
    assert (report.totals.found_wrong, report.totals.pending) == (1, 1)
    assert report.open_items[0] == (
        # "not copied" alone said of an object copied, then found wrong (an auditor)
        f"phase bulk-1: 1 of {len(ESTATE)} objects not copied and proven (1 found wrong at "
        "the destination by a verification, to copy again)"
    ), report.open_items
    # The checker holds the figure to its parts: more found wrong than pending is forged.
    data = json.loads(to_json(report))
    data["totals"]["found_wrong"] = 2
    assert load_checker().contradictions(data, data["manifest"]) == [
        "the report's totals say 2 objects found wrong to copy again, and only 1 pending"
    ]
    # Copied again, it is done: nothing found wrong is left.
    assert env.run(plan).copied == 1
    assert report_of(env, plan).totals.found_wrong == 0
    # Changed at the source since, it is the delta's to copy: changed, not found wrong
    # (verify keeps the reason of its earlier copy again on the row).
    put(env.source, env.container, lost, b"new bytes at the source")
    with Ledger(env.state) as ledger:
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert ledger.resolve_phase(plan, "delta") == 1  # as the delta's run begins
    report = report_of(env, plan)
    (_, later) = report.phases
    assert (later.counts.pending, later.counts.found_wrong) == (1, 0), later.counts
    assert "found wrong" not in " ".join(report.open_items), report.open_items


def test_a_verification_of_the_whole_plan_made_before_a_phase_ran_is_not_that_phases(
    env_for: Any,
) -> None:
    """A whole-plan verification that failed before the delta ran (the delta not run yet)
    was named the latest verification covering the delta, run after it (a walkthrough):
    the delta, run since and not verified, is said to be not verified."""
    env: Env = env_for("s3", "s3")
    plan = audited(env, DELTA)
    env.destination.delete(env.bucket, "reports/2025/q1.csv")  # lost after its verification
    assert not check(env, plan, None).passed  # the delta not run yet
    time.sleep(1.1)  # times are to the second: one in the same second counts as covering
    with Ledger(env.state) as ledger:
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        ledger.resolve_phase(plan, "delta")
        ledger.phase_mark(plan.name, "delta", "started_at")
    report = report_of(env, plan)
    (bulk, delta) = report.phases
    assert delta.verification is None and bulk.verification is not None
    items = " | ".join(report.open_items)
    assert "phase delta is not verified" in items, items
    assert "covering phases bulk-1, delta" not in items, items
    assert "the latest verification covering phase bulk-1 (#2, of the whole plan" in items


def test_a_phase_not_run_leaves_the_report_incomplete_and_removed_objects_are_counted(
    env_for: Any,
) -> None:
    env: Env = env_for("s3", "s3")
    decommission = Phase(name="decommission", kind=PhaseKind.DECOMMISSION, requires=("delta",))
    plan = audited(env, DELTA, decommission)

    # bulk-1 is copied and verified, and the report used to say "verified" here.
    report = report_of(env, plan)
    assert report.status == "incomplete"
    assert report.open_items == ("phase delta has not run",)
    assert report.phases_not_run == ("delta",)  # decommission: migrate runs it never
    page = render_html(report)
    assert "<li>phase delta has not run</li>" in page
    assert "Phases not run yet" not in page

    # One object deleted at the source, its copy removed by delta: counted as removed,
    # no longer as an object of the move.
    removed_key = "reports/2025/q1.csv"
    env.source.delete(env.container, removed_key)
    with Ledger(env.state) as ledger:
        assert prepare_delta(env.config, plan, ledger, env.source, phase="delta").deleted == 1
    # Reported while its copy is kept at the destination, an auditor's to see.
    kept = report_of(env, plan).deleted_at_source
    assert (kept.count, kept.objects) == (1, (f"{env.container}/{removed_key}",))
    assert f"{env.container}/{removed_key}" in render_html(report_of(env, plan))
    with Ledger(env.state) as ledger:
        assert remove_deleted(plan, ledger, env.source, env.destination) == 1
        summary = run_phase(plan, "delta", ledger, env.source, env.destination,
                            config=SMALL_PARTS, sleep=lambda s: None)  # fmt: skip
        assert (summary.objects, summary.failed) == (0, 0)
    # delta copied nothing: the whole plan's verification covers it (no need to verify the
    # phase alone for the report to say so).
    whole = check(env, plan, None)
    assert whole.passed
    assert whole.verified_phases == ("bulk-1", "delta")

    # Every phase but decommission ran, is done and verified: the move is.
    report = report_of(env, plan)
    assert report.status == "verified", report.open_items
    assert report.open_items == ()
    assert report.phases_not_run == ()  # verified: what is left to run is none
    assert report.deleted_at_source.count == 0
    # Which object was deleted at the destination, and why: by key.
    (bulk,) = [p for p in report.phases if p.name == "bulk-1"]
    assert [(f.key, f.reason) for f in bulk.removed] == [(removed_key, "deleted at the source")]
    assert f"{env.container}/{removed_key}</code>" in render_html(report)
    bulk = report.phases[0]
    assert bulk.name == "bulk-1"
    assert (bulk.counts.objects, bulk.counts.done) == (len(ESTATE) - 1, len(ESTATE) - 1)
    assert bulk.counts.removed == report.totals.removed == 1
    assert bulk.counts.bytes == sum(len(v[0]) for k, v in ESTATE.items() if k != removed_key)
    # Each phase's verification is the latest covering it: the whole plan's, here.
    assert [p.verification.id if p.verification else None for p in report.phases] == [
        whole.record_id,
        whole.record_id,
        None,
    ]
    # A stored verification sampled nothing: no seed is reported, which would suggest
    # objects were picked by it.
    assert bulk.verification is not None and bulk.verification.sample is None
    assert bulk.verification.seed is None
    page = render_html(report)
    assert '<th class="num">removed</th>' in page and "Open items (the move" not in page
    # none is said, with what "verified" does not cover: the source still holds the data
    # (an auditor's walkthrough found nothing said when the list was empty)
    assert "Open items: none." in page and "the source still holds the data" in page
    assert "as the latest verifications found it" in page  # not the stores now (an audit)
    # Under each phase, which verification covers it and of what (the whole plan's count
    # read as the phase's own: the same walkthrough).
    assert f"Verification #{whole.record_id} (the whole plan): " in page
    # An approver is a name as given: the page says it is not authenticated (an auditor).
    assert "approvers as recorded by" in page and "not authenticated by migrate" in page
    # Each removal is logged, with when: a deletion that cannot be undone stays on record
    # when the object comes back at the source and its key is copied again (the transfer,
    # and the phase's `removed`, are the new copy's then).
    logged = [(x.phase, x.source_key, x.destination_key) for x in report.removals.removals]
    assert logged == [("bulk-1", removed_key, removed_key)] and report.removals.count == 1
    assert "Copies removed at the destination" in page
    when = report.removals.removals[0].removed_at
    put(env.source, env.container, removed_key, b"back at the source")
    with Ledger(env.state) as ledger:
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
    # What the latest inventory shows changed since the copy (or back) is an open item.
    report = report_of(env, plan)
    assert (report.changed_since_copy, report.status) == (1, "incomplete")
    assert report.open_items == (
        "1 object copied has changed at the source since (its latest inventory): run delta again",
    )
    with Ledger(env.state) as ledger:
        summary = run_phase(plan, "delta", ledger, env.source, env.destination,
                            config=SMALL_PARTS, sleep=lambda s: None)  # fmt: skip
        assert (summary.copied, summary.failed) == (1, 0)
    report = report_of(env, plan)
    assert [p.removed for p in report.phases if p.name == "bulk-1"] == [()]
    again = [(x.phase, x.source_key, x.removed_at) for x in report.removals.removals]
    assert again == [("bulk-1", removed_key, when)] and report.removals.count == 1
    assert report.changed_since_copy == 0
    # Written at the source after the move, seen by an inventory: the move is not complete.
    changed = next(k for k in ESTATE if k != removed_key)
    put(env.source, env.container, changed, b"written after the move")
    run_inventory(env.config, env.source_site.name, env.source)
    report = report_of(env, plan)
    assert report.changed_since_copy == 1 and report.status == "incomplete"
    assert report.source_inventory_at and report.source_inventory_at in render_html(report)
    # Copied again; then a new object in a dataset of the plan, seen by an inventory: it
    # has no copy, and the report says so (it said verified: found by an auditor's review).
    with Ledger(env.state) as ledger:
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        run_phase(plan, "delta", ledger, env.source, env.destination, config=SMALL_PARTS,
                  sleep=lambda s: None)  # fmt: skip
    assert check(env, plan, None).passed
    assert report_of(env, plan).status == "verified"
    directory = changed.rpartition("/")[0]
    put(env.source, env.container, f"{directory}/after-the-move.csv", b"new")
    run_inventory(env.config, env.source_site.name, env.source)
    report = report_of(env, plan)
    assert (report.not_taken, report.changed_since_copy, report.status) == (1, 0, "incomplete")
    assert report.open_items == (
        "1 object at the source in the plan's datasets has no copy (new since its phases "
        "took theirs, by its latest inventory): run delta again",
    )


def test_a_phase_run_twice_an_hour_apart_reports_the_time_its_runs_worked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """delta copies one changed object, and an hour later another: the phase's duration
    (and its throughput) is the time the two runs worked, not the hour between them."""
    import sqlite3

    from migrate.cli import main
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    delta = ["run", plan, "--phase", "delta", "--force", "--reason", "t", *where]
    (tmp_path / "src" / "data" / "f1.txt").write_text("changed once\n")
    assert main(delta) == 0
    # The first delta run, and what it copied, an hour earlier: as if run then.
    db = sqlite3.connect(tmp_path / "state" / "state.db")
    with db:
        for table, where_ in (("runs", "phase='delta'"), ("transfers", "phase='delta'"),
                              ("phases", "phase='delta'")):  # fmt: skip
            db.execute(
                f"UPDATE {table} SET started_at=strftime('%Y-%m-%dT%H:%M:%S+00:00', "
                "started_at, '-1 hour'), finished_at=strftime('%Y-%m-%dT%H:%M:%S+00:00', "
                f"finished_at, '-1 hour') WHERE {where_}"
            )
    db.close()
    (tmp_path / "src" / "data" / "f2.txt").write_text("changed later\n")
    assert main(delta) == 0
    capsys.readouterr()
    assert main(["report", plan, "-o", str(tmp_path / "rep"), *where]) == 0
    phases = json.loads((tmp_path / "rep" / "report.json").read_text())["phases"]
    (counts,) = [p["counts"] for p in phases if p["name"] == "delta"]
    assert counts["done"] >= 2  # (and the object of the pilot, which never ran)
    span = datetime.fromisoformat(counts["finished_at"]) - datetime.fromisoformat(
        counts["started_at"]
    )
    assert span.total_seconds() >= 3600  # first copy to last: the hour is in there
    assert counts["duration_seconds"] < 60, counts
    # The phase started with its first run (the latest run's start replaced it: found by
    # an auditor's review).
    (phase,) = [p for p in phases if p["name"] == "delta"]
    first, last = (datetime.fromisoformat(phase[k]) for k in ("started_at", "finished_at"))
    assert (last - first).total_seconds() >= 3600, phase
    assert counts["throughput_bytes_per_second"] >= 27 / 60


def test_the_report_carries_the_findings_the_plan_was_approved_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What was knowingly left behind or changed (the plan's warnings, accepted by its
    approval) is in the report an auditor reads, not only in the plan file (found by a
    black-box review: snapshots not carried, renamed buckets were nowhere in it)."""
    from migrate.cli import main
    from migrate.plan import load_plan
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    codes = {f.code: f for f in load_plan(Path(plan)).findings}
    assert "NO_NATIVE_CHECKSUM" in codes
    assert main(["report", plan, "-o", str(tmp_path / "rep"), *where]) == 0
    carried = json.loads((tmp_path / "rep" / "report.json").read_text())["plan"]["findings"]
    assert {f["code"] for f in carried} == set(codes)
    (unproven,) = [f for f in carried if f["code"] == "NO_NATIVE_CHECKSUM"]
    assert (unproven["severity"], unproven["objects"]) == ("warning", 30)
    assert unproven["message"] == codes["NO_NATIVE_CHECKSUM"].message
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Findings of the plan" in page and "<code>NO_NATIVE_CHECKSUM</code>" in page


def test_a_change_at_the_source_after_a_plan_without_delta_says_what_to_do(
    env_for: Any,
) -> None:
    """A plan of bulk-1 alone, copied and verified; then an object is written at the source
    and an inventory sees it: the move is incomplete, and no phase of this plan can copy it
    again, so the report does not tell the operator to run one."""
    env: Env = env_for("s3", "s3")
    plan = audited(env)
    assert [p.kind for p in plan.phases] == ["bulk"]
    (key, *_) = [o.key for o in env.source.list_objects(env.container)]
    put(env.source, env.container, key, b"written after the move")
    run_inventory(env.config, env.source_site.name, env.source)
    report = report_of(env, plan)
    assert (report.changed_since_copy, report.status) == (1, "incomplete")
    assert report.open_items == (
        "1 object copied has changed at the source since (its latest inventory): the plan "
        "has no delta or cutover phase to copy it again; make one",
    )


def test_a_failed_verification_after_a_passing_one_leaves_the_report_incomplete(
    env_for: Any,
) -> None:
    env: Env = env_for("s3", "s3")
    plan = audited(env)
    assert report_of(env, plan).status == "verified"

    # An object put by hand under the plan's destination prefix: the whole plan's
    # verification fails with `unexpected` alone, which belongs to no phase, so bulk-1
    # keeps its verified_at (the run gates read it); the report reads the verification.
    stray = "reports/2025/stray.csv"
    put(env.destination, env.bucket, stray, b"put by hand")
    result = check(env, plan, None)
    assert not result.passed and result.counts == {"unexpected": 1}
    report = report_of(env, plan)
    (phase,) = report.phases
    assert phase.verified_at is not None
    assert phase.verification is not None and phase.verification.id == result.record_id
    assert report.status == "incomplete"
    assert report.open_items == (
        f"the latest verification covering phase bulk-1 (#{result.record_id}, of the whole "
        f"plan, {result.finished_at}) failed: unexpected 1",
    )
    page = render_html(report)
    assert "latest verification failed" in page
    # The header says when the destination was last checked, how, and what came of it.
    assert (
        f"<dt>destination last checked</dt><dd>verification #{result.record_id} of the whole "
        f"plan, finished {result.finished_at}, by {os_user()} with migrate {tool_version()}: "
        "FAILED;" in page
    ), page
    assert "listed and compared with the ledger" in page

    # The stray object gone, a verification of the phase passes again: verified again.
    env.destination.delete(env.bucket, stray)
    again = check(env, plan, "bulk-1")
    assert again.passed
    report = report_of(env, plan)
    assert (report.status, report.open_items) == ("verified", ())
    assert f"verification #{again.record_id} of bulk-1, finished" in render_html(report)


def test_what_no_approval_covers_a_weaker_check_and_a_blocked_destination_stay_open(
    env_for: Any,
) -> None:
    """The report was `verified` on a plan edited after its approval (another host in its
    allowlist), on a plain verification that followed a failing metadata one (what it
    found gone, but not checked as closely since), and on a destination the policy blocks
    as the sites file says now."""
    env: Env = env_for("azure", "s3")
    key = "cohort/table.csv"
    env.seed({key: (b"id,age\n1,42\n", "text/csv", {"owner": "dpo"}, False)})
    plan = env.plan()
    assert env.run(plan).copied == 1
    stray = "cohort/stray.csv"  # put by hand under the plan's prefix: fails a verification
    put(env.destination, env.bucket, stray, b"put by hand")
    with Ledger(env.state) as ledger:
        ledger.record_approval(plan.name, plan.digest, "dpo@example.org", "plans/t.yaml")
        deeper = verify(plan, ledger, env.source, env.destination, phase="bulk-1",
                        deep=False, sample=None, seed=1, check_metadata=True)  # fmt: skip
        assert not deeper.passed
        env.destination.delete(env.bucket, stray)
        plain = verify(plan, ledger, env.source, env.destination, phase="bulk-1",
                       deep=False, sample=None, seed=1)  # fmt: skip
        assert plain.passed
    report = report_of(env, plan)
    assert report.status == "incomplete"
    assert report.open_items == (
        f"phase bulk-1: verification #{deeper.record_id} (stored, metadata) failed and the "
        f"passing ones since checked less (the latest, #{plain.record_id}: stored); verify "
        f"it again as #{deeper.record_id} did",
    )
    # Its HTML badge says so too, not "verified" under that item (an audit).
    html = render_html(report)
    assert "a stronger verification failed</span></h3>" in html
    assert ">verified</span></h3>" not in html

    edited = with_digest(plan.model_copy(update={"allowlist": (*plan.allowlist, "evil:443")}))
    assert (
        report_of(env, edited)
        .open_items[0]
        .startswith("the plan as it stands is approved by no one")
    )

    blocked = env.destination_site.model_copy(update={"country": "US", "certifications": ()})
    with Ledger(env.state) as ledger:
        judged = build_report(plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0",
                              sites={blocked.name: blocked})  # fmt: skip
    assert any(
        i.startswith(f"destination {blocked.name} is FAIL under the plan's policy now")
        for i in judged.open_items
    ), judged.open_items
    # A runner the policy blocks too (a mutation review: only the destination's was tested).
    abroad = with_digest(plan.model_copy(update={"runner_location": "US"}))
    items = report_of(env, abroad).open_items
    assert any("runner" in i and "is FAIL under the plan's policy now" in i for i in items), items


def test_a_report_describes_one_state_while_another_process_changes_the_ledger(
    env_for: Any, tmp_path: Path
) -> None:
    env: Env = env_for("s3", "s3")
    plan = audited(env)
    gone = sorted(ESTATE)[0]
    out = tmp_path / "out"
    with Ledger(env.state) as ledger, Ledger(env.state) as other:
        # Another process (a delta run with --delete-removed, say) records an object removed
        # between two of the report's reads of the ledger.
        first_read = ledger.verifications

        def meanwhile(name: str) -> Any:
            assert other.transfer_removed(plan.name, env.container, gone)
            return first_read(name)

        ledger.verifications = meanwhile  # type: ignore[method-assign]
        report = build_report(plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0")
        # The totals and the manifest count the same objects: the state before the change.
        assert report.totals.done == report.manifest.objects == len(ESTATE)
        assert report.totals.removed == 0
        # Written from the ledger as it is now, the manifest no longer matches the report.
        with pytest.raises(IntegrityError, match="changed while its report was written"):
            write_report(report, out, plan=plan, ledger=ledger)
    after = report_of(env, plan)
    assert (after.totals.done, after.manifest.objects) == (len(ESTATE) - 1, len(ESTATE) - 1)


def test_a_dataset_at_the_source_outside_the_plan_leaves_the_report_incomplete(
    env_for: Any,
) -> None:
    env: Env = env_for("s3", "s3")
    plan = audited(env)
    assert report_of(env, plan).outside_plan == ()

    # A new top-level prefix at the source, seen by the next inventory: no phase of this
    # plan copies it, whatever its own objects say.
    put(env.source, env.container, "newset/a.csv", b"x" * 300)
    run_inventory(env.config, env.source_site.name, env.source)
    report = report_of(env, plan)
    assert report.status == "incomplete"
    dataset = f"{env.container}/newset/"
    assert report.outside_plan == (OutsidePlanDataset(dataset=dataset, objects=1, bytes=300),)
    assert report.open_items == (
        f"1 object (300 B) at the source is in 1 dataset outside the plan: {dataset}; "
        "make a plan for it, or leave it out on purpose (`migrate plan --exclude`)",
    )
    (phase,) = report.phases
    assert phase.verified_at is not None and phase.verification and phase.verification.passed

    data = json.loads(to_json(report))
    schema = json.loads((ROOT / "reports" / "schema.json").read_text(encoding="utf-8"))
    conforms(data, schema, schema["$defs"])
    assert data["outside_plan"] == [{"dataset": dataset, "objects": 1, "bytes": 300}]
    page = render_html(report)
    assert f"<li>{report.open_items[0]}</li>" in page and f"<td>{dataset}</td>" in page


# -- report.html in a real browser ---------------------------------------------------------


def chromium(page: Path, work: Path) -> tuple[list[str], list[str], bytes]:
    """Render `page` in headless Chromium: (console lines, URLs the page requested over the
    network, screenshot PNG). The browser's own background requests carry no page
    initiator in the net log and are left out; a file:// load is not a network request."""
    work.mkdir(parents=True, exist_ok=True)
    screenshot, netlog = work / "page.png", work / "netlog.json"
    run = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={work / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--log-net-log={netlog}",
            f"--screenshot={screenshot}",
            "--window-size=1280,2600",
            "--hide-scrollbars",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = [
        e["params"]["url"]
        for e in log["events"]
        if e["type"] == start
        and "url" in e.get("params", {})
        and e["params"].get("initiator") != "not an origin"
    ]
    return console, requested, screenshot.read_bytes()


def test_the_html_report_renders_offline_in_headless_chromium(env_for: Any, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (Debian: apt-get install -y chromium)")
    env: Env = env_for("s3", "s3")
    plan = audited(env)
    out = tmp_path / "report"
    with Ledger(env.state) as ledger:
        report = build_report(
            plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0", sites=env.config.sites
        )
        write_report(report, out, plan=plan, ledger=ledger)
    page = out / "report.html"
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "default-src 'none'" in text  # the browser may fetch nothing, even by mistake

    console, requested, png = chromium(page, tmp_path / "chromium")
    assert console == []  # no console message: no error, no blocked fetch
    assert requested == []  # nothing but the file itself
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    keep = os.environ.get("MIGRATE_SCREENSHOT_DIR")
    if keep:
        shutil.copy(tmp_path / "chromium" / "page.png", Path(keep) / "report.png")

    # The checks can fail: a page that fetches is caught by each of them.
    control = tmp_path / "control.html"
    control.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>c</title></head><body>'
        '<img src="http://fetch.invalid/pixel.png" alt=""></body></html>',
        encoding="utf-8",
    )
    _, requested, _ = chromium(control, tmp_path / "control")
    assert requested == ["http://fetch.invalid/pixel.png"]
    blocked = tmp_path / "blocked.html"
    csp = """<meta http-equiv="Content-Security-Policy" content="default-src 'none'">"""
    blocked.write_text(control.read_text().replace("<title>", csp + "<title>"), encoding="utf-8")
    console, requested, _ = chromium(blocked, tmp_path / "blocked")
    assert requested == [] and any("Content Security Policy" in ln for ln in console)


def test_the_report_lists_each_run_with_who_ran_it_its_options_and_what_came_of_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The phases table keeps one time of each kind; an auditor needs every run: who ran
    it, with which version, forced past which gate, told to overwrite or remove, and how it
    ended (a run refused or interrupted too). A re-run with nothing to do adds none."""
    from migrate.cli import main
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)  # bulk-1, forced ("test")
    assert main(["run", plan, "--phase", "bulk-1", *where]) == 0  # nothing to do
    for n in range(1, 5):
        (tmp_path / "src" / "data" / f"f{n}.txt").unlink()
    delta = ["run", plan, "--phase", "delta", "--force", "--reason", "late", "--delete-removed"]
    assert main([*delta, *where]) == 9  # more than 10% of the copies: refused
    assert main([*delta, "--max-remove", "4", *where]) == 0

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    (tmp_path / "src" / "data" / "new.txt").write_text("new\n")
    monkeypatch.setattr("migrate.executor.run_phase", interrupted)
    assert main(["run", plan, "--phase", "delta", "--force", "--reason", "again", *where]) == 130
    monkeypatch.undo()
    capsys.readouterr()

    assert main(["report", plan, "-o", str(tmp_path / "r"), *where]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    runs = report["runs"]["runs"]
    assert report["runs"]["count"] == len(runs) == 4
    assert [(r["phase"], r["outcome"]) for r in runs] == [
        ("bulk-1", "completed"),
        ("delta", runs[1]["outcome"]),
        ("delta", "completed"),
        ("delta", "interrupted"),
    ]
    assert runs[1]["outcome"].startswith("stopped: --delete-removed: 4 copies would be removed")
    assert runs[0]["options"] == {"overwrite": False, "forced_reason": "test",
                                  "delete_removed": False, "max_remove": None}  # fmt: skip
    assert runs[1]["options"]["max_remove"] == "10%" and runs[1]["removed"] == 0
    assert runs[2]["options"]["max_remove"] == "4" and runs[2]["removed"] == 4
    assert runs[0]["copied"] == 29 and runs[2]["copied"] == 1  # the pilot's object
    assert all(r["run_by"] and r["tool_version"] and r["finished_at"] for r in runs)
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<h2>Runs</h2>" in html and "--delete-removed (at most 4)" in html


def test_a_killed_run_is_reported_with_the_copies_the_ledger_holds_from_its_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run killed (kill -9) ends with the counts of its last progress record, written
    every few seconds: the report listed such runs with 0 copied that had copied objects
    (a walkthrough). It lists the copies the ledger holds done from the run's time."""
    import sqlite3

    from migrate.cli import main
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)  # bulk-1: 29 copied
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:  # as kill -9 leaves it
        db.execute("UPDATE runs SET finished_at = NULL, outcome = NULL, copied = 3, "
                    "bytes_copied = 30")  # fmt: skip
    db.close()
    assert main(["report", plan, "-o", str(tmp_path / "r"), *where]) == 0
    [killed] = json.loads((tmp_path / "r" / "report.json").read_text())["runs"]["runs"]
    assert killed["outcome"] is None and killed["copied"] == 29, killed
    assert killed["bytes_copied"] > 29 * len("object 0\n"), killed  # not its record's 30


def test_an_object_a_delta_copies_again_counts_its_retries_for_the_delta_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The phases' tables count an object where its latest copy was made: its attempts
    and retries with it, those of that copy (the delta's table showed bulk-1's retries of an
    object the delta copied again at its first try)."""
    import sqlite3

    from migrate.cli import main
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    with sqlite3.connect(tmp_path / "state" / "state.db") as db:  # bulk-1 retried each twice
        db.execute("UPDATE transfers SET attempts = 3, retries = 2 WHERE phase = 'bulk-1'")
    (tmp_path / "src" / "data" / "f5.txt").write_text("changed since its copy\n")
    for args in (
        ["inventory", "src"],
        ["run", plan, "--phase", "delta", "--force", "--reason", "t"],
        ["report", plan, "-o", str(tmp_path / "r")],
    ):
        assert main([*args, *where]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    counts = {p["name"]: p["counts"] for p in report["phases"]}
    # the changed object, and the pilot's (not run: new since the copy)
    assert (counts["delta"]["objects"], counts["bulk-1"]["objects"]) == (2, 28)
    assert (counts["delta"]["attempts"], counts["delta"]["retries"]) == (2, 0)
    assert (counts["bulk-1"]["attempts"], counts["bulk-1"]["retries"]) == (3 * 28, 2 * 28)


def test_a_run_and_its_report_work_for_a_uid_without_a_login_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container run under an arbitrary uid has no passwd entry (and often no USER):
    naming who ran a run stopped every run, exit 1 (found by a review helper)."""
    import pwd

    from migrate.cli import main
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid: int) -> None:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    (tmp_path / "src" / "data" / "new.txt").write_text("new\n")
    code = main(["run", plan, "--phase", "delta", "--force", "--reason", "t", *where])
    assert code == 0, capsys.readouterr().err
    assert main(["report", plan, "-o", str(tmp_path / "r"), *where]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["runs"]["runs"][-1]["run_by"] == report["generated_by"] == f"uid {os.getuid()}"


def test_each_verification_names_who_ran_it_and_with_which_migrate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verification opens the gates: the report says who ran it and with which version,
    as for runs. One recorded by an earlier version (which kept neither) says so."""
    import migrate.ledger
    from migrate.cli import main
    from tests.helpers import finished_local_copy
    from tests.test_cli import as_of_schema

    plan, where = finished_local_copy(tmp_path, capsys)
    assert main(["verify", plan, "--phase", "bulk-1", *where]) == 0
    names = [name for name, _ in migrate.ledger._MIGRATIONS]
    before = migrate.ledger._MIGRATIONS[: names.index("verifications_by")]
    as_of_schema(tmp_path / "state" / "state.db", before)
    monkeypatch.setenv("LOGNAME", "auditor-2")
    assert main(["verify", plan, "--phase", "bulk-1", *where]) == 0
    assert main(["report", plan, "-o", str(tmp_path / "r"), *where]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [(v["run_by"], v["tool_version"]) for v in report["verifications"]] == [
        (None, None),
        ("auditor-2", report["tool_version"]),
    ]
    html = (tmp_path / "r" / "report.html").read_text()
    assert f", by auditor-2 with migrate {report['tool_version']}" in html


def test_an_interrupted_run_records_what_it_copied_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped by Ctrl-C after copying objects recorded 0 copied (found by a review
    helper): the record counts the copy's objects as they come."""
    import threading

    from migrate.cli import main
    from providers.local import LocalAdapter
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    for n in range(20):
        (tmp_path / "src" / "data" / f"new{n:02d}.txt").write_text(f"new {n}\n")
    real, calls, lock = LocalAdapter.put_object, [0], threading.Lock()

    def put_object(self: LocalAdapter, *args: Any, **kwargs: Any) -> Any:
        with lock:
            calls[0] += 1
            if calls[0] == 11:
                raise KeyboardInterrupt  # Ctrl-C, after 10 objects copied
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LocalAdapter, "put_object", put_object)
    code = main(["run", plan, "--phase", "delta", "--force", "--reason", "t",
                 "--concurrency", "1", *where])  # fmt: skip
    monkeypatch.undo()
    capsys.readouterr()
    assert code == 130
    with Ledger(tmp_path / "state") as ledger:
        name = load_plan(Path(plan)).name
        done = sum(c.objects for c in ledger.phase_counts(name, "delta") if c.state == "done")
        runs, _ = ledger.runs(name, 10)
    assert done == 10
    assert (runs[-1].outcome, runs[-1].counts.copied) == ("interrupted", 10)
    assert runs[-1].counts.bytes_copied > 0


def test_the_record_of_an_object_overwritten_survives_a_later_copy_of_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bulk-1 --overwrite replaced another writer's object; the source's object then
    changed and delta copied it again: the report lost the overwrite (kept on the transfer,
    which the delta took over; found by a review helper). It is kept apart now."""
    from migrate.cli import main
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    with Ledger(tmp_path / "state") as ledger:
        ledger.resolve_phase(load_plan(Path(plan)), "bulk-1")
        bucket, key = ledger._db.execute(
            "SELECT destination_bucket, key FROM transfers WHERE phase = 'bulk-1' LIMIT 1"
        ).fetchone()
    theirs = tmp_path / "dst" / bucket / key
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"another writer's bytes\n")
    forced = ["--force", "--reason", "t", *where]
    assert main(["run", plan, "--phase", "bulk-1", "--overwrite", *forced]) == 0
    (tmp_path / "src" / "data" / key).write_text("changed at the source\n")
    assert main(["run", plan, "--phase", "delta", *forced]) == 0
    capsys.readouterr()
    assert main(["report", plan, "-o", str(tmp_path / "r"), *where]) == 0
    phases = json.loads((tmp_path / "r" / "report.json").read_text())["phases"]
    listed = {p["name"]: (p["overwritten_count"], [o["key"] for o in p["overwritten"]])
              for p in phases if p["overwritten_count"]}  # fmt: skip
    assert listed == {"bulk-1": (1, [key])}


def test_the_report_command_writes_the_files_hashes_and_can_require_a_verified_move(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SHA256SUMS beside the report (what `sha256sum -c` reads) holds the SHA-256 of each
    file: recorded with the hand-over, it tells a later edit of the HTML or the JSON (an
    auditor's review found nothing to tell an edited page). --require-verified makes an
    unfinished move fail the command (exit 12), for pipelines that go by exit codes; the
    files are written all the same."""
    from migrate.cli import main
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    out = tmp_path / "rep"
    assert main(["report", plan, "-o", str(out), *where]) == 0
    said = " ".join(capsys.readouterr().out.split())
    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert sorted(ln.split("  ")[1] for ln in sums) == [
        "manifest.jsonl.gz", "plan.yaml", "report.html", "report.json"]  # fmt: skip
    # The plan reported on is handed over with it, byte for byte as `migrate plan` wrote
    # it: what the approvals' digest is of (an auditor could not check an approval).
    assert (out / "plan.yaml").read_bytes() == Path(plan).read_bytes()
    for ln in sums:
        digest, name = ln.split("  ")
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert f"SHA-256 in {out / 'SHA256SUMS'}" in said
    assert hashlib.sha256((out / "SHA256SUMS").read_bytes()).hexdigest() in said

    code = main(["report", plan, "-o", str(out), "--require-verified", "--json", *where])
    captured = capsys.readouterr()
    assert code == 12
    answer = json.loads(captured.out)
    assert answer["status"] == "incomplete" and set(answer["sha256"]) == {
        "manifest.jsonl.gz", "plan.yaml", "report.html", "report.json", "SHA256SUMS"}  # fmt: skip
    # the hash to record with the hand-over, for a pipeline as for a person
    sums_hash = hashlib.sha256((out / "SHA256SUMS").read_bytes()).hexdigest()
    assert answer["sha256"]["SHA256SUMS"] == sums_hash
    assert captured.err.count("\n") == 1 and "is incomplete, not verified" in captured.err
    # The outcome in the one document, as `sites check` says it (a script read exit 12
    # and a result with no error in it: a review).
    assert (answer["ok"], answer["exit_code"], answer["error"]["kind"]) == (
        False, 12, "IntegrityError")  # fmt: skip
    assert "is incomplete, not verified" in answer["error"]["message"]
    # what is left, as report.json says it: a script need not open the file
    written = json.loads((out / "report.json").read_text())
    assert answer["open_items"] == written["open_items"] != []
    assert answer["phases_not_run"] == written["phases_not_run"] == ["pilot", "delta", "cutover"]


def test_the_report_sets_the_plans_estimates_beside_what_was_copied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ops team reads, after the move, what the plan estimated (objects, bytes, time at
    its bandwidth, egress) beside what the runs copied and took: delta's and cutover's
    estimates marked as the guesses they were."""
    from migrate.cli import main
    from tests.helpers import finished_local_copy

    plan_path, where = finished_local_copy(tmp_path, capsys)
    plan = load_plan(Path(plan_path))
    assert main(["report", plan_path, "-o", str(tmp_path / "r"), *where]) == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["plan"]["bandwidth_bytes_per_second"] == plan.options.bandwidth_bytes_per_second
    total = data["plan"]["estimated"]
    assert (
        (total["objects"], total["bytes"])
        == (plan.totals.objects, plan.totals.bytes)
        == (
            30,
            sum(len(f"object {n}\n") for n in range(30)),
        )
    )
    assert total["projection"] is False
    phases = {p["name"]: p for p in data["phases"]}
    for spec in plan.phases:
        estimated = phases[spec.name]["estimated"]
        assert (estimated["objects"], estimated["bytes"]) == (
            spec.estimate.objects,
            spec.estimate.bytes,
        )
        assert estimated["projection"] is (spec.kind in (PhaseKind.DELTA, PhaseKind.CUTOVER))
    bulk = phases["bulk-1"]
    # the pilot's share is an expected count (its sample is a hash's pick): the done
    # figure is what the run took, set beside it
    assert bulk["counts"]["done"] == 29 and bulk["estimated"]["objects"] in (28, 29)
    page = (tmp_path / "r" / "report.html").read_text()
    section = page[page.index("<h3>Planned and done</h3>") :]
    section = section[: section.index("</table>")]
    delta = section[section.index("<td>delta</td>") :]
    assert delta.startswith('<td>delta</td><td class="num">~0</td>')  # a guess, marked
    assert '<td><b>all phases</b></td><td class="num">30</td>' in section
    # the plan's zero seconds and the run's fraction of one, escaped ("<1s" was raw HTML)
    assert "<1s" not in page and '<td class="num">&lt;1s</td>' in section


def test_a_plain_verification_comparing_a_few_objects_metadata_does_not_clear_a_metadata_one() -> (
    None
):
    """A failed `--metadata` verification stays open until one as strong passes: a plain
    verification that compared the metadata of the two tagged objects it read anyway is
    not one (a walkthrough found it cleared the failure, the status able to turn
    `verified`)."""
    from migrate.report import VerificationInfo, _described, _weaker_since

    def record(n: int, passed: bool, compared: int, asked: bool | None) -> VerificationInfo:
        return VerificationInfo(
            id=n, phase=None, mode="stored", sample=None, seed=None,
            started_at="2026-12-05T07:00:00+00:00", finished_at="2026-12-05T07:01:00+00:00",
            passed=passed, objects=46, bytes=1000, reread=0, run_by="ops",
            tool_version="0.1.0", metadata_compared=compared, metadata_asked=asked,
            counts={} if passed else {"metadata_mismatch": 1}, findings=(),
        )  # fmt: skip

    failed = record(1, False, 46, True)
    plain = record(2, True, 2, False)
    assert _weaker_since([failed, plain], "bulk-1", plain, None) == failed
    assert _described(plain) == "stored" and _described(failed) == "stored, metadata"
    again = record(3, True, 46, True)
    assert _weaker_since([failed, plain, again], "bulk-1", again, None) is None
    # Recorded before `metadata_asked` was kept: whether it compared any, as before.
    old = record(4, True, 2, None)
    assert _weaker_since([failed, old], "bulk-1", old, None) is None
    # A failed check of the whole plan begun before the phase's first run checked none of it.
    assert _weaker_since([failed, plain], "bulk-1", plain, "2026-12-05T07:30:00+00:00") is None
