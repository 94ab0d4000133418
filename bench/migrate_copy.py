"""The migrate side of a copy scenario, run as its own process so that its CPU and memory
are measured the same way as rclone's.

    python bench/migrate_copy.py copy   ARGS_JSON   # inventory + one-phase plan + run
    python bench/migrate_copy.py resume ARGS_JSON   # run the same phase again (no inventory)

ARGS_JSON: {"sites": path, "source": site, "destination": site,
            "buckets": {source container: destination bucket},
            "concurrency": int, "part_size": bytes}

`copy` does what a user does for a first copy: list the source into the state (the
inventory) and run one bulk phase of a plan over every listed dataset. `resume` is the
no-op re-run of a finished phase: `migrate run` again, the ledger says what is done.
The plan is built the way tests/test_executor.py builds it (no planner needed) and saved
next to the state, so `resume` runs the very same plan. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from migrate.executor import TransferConfig, run_phase  # noqa: E402
from migrate.inventory import run_inventory  # noqa: E402
from migrate.ledger import Ledger  # noqa: E402
from migrate.plan import (  # noqa: E402
    Estimate,
    Mapping,
    Phase,
    PhaseKind,
    Plan,
    PlanOptions,
    SiteRef,
)
from migrate.sites import Site, load_sites  # noqa: E402
from providers.factory import build_adapter  # noqa: E402

PHASE = "bulk-1"


def one_phase_plan(
    ledger: Ledger, source: Site, destination: Site, buckets: dict[str, str]
) -> Plan:
    """Every dataset of the source's inventory, each to its mapped bucket, one bulk phase."""
    datasets = ledger.dataset_counts(source.name, [("all", 2**62)], [])
    mappings = tuple(
        Mapping(
            dataset=d.dataset,
            source_container=d.container,
            source_prefix=d.dataset.split("/", 1)[1],
            destination_bucket=buckets[d.container],
            destination_prefix=d.dataset.split("/", 1)[1],
        )
        for d in datasets
    )
    return Plan(
        name="bench",
        created="2026-11-23",
        policy="eu-residency",
        source=source.name,
        destination=destination.name,
        inventory_run=1,
        sites=(
            SiteRef(name=source.name, role="source", provider=source.provider, verdict="PASS"),
            SiteRef(
                name=destination.name,
                role="destination",
                provider=destination.provider,
                verdict="PASS",
            ),
        ),
        mappings=mappings,
        phases=(Phase(name=PHASE, kind=PhaseKind.BULK),),
        totals=Estimate(),
        allowlist=(),
        options=PlanOptions(bandwidth_bytes_per_second=1e9, pilot_share=0.02, wave_cap_bytes=2**50),
    )


def main(argv: list[str]) -> int:
    mode, args = argv[0], json.loads(argv[1])
    config = load_sites(Path(args["sites"]))
    source_site = config.site(args["source"])
    destination_site = config.site(args["destination"])
    source = build_adapter(source_site)
    destination = build_adapter(destination_site)
    plan_file = config.state_dir / "bench-plan.json"
    started = time.monotonic()
    listed = 0
    if mode == "copy":
        inventory = run_inventory(config, source_site.name, source)
        listed = inventory.objects
    listed_at = time.monotonic()
    with Ledger(config.state_dir) as ledger:
        if mode == "copy":
            plan = one_phase_plan(ledger, source_site, destination_site, args["buckets"])
            plan_file.write_text(plan.model_dump_json(), encoding="utf-8")
        else:
            plan = Plan.model_validate_json(plan_file.read_text(encoding="utf-8"))
        summary = run_phase(
            plan,
            PHASE,
            ledger,
            source,
            destination,
            config=TransferConfig(concurrency=args["concurrency"], part_size=args["part_size"]),
        )
    source.close()
    destination.close()
    out: dict[str, Any] = {
        "listed": listed,
        "inventory_seconds": round(listed_at - started, 3),
        "objects": summary.objects,
        "already_done": summary.already_done,
        "copied": summary.copied,
        "bytes_copied": summary.bytes_copied,
        "bytes_sent": summary.bytes_sent,
        "failed": summary.failed,
        "changed": summary.changed,
        "retries": summary.retries,
        "run_seconds": round(summary.seconds, 3),
        "failures": summary.failures[:5],
    }
    print(json.dumps(out))
    return 0 if summary.failed == 0 and summary.changed == 0 else 11


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
