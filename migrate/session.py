"""What every command that touches a plan's stores needs, built in one place: the plan
(digest checked), the ledger, and both adapters behind one routing guard whose record of
contacted hosts is saved in the ledger when the session ends."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext, suppress
from datetime import date
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from migrate.errors import (
    ConfigError,
    MigrateError,
    PlanError,
    PolicyViolation,
    RouteRefused,
    StateBusy,
    StateUnwritable,
)
from migrate.ledger import Ledger, RouteUse
from migrate.plan import Plan, load_plan
from migrate.planlock import plan_lock
from migrate.routing import RoutingGuard, bare_host, endpoint_host, proxy_host
from migrate.sites import Site, SitesConfig

if TYPE_CHECKING:
    from providers.base import StoreAdapter
    from providers.catalog import Catalog


class Session:
    """The adapters, and the guard they share, are built when first used: a command that
    finds nothing to do (a finished phase run again) contacts no store and loads no SDK
    (`run` builds the guard first all the same: its checks of the sites against the plan's
    allowlist read the catalog)."""

    def __init__(
        self, plan: Plan, config: SitesConfig, ledger: Ledger, catalog: Callable[[], Catalog]
    ):
        self.plan = plan
        self.config = config
        self.ledger = ledger
        self._load_catalog = catalog
        self._catalog: Catalog | None = None
        self._guard: RoutingGuard | None = None
        self._built: dict[str, StoreAdapter] = {}
        self._building = threading.Lock()  # a deferred adapter's first use may be a worker's

    @property
    def guard(self) -> RoutingGuard:
        if self._guard is None:
            self._guard = guard_for(self.plan, self.config, self.catalog)
        return self._guard

    @property
    def catalog(self) -> Catalog:
        """Loaded once, on first use: the guard and the adapters read the same."""
        if self._catalog is None:
            self._catalog = self._load_catalog()
        return self._catalog

    def routes_used(self) -> list[RouteUse]:
        return [RouteUse(*use) for use in self._guard.drain()] if self._guard else []

    def _adapter(self, name: str) -> StoreAdapter:
        with self._building:
            if name not in self._built:
                from providers.factory import build_adapter  # not loaded if nothing is copied

                site = _site(self.config, name)
                if name == self.plan.destination:
                    refuse_blocked_now(self.plan, site, self.config, self.catalog)
                self._built[name] = build_adapter(site, guard=self.guard, catalog=self.catalog)
            return self._built[name]

    def deferred(self, name: str) -> StoreAdapter:
        """The site's adapter, built (its credentials asked for) at its first use: a plain
        verification never contacts the source, and an auditor given the destination's
        credentials alone could not run it (a walkthrough)."""
        return cast("StoreAdapter", _Deferred(lambda: self._adapter(name)))

    @property
    def source(self) -> StoreAdapter:
        return self._adapter(self.plan.source)

    @property
    def destination(self) -> StoreAdapter:
        return self._adapter(self.plan.destination)

    def close(self) -> None:
        for adapter in self._built.values():
            adapter.close()


class _Deferred:
    def __init__(self, build: Callable[[], StoreAdapter]) -> None:
        self._build = build
        self._built: StoreAdapter | None = None  # the session's, built once under its lock

    def __getattr__(self, name: str) -> Any:
        if self._built is None:
            self._built = self._build()
        return getattr(self._built, name)


def refuse_blocked_now(
    plan: Plan,
    destination: Site,
    config: SitesConfig,
    catalog: Catalog,
    today: date | None = None,
    *,
    approving: bool = False,
) -> None:
    """PolicyViolation (exit 8) when the plan's policy blocks its destination, or the
    machine running migrate, as the sites file and the catalog describe them now: the plan
    was approved under other facts (a country corrected, a certification expired), and no
    byte may go there."""
    from migrate.policy import evaluate, evaluate_runner

    for what, verdict in (
        (f"destination {destination.name}", evaluate(destination, plan.policy, catalog,
                                                     today or date.today())),
        ("the runner (runner.location)", evaluate_runner(config.runner.location, plan.policy)),
    ):  # fmt: skip
        if not verdict.blocking:
            continue
        why = next((r.text for r in verdict.reasons if r.outcome != "PASS"), verdict.status)
        done = "it is not approved" if approving else "no request is sent to the stores"
        raise PolicyViolation(
            f"{what} is {verdict.status} under policy {plan.policy} now ({why}): plan "
            f"{plan.name} was made under other facts; {done}",
            hint="if a fact is wrong, correct it in the sites file or a catalog file; "
            "otherwise make a plan that passes and approve it",
        )


def guard_for(
    plan: Plan, config: SitesConfig, catalog: Catalog, env: Mapping[str, str] | None = None
) -> RoutingGuard:
    """The guard of a plan's run: the hosts its allowlist names, nothing else. `env`: the
    proxy variables it holds to (default: this process's; `{}` where nothing is sent, as
    an approval on another machine than the runner's)."""
    names = [plan.source, plan.destination]
    sites = [config.site(n) for n in names]
    for site in sites:
        if site.proxy and proxy_host(site.proxy) not in plan.allowlist:
            raise RouteRefused(
                f"site {site.name} declares proxy {proxy_host(site.proxy)}, which plan "
                f"{plan.name} does not allow: every request would go through a host nobody "
                "approved",
                hint="make the plan again (its allowlist then names the proxy) and approve "
                "it, or remove the proxy from the sites file",
            )
    # A site whose endpoint was changed in the sites file since the plan was made: refused
    # here, before any request, naming it (else each object failed at its first request).
    from providers.factory import site_hosts

    source, destination = sites
    for site, buckets in (
        (source, {m.source_container for m in plan.mappings}),
        (destination, {m.destination_bucket for m in plan.mappings}),
    ):
        if outside := sorted(site_hosts(site, sorted(buckets), catalog) - set(plan.allowlist)):
            raise RouteRefused(
                f"site {site.name}'s requests would go to {outside[0]}, which plan "
                f"{plan.name} does not allow (not on its allowlist: the sites file changed "
                "since the plan was made?); nothing is sent",
                hint="put the site's endpoint back as the plan has it, or make the plan again "
                "and approve it",
            )
    _check_endpoints_as_planned(plan, sites, catalog)
    return _guard(sites, plan.allowlist, catalog, declared_proxies(config, names), env)


def _check_endpoints_as_planned(plan: Plan, sites: Sequence[Site], catalog: Catalog) -> None:
    """Each site's requests go to the host the plan recorded for that site, not merely to
    one of the plan's hosts: a source pointed at the destination's host (both allowed)
    sent its requests, and its SAS, to the destination's operator (a secrets and routing
    review). The allowlist is one list for both sites; this binds each to its own."""
    planned = {ref.name: ref.endpoint for ref in plan.sites}
    for ref in plan.sites:
        site = next((s for s in sites if s.name == ref.name), None)
        if site is not None and (site.provider, site.region) != (ref.provider, ref.region):
            # Another store under the same name and host (a walkthrough: a self-hosted
            # destination made "scaleway fr-par" ran as approved): not the one judged.
            raise PlanError(
                f"site {site.name} is {site.provider} {site.region or '(no region)'} in the "
                f"sites file, where plan {plan.name} judged {ref.provider} "
                f"{ref.region or '(no region)'}; nothing is sent",
                hint="put the site back as the plan has it, or make the plan again and approve it",
            )
    for site in sites:
        try:
            now = catalog.endpoint_for(site)
        except ConfigError:
            now = None
        was = planned.get(site.name)
        before = endpoint_host(was) if was else None
        after = endpoint_host(now) if now else None
        if before != after:
            raise RouteRefused(
                f"site {site.name}'s requests would go to {after or 'no known endpoint'}, "
                f"where plan {plan.name} sends that site's to {before or 'no endpoint'} (the "
                "sites file changed since the plan was made?); nothing is sent",
                hint="put the site's endpoint back as the plan has it, or make the plan again "
                "and approve it",
            )


def site_guard(
    site: Site, buckets: Sequence[str], catalog: Catalog, proxies: Sequence[str] = ()
) -> RoutingGuard:
    """The guard of a command that reads one site before a plan exists (inventory, sites
    check, the plan's own reads): the hosts a plan would allow for that site and those
    buckets, under the same rules. `proxies`: those the command's sites declare (a proxy
    in the environment must be one of them, as in a run)."""
    from providers.factory import site_hosts

    elsewhere = catalog.endpoint_elsewhere(site)
    if elsewhere is not None:
        # Where a plan would block it (*_ENDPOINT_ELSEWHERE), nothing is sent before one
        # either: the catalog places its endpoint elsewhere than the site declares.
        raise RouteRefused(
            f"{elsewhere.text}: nothing sent",
            hint=f"correct site {site.name}'s endpoint, or its provider and region; a host "
            "that is the declared region's after all goes in its `other_endpoints`, in a "
            "catalog file",
        )
    hosts = site_hosts(site, buckets, catalog)
    provider = catalog.provider_of(site)
    codes = [r.code for r in provider.regions]
    if not hosts and site.region and codes and provider.region(site.region) is None:
        raise ConfigError(
            f"site {site.name}: region {site.region!r} is not one of {provider.display_name}'s "
            f"regions the catalog knows ({', '.join(codes)})",
            hint="correct the site's `region`, or declare its `endpoint` (and the region in a "
            "catalog file)",
        )
    if not hosts:
        # What a plan would block (*_ENDPOINT_UNKNOWN): no host could be allowed.
        raise ConfigError(
            f"site {site.name}: no endpoint (none declared and none in the catalog for region "
            f"{site.region}): where its requests would go cannot be checked",
            hint=f"declare `endpoint` for site {site.name}, or list its region with an "
            "endpoint in a catalog file; an Azure site may give `account` and `region` instead",
        )
    return _guard([site], sorted(hosts), catalog, proxies)


def guarded_adapter(
    site: Site, buckets: Sequence[str], catalog: Catalog, proxies: Sequence[str] = ()
) -> StoreAdapter:
    """The site's adapter behind `site_guard`: no command contacts a store unguarded. A
    local site sends no request: it has no guard."""
    from providers.factory import build_adapter

    if catalog.provider_of(site).api == "local":
        return build_adapter(site)
    return build_adapter(site, guard=site_guard(site, buckets, catalog, proxies), catalog=catalog)


class SiteReads:
    """The adapters of a command that reads sites before a plan exists (inventory, sites
    check, the plan's own reads), each behind `site_guard`, and the hosts they contacted:
    `record` adds those to the state, where the report attests them beside the runs'."""

    def __init__(
        self,
        config: SitesConfig,
        catalog: Catalog,
        command: str,
        proxies: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.command = command
        self.proxies = declared_proxies(config) if proxies is None else proxies
        self._guards: list[tuple[str, RoutingGuard]] = []

    def adapter(self, site: Site, buckets: Sequence[str]) -> StoreAdapter:
        """Like `guarded_adapter`; the caller closes it."""
        from providers.factory import build_adapter

        if self.catalog.provider_of(site).api == "local":
            return build_adapter(site)
        guard = site_guard(site, buckets, self.catalog, self.proxies)
        self._guards.append((site.name, guard))
        return build_adapter(site, guard=guard, catalog=self.catalog)

    def record(self) -> None:
        uses = [(name, RouteUse(*use)) for name, guard in self._guards for use in guard.drain()]
        if uses:
            with Ledger(self.config.state_dir) as ledger:
                ledger.record_site_routes(self.command, uses)


@contextmanager
def site_reads(
    config: SitesConfig,
    catalog: Catalog,
    command: str,
    proxies: Sequence[str] | None = None,
    *,
    warn: Callable[[str], None],
) -> Iterator[SiteReads]:
    """SiteReads whose routes are recorded when the command ends, failed or not. A state
    that cannot take them (read-only, locked by another process) costs the command neither
    its own error nor its result: `warn` is told, in one line."""
    reads = SiteReads(config, catalog, command, proxies)
    try:
        yield reads
    except BaseException:
        with suppress(MigrateError, sqlite3.Error):
            reads.record()
        raise
    try:
        reads.record()
    except (MigrateError, sqlite3.Error) as exc:
        why = exc.one_line() if isinstance(exc, MigrateError) else str(exc)
        warn(
            f"the hosts `{command}` contacted could not be recorded in the state ({why}): "
            "reports will not list them"
        )


def declared_proxies(config: SitesConfig, names: Sequence[str] | None = None) -> list[str]:
    """The proxies the sites file declares (of the sites named, or of every site)."""
    sites = [config.site(n) for n in names] if names is not None else config.sites.values()
    return sorted({s.proxy for s in sites if s.proxy})


def _guard(
    sites: Sequence[Site],
    allowlist: Sequence[str],
    catalog: Catalog,
    proxies: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> RoutingGuard:
    http_allowed = []
    for site in sites:
        if site.allow_http and site.endpoint:
            # The endpoint, and the bucket hosts under it (virtual-host addressing).
            host = endpoint_host(site.endpoint)
            http_allowed += [h for h in allowlist if h == host or h.endswith(f".{host}")]
    extra_global = []
    for site in sites:
        try:
            patterns = [g.host for g in catalog.provider_of(site).global_endpoints]
        except ConfigError:  # an unknown provider is reported by the plan check, not here
            continue
        # A region-less hostname the plan allows (an Azure account host, whose region the
        # site declares and the plan checked) is not refused; any other such host is.
        extra_global += [
            p for p in patterns if not any(fnmatch(bare_host(h), p) for h in allowlist)
        ]
    return RoutingGuard(
        allowlist,
        http_allowed=http_allowed,
        declared_proxies=proxies,
        global_endpoints=extra_global,
        env=env,
    )


def _site(config: SitesConfig, name: str) -> Site:
    return config.site(name)


ROUTES_EVERY_SECONDS = 2.0


@contextmanager
def open_session(
    plan_path: Path,
    config: SitesConfig,
    catalog: Callable[[], Catalog],
    *,
    check_digest: bool = True,
    lock: str | None = None,
) -> Iterator[Session]:
    """`catalog` is called only when an adapter is first needed. `lock` (what the command
    does, e.g. "verify"): hold the plan's lock for the session (PlanBusy if another process
    holds it)."""
    plan = load_plan(plan_path, check_digest=check_digest)
    held = (
        plan_lock(config.state_dir, plan.name, lock, plan_file=plan.command_path)
        if lock
        else nullcontext()
    )
    with held, Ledger(config.state_dir) as ledger:
        # Both sites must exist in the sites file, whether or not the command uses them.
        _site(config, plan.source), _site(config, plan.destination)
        session = Session(plan, config, ledger, catalog)
        stop = threading.Event()

        def record_now_and_then() -> None:
            # A process killed outright (kill -9) records nothing at its end: the hosts it
            # contacted are written as it goes, so the report's routes miss a moment at most.
            while not stop.wait(ROUTES_EVERY_SECONDS):
                with suppress(sqlite3.Error, StateUnwritable, StateBusy):
                    ledger.record_routes(plan.name, session.routes_used())

        recorder = threading.Thread(target=record_now_and_then, name="routes", daemon=True)
        recorder.start()
        try:
            yield session
        finally:
            stop.set()
            with suppress(KeyboardInterrupt):  # a second Ctrl-C: the routes still recorded
                recorder.join()
            ledger.record_routes(plan.name, session.routes_used())
            session.close()
