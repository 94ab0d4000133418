"""The provider catalog as data: every file validates, every fact is sourced or unknown,
user files add and override facts and are named as their origin."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from migrate.errors import ConfigError, SecretInConfig
from migrate.sites import Site
from providers import catalog as catalog_module
from providers.catalog import (
    CATALOG_DIR,
    EU_EEA,
    Catalog,
    api_for_provider,
    builtin_catalog,
    in_eu_eea,
    iter_facts,
    load_catalog,
    parse_size,
    set_active_catalog,
)
from providers.factory import confirmed_checksums

REQUIRED = {
    "azure", "aws", "gcs", "ovhcloud", "scaleway", "outscale", "clever-cloud", "ionos",
    "open-telekom-cloud", "hetzner", "exoscale", "self-hosted", "local",
    "cloud-temple", "numspot", "s3ns", "bleu",
}  # fmt: skip


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


def test_one_file_per_provider_and_every_file_validates(cat: Catalog) -> None:
    files = {p.stem for p in CATALOG_DIR.glob("*.yaml")}
    assert files == set(cat.names())
    assert set(cat.names()) >= REQUIRED
    for name in cat.names():
        assert cat.provider(name).name == name


def test_every_fact_has_source_and_date_or_is_unknown(cat: Catalog) -> None:
    for name in cat.names():
        provider = cat.provider(name)
        for path, fact in iter_facts(provider):
            if fact.known:
                assert fact.source and fact.as_of, f"{name}.{path}"
            assert fact.origin == f"providers/catalog/{name}.yaml" or fact.origin is None
        for cert in provider.certifications:
            assert cert.status == "unknown" or (cert.source and cert.as_of), cert
        for entry in provider.global_endpoints:
            assert entry.source and entry.as_of
        for tier in provider.tiers:
            assert tier.source and tier.as_of


def test_every_region_has_country_and_endpoint(cat: Catalog) -> None:
    unknown_country = []
    for name in cat.names():
        for region in cat.provider(name).regions:
            assert region.endpoint.known, f"{name} {region.code}: no endpoint"
            if region.country.known:
                assert region.eu_eea == in_eu_eea(region.country.value or "")
            else:
                # Only where the facts file marks the location unconfirmed, with the reason.
                assert region.country.note, f"{name} {region.code}: country unknown, no note"
                unknown_country.append(f"{name}/{region.code}")
    assert sorted(unknown_country) == ["clever-cloud/cellar-c2", "open-telekom-cloud/eu-de"]


def test_eu_eea_list() -> None:
    assert {"FR", "DE", "NL", "PL", "ES", "FI", "AT", "BG", "NO", "IS", "LI"} <= EU_EEA
    assert len(EU_EEA) == 30
    for outside in ("CH", "GB", "US", "CA", "SG", "MX"):
        assert not in_eu_eea(outside)


def test_api_for_provider() -> None:
    assert api_for_provider("self-hosted") == "s3"
    assert api_for_provider("azure") == "azure"
    assert api_for_provider("local") == "local"
    assert api_for_provider("gcs") == "gcs"
    assert api_for_provider("scaleway") == "s3"
    with pytest.raises(ConfigError) as err:
        api_for_provider("nowhere")
    assert "nowhere" in err.value.one_line() and "scaleway" in err.value.one_line()


def test_endpoint_resolution(cat: Catalog) -> None:
    scw = Site(name="scw", provider="scaleway", region="fr-par")
    assert cat.endpoint_for(scw) == "https://s3.fr-par.scw.cloud"
    assert cat.endpoint_findings(scw) == []
    az = Site(name="az", provider="azure", region="francecentral", account="hdhprod")
    assert cat.endpoint_for(az) == "https://hdhprod.blob.core.windows.net"
    assert cat.endpoint_findings(az) == []
    assert cat.endpoint_for(Site(name="x", provider="azure", region="francecentral")) is None
    # An explicit endpoint is kept, but a mismatch with the region is reported.
    odd = Site(
        name="odd", provider="scaleway", region="fr-par", endpoint="https://s3.nl-ams.scw.cloud"
    )
    assert cat.endpoint_for(odd) == "https://s3.nl-ams.scw.cloud"
    [finding] = cat.endpoint_findings(odd)
    assert "s3.nl-ams.scw.cloud" in finding and "fr-par" in finding
    # Virtual-host form and documented legacy endpoints are the region's own.
    vh = Site(
        name="vh", provider="ovhcloud", region="gra", endpoint="https://b.s3.gra.io.cloud.ovh.net"
    )
    assert cat.endpoint_findings(vh) == []
    legacy = Site(
        name="l", provider="ovhcloud", region="gra", endpoint="https://s3.gra.perf.cloud.ovh.net"
    )
    assert cat.endpoint_findings(legacy) == []


def test_endpoint_findings_for_missing_region_and_global_endpoints(cat: Catalog) -> None:
    [no_region] = cat.endpoint_findings(Site(name="a", provider="aws"))
    assert "no region" in no_region
    [unknown] = cat.endpoint_findings(Site(name="a", provider="aws", region="mars-1"))
    assert "mars-1" in unknown and "eu-west-3" in unknown
    glob = Site(name="g", provider="aws", region="eu-west-3", endpoint="https://s3.amazonaws.com")
    [finding] = cat.endpoint_findings(glob)
    assert "hides the region" in finding
    hit = cat.global_endpoint("mybucket.s3-accelerate.amazonaws.com")
    assert hit is not None and hit[0].name == "aws"
    assert cat.global_endpoint("s3.eu-west-3.amazonaws.com") is None
    assert cat.global_endpoint("acct.blob.core.windows.net") is not None
    assert cat.global_endpoint("storage.googleapis.com") is not None
    self_hosted = Site(name="s", provider="self-hosted", country="FR")
    assert "explicit endpoint" in cat.endpoint_findings(self_hosted)[0]


def test_limits(cat: Catalog) -> None:
    scw = cat.limits_for(Site(name="s", provider="scaleway", region="fr-par"))
    assert scw.max_parts.value == 1000
    assert scw.max_object_size.value == 5 * 10**12
    assert scw.verified_checksums.value == ("crc32", "crc32c", "sha1", "sha256", "crc64nvme")
    exo = cat.limits_for(Site(name="e", provider="exoscale", region="de-fra-1"))
    assert exo.max_object_size.value == 4 * 2**40
    assert exo.metadata_bytes.value == 2000
    assert exo.key_bytes.value == 1024
    sw = Site(name="w", provider="self-hosted", software="seaweedfs", endpoint="http://127.0.0.1:1")
    limits = cat.limits_for(sw)
    assert limits.max_segment_bytes.value == 255
    assert limits.max_segment_bytes.source == "local-servers.md (hands-on check by this project)"
    assert not cat.limits_for(
        Site(name="c", provider="self-hosted", software="ceph-rgw")
    ).max_parts.known
    assert not cat.limits_for(Site(name="n", provider="self-hosted")).max_parts.known
    with pytest.raises(ConfigError, match="minio"):
        cat.limits_for(Site(name="m", provider="self-hosted", software="minio"))


def test_ambiguous_units_read_on_the_safe_side() -> None:
    assert parse_size("5 GB", minimum=False) == 5 * 10**9
    assert parse_size("5 MB", minimum=True) == 5 * 2**20
    assert parse_size("5 GiB", minimum=False) == 5 * 2**30
    with pytest.raises(ValueError):
        parse_size("five", minimum=False)


def test_storage_class_mapping(cat: Catalog) -> None:
    hot = cat.storage_class_for("Hot", "scaleway")
    assert hot.destination_class == "STANDARD" and not hot.needs_rehydration
    assert (
        cat.storage_class_for("Cool", "ovhcloud", source_provider="azure").destination_class
        == "STANDARD"
    )
    archive = cat.storage_class_for("Archive", "scaleway", source_provider="azure")
    assert archive.needs_rehydration and archive.destination_class is None
    # Destination class unknown: send none (the store's default), never a made-up name.
    assert cat.storage_class_for("Hot", "hetzner").destination_class is None


def test_prices(cat: Catalog) -> None:
    scw = cat.prices_for("scaleway")
    assert (scw.storage_per_gb_month.value, scw.egress_per_gb.value) == (0.0146, 0.01)
    assert scw.egress_free_gb_month.value == 75 and scw.currency == "EUR"
    assert not cat.prices_for("ovhcloud").storage_per_gb_month.known
    assert cat.prices_for("aws", "us-east-1").storage_per_gb_month.value == 0.023
    assert not cat.prices_for("aws", "eu-west-3").storage_per_gb_month.known
    assert cat.prices_for("aws", "us-east-1").egress_free_gb_month.value == 100


OVERRIDE = """\
name: scaleway
regions:
  - code: fr-par
    country: {value: DE, source: https://example.org/audit, as_of: 2026-10-01}
certifications:
  - name: SecNumCloud
    status: "yes"
    object_storage: "yes"
    regions: [fr-par]
    source: https://example.org/anssi
    as_of: 2026-10-01
"""


def test_user_file_overrides_a_fact_and_remembers_its_file(tmp_path: Path) -> None:
    path = tmp_path / "my-catalog.yaml"
    path.write_text(OVERRIDE, encoding="utf-8")
    cat = load_catalog([path])
    region = cat.region("scaleway", "fr-par")
    assert region is not None
    assert region.country.value == "DE" and region.country.origin == str(path)
    assert cat.is_override(region.country.origin)
    # The rest of the region is untouched, and still comes from the built-in file.
    assert region.endpoint.value == "s3.fr-par.scw.cloud"
    assert region.endpoint.origin == "providers/catalog/scaleway.yaml"
    snc = cat.provider("scaleway").certification("SecNumCloud")
    assert snc is not None and snc.status == "yes" and snc.origin == str(path)
    assert cat.provider("scaleway").certification("HDS") is not None
    # The built-in catalog is not changed by loading a user file.
    assert builtin_catalog().region("scaleway", "fr-par").country.value == "FR"  # type: ignore[union-attr]


def test_user_file_adds_a_provider(tmp_path: Path) -> None:
    path = tmp_path / "extra.yaml"
    path.write_text(
        """\
providers:
  - name: acme-s3
    display_name: ACME
    service: ACME Object Storage
    roles: [destination]
    api: s3
    source: https://acme.example/legal
    as_of: 2026-11-01
    legal_entity: ACME SAS
    hq_country: FR
    ultimate_parent: {name: ACME SAS, country: FR}
    extraterritorial: []
    regions:
      - code: par1
        city: Paris
        source: https://acme.example/regions
        as_of: 2026-11-01
        country: FR
        endpoint: s3.par1.acme.example
""",
        encoding="utf-8",
    )
    cat = load_catalog([path])
    assert cat.provider("acme-s3").hq_country.value == "FR"
    assert cat.endpoint_for(Site(name="a", provider="acme-s3", region="par1")) == (
        "https://s3.par1.acme.example"
    )
    set_active_catalog(cat)
    try:
        assert api_for_provider("acme-s3") == "s3"
    finally:
        set_active_catalog(None)
    with pytest.raises(ConfigError):
        api_for_provider("acme-s3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: scaleway\nlimits: {max_partz: 3}\n", "limits.max_partz: unknown key"),
        (
            "name: scaleway\nregions:\n  - {code: fr-par, country: {value: FR}}\n",
            "regions[fr-par].country",
        ),
        (
            "name: scaleway\nregions:\n  - {code: fr-par, country: {value: France, "
            "source: https://x.example, as_of: 2026-01-01}}\n",
            "regions[fr-par].country.value",
        ),
        (  # two letters, no country
            "name: scaleway\nregions:\n  - {code: fr-par, country: {value: ZZ, "
            "source: https://x.example, as_of: 2026-01-01}}\n",
            "regions[fr-par].country.value",
        ),
        (
            "name: scaleway\ncertifications:\n  - {name: HDS, status: maybe}\n",
            "certifications[HDS].status",
        ),
        ("name: newco\napi: s3\n", "provider newco"),
        (  # a price with no currency: the plan showed it in EUR (a catalog review)
            "name: self-hosted\nprices:\n  storage_per_gb_month: {value: 0.5, "
            "source: https://x.example, as_of: 2026-01-01}\n",
            "a price needs its currency",
        ),
        ("name: scaleway\nregions: [\n", "not valid YAML"),
    ],
)
def test_bad_user_file_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_catalog([path])
    message = err.value.one_line()
    assert str(path) in message and expected in message


@pytest.mark.parametrize(
    ("endpoint", "secret", "said"),
    [
        ("qquser:QQPWDcatalog9@127.0.0.1:38185", True, "regions[fr-par]: endpoint holds a user"),
        ("s3.fr-par.scw.cloud/?sv=1&sig=QQSASsigCAT77", True, "holds a SAS token"),
        ("s3.fr-par.scw.cloud/?QQquery=1", False, "has a query or a fragment"),
    ],
)
@pytest.mark.parametrize("in_source", [False, True])
def test_a_catalog_endpoint_holding_a_secret_is_refused_without_repeating_it(
    tmp_path: Path, endpoint: str, secret: bool, said: str, in_source: bool
) -> None:
    """Its endpoint is written to the plan and the report and shown by `sites check`: a
    password there reached them all (a review); a sites file's is refused so already. Its
    source too is copied into them: a signed URL there is refused (a query is a page's)."""
    value, source = ("s3.fr-par.scw.cloud", f"https://{endpoint}") if in_source else (
        endpoint, "https://x.example")  # fmt: skip
    path = tmp_path / "mine.yaml"
    path.write_text(
        f"name: scaleway\nregions:\n  - code: fr-par\n    endpoint: {{value: '{value}', "
        f"source: '{source}', as_of: 2026-01-01}}\n",
        encoding="utf-8",
    )
    if in_source and not secret:  # a source's query is a document's (IONOS cites one)
        assert load_catalog([path]).provider("scaleway").region("fr-par") is not None
        return
    if in_source:
        said = "holds a signed URL or a password"
    with pytest.raises(SecretInConfig if secret else ConfigError) as err:
        load_catalog([path])
    message = err.value.one_line()
    assert str(path) in message and said in message and "QQ" not in message, message


def test_every_builtin_file_loads_as_a_users_file_and_an_endpoints_source_is_text(
    tmp_path: Path,
) -> None:
    """The endpoint check reads an endpoint's value alone: IONOS's own file, its source a
    URL with a query, was refused as a user's file (a review); a note naming an address
    is no password."""
    from providers.catalog import CATALOG_DIR

    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        load_catalog([path])
    path = tmp_path / "mine.yaml"
    for source in ("https://docs.example/pdf?page=3#s3",
                   "https://www.scaleway.com (asked support@scaleway.com)",
                   "https://example.org/@handle", "mailto:ops@example.org"):  # fmt: skip
        path.write_text(
            "name: scaleway\nregions:\n  - code: fr-par\n    endpoint: {value: "
            f"s3.fr-par.scw.cloud, source: '{source}', as_of: 2026-01-01, "
            "note: 'asked ops@chu.example'}\n",
            encoding="utf-8",
        )
        assert load_catalog([path]).provider("scaleway").region("fr-par") is not None, source
    # A presigned URL (AWS SigV4, GCS) as a source: refused, as a SAS is.
    for signed in ("https://b.s3.amazonaws.com/k?X-Amz-Credential=QQ&X-Amz-Signature=QQ",
                   "https://storage.googleapis.com/b/k?X-Goog-Signature=QQ"):  # fmt: skip
        path.write_text(
            "name: scaleway\nregions:\n  - code: fr-par\n    endpoint: {value: "
            f"s3.fr-par.scw.cloud, source: '{signed}', as_of: 2026-01-01}}\n",
            encoding="utf-8",
        )
        with pytest.raises(SecretInConfig):
            load_catalog([path])


def test_bad_builtin_file_names_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken.yaml").write_text(
        "name: broken\ndisplay_name: B\nservice: s\nroles: [destination]\napi: s3\n"
        "hq_country: {value: FR, source: https://x.example}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(catalog_module, "CATALOG_DIR", tmp_path)
    catalog_module._builtin_raw.cache_clear()
    try:
        with pytest.raises(ConfigError) as err:
            load_catalog()
        message = err.value.one_line()
        assert "providers/catalog/broken.yaml" in message and "hq_country" in message
        assert "as_of" in message
    finally:
        monkeypatch.undo()
        catalog_module._builtin_raw.cache_clear()


def test_a_regions_price_takes_its_providers_currency(tmp_path: Path) -> None:
    """The check that a price has its currency refused a region's price of a provider
    priced in USD (a review)."""
    path = tmp_path / "eu-west-3.yaml"
    path.write_text(
        "name: aws\nregions:\n  - code: eu-west-3\n    prices:\n      egress_per_gb: "
        "{value: 0.02, source: https://x.example, as_of: 2026-11-01}\n",
        encoding="utf-8",
    )
    prices = load_catalog([path]).prices_for("aws", "eu-west-3")
    assert (prices.egress_per_gb.value, prices.currency) == (0.02, "USD")
    # A region priced in another currency: the provider's prices are not relabelled in
    # it (a review: Scaleway's EUR egress read as USD), unknown unless it restates them.
    path.write_text(
        "name: scaleway\nregions:\n  - code: fr-par\n    prices:\n      currency: USD\n"
        "      storage_per_gb_month: {value: 0.02, source: https://x.example, as_of: 2026-11-01}\n",
        encoding="utf-8",
    )
    prices = load_catalog([path]).prices_for("scaleway", "fr-par")
    assert (prices.storage_per_gb_month.value, prices.currency) == (0.02, "USD")
    assert load_catalog().prices_for("scaleway", "fr-par").egress_per_gb.value is not None
    assert prices.egress_per_gb.value is None


def test_catalog_is_frozen(cat: Catalog) -> None:
    with pytest.raises(ValueError):
        cat.provider("scaleway").limits.max_parts.value = 5  # type: ignore[misc]


def test_a_store_is_trusted_with_sha256_alone_only_where_a_catalog_says_it_checks_it(
    tmp_path: Path,
) -> None:
    """`verified_checksums` decides whether parts may go with their SHA-256 alone
    (migrate/transfer.py): a built-in fact, a user's file, or nothing."""
    chu = Site(name="chu", provider="self-hosted", software="ceph-rgw", country="FR")
    assert "sha256" in confirmed_checksums(chu.model_copy(update={"software": "seaweedfs"}))
    assert confirmed_checksums(chu) == ()  # no fact on Ceph in the built-in catalog
    assert confirmed_checksums(Site(name="o", provider="ovhcloud", region="gra")) == ()
    path = tmp_path / "ours.yaml"
    path.write_text(
        """
name: self-hosted
software:
  - name: ceph-rgw
    limits:
      verified_checksums:
        value: [md5, SHA-256]
        source: https://example.org/our-test-of-bad-digest
        as_of: 2026-11-20
""",
        encoding="utf-8",
    )
    set_active_catalog(load_catalog([path]))
    try:
        assert confirmed_checksums(chu) == ("md5", "sha256")
    finally:
        set_active_catalog(None)


CSF = "https://csf.hop3.abilian.com/providers/"


def test_the_secnumcloud_players_hold_the_facts_file_and_no_more(cat: Catalog) -> None:
    """Cloud Temple, NumSpot, S3NS and Bleu (the facts file's section 9): destinations whose
    S3 endpoints are unconfirmed, so no region and no endpoint; each fact section 9 gives,
    with its source; what it does not state (a parent's country, exposure to non-EU law, a
    qualification's object-storage scope) unknown, with why."""
    players = {name: cat.provider(name) for name in ("cloud-temple", "numspot", "s3ns", "bleu")}
    for name, p in players.items():
        assert p.roles == ("destination",) and p.api == "s3", name
        assert p.regions == () and not p.endpoint_pattern.known, name
        assert "unconfirmed" in (p.endpoint_pattern.note or ""), name
        assert not p.ultimate_parent.known and p.ultimate_parent.note, name
        # Never asserted empty: whether a non-EU law reaches them is no fact of the file.
        assert not p.extraterritorial.known and p.extraterritorial.note, name
        assert not p.prices.priced() and not p.limits.max_parts.known, name
        hds = p.certification("HDS")
        assert hds is not None and hds.status == "unknown", name
    ct = players["cloud-temple"]
    assert (ct.hq_country.value, ct.hq_country.source) == ("FR", f"{CSF}cloud-temple.html")
    assert ct.hq_country.stated == "French company, HQ Puteaux" and not ct.legal_entity.known
    assert "Neurones SA" in (ct.ultimate_parent.note or "")
    snc = ct.certification("SecNumCloud")
    assert snc is not None and (snc.status, snc.object_storage) == ("yes", "unknown")
    assert snc.regions is None and "Secure Temple" in (snc.scope or "")
    assert snc.source == f"{CSF}cloud-temple.html" and snc.as_of == date(2026, 11, 23)
    assert "edi-mag.fr" in (snc.note or "") and "2022" in (snc.scope or "")
    ns = players["numspot"]
    assert (ns.legal_entity.value, ns.hq_country.value) == (None, "FR")
    assert ns.hq_country.source == f"{CSF}numspot.html"
    assert ns.hq_country.as_of == date(2026, 11, 23)
    assert "Docaposte" in (ns.ultimate_parent.note or "")
    snc = ns.certification("SecNumCloud")
    assert snc is not None and snc.status == "unknown" and "Outscale" in (snc.note or "")
    s3ns = players["s3ns"]
    assert (s3ns.hq_country.value, s3ns.hq_country.source) == ("FR", f"{CSF}s3ns.html")
    assert "Thales" in (s3ns.ultimate_parent.note or "")
    assert "Google" in (s3ns.extraterritorial.note or "")
    snc = s3ns.certification("SecNumCloud")
    assert snc is not None and (snc.status, snc.object_storage) == ("yes", "unknown")
    assert "PREMI3NS" in (snc.scope or "") and "3.2" in (snc.scope or "")
    assert snc.source == (
        "https://www.itforbusiness.fr/s3ns-obtient-la-certification-secnumcloud-voila-qui-va-"
        "relancer-les-debats-98899"
    )
    assert snc.as_of == date(2026, 1, 5) and "s3ns.io" in (snc.note or "")
    bleu = players["bleu"]
    assert not bleu.hq_country.known and not bleu.legal_entity.known
    assert "Capgemini and Orange" in (bleu.ultimate_parent.note or "")
    assert "Microsoft" in (bleu.extraterritorial.note or "")
    snc = bleu.certification("SecNumCloud")
    assert snc is not None and snc.status == "in-progress"
    assert snc.source is not None and "clubic.com/actualite-591883" in snc.source
    assert snc.as_of == date(2026, 11, 23)  # the article's date is not visible: read then
