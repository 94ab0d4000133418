"""The planner: inventory aggregates + catalog + policy -> a Plan.

`make_plan` is pure: no I/O and no clock (`today` is passed in); the same inputs give a
byte-identical plan (`migrate.plan.to_yaml`). `plan_inputs` reads what it needs from the
ledger beforehand, as per-dataset aggregates only, so memory does not grow with the number
of objects. `approve_plan` records the approval of a plan's digest
(`migrate.plan.check_approved` checks it).

How the plan is shaped (each choice is visible in the plan itself):
- Mappings: one per dataset (container + top-level prefix). The destination bucket is the
  destination site's `bucket_prefix` + the source container, made a valid S3 bucket name
  (3-63 characters: a-z, 0-9, '-'; renamed with `renamed_because` when needed); the
  destination prefix keeps the source prefix. Source tiers map to the destination's
  standard class from the catalog; tiers that need a restore map to nothing (a blocking
  finding); Azure tier names are never passed through.
- Phases: `pilot` (a hash sample of `pilot_share` of the objects, plus the lowest-hash object
  of every dataset x size class, so every dataset and size is tried; left out only when
  asked, with a NO_PILOT warning), `bulk-1..N` (hash waves, N = ceil(bytes after the
  pilot / wave cap)), `delta` and `cutover` (what is new or changed since the copy), and
  `decommission` only when asked.
- Estimates are computed from the aggregates, not per object: a hash-sampled phase gets its
  expected share of each dataset x size class, and requests follow the executor's part rule
  applied to each class's mean object size. They are estimates, labelled as such.
- Egress cost uses the source's catalog price per decimal GB; the free monthly allowance is
  counted once (as if the whole migration ran within one month) and consumed by the phases
  in order, so the total errs on the high side. Unknown price: None. The catalog has no
  request prices: request cost is None.
- Metadata S3 cannot carry (over 2 KB, or names/values that are not header-safe) is a
  blocking finding under every policy: the executor copies metadata as it is, so the
  destination would refuse those writes; rename or trim it at the source first.
- Replication (read beforehand by `migrate.replication`, passed in): a copy the source or
  the destination makes by itself (S3 bucket replication, Azure geo-redundancy) to a region
  whose catalog country is outside the policy's region rules is REPLICATION_OUTSIDE_POLICY,
  blocking; for a source whose own region already fails those rules it is a warning, like
  the source's verdict (those copies are part of what is being left). A target whose region
  or country is unknown, or settings the API could not give, is REPLICATION_UNKNOWN
  (warning).
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import math
import re
from collections.abc import Collection, Sequence
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

from migrate.errors import ConfigError, PlanError, PlanTampered
from migrate.inventory import MAX_KEY_BYTES, MAX_OBJECT_BYTES, Flag
from migrate.ledger import Approval, Ledger
from migrate.plan import (
    CERTIFICATION_CONDITION,
    Estimate,
    Finding,
    Mapping,
    Phase,
    PhaseKind,
    Plan,
    PlanOptions,
    Selector,
    Severity,
    SiteRef,
    check_approved,
    check_inventory_held,
    check_same_routes,
    load_plan,
    with_digest,
)
from migrate.policy import Verdict, evaluate, evaluate_runner, get_policy
from migrate.routing import is_global_endpoint, proxy_host
from migrate.sites import Site, SitesConfig
from migrate.transfer import DEFAULT_PART_SIZE
from providers.base import RESTORED_IN_PLACE, Protection, Replication, ReplicationTarget
from providers.catalog import Catalog, ClassMapping, country_name, in_eu_eea
from providers.factory import declared_key_rules, site_hosts

__all__ = [
    "DEFAULT_WAVE_CAP",
    "SIZE_BOUNDS",
    "SIZE_LABELS",
    "DatasetInput",
    "DestinationLimits",
    "IssueInput",
    "PlanInputs",
    "TierInput",
    "approve_plan",
    "bucket_name_for",
    "check_approved",
    "destination_buckets",
    "destination_limits",
    "make_plan",
    "parse_bandwidth",
    "plan_inputs",
]

MiB, GiB, TiB = 1024**2, 1024**3, 1024**4
GB = 10**9  # prices are per decimal GB
DEFAULT_WAVE_CAP = 2 * TiB
EXAMPLES = 3  # keys shown per finding: a few, never the list
_EXAMPLE_CHARS = 120

# The plan's size classes: the inventory's, split at the executor's default part size so
# that single-request and multipart objects fall in different classes.
SIZE_BOUNDS: tuple[int, ...] = (MiB, DEFAULT_PART_SIZE, 100 * MiB, 5 * GiB)
SIZE_LABELS: tuple[str, ...] = ("<1 MiB", "1-16 MiB", "16-100 MiB", "100 MiB-5 GiB", ">=5 GiB")

# Inventory flags the planner reads (key length and size are judged against the
# destination's own limits instead of the inventory's S3 defaults).
_FLAGS: tuple[Flag, ...] = (
    Flag.METADATA_TOO_LARGE,
    Flag.METADATA_BAD_NAME,
    Flag.ARCHIVED,
    Flag.NO_CHECKSUM,
    Flag.KEY_NOT_PORTABLE,
    Flag.DIRECTORY_MARKER,
    Flag.HEADER_NOT_ASCII,
    Flag.KEY_NOT_UTF8,
    Flag.TAGGED,
    Flag.NOT_BLOCK_BLOB,
    Flag.FOLDER_METADATA,
)


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationLimits:
    """The destination limits the inventory is measured against (bytes)."""

    key_bytes: int = MAX_KEY_BYTES
    segment_bytes: int | None = None  # longest '/'-separated key segment; None: no limit
    object_bytes: int = MAX_OBJECT_BYTES
    # False where a key cannot also be a folder of others (`a` beside `a/b`) nor end
    # with '/' (a local directory)
    key_may_be_prefix: bool = True


@dataclass(frozen=True)
class SizeClassInput:
    label: str
    objects: int
    bytes: int


@dataclass(frozen=True)
class TierInput:
    tier: str | None  # as the source reports it; None: not reported
    objects: int
    bytes: int
    archived: int  # objects the adapter saw as needing a restore
    archived_bytes: int  # and their bytes


@dataclass(frozen=True)
class IssueInput:
    """Objects of a dataset that will not move as they are."""

    code: str  # KEY_TOO_LONG, KEY_SEGMENT_TOO_LONG, OBJECT_TOO_LARGE, a Flag name, VERSIONED
    objects: int
    examples: tuple[str, ...] = ()  # "container/key", at most a few


@dataclass(frozen=True)
class DatasetInput:
    dataset: str
    container: str
    objects: int
    bytes: int
    max_size: int
    max_key_bytes: int
    size_classes: tuple[SizeClassInput, ...]  # in SIZE_LABELS order
    tiers: tuple[TierInput, ...]
    issues: tuple[IssueInput, ...]  # only codes with objects

    def issue(self, code: str) -> IssueInput | None:
        return next((i for i in self.issues if i.code == code), None)


@dataclass(frozen=True)
class PlanInputs:
    """What the planner needs of a site's inventory: aggregates, a few example keys."""

    site: str
    inventory_run: int
    limits: DestinationLimits
    datasets: tuple[DatasetInput, ...]
    # What changed at the source in the CHANGE_WINDOW_DAYS before the inventory began: the
    # rate the delta and cutover estimates are projected from.
    recent_objects: int = 0
    recent_bytes: int = 0
    inventory_token: str | None = None  # that inventory run's random name

    @property
    def objects(self) -> int:
        return sum(d.objects for d in self.datasets)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.datasets)


def _example(container: str, key: str) -> str:
    text = f"{container}/{key}"
    if len(text) <= _EXAMPLE_CHARS:
        return text
    size = len(key.encode("utf-8", "surrogateescape"))
    return f"{text[: _EXAMPLE_CHARS - 30]}… (key of {size} bytes)"


CHANGE_WINDOW_DAYS = 30  # the source's recent change rate is measured over this window


