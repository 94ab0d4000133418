"""Sovereignty verdicts: the outcomes the issue requires, their reasons and sources,
overrides named in the verdict, stale facts warned about. `today` is always injected."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from migrate.errors import ConfigError
from migrate.policy import (
    POLICIES,
    evaluate,
    evaluate_all,
    evaluate_provider,
    evaluate_runner,
    verdicts_to_json,
)
from migrate.sites import Site
from providers.catalog import Catalog, load_catalog

TODAY = date(2026, 11, 30)


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


def azure_site() -> Site:
    return Site(name="azure-hdh", provider="azure", region="francecentral", account="hdhprod")


def test_azure_francecentral_passes_residency(cat: Catalog) -> None:
    verdict = evaluate(azure_site(), "eu-residency", cat, TODAY)
    assert verdict.status == "PASS" and not verdict.blocking
    [reason] = verdict.reasons
    assert reason.value == "FR" and reason.source and reason.as_of


def test_azure_francecentral_fails_sovereign_on_the_cloud_act(cat: Catalog) -> None:
    verdict = evaluate(azure_site(), "eu-sovereign", cat, TODAY)
    assert verdict.status == "FAIL" and verdict.blocking
    cloud_act = [
        r for r in verdict.reasons
        if "Microsoft Corporation (United States): US CLOUD Act" in r.text
    ]  # fmt: skip
    assert len(cloud_act) == 1
    reason = cloud_act[0]
    assert reason.outcome == "FAIL" and reason.rule == "no-non-eu-law"
    assert reason.source == "https://www.groupeonepoint.com/?p=7548981"
    assert reason.as_of == date(2026, 11, 23)
    assert reason.origin_file == "providers/catalog/azure.yaml" and not reason.overridden
    # The region still passes: the failure is about who operates it, not where it is.
    assert verdict.reasons[0].rule == "region-in-eu-eea" and verdict.reasons[0].outcome == "PASS"


def test_scaleway_fr_par_passes_sovereign(cat: Catalog) -> None:
    verdict = evaluate_provider("scaleway", "fr-par", "eu-sovereign", cat, TODAY)
    assert verdict.status == "PASS" and not verdict.blocking
    assert all(r.source and r.as_of for r in verdict.reasons)


def test_ovhcloud_gra_is_unknown_until_its_legal_facts_are_confirmed(
    cat: Catalog, tmp_path: Path
) -> None:
    # The facts file marks OVHcloud's legal entity, parent and exposure unconfirmed: the
    # catalog does not guess them, so the verdict is UNKNOWN (blocking) and says why.
    verdict = evaluate_provider("ovhcloud", "gra", "eu-sovereign", cat, TODAY)
    assert verdict.status == "UNKNOWN" and verdict.blocking
    assert {r.rule for r in verdict.reasons if r.outcome == "UNKNOWN"} == {
        "operator-in-eu-eea", "parent-in-eu-eea", "no-non-eu-law",
    }  # fmt: skip
    # Once a DPO confirms them in a catalog file, gra passes, and says where the facts came from.
    path = tmp_path / "ovh-legal.yaml"
    path.write_text(
        """\
