"""Sovereignty policies: named rule sets over catalog facts and site declarations.

A verdict is PASS, FAIL or UNKNOWN and always carries its reasons: for each rule, the fact
it read, that fact's value, source, date and the catalog file it came from. Guarantees:
- Facts are never guessed: a missing fact gives UNKNOWN, which blocks under every policy
  but `eu-residency`; FAIL always blocks.
- A fact dated more than 12 months before `today` adds a "re-check" warning.
- No clock is read here: `today` is passed in, so a verdict is reproducible.
- Self-hosted and local sites (providers marked `declared_by_site`) are judged on what the
  sites file declares for them (country, operator, certifications); migrate trusts those
  declarations and says so in the reasons.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from migrate.errors import ConfigError
from migrate.sites import Site
from providers.countries import country_name, in_eu_eea, is_country

# The catalog's types only: its facts come with each call, so naming the policies (the
# CLI's --help) does not load the catalog.
if TYPE_CHECKING:
    from providers.catalog import Catalog, Certification, Fact, Provider, Region

__all__ = [
    "POLICIES",
    "Policy",
    "Reason",
    "Status",
    "Verdict",
    "VerdictWarning",
    "evaluate",
    "evaluate_all",
    "evaluate_provider",
    "evaluate_runner",
    "get_policy",
    "verdicts_to_json",
]

Status = Literal["PASS", "FAIL", "UNKNOWN"]
STALE_MONTHS = 12


class Reason(BaseModel):
    """One rule's outcome on one fact."""

    model_config = ConfigDict(frozen=True)

    rule: str
    outcome: Status
    fact: str  # what was read, e.g. "azure.extraterritorial"
    value: str | None  # None: the fact is unknown
    source: str | None
    as_of: date | None
    origin_file: str | None  # catalog file (or sites file) the fact came from
    overridden: bool = False  # True when origin_file is one of the user's catalog files
    text: str


