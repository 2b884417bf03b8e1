"""The one-off migration run: the new image, the app's env and secrets, before the rollout.

Swarm has no "run once before the update" primitive and a one-off container cannot mount
swarm secrets, so the migration runs as `docker run --rm` on the host, on the internal
network, with the app's secrets written to a private temporary directory mounted where the
service sees them (/run/secrets). The secret values arrive on stdin, never in the script, the
command line or the environment. A non-zero exit fails `pulumi up` before the service changes.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence


def migration_stdin(secret_files: Mapping[str, str], registry_password: str | None = None) -> str:
    """Lines of `<file name> <base64 value>` (and the registry password as `.registry`)."""
    lines = [f"{name} {base64.b64encode(value.encode()).decode()}" for name, value in sorted(secret_files.items())]
    if registry_password is not None:
        lines.append(f".registry {base64.b64encode(registry_password.encode()).decode()}")
    return "\n".join(lines) + "\n"


def migration_script(
    *,
    image: str,
    command: Sequence[str],
    network: str,
    env: Mapping[str, str],
    user: str | None,
    timeout_s: int,
    registry_server: str | None = None,
    registry_username: str | None = None,
) -> str:
    q = shlex.quote
    env_flags = " ".join(f"-e {q(f'{key}={value}')}" for key, value in sorted(env.items()))
    user_flag = f"--user {q(user)} " if user else ""
    login = ""
    if registry_server and registry_username:
        # The trap's text is evaluated again when it fires: it names the server by variable only.
        login = (
            f"registry={q(registry_server)}\n"
            f'base64 -d < "$dir/.registry" | docker login --username {q(registry_username)} '
            '--password-stdin "$registry" >/dev/null\n'
            'trap \'docker rm -f "$container" >/dev/null 2>&1; docker logout "$registry" >/dev/null 2>&1; '
            'rm -rf "$dir"\' EXIT\n'
        )
    return f"""#!/bin/sh
# The migration of one app: runs once before the rollout; failure stops the deploy.
set -eu
umask 077
dir=$(mktemp -d)
# Named, so the container is removed even when `timeout` kills only the docker client.
container="migration-$$-$(date +%s)"
trap 'docker rm -f "$container" >/dev/null 2>&1; rm -rf "$dir"' EXIT
mkdir "$dir/secrets"
while read -r name value; do
  [ -n "$name" ] || continue
  case "$name" in
    .registry) printf '%s' "$value" > "$dir/.registry" ;;
    *) printf '%s' "$value" | base64 -d > "$dir/secrets/$name" ;;
  esac
done
chmod 0444 "$dir"/secrets/* 2>/dev/null || true
chmod 0755 "$dir" "$dir/secrets"
{login}timeout {int(timeout_s)} docker run --rm --name "$container" --network {q(network)} {user_flag}\\
  --mount "type=bind,source=$dir/secrets,target=/run/secrets,readonly" \\
  {env_flags} \\
  {q(image)} {" ".join(q(part) for part in command)}
echo {q(f"migration of {image} succeeded")}
"""
