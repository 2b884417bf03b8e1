# render/cluster.py membership_script: labels a joined node once Ready (values: node, keys, ready_timeout; "$@": --label-add ...).
# The last line of what the join printed: its node ID.
id=$(sed -n '$p')
[ -n "$id" ] || fail "stdin: expected a swarm node ID, got nothing"
case $id in ''|*[!0-9a-z]*) fail "stdin: expected a swarm node ID ([0-9a-z]), got '$id'" ;; esac
deadline=$(( $(date +%s) + ready_timeout ))
while :; do
  state=$(docker node inspect --format '{{.Status.State}}' "$id" 2>/dev/null) || state="not in the swarm"
  [ "$state" = ready ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    fail "swarm node $id (keel node $node) is not Ready after ${ready_timeout}s (state: $state)"
  fi
  sleep "$poll"
done
previous=$(docker node inspect --format '{{index .Spec.Labels "keel.labels"}}' "$id")
if [ "$previous" = "<no value>" ]; then previous=""; fi
present=$(docker node inspect --format '{{range $k, $v := .Spec.Labels}}{{$k}} {{end}}' "$id")
# "$@" holds the --label-add arguments (set before this script, quoted).
old_ifs=$IFS
IFS=,
for key in $previous; do
  # docker node update applies --label-rm after --label-add: keel's own labels are never removed.
  case $key in keel.node|keel.labels) continue ;; esac
  case ",$keys," in *",$key,"*) continue ;; esac
  case " $present" in *" $key "*) set -- "$@" --label-rm "$key" ;; esac
done
IFS=$old_ifs
docker node update "$@" "$id" >/dev/null
echo "swarm node $id is keel node $node" >&2
printf '%s\n' "$id"
