"""Strict grammars for every config value that reaches another language or another program.

Each is anchored (``fullmatch``: ``re.match(...$)`` also accepts a trailing newline) and ASCII
(``re.ASCII``: ``\\w`` and ``\\d`` would accept any Unicode letter or digit). A value that passes
here is still quoted by the renderer that writes it (render/); either layer alone stops an
injection. Each function returns the problem as text (``found ...; expected ...``), or None.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import difflib
import ipaddress
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from config.errors import show


def _grammar(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


def matches(grammar: re.Pattern[str], value: str) -> bool:
    return grammar.fullmatch(value) is not None


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` when ``word`` is a close misspelling of one of ``choices``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


# ----------------------------------------------------------------------------- names on the network

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME = _grammar(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)+[a-z]{{2,63}}")
"""A lower-case DNS name with at least two labels (Cloudflare records, nginx server_name, SNI)."""
_HOST_OR_IP = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:.]+\])"


def hostname_problem(value: str) -> str | None:
    if matches(HOSTNAME, value):
        return None
    return f"found {show(value)}; expected a lower-case DNS name such as app.example.com"


EMAIL = _grammar(
    r"[A-Za-z0-9._%+-]{1,64}@(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def email_problem(value: str) -> str | None:
    if matches(EMAIL, value):
        return None
    return f"found {show(value)}; expected an e-mail address such as ops@example.com (ASCII letters, digits, . _ % + -)"


# ----------------------------------------------------------------------------- Docker image references

# distribution/reference v0.6.0, regexp.go (the grammar Docker parses references with). Go's
# RE2 `\w` is ASCII, so it is spelled out; the digest algorithms are those the daemon accepts
# (opencontainers/go-digest: sha256, sha384, sha512, with their exact hex lengths).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_AND_PORT = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN_AND_PORT}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}"
IMAGE = _grammar(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
IMAGE_NAME_MAX = 255  # reference.go, NameTotalLengthMax
REGISTRY_SERVER = _grammar(_DOMAIN_AND_PORT)


def image_problem(value: str) -> str | None:
    expected = "expected an image reference such as nginx:1.28.0-alpine or ghcr.io/org/app@sha256:<64 hex>"
    if len(value) > IMAGE_NAME_MAX + 1 + 128 + 1 + 7 + 128:
        return f"found {show(value)}; {expected}"
    found = IMAGE.fullmatch(value)
    if found is None:
        return f"found {show(value)}; {expected}"
    if len(found.group("name")) > IMAGE_NAME_MAX:
        return f"found {show(value)}, whose name is longer than {IMAGE_NAME_MAX} characters; {expected}"
    return None


def image_is_pinned(image: str) -> bool:
    """A digest, or a tag other than latest."""
    found = IMAGE.fullmatch(image)
    if found is None:
        return False
    return found.group("digest") is not None or found.group("tag") not in (None, "latest")


# ----------------------------------------------------------------------------- paths

ROUTE_PATH = _grammar(r"/(?:[A-Za-z0-9._~@:+-]+/?)*")
"""A URL path prefix for an nginx `location`: no spaces, quotes, ; { } $ % or empty segments."""
HTTP_PATH = _grammar(r"/(?:[A-Za-z0-9._~@:+-]+/?)*(?:\?[A-Za-z0-9._~@:+=&%/-]*)?")
"""A path (and query) the health probe requests inside the container."""
METRICS_PATH = _grammar(r"/(?:[A-Za-z0-9._~-]+/?)*")
"""A path Prometheus scrapes (its metrics_path has no query)."""
_SEGMENTS = r"(?:/[A-Za-z0-9._@+-]+)+"
ABSOLUTE_PATH = _grammar(_SEGMENTS)
RELATIVE_PATH = _grammar(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
PATH_MAX = 200


def _dot_segments(value: str) -> bool:
    return any(part in (".", "..") for part in value.split("/"))


def route_path_problem(value: str) -> str | None:
    expected = "expected a URL path prefix such as /api/ (letters, digits, . _ ~ @ : + - and single slashes)"
    if len(value) > PATH_MAX or not matches(ROUTE_PATH, value):
        return f"found {show(value)}; {expected}"
    if _dot_segments(value):
        return f"found {show(value)}, a path with . or .. segments, which nginx resolves away; {expected}"
    return None


def http_path_problem(value: str) -> str | None:
    if len(value) <= PATH_MAX and matches(HTTP_PATH, value) and not _dot_segments(value.split("?")[0]):
        return None
    return (
        f"found {show(value)}; expected a URL path such as /health or /health?full=1 "
        "(letters, digits, . _ ~ @ : + - /, and = & % in the query)"
    )


def metrics_path_problem(value: str) -> str | None:
    if len(value) <= PATH_MAX and matches(METRICS_PATH, value) and not _dot_segments(value):
        return None
    return f"found {show(value)}; expected a path such as /metrics (letters, digits, . _ ~ - and /, no query)"


# Where a mount would hide what Docker or keel put there: the kernel's files, or the secrets.
_MOUNT_RESERVED = ("/proc", "/sys", "/dev", "/run/secrets")


def mount_target_problem(value: str) -> str | None:
    if len(value) > PATH_MAX or not matches(ABSOLUTE_PATH, value):
        return f"found {show(value)}; expected an absolute path such as /app/data (letters, digits, . _ @ + -)"
    if _dot_segments(value):
        return f"found {show(value)}, a path with . or .. segments; expected a plain absolute path such as /app/data"
    for reserved in _MOUNT_RESERVED:
        if value == reserved or value.startswith(reserved + "/"):
            return f"found {show(value)}, which would hide {reserved} in the container; expected another path"
    return None


def host_directory_problem(value: str) -> str | None:
    if len(value) <= PATH_MAX and matches(ABSOLUTE_PATH, value) and not _dot_segments(value):
        return None
    return f"found {show(value)}; expected an absolute directory such as /srv/keel (letters, digits, . _ @ + -)"


def relative_file_problem(value: str) -> str | None:
    """A file inside a volume: relative, with no way out of it."""
    if len(value) <= PATH_MAX and matches(RELATIVE_PATH, value) and not _dot_segments(value):
        return None
    return (
        f"found {show(value)}; expected a path relative to the volume such as db/app.sqlite3 "
        "(letters, digits, . _ -, no leading /, no . or .. segments)"
    )


# ----------------------------------------------------------------------------- users, capabilities, constraints

_ID = r"(?:[0-9]{1,10}|[a-z_][a-z0-9_-]{0,31})"
CONTAINER_USER = _grammar(rf"{_ID}(?::{_ID})?")
LINUX_USER = _grammar(r"[a-z_][a-z0-9_-]{0,31}")


def container_user_problem(value: str) -> str | None:
    if matches(CONTAINER_USER, value) and all(not p.isdigit() or int(p) <= 2**31 - 1 for p in value.split(":")):
        return None
    return f"found {show(value)}; expected uid:gid such as 10001:10001, or a user name the image defines"


def runs_as_root(user: str) -> bool:
    uid = user.split(":", 1)[0]
    return uid == "root" or (uid.isdigit() and int(uid) == 0)


# linux/include/uapi/linux/capability.h (v6.12): every capability, without its CAP_ prefix.
CAPABILITIES = frozenset(
    """CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
    NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT
    SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
    AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ
    PERFMON BPF CHECKPOINT_RESTORE""".split()
)


def capability_problem(value: str) -> str | None:
    bare = value.removeprefix("CAP_")
    if bare in CAPABILITIES or value == "ALL":
        return None
    return (
        f"found {show(value)}; expected a Linux capability such as NET_BIND_SERVICE{did_you_mean(bare, CAPABILITIES)}"
    )


# docs.docker.com, "docker service create", Placement constraints: the attributes swarm knows.
CONSTRAINT = _grammar(
    r"(?:node\.(?:id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9._-]+)"
    r"|engine\.labels\.[A-Za-z0-9._-]+) ?(?:==|!=) ?[A-Za-z0-9._-]+"
)


def constraint_problem(value: str) -> str | None:
    if len(value) <= PATH_MAX and matches(CONSTRAINT, value):
        return None
    return f"found {show(value)}; expected a placement constraint such as node.role==manager or node.labels.disk==ssd"


NODE_LABEL_KEY = _grammar(r"[a-z][a-z0-9-]{0,30}(?:\.[a-z][a-z0-9-]{0,30}){0,3}")
NODE_LABEL_VALUE = _grammar(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
RESERVED_LABEL_PREFIX = "keel."


def node_label_key_problem(value: str) -> str | None:
    """A node label's key: lower-case dotted words (what a constraint's node.labels.<key> names)."""
    if not matches(NODE_LABEL_KEY, value):
        return f"found {show(value)}; expected a label key such as tier or disk.type (a-z, 0-9, - and dots)"
    if value.startswith(RESERVED_LABEL_PREFIX) or value == "keel":
        return f"found {show(value)}; keys under keel. are set by keel itself (keel.node names each node)"
    return None


def node_label_value_problem(value: str) -> str | None:
    if matches(NODE_LABEL_VALUE, value):
        return None
    return f"found {show(value)}; expected a label value such as app or ssd (letters, digits, ., _ and -)"


# ----------------------------------------------------------------------------- endpoints

S3_ENDPOINT = _grammar(rf"(?:https?://)?{_HOST_OR_IP}(?::[0-9]{{1,5}})?/?")
S3_REGION = _grammar(r"[a-z0-9][a-z0-9-]{0,31}")
SMTP_HOST = _grammar(rf"{_HOST_OR_IP}:[0-9]{{1,5}}")
DOCKER_HOST = _grammar(
    rf"unix://{_SEGMENTS}|tcp://{_HOST_OR_IP}:[0-9]{{1,5}}|ssh://[a-z_][a-z0-9_-]{{0,31}}@{_HOST_OR_IP}(?::[0-9]{{1,5}})?"
)
REGISTRY_USERNAME = _grammar(r"[A-Za-z0-9][A-Za-z0-9._@+$-]{0,254}")
PRINTABLE = _grammar(r"[\x21-\x7e]{1,255}")
"""Printable ASCII without spaces: a user name for SMTP."""
REASON = _grammar(r"[\x20-\x7e]{10,300}")
"""An exemption's reason: a sentence of printable ASCII."""


