"""The provider catalog: facts about each store, loaded from `providers/catalog/*.yaml`.

Guarantees:
- Every file is validated on load; a bad file raises ConfigError naming the file and the key.
- Every known fact carries its `source` and `as_of` date; a fact without both is refused.
  A fact nobody could source is *unknown* (`value` is None), never a guess.
- Every fact remembers the file it came from (`origin`), so a verdict can say that a fact was
  overridden by the user's own catalog file.
- The catalog is immutable once loaded; nothing here reads the clock or the network.

YAML shorthand (see providers/catalog/README in the yaml headers):
- `fact: unknown` or `fact: {value: unknown, note: why}`: an unknown fact;
- `fact: {value: V, source: URL, as_of: DATE}`: a known fact;
- `fact: V`: a known fact that takes `source`/`as_of` from the mapping that contains it
  (a region, a `limits` block, a provider), so a table of facts from one page stays short;
- `as_of` accepts YYYY-MM-DD, YYYY-MM or YYYY (read as the first day of that period, so a
  vague date makes a fact look older, never fresher).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
)
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from migrate.errors import ConfigError, SecretInConfig
from migrate.sites import Site
from providers.countries import COUNTRY_NAMES, EU_EEA, country_name, in_eu_eea, is_country

__all__ = [
    "COUNTRY_NAMES",
    "EU_EEA",
    "Catalog",
    "Certification",
    "ClassMapping",
    "Elsewhere",
    "Exposure",
    "Fact",
    "GlobalEndpoint",
    "Limits",
    "Party",
    "Prices",
    "Provider",
    "Region",
    "Software",
    "Tier",
    "active_catalog",
    "api_for_provider",
    "builtin_catalog",
    "country_name",
    "endpoint_findings",
    "in_eu_eea",
    "iter_facts",
    "load_catalog",
    "set_active_catalog",
]

CATALOG_DIR = Path(__file__).parent / "catalog"
BUILTIN_PREFIX = "providers/catalog/"

# libyaml's safe loader where PyYAML has it: the same documents, about 10x faster to load.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _country(value: str) -> str:
    code = value.strip().upper()
    if not is_country(code):
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. FR, DE)")
    return code


def _parse_as_of(value: Any) -> Any:
    """YYYY-MM-DD, YYYY-MM or YYYY; a partial date is the first day of its period."""
    if isinstance(value, int) and 1900 < value < 3000:
        return date(value, 1, 1)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{4}", text):
            return date(int(text), 1, 1)
        if re.fullmatch(r"\d{4}-\d{2}", text):
            return date(int(text[:4]), int(text[5:]), 1)
    return value


CountryCode = Annotated[str, AfterValidator(_country)]
AsOf = Annotated[date, BeforeValidator(_parse_as_of)]

T = TypeVar("T")


class _Model(BaseModel):
    """Base of catalog models. `merge_key` names the field that identifies an item of a list
    when a user file is merged in; a `is_record` item is replaced whole, never field by field
    (its value and its source must change together)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    merge_key: ClassVar[str | None] = None
    is_record: ClassVar[bool] = False


class Fact(_Model, Generic[T]):
    """One fact: a value with its source and date, or unknown (value None)."""

    value: T | None = None
    source: str | None = None
    as_of: AsOf | None = None
    stated: str | None = None  # the source's own words where the value was converted
    note: str | None = None
    origin: str | None = None  # the catalog file this fact came from (set by the loader)

    @model_validator(mode="after")
    def _sourced(self) -> Fact[T]:
        if self.value is not None and not (self.source and self.as_of):
            raise ValueError("a known fact needs both 'source' and 'as_of' (or write: unknown)")
        return self

    @property
    def known(self) -> bool:
        return self.value is not None


def _unknown() -> Any:
    return Fact()


class Party(_Model):
    name: str
    country: CountryCode


class Exposure(_Model):
    """A non-EU law that reaches the operator or its parent, and why."""

    law: str
    entity: str
    country: CountryCode
    why: str
    source: str | None = None  # when not the enclosing fact's source
    as_of: AsOf | None = None


CertStatus = Literal["yes", "no", "in-progress", "unknown"]


class Certification(_Model):
    """A certification or qualification. `status`: whether the provider holds it at all;
    `object_storage`: whether it covers the object-storage service; `regions`: the region
    codes it covers (None: region scope unknown; ["*"]: every region)."""

    merge_key: ClassVar[str | None] = "name"
    is_record: ClassVar[bool] = True

    name: str
    status: CertStatus
    object_storage: Literal["yes", "no", "unknown"] = "unknown"
    regions: tuple[str, ...] | None = None
    scope: str | None = None
    conditions: str | None = None
    source: str | None = None
    as_of: AsOf | None = None
    note: str | None = None
    origin: str | None = None

    @model_validator(mode="after")
    def _sourced(self) -> Certification:
        if self.status != "unknown" and not (self.source and self.as_of):
            raise ValueError(
                f"certification {self.name}: status {self.status!r} needs 'source' and 'as_of'"
            )
        return self

    def covers_region(self, code: str | None) -> bool | None:
        """Whether it covers region `code`; every region ("*") wherever the data is, a
        region given or not; None where the scope, or the region (`code` None), is unknown."""
        if self.regions is None:
            return None
        if "*" in self.regions:
            return True
        return None if code is None else code in self.regions


