"""The project's errors: one small tree, each type with its exit code and a one-line message.

    MigrateError                     (exit 1, unexpected)
    ├── UsageError                   (2)  an option missing that another needs, or in conflict
    ├── ConfigError                  (3)  sites file or option is wrong
    │   └── SecretInConfig           (4)  a secret value written where a reference belongs
    ├── CredentialsRejected          (5)  the store refused the credentials
    ├── EndpointUnreachable          (6)  no answer from the endpoint
    ├── NotFound                     (7)  bucket/container or object missing
    ├── PolicyViolation              (8)  a site fails the sovereignty policy
    ├── PlanError                    (9)  plan invalid, blocked, not approved or edited
    │   └── PlanTampered             (9)
    ├── RouteRefused                 (10) a request to a host outside the allowlist
    ├── TransferError                (11) an object could not be copied
    │   ├── Retryable                     throttling, timeouts, resets: try again
    │   │   └── NoAnswer                      a timeout or a cut connection: no answer
    │   └── Permanent                     retrying will not help
    │       ├── ListingOutOfOrder             a listing not in key order: resume cannot trust it
    │       └── PreconditionFailed            a conditional write found another object there
    ├── IntegrityError               (12) bytes do not match their checksum
    │   ├── ChecksumMismatch
    │   └── SourceChanged                 the source object changed during its copy
    └── Unsupported                  (13) the store cannot do what was asked

The type decides whether to retry and which exit code the CLI returns. Messages name the
site, container, key or host and what to do, never a credential: every message passes
through `redact()` before it is shown. Under `--json` a failure is also one JSON object on
stdout, `{"error": {"exit_code", "kind", "message", "hint"}}` (`error_json`).
"""

from __future__ import annotations

import json
import re


