#!/usr/bin/env bash
# The quick-start demo: a few jobs on the embedded SQLite store, two workers, then status and DLQ.
# It uses its own queue file (demo/queue.db) so that it never touches your real queue.
# DB=postgres runs it on a throwaway PostgreSQL server instead (tests/pgcluster.py: initdb into a
# temporary directory, 127.0.0.1 on a free port), stopped and deleted when the demo ends.
set -euo pipefail
cd "$(dirname "$0")/.."
QUEUECTL="${QUEUECTL:-.venv/bin/queuectl}"
PYTHON="${PYTHON:-.venv/bin/python}"
rm -rf demo && mkdir -p demo

step() { printf '\n== %s ==\n' "$*"; }
cleanup() {
  "$QUEUECTL" worker stop --now --timeout 20 >/dev/null 2>&1 || true
  if [[ -n "${PG_PID:-}" ]]; then
    exec {PG[1]}>&-  # the server's keeper stops and deletes it when its stdin closes
    wait "$PG_PID" || true
  fi
}
trap cleanup EXIT

case "${DB:-sqlite}" in
  sqlite) export QUEUECTL_DB="$PWD/demo/queue.db" ;;
  postgres)
    step "start a throwaway PostgreSQL server"
    coproc PG { "$PYTHON" -m tests.pgcluster; }
    PG_PID=$PG_PID
    read -r -t 60 url <&"${PG[0]}" || { echo "demo: PostgreSQL did not start" >&2; exit 1; }
    export QUEUECTL_DB="$url"
    echo "$QUEUECTL_DB"
    ;;
  *) echo "demo: DB must be sqlite or postgres (got '$DB')" >&2; exit 2 ;;
esac

step "settings: quick retries for the demo"
"$QUEUECTL" config set backoff-base 1.5
"$QUEUECTL" config set max-retries 2

step "enqueue four jobs"
"$QUEUECTL" enqueue '{"id":"hello","command":"echo hello from queuectl"}'
"$QUEUECTL" enqueue '{"id":"flaky","command":"echo trying >&2; exit 3"}'
"$QUEUECTL" enqueue --id slow --timeout 10 -- sleep 2
"$QUEUECTL" enqueue --id urgent --priority 10 -- echo "I jump the queue"

step "start 2 workers in the background"
"$QUEUECTL" worker start --count 2 --detach --log demo/worker.log

step "wait until every job is completed or dead (flaky ends dead: wait exits 1)"
"$QUEUECTL" wait hello flaky slow urgent --timeout 60 || [[ $? -eq 1 ]]

step "cancel a job that would run for a minute"
"$QUEUECTL" enqueue --id long -- sleep 60
until [[ "$("$QUEUECTL" show long --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" == processing ]]; do sleep 0.1; done
"$QUEUECTL" cancel long

step "status"
"$QUEUECTL" status
step "all jobs"
"$QUEUECTL" list
step "the dead letter queue"
"$QUEUECTL" dlq list
step "the failed job's attempts"
"$QUEUECTL" show flaky
step "output of the first job"
"$QUEUECTL" logs hello
step "stop the workers"
"$QUEUECTL" worker stop
step "worker log (demo/worker.log)"
cat demo/worker.log