@dataclass(frozen=True)
class Elsewhere:
    """Catalog.endpoint_elsewhere's answer: `known`, the catalog places the endpoint (another
    listed region, another provider's host): the site fails; else (its own provider's, in a
    region the catalog does not place) where it is is unknown. Either way no plan may send
    its data there."""

    text: str
    known: bool


class GlobalEndpoint(_Model):
    """A hostname that does not reveal the region the data is in (global or accelerated)."""

    merge_key: ClassVar[str | None] = "host"
    is_record: ClassVar[bool] = True

    host: str  # fnmatch pattern, e.g. "*.s3-accelerate.amazonaws.com"
    why: str
    region_from: str | None = None  # how to learn the real region
    source: str
    as_of: AsOf
    origin: str | None = None


class Tier(_Model):
    """A source storage tier; `restore_required` tiers must be rehydrated before reading."""

    merge_key: ClassVar[str | None] = "name"
    is_record: ClassVar[bool] = True

    name: str
    restore_required: bool
    source: str
    as_of: AsOf
    note: str | None = None
    origin: str | None = None
    # How long a restore takes at the provider's default priority, at most (hours), and
    # what it costs per GB restored: each its own sourced fact, unknown until sourced.
    restore_hours: Fact[float] = Field(default_factory=_unknown)
    restore_cost_per_gb: Fact[float] = Field(default_factory=_unknown)


class Prices(_Model):
    storage_per_gb_month: Fact[float] = Field(default_factory=_unknown)
    egress_per_gb: Fact[float] = Field(default_factory=_unknown)
    egress_free_gb_month: Fact[float] = Field(default_factory=_unknown)
    currency: str | None = None

    def priced(self) -> bool:
        return self.storage_per_gb_month.value is not None or self.egress_per_gb.value is not None


_UNITS = {
    "B": (1, 1),
    "KB": (10**3, 2**10),
    "MB": (10**6, 2**20),
    "GB": (10**9, 2**30),
    "TB": (10**12, 2**40),
    "KIB": (2**10, 2**10),
    "MIB": (2**20, 2**20),
    "GIB": (2**30, 2**30),
    "TIB": (2**40, 2**40),
}
_SIZE = re.compile(r"^\s*([0-9][0-9_,.]*)\s*([A-Za-z]+)\s*$")


def parse_size(text: str, *, minimum: bool) -> int:
    """'5 GiB' -> bytes. A source that writes GB or MB rarely says whether it means 10^9 or
    2^30: maxima are read as decimal and minima as binary, the safe side of both."""
    match = _SIZE.match(text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"{text!r} is not a size such as '5 GiB' or '5 MB'")
    number = float(match.group(1).replace(",", "").replace("_", ""))
    decimal, binary = _UNITS[match.group(2).upper()]
    return int(number * (binary if minimum else decimal))


_SIZE_FIELDS = {
    "max_object_size": False,
    "min_part_size": True,
    "max_part_size": False,
    "max_single_put": False,
    "metadata_bytes": False,
    "key_bytes": False,
    "max_segment_bytes": False,
}


