"""The sites file: where data is and where it goes, with references to credentials only.

A site names a provider (a catalog name), a region, an endpoint where the provider needs
one, its buckets/containers, and *where* its credentials are: environment variable names,
an AWS profile name, an Azure connection-string variable. A secret value written in the
file is refused (SecretInConfig) before anything else is read.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from migrate.errors import ConfigError, SecretInConfig, register_secret
from migrate.locations import SITES_ENV, sites_path, state_dir_of
from migrate.routing import split_url
from providers.countries import is_country

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Shapes of secrets that have no business in a sites file, whatever key holds them.
_SECRET_VALUE = [
    re.compile(r"AccountKey=", re.IGNORECASE),
    re.compile(r"SharedAccessSignature=|[?&]sig=", re.IGNORECASE),
    re.compile(r"\b(AKIA|ASIA)[A-Z2-7]{16}\b"),
    re.compile(r"\bSCW[A-Z0-9]{17}\b"),  # Scaleway's access-key ids
    re.compile(r"\bGOOG1[A-Z0-9]{20,}\b"),  # Google Cloud Storage HMAC key ids
]
# The same shapes as TOML keys (`[sites.AKIA...]`, `AKIA..._env = ...`): a key id is
# bounded by what is not part of one, `_` included.
_SECRET_KEY = [
    *_SECRET_VALUE[:2],
    re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z2-7]{16}(?![A-Z0-9])"),
    re.compile(r"(?<![A-Z0-9])SCW[A-Z0-9]{17}(?![A-Z0-9])"),
    re.compile(r"(?<![A-Z0-9])GOOG1[A-Z0-9]{20,}(?![A-Z0-9])"),
]
# What an `*_env` key holds instead of a variable's name when a key id was pasted there:
# 16 or more capitals and digits, two digits at least, no `_` (Outscale's, Ceph's, IONOS's
# are 20 such); or 32 hex digits (OVHcloud's). A variable's name has words and `_`.
_KEY_ID_AS_NAME = re.compile(r"^(?=(?:[A-Z]*[0-9]){2})[A-Z0-9]{16,}$|^[0-9a-fA-F]{32,}$")
# Long base64 (account keys, secret keys) mixes cases and digits; a long name or a path
# of plain words does not, so it is not taken for one (a secret in a field that names
# things, such as `path` or `buckets`, is a mistake this shape cannot tell from a name).
_LONG_BASE64 = re.compile(r"^[A-Za-z0-9+/]{40,}={0,2}$")
_NAMING_FIELDS = {"path", "state_dir", "buckets", "containers", "bucket_prefix", "endpoint"}


def _looks_like_key(value: str, field: str) -> bool:
    if not _LONG_BASE64.match(value) or field in _NAMING_FIELDS:
        return False
    mixed = any(c.isupper() for c in value) and any(c.islower() for c in value)
    return mixed and any(c.isdigit() for c in value) and not value.startswith("/")


_REFERENCE_KEYS = {"profile"}
# A key pasted as a profile's name: Scaleway's secret keys are UUIDs, OVHcloud's 32 hex
# digits, Outscale's ids 20 capitals and digits (a profile is named in words).
_KEY_AS_PROFILE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# Names only a credential goes by: written anywhere with a value, it is one (a site's
# `secret_key = "..."` is not an unknown key to spell again, but a secret in the file).
_CREDENTIAL_NAMES = {
    "access_key", "secret_key", "secret_access_key", "aws_access_key_id",
    "aws_secret_access_key", "session_token", "account_key", "sas_token",
    "connection_string", "password", "token", "proxy_auth",
}  # fmt: skip


class CredentialRef(BaseModel):
    """Where a site's credentials are found; never the credentials themselves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_env: str | None = None
    secret_key_env: str | None = None
    session_token_env: str | None = None
    profile: str | None = None  # AWS shared-config profile name
    connection_string_env: str | None = None  # Azure connection string
    account_key_env: str | None = None  # Azure shared key (with `account`)
    sas_token_env: str | None = None  # Azure SAS token
    proxy_auth_env: str | None = None  # "user:password" for the site's declared proxy


