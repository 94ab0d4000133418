"""The demo is the whole flow on real servers: what it seeds is what it inventories, copies,
verifies and reports, the route attestation names exactly the two sites' hosts, and no
secret is written in anything it leaves behind."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from migrate.cli import main
from migrate.demo import AZURE_ENV, S3_SECRET_ENV, run_demo
from migrate.routing import endpoint_host
from migrate.sites import load_sites

MiB = 1024 * 1024


@pytest.mark.slow
def test_the_demo_runs_the_whole_flow_and_attests_its_routes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_demo(tmp_path / "demo", small_files=150, large_sizes=(6 * MiB, 9 * MiB))

    assert result.inventory.objects == result.seeded_objects
    assert result.inventory.bytes == result.seeded_bytes
    assert sum(p.copied for p in result.phases) == result.seeded_objects
    assert all(p.failed == 0 for p in result.phases)
    assert result.verified
    report = json.loads((result.report / "report.json").read_text())
    # Every phase ran, delta and cutover included (nothing changed at the source): the move
    # is complete and verified, with nothing left open.
    assert [p.phase for p in result.phases][-2:] == ["delta", "cutover"]
    assert report["status"] == "verified", report["open_items"]
    assert report["phases_not_run"] == [] and report["open_items"] == []
    assert (result.report / "report.html").exists()
    # The last check of the destination, after the cutover (whose own verification compares
    # listings), re-read bytes of the whole plan: what the report's "last checked" says.
    last = report["verifications"][-1]
    assert (last["phase"], last["mode"], last["sample"], last["seed"]) == (
        None,
        "stored",
        0.05,
        2026,
    )
    assert last["passed"] and last["reread"] > 0, last

    config = load_sites(result.sites_file)
    expected = {
        endpoint_host(config.site("azure-hdh").endpoint or ""),
        endpoint_host(config.site("chu-seaweed").endpoint or ""),
    }
    code = main(["status", str(result.plan), "--routes", "--json",
                 "--sites", str(result.sites_file)])  # fmt: skip
    assert code == 0
    status = json.loads(capsys.readouterr().out)
    routes = status["routes"]
    assert {r["host"] for r in routes} == expected
    assert all(r["requests"] > 0 for r in routes)
    # The report names the site each host is, and its role (an auditor's walkthrough read
    # bare host:port pairs).
    az_host, sw_host = sorted(expected, key=lambda h: h != endpoint_host(
        config.site("azure-hdh").endpoint or ""))  # fmt: skip
    named = {r["host"]: r["sites"] for r in report["routes"]}
    assert named == {
        az_host: ["azure-hdh (source, azure)"],
        sw_host: [f"chu-seaweed (destination, {config.site('chu-seaweed').provider})"],
    }, named
    # The reads outside the runs are attested too: the inventory's of the source, the
    # plan's of both sites (replication, buckets in use); the seeding is not migrate's.
    az, sw = (endpoint_host(config.site(n).endpoint or "") for n in ("azure-hdh", "chu-seaweed"))
    before = report["routes_outside_runs"]
    assert {(r["site"], r["command"], r["host"]) for r in before} == {
        ("azure-hdh", "inventory", az),
        ("azure-hdh", "plan", az),
        ("chu-seaweed", "plan", sw),
    }
    assert all(r["requests"] > 0 and r["allowed_as"] != "other" for r in before), before
    assert [(r["site"], r["command"], r["host"], r["requests"]) for r in before] == [
        (r["site"], r["command"], r["host"], r["requests"]) for r in status["routes_outside_runs"]
    ]
    listing = next(r for r in before if r["command"] == "inventory")["requests"]
    assert listing < 10, "the inventory's requests, not the seeding's (hundreds of PUTs)"

    # The secrets the demo's sites use, as given (environment) and as the Azure key.
    secrets = [os.environ[S3_SECRET_ENV], os.environ[AZURE_ENV]]
    secrets += [p.split("=", 1)[1] for p in os.environ[AZURE_ENV].split(";") if "Key=" in p]
    written = [
        f
        for f in (tmp_path / "demo").rglob("*")
        # The servers' own data and configuration hold their keys: they are not migrate's.
        if f.is_file() and not {"azurite", "seaweedfs"} & set(f.relative_to(tmp_path).parts)
    ]
    names = {f.name for f in written}
    assert {"state.db", "report.json", "manifest.jsonl.gz"} <= names, sorted(names)
    assert any(f.suffix == ".yaml" for f in written), "the plan"
    for f in written:
        data = f.read_bytes()
        if f.suffix == ".gz":
            data = gzip.decompress(data)
        for secret in secrets:
            assert secret.encode() not in data, f"a secret in {f}"


@pytest.mark.slow
def test_demo_keep_leaves_the_servers_up_for_the_other_commands_until_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate demo --keep`: after the flow, the servers stay up and an environment file
    (the user's alone) lets another shell run the other commands on the demo's sites; at
    Ctrl-C the servers stop, the file is deleted and the exit code is 0."""
    import migrate.demo

    monkeypatch.setattr(migrate.demo, "LARGE_SIZES", (6 * MiB,))
    workdir = tmp_path / "demo"
    env_file = workdir / "demo.env"
    seen: dict[str, object] = {}

    def another_shell() -> None:
        try:
            deadline = time.monotonic() + 600
            while not env_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            seen["mode"] = env_file.stat().st_mode & 0o777
            # The store's own identities file holds the same keys: the user's alone too.
            seen["modes"] = {p.stat().st_mode & 0o777 for p in workdir.rglob("s3.json")}
            plan = workdir / "plans" / "hdh-demo.yaml"
            # A shell with none of the demo's environment, nor `migrate` on its PATH: the
            # file gives it all, and `migrate` runs as the README writes it.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DEMO_", "MIGRATE_"))}
            env["PATH"] = "/usr/bin:/bin"
            # A second demo on the same workdir (`make demo` in another terminal) is refused
            # at once and deletes nothing of this one's (the verify below reads it all).
            second = subprocess.run(
                ["bash", "-c", f". {env_file} && migrate demo --small 1 --workdir {workdir}"],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            seen["second"] = (second.returncode, second.stderr)
            done = subprocess.run(
                ["bash", "-c", f". {env_file} && migrate verify {plan} --deep=both --json"],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            seen["verify"] = (done.returncode, done.stderr)
            seen["passed"] = json.loads(done.stdout)["passed"] if done.returncode == 0 else None
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C

    shell = threading.Thread(target=another_shell)
    shell.start()
    code = main(["demo", "--keep", "--small", "40", "--workdir", str(workdir), "--json"])
    shell.join()

    assert code == 0
    assert seen["mode"] == 0o600 and seen["modes"] == {0o600}
    code2, err2 = seen["second"]
    assert code2 == 14 and "is in use by another `migrate demo`" in err2, err2
    assert seen["verify"] == (0, "") and seen["passed"] is True
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["env_file"] == str(env_file)
    # How to end the wait, beside the document (on stderr): a script saw nothing of it.
    said = " ".join(captured.err.split())
    assert f"until Ctrl-C here (or `kill {os.getpid()}`)" in said, said
    # the plan named as every --json output names it; its file beside
    assert (result["plan"], result["plan_file"]) == ("hdh-demo", str(workdir / "plans" /
                                                                  "hdh-demo.yaml"))  # fmt: skip
    assert all(p["failures"] == [] and p["failed"] == 0 for p in result["phases"])
    assert not env_file.exists(), "its credentials end with the servers"
    sites = load_sites(workdir / "sites.toml")
    for name in ("azure-hdh", "chu-seaweed"):
        host, port = endpoint_host(sites.site(name).endpoint or "").rsplit(":", 1)
        with pytest.raises(OSError), socket.create_connection((host, int(port)), timeout=2):
            pass


def test_a_demo_killed_with_kill_9_has_its_servers_stopped_by_the_next_one(
    tmp_path: Path,
) -> None:
    """kill -9 leaves a demo's servers running (nothing is left to stop them), on the data
    the next demo on that workdir deletes: that demo stops them first, and nothing else (a
    look-alike working there, a log viewer named after Azurite, is left alone)."""
    import sys

    from migrate.demo import MARKER, prepared_workdir
    from migrate.localservers import _alive

    workdir = (tmp_path / "demo").resolve()
    workdir.mkdir()
    (workdir / MARKER).write_text("made by migrate demo\n")
    script = (
        "import sys, time\nfrom pathlib import Path\n"
        "from migrate.localservers import azurite, seaweedfs\nw = Path(sys.argv[1])\n"
        "with seaweedfs(w / 'seaweedfs'), azurite(w / 'azurite'):\n"
        "    print('up', flush=True)\n    time.sleep(600)\n"
    )
    # Its own session: whatever happens below, the finally kills the whole group.
    starter = subprocess.Popen(
        [sys.executable, "-c", script, str(workdir)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    bystander = subprocess.Popen(
        ["bash", "-c", "exec -a azurite.log sleep 600"], cwd=workdir, start_new_session=True
    )
    try:
        assert starter.stdout is not None and starter.stdout.readline().strip() == "up"
        servers = [
            int(p.name)
            for p in Path("/proc").glob("[0-9]*")
            if _cwd(p).is_relative_to(workdir) and int(p.name) != bystander.pid
        ]
        starter.kill()  # kill -9: its servers live on
        starter.wait()
        assert len(servers) >= 2 and all(_alive(pid) for pid in servers), servers
        with prepared_workdir(workdir) as stopped:
            assert stopped == len(servers)
            assert not any(_alive(pid) for pid in servers)
            assert [p.name for p in workdir.iterdir()] == [MARKER]
        assert bystander.poll() is None  # not a server of the demo's: left alone
    finally:
        for group in (starter.pid, bystander.pid):  # the servers are in the starter's
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        bystander.wait()


def _cwd(proc: Path) -> Path:
    try:
        return (proc / "cwd").resolve(strict=True)
    except OSError:
        return Path("/")