class Limits(_Model):
    """Sizes in bytes; `verified_checksums`: algorithms the server checks on write."""

    max_object_size: Fact[int] = Field(default_factory=_unknown)
    max_parts: Fact[int] = Field(default_factory=_unknown)
    min_part_size: Fact[int] = Field(default_factory=_unknown)
    max_part_size: Fact[int] = Field(default_factory=_unknown)
    max_single_put: Fact[int] = Field(default_factory=_unknown)
    metadata_bytes: Fact[int] = Field(default_factory=_unknown)
    key_bytes: Fact[int] = Field(default_factory=_unknown)
    max_segment_bytes: Fact[int] = Field(default_factory=_unknown)
    verified_checksums: Fact[tuple[str, ...]] = Field(default_factory=_unknown)

    @model_validator(mode="before")
    @classmethod
    def _sizes(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, minimum in _SIZE_FIELDS.items():
            fact = out.get(name)
            if isinstance(fact, dict) and isinstance(fact.get("value"), str):
                fact = dict(fact)
                fact.setdefault("stated", fact["value"])
                fact["value"] = parse_size(fact["value"], minimum=minimum)
                out[name] = fact
        checks = out.get("verified_checksums")
        if isinstance(checks, dict) and isinstance(checks.get("value"), list | tuple):
            out["verified_checksums"] = {
                **checks,
                "value": tuple(str(c).lower().replace("-", "") for c in checks["value"]),
            }
        return out


class Region(_Model):
    merge_key: ClassVar[str | None] = "code"

    code: str
    city: str | None = None
    country: Fact[CountryCode] = Field(default_factory=_unknown)
    endpoint: Fact[str] = Field(default_factory=_unknown)  # host; may hold {account}
    other_endpoints: Fact[tuple[str, ...]] = Field(default_factory=_unknown)
    prices: Prices | None = None  # region-specific prices, over the provider's
    note: str | None = None

    @property
    def eu_eea(self) -> bool | None:
        """Derived from the country; None when the country is unknown."""
        if self.country.value is None:
            return None
        return in_eu_eea(self.country.value)


class Software(_Model):
    """Server software a self-hosted site runs; its known limits."""

    merge_key: ClassVar[str | None] = "name"

    name: str
    display_name: str
    limits: Limits = Limits()
    standard_class: Fact[str] = Field(default_factory=_unknown)
    note: str | None = None


class Provider(_Model):
    name: str
    display_name: str
    service: str
    roles: tuple[Literal["source", "destination"], ...]
    api: Literal["s3", "azure", "gcs", "local"]
    # Operator, country and certifications come from each site (self-hosted, local).
    declared_by_site: bool = False
    legal_entity: Fact[str] = Field(default_factory=_unknown)
    hq_country: Fact[CountryCode] = Field(default_factory=_unknown)
    ultimate_parent: Fact[Party] = Field(default_factory=_unknown)
    extraterritorial: Fact[tuple[Exposure, ...]] = Field(default_factory=_unknown)
    certifications: tuple[Certification, ...] = ()
    endpoint_pattern: Fact[str] = Field(default_factory=_unknown)  # may hold {region}
    other_endpoint_patterns: Fact[tuple[str, ...]] = Field(default_factory=_unknown)
    global_endpoints: tuple[GlobalEndpoint, ...] = ()
    regions: tuple[Region, ...] = ()
    limits: Limits = Limits()
    standard_class: Fact[str] = Field(default_factory=_unknown)  # class sent for readable tiers
    tiers: tuple[Tier, ...] = ()
    prices: Prices = Prices()
    quirks: dict[str, Fact[bool | int | str]] = {}
    software: tuple[Software, ...] = ()
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _priced_in(self) -> Provider:
        # The plan's costs would otherwise be shown in a currency nobody stated. A region's
        # prices take the provider's currency unless they name their own.
        if self.prices.priced() and not self.prices.currency:
            raise ValueError("prices: a price needs its currency: add `currency: EUR` (or USD...)")
        for region in self.regions:
            stated = region.prices and (region.prices.currency or self.prices.currency)
            if region.prices and region.prices.priced() and not stated:
                raise ValueError(
                    f"regions[{region.code}].prices: a price needs its currency: add "
                    "`currency: EUR` (or USD...)"
                )
        return self

    @model_validator(mode="after")
    def _unique(self) -> Provider:
        for label, keys in (
            ("region", [r.code for r in self.regions]),
            ("certification", [c.name.lower() for c in self.certifications]),
            ("software", [s.name for s in self.software]),
        ):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"duplicate {label}: {', '.join(dupes)}")
        return self

    def region(self, code: str) -> Region | None:
        for region in self.regions:
            if region.code == code:
                return region
        return None

    def certification(self, name: str) -> Certification | None:
        for cert in self.certifications:
            if cert.name.lower() == name.lower():
                return cert
        return None

    def find_software(self, name: str) -> Software | None:
        for soft in self.software:
            if soft.name.lower() == name.lower():
                return soft
        return None


class ClassMapping(_Model):
    """What to do with an object of a source tier at a destination."""

    source_tier: str
    destination_class: str | None  # None: send no storage class (the store's default)
    needs_rehydration: bool
    reason: str
    source: str | None = None
    as_of: date | None = None
    restore_hours: Fact[float] = Field(default_factory=_unknown)
    restore_cost_per_gb: Fact[float] = Field(default_factory=_unknown)


