"""How the proxy changes its configuration: all or nothing, and without dropping connections.

The proxy publishes 80/443 in host mode, so a new task cannot start before the old one stops:
any change to its swarm service spec means a short outage and cut connections. So the spec
changes rarely, and nginx's configuration does not live in it. It lives in a docker volume
mounted at CONF_DIR, as immutable *sets* (nginx.conf and its includes), each in a directory
named by its digest:

    CONF_DIR/sets/<digest>/nginx.conf, keel.d/*.conf   a complete set, never modified
    CONF_DIR/staged  -> sets/<digest>                  what the last deploy asked for
    CONF_DIR/current -> sets/<digest>                  the last set nginx accepted and loaded
    CONF_DIR/.applied                                  digest of the set nginx runs
    CONF_DIR/.rejected, .error                         digest and nginx's message of a refused set

- `pulumi up` (``writer_script``, on the host with the Docker CLI) writes the new set into a
  hidden directory, checks its digest against the one computed here (``set_digest``), renames
  it into ``sets/`` and flips the ``staged`` link (a rename: atomic). Nothing a restart reads
  has changed. It then waits for the proxy's verdict on that digest, and fails the deploy with
  nginx's own message if the set is refused.
- Inside the proxy task, ``watcher_script`` is PID 1. It always starts nginx from ``current``.
  When ``staged`` points elsewhere it runs ``nginx -t`` on the staged set (the main file's
  includes are relative, so the staged set is tested whole, not mixed with the live one); only
  if that passes does it flip ``current`` (again a rename) and send SIGHUP, a graceful reload:
  old workers finish their requests, established connections are kept.
- The acknowledgement is written only once nginx has actually loaded the set: nginx's master
  starts new worker processes after a reload only when the new configuration initialised, and
  keeps the old workers when it did not (src/os/unix/ngx_process_cycle.c, release-1.28.0:
  ``ngx_init_cycle`` returning NULL skips ``ngx_start_worker_processes``). So new worker pids
  are the proof; if none appear, ``current`` is flipped back and the set counts as refused.
- ACME certificates (a volume written by the renewal job) are watched too: a change reloads
  the current set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

CONF_DIR = "/etc/nginx/keel"
CERT_DIR = "/etc/nginx/certs"
"""ACME certificates (a volume written by the renewal job); watched like the configuration."""
INCLUDE_DIR = "keel.d"
"""Relative to the set's nginx.conf: nginx resolves a relative `include` against the directory of
the file given with -c (src/core/nginx.c, ngx_process_options: conf_prefix), so a staged set
is tested with its own includes."""
MAIN_FILE = "nginx.conf"
CURRENT_LINK = "current"
STAGED_LINK = "staged"
SETS_DIR = "sets"
WATCHER_PATH = "/usr/local/bin/keel-proxy"
POLL_S = 5
LOAD_TIMEOUT_S = 30
"""How long the watcher waits for nginx's new workers after a start or a reload."""
ACK_TIMEOUT_S = 300
"""How long the writer waits for the verdict; long enough for a first start that pulls the image."""
SET_GC_MINUTES = 10
"""Sets neither current nor staged are removed once this old (a writer may be about to point at a new one)."""

_SAFE_PATH = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*\.conf$")
_WRITER_WANT = re.compile(r"^want=([0-9a-f]{64})$", re.MULTILINE)
_WRITER_MOUNT = re.compile(r"^docker run --rm -i --network none -v ('[^']*'|\S+):/conf ", re.MULTILINE)