class MigrateError(Exception):
    """Base of every error the user may see. `hint` says what to do next."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return printable(redact(" ".join(text.split())))


class UsageError(MigrateError):
    """The command line lacks what it needs (an option another one needs): as typer's own
    usage errors, exit 2."""

    exit_code = 2


class ConfigError(MigrateError):
    exit_code = 3


class StateUnwritable(ConfigError):
    """The state file can no longer be written (its disk full, an I/O error)."""


class SecretInConfig(ConfigError):
    exit_code = 4


class CredentialsRejected(MigrateError):
    exit_code = 5


class KeyRejected(CredentialsRejected):
    """The credentials themselves refused (a wrong key or signature, an unknown key, an
    expired token), not a permission on one object: every request to the site will be
    refused alike, so a run stops rather than fail each object."""


class EndpointUnreachable(MigrateError):
    exit_code = 6


class StoreFull(EndpointUnreachable):
    """The destination has no space left (a local disk, a quota): every object would fail
    the same way, so a run stops, as for a store gone, and resumes once space is made."""


class NotFound(MigrateError):
    exit_code = 7


class SiteRootMissing(NotFound):
    """The directory a local site is (its `path`) does not exist: not a bucket a run
    makes, but a path to correct or make (a run makes no site's root)."""


class PolicyViolation(MigrateError):
    exit_code = 8


class PlanError(MigrateError):
    exit_code = 9


class PlanTampered(PlanError):
    pass


class RouteRefused(MigrateError):
    exit_code = 10


class GlobalEndpointRefused(RouteRefused):
    """A request to an endpoint that does not say where the data is served (AWS's
    us-east-1 one): what `sites check` cannot contact a site by, not a failure of it."""


class TransferError(MigrateError):
    exit_code = 11


class Retryable(TransferError):
    """Throttling (429, 503 SlowDown, ServerBusy), timeouts, connection resets."""


class NoAnswer(Retryable):
    """A request the store did not answer: timed out, or the connection cut. Unlike a
    throttling answer, it says nothing of whether the store is still there."""


class Permanent(TransferError):
    pass


class ListingOutOfOrder(Permanent):
    """A store listed a key below one it listed before: a marker saved from that listing
    does not say what is left to list."""


class PreconditionFailed(Permanent):
    """A write conditioned on what its key holds (nothing, or an object of a given ETag)
    found something else there: another writer put an object under the key since it was
    checked. Nothing was written."""


class CompletionRaced(Permanent):
    """A store refused to complete a multipart upload that raced another write of its key
    (AWS: 409 ConditionalRequestConflict); that upload cannot be completed as it is. A
    retry whose first completion was stored, its answer lost, can be answered so too."""


class IntegrityError(MigrateError):
    exit_code = 12


class ChecksumMismatch(IntegrityError):
    pass


class SourceChanged(IntegrityError):
    pass


class Unsupported(MigrateError):
    exit_code = 13


class PlanBusy(MigrateError):
    """Another process runs or verifies the same plan: two would copy every object twice,
    and a verification could mark verified what a run was still changing."""

    exit_code = 14


class StateBusy(PlanBusy):
    """Another process holds the state file's write lock longer than this one waits."""


# What stops a run: the store, its key or the state, not the object (a permission refused
# may be one object's: a bucket policy on a prefix; a key refused is every object's).
SITE_WIDE: tuple[type[MigrateError], ...] = (
    EndpointUnreachable,
    KeyRejected,
    StateUnwritable,
    StateBusy,
)


class DemoBusy(PlanBusy):
    """Another `migrate demo` holds the same workdir: a second would delete its servers'
    data and state under it."""


class InventorySuperseded(PlanBusy):
    """A newer listing of the same site (a delta's re-list, another `migrate inventory`)
    started while this one ran: two would record each other's objects as deleted."""


def as_store_failure(exc: MigrateError) -> MigrateError:
    """A store request that failed for good where no object is being copied (a check, the
    inventory, a plan's reads, a verification): the endpoint's failure (exit 6), not
    objects failing to transfer (11, which `run` keeps)."""
    if not isinstance(exc, TransferError):
        return exc
    return EndpointUnreachable(
        exc.message,
        hint=exc.hint
        or "check the site's endpoint, provider and network: does it answer as a store of "
        "that kind?",
    )


# Exit codes documented in the README; a test keeps this table and the README in step.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected error (run again with --debug and report it)",
    2: "wrong command-line usage (an unknown command or option, a missing argument, a value "
    "not of the option's type, an option missing that another needs, or two that cannot go "
    "together)",
    3: "configuration error (sites file; an option's value out of range or not understood; "
    "the state or the output cannot be written: a full disk, say)",
    4: "a secret is written in the sites file (or in a catalog file's endpoint or source)",
    5: "credentials rejected by a store (a local site: permission denied)",
    6: "endpoint unreachable, or failing outside a run (not answering as a store of its kind); "
    "a destination with no space left",
    7: "bucket, container or object not found",
    8: "a site or the runner fails the sovereignty policy (`sites check --fail-on-policy`; a "
    "run, dry run or verify whose destination or runner the plan's policy blocks now)",
    9: "plan invalid, blocked (a gate, --max-remove), not approved or edited after approval",
    10: "a request was refused by the routing guard",
    11: "some objects failed to transfer",
    12: "integrity check failed (checksum mismatch, source changed, verification failed; "
    "a report `--require-verified` that is not verified)",
    13: "the store does not support the operation",
    14: "another process is running or verifying the same plan, listing the same site, "
    "running a demo in the same workdir, or holding the state file's write lock (wait for "
    "it to end)",
    130: "interrupted (Ctrl-C, or SIGTERM); run the same command again: a run or an inventory "
    "resumes where it stopped",
}
INTERRUPTED = 130
INTERRUPTED_MESSAGE = "interrupted"
INTERRUPTED_HINT = "run the same command again: a run or an inventory resumes where it stopped"
INTERRUPTED_LINE = f"migrate: {INTERRUPTED_MESSAGE} ({INTERRUPTED_HINT})"
# `kind` of the --json error object for what is not a MigrateError.
UNEXPECTED, USAGE, INTERRUPTED_KIND = "UnexpectedError", "UsageError", "Interrupted"


