#!/bin/sh
# keel's scheduler entry point (render/jobs.py): swarm-cronjob, with its log read line by line.
#
# swarm-cronjob v1.14.0 (LOG_JSON=true) logs, per service (internal/app/app.go, internal/worker/worker.go):
#   {"level":"info","service":"<name>",...,"message":"Add cronjob with schedule <cron>"}  a job it schedules
#   {"level":"info","service":"<name>",...,"message":"Start job"}        a run it starts
#   {"level":"warn","service":"<name>",...,"message":"Skip running job"} a run it skips: skip-running is
#                                                                          set and a task is still running
# From these this reader keeps, under node-exporter's textfile directory:
#   keel_job_skips.prom          keel_job_skipped_runs_total{service}, a counter that survives restarts
#                                (from 0 as soon as the job is scheduled, so the first skip is an increase)
#   job-tickets/<service>        a counter of the runs asked for: a job's wrapper (job.sh) runs only
#                                for a ticket it has not used yet
# Every line is passed on to the container's log as it is.
#
#   scheduler.sh            start $KEEL_SCHEDULER_BIN (default swarm-cronjob), its log through the reader
#   scheduler.sh --read     the reader alone, on standard input
set -u

textfile_dir=${KEEL_TEXTFILE_DIR:-/textfile}
tickets_dir=${KEEL_TICKETS_DIR:-$textfile_dir/job-tickets}
counts_dir=$textfile_dir/.keel-scheduler/skipped
fifo=${KEEL_SCHEDULER_FIFO:-/tmp/keel-scheduler.log}

number_in() {
  value=0
  if [ -r "$1" ]; then
    IFS= read -r value < "$1" || true
  fi
  case $value in '' | *[!0-9]*) value=0 ;; esac
  echo "$value"
}

# Written whole, then renamed (node-exporter and the jobs never read half a file).
write_file() {
  tmp="$1.$$.tmp"
  cat > "$tmp" && mv -f "$tmp" "$1"
}

write_skips() {
  {
    echo "# HELP keel_job_skipped_runs_total Runs swarm-cronjob skipped because the job's previous run was still going."
    echo "# TYPE keel_job_skipped_runs_total counter"
    for file in "$counts_dir"/*; do
      [ -f "$file" ] || continue
      echo "keel_job_skipped_runs_total{service=\"${file##*/}\"} $(number_in "$file")"
    done
  } | write_file "$textfile_dir/keel_job_skips.prom"
}

# count_skip SERVICE ADD: ADD runs more (0: just make sure the counter exists).
count_skip() {
  count=$(number_in "$counts_dir/$1")
  if [ "$2" = 0 ] && [ -e "$counts_dir/$1" ]; then
    return 0
  fi
  echo $((count + $2)) | write_file "$counts_dir/$1" && write_skips
}

issue_ticket() {
  # The directory exists once a job that uses tickets is deployed (components/scheduled_job.py).
  [ -d "$tickets_dir" ] || return 0
  echo $(($(number_in "$tickets_dir/$1") + 1)) | write_file "$tickets_dir/$1"
}

read_log() {
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case $line in
      *'"message":"Start job"'*) event=start ;;
      *'"message":"Skip running job"'*) event=skip ;;
      *'"message":"Add cronjob with schedule '*) event=add ;;
      *) continue ;;
    esac
    service=${line#*\"service\":\"}
    service=${service%%\"*}
    # Swarm service names only: the name becomes a file name.
    case $service in '' | -* | *[!a-z0-9-]*) continue ;; esac
    case $event in
      start) issue_ticket "$service" ;;
      skip) count_skip "$service" 1 ;;
      add) count_skip "$service" 0 ;;
    esac
  done
}

mkdir -p "$counts_dir"
if [ "${1:-}" = --read ]; then
  read_log
  exit 0
fi

rm -f "$fifo"
mkfifo "$fifo"
read_log < "$fifo" &
# swarm-cronjob itself replaces this shell: it receives the stop signal, and the reader ends with its log.
exec "${KEEL_SCHEDULER_BIN:-swarm-cronjob}" > "$fifo" 2>&1