name: ovhcloud
source: https://www.ovhcloud.com/fr/terms-and-conditions/
as_of: 2026-11-25
legal_entity: OVH SAS
hq_country: FR
ultimate_parent: {name: OVH Groupe SA, country: FR}
extraterritorial: []
""",
        encoding="utf-8",
    )
    confirmed = evaluate_provider("ovhcloud", "gra", "eu-sovereign", load_catalog([path]), TODAY)
    assert confirmed.status == "PASS"
    overridden = [r for r in confirmed.reasons if r.overridden]
    assert {r.rule for r in overridden} == {
        "operator-in-eu-eea",
        "parent-in-eu-eea",
        "no-non-eu-law",
    }
    assert all(r.origin_file == str(path) and f"(from {path})" in r.text for r in overridden)


@pytest.mark.parametrize(
    ("provider", "region"), [("ovhcloud", "bhs"), ("outscale", "us-east-2"), ("ovhcloud", "uk")]
)
def test_region_outside_the_eu_fails_residency(cat: Catalog, provider: str, region: str) -> None:
    verdict = evaluate_provider(provider, region, "eu-residency", cat, TODAY)
    assert verdict.status == "FAIL" and verdict.blocking
    assert "outside the EU/EEA" in verdict.reasons[0].text


def test_exoscale_fails_sovereign_on_swiss_operator_and_mexican_parent(cat: Catalog) -> None:
    verdict = evaluate_provider("exoscale", "de-fra-1", "eu-sovereign", cat, TODAY)
    assert verdict.status == "FAIL"
    failed = {r.rule for r in verdict.reasons if r.outcome == "FAIL"}
    assert failed == {"operator-in-eu-eea", "parent-in-eu-eea", "no-non-eu-law"}


def test_self_hosted_without_country_is_unknown(cat: Catalog) -> None:
    site = Site(
        name="chu", provider="self-hosted", software="ceph-rgw", endpoint="https://s3.chu.example"
    )
    residency = evaluate(site, "eu-residency", cat, TODAY)
    assert residency.status == "UNKNOWN" and not residency.blocking
    assert "declares no country" in residency.reasons[0].text
    sovereign = evaluate(site, "eu-sovereign", cat, TODAY)
    assert sovereign.status == "UNKNOWN" and sovereign.blocking


def test_self_hosted_judged_on_its_declarations(cat: Catalog) -> None:
    site = Site(
        name="chu", provider="self-hosted", software="seaweedfs", endpoint="https://s3.chu.example",
        country="FR", operator="CHU Example", certifications=("HDS",), parent_country="FR",
        non_eu_law=(),
    )  # fmt: skip
    verdict = evaluate(site, "fr-health", cat, TODAY)
    assert verdict.status == "PASS"
    assert all(r.source and "sites file" in r.source for r in verdict.reasons)
    assert [w.kind for w in verdict.warnings] == ["declared"]
    assert evaluate(site, "secnumcloud", cat, TODAY).status == "FAIL"  # not declared
    no_operator = site.model_copy(update={"operator": None})
    assert evaluate(no_operator, "eu-sovereign", cat, TODAY).status == "UNKNOWN"
    abroad = site.model_copy(update={"country": "CH"})
    assert evaluate(abroad, "eu-residency", cat, TODAY).status == "FAIL"
    not_a_code = site.model_copy(update={"country": "France"})
    assert evaluate(not_a_code, "eu-residency", cat, TODAY).status == "UNKNOWN"
    for letters in ("ZZ", "EU", "UK"):  # two letters, no country (the UK's code is GB)
        no_country = site.model_copy(update={"country": letters, "parent_country": letters})
        verdict = evaluate(no_country, "eu-sovereign", cat, TODAY)
        assert verdict.status == "UNKNOWN", (letters, verdict)
        assert any("not an ISO 3166" in r.text for r in verdict.reasons), verdict.reasons


@pytest.mark.parametrize(
    ("provider", "region", "endpoint", "status"),
    [
        ("self-hosted", None, "https://s3.us-west-2.amazonaws.com", "FAIL"),
        ("self-hosted", None, "https://s3.us-west-2.amazonaws.com.", "FAIL"),  # trailing dot
        ("self-hosted", None, "https://s3.dualstack.eu-west-1.amazonaws.com", "FAIL"),
        ("scaleway", "fr-par", "https://s3.nl-ams.scw.cloud.", "FAIL"),
        # Its own provider's, in a region the catalog does not list: where, unknown.
        ("ionos", "de", "https://s3.us-central-1.ionoscloud.com", "UNKNOWN"),
        ("ionos", "de", "https://s3.eu-central-1.ionoscloud.com", "UNKNOWN"),
        # (AWS fails eu-sovereign on its own; the endpoint's reason is added.)
        ("aws", "eu-west-3", "https://s3.dualstack.us-east-2.amazonaws.com", "FAIL"),
        # Another provider's host: a regional GCS one, an Azure account's (global).
        ("self-hosted", None, "https://storage.us-east1.rep.googleapis.com", "FAIL"),
        ("self-hosted", None, "https://chuacct.blob.core.windows.net", "FAIL"),
        # Its own provider's other forms of the declared region's endpoint (a review).
        ("aws", "eu-west-3", "https://s3.dualstack.eu-west-3.amazonaws.com", "FAIL-AWS"),
        ("aws", "eu-west-3", "https://b.vpce-0a1b.s3.eu-west-3.vpce.amazonaws.com", "FAIL-AWS"),
        ("aws", "eu-west-3", "https://ap-1.s3-accesspoint.eu-west-3.amazonaws.com", "FAIL-AWS"),
        # Not a storage endpoint of any provider (a VPS's or a load balancer's name).
        ("self-hosted", None, "https://vps-1a2b3c4d.vps.ovh.net", "PASS"),
        ("self-hosted", None, "https://my-alb-1234.eu-west-3.elb.amazonaws.com", "PASS"),
        ("self-hosted", None, "https://x.pub.instances.scw.cloud", "PASS"),
    ],
)
def test_a_site_whose_endpoint_the_catalog_places_elsewhere_fails(
    cat: Catalog, provider: str, region: str | None, endpoint: str, status: str
) -> None:
    """The verdict judged what the site declares (France, IONOS de) while its requests
    went to an AWS or IONOS US region: PASS in `sites check`, a warning in the plan."""
    site = Site(
        name="chu", provider=provider, region=region, endpoint=endpoint,
        **({"software": "ceph-rgw", "country": "FR", "operator": "CHU Example",
            "parent_country": "FR", "non_eu_law": ()}
           if provider == "self-hosted" else {}),
    )  # fmt: skip
    verdict = evaluate(site, "eu-sovereign", cat, TODAY)
    if status == "FAIL-AWS":  # AWS fails eu-sovereign on its own; the endpoint is its own
        assert "endpoint-as-declared" not in {r.rule for r in verdict.reasons}
        assert not evaluate(site, "eu-residency", cat, TODAY).blocking
        return
    assert verdict.status == status, verdict.reasons
    if status == "PASS":
        return
    assert verdict.blocking and verdict.reasons[-1].rule == "endpoint-as-declared"
    assert endpoint.removeprefix("https://").rstrip(".") in verdict.reasons[-1].text
    # eu-residency too, UNKNOWN as well: the requests would go where the catalog cannot
    # say, a US region as well as the declared one (a review).
    assert evaluate(site, "eu-residency", cat, TODAY).blocking


def test_a_region_outside_a_certifications_scope_fails_on_that_reason(cat: Catalog) -> None:
    """Outscale's SecNumCloud is scoped to cloudgouv-eu-west-1: eu-west-2 read UNKNOWN
    ("whether it covers the object-storage service is unknown"), the scope not looked at."""
    verdict = evaluate_provider("outscale", "eu-west-2", "secnumcloud", cat, TODAY)
    [snc] = [r for r in verdict.reasons if r.rule == "secnumcloud-qualified"]
    assert snc.outcome == "FAIL", snc.text
    assert "cloudgouv-eu-west-1, not in region eu-west-2" in snc.text


def test_a_certification_held_for_object_storage_in_one_region_fails_another(
    tmp_path: Path, cat: Catalog
) -> None:
    """Its region scope is read whatever its service coverage (a mutation review: a scope
    ignored where the service is covered passed; the only case tested had it unknown).
    One that does not cover object storage fails, not UNKNOWN."""
    path = tmp_path / "mine.yaml"
    path.write_text(
        """\