def port_in_range(text: str) -> bool:
    return text.isdigit() and 1 <= int(text) <= 65535


# ----------------------------------------------------------------------------- SSH public keys

SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
SSH_KEY_LINE = _grammar(
    r"(?P<type>[a-z0-9@.-]{1,40}) (?P<blob>[A-Za-z0-9+/]{20,16384}={0,2})(?: (?P<comment>[\x20-\x7e]{0,256}))?"
)
MIN_RSA_BITS = 2048


def ssh_key_problem(line: str) -> str | None:
    """An authorized_keys line: a known type, a base64 blob that names the same type and parses,
    and a printable comment (a newline there would add a second, unchecked key)."""
    expected = "expected an OpenSSH public key line such as 'ssh-ed25519 AAAA... you@laptop'"
    found = SSH_KEY_LINE.fullmatch(line)
    if found is None:
        return f"found {show(line[:40])}; {expected}"
    key_type = found.group("type")
    if key_type not in SSH_KEY_TYPES:
        return f"found the key type {show(key_type)}; expected one of {', '.join(SSH_KEY_TYPES)}"
    try:
        blob = base64.b64decode(found.group("blob"), validate=True)
    except (binascii.Error, ValueError):
        return f"found {show(line[:40])}, whose key data is not base64; {expected}"
    inner = _ssh_string(blob)
    if inner != key_type.encode():
        inside = show(inner.decode("ascii", "replace")) if inner else "nothing"
        return f"found {show(line[:40])}, whose key data is a {inside} key, not {key_type}; {expected}"
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    try:
        key = load_ssh_public_key(f"{key_type} {found.group('blob')}".encode())
    except (ValueError, TypeError):
        return f"found {show(line[:40])}, whose key data does not parse as {key_type}; {expected}"
    except Exception:  # noqa: BLE001 (cryptography raises UnsupportedAlgorithm for some curves)
        return f"found {show(line[:40])}, whose key data does not parse as {key_type}; {expected}"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"found a {key.key_size}-bit RSA key; expected at least {MIN_RSA_BITS} bits (or an ed25519 key)"
    return None


