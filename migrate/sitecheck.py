"""`migrate sites check`: is every site reachable, are its credentials accepted, and does
each bucket/container exist? One cheap request per container; no secret is shown."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

from migrate.errors import GlobalEndpointRefused, MigrateError, as_store_failure, kind_of
from migrate.sites import Site, SitesConfig
from providers.base import StoreAdapter


@dataclass(frozen=True)
class ContainerCheck:
    container: str
    ok: bool
    error: str | None = None
    exit_code: int = 0
    detail: str | None = None  # what a passing check showed, where it says more than ok
    kind: str | None = None  # the error's kind, as --json's error objects name it


@dataclass(frozen=True)
class SiteCheck:
    site: str
    provider: str
    region: str | None
    endpoint: str | None
    containers: list[ContainerCheck] = field(default_factory=list)
    error: str | None = None  # the site could not be set up at all (credentials missing...)
    exit_code: int = 0
    kind: str | None = None  # the error's kind, as --json's error objects name it
    # set when nothing was checked: a site that lists no bucket is not contacted (which
    # request proves credentials without a bucket differs by store and by key policy)
    not_checked: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.containers)


def check_sites(
    config: SitesConfig,
    build: Callable[[Site], StoreAdapter],
    only: str | None = None,
    endpoint_of: Callable[[Site], str | None] = lambda site: site.endpoint,
) -> list[SiteCheck]:
    """`endpoint_of`: the endpoint a site's requests go to (the catalog's for its region,
    where the site declares none), shown with its result."""
    results = []
    for name in [only] if only else sorted(config.sites):
        site = config.site(name)
        # What the results show: the endpoint checked, the catalog's where the site
        # declares none (a site whose endpoint cannot be found fails just below).
        with suppress(MigrateError):
            site = site.model_copy(update={"endpoint": endpoint_of(site)})
        try:
            adapter = build(config.site(name))  # credentials, endpoint, path: even unlisted
        except MigrateError as exc:
            results.append(
                SiteCheck(
                    name,
                    site.provider,
                    site.region,
                    site.endpoint,
                    error=exc.one_line(),
                    exit_code=exc.exit_code,
                    kind=kind_of(exc),
                )
            )
            continue
        # botocore's own endpoint for AWS us-east-1 (the site declares none) is a global
        # one, which the guard refuses: where the requests go is not known, so the site is
        # said not contacted, not failed. One the site declares is its mistake: exit 10.
        botocores = not config.site(name).endpoint
        if not site.buckets:
            # A destination whose buckets the run makes: its credentials proved without one.
            try:
                shown = adapter.check_account()
            except MigrateError as exc:
                if isinstance(exc, GlobalEndpointRefused) and botocores:
                    results.append(
                        SiteCheck(name, site.provider, site.region, site.endpoint,
                                  not_checked=f"set up, not contacted: {exc.one_line()}")
                    )  # fmt: skip
                    continue
                failure = as_store_failure(exc)
                account = ContainerCheck(
                    "(account)",
                    False,
                    failure.one_line(),
                    failure.exit_code,
                    kind=kind_of(failure),
                )
                results.append(
                    SiteCheck(name, site.provider, site.region, site.endpoint, [account],
                              exit_code=failure.exit_code, kind=account.kind)
                )  # fmt: skip
            else:
                account = ContainerCheck("(account)", True, detail=f"reachable, {shown}")
                results.append(
                    SiteCheck(name, site.provider, site.region, site.endpoint, [account])
                )
            finally:
                adapter.close()
            continue
        checks = []
        global_endpoint: GlobalEndpointRefused | None = None
        try:
            for container in site.buckets:
                try:
                    adapter.check(container)
                    checks.append(ContainerCheck(container, True))
                except MigrateError as exc:
                    if isinstance(exc, GlobalEndpointRefused) and botocores:
                        global_endpoint = exc
                        break
                    failure = as_store_failure(exc)
                    checks.append(
                        ContainerCheck(
                            container,
                            False,
                            failure.one_line(),
                            failure.exit_code,
                            kind=kind_of(failure),
                        )
                    )
        finally:
            adapter.close()
        if global_endpoint is not None:
            results.append(
                SiteCheck(name, site.provider, site.region, site.endpoint,
                          not_checked=f"set up, not contacted: {global_endpoint.one_line()}")
            )  # fmt: skip
            continue
        # The site's code and kind are its first failing container's: a script reading the
        # site level (not each container) sees them too.
        first = next((c for c in checks if not c.ok), None)
        results.append(
            SiteCheck(
                name,
                site.provider,
                site.region,
                site.endpoint,
                checks,
                exit_code=first.exit_code if first else 0,
                kind=first.kind if first else None,
            )
        )
    return results


def first_problem(results: list[SiteCheck]) -> str | None:
    """The first failure's line (it names its site and bucket), or None."""
    for result in results:
        if result.error:
            return result.error
        for check in result.containers:
            if not check.ok:
                return check.error
    return None


def exit_code_of(results: list[SiteCheck]) -> int:
    """The first failure's own code, so scripts can tell credentials from reachability."""
    for result in results:
        if result.error:
            return result.exit_code
        for check in result.containers:
            if not check.ok:
                return check.exit_code
    return 0
