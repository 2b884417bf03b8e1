"""Every shell script the components render passes shellcheck, and says what it must."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.app_service import numeric_owner, volume_owner_script
from render import acme, data_volume, host_units, migration, proxy_runtime
from stores.mariadb import server as mariadb_server
from stores.postgres import server as pg
from tests.tool_requirements import require_root, require_tool

MIGRATION = migration.MigrationJob(
    name="shop-api-migration",
    image="ghcr.io/example/api:1.2.3@sha256:" + "a" * 64,
    command=("npm", "run", "migrate"),
    networks=("shop-edge", "shop-data"),
    env={"NODE_ENV": "production", "JWT_SECRET_FILE": "/run/secrets/jwt_secret"},
    secrets=(("api-jwt_secret-3f2a1b", "/run/secrets/jwt_secret"),),
    volumes=(("shop-uploads-data", "/app/uploads"),),
    tmpfs=("/tmp",),
    user="10001:10001",
    cap_add=("NET_BIND_SERVICE",),
    memory_mb=512,
    reservation_mb=256,
    cpus=1.0,
    constraints=("node.role==manager",),
    timeout_s=600,
    labels={"keel.role": "migration", "keel.service": "api"},
)

SCRIPTS = {
    "proxy-writer": proxy_runtime.writer_script(
        volume="shop-proxy-conf", image="nginx:1.28.0-alpine", service="shop-proxy", digest="0" * 64
    ),
    "proxy-watcher": proxy_runtime.watcher_script(),
    "migration": migration.migration_script(MIGRATION),
    "volume-owner": volume_owner_script(volume="shop-uploads-data", owner="10001:10001", image="nginx:1.28.0-alpine"),
    "data-volume": data_volume.prepare_script(
        directory="/mnt/data/volumes/shop-prometheus-data", owner="65534:65534", image="prom/prometheus:v3.1.0"
    ),
    "data-volume-by-name": data_volume.prepare_script(
        directory="/mnt/data/volumes/shop-db-data", owner="postgres", image="postgres:16.6-alpine"
    ),
    "postgres-roles": pg.roles_script("shop-db"),
    "mariadb-users": mariadb_server.users_script("shop-orders"),
    "reboot-required": host_units.reboot_required_script("/mnt/data/metrics"),
    "swarm-report": host_units.swarm_report_script("/mnt/data/metrics"),
    "acme": acme.renewal_script(
        domains=["example.com", "www.example.com"], email="ops@example.com", zone_id="0" * 32, staging=False
    ),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_passes_shellcheck(name: str, tmp_path: Path):
    path = tmp_path / name
    path.write_text(SCRIPTS[name])
    result = subprocess.run([require_tool("shellcheck"), "-s", "sh", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_migration_job_runs_as_the_service_does_with_no_secret_on_the_host():
    args = migration.create_command(MIGRATION)
    text = " ".join(args)
    assert args[:9] == ["docker", "service", "create", "--detach", "--quiet", "--name", "shop-api-migration",
                        "--mode", "replicated-job"]  # fmt: skip
    for expected in (
        "--restart-condition none",
        "--cap-drop ALL --cap-add NET_BIND_SERVICE",
        "--read-only --init --user 10001:10001",
        "--limit-memory 512m --reserve-memory 256m --limit-cpu 1.0",
        "--log-driver json-file --log-opt max-size=10m --log-opt max-file=3",
        "--constraint node.role==manager",
        "--network shop-edge --network shop-data",
        # The app's own swarm secret, by name: swarm puts the file in the task, the host never sees it.
        "--secret source=api-jwt_secret-3f2a1b,target=/run/secrets/jwt_secret,mode=0444",
        "--mount type=volume,source=shop-uploads-data,destination=/app/uploads",
        "--mount type=tmpfs,destination=/tmp",
        "--no-resolve-image",
    ):
        assert expected in text, expected
    assert args[-4:] == [MIGRATION.image, "npm", "run", "migrate"]
    script = SCRIPTS["migration"]
    assert "docker login" not in script and "mktemp" not in script and "base64" not in script


FAKE_SWARM = """#!/bin/sh
# Plays `docker service create|ps|logs|rm` for the migration script; logs every call to $CALLS.
echo "$*" >>"$CALLS"
case "$1 $2" in
  "service ps")
    if [ "$(grep -c '^service ps' "$CALLS")" -lt 3 ]; then echo "Running 1 second ago|"; else echo "$FINAL"; fi ;;
  "service logs") echo "migrated 3 tables" ;;