def _ssh_string(blob: bytes) -> bytes | None:
    if len(blob) < 4:
        return None
    length = int.from_bytes(blob[:4], "big")
    if length > len(blob) - 4:
        return None
    return blob[4 : 4 + length]


# ----------------------------------------------------------------------------- networks


def covers_everything(networks: Iterable[str]) -> str | None:
    """The address family whose whole space the union of ``networks`` covers, if any."""
    parsed = [ipaddress.ip_network(n, strict=False) for n in networks]
    for family, world in ((4, "0.0.0.0/0"), (6, "::/0")):
        of_family = [n for n in parsed if n.version == family]
        collapsed = list(ipaddress.collapse_addresses(of_family))  # type: ignore[type-var]
        if [str(n) for n in collapsed] == [world]:
            return world
    return None


# ----------------------------------------------------------------------------- cron

# The schedule goes to swarm-cronjob v1.14.0 (internal/app/app.go: robfig/cron v3 with
# SecondOptional | Minute | Hour | Dom | Month | Dow | Descriptor). Five fields only, and of
# robfig's syntax the part croniter (the tests' oracle for config/cron.py's intervals) reads the same way:
# no `?`, no `N/step` (robfig reads it as N-max/step), no `*/1` and no `*` inside a list (robfig
# marks only a bare `*` as "any" when it decides between day-of-month AND/OR day-of-week).
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# vendor/github.com/robfig/cron/v3/spec.go, bounds: day of week is 0-6 (7 is refused).
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_CRON_ITEM = _grammar(
    r"(?P<low>[0-9]{1,2}|[A-Za-z]{3})(?:-(?P<high>[0-9]{1,2}|[A-Za-z]{3})(?:/(?P<step>[0-9]{1,2}))?)?"
)
_CRON_STAR = _grammar(r"\*(?:/(?P<step>[0-9]{1,2}))?")
# robfig gives up on a schedule that does not fire within five years (spec.go, Next: yearLimit).
_HORIZON_DAYS = 5 * 365 + 1
_REFERENCE_DAY = datetime.date(2025, 1, 1)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    any_day: bool
    months: frozenset[int]
    weekdays: frozenset[int]
    any_weekday: bool

    def runs_on(self, day: datetime.date) -> bool:
        """robfig's dayMatches: AND when either day field is `*`, OR when both are restricted."""
        if day.month not in self.months:
            return False
        on_day = day.day in self.days
        on_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return on_day and on_weekday
        return on_day or on_weekday

    def run_days(self) -> list[datetime.date]:
        days = (_REFERENCE_DAY + datetime.timedelta(days=offset) for offset in range(_HORIZON_DAYS))
        return [day for day in days if self.runs_on(day)]

    def shortest_gap_s(self) -> int | None:
        """The shortest time between two runs, or None when it never runs twice in five years."""
        times = sorted(h * 60 + m for h in self.hours for m in self.minutes)
        run_days = self.run_days()
        if not run_days or (len(run_days) == 1 and len(times) == 1):
            return None
        gaps = [b - a for a, b in itertools.pairwise(times)]
        consecutive = [b - a for a, b in itertools.pairwise(run_days)]
        if consecutive:
            gaps.append(min(consecutive).days * 1440 + times[0] - times[-1])
        return min(gaps) * 60


