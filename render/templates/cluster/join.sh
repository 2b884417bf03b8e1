# render/cluster.py join_script: joins this node to the swarm (values: manager, address_timeout, join_timeout, api).
token=""
addr=""
IFS= read -r token || fail "stdin: expected the join token on line 1 and this node's private address on line 2"
IFS= read -r addr || [ -n "$addr" ] || fail "stdin: expected this node's private address on line 2"
# The token goes into JSON: only its own alphabet is let through (SWMTKN-1-<digest>-<secret>).
case $token in
  SWMTKN-1-*) ;;
  *) fail "stdin line 1 is not a swarm join token (SWMTKN-1-...)" ;;
esac
case $token in *[!A-Za-z0-9-]*) fail "stdin line 1: the join token has characters a token never has" ;; esac
case $addr in ''|*[!0-9.]*) fail "stdin line 2: expected this node's private IPv4 address, got '$addr'" ;; esac

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" = active ]; then
  managers=$(docker info --format '{{range .Swarm.RemoteManagers}}{{.Addr}} {{end}}')
  case " $managers" in
    *" $manager "*)
      echo "already a member of the swarm managed at $manager" >&2
      docker info --format '{{.Swarm.NodeID}}'
      exit 0 ;;
  esac
  fail "this node is in another swarm (managers: ${managers:-none known}), not the one at $manager: leave it first (docker swarm leave) or replace the server"
fi

if [ "$state" != pending ]; then
  [ "$state" = inactive ] || fail "this node's swarm state is '$state'; expected inactive (docker info)"
  deadline=$(( $(date +%s) + address_timeout ))
  until ip -o -4 addr show | grep -qF "inet $addr/"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      fail "the private address $addr is not on any interface after ${address_timeout}s (Hetzner configures it by DHCP once the server is attached to the network); ip -4 addr shows: $(ip -o -4 addr show | awk '{print $2, $4}' | tr '\n' ' ')"
    fi
    sleep "$poll"
  done
  body=$(printf '{"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"%s","DataPathAddr":"%s","RemoteAddrs":["%s"],"JoinToken":"%s"}' \
    "$addr" "$addr" "$manager" "$token")
  # printf is the shell's builtin: the body (with the token) goes down a pipe, never into argv.
  response=$(printf 'POST /%s/swarm/join HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "$api" "${#body}" "$body" | docker system dial-stdio) || fail "could not reach the Docker daemon to join the swarm"
  body=""
  token=""
  status=$(printf '%s\n' "$response" | sed -n '1s/^HTTP\/1\.[01] \([0-9][0-9]*\).*/\1/p')
  case $status in
    200) ;;
    # Not joined within the daemon's own 20 s: it keeps trying; wait for it below.
    503) echo "the join is still in progress; waiting up to ${join_timeout}s" >&2 ;;
    *) fail "joining the swarm at $manager failed (HTTP ${status:-no answer}): $(printf '%s\n' "$response" | tr -d '\r' | sed -n '$p')" ;;
  esac
fi

deadline=$(( $(date +%s) + join_timeout ))
while :; do
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  [ "$state" = active ] && break
  if [ "$state" != pending ] || [ "$(date +%s)" -ge "$deadline" ]; then
    # A join left pending would keep retrying in the background: cancel it, so a rerun starts clean.
    docker swarm leave --force >/dev/null 2>&1 || true
    fail "this node did not join the swarm at $manager within ${join_timeout}s (state: $state; the pending join was cancelled): can it reach $manager over the private network (2377/tcp), and is the token current?"
  fi
  sleep "$poll"
done
docker info --format '{{.Swarm.NodeID}}'