def set_digest(files: Mapping[str, str]) -> str:
    """The digest of a configuration set, as ``digest_function``'s shell computes it from the files:
    sha256 of the ``sha256sum`` lines of every file, by path."""
    lines = "".join(f"{hashlib.sha256(files[path].encode()).hexdigest()}  ./{path}\n" for path in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def digest_function() -> str:
    """A shell function, ``digest DIR``, printing what ``set_digest`` computes for DIR's *.conf files."""
    return (
        "digest() { (cd \"$1\" && find . -type f -name '*.conf' | LC_ALL=C sort | xargs -r sha256sum "
        "| sha256sum | cut -c1-64); }"
    )


def watcher_script(
    conf_dir: str = CONF_DIR, cert_dir: str = CERT_DIR, poll_s: int = POLL_S, load_timeout_s: int = LOAD_TIMEOUT_S
) -> str:
    q = shlex.quote
    return f"""#!/bin/sh
# PID 1 of the proxy task (render/proxy_runtime.py): nginx always starts from the last set it
# loaded (current); a staged set replaces it only after `nginx -t` passes and nginx has loaded it.
set -u
conf={q(conf_dir)}
certs={q(cert_dir)}
{digest_function()}
cert_digest() {{ find "$certs" -type f 2>/dev/null | LC_ALL=C sort | xargs -r cat | sha256sum | cut -c1-64; }}
# Replace a file or a link by a rename, so a reader (or a restart) sees the old one or the new one.
put() {{ printf '%s\\n' "$2" > "$conf/.$1.tmp" && mv -f "$conf/.$1.tmp" "$conf/.$1"; }}
point() {{ rm -f "$conf/.$1.tmp" && ln -s "$2" "$conf/.$1.tmp" && mv -fT "$conf/.$1.tmp" "$conf/$1"; }}
target() {{ readlink "$conf/$1" 2>/dev/null || true; }}
workers() {{ cat /proc/[0-9]*/stat 2>/dev/null | awk -v parent="$pid" '$4 == parent {{ print $1 }}' | sort; }}
# nginx starts workers only for a configuration it has loaded; a new pid among its children is the proof.
loaded() {{
  i=0
  while [ "$i" -lt {int(load_timeout_s) * 10} ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    for worker in $(workers); do
      case " $1 " in *" $worker "*) ;; *) return 0 ;; esac
    done
    i=$((i + 1))
    sleep 0.1
  done
  return 1
}}
refuse() {{
  put error "$2"
  put rejected "$1"
  echo "keel-proxy: configuration $1 refused; nginx keeps the set it runs:" >&2
  printf '%s\\n' "$2" >&2
}}
# Test a staged set (relative link target); print nothing, set $message on failure.
accepts() {{ message=$(nginx -t -c "$conf/$1/nginx.conf" 2>&1); }}
collect() {{
  keep_current=$(target current)
  keep_staged=$(target staged)
  find "$conf/sets" -mindepth 1 -maxdepth 1 -type d -mmin +{SET_GC_MINUTES} 2>/dev/null | while read -r set; do
    case "sets/${{set##*/}}" in "$keep_current" | "$keep_staged") ;; *) rm -rf "$set" ;; esac
  done
}}

pid=""
trap '[ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null && wait "$pid"; exit 0' TERM INT QUIT
tried=""
# First start ever: no set has been loaded yet, so the first staged set nginx accepts becomes current.
while [ -z "$(target current)" ]; do
  staged=$(target staged)
  if [ -n "$staged" ] && [ "$staged" != "$tried" ]; then
    tried="$staged"
    if accepts "$staged"; then
      point current "$staged"
    else
      refuse "$(digest "$conf/$staged")" "$message"
    fi
  else
    sleep {int(poll_s)} &
    wait $!
  fi
done

nginx -c "$conf/current/nginx.conf" -g 'daemon off;' &
pid=$!
if ! loaded ""; then
  echo "keel-proxy: nginx did not start from $(target current)" >&2
  wait "$pid"
  exit 1
fi
put applied "$(digest "$conf/current")"
echo "keel-proxy: serving configuration $(cat "$conf/.applied")"
certs_seen=$(cert_digest)

while kill -0 "$pid" 2>/dev/null; do
  sleep {int(poll_s)} &
  wait $!
  staged=$(target staged)
  previous=$(target current)
  if [ -n "$staged" ] && [ "$staged" != "$previous" ] && [ "$staged" != "$tried" ]; then
    tried="$staged"
    new=$(digest "$conf/$staged")
    if ! accepts "$staged"; then
      refuse "$new" "$message"
      continue
    fi
    before=$(workers)
    point current "$staged"
    kill -HUP "$pid"
    if loaded "$before"; then
      rm -f "$conf/.error"
      put applied "$new"
      certs_seen=$(cert_digest)
      echo "keel-proxy: configuration $new loaded"
      collect
    else
      point current "$previous"
      refuse "$new" "nginx accepted the configuration (nginx -t) but did not load it; see the proxy's log"
    fi
    continue
  fi
  certs_now=$(cert_digest)
  if [ "$certs_now" != "$certs_seen" ]; then
    certs_seen="$certs_now"
    if accepts current; then
      kill -HUP "$pid"
      echo "keel-proxy: certificates changed, reloaded"
    else
      echo "keel-proxy: new certificates refused, still serving the previous ones:" >&2
      printf '%s\\n' "$message" >&2
    fi
  fi
done
wait "$pid"
"""


def health_command(probe: str, conf_dir: str = CONF_DIR) -> str:
    """The proxy's health check: ``probe`` (an HTTP check of /health), except before the first
    configuration set ever arrives, when there is nothing to serve yet and the task counts as
    healthy. The writer stages that first set only once the service is up (and `pulumi up` waits
    for services to converge), so an unhealthy task waiting for it would never get it."""
    return f"[ -e {shlex.quote(conf_dir + '/' + CURRENT_LINK)} ] || exit 0; {probe}"


def writer_stdin(files: Mapping[str, str]) -> str:
    """Lines `<path relative to the set> <base64 content>`."""
    for path in files:
        if not _SAFE_PATH.match(path):
            raise ValueError(f"proxy configuration file {path!r}: expected a relative path of a .conf file")
    return "".join(f"{path} {base64.b64encode(files[path].encode()).decode()}\n" for path in sorted(files))


def stage_script(digest: str) -> str:
    """Run in the proxy's image with the configuration volume at $1 (default /conf), the set on stdin:
    writes it as sets/<digest> and points ``staged`` at it, checking the digest first."""
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return (
        'set -eu; conf="${1:-/conf}"; ' + digest_function() + f"; want={digest}; "
        'mkdir -p "$conf/sets"; incoming="$conf/sets/.incoming.$$"; rm -rf "$incoming"; '
        "while read -r path data; do "
        '[ -n "$path" ] || continue; '
        'mkdir -p "$incoming/$(dirname "$path")"; '
        'printf "%s" "$data" | base64 -d > "$incoming/$path"; '
        "done; "
        'got=$(digest "$incoming"); '
        'if [ "$got" != "$want" ]; then rm -rf "$incoming"; '
        'echo "the staged files have digest $got, not the rendered $want" >&2; exit 1; fi; '
        'if [ -d "$conf/sets/$want" ]; then rm -rf "$incoming"; else mv "$incoming" "$conf/sets/$want"; fi; '
        'rm -f "$conf/.staged.tmp"; ln -s "sets/$want" "$conf/.staged.tmp"; mv -fT "$conf/.staged.tmp" "$conf/staged"'
    )


def writer_script(*, volume: str, image: str, service: str, digest: str, ack_timeout_s: int = ACK_TIMEOUT_S) -> str:
    """Runs on the host: stage the set into the volume, then wait for the proxy's verdict on ``digest``."""
    q = shlex.quote
    return f"""#!/bin/sh
# Stage proxy configuration {digest} in its volume; the proxy tests and loads it (see keel-proxy).
set -eu
want={digest}
docker run --rm -i --network none -v {q(volume)}:/conf --entrypoint sh {q(image)} -c {q(stage_script(digest))}
i=0
while [ "$i" -lt {int(ack_timeout_s)} ]; do
  task=$(docker ps -q --filter label=com.docker.swarm.service.name={q(service)} | head -n 1)
  if [ -n "$task" ]; then
    applied=$(docker exec "$task" cat {CONF_DIR}/.applied 2>/dev/null || true)
    if [ "$applied" = "$want" ]; then
      echo "proxy loaded configuration $want"
      exit 0
    fi
    rejected=$(docker exec "$task" cat {CONF_DIR}/.rejected 2>/dev/null || true)
    if [ "$rejected" = "$want" ]; then
      echo "proxy refused configuration $want; it keeps serving ${{applied:-nothing yet}}:" >&2
      docker exec "$task" cat {CONF_DIR}/.error >&2 || true
      exit 1
    fi
  fi
  i=$((i + 1))
  sleep 1
done
echo "proxy did not load configuration $want within {int(ack_timeout_s)}s; see: docker service ps" {q(service)} >&2
exit 1
"""


@dataclass(frozen=True)
class StagedSet:
    """What one deploy's writer stages: the volume it writes into, the set's digest, and its files
    (path relative to the set -> text)."""

    volume: str
    digest: str
    files: dict[str, str]


def read_writer_stdin(stdin: str) -> dict[str, str] | None:
    """The files a ``writer_stdin`` text carries (path -> text), or None for text of another form."""
    files: dict[str, str] = {}
    for line in stdin.splitlines():
        path, space, data = line.partition(" ")
        if not _SAFE_PATH.match(path) or not space or " " in data:
            return None
        try:
            files[path] = base64.b64decode(data, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
    return files or None


def read_writer(script: str, stdin: str) -> StagedSet | None:
    """The set a ``writer_script`` stages from its ``writer_stdin`` (the inverse of the pair, so the
    offline render can show the set as text), or None for another command.

    Raises ValueError when the files do not have the digest the script waits for: ``stage_script``
    would refuse them on the host, so the deploy would fail."""
    want = _WRITER_WANT.search(script)
    mount = _WRITER_MOUNT.search(script)
    files = read_writer_stdin(stdin)
    if want is None or mount is None or files is None:
        return None
    digest = set_digest(files)
    if digest != want.group(1):
        raise ValueError(f"the proxy writer stages files with digest {digest}, but waits for {want.group(1)}")
    return StagedSet(volume=shlex.split(mount.group(1))[0], digest=digest, files=files)
