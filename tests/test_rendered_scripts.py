"""Every shell script the components render passes shellcheck, and says what it must."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from components.app_service import numeric_owner, volume_owner_script
from render import acme, data_volume, host_units, migration, proxy_runtime
from tests.tool_requirements import require_root, require_tool

SCRIPTS = {
    "proxy-writer": proxy_runtime.writer_script(
        volume="shop-proxy-conf", image="nginx:1.28.0-alpine", service="shop-proxy", digest="0" * 64
    ),
    "proxy-watcher": proxy_runtime.watcher_script(),
    "migration": migration.migration_script(
        image="ghcr.io/example/api:1.2.3",
        command=["npm", "run", "migrate"],
        network="shop-internal",
        env={"NODE_ENV": "production", "JWT_SECRET_FILE": "/run/secrets/jwt_secret"},
        user="10001:10001",
        timeout_s=600,
        registry_server="ghcr.io",
        registry_username="bot",
    ),
    "volume-owner": volume_owner_script(volume="shop-uploads-data", owner="10001:10001", image="nginx:1.28.0-alpine"),
    "data-volume": data_volume.prepare_script(
        directory="/mnt/data/volumes/shop-prometheus-data", owner="65534:65534", image="prom/prometheus:v3.1.0"
    ),
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


def test_migration_secrets_arrive_on_stdin_only():
    script = SCRIPTS["migration"]
    stdin = migration.migration_stdin({"jwt_secret": "s3cret-value"}, registry_password="registry-pass")
    assert "s3cret-value" not in script and "registry-pass" not in script
    assert stdin == "jwt_secret czNjcmV0LXZhbHVl\n.registry cmVnaXN0cnktcGFzcw==\n"
    assert '--mount "type=bind,source=$dir/secrets,target=/run/secrets,readonly"' in script
    assert 'timeout 600 docker run --rm --name "$container" --network shop-internal --user 10001:10001' in script
    # `timeout` kills only the client: the named container is removed on every exit.
    assert "registry=ghcr.io\n" in script
    assert """trap 'docker rm -f "$container" >/dev/null 2>&1; docker logout "$registry" """ in script


def test_migration_script_really_decodes_secrets_into_files(tmp_path: Path):
    """Run the script's decoding part with a fake `docker` that lists what it was given."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in type=bind,source=*) src=${a#type=bind,source=}; '
        'src=${src%%,*};; esac; done\n[ "$1" = run ] && cat "$src/jwt_secret"\nexit 0\n'
    )
    (fake / "docker").chmod(0o755)
    script = tmp_path / "migrate"
    script.write_text(SCRIPTS["migration"])
    result = subprocess.run(
        ["sh", str(script)],
        input=migration.migration_stdin({"jwt_secret": "s3cret-value"}, registry_password="pw"),
        capture_output=True,
        text=True,
        env={"PATH": f"{fake}:/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("s3cret-value")
    assert "migration of ghcr.io/example/api:1.2.3 succeeded" in result.stdout


def test_acme_renewal_uses_dns01_and_installs_atomically():
    script = SCRIPTS["acme"]
    assert "--dns dns_cf -d example.com -d www.example.com --keylength ec-256 --server letsencrypt" in script
    assert "mv /certs/tls.crt.new /certs/tls.crt" in script


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