class VerdictWarning(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["stale", "condition", "declared"]
    fact: str
    message: str
    source: str | None = None
    as_of: date | None = None


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str
    policy: str
    status: Status
    blocking: bool
    provider: str | None = None
    region: str | None = None
    site: str | None = None
    reasons: tuple[Reason, ...] = ()
    warnings: tuple[VerdictWarning, ...] = ()
    regions: dict[str, Status] = {}  # provider-wide verdicts: each region's status

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self, indent: int | None = 2) -> str:
        """Stable JSON: keys sorted, reasons in the policy's rule order, warnings sorted."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, ensure_ascii=False)


def verdicts_to_json(verdicts: Sequence[Verdict], indent: int | None = 2) -> str:
    """A list of verdicts as stable JSON (for `migrate providers --policy P --json`)."""
    return json.dumps(
        [v.to_dict() for v in verdicts], sort_keys=True, indent=indent, ensure_ascii=False
    )


# -- policies as data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """`kind` names a check below; `arg` parametrises it (a country scope, a cert name)."""

    id: str
    kind: Literal[
        "region-country", "operator-country", "parent-country", "no-non-eu-law", "certified"
    ]
    arg: str
    description: str
    region_dependent: bool = False


@dataclass(frozen=True)
class Policy:
    name: str
    summary: str
    rules: tuple[Rule, ...]
    unknown_blocks: bool = True
    runner_scope: str = "EU/EEA"  # where the machine running migrate may sit


_REGION_EU = Rule(
    "region-in-eu-eea", "region-country", "EU/EEA", "the region is in the EU/EEA", True
)
_OPERATOR_EU = Rule(
    "operator-in-eu-eea", "operator-country", "EU/EEA", "the operator is based in the EU/EEA"
)
_PARENT_EU = Rule(
    "parent-in-eu-eea",
    "parent-country",
    "EU/EEA",
    "the operator's ultimate parent is based in the EU/EEA",
)
_NO_LAW = Rule(
    "no-non-eu-law",
    "no-non-eu-law",
    "EU/EEA",
    "neither the operator nor its parent is subject to non-EU extraterritorial law",
)
_REGION_FR = Rule("region-in-france", "region-country", "FR", "the region is in France", True)
_HDS = Rule(
    "hds-certified",
    "certified",
    "HDS",
    "the object-storage service is HDS-certified in this region",
    True,
)
_SNC = Rule(
    "secnumcloud-qualified",
    "certified",
    "SecNumCloud",
    "the object-storage offer is SecNumCloud-qualified in this region",
    True,
)

_SOVEREIGN = (_REGION_EU, _OPERATOR_EU, _PARENT_EU, _NO_LAW)

POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(
            "eu-residency",
            "every region in the EU/EEA (UNKNOWN does not block)",
            (_REGION_EU,),
            unknown_blocks=False,
        ),
        Policy(
            "eu-sovereign",
            "eu-residency, and operator and parent not subject to non-EU extraterritorial law",
            _SOVEREIGN,
        ),
        Policy(
            "fr-health",
            "eu-sovereign, region in France, and HDS-certified for the service used",
            (*_SOVEREIGN, _REGION_FR, _HDS),
        ),
        Policy(
            "secnumcloud",
            "eu-sovereign, and a SecNumCloud-qualified offer",
            (*_SOVEREIGN, _SNC),
        ),
    )
}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown policy {name!r} (--policy, or `policy` in the sites file)",
            hint=f"policies: {', '.join(sorted(POLICIES))}",
        ) from None


# -- what the rules look at ------------------------------------------------------------------


@dataclass(frozen=True)
class _Declared:
    """What a sites file declares for a self-hosted/local site."""

    site: str
    country: str | None
    operator: str | None
    certifications: tuple[str, ...]
    parent_country: str | None = None
    non_eu_law: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Subject:
    catalog: Catalog
    provider: Provider
    region_code: str | None
    region: Region | None
    declared: _Declared | None = None

    def is_override(self, origin: str | None) -> bool:
        return self.catalog.is_override(origin)


def _country_in(code: str, scope: str) -> bool:
    return in_eu_eea(code) if scope == "EU/EEA" else code.upper() == scope.upper()


def _where_country(code: str) -> str:
    return f"{country_name(code)} ({code.upper()})"


def _reason(
    subject: _Subject,
    rule: Rule,
    outcome: Status,
    fact_name: str,
    fact: Fact[Any] | None,
    value: str | None,
    text: str,
    *,
    source: str | None = None,
    as_of: date | None = None,
) -> Reason:
    origin = fact.origin if fact is not None else None
    overridden = subject.is_override(origin)
    if overridden:
        text = f"{text} (from {origin})"
    return Reason(
        rule=rule.id,
        outcome=outcome,
        fact=fact_name,
        value=value,
        source=source if source is not None else (fact.source if fact else None),
        as_of=as_of if as_of is not None else (fact.as_of if fact else None),
        origin_file=origin,
        overridden=overridden,
        text=text,
    )


def _declared_reason(
    rule: Rule, outcome: Status, decl: _Declared, key: str, value: str | None, text: str
) -> Reason:
    return Reason(
        rule=rule.id,
        outcome=outcome,
        fact=f"sites.{decl.site}.{key}",
        value=value,
        source=f"declared in the sites file ([sites.{decl.site}] {key})",
        as_of=None,
        origin_file=None,
        text=text,
    )


def _unknown_note(fact: Fact[Any]) -> str:
    return f": {fact.note}" if fact.note else ""


def _placed(ok: bool, scope: str) -> str:
    """', in the EU/EEA' / ', outside the EU/EEA' / '' / ', not in France'."""
    if scope == "EU/EEA":
        return f", {'in' if ok else 'outside'} the EU/EEA"
    return "" if ok else f", not in {country_name(scope)}"


def _rule_region_country(subject: _Subject, rule: Rule) -> list[Reason]:
    scope = rule.arg
    decl = subject.declared
    if decl is not None:
        if decl.country is None:
            return [
                _declared_reason(
                    rule, "UNKNOWN", decl, "country", None,
                    f"site {decl.site} declares no country: where the data is cannot be known",
                )
            ]  # fmt: skip
        code = decl.country.strip().upper()
        if not is_country(code):
            return [
                _declared_reason(
                    rule, "UNKNOWN", decl, "country", decl.country,
                    f"site {decl.site} declares country {decl.country!r}, not an ISO 3166 "
                    "two-letter code (e.g. FR)",
                )
            ]  # fmt: skip
        ok = _country_in(code, scope)
        return [
            _declared_reason(
                rule, "PASS" if ok else "FAIL", decl, "country", code,
                f"declared country: {_where_country(code)}{_placed(ok, scope)}",
            )
        ]  # fmt: skip
    name = subject.provider.name
    # What to do, said with it: the catalog lists a region only with its sourced endpoint,
    # so a provider whose endpoints are unknown has none (a user's catalog file adds it).
    add = "with its country and their source, in your own catalog file"
    if subject.region_code is None:
        text = f"no region given for {name}: where the data is cannot be known"
        if not subject.provider.regions:
            text = (
                f"no region given for {name}, and the catalog lists none for it: where the "
                f"data is cannot be known (add the region the site uses, {add}, and declare "
                "it as the site's `region`)"
            )
        return [_reason(subject, rule, "UNKNOWN", f"{name}.region", None, None, text)]
    if subject.region is None:
        return [
            _reason(subject, rule, "UNKNOWN", f"{name}.regions[{subject.region_code}]", None,
                    None, f"region {subject.region_code} is not in the catalog for {name}: "
                    f"where the data is cannot be known (add it, {add})")
        ]  # fmt: skip
    fact = subject.region.country
    fact_name = f"{name}.regions[{subject.region.code}].country"
    if fact.value is None:
        return [
            _reason(subject, rule, "UNKNOWN", fact_name, fact, None,
                    f"the country of region {subject.region.code} is unknown"
                    f"{_unknown_note(fact)}")
        ]  # fmt: skip
    ok = _country_in(fact.value, scope)
    return [
        _reason(subject, rule, "PASS" if ok else "FAIL", fact_name, fact, fact.value,
                f"region {subject.region.code} is in {_where_country(fact.value)}"
                f"{_placed(ok, scope)}")
    ]  # fmt: skip


def _declared_country(
    rule: Rule, decl: _Declared, key: str, value: str | None, missing: str, role: str
) -> Reason | str:
    """The ISO code a site declares under `key`, or the UNKNOWN reason why there is none:
    no operator (its `role` cannot be judged), `missing` where it declares none, the
    code's own where it is not one."""
    if decl.operator is None:
        return _declared_reason(
            rule, "UNKNOWN", decl, "operator", None,
            f"site {decl.site} declares no operator: its {role} cannot be judged",
        )  # fmt: skip
    if value is None:
        return _declared_reason(rule, "UNKNOWN", decl, key, None, f"site {decl.site} {missing}")
    code = value.strip().upper()
    if not is_country(code):
        return _declared_reason(
            rule, "UNKNOWN", decl, key, value,
            f"site {decl.site} declares {key} {value!r}, not an ISO 3166 code",
        )  # fmt: skip
    return code


