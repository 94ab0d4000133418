"""The routing guard: every request goes to a host the plan allows, or nowhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from migrate.errors import RouteRefused
from migrate.localservers import SeaweedFS
from migrate.routing import RoutingGuard, endpoint_host, proxy_variables
from migrate.session import guarded_adapter, site_guard
from migrate.sites import CredentialRef, Site
from providers.catalog import load_catalog
from providers.factory import build_adapter


def guard(*allow: str, **kw: object) -> RoutingGuard:
    return RoutingGuard(allow, env={}, **kw)  # type: ignore[arg-type]


def test_only_hosts_on_the_allowlist_pass() -> None:
    g = guard("s3.fr-par.scw.cloud", "127.0.0.1:9000")
    g.check("GET", "https://s3.fr-par.scw.cloud/bucket/key")
    g.check("PUT", "http://127.0.0.1:9000/bucket/key")  # loopback may be plain HTTP
    with pytest.raises(RouteRefused, match=re.escape("s3.nl-ams.scw.cloud")):
        g.check("GET", "https://s3.nl-ams.scw.cloud/bucket/key")
    with pytest.raises(RouteRefused, match=re.escape("127.0.0.1:9001")):
        g.check("GET", "http://127.0.0.1:9001/bucket/key")  # same host, other port
    # Hosts are matched whole: no suffix, no wildcard (a plan names each host it allows).
    for url in ("https://evil-s3.fr-par.scw.cloud/b/k", "https://x.s3.fr-par.scw.cloud/b/k",
                "https://s3.fr-par.scw.cloud.evil.example/b/k"):  # fmt: skip
        with pytest.raises(RouteRefused):
            g.check("GET", url)
    with pytest.raises(RouteRefused):
        guard("*.scw.cloud").check("GET", "https://s3.fr-par.scw.cloud/b/k")
    # A host allowed on its default port is allowed on that port alone (a mutation review:
    # any port passed untested).
    for url in ("https://s3.fr-par.scw.cloud:8443/b/k", "http://127.0.0.1/b/k"):
        with pytest.raises(RouteRefused):
            g.check("GET", url)


def test_loopback_is_the_loopback_address_or_localhost_not_a_name_that_begins_so() -> None:
    """Plain HTTP is allowed to loopback alone: a name that begins like it is no loopback
    (a mutation review: a prefix match passed every test)."""
    from migrate.routing import is_loopback

    for host in ("localhost", "127.0.0.1", "127.0.0.1.", "[::1]", "127.8.9.10"):
        assert is_loopback(host), host
    for host in ("localhost.evil.example", "127.0.0.1.nip.io", "127.evil.example", "::2"):
        assert not is_loopback(host), host
    with pytest.raises(RouteRefused, match="plain HTTP"):
        guard("localhost.evil.example").check("GET", "http://localhost.evil.example/b/k")


@pytest.mark.parametrize(
    "url",
    [
        "https://s3.amazonaws.com/b/k",
        "https://b.s3.amazonaws.com/k",
        "https://s3-external-1.amazonaws.com/b/k",
        "https://b.s3-accelerate.amazonaws.com/k",
        "https://s3-accelerate.dualstack.amazonaws.com/b/k",
    ],
)
def test_global_and_accelerated_endpoints_are_refused_even_if_allowed(url: str) -> None:
    g = guard(endpoint_host(url))
    with pytest.raises(RouteRefused, match="global endpoint"):
        g.check("GET", url)


def test_plain_http_outside_loopback_needs_a_declaration() -> None:
    with pytest.raises(RouteRefused, match="plain HTTP"):
        guard("s3.chu.example").check("GET", "http://s3.chu.example/b/k")
    guard("s3.chu.example", http_allowed=["s3.chu.example"]).check(
        "GET", "http://s3.chu.example/b/k"
    )


def test_an_ipv6_endpoint_allows_its_own_address_and_port_only() -> None:
    # Without brackets, [2001:db8::5]:8333 and [2001:db8::5:8333] (another address, on
    # 443) were one allowlist entry.
    allowed = endpoint_host("https://[2001:db8::5]:8333")
    assert allowed == "[2001:db8::5]:8333"
    guard(allowed).check("GET", "https://[2001:db8::5]:8333/b/k")
    with pytest.raises(RouteRefused, match="not on the allowlist"):
        guard(allowed).check("GET", "https://[2001:db8::5:8333]/b/k")
    # A self-hosted site over plain HTTP on an IPv6 address, and loopback's.
    guard(allowed, http_allowed=[allowed]).check("PUT", "http://[2001:db8::5]:8333/b/k")
    guard("[::1]:8333").check("GET", "http://[::1]:8333/b/k")


def test_a_trailing_dot_is_the_same_host_for_every_check() -> None:
    from migrate.routing import is_loopback

    assert is_loopback("127.0.0.1.") and is_loopback("localhost.")
    guard("127.0.0.1:8333").check("GET", "http://127.0.0.1.:8333/b/k")


def test_an_undeclared_proxy_stops_the_run_before_anything_is_sent() -> None:
    with pytest.raises(RouteRefused, match="HTTPS_PROXY"):
        RoutingGuard(["h"], env={"HTTPS_PROXY": "http://proxy.us.example:3128"})
    RoutingGuard(
        ["h"],
        env={"HTTPS_PROXY": "http://proxy.eu.example:3128"},
        declared_proxies=["http://proxy.eu.example:3128"],
    )
    # The variable may hold the proxy's credentials (the sites file may not): the same proxy.
    RoutingGuard(
        ["h"],
        env={"HTTPS_PROXY": "http://u:p@proxy.eu.example:3128/"},
        declared_proxies=["http://proxy.eu.example:3128"],
    )
    RoutingGuard(  # the default port, written or not
        ["h"],
        env={"HTTP_PROXY": "http://proxy.eu.example:80"},
        declared_proxies=["http://proxy.eu.example"],
    )
    with pytest.raises(RouteRefused, match="HTTPS_PROXY"):  # another port: another proxy
        RoutingGuard(
            ["h"],
            env={"HTTPS_PROXY": "http://u:p@proxy.eu.example:8080"},
            declared_proxies=["http://proxy.eu.example:3128"],
        )


def test_the_guard_records_every_host_contacted() -> None:
    g = guard("a.example", "b.example")
    g.record("PUT", "https://a.example/x", 10, 200)
    g.record("GET", "https://a.example/y", 0, 200)
    g.record("GET", "https://b.example/y", 0, 404)
    uses = {(h, s): (n, b) for h, s, n, b, _, _ in g.drain()}
    assert uses == {("a.example", "https"): (2, 10), ("b.example", "https"): (1, 0)}


def test_the_s3_adapter_asks_the_guard_before_every_request(
    seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R_KEY", seaweed.access_key)
    monkeypatch.setenv("R_SECRET", seaweed.secret_key)
    creds = CredentialRef(access_key_env="R_KEY", secret_key_env="R_SECRET")
    site = Site(
        name="sw",
        provider="self-hosted",
        software="seaweedfs",
        region="local",
        endpoint=seaweed.endpoint,
        addressing="path",
        country="FR",
        credentials=creds,
    )
    allowed = guard(endpoint_host(seaweed.endpoint))
    adapter = build_adapter(site, guard=allowed)
    adapter.create_container("routing-ok")
    assert [h for h, *_ in allowed.drain()] == [endpoint_host(seaweed.endpoint)]

    # The same site forced onto a global endpoint: refused before a connection is made.
    forced = site.model_copy(update={"endpoint": "https://s3.amazonaws.com"})
    refusing = guard(endpoint_host(seaweed.endpoint))
    with pytest.raises(RouteRefused, match=re.escape("s3.amazonaws.com")):
        build_adapter(forced, guard=refusing).check("routing-ok")
    assert refusing.drain() == []


def test_before_a_plan_a_site_is_held_to_the_hosts_a_plan_would_allow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What `inventory`, `sites check` and the plan's own reads are allowed: the hosts the
    plan would list for that site and those buckets, under the run's rules."""
    for name in proxy_variables(dict(os.environ)):
        monkeypatch.delenv(name, raising=False)
    catalog = load_catalog()
    aws = Site(name="aws", provider="aws", region="eu-west-3")  # virtual-host addressing
    g = site_guard(aws, ["data"], catalog)
    g.check("GET", "https://data.s3.eu-west-3.amazonaws.com/key")
    g.check("GET", "https://s3.eu-west-3.amazonaws.com/data/key")
    for url in ("https://other.s3.eu-west-3.amazonaws.com/k", "https://s3.amazonaws.com/data/k"):
        with pytest.raises(RouteRefused):
            g.check("GET", url)

    lab = Site(
        name="lab", provider="self-hosted", software="seaweedfs", country="FR", region="local",
        endpoint="http://minio.lan:9000", addressing="virtual", allow_http=True,
    )  # fmt: skip
    g = site_guard(lab, ["data"], catalog)
    g.check("PUT", "http://minio.lan:9000/data/k")
    g.check("PUT", "http://data.minio.lan:9000/k")  # its buckets' hosts: plain HTTP too

    # A proxy in the environment must be one the command's sites declare, as in a run.
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.lan:3128")
    with pytest.raises(RouteRefused, match="HTTPS_PROXY"):
        site_guard(aws, ["data"], catalog)
    site_guard(aws, ["data"], catalog, ["http://proxy.lan:3128"])  # declared by a site
    # Read in any case, as the standard library reads them for requests and botocore.
    monkeypatch.setenv("Https_Proxy", "http://elsewhere.example:3128")
    with pytest.raises(RouteRefused, match="Https_Proxy"):
        site_guard(aws, ["data"], catalog, ["http://proxy.lan:3128"])
    monkeypatch.delenv("Https_Proxy")
    # A local site sends no request: no guard, and no proxy to refuse.
    (tmp_path / "data").mkdir()
    local = Site(name="disk", provider="local", path=str(tmp_path), buckets=("data",))
    guarded_adapter(local, local.buckets, catalog).close()