def plan_inputs(
    ledger: Ledger,
    site: str,
    *,
    limits: DestinationLimits | None = None,
    exclude: Sequence[str] = (),
    keep: Collection[str] = (),
) -> PlanInputs:
    """Per-dataset aggregates of the site's current inventory, measured against the
    destination's limits (`destination_limits`; default: S3's). Grouped scans and bounded
    queries only. `exclude` (as `make_plan` takes it): the recent changes, which the delta
    and cutover estimates are projected from, leave those datasets out. `keep`: datasets
    the plan of this name took before, kept with no object where the source no longer
    holds them (their copies stay the plan's: verified, reported, removable). Raises
    PlanError when the site has no finished inventory."""
    limits = limits or DestinationLimits()
    run = ledger.latest_inventory_run(site)
    if run is None:
        raise PlanError(
            f"site {site} has no finished inventory", hint=f"run `migrate inventory {site}` first"
        )
    stats = ledger.plan_dataset_stats(
        site,
        SIZE_BOUNDS,
        [int(f) for f in _FLAGS],
        key_limit=limits.key_bytes,
        segment_limit=limits.segment_bytes,
        size_limit=limits.object_bytes,
        folder_keys=not limits.key_may_be_prefix,
    )
    tiers: dict[str, list[TierInput]] = {}
    for t in ledger.plan_tier_stats(site):
        tiers.setdefault(t.dataset, []).append(
            TierInput(t.tier, t.objects, t.bytes, t.archived, t.archived_bytes)
        )

    def examples(dataset: str, condition: str, value: int | str) -> tuple[str, ...]:
        rows = ledger.plan_examples(site, dataset, condition, value, EXAMPLES)
        return tuple(_example(c, k) for c, k in rows)

    datasets = []
    for s in stats:
        checks: list[tuple[str, int, str | None, int | str]] = [
            ("KEY_TOO_LONG", s.over_key_limit, "key_bytes", limits.key_bytes),
            ("KEY_SEGMENT_TOO_LONG", s.over_segment_limit, "segment_bytes",
             limits.segment_bytes or 0),
            ("OBJECT_TOO_LARGE", s.over_size_limit, "size", limits.object_bytes),
            ("KEY_IS_FOLDER", s.folder_keys, "folder_key", 0),
            *((Flag(bit).name or str(bit), n, "flag", bit) for bit, n, _ in s.flags),
            ("VERSIONED", s.versioned, None, 0),
        ]  # fmt: skip
        issues = tuple(
            IssueInput(code, n, examples(s.dataset, cond, value) if cond else ())
            for code, n, cond, value in checks
            if n
        )
        datasets.append(
            DatasetInput(
                dataset=s.dataset,
                container=s.container,
                objects=s.objects,
                bytes=s.bytes,
                max_size=s.max_size,
                max_key_bytes=s.max_key_bytes,
                size_classes=tuple(
                    SizeClassInput(label, n, b)
                    for label, (n, b) in zip(SIZE_LABELS, s.size_classes, strict=True)
                ),
                tiers=tuple(tiers.get(s.dataset, ())),
                issues=issues,
            )
        )
    # A dataset gone from the source whose objects the plan took: dropped from the plan
    # made again, its copies were neither listed nor verified (a review).
    listed = {d.dataset for d in datasets}
    empty = tuple(SizeClassInput(label, 0, 0) for label in SIZE_LABELS)
    for gone in sorted(set(keep) - listed):
        container = gone.split("/", 1)[0]
        datasets.append(DatasetInput(gone, container, 0, 0, 0, 0, empty, (), ()))
    datasets.sort(key=lambda d: (d.dataset, d.container))
    started = ledger.inventory_started_at(run)
    inputs = PlanInputs(site=site, inventory_run=run, limits=limits, datasets=tuple(datasets),
                        inventory_token=ledger.inventory_token(run))  # fmt: skip
    left_out = excluded_datasets(inputs, exclude) if exclude else []
    if started is None:
        return inputs
    since = datetime.fromisoformat(started) - timedelta(days=CHANGE_WINDOW_DAYS)
    n, size = ledger.plan_recent_changes(site, since.isoformat(timespec="seconds"), left_out)
    return replace(inputs, recent_objects=n, recent_bytes=size)


# -- catalog adapters --------------------------------------------------------------------------


@dataclass(frozen=True)
class _PartRule:
    max_parts: int
    min_part_size: int
    max_part_size: int
    max_single_put: int


def _known(value: int | None, default: int) -> int:
    return default if value is None else int(value)


def destination_limits(site: Site, catalog: Catalog) -> DestinationLimits:
    """The destination's limits from the catalog; S3's where the catalog does not know.
    The largest object is also bounded by max parts x max part size when both are known.
    What its adapter declares of keys (a local directory's) counts too: the catalog leaves
    a local site's limits to it."""
    lim = catalog.limits_for(site)
    largest = _known(lim.max_object_size.value, MAX_OBJECT_BYTES)
    if lim.max_parts.value is not None and lim.max_part_size.value is not None:
        largest = min(largest, int(lim.max_parts.value) * int(lim.max_part_size.value))
    declared = declared_key_rules(site)
    segment = lim.max_segment_bytes.value
    if declared.max_segment_bytes is not None:
        segment = min(segment or declared.max_segment_bytes, declared.max_segment_bytes)
    return DestinationLimits(
        key_bytes=_known(lim.key_bytes.value, MAX_KEY_BYTES),
        segment_bytes=segment,
        object_bytes=largest,
        key_may_be_prefix=declared.key_may_be_prefix,
    )


def _part_rule(site: Site, catalog: Catalog) -> _PartRule:
    lim = catalog.limits_for(site)
    return _PartRule(
        max_parts=_known(lim.max_parts.value, 10_000),
        min_part_size=_known(lim.min_part_size.value, 5 * MiB),
        max_part_size=_known(lim.max_part_size.value, 5 * GiB),
        max_single_put=_known(lim.max_single_put.value, 5 * GiB),
    )


def _standard_class(site: Site, catalog: Catalog) -> str | None:
    """The destination's standard class: the provider's, else its declared software's
    (Catalog.storage_class_for only looks at the provider)."""
    provider = catalog.provider_of(site)
    if provider.standard_class.value:
        return provider.standard_class.value
    if site.software:
        soft = provider.find_software(site.software)
        if soft is not None and soft.standard_class.value:
            return soft.standard_class.value
    return None


# -- bucket names ------------------------------------------------------------------------------

_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", "--table-s3")


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def bucket_name_for(prefix: str, container: str) -> tuple[str, str | None]:
    """A valid S3 bucket name for `prefix + container` (3-63 characters of a-z, 0-9 and
    '-', starting and ending with a letter or digit, no reserved prefix or suffix) and why
    it differs from `prefix + container` (None when it does not)."""
    raw = prefix + container
    reasons: list[str] = []
    name = raw.lower()
    if name != raw:
        reasons.append("upper-case letters")
    cleaned = re.sub(r"[^a-z0-9-]", "-", name)
    if cleaned != name:
        reasons.append("characters other than a-z, 0-9 and '-'")
    name = cleaned.strip("-")
    if name != cleaned:
        reasons.append("must start and end with a letter or digit")
    if name.startswith(_RESERVED_PREFIXES):
        name = "b-" + name
        reasons.append("reserved prefix")
    if name.endswith(_RESERVED_SUFFIXES):
        name = name + "-b"
        reasons.append("reserved suffix")
    if len(name) > 63:
        name = name[:54].rstrip("-") + "-" + _short_hash(raw)
        reasons.append("longer than 63 characters")
    if len(name) < 3:
        name = (name + "-" if name else "bucket-") + _short_hash(raw, 6)
        reasons.append("shorter than 3 characters")
    if not reasons:
        return name, None
    return name, f"{raw!r} is not a valid S3 bucket name: " + ", ".join(reasons)


