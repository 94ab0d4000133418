"""Read, before planning, what the planner (pure) must know of the live sites: the copies
the source and destination make by themselves (S3 bucket replication, Azure
geo-redundancy), judged against the policy, destination buckets already in use, and what
the source's containers keep besides current objects (versions, snapshots, locks).

Guarantees: each container is asked once, through the site's own adapter and endpoint; a
container that does not exist yet (a destination bucket the run will create) has nothing
to replicate and is skipped; CredentialsRejected and EndpointUnreachable propagate (a plan
needs reachable sites anyway); the adapters are closed before returning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date

from migrate.errors import ConfigError, NotFound
from migrate.ledger import Ledger
from migrate.plan import Plan
from migrate.planner import (
    DEFAULT_WAVE_CAP,
    PlanInputs,
    check_plan_options,
    destination_buckets,
    destination_limits,
    excluded_datasets,
    make_plan,
    plan_inputs,
    without_datasets,
)
from migrate.policy import evaluate
from migrate.session import SiteReads, declared_proxies, site_reads
from migrate.sites import Site, SitesConfig
from providers.base import Protection, Replication, ReplicationTarget, StoreAdapter
from providers.catalog import Catalog

__all__ = ["read_plan_protection", "read_plan_replication", "read_replication"]

_DETAILS = 3  # reasons shown when several containers could not be read


def read_replication(adapter: StoreAdapter, containers: Iterable[str]) -> Replication:
    """The containers' answers merged: every distinct target (in container order), known
    only when every answer was, and the reasons of the unknown ones. Missing containers
    (NotFound) are skipped."""
    targets: list[ReplicationTarget] = []
    unknown: list[str] = []
    read = 0
    for container in sorted(set(containers)):
        try:
            answer = adapter.replication(container)
        except NotFound:
            continue  # created by the run later: nothing stored, nothing replicated yet
        read += 1
        targets.extend(t for t in answer.targets if t not in targets)
        if not answer.known and answer.detail not in unknown:
            unknown.append(answer.detail)
    if unknown:
        more = len(unknown) - _DETAILS
        detail = "; ".join(unknown[:_DETAILS]) + (f"; and {more} more" if more > 0 else "")
        return Replication(targets=tuple(targets), known=False, detail=detail)
    return Replication(
        targets=tuple(targets), detail=f"{adapter.site_name}: {read} container(s) read"
    )


def read_plan_replication(
    config: SitesConfig,
    source: str,
    destination: str,
    inputs: PlanInputs,
    *,
    reads: SiteReads,
    roles: Sequence[str] = ("source", "destination"),
) -> dict[str, Replication]:
    """What make_plan's `replication` takes: the source's inventoried containers and the
    destination buckets the plan will map them to (those that exist); of the `roles` asked
    (one left out is not read, and gives no finding)."""
    src, dst = config.site(source), config.site(destination)
    containers = sorted({d.container for d in inputs.datasets})
    wanted = {
        "source": (src, containers),
        "destination": (dst, destination_buckets(dst.bucket_prefix, containers)),
    }
    out: dict[str, Replication] = {}
    for role, (site, names) in wanted.items():
        if role not in roles:
            continue
        adapter = reads.adapter(site, names)
        try:
            out[role] = read_replication(adapter, names)
        finally:
            adapter.close()
    return out


def used_destination_buckets(
    config: SitesConfig,
    destination: str,
    inputs: PlanInputs,
    *,
    reads: SiteReads,
) -> list[str]:
    """The destination buckets the plan maps to that exist and already hold an object (one
    listing request each, reading one key at most)."""
    dst = config.site(destination)
    containers = sorted({d.container for d in inputs.datasets})
    buckets = destination_buckets(dst.bucket_prefix, containers)
    adapter = reads.adapter(dst, buckets)
    used = []
    try:
        for bucket in buckets:
            try:
                if next(iter(adapter.list_objects(bucket)), None) is not None:
                    used.append(bucket)
            except NotFound:
                continue
    finally:
        adapter.close()
    return used


def read_plan_protection(
    config: SitesConfig,
    source: str,
    inputs: PlanInputs,
    *,
    reads: SiteReads,
) -> dict[str, Protection]:
    """What make_plan's `protection` takes: each inventoried source container's versions,
    snapshots and locks (a container gone since the inventory is left out)."""
    containers = sorted({d.container for d in inputs.datasets})
    adapter = reads.adapter(config.site(source), containers)
    out: dict[str, Protection] = {}
    try:
        for container in containers:
            try:
                out[container] = adapter.protection(container)
            except NotFound:
                continue
    finally:
        adapter.close()
    return out


def _may_receive(site: Site, policy: str, catalog: Catalog, today: date) -> bool:
    """The destination passes what the plan would block it on: a destination role in the
    catalog, and a verdict under the policy that does not block."""
    if "destination" not in catalog.provider_of(site).roles:
        return False
    return not evaluate(site, policy, catalog, today).blocking


def plan_from_sites(
    config: SitesConfig,
    catalog: Catalog,
    *,
    name: str,
    source: str,
    destination: str,
    policy: str,
    today: date,
    bandwidth_bytes_per_second: float,
    pilot_share: float = 0.02,
    pilot: bool = True,
    wave_cap_bytes: int = DEFAULT_WAVE_CAP,
    include_decommission: bool = False,
    sha256_on_large_objects: bool = True,
    exclude: Sequence[str] = (),
    warn: Callable[[str], None],
    keep_waves: int | None = None,
) -> Plan:
    """What `migrate plan` does, for the command and the demo alike: the inventory's
    aggregates, what the live sites say (replication, buckets in use), then the pure plan.
    `keep_waves`: the number of bulk waves of the plan whose runs began (see make_plan)."""
    check_plan_options(bandwidth_bytes_per_second, pilot_share, wave_cap_bytes)
    if not config.site(source).buckets:
        # Else "run `migrate inventory SITE` first", which refuses it: a site with no
        # bucket listed (a destination's) cannot be moved from (a walkthrough).
        raise ConfigError(
            f"{config.path}: sites.{source}: no buckets/containers listed: a source names "
            "those it moves",
            hint=f'add buckets = ["name", ...] to site {source}, then `migrate inventory '
            f"{source}`; or check --from and --to, the source first",
        )
    with Ledger(config.state_dir) as ledger:
        inputs = plan_inputs(
            ledger,
            source,
            limits=destination_limits(config.site(destination), catalog),
            exclude=exclude,
            keep=ledger.datasets_taken(name, list(ledger.plan_routes(name))),
        )
    # An unknown name is refused before any read.
    kept = without_datasets(inputs, excluded_datasets(inputs, exclude))
    proxies = declared_proxies(config, [source, destination])  # as the run's guard takes
    # A site the plan will block is not read: its endpoint placed elsewhere by the catalog
    # (the requests, bucket names in them, would go there), or a destination the policy
    # or the catalog refuses (a walkthrough saw a plan to a US host read it first, and
    # fail on its DNS before any finding was written). The plan says why, and blocks.
    readable = [
        role
        for role, name in (("source", source), ("destination", destination))
        if catalog.endpoint_elsewhere(config.site(name)) is None
        and (role == "source" or _may_receive(config.site(name), policy, catalog, today))
    ]
    with site_reads(config, catalog, "plan", proxies, warn=warn) as reads:
        replication = read_plan_replication(
            config, source, destination, kept, reads=reads, roles=readable
        )
        used_buckets = (
            used_destination_buckets(config, destination, kept, reads=reads)
            if "destination" in readable
            else []
        )
        protection = (
            read_plan_protection(config, source, kept, reads=reads) if "source" in readable else {}
        )
    if used_buckets:
        # A plan made again finds its own earlier copies there: not another writer's objects
        # to warn of (a foreign object under a key it writes is still a conflict at the run).
        with Ledger.for_reading(config.state_dir) as ledger:
            ours = set(ledger.buckets_written(name, used_buckets))
        used_buckets = [b for b in used_buckets if b not in ours]
    made = make_plan(
        name=name,
        config=config,
        source=source,
        destination=destination,
        policy=policy,
        catalog=catalog,
        datasets=inputs,
        today=today,
        bandwidth_bytes_per_second=bandwidth_bytes_per_second,
        pilot_share=pilot_share,
        pilot=pilot,
        wave_cap_bytes=wave_cap_bytes,
        inventory_run=inputs.inventory_run,
        include_decommission=include_decommission,
        sha256_on_large_objects=sha256_on_large_objects,
        replication=replication,
        used_buckets=used_buckets,
        protection=protection,
        exclude=exclude,
        keep_waves=keep_waves,
    )
    with Ledger(config.state_dir) as ledger:  # approval takes only what `plan` made
        ledger.record_plan_made(made.name, made.digest)
    return made
