"""The plan document: typed models, canonical YAML, digest.

A plan selects objects by rule (datasets, size bounds, modified-before, a hash sample, a
wave number), never by listing keys, so it stays small for 100 million objects. The object
set of a phase is resolved from the inventory when the phase first runs and then fixed in
the ledger.

The digest is the SHA-256 of the canonical YAML of everything but the digest itself; a plan
whose content no longer matches its digest, or its approved digest, is refused at run time.

Hash sample and waves: each object has a key hash
`h = int.from_bytes(sha1((container + "/" + key).encode("utf-8", "surrogateescape"))
.digest()[:8], "big") >> 1` (63 bits, so SQLite can hold it; see `key_hash`). A selector
with `sample_per_10000 = s` takes the objects with `h % 10000 < s`; one with `waves = n`
and `wave = i` (1-based) takes those with `(h // 10000) % n == i - 1`, a digit independent
of the sample's, so waves stay balanced once the pilot is taken out. The same inventory
always gives the same sets, whatever the order the phases are resolved in.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from migrate.atomic import write_bytes
from migrate.errors import ConfigError, PlanError, PlanTampered

if TYPE_CHECKING:
    from migrate.ledger import Approval, Ledger
    from migrate.sites import SitesConfig

# libyaml's safe loader where PyYAML has it: the same documents, about 10x faster to load.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, line: int) -> None:
        super().__init__(f"key {key!r} twice")
        self.key, self.line = key, line


class _PlanLoader(_YAML_LOADER):  # type: ignore[misc,valid-type]
    """Refuses a mapping holding a key twice: YAML keeps the last one, so a reviewer reading
    the file would see one value (an empty allowlist, say) and approve another."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<`: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
            except TypeError:  # an unhashable key: the model refuses it later
                continue
        return super().construct_mapping(node, deep)


SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhaseKind(StrEnum):
    PILOT = "pilot"
    BULK = "bulk"
    DELTA = "delta"
    CUTOVER = "cutover"
    DECOMMISSION = "decommission"


class Severity(StrEnum):
    BLOCKING = "blocking"
    WARNING = "warning"


class SiteRef(_Model):
    """A site as the plan records it: references only, never credentials."""

    name: str
    role: Literal["source", "destination"]
    provider: str
    region: str | None = None
    endpoint: str | None = None  # resolved endpoint URL
    verdict: str  # PASS | FAIL | UNKNOWN under the plan's policy
    reasons: tuple[str, ...] = ()


class Mapping(_Model):
    """One source dataset and where it goes."""

    dataset: str  # "container/" or "container/prefix/"
    source_container: str
    source_prefix: str = ""
    destination_bucket: str
    destination_prefix: str = ""
    renamed_because: str | None = None  # why the destination name differs from the source
    # Source tier or storage class -> destination storage class (from the catalog).
    storage_classes: dict[str, str] = Field(default_factory=dict)


class Selector(_Model):
    """Which inventory objects a phase takes. All conditions must hold."""

    datasets: tuple[str, ...] = ()  # empty: every mapped dataset
    min_size: int | None = None
    max_size: int | None = None  # exclusive
    modified_before: str | None = None  # ISO date-time
    # Hash sample: objects whose key hash falls below sample_per_10000 / 10,000.
    sample_per_10000: int | None = None
    # Waves: objects whose key hash modulo `waves` equals `wave`.
    waves: int | None = None
    wave: int | None = None
    exclude_phases: tuple[str, ...] = ()  # objects already taken by these phases
    changed_since_copy: bool = False  # delta: new or changed since the last copy
    # Coverage (pilot): besides the sample, the `cover_per_class` objects of lowest key hash
    # of every dataset x size class, the classes bounded by `size_bounds` (upper bounds,
    # exclusive, ascending; the last class is open), so every dataset and size is tried.
    cover_per_class: int = 0
    size_bounds: tuple[int, ...] = ()


class Estimate(_Model):
    objects: int = 0
    bytes: int = 0
    requests: int = 0
    duration_seconds: float = 0
    egress_cost: float | None = None  # None: price unknown in the catalog
    request_cost: float | None = None
    storage_cost_per_month: float | None = None
    currency: str = "EUR"  # of egress_cost and request_cost (the source's prices)
    storage_currency: str = "EUR"  # of storage_cost_per_month (the destination's prices)
    # requests by HTTP method: GET/HEAD at the source, PUT (objects and parts) and POST
    # (create/complete multipart) at the destination
    requests_by_kind: dict[str, int] = Field(default_factory=dict)


