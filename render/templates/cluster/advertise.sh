# render/cluster.py advertise_script: moves a lone manager's advertise and data path addresses to the private one.
addr=""
IFS= read -r addr || [ -n "$addr" ] || fail "stdin: expected the primary's private IPv4 address"
case $addr in ''|*[!0-9.]*) fail "stdin: expected the primary's private IPv4 address, got '$addr'" ;; esac
[ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = active ] || fail "this node is not in a swarm"
[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] || fail "this node is not a swarm manager"
current=$(docker info --format '{{.Swarm.NodeAddr}}')
if [ "$current" = "$addr" ]; then
  echo "the swarm already advertises $addr" >&2
  exit 0
fi
managers=$(docker node ls --filter role=manager --quiet | wc -l)
if [ "$managers" -gt 1 ]; then
  fail "the swarm advertises $current, not the private $addr, and has $managers managers: re-advertising resets the raft membership, which only a single manager may do; demote the others, rerun, then promote them again"
fi
docker swarm init --force-new-cluster --advertise-addr "$addr" --data-path-addr "$addr" >/dev/null
[ "$(docker info --format '{{.Swarm.NodeAddr}}')" = "$addr" ] || fail "the swarm still does not advertise $addr"
echo "the swarm now advertises $addr (was $current)" >&2
