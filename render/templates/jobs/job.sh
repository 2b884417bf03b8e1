#!/bin/sh
# keel's scheduled-job wrapper (render/jobs.py): runs its arguments once for each run the scheduler
# (or an operator) asked for, stops them at the job's timeout, and reports the outcome to
# node-exporter's textfile collector. POSIX sh; needs only cat, date, sleep and mv besides the shell.
#
# Environment (set by components/scheduled_job.py):
#   KEEL_JOB_NAME, KEEL_JOB_SERVICE     the job's name (metric label) and swarm service (ticket name)
#   KEEL_JOB_TIMEOUT_S, KEEL_JOB_GRACE_S  SIGTERM after the timeout, SIGKILL after the grace period
#   KEEL_TEXTFILE_DIR                   node-exporter's textfile directory (default /textfile)
#   KEEL_TICKETS_DIR                    run tickets (default $KEEL_TEXTFILE_DIR/job-tickets)
#   KEEL_TICKET_WAIT_S                  how long a start waits for its ticket (default 30)
#   KEEL_RUN_DIR                        scratch space (default /tmp); KEEL_RUN_STARTED_FILE is read
#                                       by the health check (default $KEEL_RUN_DIR/keel-run-started)
#
# Tickets: the scheduler's log reader (scheduler.sh) adds one to the job's counter in
# $KEEL_TICKETS_DIR/<service> each time swarm-cronjob starts the job, and so does the one-off run
# command. A start finding no ticket it has not used yet runs nothing: it was a deploy sending the
# replicas a `pulumi refresh` recorded (the scheduler leaves them at 1), not a run anyone asked for.
set -u

name=${KEEL_JOB_NAME:?KEEL_JOB_NAME is not set}
service=${KEEL_JOB_SERVICE:?KEEL_JOB_SERVICE is not set}
timeout_s=${KEEL_JOB_TIMEOUT_S:?KEEL_JOB_TIMEOUT_S is not set}
grace_s=${KEEL_JOB_GRACE_S:-30}
textfile_dir=${KEEL_TEXTFILE_DIR:-/textfile}
tickets_dir=${KEEL_TICKETS_DIR:-$textfile_dir/job-tickets}
ticket_wait_s=${KEEL_TICKET_WAIT_S:-30}
run_dir=${KEEL_RUN_DIR:-/tmp}
started_file=${KEEL_RUN_STARTED_FILE:-$run_dir/keel-run-started}
metrics=$textfile_dir/keel_job_$name.prom
used_ticket_file=$textfile_dir/.keel_job_$name.ticket
timed_out=$run_dir/keel-job-$name-timed-out
labels="job_name=\"$name\""

if [ "$#" -eq 0 ]; then
  echo "$name: no command to run" >&2
  exit 2
fi
# The health check's clock (render/backup.py job_health_command): healthy until the deadline.
date +%s > "$started_file"

# The first line of a file if it is a whole number, else 0.
number_in() {
  value=0
  if [ -r "$1" ]; then
    IFS= read -r value < "$1" || true
  fi
  case $value in '' | *[!0-9]*) value=0 ;; esac
  echo "$value"
}

# The value of a metric in the previous report, or nothing.
previous() {
  [ -r "$metrics" ] || return 0
  while IFS=' ' read -r key value; do
    case $key in "$1{"*)
      echo "$value"
      return 0
      ;;
    esac
  done < "$metrics"
}

# Written whole, then renamed: node-exporter never reads half a report.
write_file() {
  tmp="$1.$$.tmp"
  cat > "$tmp" && mv -f "$tmp" "$1"
}

