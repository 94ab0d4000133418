"""Plan-time check of the copies stores make by themselves (issue 7, part 3): S3 bucket
replication and Azure geo-redundancy, read through each adapter (and its routing guard) and
judged by the planner against the policy and the catalog.

SeaweedFS and Azurite are real servers. AWS-only behaviour (a replication rule to a bucket in
another region) runs on moto's in-process AWS, the one place a stand-in is used; an S3 store
that does not implement the call is a loopback endpoint answering as such a store does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from migrate.cli import main
from migrate.errors import CredentialsRejected, NotFound
from migrate.localservers import Azurite, SeaweedFS
from migrate.plan import Plan, Severity, load_plan
from migrate.planner import PlanInputs, destination_limits, make_plan
from migrate.replication import read_replication
from migrate.routing import RoutingGuard, endpoint_host
from migrate.sites import CredentialRef, Runner, Site, SitesConfig
from providers.azure import AZURE_REGION_PAIRS
from providers.base import Replication, ReplicationTarget
from providers.catalog import Catalog, load_catalog
from providers.factory import build_adapter
from providers.s3 import _bucket_of_arn
from tests.conftest import AWS_KEY_ENV, AWS_SECRET_ENV, AZ_CONN_ENV, unique_name
from tests.helpers import put

TODAY = date(2026, 11, 23)

# A self-hosted destination in France; planning reads nothing from it.
CHU = Site(
    name="chu",
    provider="self-hosted",
    software="seaweedfs",
    region="local",
    endpoint="http://127.0.0.1:9",
    addressing="path",
    country="FR",
    operator="CHU Test",
    parent_country="FR",
    non_eu_law=(),
    certifications=("HDS",),
)

# francesouth as Microsoft's region table places it (the built-in catalog lacks it).
FRANCE_SOUTH = """\
name: azure
regions:
  - code: francesouth
    country:
      value: FR
      source: https://learn.microsoft.com/azure/reliability/cross-region-replication-azure
      as_of: 2022-12-12
      stated: "France | France Central | France South"