name: outscale
certifications:
  - name: SecNumCloud
    status: "yes"
    object_storage: "yes"
    regions: [cloudgouv-eu-west-1]
    source: https://example.org/qualification
    as_of: 2026-10-01
""",
        encoding="utf-8",
    )
    mine = load_catalog([path])
    verdict = evaluate_provider("outscale", "eu-west-2", "secnumcloud", mine, TODAY)
    [snc] = [r for r in verdict.reasons if r.rule == "secnumcloud-qualified"]
    assert snc.outcome == "FAIL" and "not in region eu-west-2" in snc.text, snc.text
    inside = evaluate_provider("outscale", "cloudgouv-eu-west-1", "secnumcloud", mine, TODAY)
    [snc] = [r for r in inside.reasons if r.rule == "secnumcloud-qualified"]
    assert snc.outcome == "PASS", snc.text
    ovh = evaluate_provider("ovhcloud", "eu-west-par", "secnumcloud", cat, TODAY)
    [snc] = [r for r in ovh.reasons if r.rule == "secnumcloud-qualified"]
    assert snc.outcome == "FAIL", snc.text  # qualified, not for its object storage


@pytest.mark.parametrize("declared", [(), ("HDS-pending",), ("not HDS",)])
def test_a_self_hosted_site_holds_only_the_certifications_it_declares_by_name(
    cat: Catalog, declared: tuple[str, ...]
) -> None:
    """None declared, or a name that merely contains the certification's: not held (a
    mutation review: either passed fr-health untested)."""
    site = Site(
        name="chu", provider="self-hosted", software="seaweedfs", endpoint="https://s3.chu.example",
        country="FR", operator="CHU Example", certifications=declared, parent_country="FR",
        non_eu_law=(),
    )  # fmt: skip
    verdict = evaluate(site, "fr-health", cat, TODAY)
    assert verdict.blocking, verdict
    held = [r for r in verdict.reasons if "HDS" in r.text or "hds" in r.rule]
    assert held and all(r.outcome == "FAIL" for r in held), held


def test_a_self_hosted_sites_parent_and_law_are_what_it_declares_not_its_country(
    cat: Catalog,
) -> None:
    """The parent and non-EU-law rules read the site's country (where the data is): a site
    run by a US group's subsidiary in France passed eu-sovereign (a catalog review)."""
    site = Site(
        name="hosted", provider="self-hosted", software="ceph-rgw",
        endpoint="https://s3.hosted.example", country="FR",
        operator="Amazon Web Services EMEA SARL",
    )  # fmt: skip
    verdict = evaluate(site, "eu-sovereign", cat, TODAY)
    assert verdict.status == "UNKNOWN" and verdict.blocking
    by_rule = {r.rule: r for r in verdict.reasons}
    assert by_rule["parent-in-eu-eea"].outcome == "UNKNOWN"
    assert "declares no parent_country" in by_rule["parent-in-eu-eea"].text
    assert by_rule["no-non-eu-law"].outcome == "UNKNOWN"
    assert "declares no non_eu_law" in by_rule["no-non-eu-law"].text
    declared = site.model_copy(update={"parent_country": "US", "non_eu_law": ("US CLOUD Act",)})
    verdict = evaluate(declared, "eu-sovereign", cat, TODAY)
    by_rule = {r.rule: r for r in verdict.reasons}
    assert verdict.status == "FAIL"
    assert by_rule["parent-in-eu-eea"].outcome == "FAIL"
    assert by_rule["no-non-eu-law"].outcome == "FAIL"
    assert "US CLOUD Act" in by_rule["no-non-eu-law"].text
    # Residency judges where the data is, as before.
    assert evaluate(site, "eu-residency", cat, TODAY).status == "PASS"