# report SUCCESS REASON EXIT_CODE END [DEADLINE]
report() {
  {
    echo "# HELP keel_job_last_run_success 1 if the last run of the job succeeded, 0 if it failed (reason) or is unfinished."
    echo "# TYPE keel_job_last_run_success gauge"
    if [ "$1" = 1 ]; then
      echo "keel_job_last_run_success{$labels} 1"
    else
      echo "keel_job_last_run_success{$labels,reason=\"$2\"} 0"
    fi
    echo "# TYPE keel_job_last_run_timestamp_seconds gauge"
    echo "keel_job_last_run_timestamp_seconds{$labels} $start"
    if [ -n "$4" ]; then
      echo "# TYPE keel_job_last_run_duration_seconds gauge"
      echo "keel_job_last_run_duration_seconds{$labels} $(($4 - start))"
      echo "# TYPE keel_job_last_run_exit_code gauge"
      echo "keel_job_last_run_exit_code{$labels} $3"
    fi
    if [ -n "$last_success" ]; then
      echo "# TYPE keel_job_last_success_timestamp_seconds gauge"
      echo "keel_job_last_success_timestamp_seconds{$labels} $last_success"
    fi
    if [ -n "$last_failure" ]; then
      echo "# TYPE keel_job_last_failure_timestamp_seconds gauge"
      echo "keel_job_last_failure_timestamp_seconds{$labels} $last_failure"
    fi
    if [ -n "${5:-}" ]; then
      echo "# HELP keel_job_run_deadline_timestamp_seconds Until then an unfinished run counts as running, not failed."
      echo "# TYPE keel_job_run_deadline_timestamp_seconds gauge"
      echo "keel_job_run_deadline_timestamp_seconds{$labels} $5"
    fi
  } | write_file "$metrics"
}

# 1. A ticket this job has not used yet, or nothing to do.
used=$(number_in "$used_ticket_file")
waited_until=$(($(date +%s) + ticket_wait_s))
while :; do
  ticket=$(number_in "$tickets_dir/$service")
  if [ "$ticket" -gt 0 ] && [ "$ticket" != "$used" ]; then
    break
  fi
  if [ "$(date +%s)" -ge "$waited_until" ]; then
    echo "$name: started without a run ticket (ticket $ticket, already used): not a scheduled or requested run, nothing run"
    exit 0
  fi
  sleep 1
done
if ! echo "$ticket" | write_file "$used_ticket_file"; then
  echo "$name: cannot write to $textfile_dir; refusing to run without recording the run" >&2
  exit 1
fi

# 2. The run, reported as unfinished until it ends: a run killed outright (out of memory, the
# health check's deadline) stays failed once its deadline has passed.
start=$(date +%s)
rm -f "$timed_out"
last_success=$(previous keel_job_last_success_timestamp_seconds)
last_failure=$(previous keel_job_last_failure_timestamp_seconds)
report 0 unfinished "" "" $((start + timeout_s + grace_s + 60))
echo "$name: run started (ticket $ticket, timeout ${timeout_s}s)"

"$@" &
child=$!

watchdog() {
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$timeout_s" &
  nap=$!
  wait "$nap"
  : > "$timed_out"
  echo "$name: still running after ${timeout_s}s: SIGTERM, then SIGKILL after ${grace_s}s" >&2
  kill -TERM "$child" 2>/dev/null
  sleep "$grace_s" &
  nap=$!
  wait "$nap"
  kill -KILL "$child" 2>/dev/null
}
watchdog &
watchdog_pid=$!

# Swarm stopping the task (docker stop: the stop signal, then SIGKILL after the service's grace
# period) reaches the command too.
stopped=0
# shellcheck disable=SC2317,SC2329 # run by the trap below
forward() {
  stopped=1
  kill -TERM "$child" 2>/dev/null
}
trap forward TERM INT

# A trapped signal interrupts `wait` (status > 128) while the command still runs: wait again.
while :; do
  wait "$child"
  status=$?
  kill -0 "$child" 2>/dev/null || break
done
kill -TERM "$watchdog_pid" 2>/dev/null
wait "$watchdog_pid" 2>/dev/null
end=$(date +%s)

# 3. The outcome.
if [ -e "$timed_out" ]; then
  last_failure=$end
  report 0 timeout "$status" "$end"
  echo "$name: stopped at its timeout of ${timeout_s}s (exit $status)" >&2
  exit 124
elif [ "$stopped" = 1 ]; then
  last_failure=$end
  report 0 stopped "$status" "$end"
  echo "$name: stopped by swarm after $((end - start))s (exit $status)" >&2
  exit "$status"
elif [ "$status" -eq 0 ]; then
  last_success=$end
  report 1 "" 0 "$end"
  echo "$name: succeeded in $((end - start))s"
  exit 0
else
  last_failure=$end
  report 0 failed "$status" "$end"
  echo "$name: failed with exit $status after $((end - start))s" >&2
  exit "$status"
fi