def _declared_operator(subject: _Subject, rule: Rule, decl: _Declared, role: str) -> Reason:
    code = _declared_country(
        rule, decl, "country", decl.country,
        f"declares operator {decl.operator} but no country", role,
    )  # fmt: skip
    if isinstance(code, Reason):
        return code
    ok = _country_in(code, rule.arg)
    return _declared_reason(
        rule, "PASS" if ok else "FAIL", decl, "operator", f"{decl.operator} ({code})",
        f"declared operator {decl.operator} in {_where_country(code)}"
        f"{_placed(ok, rule.arg)} ({role}: as declared)",
    )  # fmt: skip


def _rule_operator_country(subject: _Subject, rule: Rule) -> list[Reason]:
    if subject.declared is not None:
        return [_declared_operator(subject, rule, subject.declared, "operator")]
    provider = subject.provider
    fact = provider.hq_country
    entity = provider.legal_entity.value or provider.display_name
    fact_name = f"{provider.name}.hq_country"
    if fact.value is None:
        return [
            _reason(subject, rule, "UNKNOWN", fact_name, fact, None,
                    f"the headquarters country of {entity} is unknown{_unknown_note(fact)}")
        ]  # fmt: skip
    ok = _country_in(fact.value, rule.arg)
    return [
        _reason(subject, rule, "PASS" if ok else "FAIL", fact_name, fact, fact.value,
                f"operator {entity} is headquartered in {_where_country(fact.value)}"
                f"{_placed(ok, rule.arg)}")
    ]  # fmt: skip