class Catalog(_Model):
    providers: dict[str, Provider]
    user_files: tuple[str, ...] = ()

    def names(self) -> list[str]:
        return sorted(self.providers)

    def provider(self, name: str) -> Provider:
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigError(
                f"unknown provider {name!r} (a site's `provider` in the sites file)",
                hint=f"known providers: {', '.join(self.names())}; add one in a catalog file",
            ) from None

    def provider_of(self, site: Site) -> Provider:
        """The site's provider; an unknown one is said with the site that names it."""
        try:
            return self.providers[site.provider]
        except KeyError:
            raise ConfigError(
                f"site {site.name}: unknown provider {site.provider!r}",
                hint=f"known providers: {', '.join(self.names())}; add one in a catalog file",
            ) from None

    def region(self, provider: str, code: str) -> Region | None:
        """The region, or None when the catalog does not list it."""
        return self.provider(provider).region(code)

    def is_override(self, origin: str | None) -> bool:
        """True when a fact came from one of the user's catalog files."""
        return origin is not None and origin in self.user_files

    def endpoint_for(self, site: Site) -> str | None:
        """The site's https endpoint: its explicit `endpoint` if any (a mismatch with the
        region is reported by endpoint_findings), else the region's endpoint from the
        catalog, else None."""
        provider = self.provider_of(site)
        if site.endpoint:
            return site.endpoint
        if provider.declared_by_site or not site.region:
            return None
        region = provider.region(site.region)
        if region is None or region.endpoint.value is None:
            return None
        host = _fill(region.endpoint.value, site, region.code)
        return None if host is None else f"https://{host}"

    def endpoint_findings(self, site: Site) -> list[str]:
        """Problems with how a site reaches its provider: no or unknown region, an explicit
        endpoint that is not the region's, or one that hides the region."""
        provider = self.provider_of(site)
        findings: list[str] = []
        where = f"site {site.name}"
        if provider.declared_by_site:
            if provider.api != "local" and not site.endpoint:
                findings.append(f"{where}: {provider.name} sites need an explicit endpoint")
            return findings
        region = provider.region(site.region) if site.region else None
        if not site.region:
            findings.append(
                f"{where}: no region declared; {provider.display_name} needs one to know "
                "where the data is and which endpoint to use"
            )
        elif region is None:
            known = ", ".join(r.code for r in provider.regions) or "none"
            findings.append(
                f"{where}: region {site.region!r} is not in the catalog for {provider.name} "
                f"(known: {known}); add it in a catalog file"
            )
        if (
            region is not None
            and "{account}" in (region.endpoint.value or "")
            and not (site.account)
        ):
            findings.append(
                f"{where}: no account declared; {provider.name} endpoints are per account"
            )
        if not site.endpoint:
            return findings
        host = _host(site.endpoint)
        if region is not None and region.endpoint.value is not None:
            expected = _expected_hosts(provider, region, site)
            if any(_host_matches(host, pattern) for pattern in expected):
                return findings
            glob = _global_match(provider, host)
            if glob is None:
                shown = _fill(region.endpoint.value, site, region.code) or region.endpoint.value
                findings.append(
                    f"{where}: endpoint host {host} does not match region {region.code}'s "
                    f"endpoint {shown} (catalog: {region.endpoint.source}, "
                    f"as of {region.endpoint.as_of})"
                )
                return findings
        glob = _global_match(provider, host)
        if glob is not None:
            findings.append(
                f"{where}: endpoint {host} is a global endpoint that hides the region "
                f"({glob.why}; source {glob.source})"
            )
        return findings

    def endpoint_elsewhere(self, site: Site) -> Elsewhere | None:
        """The site's endpoint host is, by the catalog, another provider's or another
        region's endpoint than the site declares: the data would go there, whatever the
        verdict on the declared region says (`known`); or it names, in the shape of the
        provider's endpoints, a region the catalog does not list: where the data would go
        is unknown. None when it is the declared one's, or no provider of the catalog
        claims it (a private endpoint, a custom domain)."""
        if not site.endpoint:
            return None
        host = _host(site.endpoint)
        owners: list[tuple[str, str, str]] = []
        for name in self.names():
            provider = self.providers[name]
            if _global_match(provider, host) is not None:
                continue  # a host the provider's own catalog says does not tell the region
            for region in provider.regions:
                if any(_host_matches(host, p) for p in _expected_hosts(provider, region, site)):
                    owners.append((name, region.code, provider.display_name))
        known = True
        if not owners:
            # No region it lists: another provider's host (a global one, whose name tells
            # no region, too); or its own in a region the catalog leaves out (a US one), in
            # the shape of its endpoints, or whose region cannot be read: where the data
            # would go is then unknown, and no plan sends it there unlooked (blocking).
            unlisted = " (a region the catalog does not list: where it is, unknown)"
            for name in self.names():
                provider = self.providers[name]
                shown, own = provider.display_name, name == site.provider
                if _global_match(provider, host) is not None:
                    if not own:
                        owners.append((name, "(a global endpoint: no region in its name)", shown))
                    continue  # its own: the region is the declared one (Azure's accounts)
                code = _region_in_patterns(provider, host)
                if code is not None:
                    if (name, code) == (site.provider, site.region):
                        continue
                    if provider.region(code) is None:
                        known = known and not own
                        owners.append((name, f"{code}{unlisted}", shown))
                    else:
                        owners.append((name, code, shown))
                elif _in_shapes(provider, host):
                    if own and site.region and site.region.lower() in host.split("."):
                        continue  # its own, naming the declared region (dual-stack, FIPS, a
                        # VPC endpoint's, an access point's forms of it)
                    known = known and not own
                    owners.append((name, "(which region, the catalog cannot tell)", shown))
        if not owners or (site.provider, site.region) in {(o[0], o[1]) for o in owners}:
            return None
        claimed = ", ".join(f"{shown} {code}" for _, code, shown in owners)
        return Elsewhere(
            f"site {site.name}: endpoint host {host} is, by the catalog, the endpoint of "
            f"{claimed}, not of the site's {site.provider} {site.region or '(no region)'}: "
            "the data would go there, and the verdict judges the declared region",
            known=known,
        )

    def global_endpoint(self, host: str) -> tuple[Provider, GlobalEndpoint] | None:
        """The provider and entry when `host` is a region-hiding endpoint (routing guard)."""
        for name in self.names():
            provider = self.providers[name]
            match = _global_match(provider, host.lower())
            if match is not None:
                return provider, match
        return None

    def limits_for(self, site: Site) -> Limits:
        """The provider's limits; for a self-hosted site, its software's (all unknown when
        the site names no software)."""
        provider = self.provider_of(site)
        if not provider.software:
            return provider.limits
        if not site.software:
            return Limits()
        soft = provider.find_software(site.software)
        if soft is None:
            known = ", ".join(s.name for s in provider.software)
            raise ConfigError(
                f"site {site.name}: unknown software {site.software!r} for {provider.name}",
                hint=f"known: {known}; or add it in a catalog file",
            )
        return soft.limits

    def prices_for(self, provider: str, region: str | None = None) -> Prices:
        """The provider's prices, with the region's own facts over them where it has any."""
        prov = self.provider(provider)
        reg = prov.region(region) if region else None
        if reg is None or reg.prices is None:
            return prov.prices
        merged = prov.prices.model_dump()
        other = reg.prices.currency and reg.prices.currency != prov.prices.currency
        for name, fact in prov.prices:
            # The provider's prices in another currency than the region's: not relabelled
            # (a review: EUR prices read as USD), unknown unless the region restates them.
            # (Its free allowance is gigabytes, no money: kept.)
            if isinstance(fact, Fact) and other and name != "egress_free_gb_month":
                merged[name] = Fact[float]().model_dump()
        for name, fact in reg.prices:
            if isinstance(fact, Fact) and fact.known:
                merged[name] = fact.model_dump()
        if reg.prices.currency:
            merged["currency"] = reg.prices.currency
        return Prices.model_validate(merged)

    def storage_class_for(
        self,
        source_tier: str,
        destination_provider: str,
        *,
        source_provider: str | None = None,
    ) -> ClassMapping:
        """Map a source tier to the destination's class. Tiers the catalog marks as needing a
        restore map to nothing (rehydrate first); every readable tier goes to the
        destination's standard class (or none, the store's default, when that is unknown):
        durability is never lowered silently."""
        dest = self.provider(destination_provider)
        sources = (
            [self.provider(source_provider)]
            if source_provider
            else [self.providers[n] for n in self.names()]
        )
        tier = next(
            (t for p in sources for t in p.tiers if t.name.lower() == source_tier.lower()),
            None,
        )
        if tier is not None and tier.restore_required:
            return ClassMapping(
                source_tier=source_tier,
                destination_class=None,
                needs_rehydration=True,
                reason=f"tier {tier.name} must be rehydrated before it can be read",
                source=tier.source,
                as_of=tier.as_of,
                restore_hours=tier.restore_hours,
                restore_cost_per_gb=tier.restore_cost_per_gb,
            )
        cls = dest.standard_class
        why = (
            f"readable tier {source_tier} -> {dest.name} standard class"
            if tier is not None
            else f"tier {source_tier} is not listed as needing a restore"
        )
        if cls.value is None:
            why += "; the destination's class name is unknown: no class sent (store default)"
        return ClassMapping(
            source_tier=source_tier,
            destination_class=cls.value,
            needs_rehydration=False,
            reason=why,
            source=cls.source,
            as_of=cls.as_of,
        )


