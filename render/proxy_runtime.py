"""How the proxy changes its configuration without dropping connections.

The proxy publishes 80/443 in host mode, so a new task cannot start before the old one stops:
any change to its swarm service spec means a short outage and cut connections. So the spec
changes rarely, and nginx's configuration does not live in it:

- nginx.conf and its includes sit in a docker volume mounted at CONF_DIR;
- `pulumi up` writes a new version into that volume (`writer_script`, run on the host with the
  Docker CLI) and then waits for the proxy to acknowledge it;
- inside the proxy task, `watcher_script` is PID 1: it starts nginx, and every few seconds
  compares a digest of the configuration (and of ACME certificates, which renew the same way)
  with the one it loaded. On a change it runs `nginx -t`; if that passes it sends `nginx -s
  reload` (graceful: old workers finish their requests, established connections are kept) and
  records the digest in CONF_DIR/.applied; if it fails it keeps serving the old configuration
  and writes nginx's complaint to CONF_DIR/.error, which fails the deploy.
"""

from __future__ import annotations

import shlex

CONF_DIR = "/etc/nginx/keel"
CERT_DIR = "/etc/nginx/certs"
"""ACME certificates (a volume written by the renewal job); watched like the configuration."""
MAIN_CONF = f"{CONF_DIR}/nginx.conf"
INCLUDE_DIR = f"{CONF_DIR}/keel.d"
WATCHER_PATH = "/usr/local/bin/keel-proxy"
POLL_S = 5
ACK_TIMEOUT_S = 90


def conf_digest_command(conf_dir: str = CONF_DIR) -> str:
    """Shell that prints one digest of every *.conf under conf_dir (names and contents)."""
    return f"find {shlex.quote(conf_dir)} -type f -name '*.conf' | sort | xargs cat | md5sum | cut -d' ' -f1"


def watcher_script(conf_dir: str = CONF_DIR, cert_dir: str = CERT_DIR, poll_s: int = POLL_S) -> str:
    q = shlex.quote
    digest = conf_digest_command(conf_dir)
    main = q(f"{conf_dir}/nginx.conf")
    cert_dir = q(cert_dir)
    conf_dir = q(conf_dir)
    return f"""#!/bin/sh
# PID 1 of the proxy task: runs nginx and reloads it, gracefully, when its files change.
set -u
conf_digest() {{ {digest}; }}
cert_digest() {{ find {cert_dir} -type f 2>/dev/null | sort | xargs -r cat | md5sum | cut -d' ' -f1; }}
nginx -c {main} -g 'daemon off;' &
pid=$!
# QUIT asks nginx for a graceful shutdown: in-flight requests finish first.
trap 'kill -QUIT "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT QUIT
seen="$(conf_digest) $(cert_digest)"
conf_digest > {conf_dir}/.applied 2>/dev/null || true
while kill -0 "$pid" 2>/dev/null; do
  sleep {int(poll_s)} &
  wait $!
  now="$(conf_digest) $(cert_digest)"
  [ "$now" = "$seen" ] && continue
  seen="$now"
  if out=$(nginx -t -c {main} 2>&1); then
    nginx -s reload -c {main}
    rm -f {conf_dir}/.error
    conf_digest > {conf_dir}/.applied
    echo "keel-proxy: configuration reloaded"
  else
    printf '%s\\n' "$out" > {conf_dir}/.error
    conf_digest > {conf_dir}/.rejected
    echo "keel-proxy: new configuration rejected, still serving the previous one:" >&2
    printf '%s\\n' "$out" >&2
  fi
done
wait "$pid"
"""


def writer_stdin(files: dict[str, str]) -> str:
    """Lines `<path relative to CONF_DIR> <base64 content>`."""
    import base64

    return "".join(f"{path} {base64.b64encode(text.encode()).decode()}\n" for path, text in sorted(files.items()))


def writer_script(*, volume: str, image: str, service: str, ack_timeout_s: int = ACK_TIMEOUT_S) -> str:
    """Runs on the host: write the new files into the volume, then wait for the proxy's verdict."""
    q = shlex.quote
    inner = (
        "set -eu; "
        "while read -r path data; do "
        '[ -n "$path" ] || continue; '
        'mkdir -p "/conf/$(dirname "$path")"; '
        'printf "%s" "$data" | base64 -d > "/conf/$path.next"; '
        'mv "/conf/$path.next" "/conf/$path"; '
        "done; " + conf_digest_command("/conf")
    )
    return f"""#!/bin/sh
# Ship a new proxy configuration into its volume; the proxy reloads itself (see keel-proxy).
set -eu
want=$(docker run --rm -i --network none -v {q(volume + ":/conf")} --entrypoint sh {q(image)} -c {q(inner)})
task=$(docker ps -q --filter label=com.docker.swarm.service.name={q(service)} | head -n 1)
if [ -z "$task" ]; then
  echo "proxy not running yet: it starts with configuration $want"
  exit 0
fi
i=0
while [ "$i" -lt {int(ack_timeout_s)} ]; do
  applied=$(docker exec "$task" cat {CONF_DIR}/.applied 2>/dev/null || true)
  rejected=$(docker exec "$task" cat {CONF_DIR}/.rejected 2>/dev/null || true)
  if [ "$applied" = "$want" ]; then
    echo "proxy reloaded configuration $want"
    exit 0
  fi
  if [ "$rejected" = "$want" ]; then
    echo "proxy rejected configuration $want; it keeps serving the previous one:" >&2
    docker exec "$task" cat {CONF_DIR}/.error >&2 || true
    exit 1
  fi
  i=$((i + 1))
  sleep 1
done
echo "proxy did not acknowledge configuration $want within {int(ack_timeout_s)}s" >&2
exit 1
"""
