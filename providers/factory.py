"""Build the adapter for a site: the one place that turns a provider name into code."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from migrate.errors import ConfigError
from migrate.routing import bare_host, endpoint_host, is_loopback
from migrate.sites import Site
from providers.base import RequestGuard, StoreAdapter, StoreLimits

if TYPE_CHECKING:
    from providers.catalog import Catalog

# Which API each provider speaks. The catalog (providers/catalog/) is the source of truth
# once loaded; this fallback keeps adapters usable without it.
_API_FALLBACK = {"azure": "azure", "local": "local", "gcs": "gcs"}


def api_for(site: Site) -> str:
    try:
        from providers.catalog import api_for_provider
    except ImportError:
        return _API_FALLBACK.get(site.provider, "s3")
    return api_for_provider(site.provider)


def confirmed_checksums(site: Site) -> tuple[str, ...]:
    """The checksums the catalog says the site's store verifies on write (a sourced fact);
    none where that is unknown."""
    try:
        from providers.catalog import active_catalog

        fact = active_catalog().limits_for(site).verified_checksums
    except (ImportError, ConfigError):  # an unknown software is reported by the planner
        return ()
    return tuple(fact.value) if fact.known and fact.value else ()


def store_limits(site: Site) -> StoreLimits:
    """The sizes the catalog gives the site's store (part count and sizes, largest single
    PUT and object); S3's where it gives none."""
    try:
        from providers.catalog import active_catalog

        lim = active_catalog().limits_for(site)
    except (ImportError, ConfigError):  # an unknown software is reported by the planner
        return StoreLimits()
    return StoreLimits(
        max_parts=lim.max_parts.value,
        min_part_size=lim.min_part_size.value,
        max_part_size=lim.max_part_size.value,
        max_single_put=lim.max_single_put.value,
        max_object_size=lim.max_object_size.value,
    )


class KeyRules(NamedTuple):
    """What keys a store's adapter declares it can hold, beyond the catalog's limits (for a
    store the catalog leaves to its adapter: a local directory)."""

    max_segment_bytes: int | None = None  # longest '/'-separated segment; None: no limit
    key_may_be_prefix: bool = True  # False: `a` beside `a/b`, or a key ending with '/', fail


def declared_key_rules(site: Site) -> KeyRules:
    """The key rules the site's adapter declares (no store is contacted)."""
    if api_for(site) == "local":
        from providers.local import MAX_SEGMENT_BYTES

        return KeyRules(MAX_SEGMENT_BYTES, key_may_be_prefix=False)
    return KeyRules()


def _catalog_endpoint(site: Site, catalog: Catalog | None = None) -> str | None:
    """The endpoint the catalog gives a site (None where it gives none)."""
    try:
        from providers.catalog import active_catalog

        return (catalog or active_catalog()).endpoint_for(site)
    except (ImportError, ConfigError):  # an unknown provider is reported elsewhere
        return None


def s3_site_as_built(site: Site, catalog: Catalog | None = None) -> Site:
    """The S3 site as its adapter sends requests (the planner's allowlist uses the same):
    - no `endpoint`: the region's from the catalog (AWS without one: botocore's own);
    - `addressing = "auto"` with an endpoint (every store but AWS): path-style, what
      botocore itself does for an endpoint it is given, made explicit so that the lean
      path (providers/s3_lean.py) serves these sites too. Without one (AWS), `auto` stays
      botocore's choice (virtual-hosted)."""
    if site.endpoint is None and site.provider != "aws":
        endpoint = _catalog_endpoint(site, catalog)
        if endpoint is not None:
            site = site.model_copy(update={"endpoint": endpoint})
    if site.addressing == "auto" and site.endpoint is not None:
        site = site.model_copy(update={"addressing": "path"})
    return site


def site_hosts(site: Site, buckets: Sequence[str], catalog: Catalog) -> set[str]:
    """The hosts a site's adapter may contact to reach `buckets`: its endpoint, and for S3
    stores addressed by virtual host, each bucket's host name (never a wildcard). Empty for
    a site without an endpoint the catalog knows."""
    endpoint = catalog.endpoint_for(site)
    if endpoint is None:
        return set()
    host = endpoint_host(endpoint)
    hosts = {host}
    bare = bare_host(host)
    try:
        is_ip = bool(ipaddress.ip_address(bare))
    except ValueError:
        is_ip = False
    if catalog.provider_of(site).api != "s3" or is_ip or is_loopback(bare):
        return hosts
    if s3_site_as_built(site, catalog).addressing != "path":
        hosts.update(f"{b}.{host}" for b in buckets)
    return hosts


def endpoint_as_built(site: Site, catalog: Catalog | None = None) -> str | None:
    """The endpoint the site's adapter sends its requests to, as `build_adapter` makes it:
    the site's, else its region's from the catalog. None for a local directory, for AWS
    without one (botocore's choice) and where none is known."""
    api = api_for(site)
    if api in ("s3", "gcs"):
        return s3_site_as_built(site, catalog).endpoint
    if api == "azure":
        return site.endpoint or _catalog_endpoint(site, catalog)
    return None


def build_adapter(
    site: Site, *, guard: RequestGuard | None = None, catalog: Catalog | None = None
) -> StoreAdapter:
    """`catalog`: the one the site's guard was made from (default: the active one), so that
    the endpoint an adapter uses is the one its guard allows."""
    api = api_for(site)
    if api == "local":
        from providers.local import LocalAdapter

        return LocalAdapter(site)
    if api == "s3":
        from providers.s3 import S3Adapter

        site = s3_site_as_built(site, catalog)
        return S3Adapter(
            site,
            guard=guard,
            confirmed_checksums=confirmed_checksums(site),
            limits=store_limits(site),
        )
    if api == "gcs":
        from providers.gcs import GcsAdapter

        site = s3_site_as_built(site, catalog)
        return GcsAdapter(site, guard=guard, limits=store_limits(site))
    if api == "azure":
        from providers.azure import AzureAdapter

        expected = None if site.endpoint else _catalog_endpoint(site, catalog)
        return AzureAdapter(site, guard=guard, expected_endpoint=expected)
    raise ConfigError(
        f"site {site.name}: provider {site.provider!r} speaks {api!r}, which has no adapter yet"
    )
