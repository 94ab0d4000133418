"""What every command that touches a plan's stores needs, built in one place: the plan
(digest checked), the ledger, and both adapters behind one routing guard whose record of
contacted hosts is saved in the ledger when the session ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from migrate.errors import ConfigError
from migrate.ledger import Ledger, RouteUse
from migrate.plan import Plan, load_plan
from migrate.routing import RoutingGuard, endpoint_host
from migrate.sites import Site, SitesConfig
from providers.base import StoreAdapter
from providers.catalog import Catalog
from providers.factory import build_adapter


@dataclass
class Session:
    plan: Plan
    config: SitesConfig
    ledger: Ledger
    source: StoreAdapter
    destination: StoreAdapter
    guard: RoutingGuard


def guard_for(plan: Plan, config: SitesConfig, catalog: Catalog) -> RoutingGuard:
    sites = [config.site(plan.source), config.site(plan.destination)]
    http_allowed = [endpoint_host(s.endpoint) for s in sites if s.allow_http and s.endpoint]
    extra_global = []
    for site in sites:
        try:
            patterns = [g.host for g in catalog.provider(site.provider).global_endpoints]
        except ConfigError:  # an unknown provider is reported by the plan check, not here
            continue
        # A region-less hostname the plan allows (an Azure account host, whose region the
        # site declares and the plan checked) is not refused; any other such host is.
        extra_global += [
            p for p in patterns if not any(fnmatch(h.split(":")[0], p) for h in plan.allowlist)
        ]
    return RoutingGuard(
        plan.allowlist,
        http_allowed=http_allowed,
        declared_proxies=[s.proxy for s in sites if s.proxy],
        global_endpoints=extra_global,
    )


def _site(config: SitesConfig, name: str) -> Site:
    return config.site(name)


@contextmanager
def open_session(
    plan_path: Path, config: SitesConfig, catalog: Catalog, *, check_digest: bool = True
) -> Iterator[Session]:
    plan = load_plan(plan_path, check_digest=check_digest)
    guard = guard_for(plan, config, catalog)
    with Ledger(config.state_dir) as ledger:
        source = build_adapter(_site(config, plan.source), guard=guard)
        destination = build_adapter(_site(config, plan.destination), guard=guard)
        try:
            yield Session(plan, config, ledger, source, destination, guard)
        finally:
            ledger.record_routes(plan.name, [RouteUse(*use) for use in guard.drain()])
            source.close()
            destination.close()