class Phase(_Model):
    name: str  # pilot, bulk-1, bulk-2, delta, cutover, decommission
    kind: PhaseKind
    selector: Selector = Selector()
    requires: tuple[str, ...] = ()  # phases that must be verified (or done) first
    estimate: Estimate = Estimate()
    checklist: tuple[str, ...] = ()


class Finding(_Model):
    code: str  # e.g. DESTINATION_FAILS_POLICY, KEY_TOO_LONG, ARCHIVED_NEEDS_REHYDRATION
    severity: Severity
    message: str
    action: str  # what to do
    datasets: tuple[str, ...] = ()
    objects: int = 0
    examples: tuple[str, ...] = ()  # a few keys, never the full list


class PlanOptions(_Model):
    bandwidth_bytes_per_second: float
    pilot_share: float
    wave_cap_bytes: int
    part_size: int | None = None  # None: chosen per object from the destination's limits
    # After a multipart upload, write `migrate-sha256` on the object with one server-side
    # request (a copy onto itself on S3). False: its SHA-256 is in the ledger and manifest.
    sha256_on_large_objects: bool = True


class Plan(_Model):
    schema_version: int = SCHEMA_VERSION
    name: str
    created: str  # ISO date, passed in: planning reads no clock
    policy: str
    runner_location: str | None = None
    source: str
    destination: str
    inventory_run: int  # the inventory the plan was made from
    # that inventory run's random name: tells the state that holds it from another whose
    # inventory of a site of the same name has the same number (None: an older plan)
    inventory_token: str | None = None
    sites: tuple[SiteRef, ...]
    mappings: tuple[Mapping, ...]
    # Datasets of the inventory left out on purpose (`migrate plan --exclude`): not moved,
    # and, unlike a dataset that appeared later, no reason to hold the cutover back.
    excluded: tuple[str, ...] = ()
    phases: tuple[Phase, ...]
    totals: Estimate
    findings: tuple[Finding, ...] = ()
    allowlist: tuple[str, ...]  # every host the run may contact
    options: PlanOptions
    digest: str = ""
    _path: Path | None = PrivateAttr(default=None)  # the file it was read from: not its content

    @property
    def command_path(self) -> str:
        """The plan file as a command line names it, for the commands a message suggests
        (`migrate run plans/hdh.yaml --phase bulk-1`); PLAN for a plan read from no file."""
        if self._path is None:
            return "PLAN"
        text = str(self._path)
        # `./-x.yaml` is kept `./`: `-x.yaml` would be read as an option.
        return shlex.quote(f"./{text}" if text.startswith("-") else text)

    # The file it was read from is not the plan: two reads of one plan, or a plan read and
    # the same one made in memory, are equal (pydantic compares private attributes too).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return self.__dict__ == other.__dict__

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.BLOCKING]

    def phase(self, name: str) -> Phase:
        for phase in self.phases:
            if phase.name == name:
                return phase
        known = ", ".join(p.name for p in self.phases)
        raise PlanError(f"plan {self.name}: no phase {name!r}", hint=f"phases: {known}")

    @property
    def accounted(self) -> list[str]:
        """The datasets the plan decided about: mapped, or excluded on purpose."""
        return [m.dataset for m in self.mappings] + list(self.excluded)

    def mapping_for(self, dataset: str) -> Mapping | None:
        for mapping in self.mappings:
            if mapping.dataset == dataset:
                return mapping
        return None


def _canonical(plan: Plan) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(plan.model_dump_json(exclude={"digest"}))
    return data


# Options and fields added after plans were first approved, with their defaults: they
# count in the digest only when set otherwise, so a plan written before them keeps its digest.
_LATER_OPTIONS: dict[str, Any] = {"sha256_on_large_objects": True}
_LATER_FIELDS: dict[str, Any] = {"excluded": [], "inventory_token": None}


def _drop_later_fields(data: dict[str, Any]) -> None:
    """Leave out the later fields at their defaults: a plan without them reads as before."""
    for name, default in _LATER_FIELDS.items():
        if data.get(name, default) == default:
            data.pop(name, None)


def compute_digest(plan: Plan) -> str:
    data = _canonical(plan)
    for name, default in _LATER_OPTIONS.items():
        if data["options"].get(name, default) == default:
            data["options"].pop(name, None)
    _drop_later_fields(data)
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()