# -- endpoint helpers ------------------------------------------------------------------------


def _host(endpoint: str) -> str:
    parts = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}")
    return (parts.hostname or "").lower().rstrip(".")  # as the routing guard reads it


def _fill(pattern: str, site: Site, region: str) -> str | None:
    text = pattern.replace("{region}", region)
    if "{account}" in text:
        if not site.account:
            return None
        text = text.replace("{account}", site.account)
    return text


def _expected_hosts(provider: Provider, region: Region, site: Site) -> list[str]:
    patterns = [region.endpoint.value or ""]
    patterns += list(region.other_endpoints.value or ())
    patterns += list(provider.other_endpoint_patterns.value or ())
    out = []
    for pattern in patterns:
        text = pattern.replace("{region}", region.code)
        text = text.replace("{account}", site.account or "*")
        out.append(text.lower())
    return out


def _patterns(provider: Provider) -> list[str]:
    """The provider's endpoint patterns, each holding {region}."""
    texts = [provider.endpoint_pattern.value, *(provider.other_endpoint_patterns.value or ())]
    return [t.lower() for t in texts if t and "{region}" in t]


def _region_in_patterns(provider: Provider, host: str) -> str | None:
    """The region a host names in the shape of one of the provider's endpoint patterns (a
    bucket's name in front, as virtual-host addressing puts it), None if in none."""
    for pattern in _patterns(provider):
        shape = re.escape(pattern).replace(r"\{region\}", "([a-z0-9-]+)")
        shape = shape.replace(r"\{account\}", "[a-z0-9-]+")
        match = re.fullmatch(rf"(?:.+\.)?{shape}", host)
        if match:
            return match.group(1)
    return None


