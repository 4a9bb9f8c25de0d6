#!/usr/bin/env bash
# The quick-start demo: a few jobs on the embedded SQLite store, two workers, then status and DLQ.
# It uses its own queue file (demo/queue.db) so that it never touches your real queue.
set -euo pipefail
cd "$(dirname "$0")/.."
QUEUECTL="${QUEUECTL:-.venv/bin/queuectl}"
rm -rf demo && mkdir -p demo
export QUEUECTL_DB="$PWD/demo/queue.db"

step() { printf '\n== %s ==\n' "$*"; }
cleanup() { "$QUEUECTL" worker stop --now --timeout 20 >/dev/null 2>&1 || true; }
trap cleanup EXIT

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

step "wait until every job is completed or dead"
deadline=$((SECONDS + 60))
until "$QUEUECTL" status --json | python3 -c '
import json, sys
jobs = json.load(sys.stdin)["jobs"]
sys.exit(0 if jobs["pending"] + jobs["processing"] + jobs["failed"] == 0 else 1)'; do
  if ((SECONDS > deadline)); then echo "demo: jobs did not finish in 60s" >&2; exit 1; fi
  sleep 0.2
done

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