def parse_cron(text: str) -> Cron | str:
    """The schedule, or the problem with it (found ...; expected ...)."""
    expected = "expected 5 cron fields (minute hour day-of-month month day-of-week) such as '0 3 * * *'"
    fields = text.split(" ")
    if len(text) > 100 or len(fields) != 5 or not all(fields):
        return f"found {show(text)}; {expected}, separated by single spaces"
    values: list[tuple[frozenset[int], bool]] = []
    for field, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        parsed = _cron_field(field, low, high, names)
        if isinstance(parsed, str):
            return f"found {show(text)}: the {name} field {show(field)} {parsed}"
        values.append(parsed)
    (minutes, _), (hours, _), (days, any_day), (months, _), (weekdays, any_weekday) = values
    return Cron(minutes, hours, days, any_day, months, weekdays, any_weekday)


def _cron_field(field: str, low: int, high: int, names: dict[str, int] | None) -> tuple[frozenset[int], bool] | str:
    star = _CRON_STAR.fullmatch(field)
    if star is not None:
        step = star.group("step")
        if step is None:
            return frozenset(range(low, high + 1)), True
        if int(step) < 2 or int(step) > high:
            return f"has the step {step}; expected 2 to {high} (write * for every value)"
        return frozenset(range(low, high + 1, int(step))), False
    chosen: set[int] = set()
    for item in field.split(","):
        found = _CRON_ITEM.fullmatch(item)
        if found is None:
            allowed = " or their names (jan, mon)" if names else ""
            return f"is not valid; expected *, */step, or a list of values, ranges a-b and a-b/step{allowed}"
        bounds = []
        for part in (found.group("low"), found.group("high") or found.group("low")):
            value = names.get(part.lower()) if names is not None and part.isalpha() else None
            if value is None:
                if not part.isdigit():
                    return f"names {show(part)}; expected numbers{' or names such as jan, mon' if names else ''}"
                value = int(part)
            if not low <= value <= high:
                return f"holds {part}; expected values from {low} to {high}"
            bounds.append(value)
        step = int(found.group("step") or 1)
        if bounds[0] > bounds[1] or step < 1:
            return f"holds the range {show(item)}; expected a-b with a <= b and a step of at least 1"
        chosen.update(range(bounds[0], bounds[1] + 1, step))
    return frozenset(chosen), False