def _declared_parent(rule: Rule, decl: _Declared) -> Reason:
    code = _declared_country(
        rule, decl, "parent_country", decl.parent_country,
        f"declares no parent_country: who ultimately controls {decl.operator} is not known "
        "(declare its parent's country, or the operator's own if it has no parent)", "parent",
    )  # fmt: skip
    if isinstance(code, Reason):
        return code
    ok = _country_in(code, rule.arg)
    return _declared_reason(
        rule, "PASS" if ok else "FAIL", decl, "parent_country", code,
        f"the ultimate parent of {decl.operator} is, as declared, in {_where_country(code)}"
        f"{_placed(ok, rule.arg)}",
    )  # fmt: skip


def _declared_law(rule: Rule, decl: _Declared) -> list[Reason]:
    if decl.operator is None:
        return [_declared_reason(
            rule, "UNKNOWN", decl, "operator", None,
            f"site {decl.site} declares no operator: its exposure to non-EU law cannot be "
            "judged",
        )]  # fmt: skip
    if decl.non_eu_law is None:
        return [_declared_reason(
            rule, "UNKNOWN", decl, "non_eu_law", None,
            f"site {decl.site} declares no non_eu_law: whether a law from outside the EU "
            f"(the US CLOUD Act, say) reaches {decl.operator} or its parent is not known "
            "(declare non_eu_law = [] if none does)",
        )]  # fmt: skip
    if not decl.non_eu_law:
        return [_declared_reason(
            rule, "PASS", decl, "non_eu_law", "none",
            f"no non-EU extraterritorial law reaches {decl.operator} or its parent, as "
            "declared",
        )]  # fmt: skip
    said = f"reaches {decl.operator} or its parent, as declared"
    return [
        _declared_reason(rule, "FAIL", decl, "non_eu_law", law, f"{law} {said}")
        for law in decl.non_eu_law
    ]


def _rule_parent_country(subject: _Subject, rule: Rule) -> list[Reason]:
    if subject.declared is not None:
        return [_declared_parent(rule, subject.declared)]
    provider = subject.provider
    fact = provider.ultimate_parent
    fact_name = f"{provider.name}.ultimate_parent"
    if fact.value is None:
        return [
            _reason(subject, rule, "UNKNOWN", fact_name, fact, None,
                    f"the ultimate parent of {provider.display_name} is unknown"
                    f"{_unknown_note(fact)}")
        ]  # fmt: skip
    parent = fact.value
    ok = _country_in(parent.country, rule.arg)
    return [
        _reason(subject, rule, "PASS" if ok else "FAIL", fact_name, fact,
                f"{parent.name} ({parent.country})",
                f"ultimate parent {parent.name} is in {_where_country(parent.country)}"
                f"{_placed(ok, rule.arg)}")
    ]  # fmt: skip


def _rule_no_law(subject: _Subject, rule: Rule) -> list[Reason]:
    decl = subject.declared
    if decl is not None:
        return _declared_law(rule, decl)
    provider = subject.provider
    fact = provider.extraterritorial
    fact_name = f"{provider.name}.extraterritorial"
    if fact.value is None:
        return [
            _reason(subject, rule, "UNKNOWN", fact_name, fact, None,
                    f"exposure of {provider.display_name} to non-EU extraterritorial law is "
                    f"unknown{_unknown_note(fact)}")
        ]  # fmt: skip
    if not fact.value:
        note = f"; {fact.note}" if fact.note else ""
        return [
            _reason(subject, rule, "PASS", fact_name, fact, "none",
                    f"no non-EU extraterritorial law is known to reach "
                    f"{provider.display_name} or its parent{note}")
        ]  # fmt: skip
    reasons = []
    for exposure in fact.value:
        reasons.append(
            _reason(
                subject, rule, "FAIL", fact_name, fact, exposure.law,
                f"{exposure.entity} ({country_name(exposure.country)}): {exposure.law} — "
                f"{exposure.why}",
                source=exposure.source, as_of=exposure.as_of,
            )
        )  # fmt: skip
    return reasons