def _bucket_names(prefix: str, containers: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """Each container's bucket name; containers whose names would clash get a hash suffix."""
    names = {c: bucket_name_for(prefix, c) for c in sorted(set(containers))}
    by_name: dict[str, list[str]] = {}
    for container, (name, _) in names.items():
        by_name.setdefault(name, []).append(container)
    for name, clash in by_name.items():
        if len(clash) < 2:
            continue
        for container in clash:
            others = ", ".join(repr(c) for c in clash if c != container)
            unique = name[:54].rstrip("-") + "-" + _short_hash(container)
            why = names[container][1]
            clash_why = f"{name!r} is also the bucket name for container {others}"
            names[container] = (unique, f"{why}; {clash_why}" if why else clash_why)
    return names


def destination_buckets(prefix: str, containers: Sequence[str]) -> list[str]:
    """The destination buckets make_plan maps these containers to (distinct, sorted)."""
    return sorted({name for name, _ in _bucket_names(prefix, containers).values()})


# -- estimates ---------------------------------------------------------------------------------


@dataclass
class _Load:
    """Expected work, as floats until rounded into an Estimate."""

    objects: float = 0.0
    bytes: float = 0.0
    get: float = 0.0
    head: float = 0.0
    put: float = 0.0
    post: float = 0.0

    def add(self, other: _Load, share: float = 1.0) -> None:
        self.objects += other.objects * share
        self.bytes += other.bytes * share
        self.get += other.get * share
        self.head += other.head * share
        self.put += other.put * share
        self.post += other.post * share

    def ints(self) -> dict[str, int]:
        return {
            "objects": round(self.objects),
            "bytes": round(self.bytes),
            "GET": round(self.get),
            "HEAD": round(self.head),
            "PUT": round(self.put),
            "POST": round(self.post),
        }


def _class_load(
    objects: int, size: int, rule: _PartRule, part_size: int | None, sha256_copy: bool = True
) -> _Load:
    """The executor's requests for `objects` objects of `size` bytes in all: ranged GETs at
    the source (their answer carries the attributes: no HEAD, but for an empty object, not
    counted); one PUT, or create + parts + complete at the destination,
    and with `sha256_copy` the copy that writes the SHA-256 (a PUT-priced request).
    The part size follows transfer.choose_part_size on the class's mean size, and the
    number of parts of n objects is taken as bytes/part + n/2 (ceilings add half a part
    each on average)."""
    if objects == 0:
        return _Load()
    mean = size / objects
    preferred = part_size or DEFAULT_PART_SIZE
    part = max(preferred, math.ceil(mean / rule.max_parts), rule.min_part_size)
    part = math.ceil(part / MiB) * MiB
    load = _Load(objects=objects, bytes=size)
    if mean <= min(part, rule.max_single_put):
        load.get = load.put = objects
    else:
        parts = size / part + objects / 2
        load.get = load.put = parts
        load.post = 2 * objects
        if sha256_copy:
            load.put += objects
    return load


@dataclass(frozen=True)
class _Money:
    egress_per_gb: float | None
    free_gb: float
    egress_currency: str
    storage_per_gb_month: float | None
    storage_currency: str


def _estimate(
    counts: dict[str, int], bandwidth: float, money: _Money, free_left: list[float]
) -> Estimate:
    """An Estimate from rounded counts; consumes the free egress allowance left."""
    size = counts["bytes"]
    kinds = {k: counts[k] for k in ("GET", "HEAD", "PUT", "POST") if counts[k]}
    egress: float | None = None
    if money.egress_per_gb is not None:
        gb = size / GB
        free = min(free_left[0], gb)
        free_left[0] -= free
        egress = round((gb - free) * money.egress_per_gb, 2)
    storage = (
        None
        if money.storage_per_gb_month is None
        else round(size / GB * money.storage_per_gb_month, 2)
    )
    return Estimate(
        objects=counts["objects"],
        bytes=size,
        requests=sum(kinds.values()),
        duration_seconds=round(size / bandwidth, 1),
        egress_cost=egress,
        request_cost=None,  # the catalog has no request prices
        storage_cost_per_month=storage,
        currency=money.egress_currency,
        storage_currency=money.storage_currency,
        requests_by_kind=kinds,
    )


def _projected(
    total: dict[str, int],
    inputs: PlanInputs,
    seconds: float,
    bandwidth: float,
    money: _Money,
    free_left: list[float],
) -> Estimate:
    """What the source is expected to change in `seconds`, at the rate it changed over the
    CHANGE_WINDOW_DAYS before the inventory; requests scale with the objects."""
    window = CHANGE_WINDOW_DAYS * 86400
    share = min(1.0, seconds / window)
    objects = round(inputs.recent_objects * share)
    size = round(inputs.recent_bytes * share)
    per_object = objects / total["objects"] if total["objects"] else 0.0
    counts = {k: round(v * per_object) for k, v in total.items()}
    counts.update(objects=objects, bytes=size)
    return _estimate(counts, bandwidth, money, free_left)


def _split(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _sum(estimates: Sequence[Estimate], money: _Money) -> Estimate:
    """The phases' totals; costs from the total bytes (the first phases use the free
    allowance first), not the sum of each phase's rounded cost (a cent each, lost)."""

    def total(values: Sequence[float | None]) -> float | None:
        return None if any(v is None for v in values) else round(sum(v or 0 for v in values), 2)

    gb = sum(e.bytes for e in estimates) / GB
    egress = total([e.egress_cost for e in estimates])
    if egress is not None and money.egress_per_gb is not None:
        egress = round((gb - min(money.free_gb, gb)) * money.egress_per_gb, 2)
    storage = total([e.storage_cost_per_month for e in estimates])
    if storage is not None and money.storage_per_gb_month is not None:
        storage = round(gb * money.storage_per_gb_month, 2)

    kinds: dict[str, int] = {}
    for e in estimates:
        for k, v in e.requests_by_kind.items():
            kinds[k] = kinds.get(k, 0) + v
    return Estimate(
        objects=sum(e.objects for e in estimates),
        bytes=sum(e.bytes for e in estimates),
        requests=sum(e.requests for e in estimates),
        duration_seconds=round(sum(e.duration_seconds for e in estimates), 1),
        egress_cost=egress,
        request_cost=total([e.request_cost for e in estimates]),
        storage_cost_per_month=storage,
        currency=money.egress_currency,
        storage_currency=money.storage_currency,
        requests_by_kind=kinds,
    )


# -- findings ----------------------------------------------------------------------------------


def _verdict_findings(role: str, site: Site, verdict: Verdict, policy: str) -> list[Finding]:
    if verdict.status == "PASS":
        return []
    why = "; ".join(r.text for r in verdict.reasons if r.outcome != "PASS")
    where = f"{role} {site.name} ({site.provider}{' ' + site.region if site.region else ''})"
    state = "fails" if verdict.status == "FAIL" else "cannot be judged under"
    if role == "source":
        return [
            Finding(
                code="SOURCE_FAILS_POLICY" if verdict.status == "FAIL" else "SOURCE_POLICY_UNKNOWN",
                severity=Severity.WARNING,
                message=f"{where} {state} policy {policy}: {why}",
                action="expected when leaving such a provider: the source is only read; check "
                "that nothing is written back to it",
            )
        ]
    return [
        Finding(
            code="DESTINATION_FAILS_POLICY"
            if verdict.status == "FAIL"
            else "DESTINATION_POLICY_UNKNOWN",
            severity=Severity.BLOCKING if verdict.blocking else Severity.WARNING,
            message=f"{where} {state} policy {policy}: {why}",
            action=f"choose a destination that passes {policy} (`migrate providers --policy "
            f"{policy}`), or source the missing fact in your own catalog file",
        )
    ]


def _runner_finding(config: SitesConfig, verdict: Verdict, policy: str) -> list[Finding]:
    if verdict.status == "PASS":
        return []
    why = "; ".join(r.text for r in verdict.reasons)
    return [
        Finding(
            code="RUNNER_OUTSIDE_POLICY" if verdict.status == "FAIL" else "RUNNER_LOCATION_UNKNOWN",
            severity=Severity.BLOCKING if verdict.blocking else Severity.WARNING,
            message=f"policy {policy}: {why}",
            action=f"run migrate from a machine in the EU/EEA and declare it in {config.path} "
            '(runner = { location = "FR" })',
        )
    ]


def _in_scope(country: str, scope: str) -> bool:
    return in_eu_eea(country) if scope == "EU/EEA" else country.upper() == scope.upper()


def _target_country(target: ReplicationTarget, site: Site, catalog: Catalog) -> str | None:
    if target.region is None:
        return None
    region = catalog.region(site.provider, target.region)
    return region.country.value if region is not None else None


def _replication_findings(
    replication: MappingOf[str, Replication],
    sites: Sequence[tuple[str, Site, Verdict]],
    policy: str,
    catalog: Catalog,
) -> list[Finding]:
    """Copies the sites make by themselves, judged by the policy's region rules against the
    catalog's country of each target region (see the module doc)."""
    region_rules = [r for r in get_policy(policy).rules if r.kind == "region-country"]
    scopes = [r.arg for r in region_rules] or ["EU/EEA"]
    # The narrowest scope names the area (fr-health: France, which is in the EU/EEA).
    narrow = [country_name(s) for s in scopes if s != "EU/EEA"]
    where = " and ".join(narrow) if narrow else "the EU/EEA"
    out: list[Finding] = []
    for role, site, verdict in sites:
        answer = replication.get(role)
        if answer is None:
            continue
        label = role  # the adapters' texts name the site
        for target in answer.targets:
            country = _target_country(target, site, catalog)
            if country is not None and all(_in_scope(country, s) for s in scopes):
                continue
            if country is None:
                why = (
                    "its region is not known"
                    if target.region is None
                    else f"region {target.region} of {site.provider} is not in the catalog, or "
                    "its country is unknown"
                )
                out.append(
                    Finding(
                        code="REPLICATION_UNKNOWN",
                        severity=Severity.WARNING,
                        message=f"{label}: {target.description}; {why}, so it cannot be "
                        f"checked against policy {policy}",
                        action=f"check in the provider's console that this copy stays in {where}"
                        "; or add the region with its country (and a source) in a catalog "
                        "file, then plan again",
                    )
                )
                continue
            # A source outside the policy's area already: its copies are what is being left.
            leaving = role == "source" and any(
                r.outcome == "FAIL" and r.rule in {rule.id for rule in region_rules}
                for r in verdict.reasons
            )
            fix = (
                "switch the account's redundancy to one that keeps every copy in the primary "
                "region (LRS or ZRS)"
                if target.kind == "geo-redundancy"
                else "remove or redirect that replication rule"
            )
            out.append(
                Finding(
                    code="REPLICATION_OUTSIDE_POLICY",
                    severity=Severity.WARNING if leaving else Severity.BLOCKING,
                    message=f"{label}: {target.description}; {target.region} is in "
                    f"{country_name(country)} ({country}), outside {where} (policy {policy})",
                    action=(
                        f"the source's own region is outside {where} too: these copies are "
                        "part of what is being left; delete them with the source when it is "
                        "decommissioned"
                        if leaving
                        else f"{fix}, then plan again"
                        + (
                            "; copies already made there stay until deleted"
                            if role == "source"
                            else ""
                        )
                    ),
                )
            )
        if not answer.known:
            out.append(
                Finding(
                    code="REPLICATION_UNKNOWN",
                    severity=Severity.WARNING,
                    message=f"{label}: {answer.detail}",
                    action=f"check the {role}'s replication and geo-redundancy settings in the "
                    f"provider's console (no copy may leave {where}); where credentials may "
                    "not read them, granting that and planning again lets migrate check",
                )
            )
    return out


@dataclass
class _Issue:
    datasets: list[str]
    objects: int
    examples: list[str]


def _gather(inputs: PlanInputs, code: str) -> _Issue | None:
    found = _Issue([], 0, [])
    for d in inputs.datasets:
        issue = d.issue(code)
        if issue is None:
            continue
        found.datasets.append(d.dataset)
        found.objects += issue.objects
        found.examples.extend(issue.examples)
    return found if found.objects else None


def _issue_finding(
    issue: _Issue, code: str, severity: Severity, message: str, action: str
) -> Finding:
    return Finding(
        code=code,
        severity=severity,
        message=message,
        action=action,
        datasets=tuple(sorted(issue.datasets)),
        objects=issue.objects,
        examples=tuple(sorted(issue.examples)[:EXAMPLES]),
    )


def _object_findings(inputs: PlanInputs, dst: Site, src: Site, catalog: Catalog) -> list[Finding]:
    lim = inputs.limits
    out: list[Finding] = []
    blocking, warning = Severity.BLOCKING, Severity.WARNING
    rules: list[tuple[str, str, Severity, str, str]] = [
        ("OBJECT_TOO_LARGE", "OBJECT_TOO_LARGE", blocking,
         f"objects larger than {dst.name} accepts ({lim.object_bytes:,} bytes)",
         "split or compress them at the source, or choose a destination that takes them"),
        ("KEY_TOO_LONG", "KEY_TOO_LONG", blocking,
         f"keys longer than {dst.name} accepts ({lim.key_bytes:,} UTF-8 bytes)",
         "rename them at the source (shorter keys), then run the inventory and plan again"),
        ("KEY_NOT_UTF8", "KEY_NOT_UTF8", blocking,
         "names that are not valid UTF-8 (shown with \\xNN for each byte that is not): S3 "
         "and Azure keys are UTF-8, so they cannot be copied under these names",
         "rename them at the source (valid UTF-8 names), then run the inventory and plan "
         "again"),
        ("KEY_SEGMENT_TOO_LONG", "KEY_SEGMENT_TOO_LONG", blocking,
         f"a '/'-separated key segment longer than {dst.name} accepts "
         f"({lim.segment_bytes or 0:,} bytes)",
         "rename them at the source (shorter path segments), then run the inventory and "
         "plan again"),
        ("KEY_IS_FOLDER", "KEY_IS_FOLDER", warning,
         f"keys {dst.name} cannot hold as files: a key ending with '/' (a folder marker), "
         "or a key that is also the folder of other keys (a beside a/b): their copies fail, "
         "each saying so, and the phase goes on",
         "if these objects matter, rename them at the source (or copy them to a store that "
         "keeps keys as they are), then run the inventory and plan again"),
        ("METADATA_TOO_LARGE", "METADATA_TOO_LARGE", blocking,
         "user metadata over 2 KB with what the copy adds (its SHA-256, the source's time), "
         "which S3 refuses: the copy would fail",
         "trim their metadata at the source, then run the inventory and plan again"),
        ("METADATA_BAD_NAME", "METADATA_NOT_CARRIED", blocking,
         "metadata names or values S3 cannot carry in headers (not HTTP tokens, or not "
         "ASCII): the copy would fail",
         "rename or re-encode that metadata at the source, then run the inventory and plan "
         "again"),
        ("NO_CHECKSUM", "NO_NATIVE_CHECKSUM", warning,
         "no native checksum in the source's listing (an Azure blob committed from blocks, "
         "a multipart S3 object, a local file; every GCS object, whose MD5 and CRC32C come "
         "with the read): the checksum is computed in flight on the bytes read, held to a "
         "checksum the source states at the read or in the object's HEAD (S3's full-object "
         "CRC64NVME, CRC32, CRC32C or SHA-256), and where the source states none the bytes "
         "cannot be held to it",
         "none needed; the manifest says of each object which of the source's own checksums "
         "proved it, if any"),
        ("KEY_NOT_PORTABLE", "KEY_MAY_CHANGE", warning,
         "keys with an empty, '.' or '..' segment (a//b, a/./b) or a backslash (a\\b), or "
         "ending with '/' on an object with bytes: stores that keep objects as files "
         "(SeaweedFS, for one) store "
         "the first under another key, which may be another object's, and keep the second "
         "as an empty folder; the run looks for each such copy under its own key, and its "
         "copy fails, saying so, where the store did that (--delete-removed keeps them)",
         "if the destination is such a store, rename them at the source, then run the "
         "inventory and plan again"),
        ("DIRECTORY_MARKER", "DIRECTORY_MARKERS", warning,
         "directories of a hierarchical namespace (ADLS Gen2: empty blobs bearing "
         "hdi_isfolder=true): S3 has no directories, so each is copied as an empty object "
         "of that name, with that metadata, beside the objects under it (SeaweedFS holds "
         "both; a store that cannot hold an object and a folder of one name fails those "
         "copies, each with its reason)",
         "none needed where the destination holds both; after the move, delete these "
         "empty objects at the destination if its users would take them for files"),
        ("HEADER_NOT_ASCII", "HEADERS_NOT_ASCII", warning,
         "a Content-Disposition, Cache-Control, Content-Language or Content-Encoding "
         "value beyond ASCII (an accented file name, say): HTTP carries it as bytes that "
         "stores and libraries decode each their own way, so the copy may not keep it "
         "exactly, and verify only checks that it is there (found where the source's "
         "listing carries these headers: Azure's)",
         "check a few at the destination after the pilot; an ASCII form (RFC 6266's "
         "filename*=UTF-8''...) is carried exactly"),
        ("FOLDER_METADATA", "FOLDER_METADATA_MAY_BE_LOST", warning,
         "empty objects named like folders (a key ending with '/') that carry metadata or "
         "headers: a store keeping objects as files (SeaweedFS, for one) makes each a "
         "folder and keeps none of it (verify then names it lost)",
         "if that metadata matters and the destination is such a store, keep it elsewhere "
         "(a manifest object), or move such markers to a name without the '/'"),
        ("TAGGED", "TAGS_CARRIED", warning,
         "blob index tags (a retention or classification label, say): the copy sets them "
         "as the destination's object tags (S3 object tagging takes Azure's 10 tags and "
         "their characters), and verify compares them; a store without object tagging "
         "fails those copies or drops the tags, and verify then names each object",
         "check that the destination keeps object tags (the pilot's verify does); the "
         "source's credentials must be allowed to read tags (Blob Index Data Reader, or "
         "a SAS with the t permission)"),
        ("NOT_BLOCK_BLOB", "BLOB_TYPE_NOT_CARRIED", warning,
         "append or page blobs (a log appended to, a disk image): the copy is a plain "
         "object with the same bytes, which S3 cannot append to or write in place",
         "move what appends to or writes in those blobs to whole-object writes, or keep "
         "them out of the move"),
        ("VERSIONED", "VERSIONS_NOT_CARRIED", warning,
         "versioned at the source: only each object's current version is copied; older "
         "versions and snapshots are not",
         "copy older versions separately if they must be kept"),
    ]  # fmt: skip
    for code, finding_code, severity, what, action in rules:
        issue = _gather(inputs, code)
        if issue is not None:
            message = f"{issue.objects:,} objects: {what}"
            out.append(_issue_finding(issue, finding_code, severity, message, action))
    out.extend(_archive_findings(inputs, dst, src, catalog))
    return out


def _archive_findings(inputs: PlanInputs, dst: Site, src: Site, catalog: Catalog) -> list[Finding]:
    """Objects that need a restore: the adapter saw them archived, or their tier is one the
    catalog marks as restore-required."""
    issue = _Issue([], 0, [])
    size = 0
    tiers: dict[str, str | None] = {}
    restorable: dict[str, ClassMapping] = {}
    for d in inputs.datasets:
        count = 0
        for t in d.tiers:
            restore = False
            if t.tier is not None:
                mapping = catalog.storage_class_for(
                    t.tier, dst.provider, source_provider=src.provider
                )
                # A class a restore leaves as it was: the adapter said which objects of it
                # cannot be read yet.
                restore = mapping.needs_rehydration and t.tier.upper() not in RESTORED_IN_PLACE
                if restore or t.archived:
                    tiers[t.tier] = mapping.reason
                    restorable[t.tier] = mapping
            n = t.objects if restore else t.archived
            if n:
                count += n
                size += t.bytes if restore else t.archived_bytes
        if count:
            issue.datasets.append(d.dataset)
            issue.objects += count
            flagged = d.issue("ARCHIVED")
            if flagged:
                issue.examples.extend(flagged.examples)
    if not issue.objects:
        return []
    notes = "; ".join(f"{t}: {why}" for t, why in sorted(tiers.items()) if why)
    message = (
        f"{issue.objects:,} objects ({size:,} bytes) are in a tier that must be rehydrated "
        f"before they can be read ({notes or 'archived'}); " + _restore_terms(restorable, size)
    )
    left_out = " ".join(f"--exclude {d}" for d in sorted(issue.datasets)[:3])
    more = " ..." if len(issue.datasets) > 3 else ""
    action = (
        "rehydrate them at the source (e.g. set the tier to Hot or Cool) and wait until it "
        "completes, then run the inventory and plan again; or make the plan again leaving "
        f"their datasets out ({left_out}{more})"
    )
    return [_issue_finding(issue, "ARCHIVED_NEEDS_REHYDRATION", Severity.BLOCKING, message, action)]


def _restore_terms(restore: MappingOf[str, ClassMapping], size: int) -> str:
    """How long and how much a restore takes, from the catalog's sourced facts; unknown
    facts are said to be unknown."""
    parts = []
    for tier, mapping in sorted(restore.items()):
        hours, cost = mapping.restore_hours, mapping.restore_cost_per_gb
        took = (
            f"up to {hours.value:g} hours (source: {hours.source}, {hours.as_of})"
            if hours.known
            else "time unknown (not in the catalog)"
        )
        paid = (
            f"about {cost.value * size / GB:.2f} per the catalog's price (source: {cost.source})"
            if cost.known and cost.value is not None
            else "cost unknown (not in the catalog)"
        )
        parts.append(f"{tier}: rehydration {took}, {paid}")
    return "; ".join(parts) or "rehydration time and cost are not in the catalog"


# -- the plan ----------------------------------------------------------------------------------


def _protection_findings(
    inputs: PlanInputs, protection: MappingOf[str, Protection], decommission: bool
) -> list[Finding]:
    """What the source keeps besides its current objects (older versions, delete markers,
    snapshots) is not copied, and retention locks do not travel with the bytes: one finding
    each, over the containers concerned. Unknown answers are findings too, never "none"."""
    history: list[tuple[str, str]] = []  # container, what
    history_unknown: list[tuple[str, str]] = []
    locked: list[tuple[str, str]] = []
    lock_unknown: list[tuple[str, str]] = []
    for container in sorted(protection):
        found = protection[container]
        if found.older_versions is None:
            history_unknown.append((container, f"{container} ({found.detail})"))
        elif found.older_versions > 0:
            bound = "" if found.counted_all else "at least "
            history.append((container, f"{bound}{found.older_versions:,} in {container}"))
        held = [
            w
            for w, on in (("retention lock", found.object_lock), ("legal hold", found.legal_hold))
            if on
        ]
        if held:
            locked.append((container, f"{container} ({' and '.join(held)})"))
        elif found.object_lock is None or found.legal_hold is None:
            lock_unknown.append((container, f"{container} ({found.detail})"))

    def concerned(containers: Sequence[str]) -> tuple[tuple[str, ...], int]:
        sets = [d for d in inputs.datasets if d.container in containers]
        return tuple(d.dataset for d in sets), sum(d.objects for d in sets)

    out: list[Finding] = []
    if history:
        names, _ = concerned([c for c, _ in history])
        out.append(
            Finding(
                code="VERSIONS_NOT_CARRIED",
                severity=Severity.WARNING,
                message="older versions, delete markers or snapshots will not be copied, only "
                "each object's current version: " + "; ".join(w for _, w in history),
                action="if that history must be kept, export it before decommissioning the "
                "source, or keep the source until its retention ends",
                datasets=names,
                objects=sum(protection[c].older_versions or 0 for c, _ in history),
            )
        )
    if history_unknown:
        names, _ = concerned([c for c, _ in history_unknown])
        out.append(
            Finding(
                code="VERSIONS_UNKNOWN",
                severity=Severity.WARNING,
                message="could not tell whether these containers keep older versions or "
                "snapshots (only current versions are copied): "
                + "; ".join(w for _, w in history_unknown),
                action="check the containers' versioning at the provider's console",
                datasets=names,
            )
        )
    if locked:
        names, objects = concerned([c for c, _ in locked])
        out.append(
            Finding(
                code="IMMUTABLE_OR_LEGAL_HOLD",
                severity=Severity.BLOCKING if decommission else Severity.WARNING,
                message="objects under retention or legal hold at the source: "
                + "; ".join(w for _, w in locked)
                + ". The copy carries the bytes, not the lock"
                + (", and the source cannot be deleted while it holds" if decommission else ""),
                action="create the destination buckets with Object Lock and set the same "
                "retention before the copy if it must continue there"
                + (
                    "; drop the decommission phase (leave out --decommission)"
                    if decommission
                    else ""
                ),
                datasets=names,
                objects=objects,
            )
        )
    if lock_unknown:
        names, _ = concerned([c for c, _ in lock_unknown])
        out.append(
            Finding(
                code="LOCKS_UNKNOWN",
                severity=Severity.WARNING,
                message="could not tell whether objects are under retention or legal hold: "
                + "; ".join(w for _, w in lock_unknown),
                action="check the containers' retention and hold settings (on S3, Object Lock "
                "and each object's holds) before decommissioning the source",
                datasets=names,
            )
        )
    return out


def _ref(site: Site, role: str, verdict: Verdict, endpoint: str | None) -> SiteRef:
    reasons = [f"{r.outcome}: {r.text}" for r in verdict.reasons]
    reasons += [f"warning: {w.message}" for w in verdict.warnings]
    return SiteRef(
        name=site.name,
        role="source" if role == "source" else "destination",
        provider=site.provider,
        region=site.region,
        endpoint=endpoint,
        verdict=verdict.status,
        reasons=tuple(reasons),
    )


_CUTOVER_CHECKLIST = (
    "Announce the freeze; stop every application writing to the source (revoke write "
    "keys/SAS or make the containers read-only) and confirm no write is in flight",
    "Run `migrate run PLAN --phase cutover`: it re-lists {source} (the last writes), copies "
    "them and verifies the whole plan",
    "Check that it says the whole plan's verification passed (exit 0); otherwise do not "
    "switch over",
    # The cutover's own verification compares listings with the stored checksums, so it is
    # short; the bytes are re-read before applications write there (their objects would be
    # findings: unexpected, or copies changed).
    "For the auditor's report, re-read the destination's bytes before applications write "
    "to it: `migrate verify PLAN --deep` (every object) or `--sample 5%` (a seeded share, "
    "shorter); the cutover's verification compared listings with the stored checksums",
    "Switch applications to the destination ({destination}: {buckets}) and test them",
    "Keep the source read-only until the switch is accepted; decommission only after a "
    "passing verification",
)


def check_plan_options(
    bandwidth_bytes_per_second: float, pilot_share: float, wave_cap_bytes: int
) -> None:
    """Option values: configuration errors (exit 3), as the command line's others; checked
    again by make_plan, and first by `migrate plan` before it reads the sites."""
    if not bandwidth_bytes_per_second > 0:
        raise ConfigError("--bandwidth must be positive", hint="e.g. --bandwidth 1Gbit/s")
    if not 0 <= pilot_share < 1:
        raise ConfigError(
            f"--pilot-share {pilot_share:g} must be at least 0 and below 1",
            hint="e.g. --pilot-share 2% or 0.02",
        )
    if wave_cap_bytes <= 0:
        raise ConfigError("--wave-cap-gib must be positive", hint="e.g. --wave-cap-gib 1024")


def excluded_datasets(inputs: PlanInputs, exclude: Sequence[str]) -> list[str]:
    """The datasets of the inventory that `exclude` names, each a dataset's name or a
    pattern (`archive/*`: every dataset of container archive), sorted; each must name at
    least one (PlanError naming the unknown, and where to see the names). The plan records
    the names, not the patterns: the approver sees what is left out."""
    known = sorted(d.dataset for d in inputs.datasets)
    names: set[str] = set()
    for given in exclude:
        if any(c in given for c in "*?["):
            matched = fnmatch.filter(known, given)
        else:
            matched = [given] if given in known else []
        if not matched:
            near = [d for d in known if d.startswith(given.rstrip("/*?["))] or (
                difflib.get_close_matches(given, known, n=3, cutoff=0.8)
            )
            raise PlanError(
                f"--exclude {given!r}: no such dataset in the inventory of {inputs.site}"
                + (f" (did you mean {', '.join(near[:3])}?)" if near else ""),
                hint=f"the datasets are named as `migrate inventory {inputs.site}` shows "
                "them, container/prefix/ (container/ for a whole container); container/* "
                "takes every dataset of a container",
            )
        names.update(matched)
    return sorted(names)


def without_datasets(inputs: PlanInputs, names: Sequence[str]) -> PlanInputs:
    """The inventory's aggregates less the datasets named (see `excluded_datasets`)."""
    if not names:
        return inputs
    left = set(names)
    return replace(inputs, datasets=tuple(d for d in inputs.datasets if d.dataset not in left))


def make_plan(
    *,
    name: str,
    config: SitesConfig,
    source: str,
    destination: str,
    policy: str,
    catalog: Catalog,
    datasets: PlanInputs,
    today: date,
    bandwidth_bytes_per_second: float,
    pilot_share: float = 0.02,
    wave_cap_bytes: int = DEFAULT_WAVE_CAP,
    inventory_run: int,
    pilot: bool = True,
    include_decommission: bool = False,
    part_size: int | None = None,
    sha256_on_large_objects: bool = True,
    pilot_cover: int = 1,
    replication: MappingOf[str, Replication] | None = None,
    used_buckets: Sequence[str] = (),
    protection: MappingOf[str, Protection] | None = None,
    exclude: Sequence[str] = (),
    keep_waves: int | None = None,
) -> Plan:
    """The plan to move `source`'s inventory (`datasets`, from `plan_inputs` measured with
    `destination_limits(destination)`) to `destination` under `policy`, with its digest.
    `replication` maps "source" / "destination" to what `migrate.replication` read of that
    site (a role left out was not read, and gives no finding). `used_buckets`: destination
    buckets found already holding objects before the plan (read by the caller).
    `protection` maps each source container to what its store said of older versions,
    snapshots and retention locks (containers left out were not read). `exclude`: datasets
    of the inventory left out on purpose (recorded in the plan; no finding is about them).
    Pure: reads no file, clock or network. Raises PlanError or ConfigError on bad input."""
    if source == destination:
        raise PlanError(
            f"source and destination are the same site ({source})",
            hint="--from names the site moved from, --to another site to move to",
        )
    check_plan_options(bandwidth_bytes_per_second, pilot_share, wave_cap_bytes)
    src, dst = config.site(source), config.site(destination)
    get_policy(policy)
    if datasets.site != source:
        raise PlanError(f"inventory aggregates are of site {datasets.site}, not {source}")
    limits = destination_limits(dst, catalog)
    if datasets.limits != limits:
        raise PlanError(
            "inventory aggregates were measured against other limits than the destination's",
            hint="read them with plan_inputs(ledger, source, limits=destination_limits(...))",
        )
    inventoried = datasets
    excluded = excluded_datasets(datasets, exclude) if exclude else []
    datasets = without_datasets(datasets, excluded)
    src_provider, dst_provider = catalog.provider(src.provider), catalog.provider(dst.provider)
    src_verdict = evaluate(src, policy, catalog, today)
    dst_verdict = evaluate(dst, policy, catalog, today)
    runner = evaluate_runner(config.runner.location, policy)
    src_endpoint, dst_endpoint = catalog.endpoint_for(src), catalog.endpoint_for(dst)

    findings: list[Finding] = []
    findings += _verdict_findings("destination", dst, dst_verdict, policy)
    findings += _verdict_findings("source", src, src_verdict, policy)
    findings += _runner_finding(config, runner, policy)
    findings += _replication_findings(
        replication or {},
        (("source", src, src_verdict), ("destination", dst, dst_verdict)),
        policy,
        catalog,
    )
    if used_buckets:
        findings.append(
            Finding(
                code="DESTINATION_BUCKET_IN_USE",
                severity=Severity.WARNING,
                message=f"destination bucket(s) already hold objects: {', '.join(used_buckets)}; "
                "one there under a key the move writes, with other bytes, is left as it is "
                "and its copy fails (a conflict) unless `migrate run --overwrite`; one with the "
                "same bytes is written again; the others are reported as unexpected by "
                "`migrate verify`",
                action="use empty buckets (set `bucket_prefix` on the destination site), or "
                "confirm these objects are an earlier run of this move",
                datasets=tuple(used_buckets),
            )
        )
    if "destination" not in dst_provider.roles:
        findings.append(
            Finding(
                code="NOT_A_DESTINATION",
                severity=Severity.BLOCKING,
                message=f"{dst_provider.display_name} is not a destination in the catalog",
                action="choose a destination provider (`migrate providers`)",
            )
        )
    for site, endpoint, provider, role in (
        (src, src_endpoint, src_provider, "SOURCE"),
        (dst, dst_endpoint, dst_provider, "DESTINATION"),
    ):
        if endpoint is None and provider.api != "local":
            findings.append(
                Finding(
                    code=f"{role}_ENDPOINT_UNKNOWN",
                    severity=Severity.BLOCKING,
                    message=f"site {site.name}: no endpoint (none declared and none in the "
                    f"catalog for region {site.region})",
                    action=f"declare `endpoint` for site {site.name}, or its region in a "
                    "catalog file",
                )
            )
        elsewhere = catalog.endpoint_elsewhere(site)
        if elsewhere is not None:
            findings.append(
                Finding(
                    code=f"{role}_ENDPOINT_ELSEWHERE",
                    severity=Severity.BLOCKING,  # known elsewhere, or where is unknown
                    message=elsewhere.text,
                    action=f"set site {site.name}'s provider and region to where its endpoint "
                    "is, or its endpoint to the declared region's; a host that is the declared "
                    "region's after all goes in its `other_endpoints`, in a catalog file",
                )
            )
        for text in catalog.endpoint_findings(site) if elsewhere is None else ():
            findings.append(
                Finding(
                    code=f"{role}_ENDPOINT",
                    severity=Severity.WARNING,
                    message=text,
                    action="check the site's endpoint and region in the sites file",
                )
            )
    findings += _object_findings(datasets, dst, src, catalog)
    findings += _protection_findings(datasets, protection or {}, include_decommission)
    if not datasets.datasets:
        findings.append(
            Finding(
                code="EMPTY_INVENTORY",
                severity=Severity.WARNING,
                message=f"the inventory of {source} holds no object",
                action=f"check the site's containers, then run `migrate inventory {source}`",
            )
        )
    else:
        # A container with no object has no dataset, so no mapping: no bucket is made for it,
        # and an application that expects it at the destination would find none.
        listed = {d.container for d in inventoried.datasets}
        empty = [c for c in src.buckets if c not in listed]
        if empty:
            findings.append(
                Finding(
                    code="EMPTY_CONTAINERS",
                    severity=Severity.WARNING,
                    message=f"{len(empty)} container{'s' if len(empty) > 1 else ''} of "
                    f"{source} {'have' if len(empty) > 1 else 'has'} no object in its "
                    f"inventory (none under an inventory's --prefix, maybe) and "
                    f"{'get' if len(empty) > 1 else 'gets'} no bucket at {destination}: "
                    f"{', '.join(empty)}",
                    action="create the buckets the applications expect at the destination "
                    "before switching over, or remove the containers from the site",
                )
            )

    # Mappings.
    buckets = _bucket_names(dst.bucket_prefix, [d.container for d in datasets.datasets])
    standard = _standard_class(dst, catalog)
    mappings = []
    for d in datasets.datasets:
        bucket, why = buckets[d.container]
        prefix = d.dataset[len(d.container) + 1 :]
        classes: dict[str, str] = {}
        for t in d.tiers:
            if t.tier is None:
                continue
            cm = catalog.storage_class_for(t.tier, dst.provider, source_provider=src.provider)
            target = None if cm.needs_rehydration else (cm.destination_class or standard)
            if target:
                classes[t.tier] = target
        mappings.append(
            Mapping(
                dataset=d.dataset,
                source_container=d.container,
                source_prefix=prefix,
                destination_bucket=bucket,
                destination_prefix=prefix,
                renamed_because=why,
                storage_classes=classes,
            )
        )
    renamed: dict[str, list[str]] = {}
    for m in mappings:
        if m.renamed_because:
            renamed.setdefault(m.destination_bucket, []).append(m.dataset)
    for bucket, names in sorted(renamed.items()):
        why = buckets[names[0].split("/", 1)[0]][1]
        findings.append(
            Finding(
                code="BUCKET_RENAMED",
                severity=Severity.WARNING,
                message=f"destination bucket {bucket}: {why}",
                action="check that applications will use the new name, or rename the "
                "container / change bucket_prefix",
                datasets=tuple(sorted(names)),
            )
        )
    # A certification the policy needs that covers only buckets made some way (Scaleway's
    # HDS: made with a tag, in the console): the buckets the run would create are not
    # (a walkthrough: fr-health PASS, and the run made them). The run makes none then.
    conditions = [w.message for w in dst_verdict.warnings if w.kind == "condition"]
    bucket_names = sorted({m.destination_bucket for m in mappings})
    if conditions and bucket_names and dst_verdict.status == "PASS":
        findings.append(
            Finding(
                code=CERTIFICATION_CONDITION,
                severity=Severity.WARNING,
                message=f"destination {dst.name}: {'; '.join(conditions)}: `migrate run` does "
                "not create its buckets (a bucket it made would not be covered), it refuses "
                "a phase while one is missing",
                action="create the destination buckets as the condition says, before the "
                "first run: " + ", ".join(bucket_names),
                datasets=tuple(bucket_names),
            )
        )

    # Estimates.
    rule = _part_rule(dst, catalog)
    src_prices = catalog.prices_for(src.provider, src.region)
    dst_prices = catalog.prices_for(dst.provider, dst.region)
    money = _Money(
        egress_per_gb=src_prices.egress_per_gb.value,
        free_gb=src_prices.egress_free_gb_month.value or 0.0,
        egress_currency=src_prices.currency or "EUR",
        storage_per_gb_month=dst_prices.storage_per_gb_month.value,
        storage_currency=dst_prices.currency or "EUR",
    )
    if not pilot:
        pilot_share = 0.0
    sample = max(1, round(pilot_share * 10_000)) if pilot_share > 0 else 0
    share = sample / 10_000
    total, pilot_load = _Load(), _Load()
    for d in datasets.datasets:
        for c in d.size_classes:
            load = _class_load(c.objects, c.bytes, rule, part_size, sha256_on_large_objects)
            total.add(load)
            if c.objects and pilot:
                covered = min(c.objects, pilot_cover)
                expected = covered + (c.objects - covered) * share
                pilot_load.add(load, expected / c.objects)
    total_n = total.ints()
    pilot_n = {k: min(v, total_n[k]) for k, v in pilot_load.ints().items()}
    rest = {k: total_n[k] - pilot_n[k] for k in total_n}
    split = max(1, math.ceil(rest["bytes"] / wave_cap_bytes))
    # A plan made again mid-move keeps the waves its runs began with: each object keeps
    # its wave (a wave is a key hash modulo their number), else objects of waves not run
    # fell to no wave and the delta (a walkthrough).
    waves = keep_waves or split
    if keep_waves and keep_waves != split:
        findings.append(
            Finding(
                code="WAVES_KEPT",
                severity=Severity.WARNING,
                message=f"{keep_waves} bulk waves kept from this plan's runs (its waves "
                f"began with them): each object stays in its wave (the bytes now would make "
                f"{split} at this wave size)",
                action="none needed; to split what is left otherwise, make a plan under "
                "another name once this one's runs are done",
            )
        )
    wave_parts = {k: _split(v, waves) for k, v in rest.items()}
    free_left = [money.free_gb]
    pilot_estimate = _estimate(pilot_n, bandwidth_bytes_per_second, money, free_left)
    wave_estimates = [
        _estimate({k: v[i] for k, v in wave_parts.items()}, bandwidth_bytes_per_second, money,
                  free_left)
        for i in range(waves)
    ]  # fmt: skip
    # Delta and cutover are projections: the source's change rate over the window before
    # the inventory, over the time the copy before them is estimated to take.
    copy_seconds = sum(e.duration_seconds or 0 for e in (pilot_estimate, *wave_estimates))
    delta_estimate = _projected(total_n, datasets, copy_seconds, bandwidth_bytes_per_second,
                                money, free_left)  # fmt: skip
    cutover_estimate = _projected(total_n, datasets, delta_estimate.duration_seconds or 0,
                                  bandwidth_bytes_per_second, money, free_left)  # fmt: skip

    # Phases.
    bulk_names = tuple(f"bulk-{i}" for i in range(1, waves + 1))
    phases: list[Phase] = []
    if pilot:
        phases.append(
            Phase(
                name="pilot",
                kind=PhaseKind.PILOT,
                selector=Selector(
                    sample_per_10000=sample,
                    cover_per_class=pilot_cover,
                    size_bounds=SIZE_BOUNDS,
                ),
                estimate=pilot_estimate,
                checklist=(
                    "Check the pilot's objects at the destination with the applications "
                    "that will read them",
                    "Run `migrate verify PLAN --phase pilot`: the bulk waves require it",
                ),
            )
        )
    else:
        # Asked for (`--no-pilot`): the bulk waves take everything and wait for nothing.
        findings.append(
            Finding(
                code="NO_PILOT",
                severity=Severity.WARNING,
                message="the plan has no pilot phase: bulk-1 starts without a verified pilot",
                action="keep it only if this kind of data was already tried on this "
                "destination; otherwise plan again without --no-pilot",
            )
        )
    before_bulk = tuple(p.name for p in phases)
    for i, (wave_name, estimate) in enumerate(zip(bulk_names, wave_estimates, strict=True), 1):
        phases.append(
            Phase(
                name=wave_name,
                kind=PhaseKind.BULK,
                selector=Selector(waves=waves, wave=i, exclude_phases=before_bulk),
                requires=before_bulk,
                estimate=estimate,
            )
        )
    phases.append(
        Phase(
            name="delta",
            kind=PhaseKind.DELTA,
            selector=Selector(changed_since_copy=True),
            requires=bulk_names,
            estimate=delta_estimate,
            checklist=(
                f"Its run re-lists {source} first (a `migrate inventory {source}` before it "
                "only refreshes a dry run's counts): the delta is what it finds new or "
                "changed since the bulk copy. Its estimate is a projection: what changed in "
                f"the {CHANGE_WINDOW_DAYS} days before the inventory, scaled to the time the "
                "pilot and bulk waves are estimated to take",
            ),
        )
    )
    bucket_list = ", ".join(sorted({m.destination_bucket for m in mappings})) or "-"
    phases.append(
        Phase(
            name="cutover",
            kind=PhaseKind.CUTOVER,
            selector=Selector(changed_since_copy=True),
            requires=("delta",),
            estimate=cutover_estimate,  # projected over the delta's estimated duration
            checklist=tuple(
                step.format(source=source, destination=destination, buckets=bucket_list)
                for step in _CUTOVER_CHECKLIST
            ),
        )
    )
    if include_decommission:
        phases.append(
            Phase(
                name="decommission",
                kind=PhaseKind.DECOMMISSION,
                requires=("cutover",),
                estimate=Estimate(
                    objects=total_n["objects"],
                    bytes=total_n["bytes"],
                    requests=total_n["objects"],
                    currency=money.egress_currency,
                    storage_currency=money.storage_currency,
                    requests_by_kind={"DELETE": total_n["objects"]} if total_n["objects"] else {},
                ),
                checklist=(
                    "Only after `migrate verify PLAN --phase cutover` passed and the switch "
                    "was accepted",
                    "Keep the verification report: it is the record of what was deleted",
                ),
            )
        )

    hosts = site_hosts(src, sorted({d.container for d in datasets.datasets}), catalog)
    hosts |= site_hosts(dst, sorted({m.destination_bucket for m in mappings}), catalog)
    # A proxy is a host every request of its site goes through: the plan names it, so that
    # it is reviewed and approved with the rest (a run refuses one the plan does not name).
    hosts |= {proxy_host(site.proxy) for site in (src, dst) if site.proxy}
    for host in sorted(hosts):
        if is_global_endpoint(host):
            findings.append(
                Finding(
                    code="GLOBAL_ENDPOINT",
                    severity=Severity.BLOCKING,
                    message=f"{host} is a global or accelerated endpoint: its hostname does not "
                    "say where the data is served, and requests may leave the EU",
                    action="set the site's regional endpoint (e.g. s3.eu-west-3.amazonaws.com)",
                )
            )

    order = {Severity.BLOCKING: 0, Severity.WARNING: 1}
    findings.sort(key=lambda f: (order[f.severity], f.code, f.datasets, f.message))
    plan = Plan(
        name=name,
        created=today.isoformat(),
        policy=policy,
        runner_location=config.runner.location,
        source=source,
        destination=destination,
        inventory_run=inventory_run,
        # which state's inventory #N it is: another state may have a run of that number
        inventory_token=(
            datasets.inventory_token if datasets.inventory_run == inventory_run else None
        ),
        sites=(
            _ref(src, "source", src_verdict, src_endpoint),
            _ref(dst, "destination", dst_verdict, dst_endpoint),
        ),
        mappings=tuple(sorted(mappings, key=lambda m: m.dataset)),
        excluded=tuple(excluded),
        phases=tuple(phases),
        totals=_sum([pilot_estimate, *wave_estimates], money),
        findings=tuple(findings),
        allowlist=tuple(sorted(hosts)),
        options=PlanOptions(
            bandwidth_bytes_per_second=float(bandwidth_bytes_per_second),
            pilot_share=float(pilot_share),
            wave_cap_bytes=int(wave_cap_bytes),
            part_size=part_size,
            sha256_on_large_objects=sha256_on_large_objects,
        ),
    )
    return with_digest(plan)


# -- options -----------------------------------------------------------------------------------

# A number, then a prefix (k, M, G, T; Ki, Mi, Gi, Ti binary), then B (bytes) or b, bit
# (bits), then /s or ps: as network and storage people write them, the letter's case says
# bytes or bits (1Gb/s and 1 Gbps are a gigabit link, 200MBps is 200 megabytes a second).
_BANDWIDTH = re.compile(
    r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kKmMgGtT])(i?))?(B|b|bit|Bit)?\s*(ps|/\s*s)?\s*$"
)
_PREFIXES = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_BANDWIDTH_HINT = "e.g. 1Gbit/s or 1Gbps (bits), 100MB/s or 100MBps (bytes), 50MiB/s"