def wants_json(args: list[str]) -> bool:
    """Whether the command line asks for --json (before a `--`, which ends the options)."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def kind_of(error: MigrateError) -> str:
    """The error's kind for --json: its family, one per exit code (the outermost class of
    its type's with the same code: KeyRejected is a CredentialsRejected, PlanTampered a
    PlanError), so that a script matching on it sees the same kind for the same failure
    whichever command met it and however precisely."""
    kind = type(error)
    for base in kind.__mro__[1:]:
        if not (isinstance(base, type) and issubclass(base, MigrateError)):
            break
        if base is MigrateError or base.exit_code != error.exit_code:
            break
        kind = base
    return kind.__name__


def error_object(
    exit_code: int, kind: str, message: str, hint: str | None = None
) -> dict[str, object]:
    """A failure as `--json` names it: the exit code, the error's kind (`kind_of`), and the
    stderr line's message and hint, each redacted."""
    return {
        "exit_code": exit_code,
        "kind": kind,
        "message": redact(" ".join(message.split())),
        "hint": redact(" ".join(hint.split())) if hint else None,
    }


def error_json(exit_code: int, kind: str, message: str, hint: str | None = None) -> str:
    """The one JSON object `--json` prints on stdout for a failure, `{"error": ...}` (see
    `error_object`). On one line, as the failure's stderr line, and as each line of JSON
    Lines output (`status --failed --json`). Keys sorted, as every --json output."""
    error = error_object(exit_code, kind, message, hint)
    return json.dumps({"error": error}, sort_keys=True, ensure_ascii=False)


# Values that must never be shown: registered by whoever reads a secret (credential
# resolution), removed from any text before it leaves the process.
_SECRETS: set[str] = set()
_SECRET_PATTERNS = [
    re.compile(r"(AccountKey=)[^;\s]+", re.IGNORECASE),
    re.compile(r"(SharedAccessSignature=)[^;\s]+", re.IGNORECASE),
    re.compile(r"([?&]sig=)[^&\s]+", re.IGNORECASE),
    re.compile(r"(Signature=)[0-9a-f]{16,}", re.IGNORECASE),
    re.compile(r"(Credential=)[^,\s]+", re.IGNORECASE),
    # AWS access-key ids (long-term AKIA, temporary ASIA): the kind stays readable. Not
    # \b-bounded: `AKIA..._env` (a key id made a TOML key, then a hint) must match too.
    # Key ids are base32 (A-Z, 2-7): `ASIAPACIFICSALES2024` (a 0) names a folder, not a key.
    re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[A-Z2-7]{16}(?![A-Z0-9])"),
    re.compile(r"(?<![A-Z0-9])(SCW)[A-Z0-9]{17}(?![A-Z0-9])"),  # Scaleway's
]


# And the invisible marks that reorder what follows them (a right-to-left override shows
# `gpj.exe` as `exe.jpg`): a name is shown in the order its characters have.
_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}]")
_CONTROL_BUT_NEWLINE = re.compile(f"[\\x00-\\x09\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")


def printable(text: str, *, newlines: bool = False) -> str:
    """Text as a terminal shows it and not as it acts on one: a control character (a key
    may hold a newline, or ESC and a sequence that erases the line and writes another) as
    a backslash escape, `\\x1b`. For what a person reads; --json keeps names as they are.
    `newlines`: kept (a table cell's lines), every other control escaped."""
    pattern = _CONTROL_BUT_NEWLINE if newlines else _CONTROL
    return pattern.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text
    )


def register_secret(value: str) -> None:
    """Remember a secret value so that redact() removes it from any message."""
    if len(value) >= 6:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text
