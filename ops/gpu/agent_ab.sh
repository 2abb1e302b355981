#!/usr/bin/env bash
# The prefix-routing A/B on one lent H100 (issue 16), one `run` call (< 10 min): after
# shared/device's `stage` + `install` phases unpacked vLLM 0.26 + Ray 2.60 into /tmp/site.
# Starts the h100x1-agent set (two replicas of a dummy Llama-3-8B agentic pool sharing the GPU),
# runs `ops.loadgen agent agent-sessions-gpu --ab` (a warm-up round, then interleaved rounds of
# the prefix-affinity router and Serve's power of two), and leaves everything in $OUT.
# PYEXT: a folder of unpacked wheels the GPU image lacks (orjson), put on PYTHONPATH.
set -u
T0=$SECONDS
REPO=$(pwd)
OUT=${OUT:-/tmp/agent-out}; mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$REPO:${PYEXT:-$REPO/.pyext}
export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_USE_FLASHINFER_SAMPLER=0 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token
say() { echo "[$((SECONDS - T0))s] $*"; }
SET=h100x1-agent
python3 -m ops.models prepare --set $SET | tail -1
setsid nohup python3 -m app.launcher ops/gpu/experiments/rendered/$SET.yaml > "$OUT/app.log" 2>&1 < /dev/null &
deadline=$((SECONDS + ${APP_TIMEOUT:-330}))
until grep -q "^ready in\|launch failed" "$OUT/app.log" 2>/dev/null; do
  [ $SECONDS -gt $deadline ] && { say "app not ready in time"; break; }
  sleep 3
done
grep -E "^\[ *[0-9.]+s\]|ready in|launch failed|Error" "$OUT/app.log" | tail -12
nvidia-smi --query-gpu=memory.used,memory.total --format=csv | tee "$OUT/vram.csv"
say "app up; A/B"
timeout ${AB_TIMEOUT:-200} python3 -m ops.loadgen agent agent-sessions-gpu --url http://127.0.0.1:8000 \
  --ab --rounds ${ROUNDS:-3} --budget-s ${AB_BUDGET:-150} --out /tmp/agent-ab 2>&1 | tail -30
# At most 8 files come back from the machine: the summary as files, every round's records in one
# tarball.
cp /tmp/agent-ab/agent.* "$OUT/" 2>/dev/null
tar -czf "$OUT/records.tgz" -C /tmp/agent-ab . && say "records packed"
say "done"
