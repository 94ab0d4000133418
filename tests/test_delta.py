"""Delta and cutover through the commands a user runs: after the bulk copy, a changed and a
new source object are copied by delta, a deleted one is reported and removed only on
request, and cutover verifies the whole plan and prints the checklist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrate.cli import main
from migrate.demo import AZURE_ENV, S3_KEY_ENV, S3_SECRET_ENV, write_sites_file
from migrate.localservers import Azurite, SeaweedFS
from migrate.sites import load_sites
from providers.factory import build_adapter
from tests.helpers import body, put


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_delta_copies_what_changed_and_cutover_verifies(
    azurite_server: Azurite, seaweed: SeaweedFS, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv(AZURE_ENV, azurite_server.connection_string)
    monkeypatch.setenv(S3_KEY_ENV, seaweed.access_key)
    monkeypatch.setenv(S3_SECRET_ENV, seaweed.secret_key)
    sites = write_sites_file(tmp_path, azurite_server, seaweed)
    # Fresh containers and buckets for this test: the servers are shared by the session.
    text = sites.read_text().replace('"snds", "cohorts", "imaging"', '"dsnds", "dcohorts"')
    sites.write_text(text.replace('bucket_prefix = "hdh-"', 'bucket_prefix = "delta-"'))
    source = build_adapter(load_sites(sites).site("azure-hdh"))
    for container in ("dsnds", "dcohorts"):
        source.create_container(container)
        for i in range(12):
            put(source, container, f"t/{i:02d}.csv", body(i, 1000 + i))
    s = ["--sites", str(sites)]
    plan = str(tmp_path / "plans" / "d.yaml")
    assert cli(capsys, "inventory", "azure-hdh", *s)[0] == 0
    assert cli(capsys, "plan", "--from", "azure-hdh", "--to", "chu-seaweed", "-o", plan, *s)[0] == 0
    assert cli(capsys, "plan", "approve", plan, *s)[0] == 0
    for phase in ("pilot", "bulk-1"):
        assert cli(capsys, "run", plan, "--phase", phase, *s)[0] == 0
        assert cli(capsys, "verify", plan, "--phase", phase, *s)[0] == 0

    put(source, "dsnds", "t/03.csv", body(99, 2048))  # changed
    put(source, "dcohorts", "t/new.csv", body(100, 500))  # added
    source.delete("dsnds", "t/07.csv")  # deleted
    code, out = cli(capsys, "run", plan, "--phase", "delta", "--delete-removed", "--json", *s)
    assert code == 0
    result = json.loads(out)
    assert result["summary"]["copied"] == 2
    assert (result["delta"]["deleted"], result["delta"]["removed"]) == (1, 1)
    destination = build_adapter(load_sites(sites).site("chu-seaweed"))
    keys = {o.key for o in destination.list_objects("delta-dsnds")}
    assert "t/07.csv" not in keys and "t/03.csv" in keys
    stream = destination.open_range("delta-dsnds", "t/03.csv")
    assert stream.read() == body(99, 2048)
    stream.close()
    assert cli(capsys, "verify", plan, "--phase", "delta", *s)[0] == 0
    assert cli(capsys, "verify", plan, *s)[0] == 0

    code, out = cli(capsys, "run", plan, "--phase", "cutover", *s)
    assert code == 0
    assert "nothing to do" in out
    assert "Verification of the whole plan: passed" in out
    assert "Checklist for switching applications over:" in out