def parse_bandwidth(text: str, option: str = "bandwidth") -> float:
    """'1Gbit/s', '1Gb/s', '1 Gbps', '100 Mbit/s', '125MB/s', '125MBps', '50MiB/s' or a
    number of bytes per second -> bytes per second. B is bytes, b and bit are bits (1 Gbit/s
    = 125,000,000 B/s); a prefix without either (100M) is refused, as ambiguous. `option`:
    what the value was given as (--bwlimit, --bandwidth), named in the error."""
    match = _BANDWIDTH.match(text)
    if match is None or (match.group(2) and not match.group(4)):
        raise ConfigError(f"{option} {text!r} not understood", hint=_BANDWIDTH_HINT)
    number, prefix, binary, unit, _ = match.groups()
    scale = 1.0
    if prefix:
        power = "kmgt".index(prefix.lower()) + 1
        scale = 2.0 ** (10 * power) if binary else _PREFIXES[prefix.lower()]
    if unit in ("b", "bit", "Bit"):
        scale /= 8
    value = float(number) * scale
    if value <= 0:
        raise ConfigError(f"{option} {text!r} must be above 0", hint=_BANDWIDTH_HINT)
    return value


# -- approval ----------------------------------------------------------------------------------


def refuse_blocking(plan: Plan, path: Path) -> None:
    """PlanError (exit 9) for a plan with a blocking finding: it cannot be approved."""
    if plan.blocking:
        codes = ", ".join(sorted({f.code for f in plan.blocking}))
        raise PlanError(
            f"plan {plan.name} cannot be approved: {len(plan.blocking)} blocking "
            f"finding{'s' if len(plan.blocking) > 1 else ''} ({codes})",
            hint=f"see `migrate plan show {path}`, fix them and generate the plan again",
        )


def approve_plan(path: Path, ledger: Ledger, who: str) -> Approval:
    """Record in the state that `who` approved the plan at `path` as it is now; return the
    approval kept. Refuses a plan edited since it was written (PlanTampered) and one with a
    blocking finding (PlanError). Approving the same digest again changes nothing: the
    first approval is returned."""
    plan = load_plan(path, check_digest=True)
    refuse_blocking(plan, path)
    check_same_routes(plan, ledger)
    check_inventory_held(plan, ledger)
    approved = any(a.digest == plan.digest for a in ledger.approvals(plan.name))
    # An approved digest was made (before the state recorded what `plan` makes, too).
    if not approved and not ledger.plan_made(plan.name, plan.digest):
        # Its findings are the file's word: only one `migrate plan` wrote is taken.
        raise PlanTampered(
            f"plan {plan.name} was not made by `migrate plan` with this state (its digest "
            f"{plan.digest[:19]}… is not one the state recorded): its findings cannot be "
            "taken on its word",
            hint="make it again with `migrate plan` (the state records what it makes), "
            "review it, then approve it",
        )
    return ledger.record_approval(plan.name, plan.digest, who, str(path))