class Site(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    provider: str
    region: str | None = None
    endpoint: str | None = None
    buckets: tuple[str, ...] = Field(
        default=(), validation_alias=AliasChoices("buckets", "containers")
    )
    account: str | None = None  # Azure storage account
    path: str | None = None  # local directory root (provider "local")
    bucket_prefix: str = ""
    addressing: Literal["auto", "path", "virtual"] = "auto"
    signature_version: Literal["s3v4", "s3"] = "s3v4"
    allow_http: bool = False  # plain HTTP beyond loopback must be declared
    proxy: str | None = None  # a declared HTTP(S) proxy; undeclared ones are refused
    # Declared by self-hosted sites: the catalog cannot know these.
    software: str | None = None
    country: str | None = None
    operator: str | None = None
    # The operator's ultimate parent's country (its own, if it has no parent), and the
    # non-EU laws that reach either ([]: none): not inferred from `country`, where the data is.
    parent_country: str | None = None
    non_eu_law: tuple[str, ...] | None = None
    certifications: tuple[str, ...] = ()
    credentials: CredentialRef = CredentialRef()

    @field_validator("non_eu_law")
    @classmethod
    def _named_laws(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _laws(value)


def _laws(value: tuple[str, ...] | None) -> tuple[str, ...] | None:
    # ["none"] would read as a law named "none" that reaches the operator (a FAIL).
    for law in value or ():
        if not law.strip() or law.strip().lower() in ("none", "no", "n/a", "-"):
            raise ValueError(
                f"{law!r} is not a law's name: write non_eu_law = [] when none reaches the "
                'operator or its parent, else the laws\' names (e.g. ["US CLOUD Act"])'
            )
    return value


class Runner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    location: str | None = None  # ISO country code of the machine running migrate

    @field_validator("location")
    @classmethod
    def _two_letters(cls, value: str | None) -> str | None:
        # "France" was judged a country outside the EU (exit 8): a typo, not a verdict.
        if value is not None and not value.strip():
            return None  # blank, as in a template: not declared (UNKNOWN), as before
        if value is not None and not is_country(value):
            raise ValueError(f"{value!r} is not a two-letter ISO 3166 country code (e.g. FR)")
        return value


class SitesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    policy: str | None = None
    runner: Runner = Runner()
    state_dir: Path
    catalog: tuple[Path, ...] = ()  # the user's own catalog files (additions, overrides)
    sites: dict[str, Site]

    def site(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            known = ", ".join(sorted(self.sites)) or "none"
            raise ConfigError(
                f"{self.path}: no site named {name!r}",
                hint=f"sites defined: {known}",
            ) from None


def load_sites(explicit: Path | str | None = None) -> SitesConfig:
    path = sites_path(explicit)
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is no TOML error.
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        # Where the path came from: a stale variable in a shell's profile is easy to miss.
        named = (
            " (--sites)"
            if explicit
            else (f" (from ${SITES_ENV})" if os.environ.get(SITES_ENV) else "")
        )
        # Named whole: "sites.toml" alone does not say which directory was looked in.
        shown = path if path.is_absolute() else f"{path} ({path.absolute()})"
        raise ConfigError(
            f"sites file {shown}{named} not found",
            hint=f"pass --sites PATH or set {SITES_ENV}; see README 'Configuration'",
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"sites file {path} is a directory",
            hint="name the file itself, e.g. --sites sites.toml",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read sites file {path}: {exc}",
            hint="check its permissions, and that it is the TOML sites file (UTF-8 text)",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML: {exc}",
            hint="fix the line it names (README.md, 'Configuration', shows a sites file)",
        ) from None
    return parse_sites(raw, path)


def parse_sites(raw: dict[str, Any], path: Path) -> SitesConfig:
    _refuse_secrets(raw, path)
    sites_raw = raw.get("sites", {})
    if not isinstance(sites_raw, dict):
        raise ConfigError(f"{path}: 'sites' must be a table of [sites.NAME] sections")
    data = dict(raw)
    data["sites"] = {
        name: {**body, "name": name} if isinstance(body, dict) else body
        for name, body in sites_raw.items()
    }
    _check_paths(raw, path)
    data["state_dir"] = state_dir_of(raw, path)
    data["catalog"] = [(path.parent / p).resolve() for p in raw.get("catalog", [])]
    data["path"] = path
    try:
        config = SitesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            _first_error(exc, path),
            hint="README.md, 'Configuration', lists each key of a sites file and its values",
        ) from None
    for site in config.sites.values():
        if site.credentials.proxy_auth_env and not site.proxy:
            raise ConfigError(
                f"{path}: sites.{site.name}.credentials.proxy_auth_env: the site declares no proxy",
                hint='declare it with proxy = "http://HOST:PORT", or drop proxy_auth_env',
            )
        _check_ports(site, path)
    return config


def _check_paths(raw: dict[str, Any], path: Path) -> None:
    """`state_dir` and `catalog` are made into paths before the model sees them: their
    types are checked here, or `state_dir = 5` names a directory "5" and `catalog =
    "my.yaml"` is read as one file per character. `catalog` is a list, as the README
    writes it and as `buckets` is: a single string is refused the same way."""
    state_dir = raw.get("state_dir")
    if state_dir is not None and (not isinstance(state_dir, str) or not state_dir.strip()):
        raise ConfigError(
            f"{path}: state_dir: should be the path of a directory, as a string",
            hint='e.g. state_dir = ".migrate" (relative to the sites file)',
        )
    catalog = raw.get("catalog", [])
    if not isinstance(catalog, list) or not all(isinstance(c, str) and c for c in catalog):
        raise ConfigError(
            f"{path}: catalog: should be a list of file paths",
            hint='e.g. catalog = ["my-catalog.yaml"] (relative to the sites file)',
        )


def _check_ports(site: Site, path: Path) -> None:
    """An endpoint or proxy whose port no connection can use (`:99999`, `:0`, `:abc`) is a
    mistake in the file, said when the file is read, not a request refused later."""
    for key in ("endpoint", "proxy"):
        url = getattr(site, key)
        if url is None:
            continue
        if "://" not in url and re.match(r"(?i)https?[:/]", url):
            # `https:/host`, `http//host`: read as a host named "https" (its port "missing").
            raise ConfigError(
                f"{path}: sites.{site.name}.{key}: {url!r}: its scheme is mistyped",
                hint="write it as https://HOST or https://HOST:PORT",
            )
        try:
            parts = split_url(url)
            port = parts.port
            bad = port == 0 or (port is None and parts.netloc.endswith(":"))
        except ValueError:  # out of range, or not a number
            bad = True
        if bad:
            raise ConfigError(
                f"{path}: sites.{site.name}.{key}: {url!r} has no valid port (1 to 65535)",
                hint=f"correct the port in {key}, or leave it out for the scheme's default",
            )


def _first_error(exc: ValidationError, path: Path) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        near = _nearest_key([str(p) for p in err["loc"]])
        return f"{path}: {where}: unknown key" + (
            f" (did you mean {near}?)" if near else " (check its spelling against the README)"
        )
    if kind == "missing":
        return f"{path}: {where}: required key is missing"
    if kind in ("tuple_type", "list_type"):  # pydantic says "tuple": the file has lists
        return f'{path}: {where}: should be a list, e.g. ["a", "b"]'
    expected = err["msg"][0].lower() + err["msg"][1:]
    count = exc.error_count()
    more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
    return f"{path}: {where}: {expected}{more}"


def _nearest_key(loc: list[str]) -> str | None:
    """The known key nearest an unknown one, at the level where it was written."""
    import difflib

    model: type[BaseModel] = SitesConfig
    if "credentials" in loc[:-1]:
        model = CredentialRef
    elif loc[0] == "sites" and len(loc) == 3:
        model = Site
    elif loc[0] == "runner":
        model = Runner
    near = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.75)
    return near[0] if near else None


_URL_FIELDS = {"endpoint", "proxy"}


def _has_userinfo(url: str) -> bool:
    """Whether a URL may carry `user[:password]@`: any `@` (a password holding `/`, `?`
    or `#` hides it from a URL parser; an `@` in a path is written `%40`)."""
    return "@" in url


def _unreadable(url: str) -> bool:
    """A URL no parser reads (`http://[::1`): a mistake in the file, not repeated in the
    message (what it holds is not known)."""
    try:
        split_url(url)  # as it is used: a proxy without a scheme is read as http://
    except ValueError:
        return True
    return False


def _credential_hint(key: str) -> str:
    """What to write instead of `key = "..."` under credentials: its `_env` form where
    there is one, else the nearest key there is, else them all."""
    import difflib

    known = [k for k in CredentialRef.model_fields if k.endswith("_env")]
    if f"{key}_env" in known:
        return f'write {key}_env = "VARIABLE_NAME" and export the secret in that variable'
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if near:
        return f'did you mean {near[0]} = "VARIABLE_NAME"? (the secret in that variable)'
    return f"the credential keys are {', '.join(known)} (names of variables) and profile"


def _refuse_secrets(raw: Any, path: Path, where: str = "") -> None:
    """Refuse secret values anywhere in the file, before validation says anything else."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            if any(p.search(str(key)) for p in _SECRET_KEY):
                # A key id written as a key (`[sites.AKIA...]`, `AKIA... = "..."` under
                # credentials): refused like a value, and not repeated in the message.
                raise SecretInConfig(
                    f"{path}: a key under {where or 'the top level'} looks like a secret "
                    "(an access-key id or a key)",
                    hint="keep secrets in environment variables and reference them with *_env keys",
                )
            here = f"{where}.{key}" if where else str(key)
            if str(key).lower() in _CREDENTIAL_NAMES and isinstance(value, str) and value:
                raise SecretInConfig(
                    f"{path}: {here} holds a credential value",
                    hint=f'write credentials.{key}_env = "VARIABLE_NAME" in the site and '
                    "export the secret in that environment variable",
                )
            if where.endswith("credentials") and isinstance(value, str):
                if key == "profile" and (
                    _KEY_AS_PROFILE.match(value) or _KEY_ID_AS_NAME.match(value)
                ):
                    raise SecretInConfig(
                        f"{path}: {here} looks like a key (a UUID, long hex digits, or "
                        "capitals and digits), not the name of a profile",
                        hint="name the profile of ~/.aws/credentials that holds the keys, or "
                        'write access_key_env/secret_key_env = "VARIABLE_NAME" instead',
                    )
                if key not in _REFERENCE_KEYS and not key.endswith("_env"):
                    raise SecretInConfig(
                        f"{path}: {here} holds a credential value",
                        hint=_credential_hint(str(key)),
                    )
                if key.endswith("_env") and _ENV_NAME.match(value) and _KEY_ID_AS_NAME.match(value):
                    raise SecretInConfig(
                        f"{path}: {here} looks like an access-key id, not the name of an "
                        "environment variable (capitals and digits without a `_`)",
                        hint="name the variable with a `_`, such as SCW_ACCESS_KEY, and export "
                        "the key in it",
                    )
                if key.endswith("_env") and not _ENV_NAME.match(value):
                    raise SecretInConfig(
                        f"{path}: {here} must name an environment variable, not hold a value",
                        hint="use a name such as SCW_SECRET_KEY",
                    )
            if key in _URL_FIELDS and isinstance(value, str) and _has_userinfo(value):
                raise SecretInConfig(
                    f"{path}: {here} holds a user name or password in its URL (an `@`)",
                    hint="write the URL without `user:password@` (an @ in a path as %40); "
                    "a store's keys go in "
                    "`credentials` as *_env references, a proxy's user:password in the "
                    "variable `credentials.proxy_auth_env` names",
                )
            query = key in _URL_FIELDS and isinstance(value, str) and ("?" in value or "#" in value)
            if query and "sig=" in str(value).lower():
                # Not repeated: an Azure SAS token rides in a query (`?...&sig=...`).
                raise SecretInConfig(
                    f"{path}: {here} holds a SAS token in its URL (`sig=`)",
                    hint="write the URL without its query; give the SAS in the variable "
                    "`credentials.sas_token_env` names",
                )
            _refuse_secrets(value, path, here)
            if query:  # after every check for a secret (exit 4 first); not repeated
                raise ConfigError(
                    f"{path}: {here} has a query or a fragment (`?...`, `#...`), which "
                    "an endpoint has not",
                    hint="write it as scheme://host[:port][/path], e.g. "
                    "https://s3.fr-par.scw.cloud",
                )
            # After every check for a secret (exit 4 comes first): not repeated either.
            if key in _URL_FIELDS and isinstance(value, str) and _unreadable(value):
                raise ConfigError(
                    f"{path}: {here} cannot be read as a URL (an unclosed `[`, say)",
                    hint="write it as scheme://host[:port], e.g. https://s3.fr-par.scw.cloud "
                    "or http://[::1]:8333",
                )
    elif isinstance(raw, list):
        for i, value in enumerate(raw):
            _refuse_secrets(value, path, f"{where}[{i}]")
    elif isinstance(raw, str) and (
        any(p.search(raw) for p in _SECRET_VALUE)
        or _looks_like_key(raw, where.rsplit(".", 1)[-1].split("[", 1)[0])
    ):
        raise SecretInConfig(
            f"{path}: {where} looks like a secret (key or token)",
            hint="keep secrets in environment variables and reference them with *_env keys",
        )


@dataclass(frozen=True)
class Credentials:
    """Resolved secrets; lives in memory only, and its repr hides every value."""

    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    connection_string: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    proxy_auth: str | None = None

    def __repr__(self) -> str:
        shown = [f"{k}=***" for k, v in self.__dict__.items() if v and k != "profile"]
        return f"Credentials({', '.join(shown)})"


# Connection-string fields that say where, not who: left readable in messages (an error
# naming the account or its endpoint must show them). Every other field is hidden.
_PUBLIC_CONNECTION_FIELDS = frozenset(
    {
        "defaultendpointsprotocol",
        "accountname",
        "endpointsuffix",
        *(
            f"{svc}{kind}"
            for svc in ("blob", "queue", "table", "file", "dfs")
            for kind in ("endpoint", "secondaryendpoint")
        ),
    }
)


def proxy_url(site: Site) -> str | None:
    """The site's declared proxy, with the user and password of `proxy_auth_env` when it
    asks for them (`user:password@` in the URL: botocore and requests send them as
    Proxy-Authorization). Never stored or shown: the declared URL is."""
    if site.proxy is None or site.credentials.proxy_auth_env is None:
        return site.proxy
    auth = resolve_credentials(site).proxy_auth or ""
    user, colon, password = auth.partition(":")
    if not colon:
        raise ConfigError(
            f"site {site.name}: the variable {site.credentials.proxy_auth_env} "
            "(credentials.proxy_auth_env) must hold user:password",
            hint="export it as USER:PASSWORD",
        )
    parts = split_url(site.proxy)
    return parts._replace(
        netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    ).geturl()


def _credential_flaw(value: str, *, spaces: bool = True) -> str | None:
    """What no credential holds, said without the value: a control character (a carriage
    return, a newline) or, with `spaces`, a space at either end."""
    for i, char in enumerate(value):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            named = {"\r": "a carriage return", "\n": "a newline", "\t": "a tab"}
            what = named.get(char, f"the control character U+{ord(char):04X}")
            end = "at its end" if i == len(value) - 1 else f"at character {i + 1}"
            return f"holds {what} {end}"
    if spaces and value != value.strip():
        return "begins or ends with a space"
    return None


def _plain_variable_name(var: str) -> bool:
    """A variable's name as people write them (capitals, digits, `_`): safe to repeat. One
    with small letters may be a key pasted where its name goes (Garage's key ids,
    `GK3515373e4c...`, pass the shape of a name)."""
    return bool(re.fullmatch(r"[A-Z_][A-Z0-9_]*", var))


def _variable_named(var: str, field_name: str) -> tuple[str, str]:
    """How a message names the variable a credential field names: before and after what
    is said of it; its name not repeated where it may be a key (`_plain_variable_name`)."""
    if _plain_variable_name(var):
        return f"environment variable {var}", f" (credentials.{field_name})"
    return f"the environment variable credentials.{field_name} names", ""


def _userinfo(endpoint: str) -> str | None:
    """What stands before the last '@' of an endpoint URL (after its scheme, if any): a
    `user:password`, or more (a password may hold '/' or '?': not cut there), if any."""
    rest = endpoint.split("://", 1)[-1]
    return rest.rpartition("@")[0] or None


def resolve_credentials(site: Site) -> Credentials:
    """Read the environment variables a site references; each value is registered for
    redaction, so it can appear in no message."""
    ref = site.credentials
    values: dict[str, str | None] = {}
    for field_name in (
        "access_key_env",
        "secret_key_env",
        "session_token_env",
        "connection_string_env",
        "account_key_env",
        "sas_token_env",
        "proxy_auth_env",
    ):
        var = getattr(ref, field_name)
        if var is None:
            values[field_name.removesuffix("_env")] = None
            continue
        value = os.environ.get(var)
        if not value:
            named, where = _variable_named(var, field_name)
            raise ConfigError(
                f"site {site.name}: {named} is {'not set' if value is None else 'empty'}{where}",
                hint=f"export {var} before running migrate"
                if _plain_variable_name(var)
                else f"export the variable credentials.{field_name} names, or name one in "
                "capitals (a key pasted there instead of a name is not repeated here)",
            )
        register_secret(value)
        # A proxy's password may end with a space; a key, a secret, a SAS never does.
        if flaw := _credential_flaw(value, spaces=field_name != "proxy_auth_env"):
            # Sent in a header, it fails far from here: a library's ValueError (exit 1),
            # a dropped connection (exit 11), a rejected signature (exit 5).
            raise ConfigError(
                f"site {site.name}: {''.join(_variable_named(var, field_name))} {flaw}",
                hint=f"export {var if _plain_variable_name(var) else 'that variable'} again "
                "without it"
                + (
                    " (a file saved with Windows line endings leaves a carriage return: "
                    "`tr -d '\\r'`)"
                    if "carriage return" in flaw
                    else ""
                ),
            )
        if field_name == "proxy_auth_env":  # as it appears in a proxy URL, too
            user, _, password = value.partition(":")
            register_secret(password)
            register_secret(f"{quote(user, safe='')}:{quote(password, safe='')}")
            register_secret(quote(password, safe=""))
        for part in value.split(";"):  # connection strings: hide each secret component too
            name, eq, component = part.partition("=")
            if not eq:
                continue
            if name.strip().lower() not in _PUBLIC_CONNECTION_FIELDS:
                register_secret(component)
                continue
            if "?" in component:  # an endpoint with a query: a SAS, perhaps
                register_secret(component.split("?", 1)[1])
            if userinfo := _userinfo(component):
                # As a sites file's endpoint with a user and password is refused: printed
                # in full by the endpoint's checks before (a secrets review).
                for secret in (component, userinfo, userinfo.partition(":")[2]):
                    register_secret(secret)
                    register_secret(unquote(secret))
                raise ConfigError(
                    f"site {site.name}: the connection string in credentials.{field_name} "
                    f"has an '@' in its {name.strip()} (a user and password, which is "
                    "refused)",
                    hint="remove them (Azure Storage takes the account key or a SAS): "
                    "`scheme://host[:port]/path` only",
                )
        values[field_name.removesuffix("_env")] = value
    return Credentials(profile=ref.profile, **values)