def _in_shapes(provider: Provider, host: str) -> bool:
    """The host is in the shape of one of the provider's storage endpoints, any region or
    account in place of theirs (`s3.dualstack.us-west-2.amazonaws.com` is Amazon S3's; an
    EC2 or load balancer name under amazonaws.com is not)."""
    texts = [provider.endpoint_pattern.value, *(provider.other_endpoint_patterns.value or ())]
    for region in provider.regions:
        texts += [region.endpoint.value, *(region.other_endpoints.value or ())]
    for text in texts:
        if not text:
            continue
        shape = re.sub(r"\{(region|account)\}", "*", text.lower())
        labels = shape.split(".")
        if len(labels) < 2 or not labels[-1].isalpha():  # an address, not a host name
            continue
        if _host_matches(host, shape):
            return True
    return False


def _host_matches(host: str, pattern: str) -> bool:
    # A bucket in front of the service host (virtual-host form) is the same service.
    return fnmatch.fnmatchcase(host, pattern) or fnmatch.fnmatchcase(host, f"*.{pattern}")


def _global_match(provider: Provider, host: str) -> GlobalEndpoint | None:
    for entry in provider.global_endpoints:
        if fnmatch.fnmatchcase(host, entry.host.lower()):
            return entry
    return None


# -- loading ---------------------------------------------------------------------------------

_FACT_KEYS = {"value", "source", "as_of", "stated", "note"}


