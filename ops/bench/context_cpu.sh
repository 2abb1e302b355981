#!/usr/bin/env bash
# Issue 16's CPU measurements in one go, for `/work/tools/quiet` (the machine to itself):
# start the cpu-context set (tests.serve_process: a private local Ray), then run each command
# given as one argument, with $URL set, then stop the app.
#   bash ops/bench/context_cpu.sh PORT 'python -m ops.evals longctx --model chat-long --url $URL'
set -u
PORT=$1; shift
CONFIG=serve_configs/rendered/cpu-context.yaml
LOG=$(mktemp /tmp/context-app.XXXX.log)
export PYTHONPATH=$(pwd)
setsid .venv/bin/python -m tests.serve_process "$CONFIG" "$PORT" > "$LOG" 2>&1 < /dev/null &
APP=$!
T0=$SECONDS
until grep -q "^READY" "$LOG"; do
  if ! kill -0 $APP 2>/dev/null || [ $((SECONDS - T0)) -gt 400 ]; then
    echo "app did not start"; tail -20 "$LOG"; kill -TERM -$APP 2>/dev/null; exit 1
  fi
  sleep 2
done
echo "app up in $((SECONDS - T0))s"
export URL=http://127.0.0.1:$PORT
for cmd in "$@"; do
  echo "== $cmd"
  eval "$cmd"
done
kill -TERM -$APP
wait $APP
# An app that dies in its shutdown leaves its HAProxy holding PORT: stop the one on our port.
for pid in $(ss -ltnpH "sport = :$PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
  kill "$pid" 2>/dev/null
done