esac
exit 0
"""


@pytest.mark.parametrize(
    ("final", "succeeds"),
    [("Complete 1 second ago|", True), ("Failed 1 second ago|task: non-zero exit (1)", False)],
)
def test_the_migration_script_waits_for_the_job_and_reports_its_outcome(
    tmp_path: Path, final: str, succeeds: bool
) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_SWARM)
    (fake / "docker").chmod(0o755)
    (fake / "sleep").write_text("#!/bin/sh\nexit 0\n")  # no real waiting between polls
    (fake / "sleep").chmod(0o755)
    script = tmp_path / "migrate"
    script.write_text(SCRIPTS["migration"])
    calls = tmp_path / "calls"
    env = {"PATH": f"{fake}:/usr/bin:/bin", "CALLS": str(calls), "FINAL": final}
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, check=False)
    assert (result.returncode == 0) is succeeds, result.stderr
    assert "migrated 3 tables" in result.stdout
    lines = calls.read_text().splitlines()
    # An old job goes first, the new one is created, polled, its log shown, and it is removed at the end.
    assert lines[0] == "service rm shop-api-migration"
    assert lines[1].startswith("service create --detach --quiet --name shop-api-migration --mode replicated-job")
    assert lines[-1] == "service rm shop-api-migration"
    if succeeds:
        assert f"migration of {MIGRATION.image} succeeded" in result.stdout
    else:
        assert "FAILED: Failed 1 second ago|task: non-zero exit (1)" in result.stderr


def test_acme_renewal_uses_dns01_and_installs_atomically():
    script = SCRIPTS["acme"]
    assert "--dns dns_cf -d example.com -d www.example.com \\\n    --keylength ec-256 --server letsencrypt" in script
    assert "mv /certs/tls.crt.new /certs/tls.crt" in script


def test_acme_never_keeps_the_cloudflare_token_in_its_volume():
    script = SCRIPTS["acme"]
    # Read from the secret at each start; acme.sh's account settings (where dns_cf saves the token)
    # live on the task's tmpfs, for every call; a token an earlier version saved is removed.
    assert 'CF_Token="$(cat /run/secrets/cloudflare-token)"' in script
    calls = [line for line in script.splitlines() if line.strip().startswith("acme.sh ")]
    assert len(calls) == 3 and all('--accountconf "$conf"' in line for line in calls)
    assert "conf=/tmp/keel-acme-account.conf" in script
    assert "sed -i '/^SAVED_CF_/d' \"$home/account.conf\"" in script


def test_the_postgres_roles_arrive_on_stdin_and_run_as_the_superuser_in_the_task():
    script = SCRIPTS["postgres-roles"]
    expected = 'docker exec -i -u postgres "$container" psql --no-psqlrc --quiet --username postgres --dbname postgres'
    assert expected in script
    assert "label=com.docker.swarm.service.name=$service" in script


# Stands in for `docker run ... -v VOL:/volume ... -c SCRIPT`: runs SCRIPT here, on $VOLUME_DIR.
FAKE_DOCKER_RUN_C = """#!/bin/sh
while [ $# -gt 0 ]; do
  if [ "$1" = -c ]; then script=$2; break; fi
  shift
done
script=$(printf '%s' "$script" | sed "s#/volume#$VOLUME_DIR#g")
exec sh -c "$script"
"""


def test_volume_owner_script_hands_a_root_owned_volume_to_the_app_user(tmp_path: Path):
    """What a fresh volume looks like (root, 0755) becomes writable by the app's uid, contents included."""
    require_root("this test chowns files to another user")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_DOCKER_RUN_C)
    (fake / "docker").chmod(0o755)
    volume = tmp_path / "volume"
    (volume / "sub").mkdir(parents=True)
    (volume / "sub" / "app.db").write_text("x")
    os.chown(volume, 0, 0)
    volume.chmod(0o755)
    script = tmp_path / "owner"
    script.write_text(SCRIPTS["volume-owner"])
    env = {"PATH": f"{fake}:/usr/bin:/bin", "VOLUME_DIR": str(volume)}
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    for path in (volume, volume / "sub", volume / "sub" / "app.db"):
        assert (path.stat().st_uid, path.stat().st_gid) == (10001, 10001), path
    assert result.stdout == "shop-uploads-data belongs to 10001:10001\n"


