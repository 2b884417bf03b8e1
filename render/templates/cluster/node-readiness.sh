# render/cluster.py node_readiness_script: cloud-init done and Docker answering on a pool node (value: timeout).
rc=0
cloud-init status --wait >/dev/null 2>&1 || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
  echo "cloud-init failed with status $rc" >&2
  cloud-init status --long >&2 || true
  exit 1
fi
deadline=$(( $(date +%s) + timeout ))
state=""
while :; do
  state=$(sg docker -c "docker info --format '{{.Swarm.LocalNodeState}}'" 2>/dev/null) && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "docker does not answer after ${timeout}s" >&2
    exit 1
  fi
  sleep "$poll"
done
echo "ready (swarm: $state)"
