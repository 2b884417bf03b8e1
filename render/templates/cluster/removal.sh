# render/cluster.py removal_script: drains, demotes and removes a node (values: drain_timeout, demote_timeout).
id=${PULUMI_COMMAND_STDOUT:-}
if [ -n "$id" ]; then
  id=$(printf '%s\n' "$id" | sed -n '$p')
else
  id=$(sed -n '$p')
  [ -n "$id" ] || fail "no node ID: PULUMI_COMMAND_STDOUT is not set and stdin is empty"
fi
case $id in ''|*[!0-9a-z]*) fail "expected a swarm node ID ([0-9a-z]), got '$id'" ;; esac

gone() {
  case $1 in *"not found"*|*"No such node"*) return 0 ;; esac
  return 1
}
if ! out=$(docker node inspect --format '{{.Spec.Role}}' "$id" 2>&1); then
  if gone "$out"; then
    echo "swarm node $id is no longer in the swarm: nothing to remove" >&2
    exit 0
  fi
  fail "docker node inspect $id: $out"
fi
role=$out
name=$(docker node inspect --format '{{index .Spec.Labels "keel.node"}}' "$id")
[ "$id" != "$(docker info --format '{{.Swarm.NodeID}}')" ] \
  || fail "swarm node $id ($name) is the manager this runs on: it cannot remove itself"

if [ "$role" = manager ]; then
  managers=$(docker node ls --filter role=manager --format '{{.ID}} {{.ManagerStatus}}')
  members=0
  reachable=0
  while read -r mid status; do
    members=$((members + 1))
    [ "$mid" = "$id" ] && continue
    case $status in Leader|Reachable) reachable=$((reachable + 1)) ;; esac
  done <<EOF
$managers
EOF
  quorum=$(( (members - 1) / 2 + 1 ))
  if [ "$members" -le 1 ] || [ "$reachable" -lt "$quorum" ]; then
    fail "refusing to remove manager $id ($name): of the $members managers, $reachable other(s) are reachable, and the $((members - 1)) left need $quorum reachable to keep the raft quorum; bring the unreachable managers back (or remove them first) and retry"
  fi
fi

docker node update --availability drain "$id" >/dev/null
echo "draining swarm node $id ($name)" >&2
deadline=$(( $(date +%s) + drain_timeout ))
while :; do
  remaining=$(docker node ps --format '{{.Name}} {{.CurrentState}}' "$id" 2>&1) || {
    gone "$remaining" && { echo "swarm node $id left the swarm while draining" >&2; exit 0; }
    fail "docker node ps $id: $remaining"
  }
  running=$(printf '%s\n' "$remaining" \
    | awk '$2 ~ /^(New|Pending|Assigned|Accepted|Preparing|Ready|Starting|Running)$/ {printf "%s%s", sep, $1; sep=", "}')
  [ -z "$running" ] && break
  # A down node's tasks keep the state they last reported (swarm orphans them only much later:
  # swarmkit dispatcher.go markNodesUnknown) and have already been started elsewhere
  # (orchestrator/task.go InvalidNode): there is nothing to wait for.
  if [ "$(docker node inspect --format '{{.Status.State}}' "$id" 2>/dev/null || true)" = down ]; then
    echo "swarm node $id ($name) is down: its tasks were already started elsewhere ($running)" >&2
    break
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    fail "swarm node $id ($name) still runs tasks after ${drain_timeout}s of draining: $running (it stays drained; see docker service ps for why they cannot move, then retry)"
  fi
  sleep "$poll"
done

if [ "$role" = manager ]; then
  docker node demote "$id" >/dev/null
  deadline=$(( $(date +%s) + demote_timeout ))
  until [ -z "$(docker node inspect --format '{{if .ManagerStatus}}member{{end}}' "$id")" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      fail "swarm node $id ($name) was demoted but is still a raft member after ${demote_timeout}s"
    fi
    sleep "$poll"
  done
fi

# --force: the node is still up (its server is destroyed after this), and swarm removes a node
# that is not down only when forced.
if ! out=$(docker node rm --force "$id" 2>&1); then
  gone "$out" || fail "docker node rm $id: $out"
fi
echo "swarm node $id ($name) removed from the swarm" >&2