def test_fr_health_scaleway_fr_par_passes_with_the_hds_condition(cat: Catalog) -> None:
    verdict = evaluate_provider("scaleway", "fr-par", "fr-health", cat, TODAY)
    assert verdict.status == "PASS"
    [hds] = [r for r in verdict.reasons if r.rule == "hds-certified"]
    assert hds.outcome == "PASS" and "fr-par" in hds.text and hds.as_of == date(2025, 4, 28)
    conditions = [w for w in verdict.warnings if w.kind == "condition"]
    assert conditions and "HDS-certified tag" in conditions[0].message
    # Outside fr-par, Scaleway's HDS does not apply (and the region is not in France).
    assert evaluate_provider("scaleway", "nl-ams", "fr-health", cat, TODAY).status == "FAIL"


def test_fr_health_hetzner_does_not_pass(cat: Catalog) -> None:
    verdict = evaluate_provider("hetzner", "fsn1", "fr-health", cat, TODAY)
    assert verdict.status in ("FAIL", "UNKNOWN") and verdict.blocking
    [france] = [r for r in verdict.reasons if r.rule == "region-in-france"]
    assert france.outcome == "FAIL"


def test_secnumcloud_scaleway_fails_in_progress(cat: Catalog) -> None:
    verdict = evaluate_provider("scaleway", "fr-par", "secnumcloud", cat, TODAY)
    assert verdict.status == "FAIL" and verdict.blocking
    [snc] = [r for r in verdict.reasons if r.rule == "secnumcloud-qualified"]
    assert snc.outcome == "FAIL" and snc.value == "in-progress" and snc.source


