"""The sites file: what a user writes, and the one-line errors when it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.errors import ConfigError, SecretInConfig
from migrate.sites import load_sites, resolve_credentials

# AWS's documentation example key id, assembled so that no key-shaped literal is tracked.
EXAMPLE_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"

GOOD = """
policy = "fr-health"
runner = { location = "FR" }

[sites.azure-hdh]
provider = "azure"
region = "francecentral"
account = "hdhprod"
containers = ["snds", "cohorts"]
credentials = { connection_string_env = "HDH_AZURE_CONNECTION_STRING" }

[sites.scw-par]
provider = "scaleway"
region = "fr-par"
credentials = { access_key_env = "SCW_ACCESS_KEY", secret_key_env = "SCW_SECRET_KEY" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sites.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_loads_with_references_only(tmp_path: Path) -> None:
    config = load_sites(write(tmp_path, GOOD))
    hdh = config.site("azure-hdh")
    assert hdh.buckets == ("snds", "cohorts")  # `containers` is an alias of `buckets`
    assert hdh.credentials.connection_string_env == "HDH_AZURE_CONNECTION_STRING"
    assert config.state_dir == (tmp_path / ".migrate").resolve()
    assert config.runner.location == "FR"


def test_sites_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATE_SITES", str(write(tmp_path, GOOD)))
    assert "scw-par" in load_sites().sites
    # A stale variable (a shell profile's): the error says where the path came from.
    monkeypatch.setenv("MIGRATE_SITES", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone.toml \(from \$MIGRATE_SITES\) not found"):
        load_sites()
    with pytest.raises(ConfigError, match=r"other.toml \(--sites\) not found"):
        load_sites(tmp_path / "other.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sites.a\nprovider = 1", "not valid TOML"),
        ('[sites.a]\nprovider = "local"\nregoin = "x"\n', "sites.a.regoin: unknown key"),
        (
            '[sites.a]\nprovider = "local"\nbucket_prefx = "x"\n',
            "sites.a.bucket_prefx: unknown key (did you mean bucket_prefix?)",
        ),
        ('polcy = "fr-health"\n', "polcy: unknown key (did you mean policy?)"),
        ('[sites.a]\nregion = "x"\n', "sites.a.provider: required key is missing"),
        (
            '[sites.a]\nprovider = "s3"\nbuckets = "one"\n',
            'sites.a.buckets: should be a list, e.g. ["a", "b"]',
        ),
        (  # a law named "none" would fail the site (a review)
            '[sites.a]\nprovider = "self-hosted"\nnon_eu_law = ["none"]\n',
            "'none' is not a law's name: write non_eu_law = []",
        ),
    ],
)
def test_an_invalid_file_gets_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_sites(path)
    line = err.value.one_line()
    assert expected in line and str(path) in line and "\n" not in line
    assert err.value.exit_code == 3
    assert err.value.hint, "what to do, as every failure says it (a review: none here)"


def test_a_sites_path_that_is_a_directory_is_said_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_sites(tmp_path)
    assert err.value.one_line() == (
        f"sites file {tmp_path} is a directory (name the file itself, e.g. --sites sites.toml)"
    )


@pytest.mark.parametrize(
    "credentials",
    [
        'secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        f'access_key_env = "{EXAMPLE_KEY_ID}"',
        'connection_string_env = "DefaultEndpointsProtocol=https;AccountKey=abc"',
        'account_key_env = "not a variable name"',
        # Key ids of other stores pasted where a variable's name goes: never echoed.
        'access_key_env = "SCWABCDEFGHJKMNPQRST"',  # Scaleway's shape
        'access_key_env = "SC8XWQ2BTK4P0GM1RZ7N"',  # 20 capitals and digits (Outscale, Ceph)
        'access_key_env = "0f3c9a7e5b1d24680f3c9a7e5b1d2468"',  # 32 hex digits (OVHcloud)
        # A key pasted as a profile's name was echoed in "profile '...' not found" (a review)
        'profile = "1f3e9a2b-6c7d-4c5d-9e8f-0a1b2c3d4e5f"',  # Scaleway's secret keys
        'profile = "0f3c9a7e5b1d24680f3c9a7e5b1d2468"',
    ],
)
def test_a_secret_written_in_the_file_is_refused(tmp_path: Path, credentials: str) -> None:
    path = write(tmp_path, f'[sites.a]\nprovider = "scaleway"\ncredentials = {{ {credentials} }}\n')
    with pytest.raises(SecretInConfig) as err:
        load_sites(path)
    assert err.value.exit_code == 4
    value = credentials.split('"')[1]
    assert value not in err.value.one_line() or value == "not a variable name"
    assert "wJalrXUtnFEMI" not in err.value.one_line()
    assert EXAMPLE_KEY_ID not in err.value.one_line()


