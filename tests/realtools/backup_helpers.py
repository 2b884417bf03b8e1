"""Run the rendered backup scripts outside a container, as the job runs them.

The scripts need restic 0.17 or newer (the job image pins 0.18.0); Debian bookworm has 0.14, so
`make test`'s set-up step unpacks restic 0.18.0 from Debian trixie's package (tools/prereqs.py,
the tool "restic"); the scripts' other tools are the ones tools/prereqs.py finds too.

Repositories are copies of one template, made once per test session: ``restic init`` costs 2-3 s
(it calibrates its key derivation) and every later command ~0.5 s deriving the key from the
password with the calibrated scrypt parameters. The template's key is re-wrapped with cheap
parameters (N=1024, r=1, p=1), which restic reads from the key file like any other: a command then
costs milliseconds of key derivation. The master key, and so the repository's format and data, are
restic's own; only the test password's wrapping is cheap.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305
from s3_harness import S3Server

from render.backup import BackupSpec, env_suffix, render_backup_scripts
from tests.tool_requirements import require_tool
from tools import prereqs

SNAPSHOT_HOST = "keel-test"
PASSWORD = "test-repository-password"
CHEAP_KDF = {"N": 1024, "r": 1, "p": 1}
# The scripts' own hooks for their tools (common.sh, drill.sh): given the paths tools/prereqs.py
# finds (PostgreSQL's client may sit outside PATH; a test whose tool is missing is skipped first).
TOOL_VARIABLES = {
    "PG_DUMP": "pg_dump",
    "PG_DUMPALL": "pg_dumpall",
    "PG_RESTORE": "pg_restore",
    "PSQL": "psql",
    "REDIS_CLI": "redis-cli",
    "REDIS_CHECK_RDB": "redis-check-rdb",
    "SQLITE3": "sqlite3",
}


def restic_binary() -> str:
    """The restic the scripts run with (0.18); without it the test is skipped (failed under CI=true)."""
    return require_tool("restic")


# ---- restic key files (internal/crypto and internal/repository/key.go of restic 0.17/0.18): scrypt
# derives 64 bytes from the password: a 32-byte AES-256-CTR key, then the 16-byte AES-128 key and the
# 16-byte r of Poly1305-AES. A sealed blob is nonce(16) || ciphertext || Poly1305 tag(16).


def _user_key(password: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes, bytes]:
    raw = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=1 << 30, dklen=64)
    return raw[:32], raw[32:48], raw[48:64]


def _tag(mac_k: bytes, mac_r: bytes, nonce: bytes, data: bytes) -> bytes:
    aes = Cipher(algorithms.AES(mac_k), modes.ECB()).encryptor()
    return Poly1305.generate_tag(mac_r + aes.update(nonce) + aes.finalize(), data)


def _unseal(key: tuple[bytes, bytes, bytes], blob: bytes) -> bytes:
    nonce, body, tag = blob[:16], blob[16:-16], blob[-16:]
    if _tag(key[1], key[2], nonce, body) != tag:
        raise AssertionError("the template's key does not open with the test password")
    decryptor = Cipher(algorithms.AES(key[0]), modes.CTR(nonce)).decryptor()
    return decryptor.update(body) + decryptor.finalize()


def _seal(key: tuple[bytes, bytes, bytes], plain: bytes) -> bytes:
    nonce = os.urandom(16)
    encryptor = Cipher(algorithms.AES(key[0]), modes.CTR(nonce)).encryptor()
    body = encryptor.update(plain) + encryptor.finalize()
    return nonce + body + _tag(key[1], key[2], nonce, body)


def cheapen_key(repository: Path, password: str = PASSWORD) -> None:
    """Re-wrap the master key of a local repository's only key file with CHEAP_KDF parameters."""
    [key_file] = list((repository / "keys").iterdir())
    key = json.loads(key_file.read_text())
    master = _unseal(
        _user_key(password, base64.b64decode(key["salt"]), key["N"], key["r"], key["p"]), base64.b64decode(key["data"])
    )
    salt = os.urandom(64)
    sealed = _seal(_user_key(password, salt, CHEAP_KDF["N"], CHEAP_KDF["r"], CHEAP_KDF["p"]), master)
    text = json.dumps(
        {**key, **CHEAP_KDF, "salt": base64.b64encode(salt).decode(), "data": base64.b64encode(sealed).decode()}
    ).encode()
    key_file.unlink()
    # A key file is named by the SHA-256 of its content.
    (repository / "keys" / hashlib.sha256(text).hexdigest()).write_bytes(text)