def test_a_site_of_a_provider_without_regions_is_judged_on_what_is_known(cat: Catalog) -> None:
    """S3NS, Bleu...: no endpoint, so no region, in the catalog; a site gives its own
    endpoint. The certification is still read: a qualification in progress fails, one whose
    object-storage scope is unknown says so (both were "no region given"), and the region
    rule says what to do."""
    site = Site(name="b", provider="bleu", endpoint="https://s3.example-region.bleu.fr")
    verdict = evaluate(site, "secnumcloud", cat, TODAY)
    [snc] = [r for r in verdict.reasons if r.rule == "secnumcloud-qualified"]
    assert (snc.outcome, snc.value) == ("FAIL", "in-progress") and snc.source
    assert verdict.status == "FAIL" and verdict.blocking
    site = Site(name="g", provider="s3ns", endpoint="https://s3.example-region.s3ns.fr")
    verdict = evaluate(site, "secnumcloud", cat, TODAY)
    assert verdict.status == "UNKNOWN" and verdict.blocking
    [snc] = [r for r in verdict.reasons if r.rule == "secnumcloud-qualified"]
    assert snc.outcome == "UNKNOWN" and "covers the object-storage service is unknown" in snc.text
    assert "PREMI3NS" in snc.text and snc.source and "itforbusiness" in snc.source
    [where] = [r for r in verdict.reasons if r.rule == "region-in-eu-eea"]
    assert where.outcome == "UNKNOWN" and "the catalog lists none" in where.text
    assert "in your own catalog file" in where.text
    # A region the site declares that the catalog does not list: what to do, too.
    verdict = evaluate(site.model_copy(update={"region": "x-1"}), "secnumcloud", cat, TODAY)
    [where] = [r for r in verdict.reasons if r.rule == "region-in-eu-eea"]
    assert where.outcome == "UNKNOWN" and "x-1 is not in the catalog" in where.text
    assert "add it, with its country" in where.text
    # Without a region, a certification's region scope is never taken as covered.
    scw = Site(name="s", provider="scaleway")
    [hds] = [r for r in evaluate(scw, "fr-health", cat, TODAY).reasons if r.rule == "hds-certified"]
    assert hds.outcome == "UNKNOWN" and "no region given" in hds.text


def test_a_certification_of_every_region_covers_a_site_that_gives_none(tmp_path: Path) -> None:
    """A certification that covers object storage in every region (`["*"]`) holds
    wherever the data is: a site with no region passes that rule, as one in a region the
    catalog does not list does (it was "no region given, its region scope cannot be
    checked"). Where the data is stays the region rule's question: still UNKNOWN."""
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: s3ns\ncertifications:\n  - name: SecNumCloud\n    status: 'yes'\n"
        "    object_storage: 'yes'\n    regions: ['*']\n"
        "    source: https://example.org/our-audit\n    as_of: 2026-11-20\n",
        encoding="utf-8",
    )
    mine = load_catalog([path])
    site = Site(name="g", provider="s3ns", endpoint="https://s3.example-region.s3ns.fr")
    for declared in (None, "x-1"):
        verdict = evaluate(site.model_copy(update={"region": declared}), "secnumcloud", mine,
                           TODAY)  # fmt: skip
        [snc] = [r for r in verdict.reasons if r.rule == "secnumcloud-qualified"]
        assert snc.outcome == "PASS", (declared, snc.text)
        [where] = [r for r in verdict.reasons if r.rule == "region-in-eu-eea"]
        assert where.outcome == "UNKNOWN" and verdict.status == "UNKNOWN"
    assert "every region" in snc.text, snc.text