@pytest.mark.parametrize("field", ["endpoint", "proxy"])
@pytest.mark.parametrize(
    "url",
    [
        "https://admin:hunter2-canary@host.chu.example:3128",
        "admin:hunter2-canary@host.chu.example:3128",  # botocore takes a proxy without scheme
        "http://admin:hunter2-canary/x@host.chu.example:3128",  # a URL parser sees no @ there
        "http://admin:hunter2-canary@[::1",  # and no parser reads it: a secret first
    ],
)
def test_a_password_in_a_url_is_refused_and_never_shown(
    tmp_path: Path, field: str, url: str
) -> None:
    """It would be written into plans and reports with the URL."""
    text = (
        '[sites.chu]\nprovider = "self-hosted"\nsoftware = "ceph-rgw"\ncountry = "FR"\n'
        'endpoint = "https://s3.chu.example"\n'
        f'{field} = "{url}"\n'
    ).replace('endpoint = "https://s3.chu.example"\nendpoint', "endpoint")
    with pytest.raises(SecretInConfig) as err:
        load_sites(write(tmp_path, text))
    assert err.value.exit_code == 4
    assert f"sites.chu.{field}" in err.value.one_line()
    assert "hunter2-canary" not in err.value.one_line()


@pytest.mark.parametrize("field", ["endpoint", "proxy"])
@pytest.mark.parametrize("url", ["http://[::1-canary", "[::1-canary:3128"])
def test_a_url_no_parser_reads_is_a_config_error_that_does_not_repeat_it(
    tmp_path: Path, field: str, url: str
) -> None:
    text = (
        '[sites.chu]\nprovider = "self-hosted"\nsoftware = "ceph-rgw"\ncountry = "FR"\n'
        'endpoint = "https://s3.chu.example"\n'
        f'{field} = "{url}"\n'
    ).replace('endpoint = "https://s3.chu.example"\nendpoint', "endpoint")
    with pytest.raises(ConfigError) as err:
        load_sites(write(tmp_path, text))
    assert not isinstance(err.value, SecretInConfig)
    assert err.value.exit_code == 3
    assert f"sites.chu.{field} cannot be read as a URL" in err.value.one_line()
    assert "canary" not in err.value.one_line()


def test_proxy_credentials_need_a_proxy(tmp_path: Path) -> None:
    text = '[sites.a]\nprovider = "scaleway"\ncredentials = { proxy_auth_env = "PROXY_AUTH" }\n'
    with pytest.raises(ConfigError, match=r"proxy_auth_env: the site declares no proxy"):
        load_sites(write(tmp_path, text))


def test_a_secret_anywhere_in_the_file_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('account = "hdhprod"', 'account = "hdhprod;AccountKey=Zm9vYmFy"')
    with pytest.raises(SecretInConfig):
        load_sites(write(tmp_path, text))


def test_credentials_come_from_the_environment_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_sites(write(tmp_path, GOOD))
    site = config.site("scw-par")
    monkeypatch.delenv("SCW_ACCESS_KEY", raising=False)
    with pytest.raises(ConfigError, match="SCW_ACCESS_KEY is not set"):
        resolve_credentials(site)
    monkeypatch.setenv("SCW_ACCESS_KEY", "")  # set, to nothing: said so, not "not set"
    with pytest.raises(ConfigError, match="SCW_ACCESS_KEY is empty"):
        resolve_credentials(site)
    monkeypatch.setenv("SCW_ACCESS_KEY", "SCWCANARYACCESS")
    monkeypatch.setenv("SCW_SECRET_KEY", "canary-secret-value-123")
    creds = resolve_credentials(site)
    assert creds.secret_key == "canary-secret-value-123"
    assert "canary-secret-value-123" not in repr(creds)
    assert "canary-secret-value-123" not in str(creds)
    # Read, each is registered: a store's error repeating it is redacted wherever it is
    # said (a mutation review: nothing failed when they were not registered).
    said = ConfigError("the store said canary-secret-value-123 and SCWCANARYACCESS", hint="x")
    assert "canary-secret-value-123" not in said.one_line()
    assert "SCWCANARYACCESS" not in said.one_line()


