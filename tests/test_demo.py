"""The demo is the whole flow on real servers: what it seeds is what it inventories, copies,
verifies and reports, the route attestation names exactly the two sites' hosts, and no
secret is written in anything it leaves behind."""

from __future__ import annotations

import gzip
import json
import os
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
