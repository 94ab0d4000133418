"""plans/example-hdh.yaml: what `migrate plan` writes for the README's example sites file
(Azure francecentral -> Scaleway fr-par, policy fr-health), from an inventory of 2.4
million objects given as the aggregates the planner reads. A file for reviewers to read
before they run anything. Planning is deterministic: this test makes the plan again and
compares; `MIGRATE_WRITE_EXAMPLE=1 pytest tests/test_plan_example.py` writes it anew (after
a catalog or planner change)."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from datetime import date
from pathlib import Path

import pytest
import yaml

from migrate.errors import PlanError
from migrate.plan import SCHEMA_VERSION, Plan, load_plan, to_yaml
from migrate.planner import (
    SIZE_LABELS,
    DatasetInput,
    IssueInput,
    PlanInputs,
    SizeClassInput,
    TierInput,
    destination_limits,
    make_plan,
    parse_bandwidth,
)
from migrate.sites import parse_sites
from providers.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "plans" / "example-hdh.yaml"
GiB, MiB = 1024**3, 1024**2

SITES = """
policy = "fr-health"
runner = { location = "FR" }

[sites.azure-hdh]
provider = "azure"
region = "francecentral"
account = "hdhprod"
containers = ["snds", "cohorts"]
credentials = { connection_string_env = "HDH_AZURE_CONNECTION_STRING" }

[sites.scw-par]
provider = "scaleway"
region = "fr-par"
bucket_prefix = "hdh-"
credentials = { access_key_env = "SCW_ACCESS_KEY", secret_key_env = "SCW_SECRET_KEY" }
"""


def _dataset(
    container: str,
    prefix: str,
    classes: tuple[tuple[int, int], ...],  # (objects, bytes) in SIZE_LABELS order
    tiers: tuple[TierInput, ...],
    issues: tuple[IssueInput, ...] = (),
) -> DatasetInput:
    objects = sum(n for n, _ in classes)
    return DatasetInput(
        dataset=f"{container}/{prefix}/",
        container=container,
        objects=objects,
        bytes=sum(b for _, b in classes),
        max_size=max((b // n for n, b in classes if n), default=0) * 2,
        max_key_bytes=96,
        size_classes=tuple(
            SizeClassInput(label, n, b) for label, (n, b) in zip(SIZE_LABELS, classes, strict=True)
        ),
        tiers=tiers,
        issues=issues,
    )


def example_plan() -> Plan:
    config = parse_sites(tomllib.loads(SITES), ROOT / "plans" / "sites.toml")
    catalog = load_catalog()
    inputs = PlanInputs(
        site="azure-hdh",
        inventory_run=1,
        limits=destination_limits(config.site("scw-par"), catalog),
        datasets=(
            _dataset(
                "snds", "dcir",
                ((1_800_000, 420 * GiB), (90_000, 610 * GiB), (1_200, 95 * GiB), (40, 60 * GiB),
                 (0, 0)),
                (TierInput("Hot", 1_891_240, 1185 * GiB, 0, 0),),
                (IssueInput("NO_CHECKSUM", 1_240, ("snds/dcir/2024/extract-0001.parquet",)),),
            ),
            _dataset(
                "snds", "pmsi",
                ((400_000, 96 * GiB), (20_000, 140 * GiB), (300, 24 * GiB), (0, 0), (0, 0)),
                (TierInput("Hot", 300_300, 180 * GiB, 0, 0),
                 TierInput("Cool", 120_000, 80 * GiB, 0, 0)),
            ),
            _dataset(
                "cohorts", "constances",
                ((60_000, 9 * GiB), (4_000, 30 * GiB), (200, 18 * GiB), (12, 140 * GiB),
                 (0, 0)),
                (TierInput("Hot", 60_212, 190 * GiB, 0, 0),
                 TierInput("Archive", 4_000, 7 * GiB, 4_000, 7 * GiB)),
                (IssueInput("ARCHIVED", 4_000, ("cohorts/constances/2019/wave-1.tar",)),),
            ),
        ),
        recent_objects=9_000,
        recent_bytes=12 * GiB,
    )  # fmt: skip
    return make_plan(
        name="example-hdh",
        config=config,
        source="azure-hdh",
        destination="scw-par",
        policy="fr-health",
        catalog=catalog,
        datasets=inputs,
        today=date(2026, 11, 23),
        bandwidth_bytes_per_second=parse_bandwidth("1Gbit/s"),
        inventory_run=inputs.inventory_run,
    )


def test_the_example_plan_is_what_migrate_plan_writes_today() -> None:
    text = to_yaml(example_plan())
    if os.environ.get("MIGRATE_WRITE_EXAMPLE"):
        EXAMPLE.write_text(text, encoding="utf-8")
    assert EXAMPLE.read_text(encoding="utf-8") == text, (
        "plans/example-hdh.yaml is stale: MIGRATE_WRITE_EXAMPLE=1 pytest "
        "tests/test_plan_example.py writes it again; review the diff"
    )
    loaded = load_plan(EXAMPLE)  # its digest holds
    assert [p.name for p in loaded.phases][:2] == ["pilot", "bulk-1"]


def test_every_plan_under_plans_loads() -> None:
    """The plans kept in the repository are of the schema version this migrate reads."""
    plans = sorted((ROOT / "plans").glob("*.yaml"))
    assert plans
    for path in plans:
        assert load_plan(path).schema_version == SCHEMA_VERSION, path


@pytest.mark.parametrize("version", [99, 0, "1", True, None])
def test_a_plan_of_another_schema_version_is_refused_though_its_digest_holds(
    tmp_path: Path, version: object
) -> None:
    """The digest says the content is what its writer meant, not that this version reads
    it as meant: another version (or none, or a string) is refused, naming both."""
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    if version is None:
        del raw["schema_version"]
    else:
        raw["schema_version"] = version
    body = {k: v for k, v in raw.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw["digest"] = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert err.value.exit_code == 9
    line = err.value.one_line()
    if version is None:
        assert (
            f"no schema_version (this migrate reads plans of schema version {SCHEMA_VERSION})"
            in line
        )
    else:
        assert f"plan schema version {version!r}, this migrate reads schema version 1" in line