def test_a_key_pasted_where_a_variable_name_goes_is_not_repeated_when_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Garage's key ids (GK + hex) and many secrets pass the shape of a variable's name: the
    "not set" message printed them back (a secrets review). A name in capitals is said."""
    pasted = "GK3515373e4c851ebaad366558"
    text = GOOD.replace('access_key_env = "SCW_ACCESS_KEY"', f'access_key_env = "{pasted}"')
    assert text != GOOD
    site = load_sites(write(tmp_path, text)).site("scw-par")
    monkeypatch.delenv(pasted, raising=False)
    with pytest.raises(ConfigError) as err:
        resolve_credentials(site)
    said = err.value.args[0] + " " + (err.value.hint or "")
    assert pasted not in said, said
    assert "the environment variable credentials.access_key_env names is not set" in said


def test_a_connection_string_endpoint_with_a_password_is_refused_without_repeating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BlobEndpoint with `user:password@` was printed in full by the endpoint's checks
    (plain HTTP, not a URL) in errors and --json (a secrets review)."""
    site = load_sites(write(tmp_path, GOOD)).site("azure-hdh")
    for endpoint in ("http://user:PwCanary9pass@blob.example.fr/acct",
                     "user:PwCanary9pass@127.0.0.1:10000",
                     "http://user:Pw/Canary9pass@blob.example.fr/acct"):  # fmt: skip
        monkeypatch.setenv(
            "HDH_AZURE_CONNECTION_STRING",
            f"AccountName=hdhprod;AccountKey=Zm9vYmFyYmF6cXV4;BlobEndpoint={endpoint}",
        )
        with pytest.raises(ConfigError) as err:
            resolve_credentials(site)
        assert err.value.exit_code == 3  # a secret in the environment, not the file
        for part in ("PwCanary9pass", "Canary9pass"):
            assert part not in err.value.args[0] + (err.value.hint or ""), part
            assert part not in err.value.one_line()
        assert "has an '@' in its BlobEndpoint (a user and password" in err.value.args[0]


def test_unknown_site_lists_the_known_ones(tmp_path: Path) -> None:
    config = load_sites(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="azure-hdh, scw-par"):
        config.site("nope")


def test_long_names_and_paths_are_not_taken_for_secrets(tmp_path: Path) -> None:
    long_name = "pseudonymisedhealthdataextractsfor2025and2026"  # 45 letters and digits
    path_dir = "/srv/hospital/Archive2025/PseudonymisedExtractsNorth"
    text = GOOD.replace('containers = ["snds", "cohorts"]', f'containers = ["{long_name}"]')
    text += f'\n[sites.own]\nprovider = "local"\npath = "{path_dir}"\n'
    config = load_sites(write(tmp_path, text))
    assert config.site("azure-hdh").buckets == (long_name,)
    # An account key (mixed case, digits, base64) is still refused wherever it is written.
    key = "Zm9vYmFyYmF6cXV4" + "Q29ycDIwMjZTZWNyZXRLZXlWYWx1ZUZvclRlc3Q=="
    with pytest.raises(SecretInConfig):
        load_sites(write(tmp_path, GOOD.replace('region = "francecentral"', f'region = "{key}"')))


