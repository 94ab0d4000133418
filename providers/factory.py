"""Build the adapter for a site: the one place that turns a provider name into code."""

from __future__ import annotations

from migrate.errors import ConfigError
from migrate.sites import Site
from providers.base import RequestGuard, StoreAdapter

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


def addressing_for(site: Site) -> str:
    """How the site's S3 requests name the bucket. `auto` with a declared endpoint (every
    store but AWS) is path-style: what botocore itself does for an endpoint it is given,
    made explicit so that the lean path (providers/s3_lean.py) serves these sites too.
    Without an endpoint (AWS), `auto` stays botocore's choice (virtual-hosted)."""
    if site.addressing == "auto" and site.endpoint is not None:
        return "path"
    return site.addressing


def build_adapter(site: Site, *, guard: RequestGuard | None = None) -> StoreAdapter:
    api = api_for(site)
    if api == "local":
        from providers.local import LocalAdapter

        return LocalAdapter(site)
    if api == "s3":
        from providers.s3 import S3Adapter

        site = site.model_copy(update={"addressing": addressing_for(site)})
        return S3Adapter(site, guard=guard, confirmed_checksums=confirmed_checksums(site))
    if api == "azure":
        from providers.azure import AzureAdapter

        return AzureAdapter(site, guard=guard)
    raise ConfigError(
        f"site {site.name}: provider {site.provider!r} speaks {api!r}, which has no adapter yet"
    )