"""
# Fabricated for the test only: a pair leaving the EU from a region inside it.
FRANCE_SOUTH_ELSEWHERE = """\
name: azure
regions:
  - code: francesouth
    country: {value: US, source: https://example.org/fabricated-for-a-test, as_of: 2026-11-23}
"""
UK = """\
name: azure
regions:
  - code: uksouth
    country: {value: GB, source: https://example.org/uk, as_of: 2026-11-23}
  - code: ukwest
    country: {value: GB, source: https://example.org/uk, as_of: 2026-11-23}
"""


class Recorder(RoutingGuard):
    """The real routing guard, remembering each request it was asked about."""

    def __init__(self, *allowed: str) -> None:
        super().__init__(allowed)
        self.seen: list[tuple[str, str]] = []

    def check(self, method: str, url: str) -> None:
        self.seen.append((method, url))
        super().check(method, url)


def catalog_with(tmp_path: Path, *texts: str) -> Catalog:
    files = []
    for i, text in enumerate(texts):
        path = tmp_path / f"catalog-{i}.yaml"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return load_catalog(files)


def plan_with(
    src: Site,
    dst: Site,
    replication: dict[str, Replication],
    catalog: Catalog,
    policy: str = "eu-residency",
) -> Plan:
    config = SitesConfig(
        path=Path("sites.toml"),
        state_dir=Path("state"),
        runner=Runner(location="FR"),
        sites={src.name: src, dst.name: dst},
    )
    inputs = PlanInputs(
        site=src.name, inventory_run=1, limits=destination_limits(dst, catalog), datasets=()
    )
    return make_plan(
        name="repl",
        config=config,
        source=src.name,
        destination=dst.name,
        policy=policy,
        catalog=catalog,
        datasets=inputs,
        today=TODAY,
        bandwidth_bytes_per_second=1e8,
        inventory_run=1,
        replication=replication,
    )


def replication_findings(plan: Plan) -> list[tuple[str, Severity]]:
    return sorted((f.code, f.severity) for f in plan.findings if f.code.startswith("REPLICATION_"))


# -- SeaweedFS ----------------------------------------------------------------------------------


def test_seaweedfs_says_no_replication_through_the_guard(s3_site: Site, seaweed: SeaweedFS) -> None:
    """SeaweedFS 4.48 answers GetBucketReplication with ReplicationConfigurationNotFoundError
    (its handler reports that no configuration exists, as AWS does for a bucket without
    one): the answer is known, with no target, and the plan has no replication finding."""
    guard = Recorder(endpoint_host(seaweed.endpoint))
    adapter = build_adapter(s3_site, guard=guard)
    bucket = unique_name("repl")
    try:
        adapter.create_container(bucket)
        answer = adapter.replication(bucket)
        assert answer.known and answer.targets == ()
        assert "no bucket replication" in answer.detail
        assert any(m == "GET" and "replication" in url for m, url in guard.seen), guard.seen
        with pytest.raises(NotFound):
            adapter.replication(unique_name("absent"))
        # A bucket the run has not created yet is skipped, not an error.
        merged = read_replication(adapter, [bucket, unique_name("absent")])
        assert merged.known and merged.targets == ()
    finally:
        adapter.close()
    plan = plan_with(CHU, s3_site, {"source": Replication(), "destination": answer}, load_catalog())
    assert replication_findings(plan) == []


@contextmanager
def s3_answering(status: int, code: str) -> Iterator[str]:
    """A loopback S3 endpoint that answers every request with this error, as a store that
    does not implement (or does not allow) GetBucketReplication does."""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{code}</Message></Error>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "said"),
    [(501, "NotImplemented", "NotImplemented"), (403, "AccessDenied", "GetReplicationConfig")],
)
def test_an_s3_store_that_cannot_say_gives_a_warning(
    status: int, code: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AWS_KEY_ENV, "key")
    monkeypatch.setenv(AWS_SECRET_ENV, "secret-value")
    with s3_answering(status, code) as endpoint:
        site = CHU.model_copy(
            update={
                "endpoint": endpoint,
                "credentials": CredentialRef(
                    access_key_env=AWS_KEY_ENV, secret_key_env=AWS_SECRET_ENV
                ),
            }
        )
        adapter = build_adapter(site)
        try:
            answer = adapter.replication("data")
        finally:
            adapter.close()
    assert not answer.known and answer.targets == ()
    assert said in answer.detail and "chu" in answer.detail
    src = CHU.model_copy(update={"name": "src"})
    plan = plan_with(src, site, {"destination": answer}, load_catalog())
    assert replication_findings(plan) == [("REPLICATION_UNKNOWN", Severity.WARNING)]


def test_wrong_credentials_are_an_error_not_an_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AWS_KEY_ENV, "key")
    monkeypatch.setenv(AWS_SECRET_ENV, "secret-value")
    with s3_answering(403, "InvalidAccessKeyId") as endpoint:
        site = CHU.model_copy(
            update={
                "endpoint": endpoint,
                "credentials": CredentialRef(
                    access_key_env=AWS_KEY_ENV, secret_key_env=AWS_SECRET_ENV
                ),
            }
        )
        adapter = build_adapter(site)
        try:
            with pytest.raises(CredentialsRejected):
                adapter.replication("data")
        finally:
            adapter.close()


# -- Azurite ------------------------------------------------------------------------------------


def test_azurite_geo_redundancy_goes_to_the_paired_region(
    azure_site: Site, azurite_server: Azurite, tmp_path: Path
) -> None:
    """Azurite reports Standard_RAGRS: the copy is in francecentral's pair, francesouth."""
    guard = Recorder(endpoint_host(azurite_server.endpoint))
    adapter = build_adapter(azure_site, guard=guard)
    container = unique_name("geo")
    try:
        adapter.create_container(container)
        answer = adapter.replication(container)
    finally:
        adapter.close()
    assert answer.known and "Standard_RAGRS" in answer.detail
    assert [(t.kind, t.region) for t in answer.targets] == [("geo-redundancy", "francesouth")]
    # The guard sees URLs without their query (a SAS travels there): the last request is
    # the GET of account information on the container.
    assert guard.seen[-1] == ("GET", f"{azurite_server.endpoint}/{container}")

    fr_health = {"source": answer, "destination": Replication()}
    # The catalog places francesouth in France: the copy stays within fr-health.
    plan = plan_with(azure_site, CHU, fr_health, load_catalog(), policy="fr-health")
    assert replication_findings(plan) == []
    catalog = catalog_with(tmp_path, FRANCE_SOUTH)
    assert replication_findings(plan_with(azure_site, CHU, fr_health, catalog, "fr-health")) == []
    # Were the pair outside the EU, the plan could not be approved.
    elsewhere = catalog_with(tmp_path, FRANCE_SOUTH_ELSEWHERE)
    plan = plan_with(azure_site, CHU, fr_health, elsewhere)
    assert replication_findings(plan) == [("REPLICATION_OUTSIDE_POLICY", Severity.BLOCKING)]
    finding = next(f for f in plan.findings if f.code == "REPLICATION_OUTSIDE_POLICY")
    assert "francesouth" in finding.message and "United States" in finding.message
    assert "LRS or ZRS" in finding.action


def test_a_source_already_outside_the_policy_warns_about_its_replicas(
    azure_site: Site, tmp_path: Path
) -> None:
    """uksouth pairs with ukwest (both GB): leaving such an account, its geo copy is part of
    what is left behind, like the source's own verdict: a warning, not a block."""
    uk_site = azure_site.model_copy(update={"region": "uksouth"})
    adapter = build_adapter(uk_site)
    try:
        answer = adapter.replication(unique_name("uk"))  # account-wide: no container needed
    finally:
        adapter.close()
    assert [t.region for t in answer.targets] == ["ukwest"]
    plan = plan_with(uk_site, CHU, {"source": answer}, catalog_with(tmp_path, UK))
    assert replication_findings(plan) == [("REPLICATION_OUTSIDE_POLICY", Severity.WARNING)]
    assert any(f.code == "SOURCE_FAILS_POLICY" for f in plan.findings)


def test_an_azure_site_without_region_has_an_unknown_secondary(azure_site: Site) -> None:
    site = azure_site.model_copy(update={"region": None})
    adapter = build_adapter(site)
    try:
        answer = adapter.replication(unique_name("noregion"))
    finally:
        adapter.close()
    assert answer.known and [t.region for t in answer.targets] == [None]
    assert "declares no region" in answer.targets[0].description
    plan = plan_with(site, CHU, {"source": answer}, load_catalog())
    assert ("REPLICATION_UNKNOWN", Severity.WARNING) in replication_findings(plan)


def test_the_pair_table_is_two_way_and_european() -> None:
    for region, pair in AZURE_REGION_PAIRS.items():
        assert AZURE_REGION_PAIRS[pair] == region


# -- AWS (moto) ---------------------------------------------------------------------------------


def _bucket_in(region: str, name: str) -> None:
    client = boto3.client(
        "s3", region_name=region, aws_access_key_id="testing", aws_secret_access_key="x"
    )
    kwargs: dict[str, object] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    client.create_bucket(**kwargs)  # type: ignore[arg-type]
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def _rule(rule_id: str, bucket: str, priority: int, status: str = "Enabled") -> dict[str, object]:
    return {
        "ID": rule_id,
        "Status": status,
        "Priority": priority,
        "Filter": {},
        "DeleteMarkerReplication": {"Status": "Disabled"},
        "Destination": {"Bucket": f"arn:aws:s3:::{bucket}"},
    }


def test_aws_replication_to_a_us_region_blocks_the_plan(aws: Site) -> None:
    _bucket_in("us-east-1", "replica-us")
    _bucket_in("eu-central-1", "replica-de")
    guard = Recorder("s3.eu-west-3.amazonaws.com")
    adapter = build_adapter(aws, guard=guard)
    try:
        adapter.create_container("data-par")
        adapter.create_container("quiet-par")
        client = adapter._client  # type: ignore[attr-defined]
        client.put_bucket_versioning(
            Bucket="data-par", VersioningConfiguration={"Status": "Enabled"}
        )
        client.put_bucket_replication(
            Bucket="data-par",
            ReplicationConfiguration={
                "Role": "arn:aws:iam::123456789012:role/replication",
                "Rules": [
                    _rule("to-us", "replica-us", 1),
                    _rule("to-de", "replica-de", 2),
                    _rule("paused", "replica-us", 3, status="Disabled"),
                ],
            },
        )
        guard.seen.clear()
        answer = adapter.replication("data-par")
        quiet = adapter.replication("quiet-par")
    finally:
        adapter.close()
    assert answer.known
    assert sorted((t.kind, t.region) for t in answer.targets) == [
        ("bucket-replication", "eu-central-1"),
        ("bucket-replication", "us-east-1"),
    ]
    assert quiet.known and quiet.targets == ()
    # Every request, the region look-ups included, went through the guard to the site's host.
    assert {url.split("/")[2] for _, url in guard.seen} == {"s3.eu-west-3.amazonaws.com"}
    assert {m for m, _ in guard.seen} == {"GET", "HEAD"}

    catalog = load_catalog()
    as_source = plan_with(aws, CHU, {"source": answer}, catalog)
    assert replication_findings(as_source) == [("REPLICATION_OUTSIDE_POLICY", Severity.BLOCKING)]
    finding = next(f for f in as_source.findings if f.code == "REPLICATION_OUTSIDE_POLICY")
    assert "'to-us'" in finding.message and "replica-us" in finding.message
    assert "us-east-1" in finding.message and "replication rule" in finding.action
    as_destination = plan_with(CHU, aws, {"destination": answer}, catalog)
    assert ("REPLICATION_OUTSIDE_POLICY", Severity.BLOCKING) in replication_findings(as_destination)


def test_a_region_look_up_the_guard_refuses_leaves_the_region_unknown(aws: Site) -> None:
    """Virtual-host addressing: the look-up would go to the destination bucket's own host,
    which the guard does not allow; nothing is sent there and the region stays unknown."""
    _bucket_in("us-east-1", "replica-us")
    site = aws.model_copy(update={"addressing": "virtual"})
    guard = Recorder("data-par.s3.eu-west-3.amazonaws.com")
    adapter = build_adapter(site, guard=guard)
    try:
        adapter.create_container("data-par")
        client = adapter._client  # type: ignore[attr-defined]
        client.put_bucket_versioning(
            Bucket="data-par", VersioningConfiguration={"Status": "Enabled"}
        )
        client.put_bucket_replication(
            Bucket="data-par",
            ReplicationConfiguration={
                "Role": "arn:aws:iam::123456789012:role/replication",
                "Rules": [_rule("to-us", "replica-us", 1)],
            },
        )
        answer = adapter.replication("data-par")
    finally:
        adapter.close()
    assert [t.region for t in answer.targets] == [None]
    assert guard.seen[-1] == ("HEAD", "https://replica-us.s3.eu-west-3.amazonaws.com/")
    plan = plan_with(site, CHU, {"source": answer}, load_catalog())
    assert replication_findings(plan) == [("REPLICATION_UNKNOWN", Severity.WARNING)]


def test_a_region_in_the_arn_is_taken_as_is() -> None:
    assert _bucket_of_arn("arn:aws:s3:::plain") == ("plain", None)
    outpost = "arn:aws:s3-outposts:eu-west-3:123456789012:outpost/op-1/bucket/near"
    assert _bucket_of_arn(outpost) == ("near", "eu-west-3")
    assert _bucket_of_arn("not-an-arn") == ("not-an-arn", None)


def test_read_replication_merges_containers() -> None:
    target = ReplicationTarget("geo-redundancy", "northeurope", "account x")

    class Fake:
        site_name = "fake"

        def replication(self, container: str) -> Replication:
            if container == "gone":
                raise NotFound("gone")
            if container.startswith("closed"):
                return Replication(known=False, detail=f"{container}: not readable")
            return Replication(targets=(target,))

    fake: Any = Fake()
    merged = read_replication(fake, ["a", "b", "gone"])
    assert merged.known and merged.targets == (target,)
    merged = read_replication(fake, ["a", *(f"closed{i}" for i in range(5))])
    assert not merged.known and merged.targets == (target,)
    assert merged.detail.endswith("and 2 more")


# -- the command ---------------------------------------------------------------------------------


def test_migrate_plan_reads_both_sites_and_refuses_a_pair_outside_the_policy(
    azurite_server: Azurite,
    seaweed: SeaweedFS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(AZ_CONN_ENV, azurite_server.connection_string)
    monkeypatch.setenv(AWS_KEY_ENV, seaweed.access_key)
    monkeypatch.setenv(AWS_SECRET_ENV, seaweed.secret_key)
    container = unique_name("hdh")
    source = Site(
        name="az",
        provider="azure",
        region="francecentral",
        account=azurite_server.account,
        endpoint=azurite_server.endpoint,
        credentials=CredentialRef(connection_string_env=AZ_CONN_ENV),
    )
    adapter = build_adapter(source)
    try:
        adapter.create_container(container)
        put(adapter, container, "a.csv", b"1,2,3\n")
    finally:
        adapter.close()
    (tmp_path / "elsewhere.yaml").write_text(FRANCE_SOUTH_ELSEWHERE, encoding="utf-8")

    def sites_file(catalog: str) -> Path:
        path = tmp_path / "sites.toml"
        path.write_text(
            f"""policy = "eu-residency"
runner = {{ location = "FR" }}
state_dir = "state"
catalog = [{catalog}]

[sites.az]
provider = "azure"
region = "francecentral"
account = "{azurite_server.account}"
endpoint = "{azurite_server.endpoint}"
containers = ["{container}"]
credentials = {{ connection_string_env = "{AZ_CONN_ENV}" }}

[sites.chu]
provider = "self-hosted"
software = "seaweedfs"
endpoint = "{seaweed.endpoint}"
region = "local"
addressing = "path"
country = "FR"
bucket_prefix = "r-"
credentials = {{ access_key_env = "{AWS_KEY_ENV}", secret_key_env = "{AWS_SECRET_ENV}" }}
""",
            encoding="utf-8",
        )
        return path

    sites = sites_file("")
    assert main(["inventory", "az", "--sites", str(sites), "--json"]) == 0
    capsys.readouterr()
    out = tmp_path / "plans" / "p.yaml"
    args = ["plan", "--from", "az", "--to", "chu", "-o", str(out), "--sites", str(sites)]
    assert main([*args, "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert (made["plan"], made["file"], made["blocking"]) == ("p", str(out), 0)
    codes = {f.code for f in load_plan(out).findings}
    assert not codes & {"REPLICATION_UNKNOWN", "REPLICATION_OUTSIDE_POLICY"}  # francesouth: FR

    sites = sites_file('"elsewhere.yaml"')
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["blocking"] == 1
    blocking = [f.code for f in load_plan(out).blocking]
    assert blocking == ["REPLICATION_OUTSIDE_POLICY"]