def with_digest(plan: Plan) -> Plan:
    return plan.model_copy(update={"digest": compute_digest(plan)})


def to_yaml(plan: Plan) -> str:
    """Deterministic YAML: the same plan always gives the same bytes."""
    data = _canonical(plan)
    data["digest"] = plan.digest
    _drop_later_fields(data)
    header = (
        f"# migrate plan {plan.name}: review it, then `migrate plan approve`.\n"
        "# Editing it after approval makes `migrate run` refuse it.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=True, allow_unicode=True, width=100)


def save_plan(plan: Plan, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, to_yaml(plan).encode("utf-8"))  # a plan is never left cut


def check_as_written(plan: Plan, path: Path) -> None:
    """PlanTampered unless the plan is as `migrate plan` wrote it: its content matches its
    digest, and it names the sites whose verdicts were reviewed (one naming another site
    than the one judged was edited, and its digest made again)."""
    for role, name in (("source", plan.source), ("destination", plan.destination)):
        if not any(s.name == name and s.role == role for s in plan.sites):
            raise PlanTampered(
                f"{path}: its {role} is {name!r}, but its sites list no {role} of that name "
                "(edited by hand?)",
                hint="generate the plan again with `migrate plan` and approve it",
            )
    if compute_digest(plan) != plan.digest:
        raise PlanTampered(
            f"{path}: content does not match its digest (edited by hand?)",
            hint="regenerate it with `migrate plan` and approve it again",
        )


# Far above a plan's size (its datasets, findings and a few example keys each): a path
# that reads on past it (/dev/zero, a log by mistake) is not one, and is not read whole.
MAX_PLAN_BYTES = 64 * 1024**2


def load_plan(path: Path, *, check_digest: bool = True) -> Plan:
    try:
        with path.open("rb") as handle:  # a pipe too: `<(...)`
            data = handle.read(MAX_PLAN_BYTES + 1)
        if len(data) > MAX_PLAN_BYTES:
            raise PlanError(
                f"{path}: not a plan (more than {MAX_PLAN_BYTES // 1024**2} MiB)",
                hint="give the YAML file `migrate plan` wrote",
            )
        raw = yaml.load(data.decode("utf-8"), Loader=_PlanLoader)
    except FileNotFoundError:
        raise PlanError(f"plan {path} not found", hint="create one with `migrate plan`") from None
    except IsADirectoryError:
        raise PlanError(
            f"plan {path} is a directory, not a plan file",
            hint="give the plan's YAML file, e.g. plans/NAME.yaml",
        ) from None
    except UnicodeDecodeError as exc:
        raise PlanError(
            f"{path}: not a plan (not UTF-8 text: byte {exc.start})",
            hint="give the YAML file `migrate plan` wrote",
        ) from None
    except OSError as exc:  # unreadable: permissions, a device, an I/O error
        raise PlanError(
            f"cannot read plan {path} ({exc.strerror or exc})",
            hint="check the path and that you may read it",
        ) from None
    except _DuplicateKey as exc:
        raise PlanTampered(
            f"{path}: key {exc.key!r} appears twice (line {exc.line}): YAML keeps the last, "
            "so the file shows one value and means another",
            hint="generate the plan again with `migrate plan` and approve it",
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise PlanTampered(
            f"{path}: not valid YAML ({exc.__class__.__name__}{where})",
            hint="generate the plan again with `migrate plan` and approve it",
        ) from None
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: not a plan document")
    _check_schema_version(raw, path)
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise PlanError(
            f"{path}: {where}: {err['msg']}",
            hint="make the plan again with `migrate plan` (a plan is not written by hand)",
        ) from None
    if check_digest:  # shown unchecked (plan show, status), it is refused when checked
        check_as_written(plan, path)
    plan._path = path
    return plan


def _check_schema_version(raw: dict[str, Any], path: Path) -> None:
    """A plan of another schema version is refused before it is read: its fields may mean
    something else (a selector read under the wrong rules copies other objects), and its
    digest, recomputed by whoever wrote it, proves nothing about that.

    A plan without `schema_version` is refused too, not read as version 1: every plan
    migrate has written carries it (the model has had it since its first version and
    `to_yaml` writes every field), so a document without it was written or edited by
    something else, and guessing its version is the mistake this check is there to stop.
    """
    version = raw.get("schema_version")
    if version is None:
        raise PlanError(
            f"{path}: no schema_version (this migrate reads plans of schema version "
            f"{SCHEMA_VERSION})",
            hint="every plan `migrate plan` writes has one: make the plan again",
        )
    if type(version) is not int or version != SCHEMA_VERSION:  # bool and "1" are not 1
        newer = type(version) is int and version > SCHEMA_VERSION
        raise PlanError(
            f"{path}: plan schema version {version!r}, this migrate reads schema version "
            f"{SCHEMA_VERSION}",
            hint="use the migrate version that wrote it"
            if newer
            else "make the plan again with `migrate plan`",
        )


def destination_prefixes(plan: Plan) -> dict[str, list[str]]:
    """Per destination bucket, the prefixes to list: the mappings' destination prefixes
    without those another covers, in order. Keys under such disjoint prefixes, listed one
    prefix after the other, come in ascending key order."""
    by_bucket: dict[str, set[str]] = {}
    for m in plan.mappings:
        by_bucket.setdefault(m.destination_bucket, set()).add(m.destination_prefix)
    out: dict[str, list[str]] = {}
    for bucket in sorted(by_bucket):
        kept: list[str] = []
        # Sorted, a covering prefix comes before what it covers, and so does all that lies
        # between them (which it covers too): only the last prefix kept can cover the next.
        for p in sorted(by_bucket[bucket]):
            if not kept or not p.startswith(kept[-1]):
                kept.append(p)
        out[bucket] = kept
    return out


def key_hash(container: str, key: str) -> int:
    """The key hash that hash samples and waves select on (see the module doc)."""
    data = f"{container}/{key}".encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big") >> 1


def json_schema() -> dict[str, Any]:
    """The plan's JSON schema, checked in as plans/schema.json."""
    return Plan.model_json_schema()


def routes_of(plan: Plan) -> dict[str, str]:
    """Where the plan sends each dataset: its sites, bucket and prefix on either side."""
    return {
        m.dataset: f"{plan.source}:{m.source_container}/{m.source_prefix} -> "
        f"{plan.destination}:{m.destination_bucket}/{m.destination_prefix}"
        for m in plan.mappings
    }


def moved_route(plan: Plan, ledger: Ledger) -> tuple[str, str, str] | None:
    """The first dataset the state's progress under this plan's name sent elsewhere than
    this plan does: (dataset, as the state's progress sent it, as this plan does)."""
    bound = ledger.plan_routes(plan.name)
    for dataset, route in sorted(routes_of(plan).items()):
        if dataset in bound and bound[dataset] != route:
            return dataset, bound[dataset], route
    return None


def check_same_routes(plan: Plan, ledger: Ledger) -> None:
    """PlanError if the state holds the progress of another plan of this name (a plan is
    named by its file) that sent one of these datasets elsewhere: its transfers, verified
    there, would be taken for this plan's."""
    moved = moved_route(plan, ledger)
    if moved is not None:
        dataset, before, now = moved
        raise PlanError(
            f"plan {plan.name}: the state already holds the progress of another plan of "
            f"that name, which sent {dataset} as {before} (this one: {now})",
            hint="save this plan under another name (a plan is named by its file: "
            "-o plans/OTHER.yaml), or give it another state_dir",
        )
    # A dataset copied already, then left out with --exclude: its copies were neither
    # verified nor reported any more, and verify failed for good (a walkthrough).
    # (Its transfers, not its route: a dataset mapped whose objects no phase took yet,
    # a wave not run, may be left out: a review.)
    copied = ledger.datasets_taken(plan.name, plan.excluded)
    if copied:
        raise PlanError(
            f"plan {plan.name}: --exclude {copied[0]}: this plan's runs took it already (the "
            "state holds their progress); left out now, its copies would be neither "
            "verified nor reported",
            hint="keep it in the plan (no --exclude for it), or save a plan for the rest "
            "under another name (-o plans/OTHER.yaml)",
        )


# A finding the run reads: the destination's buckets must exist, made as a certification
# the policy needs requires (Scaleway's HDS: with a tag, in the console); the run makes none.
CERTIFICATION_CONDITION = "CERTIFICATION_CONDITION"


def check_approved(plan: Plan, ledger: Ledger) -> Approval:
    """The approval of exactly this plan. Raises PlanTampered when its content does not
    match its digest or differs from the approved version, PlanError when it was never
    approved (or carries a blocking finding) or the state holds another plan's progress
    under its name, or does not hold the inventory it was made from (another state's plan
    of the same name: not this plan's to approve there)."""
    if compute_digest(plan) != plan.digest:
        raise PlanTampered(
            f"plan {plan.name}: content does not match its digest (edited by hand?)",
            hint="generate it again with `migrate plan` and approve it",
        )
    if plan.blocking:
        raise PlanError(f"plan {plan.name} has blocking findings and cannot run")
    check_same_routes(plan, ledger)
    approvals = ledger.approvals(plan.name)
    if approvals and approvals[0].digest == plan.digest:
        return approvals[0]
    if any(a.digest == plan.digest for a in approvals):
        # Approved once, then a later version was (a walkthrough: the first file copied
        # back ran what the second left out): only the latest approval is taken.
        last = approvals[0]
        raise PlanTampered(
            f"plan {plan.name}: this version's approval was superseded by a later version's "
            f"(approved by {last.approved_by} at {last.approved_at}, digest "
            f"{last.digest[:19]}…)",
            hint=f"run the version approved last, or approve this one again after review "
            f"(`migrate plan approve {plan.command_path}`)",
        )
    # Another state's plan of the same name (a rehearsal's): not this plan's to approve
    # there, which the hint below would send the user to try.
    check_inventory_held(plan, ledger)
    if approvals:
        last = approvals[0]
        raise PlanTampered(
            f"plan {plan.name} is not the version that was approved (approved by "
            f"{last.approved_by} at {last.approved_at}, digest {last.digest[:19]}…; this one "
            f"is {plan.digest[:19]}…)",
            hint=f"review it with `migrate plan show {plan.command_path}`, then `migrate plan "
            f"approve {plan.command_path}` again",
        )
    raise PlanError(
        f"plan {plan.name} is not approved in the state {ledger.path}",
        hint="if it was approved with another sites file, name that one with --sites (its "
        f"state_dir holds the approval); else review it with `migrate plan show "
        f"{plan.command_path}`, then run `migrate plan approve {plan.command_path}`",
    )


def holds_inventory(plan: Plan, ledger: Ledger) -> bool:
    """Whether the state holds the inventory the plan was made from: its run of that number
    listed the plan's source, and bears the name the plan gives it (where the plan gives
    one: another state's inventory of a site of the same name may bear the same number)."""
    if ledger.inventory_run_site(plan.inventory_run) != plan.source:
        return False
    # A plan made before runs were named is told by its site alone; the migration that
    # named them named the older runs too, so a plan bearing a name has one to match.
    return plan.inventory_token is None or (
        ledger.inventory_token(plan.inventory_run) == plan.inventory_token
    )


def check_inventory_held(plan: Plan, ledger: Ledger, phase: str | None = None) -> None:
    """PlanError when the state does not hold the inventory the plan was made from (the
    state moved aside, or another sites file's): its phases would take nothing from it, and
    each would pass, with nothing copied, and open the gate of the next. With `phase`: only
    while that phase has not taken its objects yet (a finished one's answer reads no more
    than it did)."""
    if phase is not None and ledger.phase_state(plan.name, phase).resolved_at is not None:
        return
    if not holds_inventory(plan, ledger):
        raise PlanError(
            f"plan {plan.name} was made from inventory #{plan.inventory_run} of {plan.source}, "
            f"which the state {ledger.path} does not hold (another state, or another sites "
            "file's)",
            hint="use the sites file (and its state_dir) the plan was made with, or run "
            f"`migrate inventory {plan.source}` and make the plan again",
        )


def check_sources_listed(plan: Plan, config: SitesConfig) -> None:
    """ConfigError (exit 3) when the sites file no longer lists a container the plan
    copies: the inventory leaves it out then, so a phase would take none of its objects and
    a re-list would see none of its changes (cutover would say ready)."""
    site = config.site(plan.source)
    dropped = sorted({m.source_container for m in plan.mappings} - set(site.buckets))
    if dropped:
        raise ConfigError(
            f"{config.path}: sites.{site.name}: buckets/containers no longer lists "
            f"{', '.join(map(repr, dropped))}, which plan {plan.name} copies",
            hint="add it back to the site's list, or make a new plan without it",
        )


def approval_of(plan: Plan, ledger: Ledger) -> tuple[Approval | None, str]:
    """Whether `migrate run` takes this plan as approved: the approval and its sentence, or
    None and the sentence `check_approved` refuses it with."""
    try:
        approval = check_approved(plan, ledger)
    except PlanError as exc:
        return None, str(exc.args[0])
    return approval, f"approved by {approval.approved_by} at {approval.approved_at}"