def test_unknown_blocks_everywhere_but_residency(cat: Catalog) -> None:
    for name in POLICIES:
        verdict = evaluate_provider("clever-cloud", "cellar-c2", name, cat, TODAY)
        assert verdict.status == "UNKNOWN"
        assert verdict.blocking == (name != "eu-residency")


def test_override_changes_a_verdict_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my-catalog.yaml"
    path.write_text(
        """\
name: scaleway
regions:
  - code: fr-par
    country: {value: CH, source: https://example.org/audit, as_of: 2026-10-01}
""",
        encoding="utf-8",
    )
    verdict = evaluate_provider("scaleway", "fr-par", "eu-residency", load_catalog([path]), TODAY)
    assert verdict.status == "FAIL"
    [reason] = verdict.reasons
    assert reason.origin_file == str(path) and reason.overridden
    assert reason.source == "https://example.org/audit"
    assert f"from {path}" in reason.text


def test_stale_fact_gives_a_recheck_warning(cat: Catalog) -> None:
    # Scaleway's region table is as of 2024-11-27: over 12 months before TODAY.
    verdict = evaluate_provider("scaleway", "fr-par", "eu-residency", cat, TODAY)
    [stale] = [w for w in verdict.warnings if w.kind == "stale"]
    assert "re-check" in stale.message and stale.as_of == date(2024, 11, 27)
    assert stale.fact == "scaleway.regions[fr-par].country"
    fresh = evaluate_provider("scaleway", "fr-par", "eu-residency", cat, date(2025, 6, 1))
    assert not [w for w in fresh.warnings if w.kind == "stale"]
    # Exactly 12 months is not yet stale.
    edge = evaluate_provider("scaleway", "fr-par", "eu-residency", cat, date(2025, 11, 27))
    assert not edge.warnings


def test_provider_wide_verdict_lists_regions(cat: Catalog) -> None:
    verdict = evaluate_provider("scaleway", None, "fr-health", cat, TODAY)
    assert verdict.status == "PASS" and verdict.region == "fr-par"
    assert verdict.regions == {"fr-par": "PASS", "nl-ams": "FAIL", "pl-waw": "FAIL"}
    assert evaluate_provider("azure", None, "eu-sovereign", cat, TODAY).status == "FAIL"
    declared = evaluate_provider("self-hosted", None, "eu-residency", cat, TODAY)
    assert declared.status == "UNKNOWN" and not declared.blocking


def test_runner_location() -> None:
    assert evaluate_runner("FR", "fr-health").status == "PASS"
    assert evaluate_runner("us", "eu-residency").status == "FAIL"
    unknown = evaluate_runner(None, "eu-sovereign")
    assert unknown.status == "UNKNOWN" and unknown.blocking
    assert not evaluate_runner(None, "eu-residency").blocking


def test_json_is_stable_and_sorted(cat: Catalog) -> None:
    verdicts = evaluate_all("fr-health", cat, TODAY)
    text = verdicts_to_json(verdicts)
    assert text == verdicts_to_json(evaluate_all("fr-health", load_catalog(), TODAY))
    data = json.loads(text)
    assert [v["provider"] for v in data] == sorted(cat.names())
    one = data[0]
    assert list(one) == sorted(one)
    assert set(one) >= {"status", "blocking", "reasons", "warnings", "policy", "regions"}
    assert set(one["reasons"][0]) >= {
        "rule", "outcome", "fact", "value", "source", "as_of", "origin_file", "text",
    }  # fmt: skip
    single = evaluate_provider("scaleway", "fr-par", "fr-health", cat, TODAY)
    assert json.loads(single.to_json())["status"] == "PASS"


def test_unknown_policy_and_provider(cat: Catalog) -> None:
    with pytest.raises(ConfigError, match="eu-sovereign"):
        evaluate(azure_site(), "gdpr-ish", cat, TODAY)
    with pytest.raises(ConfigError, match="unknown provider"):
        evaluate(Site(name="x", provider="nowhere"), "eu-residency", cat, TODAY)
    region_missing = evaluate(
        Site(name="x", provider="aws", region="mars-1"), "eu-residency", cat, TODAY
    )
    assert region_missing.status == "UNKNOWN"