def _cert_reason(subject: _Subject, rule: Rule, cert: Certification, region: str | None) -> Reason:
    """Status, then region scope, then service coverage: each may be unknown (a region
    outside the scope fails whatever the service coverage: it is the reason given). No
    region given: the scope is unknown, but a status or a service coverage that settles the
    rule is still said (a qualification in progress fails wherever the data is)."""
    name = subject.provider.name
    fact_name = f"{name}.certifications[{cert.name}]"
    covers = cert.covers_region(region)
    outcome: Status
    if cert.status in ("no", "in-progress"):
        outcome, text = "FAIL", f"{cert.name}: {cert.status}"
    elif cert.status == "unknown":
        outcome, text = "UNKNOWN", f"{cert.name}: status unknown"
    elif covers is False:
        outcome = "FAIL"
        held = ", ".join(cert.regions or ()) or "no region"
        text = f"{cert.name} held in {held}, not in region {region}"
    elif cert.object_storage == "no":
        outcome, text = "FAIL", f"{cert.name} held, but not for the object-storage service"
    elif cert.object_storage == "unknown":
        outcome = "UNKNOWN"
        text = f"{cert.name} held, but whether it covers the object-storage service is unknown"
    elif covers is None and region is None:
        outcome = "UNKNOWN"
        text = (
            f"{cert.name} covers object storage; no region given, its region scope cannot "
            "be checked"
        )
    elif covers is None:
        outcome = "UNKNOWN"
        text = f"{cert.name} covers object storage, but its region scope is unknown"
    else:
        where = "every region" if "*" in (cert.regions or ()) else f"region {region}"
        outcome, text = "PASS", f"{cert.name} covers object storage in {where}"
    if cert.scope:
        text += f" [{cert.scope}]"
    if cert.note and outcome != "PASS":
        text += f"; {cert.note}"
    overridden = subject.is_override(cert.origin)
    if overridden:
        text += f" (from {cert.origin})"
    return Reason(
        rule=rule.id,
        outcome=outcome,
        fact=fact_name,
        value=cert.status,
        source=cert.source,
        as_of=cert.as_of,
        origin_file=cert.origin,
        overridden=overridden,
        text=text,
    )


def _rule_certified(subject: _Subject, rule: Rule) -> list[Reason]:
    cert_name = rule.arg
    decl = subject.declared
    if decl is not None:
        held = any(c.lower() == cert_name.lower() for c in decl.certifications)
        return [
            _declared_reason(
                rule, "PASS" if held else "FAIL", decl, "certifications",
                ", ".join(decl.certifications) or None,
                f"site {decl.site} {'declares' if held else 'does not declare'} {cert_name}",
            )
        ]  # fmt: skip
    provider = subject.provider
    cert = provider.certification(cert_name)
    if cert is None:
        return [
            _reason(subject, rule, "UNKNOWN", f"{provider.name}.certifications[{cert_name}]",
                    None, None, f"{cert_name}: not in the catalog for {provider.name}")
        ]  # fmt: skip
    return [_cert_reason(subject, rule, cert, subject.region_code)]


_CHECKS: dict[str, Callable[[_Subject, Rule], list[Reason]]] = {
    "region-country": _rule_region_country,
    "operator-country": _rule_operator_country,
    "parent-country": _rule_parent_country,
    "no-non-eu-law": _rule_no_law,
    "certified": _rule_certified,
}


# -- verdicts --------------------------------------------------------------------------------