@pytest.mark.parametrize(
    "text",
    [
        f'[sites.a]\nprovider = "scaleway"\n[sites.a.credentials]\n{EXAMPLE_KEY_ID} = "x"\n',
        f'[sites.{EXAMPLE_KEY_ID}]\nprovider = "scaleway"\n',
        f'[sites.a]\nprovider = "scaleway"\n[sites.a.credentials]\n{EXAMPLE_KEY_ID}_env = "X"\n',
    ],
)
def test_an_access_key_id_written_as_a_key_is_refused_without_repeating_it(
    tmp_path: Path, text: str
) -> None:
    with pytest.raises(SecretInConfig) as err:
        load_sites(write(tmp_path, text))
    assert err.value.exit_code == 4
    # The message itself does not repeat it (redaction is a second guard, not the first).
    # Read unredacted: another test's secret value may be a word of it ("secret").
    assert EXAMPLE_KEY_ID not in err.value.args[0] and EXAMPLE_KEY_ID not in err.value.one_line()
    assert "looks like a secret" in err.value.args[0]


def test_access_key_ids_are_redacted_from_any_message() -> None:
    from migrate.errors import ConfigError, redact

    temporary = "ASIA" + "Y34FZKBOKMUTVV7A"
    text = f"sites.{EXAMPLE_KEY_ID}.x, {EXAMPLE_KEY_ID}_env and ({temporary})"
    assert redact(text) == "sites.AKIA***.x, AKIA***_env and (ASIA***)"
    assert redact("variable SCWABCDEFGHJKMNPQRST is not set") == "variable SCW*** is not set"
    line = ConfigError(f"bad key {EXAMPLE_KEY_ID}", hint=f"write {EXAMPLE_KEY_ID}_env").one_line()
    assert EXAMPLE_KEY_ID not in line
    # Not a key id: longer, or lowercase, words are left as they are.
    longer = f"{EXAMPLE_KEY_ID}X {EXAMPLE_KEY_ID.lower()}"
    assert redact(longer) == longer
    # Key ids are base32 (A-Z, 2-7): a folder named like one, with a 0, keeps its name.
    assert redact("reports/ASIAPACIFICSALES2024/q1.csv") == "reports/ASIAPACIFICSALES2024/q1.csv"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('state_dir = ["a", "b"]', "state_dir"),
        ("state_dir = 5", "state_dir"),
        ('state_dir = ""', "state_dir"),
        ("catalog = 5", "catalog"),
        ('catalog = "nofile.yaml"', "catalog"),
        ("catalog = [5]", "catalog"),
    ],
)
def test_state_dir_and_catalog_of_the_wrong_type_are_one_line_errors(
    tmp_path: Path, line: str, key: str
) -> None:
    path = write(tmp_path, f"{line}\n{GOOD}")
    with pytest.raises(ConfigError) as err:
        load_sites(path)
    assert err.value.exit_code == 3
    assert f"{path}: {key}: should be" in err.value.one_line()


def test_a_catalog_list_is_read_relative_to_the_sites_file(tmp_path: Path) -> None:
    config = load_sites(write(tmp_path, f'catalog = ["my-catalog.yaml"]\n{GOOD}'))
    assert config.catalog == ((tmp_path / "my-catalog.yaml").resolve(),)


@pytest.mark.parametrize("key", ["endpoint", "proxy"])
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999", "https://s3.chu.example:0", "s3.chu.example:port"]
)
def test_an_invalid_port_is_refused_naming_the_site_and_the_key(
    tmp_path: Path, key: str, url: str
) -> None:
    text = '[sites.chu]\nprovider = "self-hosted"\nsoftware = "ceph-rgw"\ncountry = "FR"\n'
    text += f'{key} = "{url}"\n'
    with pytest.raises(ConfigError) as err:
        load_sites(write(tmp_path, text))
    assert err.value.exit_code == 3
    assert f"sites.chu.{key}: '{url}' has no valid port (1 to 65535)" in err.value.one_line()


def test_valid_ports_and_default_ports_are_accepted(tmp_path: Path) -> None:
    text = (
        '[sites.chu]\nprovider = "self-hosted"\nsoftware = "ceph-rgw"\ncountry = "FR"\n'
        'endpoint = "https://s3.chu.example:65535"\nproxy = "proxy.chu.example:3128"\n'
        '[sites.ipv6]\nprovider = "self-hosted"\nendpoint = "http://[::1]"\n'
    )
    config = load_sites(write(tmp_path, text))
    assert config.site("chu").endpoint == "https://s3.chu.example:65535"


