#!/bin/sh
# A background worker: does its periodic job and leaves a heartbeat the health check reads.
set -eu
while true; do
  date +%s > /tmp/heartbeat
  echo "worker env=${APP_ENV:-unknown} version=${APP_VERSION:-unknown} tick"
  sleep "${WORKER_INTERVAL:-10}"
done