def _year_before(today: date) -> date:
    try:
        return today.replace(year=today.year - STALE_MONTHS // 12)
    except ValueError:  # 29 February
        return today.replace(year=today.year - STALE_MONTHS // 12, day=28)


def _warnings(
    subject: _Subject | None, reasons: Sequence[Reason], today: date
) -> list[VerdictWarning]:
    limit = _year_before(today)
    out: dict[tuple[str, str], VerdictWarning] = {}
    for reason in reasons:
        if reason.as_of is not None and reason.as_of < limit:
            message = (
                f"{reason.fact} is as of {reason.as_of.isoformat()}, more than "
                f"{STALE_MONTHS} months before {today.isoformat()}: re-check it"
                + (f" at {reason.source}" if reason.source else "")
            )
            out[("stale", reason.fact + message)] = VerdictWarning(
                kind="stale",
                fact=reason.fact,
                message=message,
                source=reason.source,
                as_of=reason.as_of,
            )
    if subject is not None and subject.declared is None:
        for reason in reasons:
            if reason.outcome != "PASS" or not reason.fact.startswith(
                f"{subject.provider.name}.certifications["
            ):
                continue
            cert_name = reason.fact.split("[", 1)[1].rstrip("]")
            cert = subject.provider.certification(cert_name)
            if cert is not None and cert.conditions:
                message = f"{cert.name} applies only under conditions: {cert.conditions}"
                out[("condition", message)] = VerdictWarning(
                    kind="condition",
                    fact=reason.fact,
                    message=message,
                    source=cert.source,
                    as_of=cert.as_of,
                )
    if subject is not None and subject.declared is not None:
        message = (
            f"site {subject.declared.site}: operator, country and certifications are the "
            "sites file's declarations; migrate cannot check them"
        )
        out[("declared", message)] = VerdictWarning(
            kind="declared", fact=f"sites.{subject.declared.site}", message=message
        )
    return [out[k] for k in sorted(out)]


def _combine(outcomes: Sequence[Status]) -> Status:
    if "FAIL" in outcomes:
        return "FAIL"
    if "UNKNOWN" in outcomes or not outcomes:
        return "UNKNOWN"
    return "PASS"


def _blocking(status: Status, policy: Policy) -> bool:
    return status == "FAIL" or (status == "UNKNOWN" and policy.unknown_blocks)


def _verdict(
    subject: _Subject,
    policy: Policy,
    today: date,
    *,
    label: str,
    site: str | None = None,
) -> Verdict:
    reasons: list[Reason] = []
    for rule in policy.rules:
        reasons.extend(_CHECKS[rule.kind](subject, rule))
    status = _combine([r.outcome for r in reasons])
    return Verdict(
        subject=label,
        policy=policy.name,
        status=status,
        blocking=_blocking(status, policy),
        provider=subject.provider.name,
        region=subject.region_code,
        site=site,
        reasons=tuple(reasons),
        warnings=tuple(_warnings(subject, reasons, today)),
    )


def evaluate(site: Site, policy: str, catalog: Catalog, today: date) -> Verdict:
    """The verdict of one configured site under a policy."""
    pol = get_policy(policy)
    provider = catalog.provider_of(site)
    declared = None
    region = None
    if provider.declared_by_site:
        declared = _Declared(
            site=site.name,
            country=site.country,
            operator=site.operator,
            certifications=tuple(site.certifications),
            parent_country=site.parent_country,
            non_eu_law=site.non_eu_law,
        )
    elif site.region:
        region = provider.region(site.region)
    subject = _Subject(catalog, provider, site.region, region, declared)
    where = f" {site.region}" if site.region and not declared else ""
    verdict = _verdict(
        subject, pol, today, label=f"site {site.name} ({provider.name}{where})", site=site.name
    )
    elsewhere = catalog.endpoint_elsewhere(site)
    if elsewhere is None:
        return verdict
    # The rules judged the declared region and operator; the requests go to the endpoint,
    # which the catalog places elsewhere (the site fails whatever they said), or in a
    # region it does not list (where the data goes: unknown).
    reason = Reason(
        rule="endpoint-as-declared",
        outcome="FAIL" if elsewhere.known else "UNKNOWN",
        fact=f"sites.{site.name}.endpoint",
        value=site.endpoint,
        source=f"declared in the sites file ([sites.{site.name}] endpoint)",
        as_of=None,
        origin_file=None,
        text=elsewhere.text,
    )
    status = _combine([verdict.status, reason.outcome])
    return verdict.model_copy(
        update={
            "status": status,
            # Blocking under every policy, eu-residency too: its requests would go where
            # the catalog cannot say, a US region as well as the declared one (a review).
            "blocking": True,
            "reasons": (*verdict.reasons, reason),
        }
    )


def evaluate_provider(
    provider: str, region: str | None, policy: str, catalog: Catalog, today: date
) -> Verdict:
    """One region's verdict, or (region None) the provider-wide one: PASS when at least one
    region passes (`regions` lists every region's status, reasons are those of the first
    passing region, else of the first undecided one, else of the first region)."""
    pol = get_policy(policy)
    prov = catalog.provider(provider)
    if region is not None:
        subject = _Subject(catalog, prov, region, prov.region(region))
        return _verdict(subject, pol, today, label=f"{prov.name} {region}")
    if prov.declared_by_site:
        rule = pol.rules[0]
        reason = Reason(
            rule=rule.id,
            outcome="UNKNOWN",
            fact=f"{prov.name}.declared_by_site",
            value=None,
            source=None,
            as_of=None,
            origin_file=None,
            text=f"{prov.display_name}: operator, country and certifications are declared by "
            "each site; see `migrate sites check`",
        )
        return Verdict(
            subject=prov.name,
            policy=pol.name,
            status="UNKNOWN",
            blocking=pol.unknown_blocks,
            provider=prov.name,
            reasons=(reason,),
        )
    if not prov.regions:
        subject = _Subject(catalog, prov, None, None)
        return _verdict(subject, pol, today, label=prov.name)
    per_region = [
        _verdict(_Subject(catalog, prov, r.code, r), pol, today, label=f"{prov.name} {r.code}")
        for r in prov.regions
    ]
    statuses = [v.status for v in per_region]
    best: Status = (
        "PASS" if "PASS" in statuses else ("UNKNOWN" if "UNKNOWN" in statuses else "FAIL")
    )
    shown = next(v for v in per_region if v.status == best)
    return Verdict(
        subject=prov.name,
        policy=pol.name,
        status=best,
        blocking=_blocking(best, pol),
        provider=prov.name,
        region=shown.region,
        reasons=shown.reasons,
        warnings=shown.warnings,
        regions={v.region or "": v.status for v in per_region},
    )


def evaluate_all(
    policy: str, catalog: Catalog, today: date, *, per_region: bool = False
) -> list[Verdict]:
    """Every provider's verdict (and each region's, with per_region), sorted by name."""
    out: list[Verdict] = []
    for name in catalog.names():
        out.append(evaluate_provider(name, None, policy, catalog, today))
        if per_region:
            for region in catalog.provider(name).regions:
                out.append(evaluate_provider(name, region.code, policy, catalog, today))
    return out


def evaluate_runner(location_country: str | None, policy: str) -> Verdict:
    """Bytes stream through the machine running migrate: it must sit where the policy
    allows (the EU/EEA under every policy). Unknown location: UNKNOWN."""
    pol = get_policy(policy)
    rule_id = "runner-in-eu-eea" if pol.runner_scope == "EU/EEA" else "runner-location"
    base: dict[str, Any] = {
        "rule": rule_id,
        "fact": "runner.location",
        "source": "declared in the sites file (runner.location)",
        "as_of": None,
        "origin_file": None,
    }
    outcome: Status
    if not location_country:
        outcome = "UNKNOWN"
        reason = Reason(
            **base,
            outcome=outcome,
            value=None,
            text="the sites file does not declare where migrate runs (runner.location)",
        )
    else:
        code = location_country.strip().upper()
        ok = is_country(code) and _country_in(code, pol.runner_scope)
        outcome = "PASS" if ok else "FAIL"
        reason = Reason(
            **base,
            outcome=outcome,
            value=code,
            text=f"migrate runs in {_where_country(code)}{_placed(ok, pol.runner_scope)}; "
            "the data passes through it",
        )
    return Verdict(
        subject="runner",
        policy=pol.name,
        status=outcome,
        blocking=_blocking(outcome, pol),
        reasons=(reason,),
    )