def _unwrap(ann: Any) -> Any:
    origin = get_origin(ann)
    if origin is Annotated:
        return _unwrap(get_args(ann)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return ann


def _kind(ann: Any) -> tuple[str, Any]:
    """How the loader treats a field: fact, record, model, list (of models), factmap, plain."""
    ann = _unwrap(ann)
    if isinstance(ann, type) and issubclass(ann, Fact):
        return "fact", ann
    if isinstance(ann, type) and issubclass(ann, _Model):
        return ("record" if ann.is_record else "model"), ann
    origin = get_origin(ann)
    if origin is tuple:
        inner = _unwrap(get_args(ann)[0])
        if isinstance(inner, type) and issubclass(inner, _Model):
            return "list", inner
    if origin is dict:
        inner = _unwrap(get_args(ann)[1])
        if isinstance(inner, type) and issubclass(inner, Fact):
            return "factmap", inner
    return "plain", None


def _fact(raw: Any, defaults: Mapping[str, Any], origin: str) -> Any:
    if isinstance(raw, str) and raw.strip().lower() == "unknown":
        return {"origin": origin}
    if isinstance(raw, dict) and ("value" in raw or (raw and set(raw) <= _FACT_KEYS)):
        out = dict(raw)
        value = out.get("value")
        if value is None or (isinstance(value, str) and value.strip().lower() == "unknown"):
            out["value"] = None
        else:
            for key, default in defaults.items():
                out.setdefault(key, default)
        out["origin"] = origin
        return out
    return {"value": raw, **defaults, "origin": origin}


def _label(model: type[_Model], item: Any, index: int) -> str:
    key = model.merge_key
    if key and isinstance(item, dict) and key in item:
        return f"[{item[key]}]"
    return f"[{index}]"


def _prepare(model: type[_Model], raw: Any, origin: str, where: str) -> dict[str, Any]:
    """Expand shorthand facts, apply `source`/`as_of` defaults, stamp every fact and record
    with its origin file, and refuse unknown keys early (with the file's name)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: {where or 'top level'}: expected a mapping")
    out = dict(raw)
    defaults: dict[str, Any] = {}
    if "source" not in model.model_fields:
        for key in ("source", "as_of"):
            if key in out:
                defaults[key] = out.pop(key)
    for key, value in list(out.items()):
        field = model.model_fields.get(key)
        here = f"{where}.{key}" if where else key
        if field is None:
            known = ", ".join(sorted(model.model_fields))
            raise ConfigError(f"{origin}: {here}: unknown key", hint=f"expected one of: {known}")
        kind, sub = _kind(field.annotation)
        if kind == "fact":
            out[key] = _fact(value, defaults, origin)
        elif kind == "record":
            out[key] = {**value, "origin": origin} if isinstance(value, dict) else value
        elif kind == "model" and value is not None:
            out[key] = _prepare(sub, value, origin, here)
        elif kind == "list":
            if not isinstance(value, list):
                raise ConfigError(f"{origin}: {here}: expected a list")
            items = []
            for i, item in enumerate(value):
                if sub.is_record:
                    items.append({**item, "origin": origin} if isinstance(item, dict) else item)
                else:
                    items.append(_prepare(sub, item, origin, f"{here}{_label(sub, item, i)}"))
            out[key] = items
        elif kind == "factmap":
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {here}: expected a mapping")
            # A map of facts may carry its own source/as_of defaults, like any mapping.
            local = {**defaults, **{k: value[k] for k in ("source", "as_of") if k in value}}
            out[key] = {
                k: _fact(v, local, origin) for k, v in value.items() if k not in ("source", "as_of")
            }
    return out


def _merge(model: type[_Model], base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge a user's (prepared) mapping over the current one: lists by their key
    (region code, certification name...), facts and records replaced whole."""
    out = dict(base)
    for key, value in over.items():
        kind, sub = _kind(model.model_fields[key].annotation)
        current = base.get(key)
        if kind == "model" and isinstance(current, dict) and isinstance(value, dict):
            out[key] = _merge(sub, current, value)
        elif kind == "list" and sub.merge_key and isinstance(current, list):
            out[key] = _merge_list(sub, current, value)
        elif kind == "factmap" and isinstance(current, dict):
            out[key] = {**current, **value}
        else:
            out[key] = value
    return out


def _merge_list(model: type[_Model], base: list[Any], over: list[Any]) -> list[Any]:
    key = model.merge_key
    assert key is not None
    result = list(base)
    index = {
        item[key]: i for i, item in enumerate(result) if isinstance(item, dict) and key in item
    }
    for item in over:
        name = item.get(key) if isinstance(item, dict) else None
        if name is not None and name in index:
            i = index[name]
            result[i] = item if model.is_record else _merge(model, result[i], item)
        else:
            if name is not None:
                index[name] = len(result)
            result.append(item)
    return result


def _where(raw: Any, loc: Sequence[int | str]) -> str:
    """A pydantic error location with list indices replaced by item keys (regions[gra])."""
    parts: list[str] = []
    node = raw
    for step in loc:
        if isinstance(step, int) and isinstance(node, list) and step < len(node):
            item = node[step]
            key = next(
                (k for k in ("code", "name", "host") if isinstance(item, dict) and k in item), None
            )
            parts.append(f"[{item[key]}]" if key else f"[{step}]")
            node = item
        else:
            parts.append(f".{step}" if parts else str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return "".join(parts)


# The keys whose values are hosts or URLs a request is sent to: shown in plans, reports and
# `sites check`, so never a place for a secret.
_URL_KEYS = frozenset(
    {"endpoint", "other_endpoints", "endpoint_pattern", "other_endpoint_patterns", "host"}
)


def _refuse_secret_urls(node: Any, origin: str, where: str) -> None:
    """SecretInConfig for a user name or password (`user:pw@host`) or a SAS (`?...sig=`) in
    a catalog file's endpoint (a sites file's are refused so; a catalog's were written to
    the plan and the report, a review found), ConfigError for any other query or fragment:
    an endpoint has none. The value is never repeated."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}: {key}"
            if (
                isinstance(value, dict)
                and key in _URL_KEYS
                and isinstance(value.get("source"), str)
            ):
                _refuse_secret_source(value["source"], origin, f"{here}: source")
            if key in _URL_KEYS:
                _refuse_secret_url(value, origin, here)
            elif key == "source" and isinstance(value, str):
                _refuse_secret_source(value, origin, here)
            else:
                _refuse_secret_urls(value, origin, here)
    elif isinstance(node, list):
        for value in node:
            name = value.get("code") or value.get("name") if isinstance(value, dict) else None
            _refuse_secret_urls(
                value, origin, f"{where}[{name}]" if isinstance(name, str) else where
            )


_USERINFO = re.compile(r"://[^/?#\s]*@")
# A presigned or SAS-signed URL's query: Azure's sig=, AWS's SigV4 and V2, GCS's.
_SIGNED = re.compile(
    r"[?&](?:sig|signature|x-amz-signature|x-amz-credential|x-goog-signature|"
    r"x-goog-credential|awsaccesskeyid)=",
    re.IGNORECASE,
)


def _refuse_secret_source(text: str, origin: str, where: str) -> None:
    """A fact's source is copied into plans and reports: a URL signed with a SAS, or with
    `user:password@`, is refused as an endpoint's is (`?` and `#` are a document's)."""
    if _USERINFO.search(text) or _SIGNED.search(text):
        raise SecretInConfig(
            f"{origin}: {where} holds a signed URL or a password (`sig=`, `user:pw@`)",
            hint="cite the page's public address (plans and reports copy it)",
        )


def _refuse_secret_url(value: Any, origin: str, where: str) -> None:
    """The checks of `_refuse_secret_urls` on one endpoint: a fact given whole is judged by
    its value alone (its source and note are text, where `?`, `#` and `@` are at home)."""
    if isinstance(value, dict):
        value = value.get("value")
    for text in value if isinstance(value, list) else [value]:
        if not isinstance(text, str):
            continue
        if "@" in text:
            raise SecretInConfig(
                f"{origin}: {where} holds a user name or password in its URL (an `@`)",
                hint="write the endpoint as host[:port], without `user:password@`; a "
                "store's keys go in the sites file's `credentials` as *_env references",
            )
        if "sig=" in text.lower():
            raise SecretInConfig(
                f"{origin}: {where} holds a SAS token in its URL (`sig=`)",
                hint="write the endpoint without its query; give the SAS in the variable "
                "the site's `credentials.sas_token_env` names",
            )
        if "?" in text or "#" in text:
            raise ConfigError(
                f"{origin}: {where} has a query or a fragment (`?...`, `#...`), which an "
                "endpoint has not",
                hint="write it as host[:port], e.g. s3.fr-par.scw.cloud",
            )


def _validate(raw: dict[str, Any], origin: str, name: str) -> Provider:
    try:
        return Provider.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = exc.error_count() - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise ConfigError(
            f"{origin}: provider {name}: {_where(raw, err['loc'])}: {err['msg']}{extra}"
        ) from None


def _read_yaml(path: Path, origin: str) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except FileNotFoundError:
        raise ConfigError(f"catalog file {origin} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read catalog file {origin}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None


def _provider_entries(data: Any, origin: str) -> list[dict[str, Any]]:
    """A catalog file holds one provider mapping, or `providers:` with a list of them."""
    if isinstance(data, dict) and set(data) == {"providers"}:
        data = data["providers"]
    entries = data if isinstance(data, list) else [data]
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{origin}: provider #{i + 1}: expected a mapping")
        if not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ConfigError(f"{origin}: provider #{i + 1}: name: required key is missing")
    return entries


@functools.cache
def _builtin_raw() -> dict[str, dict[str, Any]]:
    raws: dict[str, dict[str, Any]] = {}
    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        origin = BUILTIN_PREFIX + path.name
        for entry in _provider_entries(_read_yaml(path, origin), origin):
            name = entry["name"]
            if name in raws:
                raise ConfigError(f"{origin}: provider {name} is defined twice in the catalog")
            raw = _prepare(Provider, entry, origin, "")
            _validate(raw, origin, name)
            raws[name] = raw
    return raws


def load_catalog(extra_files: Sequence[Path] = ()) -> Catalog:
    """The built-in catalog with the user's files merged over it, in order. A user file may
    add a provider or override any fact (providers by name, regions by code, certifications
    by name); each overriding fact remembers its file. Raises ConfigError naming the file
    and key of the first problem."""
    raws = copy.deepcopy(_builtin_raw())
    user_files: list[str] = []
    for path in extra_files:
        origin = str(path)
        user_files.append(origin)
        for entry in _provider_entries(_read_yaml(Path(path), origin), origin):
            name = entry["name"]
            _refuse_secret_urls(entry, origin, f"provider {name}")
            over = _prepare(Provider, entry, origin, "")
            merged = _merge(Provider, raws[name], over) if name in raws else over
            _validate(merged, origin, name)  # the file that made it invalid is named
            raws[name] = merged
    providers = {name: Provider.model_validate(raw) for name, raw in sorted(raws.items())}
    return Catalog(providers=providers, user_files=tuple(user_files))


@functools.cache
def builtin_catalog() -> Catalog:
    """The catalog shipped with migrate, loaded once."""
    return load_catalog()


_active: list[Catalog] = []


def set_active_catalog(catalog: Catalog | None) -> None:
    """Make a loaded catalog (with the user's files) the one api_for_provider() consults,
    so providers added in a user file get an adapter. None restores the built-in one."""
    _active.clear()
    if catalog is not None:
        _active.append(catalog)


def active_catalog() -> Catalog:
    return _active[0] if _active else builtin_catalog()


def api_for_provider(name: str) -> str:
    """The API a provider speaks: s3, azure, gcs or local. Unknown name: ConfigError listing
    the known ones."""
    return active_catalog().provider(name).api


def endpoint_findings(site: Site, catalog: Catalog | None = None) -> list[str]:
    """Catalog.endpoint_findings on the given (default: active) catalog."""
    return (catalog or active_catalog()).endpoint_findings(site)


def iter_facts(model: BaseModel, path: str = "") -> Iterable[tuple[str, Fact[Any]]]:
    """Every Fact inside a model, with its dotted path (for tests and `providers show`)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        here = f"{path}.{name}" if path else name
        if isinstance(value, Fact):
            yield here, value
        elif isinstance(value, BaseModel):
            yield from iter_facts(value, here)
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, BaseModel):
                    key = next(
                        (getattr(item, k) for k in ("code", "name", "host") if hasattr(item, k)),
                        "?",
                    )
                    yield from iter_facts(item, f"{here}[{key}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, Fact):
                    yield f"{here}.{key}", item