def template_repository(directory: Path) -> Path:
    """A fresh, empty restic repository with a cheap key, to be copied by each test."""
    repository = directory / "template-repository"
    result = subprocess.run(
        [restic_binary(), "init", "--repo", str(repository)], env={**os.environ, "RESTIC_PASSWORD": PASSWORD},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cheapen_key(repository)
    return repository


@dataclass
class BackupWorld:
    """Where the scripts, the repository, the secrets, the store volumes and the metrics live."""

    root: Path
    scripts: Path
    repository: str
    """A local path, or an s3: URL of the test's S3 server."""
    secrets: Path
    stores: Path
    textfile: Path
    work: Path
    ports: dict[str, int]
    s3: S3Server | None = None
    path_prefix: Path | None = None
    """A directory searched first for ``sh`` and every tool (busybox's applets: the job image's userland)."""
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        path = os.environ["PATH"] if self.path_prefix is None else f"{self.path_prefix}:{os.environ['PATH']}"
        env = {
            "PATH": path,
            "HOME": str(self.root),
            "TZ": "UTC",
            "RESTIC": restic_binary(),
            "RESTIC_REPOSITORY": self.repository,
            "RESTIC_PASSWORD_FILE": str(self.root / "restic-password"),
            "RESTIC_CACHE_DIR": str(self.root / "restic-cache"),
            "KEEL_SNAPSHOT_HOST": SNAPSHOT_HOST,
            "KEEL_SECRETS_DIR": str(self.secrets),
            "KEEL_STORES_DIR": str(self.stores),
            "KEEL_TEXTFILE_DIR": str(self.textfile),
            "KEEL_WORK_DIR": str(self.work),
            "KEEL_SCRIPTS_DIR": str(self.scripts),
            "KEEL_RUN_STARTED_FILE": str(self.root / "run-started"),
            "KEEL_S3_ACCESS_KEY_FILE": str(self.secrets / "s3-access-key"),
            "KEEL_S3_SECRET_KEY_FILE": str(self.secrets / "s3-secret-key"),
        }
        for variable, tool in TOOL_VARIABLES.items():
            found = prereqs.find(tool)
            if found is not None:
                env[variable] = found
        if self.s3 is not None:
            # The job's restic trusts the image's system store; this one trusts the test CA.
            env["SSL_CERT_FILE"] = str(self.s3.ca_file)
        for store, port in self.ports.items():
            env[f"KEEL_HOST_{env_suffix(store)}"] = "127.0.0.1"
            env[f"KEEL_PORT_{env_suffix(store)}"] = str(port)
        env.update(self.extra_env)
        return env

    def command(self, script: str, *args: str) -> list[str]:
        return ["sh", str(self.scripts / script), *args]

    def run(self, script: str, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(script, *args), env=self.env(), capture_output=True, text=True, timeout=timeout_s,
            check=False,
        )  # fmt: skip

    def restic(
        self, *args: str, timeout_s: float = 120, stdin_file: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """restic itself, as an operator would run it (the admin's S3 keys)."""
        env = self.env()
        if self.s3 is not None:
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = self.s3.keys["admin"]
        with (stdin_file or Path(os.devnull)).open("rb") as stdin:
            return subprocess.run(
                [restic_binary(), *args], env=env, stdin=stdin, capture_output=True, text=True, timeout=timeout_s,
                check=False,
            )  # fmt: skip

    def snapshots(self, *filters: str) -> list[dict[str, object]]:
        result = self.restic("snapshots", "--no-lock", "--json", *filters)
        assert result.returncode == 0, result.stderr
        return list(json.loads(result.stdout) or [])

    def locks(self) -> list[str]:
        result = self.restic("list", "locks", "--no-lock")
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    def use_s3_key(self, user: str) -> None:
        """Put a user's S3 keys in the secret files the job reads."""
        assert self.s3 is not None
        access, secret = self.s3.keys[user]
        (self.secrets / "s3-access-key").write_text(access)
        (self.secrets / "s3-secret-key").write_text(secret)

    def metrics(self, name: str = "keel_backup.prom") -> dict[str, float]:
        """The textfile's samples, "metric{labels}" -> value."""
        samples = {}
        for line in (self.textfile / name).read_text().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return samples


def backup_world(
    root: Path,
    spec: BackupSpec,
    *,
    template: Path,
    ports: dict[str, int] | None = None,
    s3: S3Server | None = None,
    repository: str | None = None,
    empty: bool = False,
) -> BackupWorld:
    """Render ``spec``'s scripts into ``root`` and prepare the directories they use. The repository
    is a copy of ``template``: in the bucket of ``s3`` (under a path of the test's own) or local;
    ``repository`` names another place, ``empty`` leaves it uncreated."""
    root.mkdir(parents=True, exist_ok=True)
    prefix = f"{root.parent.name}-{root.name}"
    if repository is None:
        repository = s3.repository(prefix) if s3 is not None else str(root / "repo")
    world = BackupWorld(
        root=root, scripts=root / "scripts", repository=repository, secrets=root / "secrets",
        stores=root / "stores", textfile=root / "textfile", work=root / "work", ports=dict(ports or {}), s3=s3,
    )  # fmt: skip
    for directory in (world.scripts, world.secrets, world.stores, world.work):
        directory.mkdir(parents=True, exist_ok=True)
    (root / "restic-password").write_text(PASSWORD)
    for name, text in render_backup_scripts(spec).items():
        (world.scripts / name).write_text(text)
    if s3 is not None:
        world.use_s3_key("backup")
    if not empty:
        if s3 is not None and repository.startswith(s3.repository("")):
            s3.upload_tree(template, repository.removeprefix(s3.repository("")))
        elif not repository.startswith("s3:"):
            shutil.copytree(template, repository)
    return world


@contextmanager
def job_lock_held(world: BackupWorld) -> Iterator[None]:
    """Hold the job lock as another job of the host would: flock(2) on the file (what `flock -n`
    in the scripts tries)."""
    with (world.work / "keel-jobs.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def busybox_userland(directory: Path) -> Path:
    """``directory`` filled with busybox's applets (sh, sed, awk, date, mktemp, find, ...): what the
    job image's alpine base runs the scripts with. Put it first on PATH to run them the same way.
    Debian's busybox has no flock applet (Alpine's has, with the -n used here): the system's is used."""
    busybox = require_tool("busybox")
    directory.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30, check=True)
    for applet in result.stdout.split():
        (directory / applet).symlink_to(busybox)
    return directory
