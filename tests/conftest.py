"""Fixtures: real local servers (SeaweedFS, Azurite) started once per test session, and
sites/adapters over them with fresh buckets for each test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from migrate.localservers import Azurite, SeaweedFS, azurite, seaweedfs
from migrate.sites import CredentialRef, Site

# Environment variables the test sites reference for their credentials.
S3_KEY_ENV, S3_SECRET_ENV = "MIGRATE_TEST_S3_KEY", "MIGRATE_TEST_S3_SECRET"
AZ_CONN_ENV = "MIGRATE_TEST_AZURE_CONN"
AWS_KEY_ENV, AWS_SECRET_ENV = "MIGRATE_TEST_AWS_KEY", "MIGRATE_TEST_AWS_SECRET"

_counter = itertools.count()


def unique_name(prefix: str = "t") -> str:
    """A bucket/container name valid on S3 and Azure (3-63 lowercase, digits, hyphens)."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def s3_site(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv(S3_KEY_ENV, seaweed.access_key)
    monkeypatch.setenv(S3_SECRET_ENV, seaweed.secret_key)
    return Site(
        name="seaweed",
        provider="self-hosted",
        software="seaweedfs",
        region="local",
        endpoint=seaweed.endpoint,
        addressing="path",
        country="FR",
        credentials=CredentialRef(access_key_env=S3_KEY_ENV, secret_key_env=S3_SECRET_ENV),
    )


@pytest.fixture
def gcs_site(s3_site: Site) -> Site:
    """A GCS site (the XML API with HMAC keys, providers/gcs.py) served by SeaweedFS: no
    local GCS speaks that API. What only GCS answers is tested in tests/providers/test_gcs.py."""
    return s3_site.model_copy(update={"name": "gcs", "provider": "gcs"})


@pytest.fixture
def azure_site(azurite_server: Azurite, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv(AZ_CONN_ENV, azurite_server.connection_string)
    return Site(
        name="azurite",
        provider="azure",
        region="francecentral",
        account=azurite_server.account,
        endpoint=azurite_server.endpoint,
        credentials=CredentialRef(connection_string_env=AZ_CONN_ENV),
    )


@pytest.fixture
def azure_sdk_site(azure_site: Site, azurite_server: Azurite) -> Iterator[Site]:
    """The Azurite site through a declared proxy on loopback: with a proxy, blob reads take
    the SDK's path (azure-storage-blob's downloader) instead of the lean one."""
    from tests.faultproxy import fault_proxy

    with fault_proxy(azurite_server.endpoint) as proxy:
        yield azure_site.model_copy(update={"proxy": proxy.endpoint})


@pytest.fixture
def s3_sdk_site(s3_site: Site, seaweed: SeaweedFS) -> Iterator[Site]:
    """The SeaweedFS site through a declared proxy on loopback: with a proxy, requests take
    botocore's path (as every AWS site's do) instead of the lean one."""
    from tests.faultproxy import fault_proxy

    with fault_proxy(seaweed.endpoint) as proxy:
        yield s3_site.model_copy(update={"name": "seaweed-sdk", "proxy": proxy.endpoint})


@pytest.fixture
def local_site(tmp_path: Path) -> Site:
    root = tmp_path / "local-store"
    root.mkdir()
    return Site(name="local", provider="local", region="local", path=str(root), country="FR")


SiteFactory = Callable[[str], Site]


@pytest.fixture
def site_for(request: pytest.FixtureRequest) -> SiteFactory:
    """site_for('local' | 's3' | 's3_sdk' | 'gcs' | 'azure' | 'azure_sdk'): the test site of that
    kind (servers start lazily)."""

    def make(kind: str) -> Site:
        site: Site = request.getfixturevalue(f"{kind}_site")
        return site

    return make


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """An AWS site in eu-west-3 (Paris) on moto's in-process S3: only for behaviour that
    exists on AWS alone."""
    from moto import mock_aws

    monkeypatch.setenv(AWS_KEY_ENV, "testing")
    monkeypatch.setenv(AWS_SECRET_ENV, "testing-secret")
    with mock_aws():
        yield Site(
            name="aws-par",
            provider="aws",
            region="eu-west-3",
            addressing="path",
            credentials=CredentialRef(access_key_env=AWS_KEY_ENV, secret_key_env=AWS_SECRET_ENV),
        )