@pytest.mark.parametrize(
    ("endpoint", "refused", "said"),
    [
        ("https://s3.fr-par.scw.cloud/?x=1", ConfigError, "has a query or a fragment"),
        ("https://s3.fr-par.scw.cloud#top", ConfigError, "has a query or a fragment"),
        ("https://hdh.blob.core.windows.net/?sv=2024&sig=c2VjcmV0", SecretInConfig, "SAS token"),
        ("https://h.example/?k=" + EXAMPLE_KEY_ID, SecretInConfig, "secret"),
    ],
)
def test_an_endpoint_with_a_query_is_refused_where_it_is_written(
    tmp_path: Path, endpoint: str, refused: type[Exception], said: str
) -> None:
    """It passed the checks, then failed the first request (exit 6, as if unreachable):
    now the file's line is named (found by a black-box review); a SAS token in it is a
    secret (exit 4), and neither is repeated."""
    text = GOOD.replace('region = "fr-par"', f'region = "fr-par"\nendpoint = "{endpoint}"')
    with pytest.raises(refused) as err:
        load_sites(write(tmp_path, text))
    line = str(err.value.args[0])
    assert "sites.scw-par.endpoint" in line and said in line, line
    assert "x=1" not in line and "c2VjcmV0" not in line


def test_a_misspelled_credential_key_is_told_the_key_it_meant(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[sites.a]\nprovider = "azure"\naccount = "x"\n'
        'credentials = { connection_string_var = "DEMO_AZURE_CONNECTION_STRING" }\n',
    )
    with pytest.raises(SecretInConfig) as err:
        load_sites(path)
    line = err.value.one_line()
    assert 'did you mean connection_string_env = "VARIABLE_NAME"?' in line, line
    assert "DEMO_AZURE_CONNECTION_STRING" not in line  # what it holds is not repeated


# Two letters that are no country (ZZ, UK: the code is GB) read "migrate runs in ZZ".
@pytest.mark.parametrize("location", ["France", "FRA", "F", "12", "ZZ", "UK"])
def test_a_runner_location_that_is_no_country_code_is_a_configuration_error(
    tmp_path: Path, location: str
) -> None:
    """`location = "France"` was judged a country outside the EU/EEA (a FAIL verdict, exit 8
    from run and verify): a typo said as a sovereignty failure (a walkthrough)."""
    text = GOOD.replace('location = "FR"', f'location = "{location}"')
    with pytest.raises(ConfigError, match=r"runner\.location: .*not a two-letter ISO 3166"):
        load_sites(write(tmp_path, text))
    assert load_sites(write(tmp_path, GOOD.replace('"FR"', '"fr"'))).runner.location == "fr"
    # blank, as a template leaves it: not declared (the runner's verdict UNKNOWN), no error
    assert load_sites(write(tmp_path, GOOD.replace('"FR"', '""'))).runner.location is None


def test_a_sites_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Windows editors begin a UTF-8 file with a BOM: "not valid TOML: Invalid statement
    (at line 1, column 1)" named nothing the user could see (a walkthrough)."""
    path = tmp_path / "sites.toml"
    path.write_bytes("\ufeff".encode() + GOOD.encode())
    assert load_sites(path).runner.location == "FR"


def test_a_proxy_password_may_end_with_a_space_a_key_may_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        '[sites.a]\nprovider = "scaleway"\nregion = "fr-par"\n'
        'proxy = "http://proxy.chu.example:3128"\n'
        'credentials = { access_key_env = "K", secret_key_env = "S", '
        'proxy_auth_env = "PROXY_AUTH" }\n'
    )
    site = load_sites(write(tmp_path, text)).site("a")
    monkeypatch.setenv("K", "SCWKEY")
    monkeypatch.setenv("S", "s3cr3t-value")
    monkeypatch.setenv("PROXY_AUTH", "ops:pass phrase ")
    assert resolve_credentials(site).proxy_auth == "ops:pass phrase "
    monkeypatch.setenv("S", "s3cr3t-value ")
    # (the field's name is not matched: a test before may have registered "secret" as a
    # secret, which redacts it out of every message)
    with pytest.raises(ConfigError, match=r"variable S \(credentials\..*\) begins or ends"):
        resolve_credentials(site)