def test_only_numeric_users_get_their_volumes_chowned():
    assert numeric_owner("10001:10001") == "10001:10001"
    assert numeric_owner("1000") == "1000:1000"
    assert numeric_owner("node") is None
    assert numeric_owner(None) is None


def test_proxy_writer_stdin_reads_back_into_its_files_and_nothing_else_does():
    files = {"nginx.conf": "http {\n}\n", "keel.d/status.conf": "", "keel.d/site.conf": "server {}"}
    assert proxy_runtime.read_writer_stdin(proxy_runtime.writer_stdin(files)) == files
    assert proxy_runtime.read_writer_stdin("#!/bin/sh\necho hi\n") is None
    assert proxy_runtime.read_writer_stdin("nginx.conf not*base64\n") is None
    assert proxy_runtime.read_writer_stdin("../nginx.conf aGk=\n") is None
    assert proxy_runtime.read_writer_stdin("") is None


def test_proxy_writer_reads_back_into_the_set_it_stages_and_the_volume_it_writes_into():
    files = {"nginx.conf": "http {\n  include keel.d/*.conf;\n}\n", "keel.d/site.conf": "server {}\n"}
    digest = proxy_runtime.set_digest(files)
    for volume in ("shop-proxy-conf", "odd volume"):
        script = proxy_runtime.writer_script(volume=volume, image="nginx:1.28.0-alpine", service="p", digest=digest)
        staged = proxy_runtime.read_writer(script, proxy_runtime.writer_stdin(files))
        assert staged == proxy_runtime.StagedSet(volume=volume, digest=digest, files=files)
    stdin = proxy_runtime.writer_stdin(files)
    assert proxy_runtime.read_writer(SCRIPTS["migration"], stdin) is None
    assert proxy_runtime.read_writer(script, "jwt_secret czNjcmV0\n") is None


def test_proxy_writer_whose_files_miss_the_digest_it_waits_for_is_an_error():
    """stage_script would refuse such a set on the host; the render says so instead of showing it."""
    files = {"nginx.conf": "http {}\n"}
    script = proxy_runtime.writer_script(volume="v", image="nginx:1.28.0-alpine", service="p", digest="0" * 64)
    with pytest.raises(ValueError, match=r"digest [0-9a-f]{64}, but waits for 0{64}"):
        proxy_runtime.read_writer(script, proxy_runtime.writer_stdin(files))


def test_a_store_volume_is_handed_to_the_image_user_by_name(tmp_path: Path):
    """The official images name their user (postgres, redis) with a uid that differs between their
    variants: the script looks it up inside the image (here: this machine's own postgres user)."""
    import pwd

    assert os.geteuid() == 0, "this test chowns files to another user: run it as root (as CI does)"
    postgres = pwd.getpwnam("postgres")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_DOCKER_RUN_C)
    (fake / "docker").chmod(0o755)
    volume = tmp_path / "volume"
    volume.mkdir()
    script = tmp_path / "prepare"
    script.write_text(SCRIPTS["data-volume-by-name"].replace("mkdir -p /mnt/data/volumes/shop-db-data", "true"))
    env = {"PATH": f"{fake}:/usr/bin:/bin", "VOLUME_DIR": str(volume)}
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert (volume.stat().st_uid, volume.stat().st_gid) == (postgres.pw_uid, postgres.pw_gid)
